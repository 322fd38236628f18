//! What the HTTP/2 transport hands to the protocol above it: per-stream events (a decoded header
//! block, a DATA payload, a reset), connection events (GOAWAY, a direction that restarts without
//! continuity) and notices to show. The transport knows nothing of what runs on its streams;
//! gRPC (`protocol::grpc`) implements [`StreamSink`].

use super::hpack::HeaderList;
use crate::protocol::call::{Role, Side};
use crate::protocol::kit::{At, Roles};

/// When and from where an event arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub ts_ns: u64,
    pub side: Side,
    /// `Request` when `side` is the client.
    pub role: Role,
}

impl Origin {
    /// What `side` sends at `ts_ns`, given who is the client: a response while nobody is known
    /// to be.
    pub fn of(roles: Roles, side: Side, ts_ns: u64) -> Origin {
        let role = roles.of(side).unwrap_or(Role::Response);
        Origin { ts_ns, side, role }
    }

    /// Where events built from this one come from, for the kit's event builders.
    pub fn at(self) -> At {
        At::new(self.side, self.ts_ns)
    }
}

/// Receives one connection's stream events, in wire order.
pub trait StreamSink {
    /// A complete header block (HEADERS and its CONTINUATIONs) on `stream`, decoded. PUSH_PROMISE
    /// blocks are decoded only to keep the HPACK table in step and are not handed over.
    fn headers(&mut self, at: Origin, stream: u32, list: &HeaderList, end_stream: bool);
    /// A DATA payload on `stream`, padding removed.
    fn data(&mut self, at: Origin, stream: u32, data: &[u8], end_stream: bool);
    /// RST_STREAM with error `code`.
    fn reset(&mut self, at: Origin, stream: u32, code: u32);
    /// GOAWAY; the transport has already emitted its notice.
    fn goaway(&mut self, at: Origin, last_stream: u32, code: u32);
    /// Decoding of the direction `at` names starts mid-connection (`lost` false: a late join) or
    /// resumes after lost or malformed bytes (`lost` true): whatever was under way on it may have
    /// been cut. Returns how many messages were cut, for the desync notice.
    fn resume(&mut self, at: Origin, lost: bool) -> usize;
    /// A connection-level notice to show as a row (desync, resync, GOAWAY).
    fn notice(&mut self, ts_ns: u64, side: Side, text: String);
}
