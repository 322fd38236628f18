//! The calls of one connection, keyed by stream id: opened by request headers (or adopted on a
//! DATA frame when they started before decoding did), fed DATA, and ended by trailers, reset,
//! GOAWAY or the connection's end. Owns the bytes they hold, bounded all together by
//! `CallLimits::max_buffered`. Owns [`Calls`]: what a header block says is read by `headers`,
//! bytes become message bodies in each call's halves (`messages`) and events through the
//! shared state (`shared`); nothing here sees frames.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::call::{Call, Pending, tracked};
use super::early::{EarlyFrame, EarlyResponses};
use super::framing;
use super::headers::{RequestHead, ResponseHead, end_status};
use super::infer::{Catalog, Evidence, Hints, Inference};
use super::late::LateRequests;
use super::limits::CallLimits;
use super::messages::Half;
use super::shared::{InferState, MAX_HOLD_NS, Shared};
use super::stats::CallStats;
use crate::protocol::call::{Body, CallEvent, Role, Status};
use crate::protocol::http2::Origin;
use crate::protocol::http2::frame::error_code_name;
use crate::protocol::http2::hpack::HeaderList;
use crate::protocol::kit::MessageCount;

/// Stream ids of ended calls remembered so their late frames are not taken for calls that
/// started before decoding did.
const RETIRED_STREAMS: usize = 1024;

/// The calls of one connection, keyed by stream id.
#[derive(Debug)]
pub struct Calls {
    calls: BTreeMap<u32, Call>,
    /// Sum of `Call::held` over `calls`, kept in step by `tracked`.
    held: usize,
    shared: Shared,
    /// Decoding started mid-connection or resumed after a loss: DATA on a stream never seen may
    /// belong to a call that started before, and is taken up (adopted).
    adopting: bool,
    /// The first stream whose request headers were decoded since the request direction was
    /// last (re)synchronised: streams below it may predate decoding, streams above cannot.
    first_fresh: Option<u32>,
    retired: VecDeque<u32>,
    /// Calls whose response ended before their request did (see `late.rs`).
    late_requests: LateRequests,
    /// Response frames recorded before their call's request headers (see `early.rs`).
    early: EarlyResponses,
    /// The highest stream id request headers opened a call on.
    highest_opened: u32,
}

impl Calls {
    pub fn new(limits: CallLimits) -> Calls {
        Calls {
            calls: BTreeMap::new(),
            held: 0,
            shared: Shared {
                limits,
                stats: CallStats::default(),
                infer: InferState {
                    inference: Inference::new(Catalog::embedded()),
                    held_total: 0,
                    holding: 0,
                },
            },
            adopting: false,
            first_fresh: None,
            retired: VecDeque::new(),
            late_requests: LateRequests::default(),
            early: EarlyResponses::default(),
            highest_opened: 0,
        }
    }

    /// Whether a response frame on `stream`, which has no open call, answers a request not
    /// decoded yet (see `early.rs`): only on a connection followed from its start, on a client
    /// stream id above every one opened so far.
    pub(super) fn is_early_response(&self, at: Origin, stream: u32) -> bool {
        at.role == Role::Response
            && !self.calls.contains_key(&stream)
            && (self.early.holds(stream)
                || (!self.adopting && stream % 2 == 1 && stream > self.highest_opened))
    }

    /// Holds a response frame until its request headers come.
    pub(super) fn hold_early(&mut self, stream: u32, frame: EarlyFrame) {
        self.shared.stats.orphan_frames += self.early.hold(stream, frame);
    }

    /// Replays the response frames held for `stream`, whose call was just opened.
    pub(super) fn replay_early(&mut self, stream: u32, out: &mut Vec<CallEvent>) {
        for frame in self.early.take(stream) {
            match frame {
                EarlyFrame::Headers {
                    at,
                    list,
                    end_stream,
                } => self.headers(at, stream, &list, end_stream, out),
                EarlyFrame::Data {
                    at,
                    bytes,
                    end_stream,
                } => self.data(at, stream, &bytes, end_stream, out),
            }
        }
    }

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

