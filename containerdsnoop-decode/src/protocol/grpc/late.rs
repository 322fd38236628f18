//! Requests still arriving after their call's response ended: a server that answers at once
//! (trailers-only `Unimplemented`, `NotFound`) often does so before the client's request DATA is
//! written, and that request is still worth showing. Owns [`LateRequests`], the calls parked
//! for the rest of their request and the bytes they hold (part of the connection's total,
//! bounded by `CallLimits::max_buffered`); the shared state is handed in.

use std::collections::BTreeMap;

use super::call::{Call, tracked};
use super::shared::Shared;
use crate::protocol::call::CallEvent;
use crate::protocol::http2::Origin;

/// Most calls per connection kept after their response ended while their request had not.
const MAX_LATE_REQUESTS: usize = 64;

/// Calls whose response ended (their End is out) before their request did, by stream: the rest
/// of the request is still decoded.
#[derive(Debug, Default)]
pub(super) struct LateRequests {
    calls: BTreeMap<u32, Call>,
    /// Sum of `Call::held` over `calls`, kept in step by `tracked`.
    held: usize,
}

impl LateRequests {
    pub(super) fn contains(&self, stream: u32) -> bool {
        self.calls.contains_key(&stream)
    }

    /// Bytes the parked calls hold in incomplete messages.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Keeps `call`, whose response has ended, for the rest of its request; the oldest parked
    /// one goes when too many are (its later frames count as orphans).
    pub(super) fn park(&mut self, stream: u32, call: Call) {
        if self.calls.len() >= MAX_LATE_REQUESTS
            && let Some((&oldest, _)) = self.calls.first_key_value()
        {
            self.forget(oldest);
        }
        self.held += call.held();
        self.calls.insert(stream, call);
    }

    /// DATA of a parked request: its messages are still shown, and the call is forgotten when
    /// the request ends (the caller forgets it when the connection holds too much).
    pub(super) fn data(
        &mut self,
        at: Origin,
        stream: u32,
        data: &[u8],
        end_stream: bool,
        shared: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(call) = self.calls.get_mut(&stream) else {
            return;
        };
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
        if end_stream {
            self.forget(stream);
        }
    }

    /// Drops a parked request (ended, reset, or over the byte limit).
    pub(super) fn forget(&mut self, stream: u32) {
        if let Some(call) = self.calls.remove(&stream) {
            self.held = self.held.saturating_sub(call.held());
        }
    }

    /// Drops every parked request (the connection is gone).
    pub(super) fn clear(&mut self) {
        let streams: Vec<u32> = self.calls.keys().copied().collect();
        for stream in streams {
            self.forget(stream);
        }
    }
}
