//! gRPC over HTTP/2 on one connection: the HTTP/2 transport (`http2::Connection`) cuts both
//! directions' bytes into stream events, and this connection's calls (`Calls`) turn them into
//! `CallEvent`s. This is the decoder the connection table drives for HTTP/2.

use std::sync::Arc;

use super::calls::Calls;
use super::infer::Catalog;
use super::limits::Limits;
use super::stats::Stats;
use crate::protocol::call::{CallEvent, ConnEnd, Role, Side};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::http2::hpack::HeaderList;
use crate::protocol::http2::{self, FrameSync, Origin, StreamSink};
use crate::protocol::kit::At;
use crate::protocol::{Decoding, Protocol};

/// The decoder of one gRPC-over-HTTP/2 connection.
#[derive(Debug)]
pub struct Connection {
    transport: http2::Connection,
    calls: Calls,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection::new(Limits::default())
    }
}

/// The calls, seen by the transport as the sink of its stream events, with the vector their
/// events go to.
struct Events<'a> {
    calls: &'a mut Calls,
    out: &'a mut Vec<CallEvent>,
}

impl StreamSink for Events<'_> {
    fn headers(&mut self, at: Origin, stream: u32, list: &HeaderList, end_stream: bool) {
        self.calls.headers(at, stream, list, end_stream, self.out);
    }

    fn data(&mut self, at: Origin, stream: u32, data: &[u8], end_stream: bool) {
        self.calls.data(at, stream, data, end_stream, self.out);
    }

    fn reset(&mut self, at: Origin, stream: u32, code: u32) {
        self.calls.reset(at, stream, code, self.out);
    }

    fn goaway(&mut self, at: Origin, last_stream: u32, code: u32) {
        self.calls.goaway(at, last_stream, code, self.out);
    }

    fn resume(&mut self, at: Origin, lost: bool) -> usize {
        self.calls.resume(at, lost, self.out)
    }

    fn notice(&mut self, ts_ns: u64, side: Side, text: String) {
        self.out.push(At::new(side, ts_ns).notice(0, text));
    }
}

impl Connection {
    pub fn new(limits: Limits) -> Connection {
        Connection {
            transport: http2::Connection::new(limits.http2),
            calls: Calls::new(limits.calls),
        }
    }

    /// A connection that was open before the capture started: both directions search for frame
    /// boundaries before decoding (same as calling `joined` for both sides).
    pub fn late_join(limits: Limits) -> Connection {
        let mut c = Connection::new(limits);
        c.joined(Side::A, 0);
        c.joined(Side::B, 0);
        c
    }

    /// The first bytes the capture has of `side` start at `stream_pos` > 0: the connection was
    /// open before. Call it before feeding them. Frame boundaries are searched for, the header
    /// table is partly unknown, calls already under way are taken up at their next message, and
    /// methods whose `:path` is unknown are inferred. No Notice row is emitted (the state shows
    /// in `sync_state`). Calling it later (after bytes of `side` were fed) restarts that side
    /// the same way.
    pub fn joined(&mut self, side: Side, stream_pos: u64) {
        let mut out = Vec::new();
        let mut events = Events {
            calls: &mut self.calls,
            out: &mut out,
        };
        self.transport.joined(side, stream_pos, &mut events);
        // Nothing can be cut at a join (no message of this side was under way for us).
        debug_assert!(out.is_empty());
    }

    /// Tells which side is the client when the capture knows it (e.g. the side that connected
    /// to the runtime's listening socket). Useful after a late join, where no preface is seen;
    /// otherwise the role is learnt from the first header block (`:method` / `:status`).
    pub fn set_client(&mut self, client: Side) {
        self.transport.set_client(client);
    }

    /// Infers methods against `catalog` (e.g. `Catalog::new(&schema)` with the user's protos)
    /// instead of the embedded one; `None` turns inference off.
    pub fn set_catalog(&mut self, catalog: Option<Arc<Catalog>>) {
        self.calls.set_catalog(catalog);
    }

    /// Both layers' counters.
    pub fn stats(&self) -> Stats {
        Stats {
            http2: *self.transport.stats(),
            calls: *self.calls.stats(),
        }
    }

    /// The side that sent the connection preface (or was found to be the client), once known.
    pub fn client(&self) -> Option<Side> {
        self.transport.client()
    }

    /// True while `side` is searching for frame boundaries (its bytes are being skipped).
    pub fn is_desynchronised(&self, side: Side) -> bool {
        self.transport.is_desynchronised(side)
    }

    /// How well `side`'s bytes are being decoded.
    pub fn sync_state(&self, side: Side) -> FrameSync {
        self.transport.sync_state(side)
    }

    /// Bytes held for incomplete gRPC messages and bodies (bounded by
    /// `CallLimits::max_buffered`) plus the transport's resync search buffers (each bounded by
    /// its search window).
    pub fn buffered(&self) -> usize {
        self.calls.buffered() + self.transport.buffered()
    }

    /// Calls started and not yet ended.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Bytes `side` sent, in order, stamped `ts_ns`. Events completed by them go to `out`.
    pub fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        // Events held back for inference too long are released before anything newer.
        self.calls.tick(ts_ns, out);
        let mut events = Events {
            calls: &mut self.calls,
            out,
        };
        self.transport.feed(side, ts_ns, bytes, &mut events);
    }

    /// The capture lost `missing_bytes` that `side` sent: that direction searches for frame
    /// boundaries in the bytes that follow, and its header table is partly unknown after.
    pub fn gap(&mut self, side: Side, ts_ns: u64, missing_bytes: u64, out: &mut Vec<CallEvent>) {
        let mut events = Events {
            calls: &mut self.calls,
            out,
        };
        self.transport.gap(side, ts_ns, missing_bytes, &mut events);
    }

    /// The connection is gone: every open call ends abnormally.
    pub fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let at = Origin {
            ts_ns,
            side: self.transport.roles().end_side(),
            role: Role::Response,
        };
        self.calls.close(at, end.reason(), out);
    }
}

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        Connection::feed(self, side, ts_ns, bytes, out)
    }
    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        Connection::gap(self, side, ts_ns, missing, out)
    }
    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        Connection::close(self, ts_ns, end, out)
    }
    fn protocol(&self) -> Protocol {
        Protocol::Grpc
    }
    fn buffered(&self) -> usize {
        Connection::buffered(self)
    }
    fn is_desynchronised(&self, side: Side) -> bool {
        Connection::is_desynchronised(self, side)
    }
    fn joined(&mut self, side: Side, stream_pos: u64) {
        Connection::joined(self, side, stream_pos)
    }
    fn sync_state(&self, side: Side) -> Decoding {
        Connection::sync_state(self, side).into()
    }
}
