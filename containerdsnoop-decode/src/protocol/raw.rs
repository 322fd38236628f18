//! Connections of no known protocol: every write is a message of raw bytes, so nothing is
//! hidden; the renderer shows them escaped.

use crate::protocol::{
    call::{Body, CallEvent, CallEventKind, ConnEnd, Side},
    decoder::ConnDecoder,
};

/// The decoder of a connection whose protocol is not known.
pub struct RawDecoder {
    server: Option<Side>,
    counts: [u64; 2],
}

/// Bytes of one raw message at most (the rest of a chunk is another message).
const RAW_MESSAGE_MAX: usize = 64 * 1024;

impl RawDecoder {
    pub fn new(server: Option<Side>) -> Self {
        RawDecoder {
            server,
            counts: [0, 0],
        }
    }
}

impl ConnDecoder for RawDecoder {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        let role = side.role_given_server(self.server);
        for piece in bytes.chunks(RAW_MESSAGE_MAX) {
            let i = side.index();
            out.push(CallEvent {
                ts_ns,
                side,
                stream: 0,
                kind: CallEventKind::Message {
                    role,
                    index: self.counts[i],
                    method: None,
                    namespace: None,
                    body: Body::Raw(piece.to_vec()),
                },
            });
            self.counts[i] += 1;
        }
    }
    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        out.push(CallEvent {
            ts_ns,
            side,
            stream: 0,
            kind: CallEventKind::Notice {
                text: format!("{missing} bytes lost"),
            },
        });
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