    /// Request headers open a call (request trailers only end its request).
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
        let head = RequestHead::read(list);
        let inference = &mut self.shared.infer.inference;
        let pending = match &head.method {
            Some(m) => {
                inference.saw_path(&m.name);
                None
            }
            // Inferred only when the header block had fields from unknown table entries (late
            // join, lost bytes): a block that simply lacks `:path` is shown as it is.
            None if inference.catalog().is_some() && head.unknown_names => {
                let slot = head.path_slot;
                let evidence = slot
                    .and_then(|s| inference.slot(s))
                    .map_or_else(Evidence::new, Evidence::seeded);
                let hints = Hints {
                    namespace: head.namespace.is_some(),
                };
                let fresh = Pending::new(evidence, slot, hints, at.ts_ns);
                Some(self.shared.hold(fresh))
            }
            None => None,
        };
        let mut request = Half::new(limits.max_message);
        request.encoding = head.encoding;
        request.ended = end_stream;
        self.shared.stats.calls_started += 1;
        let mut call = Call {
            start_ts: at.ts_ns,
            method: head.method.clone(),
            namespace: head.namespace,
            grpc: head.grpc,
            http_status: None,
            response_headers: false,
            request,
            response: Half::new(limits.max_message),
            counts: MessageCount::default(),
            pending,
            adopted: false,
        };
        let start = at.at().start(u64::from(stream), head.method, head.metadata);
        self.shared.emit(&mut call, start, 0, out);
        self.calls.insert(stream, call);
        self.highest_opened = self.highest_opened.max(stream);
        self.replay_early(stream, out);
    }

    /// Response headers give the call its HTTP status and encoding; trailers (or a
    /// trailers-only response) end it with its status.
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
        if !call.response_headers {
            let head = ResponseHead::read(list);
            if head.is_interim() && !end_stream {
                // Informational (1xx) headers: the real response headers follow.
                return;
            }
            call.response_headers = true;
            call.http_status = head.http_status;
            call.response.encoding = head.encoding;
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
        let status = end_status(list, call.grpc, call.http_status);
        self.end_response(stream, at, status, out);
    }

    /// Uses `catalog` (e.g. built from a schema with the user's protos) to infer methods;
    /// `None` turns inference off.
    pub fn set_catalog(&mut self, catalog: Option<Arc<Catalog>>) {
        self.shared.infer.inference.set_catalog(catalog);
    }

    pub fn stats(&self) -> &CallStats {
        &self.shared.stats
    }

    /// Decoding of the direction carrying `at.role` starts mid-connection (late join) or resumes
    /// after lost bytes (`lost`). Messages cut by the loss are reported unavailable; framing of
    /// each open call's `at.role` half resumes at the next DATA frame that starts a message.
    /// Returns how many messages were cut.
    pub fn resume(&mut self, at: Origin, lost: bool, out: &mut Vec<CallEvent>) -> usize {
        self.adopting = true;
        if at.role == Role::Request {
            // The requests they wait for may be among the lost bytes.
            self.shared.stats.orphan_frames += self.early.clear();
            self.first_fresh = None;
            self.shared.infer.inference.table_lost();
        }
        let max = self.shared.limits.max_message;
        let mut cut = 0;
        let streams: Vec<u32> = self.calls.keys().copied().collect();
        for stream in streams {
            let Some(call) = self.calls.get_mut(&stream) else {
                continue;
            };
            // `Some(partial)` when the half was being framed and now seeks.
            let restarted = tracked(&mut self.held, call, |call| call.half(at.role).restart(max));
            if let (true, Some(Some((claimed, seen)))) = (lost, restarted) {
                cut += 1;
                let body = Body::Unavailable {
                    reason: format!("bytes lost by the capture ({seen} bytes seen)"),
                    len: claimed,
                };
                self.shared.message(call, at, stream, body, out);
            }
        }
        cut
    }

    /// Releases events held back for inference for longer than `MAX_HOLD_NS` before `ts_ns`.
    pub fn tick(&mut self, ts_ns: u64, out: &mut Vec<CallEvent>) {
        if self.shared.infer.holding == 0 {
            return;
        }
        for call in self.calls.values_mut() {
            let stale = call
                .pending
                .as_ref()
                .is_some_and(|p| p.holding && ts_ns.saturating_sub(p.since) > MAX_HOLD_NS);
            if stale {
                self.shared.release(call, out);
            }
        }
    }

    /// Bytes held in incomplete messages and bodies across all calls, and in messages held
    /// back while their call's method is inferred.
    pub fn buffered(&self) -> usize {
        self.held + self.late_requests.held() + self.shared.infer.held_total
    }

    /// Calls currently open.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// A DATA payload (padding removed) on `stream`.
    pub fn data(
        &mut self,
        at: Origin,
        stream: u32,
        data: &[u8],
        end_stream: bool,
        out: &mut Vec<CallEvent>,
    ) {
        if at.role == Role::Request && self.late_requests.contains(stream) {
            let late = &mut self.late_requests;
            late.data(at, stream, data, end_stream, &mut self.shared, out);
            if self.held + late.held() > self.shared.limits.max_buffered {
                late.forget(stream);
            }
            return;
        }
        if self.is_early_response(at, stream) {
            let frame = EarlyFrame::Data {
                at,
                bytes: data.to_vec(),
                end_stream,
            };
            self.hold_early(stream, frame);
            return;
        }
        if !self.calls.contains_key(&stream) && !self.adopt(at, stream) {
            self.shared.stats.orphan_frames += 1;
            return;
        }
        let Some(call) = self.calls.get_mut(&stream) else {
            return;
        };
        if call.half(at.role).ended {
            self.shared.stats.orphan_frames += 1;
            return;
        }
        let grpc = call.grpc;
        let half = call.half(at.role);
        if half.seek {
            if grpc && !framing::starts_messages(data, self.shared.limits.max_message) {
                // Still inside a message whose start was lost.
                self.shared.stats.skipped_data_frames += 1;
                if !end_stream {
                    return;
                }
                half.ended = true;
                if at.role == Role::Response {
                    self.end(stream, at, without_trailers(), out);
                }
                return;
            }
            half.seek = false;
        }
        let shared = &mut self.shared;
        tracked(&mut self.held, call, |call| {
            shared.deliver(call, at, stream, data, out);
        });
        if self.held + self.late_requests.held() > shared.limits.max_buffered {
            tracked(&mut self.held, call, |call| {
                shared.abandon(call, at, stream, out);
            });
        }
        if !end_stream {
            return;
        }
        call.half(at.role).ended = true;
        tracked(&mut self.held, call, |call| {
            shared.finish_half(call, at, stream, out);
        });
        if at.role == Role::Response {
            let status = if call.grpc {
                without_trailers()
            } else {
                Status {
                    code: call.http_status,
                    ..Status::default()
                }
            };
            self.end_response(stream, at, status, out);
        }
    }

    /// Takes up a call that started before decoding did, on its first DATA frame, if `stream`
    /// can be such a call. Returns whether it was adopted.
    fn adopt(&mut self, at: Origin, stream: u32) -> bool {
        let older = self.first_fresh.is_none_or(|first| stream < first);
        if !self.adopting || !older || stream.is_multiple_of(2) || self.retired.contains(&stream) {
            return false;
        }
        let limits = self.shared.limits;
        if self.calls.len() >= limits.max_streams.max(1) {
            return false;
        }
        let mut request = Half::new(limits.max_message);
        let mut response = Half::new(limits.max_message);
        request.seek = true;
        response.seek = true;
        let pending = self.shared.infer.inference.catalog().is_some().then(|| {
            let fresh = Pending::new(Evidence::new(), None, Hints::default(), at.ts_ns);
            self.shared.hold(fresh)
        });
        self.shared.stats.adopted_calls += 1;
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
                counts: MessageCount::default(),
                pending,
                adopted: true,
            },
        );
        true
    }

    /// RST_STREAM from either side.
    pub fn reset(&mut self, at: Origin, stream: u32, code: u32, out: &mut Vec<CallEvent>) {
        if !self.calls.contains_key(&stream) {
            // grpc-go resets streams after their trailers too: nothing to report.
            self.late_requests.forget(stream);
            return;
        }
        let abnormal = format!("RST_STREAM {} from {}", error_code_name(code), who(at.role));
        self.end(stream, at, abnormal_status(abnormal), out);
    }

    /// GOAWAY from either side; the transport emits the Notice row.
    pub fn goaway(&mut self, at: Origin, last_stream: u32, code: u32, out: &mut Vec<CallEvent>) {
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
                self.end(stream, at, abnormal_status(abnormal), out);
            }
        }
        if code != 0 {
            let open: Vec<u32> = self.calls.keys().copied().collect();
            for stream in open {
                let abnormal = format!("GOAWAY {} from {}", error_code_name(code), who(at.role));
                self.end(stream, at, abnormal_status(abnormal), out);
            }
        }
    }

    /// The connection ended: every open call ends abnormally.
    pub fn close(&mut self, at: Origin, reason: &str, out: &mut Vec<CallEvent>) {
        // Answers whose requests never came.
        self.shared.stats.orphan_frames += self.early.clear();
        self.late_requests.clear();
        let open: Vec<u32> = self.calls.keys().copied().collect();
        for stream in open {
            self.end(stream, at, abnormal_status(reason.to_string()), out);
        }
    }

    /// Ends the call on `stream` (if open) with `status`: releases what it held back, teaches
    /// inference what it showed, and emits its End row.
    pub(super) fn end(
        &mut self,
        stream: u32,
        at: Origin,
        status: Status,
        out: &mut Vec<CallEvent>,
    ) {
        self.end_call(stream, at, status, out);
    }

    /// Ends the call on `stream` because its response ended (trailers, or END_STREAM on DATA):
    /// if its request has not ended, the call is kept so the rest of the request is shown.
    pub(super) fn end_response(
        &mut self,
        stream: u32,
        at: Origin,
        status: Status,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(call) = self.end_call(stream, at, status, out) else {
            return;
        };
        if !call.grpc || call.request.ended {
            return;
        }
        self.late_requests.park(stream, call);
    }

    fn end_call(
        &mut self,
        stream: u32,
        at: Origin,
        status: Status,
        out: &mut Vec<CallEvent>,
    ) -> Option<Call> {
        let mut call = self.calls.remove(&stream)?;
        self.held = self.held.saturating_sub(call.held());
        self.shared.stats.calls_ended += 1;
        if self.retired.len() >= RETIRED_STREAMS {
            self.retired.pop_front();
        }
        self.retired.push_back(stream);
        self.shared.release(&mut call, out);
        if let Some(p) = &call.pending {
            if let Some(slot) = p.slot {
                let inference = &mut self.shared.infer.inference;
                if p.evidence.any_possible() {
                    inference.learn(slot, &p.evidence);
                } else {
                    // This call contradicts what its entry's earlier calls showed.
                    inference.forget(slot);
                }
            }
            if call.method.is_none() {
                self.shared.stats.uninferred_calls += 1;
            }
        }
        let started = (!call.adopted).then_some(call.start_ts);
        out.push(at.at().end(&call.tag(stream), status, started));
        Some(call)
    }
}

/// A gRPC response whose stream ended with no trailers, so no status.
fn without_trailers() -> Status {
    abnormal_status("response ended without trailers".into())
}

fn abnormal_status(why: String) -> Status {
    Status {
        abnormal: Some(why),
        ..Status::default()
    }
}

fn who(role: Role) -> &'static str {
    match role {
        Role::Request => "client",
        Role::Response => "server",
    }
}
