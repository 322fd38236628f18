//! gRPC calls on one HTTP/2 connection: pairs request and response by stream id, frames and
//! decompresses messages, reads status trailers, and turns all of it into `CallEvent`s. The
//! HTTP/2 layer hands over decoded header lists and DATA payloads; nothing here sees frames.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::compress::{self, Encoding};
use super::framing::{self, Deframer, Piece};
use super::infer::{Catalog, Evidence, Hints, Inference};
use super::status;
use crate::protocol::call::{Body, CallEvent, CallEventKind, Method, Role, Side, Status};
use crate::protocol::http2::Stats;
use crate::protocol::http2::frame::error_code_name;
use crate::protocol::http2::hpack::HeaderList;

/// Name shown for a header field whose name is unknown (late join). `<` and `>` cannot occur in
/// a real header name, so it cannot be mistaken for one.
pub const UNKNOWN_NAME: &str = "<unknown>";

/// Why a call's status is not shown: its trailers refer to header table entries from before
/// decoding started (late join, lost bytes), so `grpc-status` cannot be read.
pub const UNKNOWN_STATUS: &str = "status unknown (header table entry from before decoding started)";

/// The header that carries the containerd namespace of a call.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// Events of one call held back while its method is being inferred; beyond it they are released
/// with whatever name the evidence so far gives (possibly none).
pub const MAX_HELD_EVENTS: usize = 32;

/// Message bytes of one call held back while its method is being inferred.
pub const MAX_HELD_BYTES: usize = 1 << 20;

/// Message bytes held back for inference across all calls of a connection.
pub const MAX_HELD_TOTAL: usize = 8 << 20;

/// How long (capture time) a call's events may be held back for inference: a streaming call
/// whose response is slow to come is shown unnamed rather than late.
pub const MAX_HOLD_NS: u64 = 1_000_000_000;

/// Stream ids of ended calls remembered so their late frames are not taken for calls that
/// started before decoding did.
const RETIRED_STREAMS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    pub max_streams: usize,
    /// Bytes of incomplete messages held across all calls of the connection; beyond it the
    /// message that grew is abandoned (reported unavailable and skipped).
    pub max_buffered: usize,
    pub max_message: usize,
    pub max_decompressed: usize,
}

/// When and from where an input arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub ts_ns: u64,
    pub side: Side,
    /// `Request` when `side` is the client.
    pub role: Role,
}

#[derive(Debug)]
struct Half {
    deframer: Deframer,
    encoding: Encoding,
    next_index: u64,
    ended: bool,
    /// Non-gRPC body bytes, up to the message limit; `raw_len` counts them all.
    raw: Vec<u8>,
    raw_len: u64,
    /// The raw body was dropped to respect the connection's buffer limit.
    raw_dropped: bool,
    /// Bytes of this half were lost (or it started before decoding did): DATA frames are
    /// skipped until one starts a message (`framing::starts_messages`).
    seek: bool,
}

impl Half {
    fn new(max_message: usize) -> Half {
        Half {
            deframer: Deframer::new(max_message),
            encoding: Encoding::Identity,
            next_index: 0,
            ended: false,
            raw: Vec::new(),
            raw_len: 0,
            raw_dropped: false,
            seek: false,
        }
    }
}

/// Inference state of a call whose `:path` is unknown.
#[derive(Debug)]
struct Pending {
    evidence: Evidence,
    /// The unknown HPACK entry its `:path` came from, if that can be named.
    slot: Option<usize>,
    hints: Hints,
    /// Events not yet released, oldest first, with their message bytes.
    held: Vec<CallEvent>,
    held_bytes: usize,
    /// Capture time of the oldest held event.
    since: u64,
    /// Still holding events back (false once released, named or not).
    holding: bool,
}

#[derive(Debug)]
struct Call {
    start_ts: u64,
    method: Option<Method>,
    namespace: Option<Arc<str>>,
    /// `content-type: application/grpc[+proto…]` on the request.
    grpc: bool,
    http_status: Option<u32>,
    response_headers: bool,
    request: Half,
    response: Half,
    /// Present while the method is unknown (or was inferred).
    pending: Option<Box<Pending>>,
    /// Taken up mid-call (it started before decoding did): no Start row, no latency.
    adopted: bool,
}

