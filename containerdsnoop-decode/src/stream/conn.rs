//! The connection table: pairs both directions of a unix socket pair into one connection,
//! has its protocol recognised from the first bytes (by the [`Recognise`] it was given), feeds
//! its decoder, and bounds how many connections it holds (least recently active evicted,
//! counted, and its calls ended).

use std::sync::Arc;

use crate::{
    lru::LruMap,
    protocol::{
        Decoding, Protocol,
        call::{CallEvent, ConnEnd, Side},
        decoder::ConnDecoder,
    },
    record::Chunk,
    stream::recognise::Recognise,
};

/// Most connections tracked at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Bytes per connection held while its protocol is not yet known.
pub const MAX_UNDETECTED_BYTES: usize = 64 * 1024;
/// Below this many undecided bytes detection runs on every write; above it, only when the
/// bytes have doubled since the last try, so that a stream of tiny writes costs linear, not
/// quadratic, scanning (detection reads up to 64 KiB per side each time).
const DETECT_EVERY_WRITE_BELOW: usize = 4096;

/// One end of a connection as last seen sending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub pid: u32,
    pub tid: u32,
    /// Process comm (the group leader's).
    pub comm: String,
}

/// How a connection's decoding started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// The tracer saw the connection from its first byte.
    FromStart,
    /// The tracer attached while the connection was already open.
    LateJoin,
}

impl SyncState {
    /// Every state, for tests that check each is documented.
    pub const ALL: [SyncState; 2] = [SyncState::FromStart, SyncState::LateJoin];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::FromStart => "from_start",
            SyncState::LateJoin => "late_join",
        }
    }
}

/// What renderers and filters know about a connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Sequence number of the connection in this run.
    pub id: u64,
    /// Socket inode numbers of side A and side B (0 while unknown).
    pub inodes: [u64; 2],
    /// The matched socket path.
    pub path: String,
    /// The side whose own address matched the path: the listening (server) side.
    pub server: Option<Side>,
    /// Last sender seen on each side.
    pub ends: [Option<Endpoint>; 2],
    /// Each side's peer pid as the kernel reports it (SO_PEERCRED: fixed at connect time).
    pub peer_pids: [u32; 2],
    /// None until detection decides (no event is emitted before it has).
    pub protocol: Option<Protocol>,
    pub sync: SyncState,
    /// The decoder's view of the sending side, as of the event this info accompanies (None
    /// before a decoder exists: never on an event, which only decoders emit).
    pub decoding: Option<Decoding>,
}

impl ConnInfo {
    pub fn end(&self, side: Side) -> Option<&Endpoint> {
        self.ends[side_index(side)].as_ref()
    }

    /// The pid at the other end from `side`'s point of view.
    pub fn peer_pid(&self, side: Side) -> u32 {
        match self.end(side.other()) {
            Some(e) => e.pid,
            None => self.peer_pids[side_index(side)],
        }
    }
}

pub fn side_index(side: Side) -> usize {
    side.index()
}

struct Conn {
    /// Shared with the events it accompanies: a row holds a reference, not a copy of the
    /// path and the two ends' names; changed in place once the rows have gone.
    info: Arc<ConnInfo>,
    decoder: Option<Box<dyn ConnDecoder>>,
    /// Bytes seen before the protocol was known, in arrival order.
    pending: Vec<(Side, u64, Vec<u8>)>,
    pending_len: usize,
    /// First bytes of each side, for detection.
    head: [Vec<u8>; 2],
    /// `head` bytes (both sides) at the last detection attempt.
    detected_at: usize,
    /// Stream bytes seen from each side.
    sent: [u64; 2],
    /// Sides whose first captured byte was mid-stream (told to the decoder once it exists).
    joined: [Option<u64>; 2],
}

/// Counters of the connection layer.
#[derive(Clone, Debug, Default)]
pub struct ConnStats {
    pub connections: u64,
    pub evicted: u64,
    pub late_joins: u64,
    /// Connections replaced because their socket identities were reused.
    pub reused: u64,
    pub gaps: u64,
    pub lost_bytes: u64,
}

