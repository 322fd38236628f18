//! The pipeline target's input: a sequence of records on up to 16 connections, encoded compactly
//! so that the fuzzer mutates traffic rather than kernel header fields. Stream positions are
//! kept by the decoder, so records are in order unless an operation says otherwise.
//!
//! ```text
//! op   := tag:u8  len:u16le  [extra:u16le if mode is Gap or Truncated]  data[len]
//! tag  := bit 7 path_is_peer | bits 5-6 mode | bit 4 side | bits 0-3 connection
//! mode := 0 Plain | 1 Gap (skip `extra` stream bytes first) | 2 Truncated (`extra` bytes of
//!         the span not captured) | 3 Restart (the socket pair is reused: new inodes, position 0)
//! ```

use containerdsnoop_common::flags;
use containerdsnoop_decode::record::Chunk;

use crate::input::Input;

pub const CONNECTIONS: usize = 16;
pub const PATH: &str = "/run/containerd/containerd.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Gap(u16),
    Truncated(u16),
    Restart,
}

/// One record of the encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub conn: u8,
    /// 0 or 1: which socket of the pair sends (side A has the lower identity).
    pub side: u8,
    pub path_is_peer: bool,
    pub mode: Mode,
    pub data: Vec<u8>,
}

impl Op {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (mode, extra) = match self.mode {
            Mode::Plain => (0, None),
            Mode::Gap(n) => (1, Some(n)),
            Mode::Truncated(n) => (2, Some(n)),
            Mode::Restart => (3, None),
        };
        let tag = (u8::from(self.path_is_peer) << 7)
            | (mode << 5)
            | ((self.side & 1) << 4)
            | (self.conn & 0x0f);
        out.push(tag);
        let len = self.data.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(len as u16).to_le_bytes());
        if let Some(n) = extra {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.data[..len]);
    }
}

pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// Parses the operations; the input always decodes (a short tail is a shorter record).
pub fn decode_ops(data: &[u8]) -> Vec<Op> {
    let mut input = Input::new(data);
    let mut ops = Vec::new();
    while !input.is_empty() {
        let tag = input.u8();
        let len = usize::from(input.u16());
        let mode = match (tag >> 5) & 3 {
            0 => Mode::Plain,
            1 => Mode::Gap(input.u16()),
            2 => Mode::Truncated(input.u16()),
            _ => Mode::Restart,
        };
        ops.push(Op {
            conn: tag & 0x0f,
            side: (tag >> 4) & 1,
            path_is_peer: tag & 0x80 != 0,
            mode,
            data: input.bytes(len).to_vec(),
        });
    }
    ops
}

/// Turns operations into the records the capture would have produced.
pub fn to_chunks(ops: &[Op]) -> Vec<Chunk> {
    let mut pos = [[0u64; 2]; CONNECTIONS];
    let mut generation = [0u64; CONNECTIONS];
    let mut out = Vec::with_capacity(ops.len());
    for (n, op) in ops.iter().enumerate() {
        let c = usize::from(op.conn) % CONNECTIONS;
        let s = usize::from(op.side & 1);
        let mut flag_bits = flags::BACKEND_TRACEPOINT;
        if op.path_is_peer {
            flag_bits |= flags::PATH_IS_PEER;
        }
        let mut span = op.data.len() as u32;
        match op.mode {
            Mode::Plain => {}
            Mode::Gap(n) => pos[c][s] += u64::from(n),
            Mode::Truncated(n) => {
                span += u32::from(n);
                flag_bits |= flags::TRUNCATED;
            }
            Mode::Restart => {
                generation[c] += 1;
                pos[c] = [0, 0];
            }
        }
        let ino = |side: usize| 10_000 + 1_000 * generation[c] + 2 * c as u64 + side as u64;
        let id = |side: usize| 0x1000 + 2 * c as u64 + side as u64;
        out.push(Chunk {
            ts_ns: 1_000_000 * (n as u64 + 1),
            sock_ino: ino(s),
            peer_ino: ino(1 - s),
            sock_id: id(s),
            peer_id: id(1 - s),
            stream_pos: pos[c][s],
            call_len: span,
            chunk_off: 0,
            span_len: span,
            flags: flag_bits,
            tgid: 100 + 2 * c as u32 + s as u32,
            tid: 100 + 2 * c as u32 + s as u32,
            peer_tgid: 100 + 2 * c as u32 + (1 - s) as u32,
            lost_records: 0,
            pattern: 0,
            sock_type: 1,
            comm: if s == 0 { "ctr" } else { "containerd" }.to_string(),
            process_comm: if s == 0 { "ctr" } else { "containerd" }.to_string(),
            path: PATH.to_string(),
            data: op.data.clone(),
        });
        pos[c][s] += u64::from(span);
    }
    out
}

/// The operations that replay recorded chunks (fixtures) in order. Connections are numbered in
/// order of first appearance; side 0 is the socket with the lower identity, as the connection
/// table orders them.
pub fn from_chunks(chunks: &[Chunk]) -> Vec<Op> {
    let mut conns: Vec<(u64, u64)> = Vec::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        let (lo, hi) = if chunk.peer_id == 0 || chunk.sock_id <= chunk.peer_id {
            (chunk.sock_id, chunk.peer_id)
        } else {
            (chunk.peer_id, chunk.sock_id)
        };
        let conn = match conns.iter().position(|&k| k == (lo, hi)) {
            Some(i) => i,
            None => {
                conns.push((lo, hi));
                conns.len() - 1
            }
        };
        let side = u8::from(chunk.sock_id != lo);
        for piece in chunk.data.chunks(usize::from(u16::MAX)) {
            ops.push(Op {
                conn: (conn % CONNECTIONS) as u8,
                side,
                path_is_peer: chunk.has(flags::PATH_IS_PEER),
                mode: Mode::Plain,
                data: piece.to_vec(),
            });
        }
    }
    ops
}
