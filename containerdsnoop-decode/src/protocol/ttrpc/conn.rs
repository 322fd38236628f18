//! One ttrpc connection seen from outside: its two directions' framing
//! ([`super::framing::Direction`]), its open calls ([`super::calls::Calls`]) and what they
//! share ([`super::shared::Shared`]), and the [`ConnDecoder`] face the connection table drives.
//! It owns no decoding of its own: it hands each part the state it needs.

use super::calls::Calls;
use super::framing::Direction;
use super::shared::{Limits, Shared, Stats};
use crate::protocol::call::{CallEvent, ConnEnd, Side};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::kit::{At, Roles};

/// The decoder of one ttrpc connection.
#[derive(Debug)]
pub struct Connection {
    dirs: [Direction; 2],
    calls: Calls,
    shared: Shared,
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
            calls: Calls::new(limits.max_streams),
            shared: Shared {
                roles: Roles::default(),
                limits,
                stats: Stats::default(),
            },
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Starts with the client known (the connection table knows which socket listens).
    /// Without it, the first request or response seen decides.
    pub fn with_client(mut self, client: Option<Side>) -> Connection {
        self.shared.roles = Roles::with_client(client);
        self
    }

    /// The side that sends requests, once known.
    pub fn client(&self) -> Option<Side> {
        self.shared.roles.client()
    }

    /// Calls started and not yet ended.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }
}

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.shared.stats.bytes += bytes.len() as u64;
        let at = At::new(side, ts_ns);
        self.dirs[side.index()].feed(at, bytes, &mut self.calls, &mut self.shared, out);
    }

    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        self.shared.stats.gaps += 1;
        self.shared.stats.lost_bytes += missing;
        let why = format!("capture lost {missing} bytes");
        self.dirs[side.index()].lost(At::new(side, ts_ns), why, &mut self.shared, out);
    }

    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let at = At::new(self.shared.roles.end_side(), ts_ns);
        self.calls.close(at, end, &mut self.shared, out);
    }

    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Ttrpc
    }

    fn buffered(&self) -> usize {
        self.dirs.iter().map(Direction::held).sum()
    }

    fn is_desynchronised(&self, side: Side) -> bool {
        self.dirs[side.index()].is_hunting()
    }
}
