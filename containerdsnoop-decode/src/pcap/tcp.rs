//! TCP reassembly for `-r`: turns the segments of a capture into per-direction byte-stream
//! [`Chunk`]s, as the live capture produces them. Retransmitted bytes are dropped, segments
//! that arrive early wait in a bounded reorder buffer, and bytes never captured become holes
//! in `stream_pos` (which the reassembler reports as gaps). SYN, FIN and RST open and close
//! connections; a connection seen mid-stream starts at its first captured byte.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use containerdsnoop_common::flags;

use super::comment::Meta;
use super::packet::{Segment, tcp_flags};
use crate::record::Chunk;

/// Most connections tracked at once; the least recently active is flushed and closed beyond.
pub const MAX_CONNECTIONS: usize = 16384;
/// Most early segments one direction holds while waiting for a missing one.
pub const MAX_REORDER_SEGMENTS: usize = 1024;
/// Most early bytes one direction holds; beyond it the missing bytes are declared a gap.
pub const MAX_REORDER_BYTES: usize = 4 << 20;
/// Most early bytes held over all connections.
pub const MAX_TOTAL_REORDER_BYTES: usize = 64 << 20;
/// Bookkeeping charged per held segment on top of its bytes (so empty ones count too).
const SEGMENT_OVERHEAD: usize = 64;
/// Synthesised socket inodes count up from here, far from real sockfs inode numbers.
pub const FIRST_SYNTHETIC_INO: u64 = 1 << 48;
const SOCK_STREAM: u16 = 1;

/// What a capture yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Chunk(Chunk),
    /// The connection of these sockets ended (FIN both ways, RST, eviction, end of file).
    Closed {
        ts_ns: u64,
        sock_ino: u64,
        peer_ino: u64,
        /// The identities the chunks carried (`Chunk::sock_id`/`peer_id`).
        sock_id: u64,
        peer_id: u64,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    pub segments: u64,
    pub connections: u64,
    /// Bytes that repeated bytes already delivered.
    pub retransmitted_bytes: u64,
    /// Segments that arrived ahead of a missing one.
    pub out_of_order: u64,
    /// Holes skipped because the reorder buffer filled or the connection ended.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Connections closed early to stay under [`MAX_CONNECTIONS`].
    pub evicted: u64,
}

struct Pending {
    span: u64,
    data: Vec<u8>,
    ts_ns: u64,
    meta: Option<Meta>,
}

impl Pending {
    fn cost(&self) -> usize {
        self.data.len() + SEGMENT_OVERHEAD
    }
}

/// One end's sending direction.
struct Dir {
    /// Sequence number of relative byte 0.
    base_seq: u32,
    next_rel: u64,
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    fin_rel: Option<u64>,
    finished: bool,
    /// Added to relative positions: our own exports carry the original stream position.
    pos_offset: Option<u64>,
}

impl Dir {
    fn new(base_seq: u32) -> Dir {
        Dir {
            base_seq,
            next_rel: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            fin_rel: None,
            finished: false,
            pos_offset: None,
        }
    }

    /// The relative position of `seq`, unwrapped around the next expected byte.
    fn rel(&self, seq: u32) -> i64 {
        let expected = self.base_seq.wrapping_add(self.next_rel as u32);
        self.next_rel as i64 + seq.wrapping_sub(expected) as i32 as i64
    }
}

struct End {
    addr: SocketAddr,
    /// Synthesised, or learnt from our export's comments.
    ino: Option<u64>,
    id: Option<u64>,
    tx: Option<Dir>,
}

struct Conn {
    ends: [End; 2],
    /// The end that sent the SYN, when seen.
    client: Option<usize>,
    /// "tcp://client->server", fixed at the first delivery.
    path: Option<String>,
    last_used: u64,
    last_ts: u64,
    delivered: bool,
}

type Key = (SocketAddr, SocketAddr);

/// Everything a connection needs from the tracker while it delivers.
struct Ctx<'a> {
    out: &'a mut VecDeque<Event>,
    stats: &'a mut TcpStats,
    next_ino: &'a mut u64,
    total_pending: &'a mut usize,
}

impl Ctx<'_> {
    fn ino(&mut self) -> u64 {
        let i = *self.next_ino;
        *self.next_ino += 1;
        i
    }
}

pub struct TcpTracker {
    conns: HashMap<Key, Conn>,
    lru: BTreeMap<u64, Key>,
    clock: u64,
    next_ino: u64,
    total_pending: usize,
    out: VecDeque<Event>,
    pub stats: TcpStats,
}

