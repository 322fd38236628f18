//! `-w`: presents each traced unix connection as a synthetic TCP/IPv4 connection in a pcapng
//! stream. Each connection gets its own made-up client address (127.1.0.1 and up) and client
//! port (from the client socket's identity), each socket path its own server address (127.0.0.1
//! and up), each protocol its own server port ([`server_port`]). Sequence numbers
//! count the direction's stream bytes from the first one seen, so bytes the capture lost or
//! truncated show as holes in the sequence space ("previous segment not captured"), never as
//! invented bytes. Process metadata rides along as packet comments ([`comment::Meta`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IsTerminal as _, Write};

use containerdsnoop_common::flags;

use super::comment::Meta;
use super::packet::{MAX_IPV4_PAYLOAD, linktype, tcp_flags};
use super::synth::{self, Conn, End, Out, Segment, conn_key, peer_id, sender_id};
use super::{Error, ng, server_port};
use crate::protocol::Protocol;
use crate::record::Chunk;
use crate::stream::reassembly::Piece;

/// Most connections given addresses at once; the least recently active one is closed (FIN)
/// beyond this, and gets a fresh connection if it speaks again.
pub const MAX_CONNECTIONS: usize = 65536;
/// Distinct server addresses handed out (one per socket path); later paths share the last one.
pub const MAX_SERVER_ADDRESSES: usize = 4096;
/// Payload bytes per synthetic segment: the most one IPv4 packet can carry.
pub const MAX_SEGMENT: usize = MAX_IPV4_PAYLOAD;

/// What the caller knows about a record's connection. Only read when the writer first sees
/// the connection; later records of it keep the roles and protocol given then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnMeta {
    pub protocol: Protocol,
    /// The record's sender is the server (the socket bound to the matched path).
    pub sender_is_server: bool,
}

impl ConnMeta {
    /// Derives the roles from the record: a path that is the peer's (`PATH_IS_PEER`) makes the
    /// sender the client; the sender's own path makes it the bound (accepted) side.
    pub fn from_chunk(chunk: &Chunk, protocol: Protocol) -> ConnMeta {
        ConnMeta {
            protocol,
            sender_is_server: !chunk.has(flags::PATH_IS_PEER),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub packets: u64,
    pub connections: u64,
    /// Connections closed early to stay under [`MAX_CONNECTIONS`].
    pub evicted: u64,
}

/// Writes the pcapng export. Every call leaves `out` holding a valid file (and, with autoflush,
/// flushed), so a reader of `-w -` sees packets as they come.
pub struct PcapWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    frame: Vec<u8>,
    conns: HashMap<(u64, u64), Conn>,
    lru: BTreeMap<u64, (u64, u64)>,
    clock: u64,
    next_client: u32,
    servers: HashMap<String, u16>,
    autoflush: bool,
    last_ts: u64,
    stats: WriterStats,
}

/// The file or stdout `-w` names.
pub type Output = Box<dyn Write + Send>;

impl PcapWriter<Output> {
    /// Opens `path` (created mode 0600, truncated), or stdout for `-`.
    pub fn create(path: &str) -> Result<Self, Error> {
        if path == "-" {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(Error::StdoutIsTerminal);
            }
            return PcapWriter::new(Box::new(stdout) as Output);
        }
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // The mode only applies to new files; an existing regular file is about to hold
        // traffic too. (Never chmod devices such as /dev/null.)
        if file.metadata()?.is_file() {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        PcapWriter::new(Box::new(io::BufWriter::new(file)) as Output)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Starts a pcapng stream on `out` (section and interface headers, flushed).
    pub fn new(out: W) -> Result<Self, Error> {
        let mut w = PcapWriter {
            out,
            buf: Vec::with_capacity(1 << 16),
            frame: Vec::with_capacity(1 << 16),
            conns: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            next_client: 0,
            servers: HashMap::new(),
            autoflush: true,
            last_ts: 0,
            stats: WriterStats::default(),
        };
        let app = concat!("containerdsnoop ", env!("CARGO_PKG_VERSION"));
        ng::file_header(
            &mut w.buf,
            linktype::ETHERNET as u16,
            app,
            "containerdsnoop",
        );
        w.commit()?;
        Ok(w)
    }

    /// With autoflush off, call [`flush`](Self::flush) after each batch of records.
    pub fn set_autoflush(&mut self, on: bool) {
        self.autoflush = on;
    }

    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(Error::Io)
    }