impl Call {
    /// Bytes this call holds in incomplete messages and bodies.
    fn held(&self) -> usize {
        self.request.deframer.held()
            + self.response.deframer.held()
            + self.request.raw.len()
            + self.response.raw.len()
    }

    fn half(&mut self, role: Role) -> &mut Half {
        match role {
            Role::Request => &mut self.request,
            Role::Response => &mut self.response,
        }
    }
}

/// Method inference across the calls of one connection.
#[derive(Debug)]
struct InferState {
    inference: Inference,
    /// Message bytes held back for inference, all calls together.
    held_total: usize,
    /// Calls currently holding events back.
    holding: usize,
}

/// The calls of one connection, keyed by stream id.
#[derive(Debug)]
pub struct Calls {
    calls: BTreeMap<u32, Call>,
    limits: CallLimits,
    /// Sum of `Call::held` over `calls`.
    held: usize,
    infer: InferState,
    /// Decoding started mid-connection or resumed after a loss: DATA on a stream never seen may
    /// belong to a call that started before, and is taken up (adopted).
    adopting: bool,
    /// The first stream whose request headers were decoded since the request direction was
    /// last (re)synchronised: streams below it may predate decoding, streams above cannot.
    first_fresh: Option<u32>,
    retired: VecDeque<u32>,
}

impl Calls {
    pub fn new(limits: CallLimits) -> Calls {
        Calls {
            calls: BTreeMap::new(),
            limits,
            held: 0,
            infer: InferState {
                inference: Inference::new(Catalog::embedded()),
                held_total: 0,
                holding: 0,
            },
            adopting: false,
            first_fresh: None,
            retired: VecDeque::new(),
        }
    }

    /// Uses `catalog` (e.g. built from a schema with the user's protos) to infer methods;
    /// `None` turns inference off.
    pub fn set_catalog(&mut self, catalog: Option<Arc<Catalog>>) {
        self.infer.inference.set_catalog(catalog);
    }

    /// Decoding of the direction carrying `role` starts mid-connection (late join) or resumes
    /// after lost bytes. Messages cut by the loss are reported unavailable; framing of each
    /// open call's `role` half resumes at the next DATA frame that starts a message. Returns how
    /// many messages were cut.
    pub fn resume(
        &mut self,
        at: Origin,
        lost: bool,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) -> usize {
        self.adopting = true;
        if at.role == Role::Request {
            self.first_fresh = None;
            self.infer.inference.table_lost();
        }
        let mut cut = 0;
        let streams: Vec<u32> = self.calls.keys().copied().collect();
        for stream in streams {
            let Some(call) = self.calls.get_mut(&stream) else {
                continue;
            };
            let before = call.held();
            let max = self.limits.max_message;
            let half = call.half(at.role);
            if half.ended || half.seek {
                continue;
            }
            let partial = half.deframer.partial();
            half.deframer = Deframer::new(max);
            half.seek = true;
            if !half.raw.is_empty() {
                half.raw = Vec::new();
                half.raw_dropped = true;
            }
            self.held = (self.held + call.held()).saturating_sub(before);
            if let (true, Some((claimed, seen))) = (lost, partial) {
                cut += 1;
                let body = Body::Unavailable {
                    reason: format!("bytes lost by the capture ({seen} bytes seen)"),
                    len: claimed,
                };
                Self::message(call, &mut self.infer, at, stream, body, out, stats);
            }
        }
        cut
    }

    /// Releases events held back for inference for longer than `MAX_HOLD_NS` before `ts_ns`.
    pub fn tick(&mut self, ts_ns: u64, out: &mut Vec<CallEvent>, stats: &mut Stats) {
        if self.infer.holding == 0 {
            return;
        }
        for call in self.calls.values_mut() {
            let stale = call
                .pending
                .as_ref()
                .is_some_and(|p| p.holding && ts_ns.saturating_sub(p.since) > MAX_HOLD_NS);
            if stale {
                Self::release(call, &mut self.infer, out, stats);
            }
        }
    }

    /// Bytes held in incomplete messages and bodies across all calls, and in messages held
    /// back while their call's method is inferred.
    pub fn buffered(&self) -> usize {
        self.held + self.infer.held_total
    }

