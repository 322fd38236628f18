//! One HTTP/1.x connection seen from outside (the docker CLI and dockerd): its two directions
//! ([`super::direction::Direction`]), the requests awaiting their responses
//! ([`super::exchange::Exchanges`]) and what they share ([`super::shared::Shared`]), and the
//! [`ConnDecoder`] face the connection table drives (bytes, lost bytes, the connection's end).
//! It owns no decoding of its own: it hands each part the state it needs.

use super::direction::Direction;
use super::exchange::Exchanges;
use super::message::Framing;
use super::shared::{Limits, Shared, Stats};
use crate::protocol::call::{CallEvent, ConnEnd, Role, Side};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::kit::{At, Roles};

/// The decoder of one HTTP/1.x connection.
#[derive(Debug)]
pub struct Connection {
    /// Indexed by `Side::index`.
    dirs: [Direction; 2],
    exchanges: Exchanges,
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
            exchanges: Exchanges::new(),
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

    /// Requests still waiting for their response.
    pub fn open_calls(&self) -> usize {
        self.exchanges.len()
    }
}

/// `side`'s direction and the other one.
fn pair(dirs: &mut [Direction; 2], side: Side) -> (&mut Direction, &mut Direction) {
    let [a, b] = dirs;
    match side {
        Side::A => (a, b),
        Side::B => (b, a),
    }
}

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.shared.stats.bytes += bytes.len() as u64;
        let (this, peer) = pair(&mut self.dirs, side);
        let (ex, sh) = (&mut self.exchanges, &mut self.shared);
        this.process(At::new(side, ts_ns), bytes, peer, ex, sh, out);
    }

    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        self.shared.stats.gaps += 1;
        self.shared.stats.lost_bytes += missing;
        let at = At::new(side, ts_ns);
        self.dirs[side.index()].gap(at, missing, &mut self.shared, out);
    }

    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let at = At::new(self.shared.roles.end_side(), ts_ns);
        // A request still sending its body shows what it sent (its one REQ row).
        let client = At::new(at.side.other(), ts_ns);
        let sh = &mut self.shared;
        let (server_dir, client_dir) = pair(&mut self.dirs, at.side);
        if let Some(mut body) = client_dir.take_body()
            && body.role == Role::Request
        {
            body.abort(client, end.reason(), sh, out);
        }
        // A close-delimited response ends normally here.
        if let Some(mut body) = server_dir.take_body() {
            if matches!(body.framing, Framing::UntilClose) && body.role == Role::Response {
                body.finish(at, sh, out);
            } else {
                body.abort(at, end.reason(), sh, out);
            }
        }
        self.exchanges.close(at, end, out);
        for d in &mut self.dirs {
            d.reset();
        }
    }

    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Http1
    }

    fn buffered(&self) -> usize {
        self.dirs.iter().map(Direction::held).sum()
    }

    fn is_desynchronised(&self, side: Side) -> bool {
        self.dirs[side.index()].is_hunting()
    }
}