pub struct ConnTable {
    conns: LruMap<(u64, u64), Conn>,
    /// Chooses each connection's decoder.
    recognise: &'static dyn Recognise,
    /// Socket inodes of connections that were open before the tracer started (sock_diag at
    /// start-up): the kernel-side stream positions start at 0 when the tracer first sees a
    /// socket, so only this tells a late join from a new connection.
    preexisting: std::collections::HashSet<u64>,
    next_id: u64,
    pub stats: ConnStats,
    /// Ids of the connections that left the table (closed, reused, evicted, or all at the
    /// end), after their calls' END events; whoever holds rows per connection empties it.
    pub ended: Vec<u64>,
}

/// A connection-level event for the row builder.
pub struct ConnEvent<'a> {
    pub info: &'a ConnInfo,
    pub event: CallEvent,
}

impl ConnTable {
    /// A table of at most [`MAX_CONNECTIONS`] connections whose decoders `recognise` chooses.
    pub fn new(recognise: &'static dyn Recognise) -> Self {
        ConnTable::with_capacity(MAX_CONNECTIONS, recognise)
    }

    /// A table of at most `capacity` connections.
    pub fn with_capacity(capacity: usize, recognise: &'static dyn Recognise) -> Self {
        ConnTable {
            conns: LruMap::new(capacity),
            recognise,
            preexisting: Default::default(),
            next_id: 0,
            stats: ConnStats::default(),
            ended: Vec::new(),
        }
    }

    /// The key of a chunk's connection (its two socket identities, lower first) and which side
    /// sent it. Socket identities, not inodes: a server-side socket has no inode until
    /// `accept()`, and clients write their preface before that.
    fn key(chunk: &Chunk) -> ((u64, u64), Side) {
        if chunk.peer_id == 0 || chunk.sock_id <= chunk.peer_id {
            ((chunk.sock_id, chunk.peer_id), Side::A)
        } else {
            ((chunk.peer_id, chunk.sock_id), Side::B)
        }
    }

    fn conn_for(
        &mut self,
        chunk: &Chunk,
        out: &mut Vec<(Arc<ConnInfo>, CallEvent)>,
    ) -> (&mut Conn, Side) {
        let (key, side) = Self::key(chunk);
        // Socket memory is reused as soon as a connection closes: the same pair of identities
        // with a different inode, or a side starting over at position 0, is a new connection.
        if let Some(old) = self.conns.peek(&key) {
            let i = side_index(side);
            let recorded = old.info.inodes[i];
            let reused = (recorded != 0 && chunk.sock_ino != 0 && recorded != chunk.sock_ino)
                || (chunk.stream_pos == 0 && old.sent[i] > 0);
            if reused && let Some(old) = self.conns.remove(&key) {
                self.stats.reused += 1;
                self.ended.push(old.info.id);
                old.end(chunk.ts_ns, ConnEnd::Closed, self.recognise, out);
            }
        }
        if !self.conns.contains_key(&key) {
            self.next_id += 1;
            self.stats.connections += 1;
            let preexisting = self.preexisting.contains(&chunk.sock_ino)
                || (chunk.peer_ino != 0 && self.preexisting.contains(&chunk.peer_ino));
            let sync = if chunk.stream_pos > 0 || preexisting {
                self.stats.late_joins += 1;
                SyncState::LateJoin
            } else {
                SyncState::FromStart
            };
            let server = if chunk.has(containerdsnoop_common::flags::PATH_IS_PEER) {
                side.other()
            } else {
                side
            };
            let info = ConnInfo {
                id: self.next_id,
                inodes: [0, 0],
                path: chunk.path.clone(),
                server: Some(server),
                ends: [None, None],
                peer_pids: [0, 0],
                protocol: None,
                sync,
                decoding: None,
            };
            let evicted = self.conns.insert(
                key,
                Conn {
                    info: Arc::new(info),
                    decoder: None,
                    pending: Vec::new(),
                    pending_len: 0,
                    head: [Vec::new(), Vec::new()],
                    detected_at: 0,
                    sent: [0, 0],
                    // A pre-existing connection joined mid-stream on both sides.
                    joined: if preexisting {
                        [Some(1), Some(1)]
                    } else {
                        [None, None]
                    },
                },
            );
            if let Some((_, old)) = evicted {
                self.stats.evicted += 1;
                self.ended.push(old.info.id);
                old.end(chunk.ts_ns, ConnEnd::Evicted, self.recognise, out);
            }
        }
        let conn = self.conns.get_mut(&key).expect("inserted above");
        let i = side_index(side);
        let info = &conn.info;
        let same_end = info.ends[i].as_ref().is_some_and(|e| {
            e.pid == chunk.tgid && e.tid == chunk.tid && e.comm == chunk.process_comm
        });
        let changed = !same_end
            || info.peer_pids[i] != chunk.peer_tgid
            || info.inodes[i] != chunk.sock_ino
            || (chunk.peer_ino != 0 && info.inodes[1 - i] != chunk.peer_ino);
        if changed {
            let info = Arc::make_mut(&mut conn.info);
            if !same_end {
                info.ends[i] = Some(Endpoint {
                    pid: chunk.tgid,
                    tid: chunk.tid,
                    comm: chunk.process_comm.clone(),
                });
            }
            info.peer_pids[i] = chunk.peer_tgid;
            info.inodes[i] = chunk.sock_ino;
            if chunk.peer_ino != 0 {
                info.inodes[1 - i] = chunk.peer_ino;
            }
        }
        conn.sent[i] = conn.sent[i].max(chunk.stream_pos + chunk.span_len as u64);
        (conn, side)
    }