    /// Calls currently open.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// A complete header block on `stream`.
    pub fn headers(
        &mut self,
        at: Origin,
        stream: u32,
        list: &HeaderList,
        end_stream: bool,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        match at.role {
            Role::Request => self.request_headers(at, stream, list, end_stream, out, stats),
            Role::Response => self.response_headers(at, stream, list, end_stream, out, stats),
        }
    }

    fn request_headers(
        &mut self,
        at: Origin,
        stream: u32,
        list: &HeaderList,
        end_stream: bool,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        if let Some(call) = self.calls.get_mut(&stream) {
            // Request trailers (rare in gRPC): only their END_STREAM matters.
            if end_stream && !call.request.ended {
                call.request.ended = true;
                let before = call.held();
                Self::finish_half(
                    call,
                    &mut self.infer,
                    at,
                    stream,
                    Role::Request,
                    &self.limits,
                    out,
                    stats,
                );
                self.held = (self.held + call.held()).saturating_sub(before);
            }
            return;
        }
        if self.calls.len() >= self.limits.max_streams.max(1)
            && let Some((_, mut old)) = self.calls.pop_first()
        {
            // Stream ids only grow, so the lowest id is the oldest call.
            self.held = self.held.saturating_sub(old.held());
            stats.evicted_streams += 1;
            Self::release(&mut old, &mut self.infer, out, stats);
        }
        if self.adopting && self.first_fresh.is_none() {
            self.first_fresh = Some(stream);
        }
        let method = list.get(":path").map(|p| Method {
            name: Arc::from(p),
            inferred: false,
        });
        let namespace = list.get(NAMESPACE_HEADER).map(Arc::from);
        let has_unknown = list
            .fields
            .iter()
            .any(|f| f.name.is_none() || f.value.is_none());
        let grpc = match list.get("content-type") {
            Some(ct) => ct.starts_with("application/grpc"),
            // Its entry predates decoding: HTTP/2 on a runtime's socket is gRPC.
            None => has_unknown,
        };
        let pending = match &method {
            Some(m) => {
                self.infer.inference.saw_path(&m.name);
                None
            }
            // Inferred only when the header block had fields from unknown table entries (late
            // join, lost bytes): a block that simply lacks `:path` is shown as it is.
            None if self.infer.inference.catalog().is_some()
                && list.fields.iter().any(|f| f.name.is_none()) =>
            {
                self.infer.holding += 1;
                let slot = path_slot(list);
                let evidence = slot
                    .and_then(|s| self.infer.inference.slot(s))
                    .map_or_else(Evidence::new, Evidence::seeded);
                Some(Box::new(Pending {
                    evidence,
                    slot,
                    hints: Hints {
                        namespace: namespace.is_some(),
                    },
                    held: Vec::new(),
                    held_bytes: 0,
                    since: at.ts_ns,
                    holding: true,
                }))
            }
            None => None,
        };
        let mut request = Half::new(self.limits.max_message);
        request.encoding = Encoding::from_header(list.get("grpc-encoding"));
        request.ended = end_stream;
        let metadata = list
            .fields
            .iter()
            .map(|f| {
                let name = f
                    .name
                    .as_deref()
                    .map_or_else(|| UNKNOWN_NAME.to_string(), lossy);
                (name, f.value.as_deref().map(lossy))
            })
            .collect();
        stats.calls_started += 1;
        let mut call = Call {
            start_ts: at.ts_ns,
            method: method.clone(),
            namespace,
            grpc,
            http_status: None,
            response_headers: false,
            request,
            response: Half::new(self.limits.max_message),
            pending,
            adopted: false,
        };
        Self::emit(
            &mut call,
            &mut self.infer,
            CallEvent {
                ts_ns: at.ts_ns,
                side: at.side,
                stream: u64::from(stream),
                kind: CallEventKind::Start { method, metadata },
            },
            0,
            out,
        );
        self.calls.insert(stream, call);
    }

