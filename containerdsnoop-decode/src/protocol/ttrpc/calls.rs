//! ttrpc call tracking: frames in, call events out. Owns the table of open calls keyed by
//! stream id (bounded, least recently active forgotten first), request and response envelopes,
//! streaming data frames, message indexes, and how each call ends. Owns [`Calls`]; the
//! connection's [`Shared`] state (roles, limits, counters) is handed to each method.

use std::sync::Arc;

use super::envelope::{Request, Response};
use super::frame::{
    FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, Header, TYPE_DATA, TYPE_REQUEST,
    TYPE_RESPONSE,
};
use super::shared::Shared;
use crate::lru::LruMap;
use crate::protocol::call::{Body, CallEvent, ConnEnd, Method, Role, Status};
use crate::protocol::kit::{At, CallTag, MessageCount};

/// The metadata key containerd puts the namespace in on ttrpc (`namespaces.TTRPCHeader`).
pub const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";
/// The gRPC header name, which some ttrpc clients use as well.
const NAMESPACE_KEY_GRPC: &str = "containerd-namespace";
/// Metadata entry that carries a request's `timeout_nano`, when set.
pub const TIMEOUT_KEY: &str = "timeout_nano";

/// A call under way.
#[derive(Debug)]
struct Call {
    start_ts: u64,
    tag: CallTag,
    counts: MessageCount,
}

impl Call {
    /// The call's end as an event.
    fn end(self, at: At, status: Status) -> CallEvent {
        at.end(&self.tag, status, Some(self.start_ts))
    }
}

/// The open calls of a connection, by stream id. The least recently active call is the one
/// forgotten when too many are open: ttrpc ids only grow, so before the first message on an
/// older stream this is the oldest call, and a long stream that keeps talking is kept.
pub(super) struct Calls(LruMap<u32, Call>);

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Calls({} open)", self.0.len())
    }
}

