//! What the parts of one ttrpc connection's decoder share, handed to each as a parameter: its
//! bounds ([`Limits`]), its counters ([`Stats`]) and who the client is ([`Roles`]).

use super::frame::{self, HEADER_LEN, MAX_ANCHOR_FRAME};
use crate::protocol::kit::Roles;

/// Every bound of a connection, so memory per connection is a known function of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Calls tracked at once; beyond it the least recently active is forgotten (and
    /// counted). Shims keep `Wait` calls open for a container's lifetime, so this must not be
    /// small.
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

/// The state the framing of each direction and the calls both read and update.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) roles: Roles,
    pub(super) limits: Limits,
    pub(super) stats: Stats,
}