impl Default for TcpTracker {
    fn default() -> Self {
        TcpTracker {
            conns: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            next_ino: FIRST_SYNTHETIC_INO,
            total_pending: 0,
            out: VecDeque::new(),
            stats: TcpStats::default(),
        }
    }
}

impl TcpTracker {
    /// The next event ready for the caller.
    pub fn pop(&mut self) -> Option<Event> {
        self.out.pop_front()
    }

    pub fn tracked(&self) -> usize {
        self.conns.len()
    }

    /// Bytes held in reorder buffers.
    pub fn buffered(&self) -> usize {
        self.total_pending
    }

    /// Feeds one captured segment with its packet comments.
    pub fn segment(&mut self, seg: &Segment<'_>, ts_ns: u64, comments: &[String]) {
        self.stats.segments += 1;
        let meta = comments.iter().find_map(|c| Meta::parse(c));
        let key = (seg.src.min(seg.dst), seg.src.max(seg.dst));
        let s = usize::from(seg.src != key.0);
        let syn = seg.flags & tcp_flags::SYN != 0;
        let ack = seg.flags & tcp_flags::ACK != 0;

        // A new SYN on a tuple whose connection already moved on: the ports were reused.
        if syn
            && !ack
            && let Some(c) = self.conns.get(&key)
            && let Some(d) = &c.ends[s].tx
            && (d.next_rel > 0 || d.base_seq != seg.seq.wrapping_add(1))
        {
            self.close(key, ts_ns);
        }
        self.clock += 1;
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= MAX_CONNECTIONS
                && let Some((_, old)) = self.lru.first_key_value().map(|(k, v)| (*k, *v))
            {
                self.stats.evicted += 1;
                self.close(old, ts_ns);
            }
            self.stats.connections += 1;
            let end = |addr| End {
                addr,
                ino: None,
                id: None,
                tx: None,
            };
            self.conns.insert(
                key,
                Conn {
                    ends: [end(key.0), end(key.1)],
                    client: None,
                    path: None,
                    last_used: 0,
                    last_ts: ts_ns,
                    delivered: false,
                },
            );
        }
        let clock = self.clock;
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        self.lru.remove(&conn.last_used);
        conn.last_used = clock;
        self.lru.insert(clock, key);
        conn.last_ts = conn.last_ts.max(ts_ns);

