//! One ttrpc connection seen from outside: the decoder's state, its bounds and counters, and
//! the [`ConnDecoder`] face the connection table drives. How bytes become frames is
//! [`super::framing`]; how frames become calls is [`super::calls`].

use super::calls::Calls;
use super::frame::{self, HEADER_LEN, MAX_ANCHOR_FRAME};
use super::framing::{Direction, Phase};
use crate::protocol::call::{CallEvent, ConnEnd, Side, Status};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::kit::{At, Roles};

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

/// The decoder of one ttrpc connection.
#[derive(Debug)]
pub struct Connection {
    pub(super) dirs: [Direction; 2],
    pub(super) roles: Roles,
    pub(super) calls: Calls,
    pub(super) limits: Limits,
    pub(super) stats: Stats,
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
            roles: Roles::default(),
            calls: Calls::new(limits.max_streams),
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
        self.roles = Roles::with_client(client);
        self
    }

    /// The side that sends requests, once known.
    pub fn client(&self) -> Option<Side> {
        self.roles.client()
    }

    /// Calls started and not yet ended.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }
}

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.stats.bytes += bytes.len() as u64;
        self.feed_bytes(At::new(side, ts_ns), bytes, out);
    }

    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing;
        let d = &mut self.dirs[side.index()];
        d.buf.clear();
        d.phase = Phase::Framing;
        let why = format!("capture lost {missing} bytes");
        self.lose_sync(At::new(side, ts_ns), why, out);
    }

    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let at = At::new(self.roles.end_side(), ts_ns);
        for (_, call) in self.calls.drain() {
            self.stats.calls_ended += 1;
            out.push(call.end(at, Status::abnormal(end.reason())));
        }
    }

    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Ttrpc
    }

    fn buffered(&self) -> usize {
        self.dirs.iter().map(|d| d.buf.len()).sum()
    }

    fn is_desynchronised(&self, side: Side) -> bool {
        matches!(self.dirs[side.index()].phase, Phase::Hunting)
    }
}
