//! One HTTP/1.x connection seen from outside (the docker CLI and dockerd): the decoder's
//! state, its bounds and counters, and the [`ConnDecoder`] face the connection table drives
//! (bytes, lost bytes, the connection's end). What the bytes mean is split by idea: the
//! per-direction state machine ([`super::direction`]), request/response pairing
//! ([`super::exchange`]), bodies ([`super::message`]) and the switch to raw bytes
//! ([`super::upgrade`]).

use super::direction::{Direction, Phase};
use super::exchange::PendingQueue;
use super::message::Framing;
use crate::protocol::call::{CallEvent, ConnEnd, Role, Side, Status};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::kit::{At, Roles};

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

/// The decoder of one HTTP/1.x connection.
#[derive(Debug)]
pub struct Connection {
    pub(super) dirs: [Direction; 2],
    pub(super) roles: Roles,
    pub(super) pending: PendingQueue,
    /// The stream number of the next call: requests are numbered from 1 in order.
    pub(super) next_seq: u64,
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
            pending: PendingQueue::new(),
            next_seq: 1,
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

    /// Requests still waiting for their response.
    pub fn open_calls(&self) -> usize {
        self.pending.len()
    }
}

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.stats.bytes += bytes.len() as u64;
        self.process(At::new(side, ts_ns), bytes, out);
    }

    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing;
        let at = At::new(side, ts_ns);
        let d = &mut self.dirs[side.index()];
        d.buf.clear();
        d.scanned = 0;
        let why = format!("capture lost {missing} bytes");
        match std::mem::replace(&mut d.phase, Phase::Head) {
            // Raw bytes have no framing to lose.
            Phase::Raw { call, index } => {
                let text = format!("capture lost {missing} bytes of the raw stream");
                out.push(at.notice(call.stream, text));
                d.phase = Phase::Raw { call, index };
                return;
            }
            Phase::Body(mut body) => self.abort_body(at, &mut body, &why, out),
            _ => {}
        }
        self.lose_sync(at, why, out);
    }

    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let at = At::new(self.roles.end_side(), ts_ns);
        // A request still sending its body shows what it sent (its one REQ row).
        let client = At::new(at.side.other(), ts_ns);
        let phase = std::mem::replace(&mut self.dirs[client.side.index()].phase, Phase::Head);
        if let Phase::Body(mut body) = phase
            && body.role == Role::Request
        {
            self.abort_body(client, &mut body, end.reason(), out);
        }
        // A close-delimited response ends normally here.
        let phase = std::mem::replace(&mut self.dirs[at.side.index()].phase, Phase::Head);
        if let Phase::Body(mut body) = phase {
            if matches!(body.framing, Framing::UntilClose) && body.role == Role::Response {
                self.finish_body(at, *body, out);
            } else {
                self.abort_body(at, &mut body, end.reason(), out);
            }
        }
        for p in std::mem::take(&mut self.pending) {
            let status = Status::abnormal(format!("{} before the response", end.reason()));
            out.push(at.end(&p.call, status, p.start_ts));
        }
        for d in &mut self.dirs {
            d.buf = Vec::new();
            d.phase = Phase::Head;
        }
    }

    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Http1
    }

    fn buffered(&self) -> usize {
        self.dirs.iter().map(Direction::held).sum()
    }

    fn is_desynchronised(&self, side: Side) -> bool {
        matches!(self.dirs[side.index()].phase, Phase::Hunting)
    }
}
