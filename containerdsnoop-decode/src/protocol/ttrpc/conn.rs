//! One ttrpc connection seen from outside: both directions' bytes in, `CallEvent`s out. Owns
//! framing per direction, who is the client (the side that sends requests), the calls keyed
//! by stream id, and resynchronisation: after lost bytes or an impossible header a direction
//! hunts for a frame boundary and carries on from there, since unlike HTTP/2 no state (HPACK)
//! is lost with the skipped bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::envelope::{Request, Response};
use super::frame::{
    self, Anchor, FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, HEADER_LEN, Header,
    MAX_ANCHOR_FRAME, TYPE_DATA, TYPE_REQUEST, TYPE_RESPONSE,
};
use crate::protocol::call::{Body, CallEvent, CallEventKind, ConnEnd, Method, Role, Side, Status};
use crate::protocol::decoder::ConnDecoder;

/// The metadata key containerd puts the namespace in on ttrpc (`namespaces.TTRPCHeader`).
pub const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";
/// The gRPC header name, which some ttrpc clients use as well.
const NAMESPACE_KEY_GRPC: &str = "containerd-namespace";
/// Metadata entry that carries a request's `timeout_nano`, when set.
pub const TIMEOUT_KEY: &str = "timeout_nano";

/// Every bound of a connection, so memory per connection is a known function of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Calls tracked at once; beyond it the oldest is forgotten (and counted). Shims keep
    /// `Wait` calls open for a container's lifetime, so this must not be small.
    pub max_streams: usize,
    /// Longest frame kept; longer ones (only possible up to `MESSAGE_LENGTH_MAX`) are skipped
    /// and reported unavailable.
    pub max_frame: usize,
    /// Bytes a hunting direction keeps while looking for a frame boundary.
    pub resync_window: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_streams: 1024,
            max_frame: frame::MESSAGE_LENGTH_MAX as usize + HEADER_LEN,
            resync_window: MAX_ANCHOR_FRAME + HEADER_LEN,
        }
    }
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes: u64,
    pub frames: u64,
    /// Bytes skipped while hunting for a frame boundary.
    pub bytes_skipped: u64,
    pub gaps: u64,
    pub lost_bytes: u64,
    /// Times a direction lost its framing (gap or impossible header).
    pub desyncs: u64,
    pub resyncs: u64,
    /// Request or response envelopes that did not decode.
    pub bad_envelopes: u64,
    /// Frames over `Limits::max_frame`.
    pub oversize_frames: u64,
    pub evicted_streams: u64,
    /// Responses and data for streams no call is tracked for (late join, evicted).
    pub orphan_frames: u64,
    pub messages: u64,
    pub calls_started: u64,
    pub calls_ended: u64,
}

#[derive(Debug)]
enum Phase {
    /// At or inside a frame; `buf` holds the incomplete frame.
    Framing,
    /// Lost the frame boundary; `buf` holds bytes not yet ruled out as one.
    Hunting,
    /// Inside a frame too long to keep: `left` bytes of it still to skip.
    Skipping { left: u64 },
}

#[derive(Debug)]
struct Direction {
    phase: Phase,
    buf: Vec<u8>,
    /// Bytes skipped in the current hunt, for the resync notice.
    hunted: u64,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            phase: Phase::Framing,
            buf: Vec::new(),
            hunted: 0,
        }
    }
}

#[derive(Debug)]
struct Call {
    start_ts: u64,
    method: Option<Method>,
    namespace: Option<Arc<str>>,
    requests: u64,
    responses: u64,
}

/// The decoder of one ttrpc connection.
#[derive(Debug)]
pub struct Connection {
    dirs: [Direction; 2],
    client: Option<Side>,
    calls: BTreeMap<u32, Call>,
    limits: Limits,
    stats: Stats,
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Default for Connection {
    fn default() -> Connection {
        Connection::new(Limits::default())
    }
}

impl Connection {
    pub fn new(limits: Limits) -> Connection {
        Connection {
            dirs: [Direction::new(), Direction::new()],
            client: None,
            calls: BTreeMap::new(),
            limits,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Starts with the client known (the connection table knows which socket listens).
    /// Without it, the first request or response seen decides.
    pub fn with_client(mut self, client: Option<Side>) -> Connection {
        self.client = client;
        self
    }

    /// The side that sends requests, once known.
    pub fn client(&self) -> Option<Side> {
        self.client
    }

    /// Calls started and not yet ended.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    fn role(&self, side: Side) -> Option<Role> {
        side.role(self.client)
    }

    fn notice(side: Side, ts_ns: u64, text: String, out: &mut Vec<CallEvent>) {
        out.push(CallEvent {
            ts_ns,
            side,
            stream: 0,
            kind: CallEventKind::Notice { text },
        });
    }

    fn direction_name(&self, side: Side) -> &'static str {
        match self.role(side) {
            Some(Role::Request) => "ttrpc client→server",
            Some(Role::Response) => "ttrpc server→client",
            None => "ttrpc",
        }
    }