    fn response_headers(
        &mut self,
        at: Origin,
        stream: u32,
        list: &HeaderList,
        end_stream: bool,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        let Some(call) = self.calls.get_mut(&stream) else {
            stats.orphan_frames += 1;
            return;
        };
        let http_status = list.get(":status").and_then(|s| s.parse::<u32>().ok());
        if !call.response_headers {
            if http_status.is_some_and(|s| (100..200).contains(&s)) && !end_stream {
                // Informational (1xx) headers: the real response headers follow.
                return;
            }
            call.response_headers = true;
            call.http_status = http_status;
            call.response.encoding = Encoding::from_header(list.get("grpc-encoding"));
            if !end_stream {
                return;
            }
        }
        // Trailers, or a trailers-only response (HEADERS with END_STREAM carrying grpc-status).
        call.response.ended = true;
        let before = call.held();
        Self::finish_half(
            call,
            &mut self.infer,
            at,
            stream,
            Role::Response,
            &self.limits,
            out,
            stats,
        );
        self.held = (self.held + call.held()).saturating_sub(before);
        let status = if call.grpc {
            match list.get("grpc-status").and_then(status::parse_code) {
                Some(code) => Status {
                    code: Some(code),
                    message: list.get("grpc-message").map(status::percent_decode),
                    abnormal: None,
                },
                None if list
                    .fields
                    .iter()
                    .any(|f| f.name.is_none() || f.value.is_none()) =>
                {
                    Status {
                        code: None,
                        message: None,
                        abnormal: Some(UNKNOWN_STATUS.to_string()),
                    }
                }
                None => Status {
                    code: None,
                    message: None,
                    abnormal: Some(match call.http_status {
                        Some(s) => format!("HTTP status {s} without grpc-status"),
                        None => "trailers without grpc-status".to_string(),
                    }),
                },
            }
        } else {
            Status {
                code: call.http_status,
                message: None,
                abnormal: None,
            }
        };
        self.end(stream, at, status, out, stats);
    }

    /// A DATA payload (padding removed) on `stream`.
    pub fn data(
        &mut self,
        at: Origin,
        stream: u32,
        data: &[u8],
        end_stream: bool,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        if !self.calls.contains_key(&stream) && !self.adopt(at, stream, stats) {
            stats.orphan_frames += 1;
            return;
        }
        let Some(call) = self.calls.get_mut(&stream) else {
            return;
        };
        if call.half(at.role).ended {
            stats.orphan_frames += 1;
            return;
        }
        let held_before = call.held();
        let grpc = call.grpc;
        let half = call.half(at.role);
        if half.seek {
            if grpc && !framing::starts_messages(data, self.limits.max_message) {
                // Still inside a message whose start was lost.
                stats.skipped_data_frames += 1;
                if !end_stream {
                    return;
                }
                half.ended = true;
                if at.role == Role::Response {
                    let status = Status {
                        abnormal: Some("response ended without trailers".into()),
                        ..Status::default()
                    };
                    self.end(stream, at, status, out, stats);
                }
                return;
            }
            half.seek = false;
        }
        if call.grpc {
            let mut pieces = Vec::new();
            call.half(at.role).deframer.push(data, &mut pieces);
            for piece in pieces {
                let body = Self::body(call, at.role, piece, &self.limits, stats);
                Self::message(call, &mut self.infer, at, stream, body, out, stats);
            }
        } else {
            let max = self.limits.max_message;
            let half = call.half(at.role);
            half.raw_len += data.len() as u64;
            if half.raw_len <= max as u64 {
                half.raw.extend_from_slice(data);
            } else {
                // Over the limit: stop keeping bytes, only count them.
                half.raw = Vec::new();
            }
        }
        self.held = (self.held + call.held()).saturating_sub(held_before);
        if self.held > self.limits.max_buffered {
            // Too much is waiting for the rest of its message on this connection: give up the
            // message that just grew rather than grow without bound.
            let before = call.held();
            let max = self.limits.max_buffered;
            let reason = format!("connection buffer limit of {max} bytes exceeded");
            let half = call.half(at.role);
            if let Some(len) = half.deframer.abandon() {
                stats.oversize_messages += 1;
                Self::message(
                    call,
                    &mut self.infer,
                    at,
                    stream,
                    Body::Unavailable { reason, len },
                    out,
                    stats,
                );
            } else if !half.raw.is_empty() {
                half.raw = Vec::new();
                half.raw_dropped = true;
            }
            self.held = (self.held + call.held()).saturating_sub(before);
        }
        if !end_stream {
            return;
        }
        call.half(at.role).ended = true;
        let before = call.held();
        Self::finish_half(
            call,
            &mut self.infer,
            at,
            stream,
            at.role,
            &self.limits,
            out,
            stats,
        );
        self.held = (self.held + call.held()).saturating_sub(before);
        if at.role == Role::Response {
            let status = if call.grpc {
                Status {
                    abnormal: Some("response ended without trailers".into()),
                    ..Status::default()
                }
            } else {
                Status {
                    code: call.http_status,
                    ..Status::default()
                }
            };
            self.end(stream, at, status, out, stats);
        }
    }

