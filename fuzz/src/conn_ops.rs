//! The input of the per-connection decoder targets (`http2_conn`, `ttrpc_conn`, `http1_conn`):
//! what both sides of one connection sent, with gaps, driven through the `ConnDecoder` trait the
//! connection table uses.
//!
//! ```text
//! input := limits:u8  op*
//! op    := tag:u8  len:u16le  bytes[len]     tag bit 0: side B; bit 1: a gap of `len` bytes
//! ```

use containerdsnoop_decode::{
    protocol::call::{CallEvent, ConnEnd, Side},
    protocol::decoder::ConnDecoder,
};

use crate::input::Input;

/// One op: `side` sent `bytes` (or lost `gap` bytes).
pub fn encode_write(side: Side, bytes: &[u8], out: &mut Vec<u8>) {
    for piece in bytes.chunks(usize::from(u16::MAX)) {
        out.push(u8::from(side == Side::B));
        out.extend_from_slice(&(piece.len() as u16).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// Runs the ops after the limits byte through `decoder`, calling `check` after each one (with
/// the events it produced) and once more after `close`.
pub fn run(
    input: &mut Input<'_>,
    decoder: &mut dyn ConnDecoder,
    mut check: impl FnMut(&dyn ConnDecoder, &[CallEvent]),
) {
    let mut events = Vec::new();
    let mut ts = 0;
    while !input.is_empty() {
        let tag = input.u8();
        let len = input.u16();
        let side = if tag & 1 == 0 { Side::A } else { Side::B };
        ts += 1;
        if tag & 2 != 0 {
            decoder.gap(side, ts, u64::from(len), &mut events);
        } else {
            decoder.feed(side, ts, input.bytes(usize::from(len)), &mut events);
        }
        check(decoder, &events);
        events.clear();
    }
    decoder.close(ts + 1, ConnEnd::CaptureEnded, &mut events);
    check(decoder, &events);
}
