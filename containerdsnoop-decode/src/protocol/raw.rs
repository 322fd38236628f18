//! Connections of no known protocol: every write is a message of raw bytes, so nothing is
//! hidden; the renderer shows them escaped.

use crate::protocol::{
    call::{Body, CallEvent, ConnEnd, Side},
    decoder::ConnDecoder,
    kit::{At, CallTag, MessageCount, Roles},
};

/// The decoder of a connection whose protocol is not known.
pub struct RawDecoder {
    roles: Roles,
    /// Every write of a side is a message of one call (stream 0) per side.
    counts: [MessageCount; 2],
}

/// Bytes of one raw message at most (the rest of a chunk is another message).
const RAW_MESSAGE_MAX: usize = 64 * 1024;

impl RawDecoder {
    pub fn new(server: Option<Side>) -> Self {
        RawDecoder {
            roles: Roles::with_server(server),
            counts: [MessageCount::default(); 2],
        }
    }
}

impl ConnDecoder for RawDecoder {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        // Requests from every side but the known server, requests too when none is known.
        let role = self.roles.of_or_request(side);
        let at = At::new(side, ts_ns);
        let call = CallTag::default();
        for piece in bytes.chunks(RAW_MESSAGE_MAX) {
            let index = self.counts[side.index()].next(role);
            out.push(at.message(&call, role, index, Body::Raw(piece.to_vec())));
        }
    }
    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        out.push(At::new(side, ts_ns).notice(0, format!("{missing} bytes lost")));
    }
    fn close(&mut self, _ts_ns: u64, _end: ConnEnd, _out: &mut Vec<CallEvent>) {}
    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Raw
    }
    fn buffered(&self) -> usize {
        0
    }
    fn is_desynchronised(&self, _side: Side) -> bool {
        false
    }
}