    /// Feeds in-order payload bytes of `chunk`; events go to `out` with the connection info.
    pub fn data(&mut self, chunk: &Chunk, bytes: &[u8], out: &mut Vec<(Arc<ConnInfo>, CallEvent)>) {
        let recognise = self.recognise;
        let (conn, side) = self.conn_for(chunk, out);
        let mut events = Vec::new();
        conn.feed(side, chunk.ts_ns, bytes, recognise, &mut events);
        conn.push_events(events, out);
    }

    /// `chunk` is the first record of its socket and starts mid-stream.
    pub fn joined(&mut self, chunk: &Chunk, out: &mut Vec<(Arc<ConnInfo>, CallEvent)>) {
        let (conn, side) = self.conn_for(chunk, out);
        conn.joined[side_index(side)] = Some(chunk.stream_pos);
        Arc::make_mut(&mut conn.info).sync = SyncState::LateJoin;
        if let Some(d) = conn.decoder.as_mut() {
            d.joined(side, chunk.stream_pos);
        }
    }

    /// `missing` bytes of `chunk`'s direction were lost or not captured.
    pub fn gap(&mut self, chunk: &Chunk, missing: u64, out: &mut Vec<(Arc<ConnInfo>, CallEvent)>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing;
        let (conn, side) = self.conn_for(chunk, out);
        let mut events = Vec::new();
        match conn.decoder.as_mut() {
            Some(d) => d.gap(side, chunk.ts_ns, missing, &mut events),
            None => {
                // Undetected: what was pending can no longer be trusted to start the stream.
                conn.pending.clear();
                conn.pending_len = 0;
                Arc::make_mut(&mut conn.info).sync = SyncState::LateJoin;
            }
        }
        // Through push_events like every other event, so that `decoding` is the decoder's
        // state after the loss, not whatever the last event before it said.
        conn.push_events(events, out);
    }

    /// Marks these socket inodes as belonging to connections already open at start.
    pub fn set_preexisting(&mut self, inodes: impl IntoIterator<Item = u64>) {
        self.preexisting.extend(inodes);
    }

    /// What is known of `chunk`'s connection (None once it has been closed or evicted).
    pub fn info_of(&self, chunk: &Chunk) -> Option<&ConnInfo> {
        let (key, _) = Self::key(chunk);
        self.conns.peek(&key).map(|c| &*c.info)
    }

