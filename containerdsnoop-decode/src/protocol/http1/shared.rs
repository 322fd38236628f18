//! What the parts of one HTTP/1.x connection's decoder share, handed to each as a parameter:
//! its bounds ([`Limits`]), its counters ([`Stats`]), who the client is ([`Roles`]), and the one
//! way a message event is emitted (counted).

use crate::protocol::call::{Body, CallEvent, Role};
use crate::protocol::kit::{At, CallTag, Roles};

/// Every bound of a connection, so memory per connection is a known function of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message head (start line and fields); a longer one desynchronises the direction.
    pub max_head: usize,
    /// Body bytes kept per message; the rest is counted and the body shown as unavailable.
    pub max_body: usize,
    /// Requests awaiting a response; beyond it the oldest is forgotten (and counted).
    pub max_pending: usize,
    /// Bytes a hunting direction keeps while looking for a request or status line.
    pub resync_window: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 64 * 1024,
            max_body: 1 << 20,
            max_pending: 64,
            resync_window: 64 * 1024,
        }
    }
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes: u64,
    pub requests: u64,
    pub responses: u64,
    pub messages: u64,
    /// Bodies over `Limits::max_body`.
    pub oversize_bodies: u64,
    /// Header fields beyond `head::MAX_HEADERS`.
    pub dropped_headers: u64,
    pub gaps: u64,
    pub lost_bytes: u64,
    pub desyncs: u64,
    pub resyncs: u64,
    /// Bytes skipped while hunting for a start line.
    pub bytes_skipped: u64,
    /// Responses no request was known for (late join, lost bytes).
    pub orphan_responses: u64,
    /// Requests forgotten because too many awaited a response.
    pub evicted_requests: u64,
    pub upgrades: u64,
    /// Bytes seen after an upgrade.
    pub raw_bytes: u64,
}

/// The state every part of the decoder reads and updates.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) roles: Roles,
    pub(super) limits: Limits,
    pub(super) stats: Stats,
}

impl Shared {
    /// Message `index` of `role` on `call`, counted.
    pub(super) fn emit_message(
        &mut self,
        at: At,
        call: &CallTag,
        role: Role,
        index: u64,
        body: Body,
        out: &mut Vec<CallEvent>,
    ) {
        self.stats.messages += 1;
        out.push(at.message(call, role, index, body));
    }
}
