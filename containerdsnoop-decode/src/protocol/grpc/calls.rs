//! The calls of one connection, keyed by stream id: opened by request headers (or adopted on a
//! DATA frame when they started before decoding did), fed DATA, and ended by trailers, reset,
//! GOAWAY or the connection's end. Owns the bytes they hold, bounded all together by
//! `CallLimits::max_buffered`. Header blocks are read in `headers`, bytes become messages in
//! `messages`; nothing here sees frames.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::call::{Call, Half, Pending};
use super::early::{EarlyFrame, EarlyResponses};
use super::framing::{self, Deframer};
use super::infer::{Catalog, Evidence, Hints, Inference};
use super::limits::CallLimits;
use super::shared::{InferState, MAX_HOLD_NS, Shared};
use super::stats::CallStats;
use crate::protocol::call::{Body, CallEvent, Role, Status};
use crate::protocol::http2::Origin;
use crate::protocol::http2::frame::error_code_name;
use crate::protocol::kit::MessageCount;

/// Stream ids of ended calls remembered so their late frames are not taken for calls that
/// started before decoding did.
const RETIRED_STREAMS: usize = 1024;

/// Most calls per connection kept after their response ended while their request had not: a
/// server that answers at once (trailers-only `Unimplemented`, `NotFound`) often does so before
/// the client's request DATA is written, and that request is still worth showing.
const MAX_LATE_REQUESTS: usize = 64;

/// The calls of one connection, keyed by stream id.
#[derive(Debug)]
pub struct Calls {
    pub(super) calls: BTreeMap<u32, Call>,
    /// Sum of `Call::held` over `calls`, kept in step by `tracked`.
    pub(super) held: usize,
    pub(super) shared: Shared,
    /// Decoding started mid-connection or resumed after a loss: DATA on a stream never seen may
    /// belong to a call that started before, and is taken up (adopted).
    pub(super) adopting: bool,
    /// The first stream whose request headers were decoded since the request direction was
    /// last (re)synchronised: streams below it may predate decoding, streams above cannot.
    pub(super) first_fresh: Option<u32>,
    retired: VecDeque<u32>,
    /// Calls whose response ended (their End is out) before their request did, by stream: the
    /// rest of the request is still decoded. Their held bytes count in `held`.
    late_requests: BTreeMap<u32, Call>,
    /// Response frames recorded before their call's request headers (see `early.rs`).
    pub(super) early: EarlyResponses,
    /// The highest stream id request headers opened a call on.
    pub(super) highest_opened: u32,
}

/// Runs `f` on `call` and keeps `held` (the sum of `Call::held` over a connection's calls) in
/// step with what `f` changed.
pub(super) fn tracked<R>(held: &mut usize, call: &mut Call, f: impl FnOnce(&mut Call) -> R) -> R {
    let before = call.held();
    let r = f(call);
    *held = (*held + call.held()).saturating_sub(before);
    r
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
            late_requests: BTreeMap::new(),
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
            let restarted = tracked(&mut self.held, call, |call| {
                let half = call.half(at.role);
                if half.ended || half.seek {
                    return None;
                }
                let partial = half.deframer.partial();
                half.deframer = Deframer::new(max);
                half.seek = true;
                if !half.raw.is_empty() {
                    half.raw = Vec::new();
                    half.raw_dropped = true;
                }
                Some(partial)
            });
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
        self.held + self.shared.infer.held_total
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
        if at.role == Role::Request && self.late_requests.contains_key(&stream) {
            self.late_request_data(at, stream, data, end_stream, out);
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
        if self.held > shared.limits.max_buffered {
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

    /// DATA of a request whose response has already ended: its messages are still shown, and
    /// the call is forgotten when the request ends.
    fn late_request_data(
        &mut self,
        at: Origin,
        stream: u32,
        data: &[u8],
        end_stream: bool,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(call) = self.late_requests.get_mut(&stream) else {
            return;
        };
        let shared = &mut self.shared;
        tracked(&mut self.held, call, |call| {
            if call.request.seek {
                // The message start was lost before the response ended: nothing to frame.
                shared.stats.skipped_data_frames += 1;
            } else {
                shared.deliver(call, at, stream, data, out);
            }
            if end_stream {
                call.request.ended = true;
                shared.finish_half(call, at, stream, out);
            }
        });
        if end_stream || self.held > self.shared.limits.max_buffered {
            self.forget_late_request(stream);
        }
    }

    /// Drops a parked late request (ended, reset, or over the byte limit).
    fn forget_late_request(&mut self, stream: u32) {
        if let Some(call) = self.late_requests.remove(&stream) {
            self.held = self.held.saturating_sub(call.held());
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
            self.forget_late_request(stream);
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
        let late: Vec<u32> = self.late_requests.keys().copied().collect();
        for stream in late {
            self.forget_late_request(stream);
        }
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
        if self.late_requests.len() >= MAX_LATE_REQUESTS {
            // The oldest parked request goes; its later frames count as orphans.
            if let Some((&oldest, _)) = self.late_requests.first_key_value() {
                self.forget_late_request(oldest);
            }
        }
        self.held += call.held();
        self.late_requests.insert(stream, call);
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