        if seg.flags & tcp_flags::RST != 0 {
            self.close(key, ts_ns);
            return;
        }
        if let Some(m) = &meta {
            if m.sock_ino != 0 && conn.ends[s].ino.is_none() {
                conn.ends[s].ino = Some(m.sock_ino);
            }
            if m.peer_ino != 0 && conn.ends[1 - s].ino.is_none() {
                conn.ends[1 - s].ino = Some(m.peer_ino);
            }
            if m.sock_id != 0 && conn.ends[s].id.is_none() {
                conn.ends[s].id = Some(m.sock_id);
            }
            if m.peer_id != 0 && conn.ends[1 - s].id.is_none() {
                conn.ends[1 - s].id = Some(m.peer_id);
            }
        }
        // Bytes the peer acknowledged were received: a hole below that will never be filled
        // by a retransmission (the capture missed them).
        if ack && let Some(d) = conn.ends[1 - s].tx.as_ref() {
            let acked = d.rel(seg.ack);
            let mut ctx = Ctx {
                out: &mut self.out,
                stats: &mut self.stats,
                next_ino: &mut self.next_ino,
                total_pending: &mut self.total_pending,
            };
            while let Some(d) = conn.ends[1 - s].tx.as_ref()
                && let Some(&first) = d.pending.keys().next()
                && first > d.next_rel
                && (first as i64) <= acked
            {
                conn.skip_hole(1 - s, &mut ctx);
            }
        }
        let data_seq = if syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if syn {
            if !ack {
                conn.client = Some(s);
            } else if conn.client.is_none() {
                conn.client = Some(1 - s);
            }
        }
        let dir = conn.ends[s].tx.get_or_insert_with(|| Dir::new(data_seq));
        let rel = dir.rel(data_seq);
        let extra = meta.as_ref().map_or(0, |m| m.missing.min(u32::MAX as u64));
        // Our export says the bytes before this packet were lost: skip them now.
        let lost_before = meta.as_ref().map_or(0, |m| m.gap);
        let span = seg.wire_len as u64 + extra;
        if seg.flags & tcp_flags::FIN != 0 && rel >= 0 {
            dir.fin_rel = Some(rel as u64 + seg.wire_len as u64);
        }
        let mut ctx = Ctx {
            out: &mut self.out,
            stats: &mut self.stats,
            next_ino: &mut self.next_ino,
            total_pending: &mut self.total_pending,
        };
        if span > 0 {
            let (rel, span, data) = if rel < 0 {
                // Bytes from before the first one seen: only the part after it is new.
                let cut = rel.unsigned_abs();
                if cut >= span {
                    ctx.stats.retransmitted_bytes += span;
                    (0, 0, &[][..])
                } else {
                    ctx.stats.retransmitted_bytes += cut;
                    let skip = (cut as usize).min(seg.payload.len());
                    (0, span - cut, &seg.payload[skip..])
                }
            } else {
                (rel as u64, span, seg.payload)
            };
            if let Some(d) = conn.ends[s].tx.as_mut()
                && rel > d.next_rel
                && rel - d.next_rel <= lost_before
                && d.pending.range(..rel).next().is_none()
            {
                ctx.stats.gaps += 1;
                ctx.stats.gap_bytes += rel - d.next_rel;
                d.next_rel = rel;
            }
            if span > 0 {
                let p = Pending {
                    span,
                    data: data.to_vec(),
                    ts_ns,
                    meta,
                };
                conn.offer(s, rel, p, &mut ctx);
            }
        }
        conn.check_fin(s);
        let done = conn
            .ends
            .iter()
            .all(|e| e.tx.as_ref().is_some_and(|d| d.finished));
        if done {
            self.close(key, ts_ns);
        }
    }

    /// End of input: every connection's held bytes are delivered (after their holes) and every
    /// connection is closed.
    pub fn finish(&mut self) {
        while let Some((_, key)) = self.lru.first_key_value().map(|(k, v)| (*k, *v)) {
            let ts = self.conns.get(&key).map_or(0, |c| c.last_ts);
            self.close(key, ts);
        }
    }

    fn close(&mut self, key: Key, ts_ns: u64) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        self.lru.remove(&conn.last_used);
        let mut ctx = Ctx {
            out: &mut self.out,
            stats: &mut self.stats,
            next_ino: &mut self.next_ino,
            total_pending: &mut self.total_pending,
        };
        for s in 0..2 {
            while conn.ends[s]
                .tx
                .as_ref()
                .is_some_and(|d| !d.pending.is_empty())
            {
                conn.skip_hole(s, &mut ctx);
            }
        }
        if conn.delivered
            && let (Some(a), Some(b)) = (conn.ends[0].ino, conn.ends[1].ino)
        {
            self.out.push_back(Event::Closed {
                ts_ns,
                sock_ino: a,
                peer_ino: b,
                sock_id: conn.ends[0].id.unwrap_or(a),
                peer_id: conn.ends[1].id.unwrap_or(b),
            });
        }
    }
}

impl Conn {
    /// Takes a segment covering `[rel, rel + p.span)` of end `s`'s stream.
    fn offer(&mut self, s: usize, rel: u64, p: Pending, ctx: &mut Ctx<'_>) {
        let Some(dir) = self.ends[s].tx.as_mut() else {
            return;
        };
        if rel + p.span <= dir.next_rel {
            ctx.stats.retransmitted_bytes += p.span;
            return;
        }
        if rel > dir.next_rel {
            ctx.stats.out_of_order += 1;
            if let Some(old) = dir.pending.get(&rel)
                && old.span >= p.span
            {
                ctx.stats.retransmitted_bytes += p.span;
                return;
            }
            let cost = p.cost();
            if let Some(old) = dir.pending.insert(rel, p) {
                dir.pending_bytes -= old.cost();
                *ctx.total_pending -= old.cost();
            }
            dir.pending_bytes += cost;
            *ctx.total_pending += cost;
            loop {
                let Some(dir) = self.ends[s].tx.as_ref() else {
                    return;
                };
                let over = dir.pending.len() > MAX_REORDER_SEGMENTS
                    || dir.pending_bytes > MAX_REORDER_BYTES
                    || *ctx.total_pending > MAX_TOTAL_REORDER_BYTES;
                if !over || dir.pending.is_empty() {
                    return;
                }
                self.skip_hole(s, ctx);
            }
        }
        self.deliver(s, rel, p, ctx);
        self.drain(s, ctx);
    }

    /// Delivers held segments that have become contiguous.
    fn drain(&mut self, s: usize, ctx: &mut Ctx<'_>) {
        loop {
            let Some(dir) = self.ends[s].tx.as_mut() else {
                return;
            };
            let Some(entry) = dir.pending.first_entry() else {
                return;
            };
            if *entry.key() > dir.next_rel {
                return;
            }
            let (rel, p) = entry.remove_entry();
            dir.pending_bytes -= p.cost();
            *ctx.total_pending -= p.cost();
            if rel + p.span <= dir.next_rel {
                ctx.stats.retransmitted_bytes += p.span;
                continue;
            }
            self.deliver(s, rel, p, ctx);
        }
    }