    /// Takes up a call that started before decoding did, on its first DATA frame, if `stream`
    /// can be such a call. Returns whether it was adopted.
    fn adopt(&mut self, at: Origin, stream: u32, stats: &mut Stats) -> bool {
        let older = self.first_fresh.is_none_or(|first| stream < first);
        if !self.adopting || !older || stream.is_multiple_of(2) || self.retired.contains(&stream) {
            return false;
        }
        if self.calls.len() >= self.limits.max_streams.max(1) {
            return false;
        }
        let mut request = Half::new(self.limits.max_message);
        let mut response = Half::new(self.limits.max_message);
        request.seek = true;
        response.seek = true;
        let pending = self.infer.inference.catalog().is_some().then(|| {
            self.infer.holding += 1;
            Box::new(Pending {
                evidence: Evidence::new(),
                slot: None,
                hints: Hints::default(),
                held: Vec::new(),
                held_bytes: 0,
                since: at.ts_ns,
                holding: true,
            })
        });
        stats.adopted_calls += 1;
        self.calls.insert(
            stream,
            Call {
                start_ts: at.ts_ns,
                method: None,
                namespace: None,
                // gRPC is what runs over HTTP/2 on these sockets.
                grpc: true,
                http_status: None,
                // A response already under way had its headers before we joined.
                response_headers: at.role == Role::Response,
                request,
                response,
                pending,
                adopted: true,
            },
        );
        true
    }

    /// RST_STREAM from either side.
    pub fn reset(
        &mut self,
        at: Origin,
        stream: u32,
        code: u32,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        if !self.calls.contains_key(&stream) {
            // grpc-go resets streams after their trailers too: nothing to report.
            return;
        }
        let abnormal = format!("RST_STREAM {} from {}", error_code_name(code), who(at.role));
        self.end(
            stream,
            at,
            Status {
                abnormal: Some(abnormal),
                ..Status::default()
            },
            out,
            stats,
        );
    }

    /// GOAWAY from either side; the connection layer emits the Notice row.
    pub fn goaway(
        &mut self,
        at: Origin,
        last_stream: u32,
        code: u32,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        if at.role == Role::Response {
            // Client-initiated streams above `last_stream` were never processed by the server.
            let unprocessed: Vec<u32> = self
                .calls
                .range(last_stream.saturating_add(1)..)
                .map(|(&s, _)| s)
                .collect();
            for stream in unprocessed {
                let abnormal =
                    format!("not processed: GOAWAY from server (last stream {last_stream})");
                self.end(
                    stream,
                    at,
                    Status {
                        abnormal: Some(abnormal),
                        ..Status::default()
                    },
                    out,
                    stats,
                );
            }
        }
        if code != 0 {
            let open: Vec<u32> = self.calls.keys().copied().collect();
            for stream in open {
                let abnormal = format!("GOAWAY {} from {}", error_code_name(code), who(at.role));
                self.end(
                    stream,
                    at,
                    Status {
                        abnormal: Some(abnormal),
                        ..Status::default()
                    },
                    out,
                    stats,
                );
            }
        }
    }

    /// The connection ended: every open call ends abnormally.
    pub fn close(&mut self, at: Origin, reason: &str, out: &mut Vec<CallEvent>, stats: &mut Stats) {
        let open: Vec<u32> = self.calls.keys().copied().collect();
        for stream in open {
            self.end(
                stream,
                at,
                Status {
                    abnormal: Some(reason.to_string()),
                    ..Status::default()
                },
                out,
                stats,
            );
        }
    }

