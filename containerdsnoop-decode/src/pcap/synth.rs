//! The synthetic TCP connection behind each exported unix connection: its two ends (made-up
//! addresses, ports and initial sequence numbers), and the packets of its life — handshake,
//! segments, teardown — appended as pcapng Enhanced Packet Blocks. The writer decides which
//! connection a record belongs to and what its packets say; this module only speaks TCP.

use containerdsnoop_common::flags;

use super::comment::Meta;
use super::ng;
use super::packet::{Tcp4, build_ipv4_frame, tcp_flags};
use crate::protocol::Protocol;
use crate::record::Chunk;

/// MSS 65495, NOP, window scale 14: the scale lets the receive window cover bursts of
/// unacknowledged data (the export has no pure ACKs) without "window full" warnings.
const SYN_OPTIONS: [u8; 8] = [2, 4, 0xff, 0xd7, 1, 3, 3, 14];
const WINDOW: u16 = u16::MAX;
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: usize = 0;
const SERVER: usize = 1;

pub(super) struct End {
    /// The socket's identity (`Chunk::sock_id`, or its inode for chunks without one).
    pub id: u64,
    /// Its inode, 0 until known (a server socket gets one only at `accept()`).
    pub ino: u64,
    pub addr: [u8; 4],
    pub port: u16,
    pub isn: u32,
    /// Stream position of the first byte seen from this end (sequence number isn + 1).
    pub origin: Option<u64>,
    /// Sequence space used so far, relative to isn + 1 (bytes, holes, FIN).
    pub next: u64,
}

impl End {
    /// An end with identity `id` and inode `ino` at `addr:port`.
    pub fn new(id: u64, ino: u64, addr: [u8; 4], port: u16) -> End {
        End {
            id,
            ino,
            addr,
            port,
            isn: mix(id) as u32,
            origin: None,
            next: 0,
        }
    }

    /// The sequence number of the byte `rel` bytes past the first one.
    pub fn seq_at(&self, rel: u64) -> u32 {
        self.isn.wrapping_add(1).wrapping_add(rel as u32)
    }

    pub fn seq(&self) -> u32 {
        self.seq_at(self.next)
    }
}

/// The made-up client port of a socket identity: stable, in the ephemeral range.
pub(super) fn client_port(id: u64) -> u16 {
    32768 + (mix(id) % 28232) as u16
}

pub(super) struct Conn {
    /// [`CLIENT`], [`SERVER`].
    pub ends: [End; 2],
    pub path: String,
    pub protocol: Protocol,
    pub last_used: u64,
}

/// One packet to append: which end sends it and what its TCP header and payload say.
pub(super) struct Segment<'a> {
    /// [`CLIENT`] or [`SERVER`]: the sender; the other end is the receiver.
    pub dir: usize,
    pub seq: u32,
    pub flags: u8,
    pub options: &'a [u8],
    pub payload: &'a [u8],
    pub ts_ns: u64,
    pub comments: &'a [&'a str],
}

/// The buffers packets are built in: the pcapng bytes not yet written, and one frame.
pub(super) struct Out<'a> {
    pub buf: &'a mut Vec<u8>,
    pub frame: &'a mut Vec<u8>,
}

impl Conn {
    /// Appends one packet as an EPB.
    pub fn segment(&self, out: &mut Out<'_>, s: &Segment<'_>) {
        let (from, to) = (&self.ends[s.dir], &self.ends[1 - s.dir]);
        let ack = if s.flags & tcp_flags::SYN != 0 && s.flags & tcp_flags::ACK != 0 {
            // A SYN-ACK acknowledges the SYN only.
            to.isn.wrapping_add(1)
        } else if s.flags & tcp_flags::ACK != 0 {
            to.seq()
        } else {
            0
        };
        let macs = if s.dir == CLIENT {
            (CLIENT_MAC, SERVER_MAC)
        } else {
            (SERVER_MAC, CLIENT_MAC)
        };
        out.frame.clear();
        build_ipv4_frame(
            out.frame,
            &Tcp4 {
                src: from.addr,
                dst: to.addr,
                sport: from.port,
                dport: to.port,
                seq: s.seq,
                ack,
                flags: s.flags,
                window: WINDOW,
                options: s.options,
            },
            s.payload,
            macs,
        );
        ng::enhanced_packet(out.buf, s.ts_ns, out.frame, s.comments);
    }