    /// Stops framing `side` and starts hunting for a frame boundary. The caller decides
    /// which buffered bytes the hunt starts from.
    fn lose_sync(&mut self, side: Side, ts_ns: u64, why: String, out: &mut Vec<CallEvent>) {
        self.stats.desyncs += 1;
        let text = format!(
            "{} desynchronised: {why}; looking for the next frame",
            self.direction_name(side)
        );
        Self::notice(side, ts_ns, text, out);
        let d = &mut self.dirs[idx(side)];
        d.phase = Phase::Hunting;
        d.hunted = 0;
    }

    /// Appends `input` to the direction's buffer and consumes every complete frame in it.
    /// Iterative on purpose: input alternating frames and garbage must not recurse.
    fn feed_bytes(&mut self, side: Side, ts_ns: u64, input: &[u8], out: &mut Vec<CallEvent>) {
        let i = idx(side);
        let mut input = input;
        // A long skip consumes straight from the input, never buffering it.
        if let Phase::Skipping { left } = self.dirs[i].phase {
            let n = (input.len() as u64).min(left);
            input = &input[n as usize..];
            self.skip_done(i, left, n);
        }
        if input.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut self.dirs[i].buf);
        buf.extend_from_slice(input);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.dirs[i].phase {
                Phase::Skipping { left } => {
                    let n = (rest.len() as u64).min(left);
                    pos += n as usize;
                    self.skip_done(i, left, n);
                    if n < left {
                        break;
                    }
                }
                Phase::Hunting => match frame::anchor(rest) {
                    Anchor::Confirmed => {
                        let d = &mut self.dirs[i];
                        let skipped = d.hunted;
                        d.hunted = 0;
                        d.phase = Phase::Framing;
                        self.stats.resyncs += 1;
                        let text = format!(
                            "{} resynchronised after skipping {skipped} bytes",
                            self.direction_name(side)
                        );
                        Self::notice(side, ts_ns, text, out);
                    }
                    Anchor::NeedMore
                        if rest.len() < HEADER_LEN || rest.len() <= self.limits.resync_window =>
                    {
                        break;
                    }
                    Anchor::NeedMore | Anchor::Rejected => {
                        pos += 1;
                        self.dirs[i].hunted += 1;
                        self.stats.bytes_skipped += 1;
                    }
                },
                Phase::Framing => {
                    let Some(head) = Header::parse(rest) else {
                        break;
                    };
                    if let Err(e) = head.plausible() {
                        // The header may be the middle of a frame (late join, or a resync
                        // that guessed wrong): the bytes after its first may still hold the
                        // real boundary.
                        self.lose_sync(side, ts_ns, e.to_string(), out);
                        continue;
                    }
                    if head.frame_len() > self.limits.max_frame {
                        pos += HEADER_LEN;
                        self.dirs[i].phase = Phase::Skipping {
                            left: u64::from(head.len),
                        };
                        self.stats.oversize_frames += 1;
                        self.oversize(side, ts_ns, &head, out);
                        continue;
                    }
                    let Some(data) = rest.get(HEADER_LEN..head.frame_len()) else {
                        break;
                    };
                    pos += head.frame_len();
                    self.on_frame(side, ts_ns, &head, data, out);
                }
            }
        }
        buf.drain(..pos);
        if buf.is_empty() && buf.capacity() > MAX_ANCHOR_FRAME {
            // Do not keep a big frame's allocation around for the connection's lifetime.
            buf = Vec::new();
        }
        self.dirs[i].buf = buf;
    }

    fn skip_done(&mut self, i: usize, left: u64, n: u64) {
        self.stats.bytes_skipped += n;
        self.dirs[i].phase = if n >= left {
            Phase::Framing
        } else {
            Phase::Skipping { left: left - n }
        };
    }

    fn oversize(&mut self, side: Side, ts_ns: u64, head: &Header, out: &mut Vec<CallEvent>) {
        let role = match head.kind {
            TYPE_REQUEST => Role::Request,
            TYPE_RESPONSE => Role::Response,
            _ => self.role(side).unwrap_or(Role::Request),
        };
        let body = Body::Unavailable {
            reason: format!("frame over the {}-byte limit", self.limits.max_frame),
            len: u64::from(head.len),
        };
        self.message(side, ts_ns, head.stream, role, body, out);
    }

    fn on_frame(
        &mut self,
        side: Side,
        ts_ns: u64,
        head: &Header,
        data: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        self.stats.frames += 1;
        match head.kind {
            TYPE_REQUEST => self.on_request(side, ts_ns, head, data, out),
            TYPE_RESPONSE => self.on_response(side, ts_ns, head, data, out),
            TYPE_DATA => self.on_data(side, ts_ns, head, data, out),
            // `plausible` admits no other type.
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        side: Side,
        ts_ns: u64,
        head: &Header,
        data: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        if self.client.is_none() {
            self.client = Some(side);
        }
        let req = match Request::decode_checked(data) {
            Some(r) => r,
            None => {
                self.stats.bad_envelopes += 1;
                let text = format!(
                    "ttrpc request on stream {} has no valid envelope ({} bytes)",
                    head.stream,
                    data.len()
                );
                return Self::notice(side, ts_ns, text, out);
            }
        };
        if let Some(old) = self.calls.remove(&head.stream) {
            // ttrpc forbids reusing a stream id; a reuse means the old call's end was lost.
            self.end_call(
                head.stream,
                old,
                side,
                ts_ns,
                Status {
                    abnormal: Some("stream id reused before the call ended".into()),
                    ..Status::default()
                },
                out,
            );
        }
        if self.calls.len() >= self.limits.max_streams.max(1) && self.calls.pop_first().is_some() {
            // Stream ids only grow, so the lowest id is the oldest call.
            self.stats.evicted_streams += 1;
        }
        let method = Method {
            name: Arc::from(req.method_name()),
            inferred: false,
        };
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
        let namespace = [NAMESPACE_KEY, NAMESPACE_KEY_GRPC].iter().find_map(|k| {
            metadata
                .iter()
                .find(|(mk, _)| mk.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.as_deref().map(Arc::from))
        });
        if req.timeout_nano != 0 {
            metadata.push((TIMEOUT_KEY.to_string(), Some(req.timeout_nano.to_string())));
        }
        if head.flags & FLAG_REMOTE_OPEN != 0 {
            metadata.push(("ttrpc-stream".into(), Some("client streaming".into())));
        } else if head.flags & FLAG_REMOTE_CLOSED != 0 {
            metadata.push(("ttrpc-stream".into(), Some("server streaming".into())));
        }
        self.stats.calls_started += 1;
        out.push(CallEvent {
            ts_ns,
            side,
            stream: u64::from(head.stream),
            kind: CallEventKind::Start {
                method: Some(method.clone()),
                metadata,
            },
        });
        self.calls.insert(
            head.stream,
            Call {
                start_ts: ts_ns,
                method: Some(method),
                namespace,
                requests: 0,
                responses: 0,
            },
        );
        self.message(
            side,
            ts_ns,
            head.stream,
            Role::Request,
            Body::Protobuf(req.payload),
            out,
        );
    }

    fn on_response(
        &mut self,
        side: Side,
        ts_ns: u64,
        head: &Header,
        data: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        if self.client.is_none() {
            self.client = Some(side.other());
        }
        let Some(resp) = Response::decode_checked(data) else {
            self.stats.bad_envelopes += 1;
            let status = Status {
                abnormal: Some(format!(
                    "response envelope does not decode ({} bytes)",
                    data.len()
                )),
                ..Status::default()
            };
            return self.end(side, ts_ns, head.stream, status, out);
        };
        let (code, message) = match &resp.status {
            Some(s) => (
                s.code,
                (!s.message.is_empty()).then(|| String::from_utf8_lossy(&s.message).into_owned()),
            ),
            None => (0, None),
        };
        // An error carries no meaningful payload; an OK response always is a message, even
        // an empty one (`google.protobuf.Empty`).
        if code == 0 || !resp.payload.is_empty() {
            self.message(
                side,
                ts_ns,
                head.stream,
                Role::Response,
                Body::Protobuf(resp.payload),
                out,
            );
        }
        let status = Status {
            // Negative codes do not exist in gRPC; show them as their two's complement rather
            // than drop them.
            code: Some(code as u32),
            message,
            abnormal: None,
        };
        self.end(side, ts_ns, head.stream, status, out);
    }

    fn on_data(
        &mut self,
        side: Side,
        ts_ns: u64,
        head: &Header,
        data: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        let role = match self.role(side) {
            Some(r) => r,
            // Data before any request or response: a late join on a stream. Client-initiated
            // streams are the only ones, but either side sends data, so the role is unknown.
            None => {
                self.stats.orphan_frames += 1;
                return;
            }
        };
        if head.flags & FLAG_NO_DATA == 0 {
            self.message(
                side,
                ts_ns,
                head.stream,
                role,
                Body::Protobuf(data.to_vec()),
                out,
            );
        }
        // The server closing its half ends the stream (ttrpc's server deletes it then); the
        // client closing its half only means it sends no more.
        if role == Role::Response && head.flags & FLAG_REMOTE_CLOSED != 0 {
            let status = Status {
                code: Some(0),
                ..Status::default()
            };
            self.end(side, ts_ns, head.stream, status, out);
        }
    }

    fn message(
        &mut self,
        side: Side,
        ts_ns: u64,
        stream: u32,
        role: Role,
        body: Body,
        out: &mut Vec<CallEvent>,
    ) {
        let (index, method, namespace) = match self.calls.get_mut(&stream) {
            Some(call) => {
                let n = match role {
                    Role::Request => &mut call.requests,
                    Role::Response => &mut call.responses,
                };
                let index = *n;
                *n += 1;
                (index, call.method.clone(), call.namespace.clone())
            }
            None => {
                self.stats.orphan_frames += 1;
                (0, None, None)
            }
        };
        self.stats.messages += 1;
        out.push(CallEvent {
            ts_ns,
            side,
            stream: u64::from(stream),
            kind: CallEventKind::Message {
                role,
                index,
                method,
                namespace,
                body,
            },
        });
    }

    /// Ends the call on `stream`, or reports the end of an untracked one (late join): its
    /// status is worth a row even without a method.
    fn end(
        &mut self,
        side: Side,
        ts_ns: u64,
        stream: u32,
        status: Status,
        out: &mut Vec<CallEvent>,
    ) {
        match self.calls.remove(&stream) {
            Some(call) => self.end_call(stream, call, side, ts_ns, status, out),
            None => out.push(CallEvent {
                ts_ns,
                side,
                stream: u64::from(stream),
                kind: CallEventKind::End {
                    method: None,
                    namespace: None,
                    status,
                    latency_ns: None,
                },
            }),
        }
    }

    fn end_call(
        &mut self,
        stream: u32,
        call: Call,
        side: Side,
        ts_ns: u64,
        status: Status,
        out: &mut Vec<CallEvent>,
    ) {
        self.stats.calls_ended += 1;
        out.push(CallEvent {
            ts_ns,
            side,
            stream: u64::from(stream),
            kind: CallEventKind::End {
                method: call.method,
                namespace: call.namespace,
                status,
                latency_ns: Some(ts_ns.saturating_sub(call.start_ts)),
            },
        });
    }
}

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.stats.bytes += bytes.len() as u64;
        self.feed_bytes(side, ts_ns, bytes, out);
    }

    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing;
        self.dirs[idx(side)].buf.clear();
        self.dirs[idx(side)].phase = Phase::Framing;
        self.lose_sync(side, ts_ns, format!("capture lost {missing} bytes"), out);
    }

    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let side = self.client.map_or(Side::B, Side::other);
        let open = std::mem::take(&mut self.calls);
        for (stream, call) in open {
            let status = Status {
                abnormal: Some(end.reason().into()),
                ..Status::default()
            };
            self.end_call(stream, call, side, ts_ns, status, out);
        }
    }

    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Ttrpc
    }

    fn buffered(&self) -> usize {
        self.dirs.iter().map(|d| d.buf.len()).sum()
    }

    fn is_desynchronised(&self, side: Side) -> bool {
        matches!(self.dirs[idx(side)].phase, Phase::Hunting)
    }
}
