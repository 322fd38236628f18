//! Header blocks on a call: request headers open it (method, namespace, metadata, encoding, and
//! method inference when `:path` is in an unknown table entry), response headers give its HTTP
//! status and encoding, trailers (or a trailers-only response) end it with its gRPC status.

use std::sync::Arc;

use super::call::{Call, Half, Pending};
use super::calls::{Calls, tracked};
use super::compress::Encoding;
use super::early::EarlyFrame;
use super::infer::{Evidence, Hints};
use super::status;
use crate::protocol::call::{CallEvent, Method, Role, Status};
use crate::protocol::http2::Origin;
use crate::protocol::http2::hpack::HeaderList;
use crate::protocol::kit::MessageCount;

/// Name shown for a header field whose name is unknown (late join). `<` and `>` cannot occur in
/// a real header name, so it cannot be mistaken for one.
pub const UNKNOWN_NAME: &str = "<unknown>";

/// Why a call's status is not shown: its trailers refer to header table entries from before
/// decoding started (late join, lost bytes), so `grpc-status` cannot be read.
pub const UNKNOWN_STATUS: &str = "status unknown (header table entry from before decoding started)";

/// The header that carries the containerd namespace of a call.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

impl Calls {
    /// A complete header block on `stream`.
    pub fn headers(
        &mut self,
        at: Origin,
        stream: u32,
        list: &HeaderList,
        end_stream: bool,
        out: &mut Vec<CallEvent>,
    ) {
        match at.role {
            Role::Request => self.request_headers(at, stream, list, end_stream, out),
            Role::Response => self.response_headers(at, stream, list, end_stream, out),
        }
    }

    fn request_headers(
        &mut self,
        at: Origin,
        stream: u32,
        list: &HeaderList,
        end_stream: bool,
        out: &mut Vec<CallEvent>,
    ) {
        if let Some(call) = self.calls.get_mut(&stream) {
            // Request trailers (rare in gRPC): only their END_STREAM matters.
            if end_stream && !call.request.ended {
                call.request.ended = true;
                let shared = &mut self.shared;
                tracked(&mut self.held, call, |call| {
                    shared.finish_half(call, at, stream, out);
                });
            }
            return;
        }
        let limits = self.shared.limits;
        if self.calls.len() >= limits.max_streams.max(1)
            && let Some((_, mut old)) = self.calls.pop_first()
        {
            // Stream ids only grow, so the lowest id is the oldest call.
            self.held = self.held.saturating_sub(old.held());
            self.shared.stats.evicted_streams += 1;
            self.shared.release(&mut old, out);
        }
        if self.adopting && self.first_fresh.is_none() {
            self.first_fresh = Some(stream);
        }
        let method = list.get(":path").map(|p| Method {
            name: Arc::from(p),
            inferred: false,
        });
        let namespace = list.get(NAMESPACE_HEADER).map(Arc::from);
        let grpc = match list.get("content-type") {
            Some(ct) => ct.starts_with("application/grpc"),
            // Its entry predates decoding: HTTP/2 on a runtime's socket is gRPC.
            None => has_unknown(list),
        };
        let inference = &mut self.shared.infer.inference;
        let pending = match &method {
            Some(m) => {
                inference.saw_path(&m.name);
                None
            }
            // Inferred only when the header block had fields from unknown table entries (late
            // join, lost bytes): a block that simply lacks `:path` is shown as it is.
            None if inference.catalog().is_some()
                && list.fields.iter().any(|f| f.name.is_none()) =>
            {
                let slot = path_slot(list);
                let evidence = slot
                    .and_then(|s| inference.slot(s))
                    .map_or_else(Evidence::new, Evidence::seeded);
                let hints = Hints {
                    namespace: namespace.is_some(),
                };
                Some(
                    self.shared
                        .hold(Pending::new(evidence, slot, hints, at.ts_ns)),
                )
            }
            None => None,
        };
        let mut request = Half::new(limits.max_message);
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
        self.shared.stats.calls_started += 1;
        let mut call = Call {
            start_ts: at.ts_ns,
            method: method.clone(),
            namespace,
            grpc,
            http_status: None,
            response_headers: false,
            request,
            response: Half::new(limits.max_message),
            counts: MessageCount::default(),
            pending,
            adopted: false,
        };
        let start = at.at().start(u64::from(stream), method, metadata);
        self.shared.emit(&mut call, start, 0, out);
        self.calls.insert(stream, call);
        self.highest_opened = self.highest_opened.max(stream);
        self.replay_early(stream, out);
    }

    fn response_headers(
        &mut self,
        at: Origin,
        stream: u32,
        list: &HeaderList,
        end_stream: bool,
        out: &mut Vec<CallEvent>,
    ) {
        if self.is_early_response(at, stream) {
            let frame = EarlyFrame::Headers {
                at,
                list: list.clone(),
                end_stream,
            };
            self.hold_early(stream, frame);
            return;
        }
        let Some(call) = self.calls.get_mut(&stream) else {
            self.shared.stats.orphan_frames += 1;
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
        let shared = &mut self.shared;
        tracked(&mut self.held, call, |call| {
            shared.finish_half(call, at, stream, out);
        });
        let status = if call.grpc {
            trailer_status(list, call.http_status)
        } else {
            Status {
                code: call.http_status,
                message: None,
                abnormal: None,
            }
        };
        self.end_response(stream, at, status, out);
    }
}

/// The status gRPC trailers give, or why they give none.
fn trailer_status(list: &HeaderList, http_status: Option<u32>) -> Status {
    match list.get("grpc-status").and_then(status::parse_code) {
        Some(code) => Status {
            code: Some(code),
            message: list.get("grpc-message").map(status::percent_decode),
            abnormal: None,
        },
        None if has_unknown(list) => Status {
            code: None,
            message: None,
            abnormal: Some(UNKNOWN_STATUS.to_string()),
        },
        None => Status {
            code: None,
            message: None,
            abnormal: Some(match http_status {
                Some(s) => format!("HTTP status {s} without grpc-status"),
                None => "trailers without grpc-status".to_string(),
            }),
        },
    }
}

/// Whether some field's name or value comes from a table entry from before decoding started.
fn has_unknown(list: &HeaderList) -> bool {
    list.fields
        .iter()
        .any(|f| f.name.is_none() || f.value.is_none())
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

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