    /// Writes one captured record. `pieces` are what the reassembler said about it (holes
    /// become sequence gaps); an empty slice means "take the record as it is".
    pub fn record(
        &mut self,
        chunk: &Chunk,
        pieces: &[Piece],
        meta: &ConnMeta,
    ) -> Result<(), Error> {
        self.record_attributed(chunk, pieces, meta, [None, None])
    }

    /// [`record`](Self::record), with the sender's and the peer's containers for its packet
    /// comments.
    pub fn record_attributed(
        &mut self,
        chunk: &Chunk,
        pieces: &[Piece],
        meta: &ConnMeta,
        containers: [Option<String>; 2],
    ) -> Result<(), Error> {
        self.last_ts = self.last_ts.max(chunk.ts_ns);
        let key = conn_key(chunk);
        self.clock += 1;
        // Socket memory is reused once a connection closes: the same identities with another
        // inode, or a side starting over at position 0, is a new connection.
        if let Some(conn) = self.conns.get(&key) {
            let e = &conn.ends[conn.side_of(chunk)];
            let reused = (e.ino != 0 && chunk.sock_ino != 0 && e.ino != chunk.sock_ino)
                || (chunk.stream_pos == 0 && e.next > 0);
            if reused && let Some(old) = self.conns.remove(&key) {
                self.lru.remove(&old.last_used);
                self.teardown(old, chunk.ts_ns);
            }
        }
        if !self.conns.contains_key(&key) {
            self.open(key, chunk, meta);
        }
        let clock = self.clock;
        let Some(conn) = self.conns.get_mut(&key) else {
            return Ok(());
        };
        self.lru.remove(&conn.last_used);
        conn.last_used = clock;
        self.lru.insert(clock, key);

        let d = conn.side_of(chunk);
        if conn.ends[d].ino == 0 {
            conn.ends[d].ino = chunk.sock_ino;
        }
        if conn.ends[1 - d].ino == 0 {
            conn.ends[1 - d].ino = chunk.peer_ino;
        }
        let origin = *conn.ends[d].origin.get_or_insert(chunk.stream_pos);
        let rel = |pos: u64| pos.saturating_sub(origin);

        let derived;
        let pieces = if pieces.is_empty() {
            derived = Piece::of_record(chunk);
            &derived[..]
        } else {
            pieces
        };
        let mut notes = Vec::new();
        let mut data: Option<(u64, usize)> = None;
        let mut missing: Option<(u64, u64)> = None;
        let mut gap = 0;
        for p in pieces {
            match *p {
                Piece::Joined { pos } => notes.push(format!(
                    "joined: the stream was at byte {pos} when tracing began"
                )),
                Piece::Gap {
                    pos,
                    len,
                    lost_records,
                } => {
                    gap += len;
                    notes.push(format!(
                        "gap: {len} bytes at stream byte {pos} not captured ({lost_records} records lost)"
                    ))
                }
                Piece::Overlap { .. } => {}
                Piece::Data { pos, start } => data = Some((pos, start)),
                Piece::Missing { pos, len } => {
                    notes.push(format!(
                        "missing: {len} bytes at stream byte {pos}: {}",
                        chunk.missing_reason()
                    ));
                    missing = Some((pos, len));
                }
            }
        }

        let mut base = Meta::from_chunk(chunk);
        [base.container, base.peer_container] = containers;
        let mut emitted = false;
        if let Some((pos, start)) = data {
            let bytes = chunk.data.get(start..).unwrap_or(&[]);
            let mut off = 0;
            while off < bytes.len() {
                let n = (bytes.len() - off).min(MAX_SEGMENT);
                let last = off + n == bytes.len();
                let seg_pos = pos + off as u64;
                base.stream_pos = Some(seg_pos);
                base.missing = if last { missing.map_or(0, |m| m.1) } else { 0 };
                base.lost_records = if off == 0 { chunk.lost_records } else { 0 };
                base.gap = if off == 0 { gap } else { 0 };
                let text = base.encode();
                let mut comments = vec![text.as_str()];
                if !emitted {
                    comments.extend(notes.iter().map(String::as_str));
                }
                let mut out = Out {
                    buf: &mut self.buf,
                    frame: &mut self.frame,
                };
                let segment = Segment {
                    dir: d,
                    seq: conn.ends[d].seq_at(rel(seg_pos)),
                    flags: tcp_flags::ACK | if last { tcp_flags::PSH } else { 0 },
                    options: &[],
                    payload: &bytes[off..off + n],
                    ts_ns: chunk.ts_ns,
                    comments: &comments,
                };
                conn.segment(&mut out, &segment);
                self.stats.packets += 1;
                emitted = true;
                off += n;
            }
            let end = rel(pos + bytes.len() as u64);
            conn.ends[d].next = conn.ends[d].next.max(end);
        }
        if let Some((pos, len)) = missing {
            let end = &mut conn.ends[d];
            end.next = end.next.max(rel(pos + len));
        }
        if !emitted && (!notes.is_empty() || missing.is_some()) {
            // Nothing to show but a hole: an empty ACK at the hole's start carries the notes
            // (and, for the reader, the record's missing span).
            let pos = missing.map_or(chunk.stream_pos, |m| m.0);
            base.stream_pos = Some(pos);
            base.missing = missing.map_or(0, |m| m.1);
            base.gap = gap;
            let text = base.encode();
            let mut comments = vec![text.as_str()];
            comments.extend(notes.iter().map(String::as_str));
            let mut out = Out {
                buf: &mut self.buf,
                frame: &mut self.frame,
            };
            let segment = Segment {
                dir: d,
                seq: conn.ends[d].seq_at(rel(pos)),
                flags: tcp_flags::ACK,
                options: &[],
                payload: &[],
                ts_ns: chunk.ts_ns,
                comments: &comments,
            };
            conn.segment(&mut out, &segment);
            self.stats.packets += 1;
        }
        self.commit()
    }