    /// Gives up on the bytes before the first held segment: they become a gap.
    fn skip_hole(&mut self, s: usize, ctx: &mut Ctx<'_>) {
        let Some(dir) = self.ends[s].tx.as_mut() else {
            return;
        };
        let Some(&first) = dir.pending.keys().next() else {
            return;
        };
        if first > dir.next_rel {
            ctx.stats.gaps += 1;
            ctx.stats.gap_bytes += first - dir.next_rel;
            dir.next_rel = first;
        }
        self.drain(s, ctx);
    }

    fn check_fin(&mut self, s: usize) {
        if let Some(dir) = self.ends[s].tx.as_mut()
            && let Some(fin) = dir.fin_rel
            && dir.next_rel >= fin
        {
            dir.finished = true;
        }
    }

    /// Emits `p` (trimmed to what is new) as a chunk of end `s`.
    fn deliver(&mut self, s: usize, rel: u64, mut p: Pending, ctx: &mut Ctx<'_>) {
        let client = *self.client.get_or_insert_with(|| {
            // No SYN seen: the end on the higher (ephemeral) port is most likely the client.
            usize::from(self.ends[1].addr.port() > self.ends[0].addr.port())
        });
        let path = self
            .path
            .get_or_insert_with(|| {
                let (c, v) = (self.ends[client].addr, self.ends[1 - client].addr);
                format!("tcp://{c}->{v}")
            })
            .clone();
        let sock_ino = *self.ends[s].ino.get_or_insert_with(|| ctx.ino());
        let peer_ino = *self.ends[1 - s].ino.get_or_insert_with(|| ctx.ino());
        let sock_id = *self.ends[s].id.get_or_insert(sock_ino);
        let peer_id = *self.ends[1 - s].id.get_or_insert(peer_ino);
        let Some(dir) = self.ends[s].tx.as_mut() else {
            return;
        };
        let mut rel = rel;
        if rel < dir.next_rel {
            let cut = dir.next_rel - rel;
            ctx.stats.retransmitted_bytes += cut;
            p.data.drain(..(cut as usize).min(p.data.len()));
            p.span -= cut;
            rel = dir.next_rel;
        }
        dir.next_rel = rel + p.span;
        let offset = *dir.pos_offset.get_or_insert_with(|| {
            p.meta
                .as_ref()
                .and_then(|m| m.stream_pos)
                .and_then(|pos| pos.checked_sub(rel))
                .unwrap_or(0)
        });
        self.delivered = true;
        let span_len = u32::try_from(p.span).unwrap_or(u32::MAX);
        let chunk = match p.meta {
            // Our own export: the identities exactly as captured (an inode may still be 0).
            Some(m) => Chunk {
                ts_ns: p.ts_ns,
                sock_ino: m.sock_ino,
                peer_ino: m.peer_ino,
                sock_id: m.sock_id,
                peer_id: m.peer_id,
                stream_pos: rel + offset,
                call_len: span_len,
                chunk_off: 0,
                span_len,
                flags: m.flags,
                tgid: m.tgid,
                tid: m.tid,
                peer_tgid: m.peer_tgid,
                lost_records: m.lost_records,
                pattern: 0,
                sock_type: SOCK_STREAM,
                comm: m.comm,
                process_comm: m.process_comm,
                path: if m.path.is_empty() { path } else { m.path },
                data: p.data,
            },
            None => {
                let mut fl = flags::CALL_END;
                if s == client {
                    // The path names the server: the client's peer.
                    fl |= flags::PATH_IS_PEER;
                }
                if (p.data.len() as u64) < p.span {
                    fl |= flags::TRUNCATED;
                }
                Chunk {
                    ts_ns: p.ts_ns,
                    sock_ino,
                    peer_ino,
                    sock_id,
                    peer_id,
                    stream_pos: rel + offset,
                    call_len: span_len,
                    chunk_off: 0,
                    span_len,
                    flags: fl,
                    tgid: 0,
                    tid: 0,
                    peer_tgid: 0,
                    lost_records: 0,
                    pattern: 0,
                    sock_type: SOCK_STREAM,
                    comm: String::new(),
                    process_comm: String::new(),
                    path,
                    data: p.data,
                }
            }
        };
        ctx.out.push_back(Event::Chunk(chunk));
    }
}
