//! gRPC calls on one HTTP/2 connection: pairs request and response by stream id, frames and
//! decompresses messages, reads status trailers, and turns all of it into `CallEvent`s. The
//! HTTP/2 layer hands over decoded header lists and DATA payloads; nothing here sees frames.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::compress::{self, Encoding};
use super::framing::{Deframer, Piece};
use super::status;
use crate::call::{Body, CallEvent, CallEventKind, Method, Role, Side, Status};
use crate::http2::Stats;
use crate::http2::frame::error_code_name;
use crate::http2::hpack::HeaderList;

/// Name shown for a header field whose name is unknown (late join). `<` and `>` cannot occur in
/// a real header name, so it cannot be mistaken for one.
pub const UNKNOWN_NAME: &str = "<unknown>";

/// The header that carries the containerd namespace of a call.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

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
        }
    }
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

/// The calls of one connection, keyed by stream id.
#[derive(Debug)]
pub struct Calls {
    calls: BTreeMap<u32, Call>,
    limits: CallLimits,
    /// Sum of `Call::held` over `calls`.
    held: usize,
}

impl Calls {
    pub fn new(limits: CallLimits) -> Calls {
        Calls {
            calls: BTreeMap::new(),
            limits,
            held: 0,
        }
    }

    /// Bytes held in incomplete messages and bodies across all calls.
    pub fn buffered(&self) -> usize {
        self.held
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
                Self::finish_half(call, at, stream, Role::Request, &self.limits, out, stats);
                self.held = (self.held + call.held()).saturating_sub(before);
            }
            return;
        }
        if self.calls.len() >= self.limits.max_streams.max(1)
            && let Some((_, old)) = self.calls.pop_first()
        {
            // Stream ids only grow, so the lowest id is the oldest call.
            self.held = self.held.saturating_sub(old.held());
            stats.evicted_streams += 1;
        }
        let method = list.get(":path").map(|p| Method {
            name: Arc::from(p),
            inferred: false,
        });
        let namespace = list.get(NAMESPACE_HEADER).map(Arc::from);
        let grpc = list
            .get("content-type")
            .is_some_and(|ct| ct.starts_with("application/grpc"));
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
        out.push(CallEvent {
            ts_ns: at.ts_ns,
            side: at.side,
            stream: u64::from(stream),
            kind: CallEventKind::Start {
                method: method.clone(),
                metadata,
            },
        });
        self.calls.insert(
            stream,
            Call {
                start_ts: at.ts_ns,
                method,
                namespace,
                grpc,
                http_status: None,
                response_headers: false,
                request,
                response: Half::new(self.limits.max_message),
            },
        );
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
        Self::finish_half(call, at, stream, Role::Response, &self.limits, out, stats);
        self.held = (self.held + call.held()).saturating_sub(before);
        let status = if call.grpc {
            match list.get("grpc-status").and_then(status::parse_code) {
                Some(code) => Status {
                    code: Some(code),
                    message: list.get("grpc-message").map(status::percent_decode),
                    abnormal: None,
                },
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
        let Some(call) = self.calls.get_mut(&stream) else {
            stats.orphan_frames += 1;
            return;
        };
        if call.half(at.role).ended {
            stats.orphan_frames += 1;
            return;
        }
        let held_before = call.held();
        if call.grpc {
            let mut pieces = Vec::new();
            call.half(at.role).deframer.push(data, &mut pieces);
            for piece in pieces {
                let body = Self::body(call, at.role, piece, &self.limits, stats);
                Self::message(call, at, stream, body, out, stats);
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
        Self::finish_half(call, at, stream, at.role, &self.limits, out, stats);
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

    /// The direction carrying `role` lost bytes and stopped decoding. Returns how many calls
    /// were abandoned without an End row: once the response direction is lost, no open call
    /// can be ended truthfully, so none is ended at all.
    pub fn direction_lost(&mut self, role: Role) -> usize {
        match role {
            Role::Response => {
                let n = self.calls.len();
                self.calls.clear();
                self.held = 0;
                n
            }
            // Responses still decode; requests simply receive nothing more.
            Role::Request => 0,
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
        let Some(call) = self.calls.remove(&stream) else {
            return;
        };
        self.held = self.held.saturating_sub(call.held());
        stats.calls_ended += 1;
        out.push(CallEvent {
            ts_ns: at.ts_ns,
            side: at.side,
            stream: u64::from(stream),
            kind: CallEventKind::End {
                method: call.method,
                namespace: call.namespace,
                status,
                latency_ns: Some(at.ts_ns.saturating_sub(call.start_ts)),
            },
        });
    }

    /// END_STREAM on one half: report a message cut short, or deliver a non-gRPC body.
    fn finish_half(
        call: &mut Call,
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
            Self::message(call, Origin { role, ..at }, stream, body, out, stats);
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

    fn message(
        call: &mut Call,
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
        out.push(CallEvent {
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
        });
    }
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