    /// The connection of sockets `a` and `b` is gone: FIN it. `a`/`b` are the chunks'
    /// `sock_id`/`peer_id` (either order), or their inodes for chunks without identities.
    pub fn close_conn(&mut self, a: u64, b: u64, ts_ns: u64) -> Result<(), Error> {
        self.last_ts = self.last_ts.max(ts_ns);
        let key = (a.min(b), a.max(b));
        if let Some(conn) = self.conns.remove(&key) {
            self.lru.remove(&conn.last_used);
            self.teardown(conn, ts_ns);
        }
        self.commit()
    }

    /// Closes every connection still open and flushes; returns the output.
    pub fn finish(mut self) -> Result<W, Error> {
        let ts = self.last_ts;
        while let Some((_, key)) = self.lru.pop_first() {
            if let Some(conn) = self.conns.remove(&key) {
                self.teardown(conn, ts);
            }
        }
        self.commit()?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn commit(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf).map_err(Error::Io)?;
            self.buf.clear();
        }
        if self.autoflush {
            self.out.flush().map_err(Error::Io)?;
        }
        Ok(())
    }

    fn open(&mut self, key: (u64, u64), chunk: &Chunk, meta: &ConnMeta) {
        if self.conns.len() >= MAX_CONNECTIONS
            && let Some((_, old)) = self.lru.pop_first()
            && let Some(conn) = self.conns.remove(&old)
        {
            self.stats.evicted += 1;
            self.teardown(conn, chunk.ts_ns);
        }
        let (sender, peer) = (
            (sender_id(chunk), chunk.sock_ino),
            (peer_id(chunk), chunk.peer_ino),
        );
        let ((client_id, client_ino), (server_id, server_ino)) = if meta.sender_is_server {
            (peer, sender)
        } else {
            (sender, peer)
        };
        let n = self.next_client % 0x00FE_FFFE;
        self.next_client = self.next_client.wrapping_add(1);
        let client_addr = (0x7F01_0001u32 + n).to_be_bytes();
        let server_idx = match self.servers.get(&chunk.path) {
            Some(&i) => i,
            None if self.servers.len() < MAX_SERVER_ADDRESSES => {
                let i = self.servers.len() as u16 + 1;
                self.servers.insert(chunk.path.clone(), i);
                i
            }
            None => MAX_SERVER_ADDRESSES as u16,
        };
        let server_addr = (0x7F00_0000u32 + server_idx as u32).to_be_bytes();
        let conn = Conn {
            ends: [
                End::new(
                    client_id,
                    client_ino,
                    client_addr,
                    synth::client_port(client_id),
                ),
                End::new(
                    server_id,
                    server_ino,
                    server_addr,
                    server_port(meta.protocol),
                ),
            ],
            path: chunk.path.clone(),
            protocol: meta.protocol,
            last_used: self.clock,
        };
        let mut out = Out {
            buf: &mut self.buf,
            frame: &mut self.frame,
        };
        conn.handshake(&mut out, chunk);
        self.stats.packets += 3;
        self.stats.connections += 1;
        self.lru.insert(self.clock, key);
        self.conns.insert(key, conn);
    }

    fn teardown(&mut self, mut conn: Conn, ts: u64) {
        let mut out = Out {
            buf: &mut self.buf,
            frame: &mut self.frame,
        };
        conn.teardown(&mut out, ts);
        self.stats.packets += 3;
    }
}
