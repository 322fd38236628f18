//! The per-connection protocol decoder interface: both directions' bytes in, [`CallEvent`]s
//! out. HTTP/2 (gRPC), ttrpc and HTTP/1.1 implement it; the connection table drives it and
//! never needs to know which protocol it is talking to.

use crate::protocol::{
    Decoding, Protocol,
    call::{CallEvent, ConnEnd, Side},
};

pub trait ConnDecoder {
    /// Bytes `side` sent, in stream order; any chunking must give the same events.
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>);
    /// The capture lost `missing` bytes of `side`'s stream at this point.
    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>);
    /// The connection is gone (`end` says how): end what is open.
    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>);
    /// The protocol this decoder speaks.
    fn protocol(&self) -> Protocol;
    /// Bytes held in buffers (for memory limits).
    fn buffered(&self) -> usize;
    /// Whether `side` stopped being decoded after malformed or lost bytes.
    fn is_desynchronised(&self, side: Side) -> bool;
    /// `side`'s first captured byte is at `stream_pos` > 0: the connection was already open
    /// when the tracer started. Called before that side's first `feed`.
    fn joined(&mut self, _side: Side, _stream_pos: u64) {}
    /// How decoding of `side` stands (JSON's `decoding`).
    fn sync_state(&self, side: Side) -> Decoding {
        if self.is_desynchronised(side) {
            Decoding::Desynchronised
        } else {
            Decoding::Synced
        }
    }
}