    /// The three-way handshake at `chunk`'s time (3 packets). Its comments name the
    /// connection; the sender's also its process.
    pub fn handshake(&self, out: &mut Out<'_>, chunk: &Chunk) {
        let describe = |e: usize| {
            let mut m = Meta {
                path: self.path.clone(),
                sock_ino: self.ends[e].ino,
                peer_ino: self.ends[1 - e].ino,
                sock_id: self.ends[e].id,
                peer_id: self.ends[1 - e].id,
                protocol: Some(self.protocol),
                ..Meta::default()
            };
            if self.ends[e].id == sender_id(chunk) {
                m.comm = chunk.comm.clone();
                m.process_comm = chunk.process_comm.clone();
                m.tgid = chunk.tgid;
                m.tid = chunk.tid;
                m.peer_tgid = chunk.peer_tgid;
                m.flags = chunk.flags & flags::PATH_IS_PEER;
            }
            m.encode()
        };
        let ts_ns = chunk.ts_ns;
        let (c, s) = (&self.ends[CLIENT], &self.ends[SERVER]);
        let syn = Segment {
            dir: CLIENT,
            seq: c.isn,
            flags: tcp_flags::SYN,
            options: &SYN_OPTIONS,
            payload: &[],
            ts_ns,
            comments: &[&describe(CLIENT)],
        };
        self.segment(out, &syn);
        let syn_ack = Segment {
            dir: SERVER,
            seq: s.isn,
            flags: tcp_flags::SYN | tcp_flags::ACK,
            comments: &[&describe(SERVER)],
            ..syn
        };
        self.segment(out, &syn_ack);
        let ack = Segment {
            dir: CLIENT,
            seq: c.seq_at(0),
            flags: tcp_flags::ACK,
            options: &[],
            comments: &[],
            ..syn_ack
        };
        self.segment(out, &ack);
    }

    /// FIN from each end, then the last ACK (3 packets).
    pub fn teardown(&mut self, out: &mut Out<'_>, ts_ns: u64) {
        for dir in [CLIENT, SERVER] {
            let fin = Segment {
                dir,
                seq: self.ends[dir].seq(),
                flags: tcp_flags::FIN | tcp_flags::ACK,
                options: &[],
                payload: &[],
                ts_ns,
                comments: &[],
            };
            self.segment(out, &fin);
            self.ends[dir].next += 1;
        }
        let ack = Segment {
            dir: CLIENT,
            seq: self.ends[CLIENT].seq(),
            flags: tcp_flags::ACK,
            options: &[],
            payload: &[],
            ts_ns,
            comments: &[],
        };
        self.segment(out, &ack);
    }

    /// Which end sent `c`.
    pub fn side_of(&self, c: &Chunk) -> usize {
        if sender_id(c) == self.ends[CLIENT].id {
            CLIENT
        } else {
            SERVER
        }
    }
}

/// A socket's identity: its `sock_id`, or its inode for chunks without identities.
pub(super) fn sender_id(c: &Chunk) -> u64 {
    if c.sock_id != 0 {
        c.sock_id
    } else {
        c.sock_ino
    }
}

pub(super) fn peer_id(c: &Chunk) -> u64 {
    if c.sock_id != 0 {
        c.peer_id
    } else {
        c.peer_ino
    }
}

/// A connection is its pair of socket identities, in either order (as the connection table
/// keys it).
pub(super) fn conn_key(c: &Chunk) -> (u64, u64) {
    let (a, b) = (sender_id(c), peer_id(c));
    (a.min(b), a.max(b))
}

/// Made-up but stable initial sequence numbers and client ports: a hash of the identity.
fn mix(id: u64) -> u64 {
    let x = (id ^ (id >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}