impl Calls {
    pub(super) fn new(max_streams: usize) -> Calls {
        Calls(LruMap::new(max_streams))
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The connection is gone (`end` says how): every open call ends, in stream order.
    pub(super) fn close(
        &mut self,
        at: At,
        end: ConnEnd,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        let mut all = self.0.drain_oldest_first();
        all.sort_by_key(|(stream, _)| *stream);
        for (_, call) in all {
            sh.stats.calls_ended += 1;
            out.push(call.end(at, Status::abnormal(end.reason())));
        }
    }

    /// A complete frame `at.side` sent.
    pub(super) fn on_frame(
        &mut self,
        at: At,
        head: &Header,
        data: &[u8],
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        sh.stats.frames += 1;
        match head.kind {
            TYPE_REQUEST => self.on_request(at, head, data, sh, out),
            TYPE_RESPONSE => self.on_response(at, head, data, sh, out),
            TYPE_DATA => self.on_data(at, head, data, sh, out),
            // `plausible` admits no other type.
            _ => {}
        }
    }

    /// A frame too long to keep: its message is shown as unavailable.
    pub(super) fn oversize(
        &mut self,
        at: At,
        head: &Header,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        let role = match head.kind {
            TYPE_REQUEST => Role::Request,
            TYPE_RESPONSE => Role::Response,
            _ => sh.roles.of_or_request(at.side),
        };
        let body = Body::Unavailable {
            reason: format!("frame over the {}-byte limit", sh.limits.max_frame),
            len: u64::from(head.len),
        };
        self.message(at, head.stream, role, body, sh, out);
    }

    fn on_request(
        &mut self,
        at: At,
        head: &Header,
        data: &[u8],
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        sh.roles.learn(at.side, Role::Request);
        let Some(req) = Request::decode_checked(data) else {
            sh.stats.bad_envelopes += 1;
            let text = format!(
                "ttrpc request on stream {} has no valid envelope ({} bytes)",
                head.stream,
                data.len()
            );
            return out.push(at.notice(0, text));
        };
        if let Some(old) = self.0.remove(&head.stream) {
            // ttrpc forbids reusing a stream id; a reuse means the old call's end was lost.
            sh.stats.calls_ended += 1;
            let why = "stream id reused before the call ended";
            out.push(old.end(at, Status::abnormal(why)));
        }
        let method = Method {
            name: Arc::from(req.method_name()),
            inferred: false,
        };
        let metadata = request_metadata(&req, head);
        let namespace = [NAMESPACE_KEY, NAMESPACE_KEY_GRPC].iter().find_map(|k| {
            metadata
                .iter()
                .find(|(mk, _)| mk.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.as_deref().map(Arc::from))
        });
        sh.stats.calls_started += 1;
        let stream = u64::from(head.stream);
        out.push(at.start(stream, Some(method.clone()), metadata));
        let call = Call {
            start_ts: at.ts_ns,
            tag: CallTag::new(stream, Some(method)).with_namespace(namespace),
            counts: MessageCount::default(),
        };
        if self.0.insert(head.stream, call).is_some() {
            // Forgotten without an end of its own: a response for it shows without a method.
            sh.stats.evicted_streams += 1;
        }
        let body = Body::Protobuf(req.payload);
        self.message(at, head.stream, Role::Request, body, sh, out);
    }

    fn on_response(
        &mut self,
        at: At,
        head: &Header,
        data: &[u8],
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        sh.roles.learn(at.side, Role::Response);
        let Some(resp) = Response::decode_checked(data) else {
            sh.stats.bad_envelopes += 1;
            let why = format!("response envelope does not decode ({} bytes)", data.len());
            return self.end(at, head.stream, Status::abnormal(why), sh, out);
        };
        let (code, message) = match &resp.status {
            Some(s) => (s.code, String::from_utf8_lossy(&s.message).into_owned()),
            None => (0, String::new()),
        };
        // An error carries no meaningful payload; an OK response always is a message, even
        // an empty one (`google.protobuf.Empty`).
        if code == 0 || !resp.payload.is_empty() {
            let body = Body::Protobuf(resp.payload);
            self.message(at, head.stream, Role::Response, body, sh, out);
        }
        // Negative codes do not exist in gRPC; show them as their two's complement rather
        // than drop them.
        self.end(
            at,
            head.stream,
            Status::ended(code as u32, message),
            sh,
            out,
        );
    }

    fn on_data(
        &mut self,
        at: At,
        head: &Header,
        data: &[u8],
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(role) = sh.roles.of(at.side) else {
            // Data before any request or response: a late join on a stream. Client-initiated
            // streams are the only ones, but either side sends data, so the role is unknown.
            sh.stats.orphan_frames += 1;
            return;
        };
        if head.flags & FLAG_NO_DATA == 0 {
            let body = Body::Protobuf(data.to_vec());
            self.message(at, head.stream, role, body, sh, out);
        }
        // The server closing its half ends the stream (ttrpc's server deletes it then); the
        // client closing its half only means it sends no more.
        if role == Role::Response && head.flags & FLAG_REMOTE_CLOSED != 0 {
            self.end(at, head.stream, Status::ended(0, ""), sh, out);
        }
    }

    fn message(
        &mut self,
        at: At,
        stream: u32,
        role: Role,
        body: Body,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        sh.stats.messages += 1;
        let event = match self.0.get_mut(&stream) {
            Some(call) => {
                let index = call.counts.next(role);
                at.message(&call.tag, role, index, body)
            }
            None => {
                sh.stats.orphan_frames += 1;
                at.message(&CallTag::new(u64::from(stream), None), role, 0, body)
            }
        };
        out.push(event);
    }

    /// Ends the call on `stream`, or reports the end of an untracked one (late join): its
    /// status is worth a row even without a method.
    fn end(
        &mut self,
        at: At,
        stream: u32,
        status: Status,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        match self.0.remove(&stream) {
            Some(call) => {
                sh.stats.calls_ended += 1;
                out.push(call.end(at, status));
            }
            None => out.push(at.end(&CallTag::new(u64::from(stream), None), status, None)),
        }
    }
}

/// A request's metadata as the Start shows it: the envelope's key-value pairs in wire order,
/// then what the envelope says outside them (timeout, streaming flags).
fn request_metadata(req: &Request, head: &Header) -> Vec<(String, Option<String>)> {
    let mut metadata: Vec<(String, Option<String>)> = req
        .metadata
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                Some(String::from_utf8_lossy(&kv.value).into_owned()),
            )
        })
        .collect();
    if req.timeout_nano != 0 {
        metadata.push((TIMEOUT_KEY.to_string(), Some(req.timeout_nano.to_string())));
    }
    if head.flags & FLAG_REMOTE_OPEN != 0 {
        metadata.push(("ttrpc-stream".into(), Some("client streaming".into())));
    } else if head.flags & FLAG_REMOTE_CLOSED != 0 {
        metadata.push(("ttrpc-stream".into(), Some("server streaming".into())));
    }
    metadata
}