    fn end(
        &mut self,
        stream: u32,
        at: Origin,
        status: Status,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        let Some(mut call) = self.calls.remove(&stream) else {
            return;
        };
        self.held = self.held.saturating_sub(call.held());
        stats.calls_ended += 1;
        if self.retired.len() >= RETIRED_STREAMS {
            self.retired.pop_front();
        }
        self.retired.push_back(stream);
        Self::release(&mut call, &mut self.infer, out, stats);
        if let Some(p) = &call.pending {
            if let Some(slot) = p.slot {
                if p.evidence.any_possible() {
                    self.infer.inference.learn(slot, &p.evidence);
                } else {
                    // This call contradicts what its entry's earlier calls showed.
                    self.infer.inference.forget(slot);
                }
            }
            if call.method.is_none() {
                stats.uninferred_calls += 1;
            }
        }
        out.push(CallEvent {
            ts_ns: at.ts_ns,
            side: at.side,
            stream: u64::from(stream),
            kind: CallEventKind::End {
                method: call.method,
                namespace: call.namespace,
                status,
                latency_ns: (!call.adopted).then(|| at.ts_ns.saturating_sub(call.start_ts)),
            },
        });
    }

    /// Names the call from the evidence so far if it can, and if events are held back, releases
    /// them (named or not). Later events of a call released unnamed carry a name only if one is
    /// inferred by then.
    fn release(call: &mut Call, inf: &mut InferState, out: &mut Vec<CallEvent>, stats: &mut Stats) {
        let Some(p) = call.pending.as_deref_mut() else {
            return;
        };
        Self::try_name(&mut call.method, p, &mut inf.inference, stats);
        if !p.holding {
            return;
        }
        p.holding = false;
        inf.holding = inf.holding.saturating_sub(1);
        inf.held_total = inf.held_total.saturating_sub(p.held_bytes);
        p.held_bytes = 0;
        for mut ev in p.held.drain(..) {
            match &mut ev.kind {
                CallEventKind::Start { method, .. }
                | CallEventKind::Message { method, .. }
                | CallEventKind::End { method, .. } => method.clone_from(&call.method),
                CallEventKind::Notice { .. } => {}
            }
            out.push(ev);
        }
    }

    fn try_name(method: &mut Option<Method>, p: &Pending, inf: &mut Inference, stats: &mut Stats) {
        if method.is_some() || p.evidence.observed() == 0 {
            return;
        }
        if let Some(name) = inf.decide(&p.evidence, p.slot, p.hints) {
            inf.saw_inferred(&name);
            stats.inferred_calls += 1;
            *method = Some(Method {
                name,
                inferred: true,
            });
        }
    }

    /// Sends `ev` out, or holds it back while the call's method is being inferred.
    fn emit(
        call: &mut Call,
        inf: &mut InferState,
        ev: CallEvent,
        bytes: usize,
        out: &mut Vec<CallEvent>,
    ) {
        match call.pending.as_deref_mut() {
            Some(p) if p.holding => {
                if p.held.is_empty() {
                    p.since = ev.ts_ns;
                }
                p.held.push(ev);
                p.held_bytes += bytes;
                inf.held_total += bytes;
            }
            _ => out.push(ev),
        }
    }

    /// END_STREAM on one half: report a message cut short, or deliver a non-gRPC body.
    #[allow(clippy::too_many_arguments)]
    fn finish_half(
        call: &mut Call,
        inf: &mut InferState,
        at: Origin,
        stream: u32,
        role: Role,
        limits: &CallLimits,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        let grpc = call.grpc;
        let half = call.half(role);
        let body = if grpc {
            half.deframer
                .partial()
                .map(|(claimed, seen)| Body::Unavailable {
                    reason: format!("stream ended inside a message ({seen} bytes seen)"),
                    len: claimed,
                })
        } else if half.raw_len == 0 {
            None
        } else if half.raw_len > limits.max_message as u64 || half.raw_dropped {
            stats.oversize_messages += 1;
            Some(Body::Unavailable {
                reason: format!("body exceeds the {}-byte limit", limits.max_message),
                len: half.raw_len,
            })
        } else {
            Some(Body::Raw(std::mem::take(&mut half.raw)))
        };
        if let Some(body) = body {
            Self::message(call, inf, Origin { role, ..at }, stream, body, out, stats);
        }
    }