    /// Ends the connection of these two socket identities (offline captures see FIN/RST).
    pub fn close(&mut self, ts_ns: u64, a: u64, b: u64, out: &mut Vec<(Arc<ConnInfo>, CallEvent)>) {
        let key = if a <= b || b == 0 { (a, b) } else { (b, a) };
        if let Some(conn) = self.conns.remove(&key) {
            self.ended.push(conn.info.id);
            conn.end(ts_ns, ConnEnd::Closed, self.recognise, out);
        }
    }

    /// Ends every connection, oldest first (the tracer stops, or a capture file ends).
    pub fn close_all(
        &mut self,
        ts_ns: u64,
        end: ConnEnd,
        out: &mut Vec<(Arc<ConnInfo>, CallEvent)>,
    ) {
        for (_, conn) in self.conns.drain_oldest_first() {
            self.ended.push(conn.info.id);
            conn.end(ts_ns, end, self.recognise, out);
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Bytes held by decoders and detection buffers.
    pub fn buffered(&self) -> usize {
        self.conns
            .values()
            .map(|c| c.pending_len + c.decoder.as_ref().map_or(0, |d| d.buffered()))
            .sum()
    }

    /// Whether any connection has a desynchronised direction (for the summary).
    pub fn desynchronised(&self) -> usize {
        self.conns
            .values()
            .filter(|c| {
                c.decoder
                    .as_ref()
                    .is_some_and(|d| d.is_desynchronised(Side::A) || d.is_desynchronised(Side::B))
            })
            .count()
    }
}

impl Conn {
    /// The one way a connection leaves the table: bytes still undecided are shown, and every
    /// open call ends with `end`'s reason.
    fn end(
        mut self,
        ts_ns: u64,
        end: ConnEnd,
        recognise: &dyn Recognise,
        out: &mut Vec<(Arc<ConnInfo>, CallEvent)>,
    ) {
        let mut events = Vec::new();
        self.settle(recognise, &mut events);
        if let Some(d) = self.decoder.as_mut() {
            d.close(ts_ns, end, &mut events);
        }
        self.push_events(events, out);
    }

    /// Pairs events with a snapshot of the connection info, including the decoder's sync state
    /// for the side that sent each event.
    fn push_events(&mut self, events: Vec<CallEvent>, out: &mut Vec<(Arc<ConnInfo>, CallEvent)>) {
        for e in events {
            if let Some(d) = self.decoder.as_ref() {
                let decoding = Some(d.sync_state(e.side));
                if self.info.decoding != decoding {
                    Arc::make_mut(&mut self.info).decoding = decoding;
                }
            }
            out.push((Arc::clone(&self.info), e));
        }
    }

    /// Before a connection ends: bytes still waiting for detection are decoded as whatever
    /// they look like by now (raw when undecided), so nothing captured goes unshown.
    fn settle(&mut self, recognise: &dyn Recognise, out: &mut Vec<CallEvent>) {
        if self.decoder.is_some() || self.pending.is_empty() {
            return;
        }
        let heads = [&self.head[0][..], &self.head[1][..]];
        if let Some(decoder) = recognise.decoder(heads, self.info.server, true) {
            self.start_decoder(decoder, out);
        }
    }

    fn feed(
        &mut self,
        side: Side,
        ts: u64,
        bytes: &[u8],
        recognise: &dyn Recognise,
        out: &mut Vec<CallEvent>,
    ) {
        if let Some(d) = self.decoder.as_mut() {
            d.feed(side, ts, bytes, out);
            return;
        }
        let i = side_index(side);
        let room = MAX_UNDETECTED_BYTES.saturating_sub(self.head[i].len());
        self.head[i].extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.pending.push((side, ts, bytes.to_vec()));
        self.pending_len += bytes.len();
        let full = self.pending_len >= MAX_UNDETECTED_BYTES;
        let head_len = self.head[0].len() + self.head[1].len();
        if !full && head_len >= DETECT_EVERY_WRITE_BELOW && head_len < 2 * self.detected_at {
            return;
        }
        self.detected_at = head_len;
        let heads = [&self.head[0][..], &self.head[1][..]];
        if let Some(decoder) = recognise.decoder(heads, self.info.server, full) {
            self.start_decoder(decoder, out);
        }
    }

    /// Installs the decoder for the detected protocol and replays the pending bytes into it.
    fn start_decoder(&mut self, decoder: Box<dyn ConnDecoder>, out: &mut Vec<CallEvent>) {
        Arc::make_mut(&mut self.info).protocol = Some(decoder.protocol());
        self.decoder = Some(decoder);
        if let Some(d) = self.decoder.as_mut() {
            for side in [Side::A, Side::B] {
                if let Some(pos) = self.joined[side_index(side)] {
                    d.joined(side, pos);
                }
            }
        }
        self.head = [Vec::new(), Vec::new()];
        self.pending_len = 0;
        let pending = std::mem::take(&mut self.pending);
        if let Some(d) = self.decoder.as_mut() {
            for (side, ts, bytes) in pending {
                d.feed(side, ts, &bytes, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::call::{Body, CallEventKind, Role, Status};
    use crate::protocol::detect::Detector;
    use crate::record::chunk::tests::{header, parse_test, record};

    /// A ttrpc request frame (stream 1, `/svc/M`), as a shim's client sends it.
    fn ttrpc_request() -> Vec<u8> {
        // Request { service = "svc" (1), method = "M" (2) }
        let payload = [0x0a, 3, b's', b'v', b'c', 0x12, 1, b'M'];
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&1u32.to_be_bytes()); // stream id
        frame.extend_from_slice(&[1, 0]); // type request, flags
        frame.extend_from_slice(&payload);
        frame
    }

    #[test]
    fn undecided_bytes_are_shown_when_the_connection_ends() {
        // One side writes 100 bytes of no known protocol and the other never answers: not
        // enough to decide, so they wait; ending the connection must still show them.
        let chunk =
            parse_test(&record(&header(b"/run/x.sock\0", 100), &[b'z'; 100])).expect("chunk");
        let mut table = ConnTable::new(&Detector);
        let mut out = Vec::new();
        table.data(&chunk, &chunk.data, &mut out);
        assert!(out.is_empty(), "still undecided");
        table.close_all(chunk.ts_ns, ConnEnd::TracerStopped, &mut out);
        let raw: usize = out
            .iter()
            .map(|(_, e)| match &e.kind {
                CallEventKind::Message {
                    body: Body::Raw(b), ..
                } => b.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(raw, 100);
    }

    /// Regression (issue 10): a connection evicted from a full table dropped its open calls
    /// without an END row. Eviction now ends them like a close, with its own reason.
    #[test]
    fn regression_evicted_connection_ends_its_calls() {
        let mut table = ConnTable::with_capacity(1, &Detector);
        let mut out = Vec::new();
        let request = ttrpc_request();
        let mut first = header(b"/run/containerd/s/x\0", request.len() as u32);
        (first.sk, first.peer_sk, first.stream_pos) =
            (0xffff_8880_0000_1000, 0xffff_8880_0000_2000, 0);
        let chunk = parse_test(&record(&first, &request)).expect("chunk");
        table.data(&chunk, &chunk.data, &mut out);
        assert!(
            out.iter().any(|(_, e)| matches!(
                e.kind,
                CallEventKind::Message {
                    role: Role::Request,
                    ..
                }
            )),
            "the request is decoded: {out:?}"
        );
        out.clear();
        // A second connection takes the only slot: the first one's open call must end.
        let mut second = header(b"/run/containerd/s/y\0", request.len() as u32);
        (second.sk, second.peer_sk, second.stream_pos) =
            (0xffff_8880_0000_3000, 0xffff_8880_0000_4000, 0);
        (second.sock_ino, second.peer_ino) = (200, 201);
        let chunk = parse_test(&record(&second, &request)).expect("chunk");
        table.data(&chunk, &chunk.data, &mut out);
        let ended: Vec<&Status> = out
            .iter()
            .filter_map(|(info, e)| match &e.kind {
                CallEventKind::End { status, .. } if info.path == "/run/containerd/s/x" => {
                    Some(status)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1, "{out:?}");
        assert_eq!(
            ended[0].abnormal.as_deref(),
            Some(ConnEnd::Evicted.reason())
        );
        assert_eq!(table.stats.evicted, 1);
        assert_eq!(table.len(), 1);
    }
}