    fn body(
        call: &mut Call,
        role: Role,
        piece: Piece,
        limits: &CallLimits,
        stats: &mut Stats,
    ) -> Body {
        match piece {
            Piece::Message {
                compressed: false,
                data,
            } => Body::Protobuf(data),
            Piece::Message {
                compressed: true,
                data,
            } => {
                match compress::decompress(
                    &call.half(role).encoding,
                    &data,
                    limits.max_decompressed,
                ) {
                    Ok(plain) => Body::Protobuf(plain),
                    Err(e) => {
                        stats.decompress_failures += 1;
                        Body::Unavailable {
                            reason: e.to_string(),
                            len: data.len() as u64,
                        }
                    }
                }
            }
            Piece::Oversize { len, .. } => {
                stats.oversize_messages += 1;
                Body::Unavailable {
                    reason: format!("message exceeds the {}-byte limit", limits.max_message),
                    len,
                }
            }
            Piece::Invalid { flag } => Body::Unavailable {
                reason: format!(
                    "invalid gRPC message prefix (flag 0x{flag:02x}); rest of stream skipped"
                ),
                len: 0,
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        call: &mut Call,
        inf: &mut InferState,
        at: Origin,
        stream: u32,
        body: Body,
        out: &mut Vec<CallEvent>,
        stats: &mut Stats,
    ) {
        let half = call.half(at.role);
        let index = half.next_index;
        half.next_index += 1;
        stats.messages += 1;
        let mut settle = false;
        if let (Some(p), Some(cat)) = (call.pending.as_deref_mut(), inf.inference.catalog()) {
            if let Body::Protobuf(bytes) = &body {
                p.evidence.observe(cat, at.role, index, bytes);
            }
            if p.holding {
                // The first response message usually settles it.
                settle = at.role == Role::Response;
            } else if call.method.is_none() {
                Self::try_name(&mut call.method, p, &mut inf.inference, stats);
            }
        }
        let bytes = match &body {
            Body::Protobuf(b) | Body::Raw(b) => b.len(),
            Body::Text { text, .. } => text.len(),
            Body::Unavailable { .. } => 0,
        };
        let ev = CallEvent {
            ts_ns: at.ts_ns,
            side: at.side,
            stream: u64::from(stream),
            kind: CallEventKind::Message {
                role: at.role,
                index,
                method: call.method.clone(),
                namespace: call.namespace.clone(),
                body,
            },
        };
        Self::emit(call, inf, ev, bytes, out);
        if let Some(p) = call.pending.as_deref()
            && p.holding
        {
            // Limits keep rows from waiting without bound.
            let forced = p.held.len() >= MAX_HELD_EVENTS
                || p.held_bytes >= MAX_HELD_BYTES
                || inf.held_total >= MAX_HELD_TOTAL;
            if settle && !forced {
                Self::try_name(&mut call.method, p, &mut inf.inference, stats);
            }
            if forced || call.method.is_some() {
                Self::release(call, inf, out, stats);
            }
        }
    }
}

/// Which field of a request header block holds `:path` when its entry is unknown: the unknown
/// indexed field right after `:scheme` (grpc-go's order is `:method`, `:scheme`, `:path`,
/// `:authority`), else the first unknown one among the pseudo-headers. Its slot names it.
fn path_slot(list: &HeaderList) -> Option<usize> {
    let fields = &list.fields;
    let after_scheme = fields
        .iter()
        .position(|f| f.name_str() == Some(":scheme"))
        .and_then(|i| fields.get(i + 1))
        .filter(|f| f.name.is_none());
    let first_unknown = || {
        fields
            .iter()
            .take_while(|f| f.name.as_deref().is_none_or(|n| n.starts_with(b":")))
            .find(|f| f.name.is_none())
    };
    after_scheme.or_else(first_unknown)?.unknown_slot
}

fn who(role: Role) -> &'static str {
    match role {
        Role::Request => "client",
        Role::Response => "server",
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
