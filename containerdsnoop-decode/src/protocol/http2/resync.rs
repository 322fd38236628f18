//! Finding frame boundaries in a byte stream that starts at an unknown point: after a
//! mid-connection attach, or after the capture lost bytes. A candidate 9-byte header (RFC 9113
//! §4.1) must be plausible for its type (`frame::plausible`, the rule detection uses too), and
//! several consecutive candidates must chain (`next = here + 9 + len`) before the position is
//! trusted. Bytes held while searching are bounded by
//! [`RESYNC_WINDOW`].

use std::collections::VecDeque;

use super::frame::{Expect, HEADER_LEN, Head, Kind, flags, plausible};

/// Bytes held while searching; older bytes are dropped (and counted as skipped) beyond it. Three
/// maximal gRPC frames (3 × (9 + 16384)) fit, so a chain of full DATA frames can still be judged.
pub const RESYNC_WINDOW: usize = 64 * 1024;

/// Consecutive plausible headers that make a position trusted on their own.
pub const CHAIN_FRAMES: usize = 3;

/// Consecutive plausible headers that suffice when the last one ends exactly where the bytes
/// available so far end: writers flush whole frames, so a write's end is usually a frame end.
pub const CHAIN_FRAMES_AT_END: usize = 2;

/// Chunk starts remembered inside the window. A single plausible frame that starts exactly at a
/// chunk's first byte and ends exactly at the last byte received is trusted too: grpc-go writes
/// whole frames, and only its 32 KiB batches cut a frame.
const MAX_CHUNK_STARTS: usize = 64;

/// Whether `next` may follow `prev` in one direction: a header block must be continued by
/// CONTINUATION frames on its stream, and a CONTINUATION needs an open block before it (unless it
/// is the first frame of the chain, whose block started before the search began).
fn may_follow(prev: Option<&Head>, next: &Head) -> bool {
    let open_block = prev.filter(|p| {
        matches!(
            p.kind,
            Kind::Headers | Kind::PushPromise | Kind::Continuation
        ) && !p.has(flags::END_HEADERS)
    });
    match (open_block, prev) {
        (Some(p), _) => next.kind == Kind::Continuation && next.stream == p.stream,
        (None, Some(_)) => next.kind != Kind::Continuation,
        (None, None) => true,
    }
}

/// What checking the chain at one offset found.
#[derive(Debug, PartialEq, Eq)]
enum Chain {
    Trusted,
    Rejected,
    /// Plausible so far, but the bytes end before the chain can be judged.
    Undecided,
}

fn chain_at(buf: &[u8], at: usize, at_chunk_start: bool, max_frame: u32) -> Chain {
    let mut pos = at;
    let mut prev: Option<Head> = None;
    let mut frames = 0;
    loop {
        let Some(raw) = buf.get(pos..pos + HEADER_LEN) else {
            return Chain::Undecided;
        };
        let Ok(raw) = <&[u8; HEADER_LEN]>::try_from(raw) else {
            return Chain::Undecided;
        };
        let Some(head) = plausible(raw, max_frame, Expect::Http2) else {
            return Chain::Rejected;
        };
        if !may_follow(prev.as_ref(), &head) {
            return Chain::Rejected;
        }
        frames += 1;
        let end = pos + HEADER_LEN + head.len as usize;
        if frames >= CHAIN_FRAMES {
            return Chain::Trusted;
        }
        if end == buf.len() {
            let enough = frames >= CHAIN_FRAMES_AT_END || at_chunk_start;
            return if enough {
                Chain::Trusted
            } else {
                Chain::Undecided
            };
        }
        if end > buf.len() {
            return Chain::Undecided;
        }
        prev = Some(head);
        pos = end;
    }
}

/// The search state of one direction.
#[derive(Debug, Default)]
pub struct Searcher {
    buf: Vec<u8>,
    /// Offsets in `buf` where a chunk began, oldest first.
    chunk_starts: VecDeque<usize>,
    /// Offsets below this were rejected for good.
    rejected_below: usize,
}

/// The outcome of feeding the searcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// Frames start at the first byte of `rest`, which the caller decodes (and `skipped` bytes
    /// before it were given up).
    At { rest: Vec<u8>, skipped: usize },
    /// Not yet; `skipped` bytes were given up for good.
    NotYet { skipped: usize },
}

impl Searcher {
    pub fn new() -> Searcher {
        Searcher::default()
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends one chunk and searches. `max_frame` bounds plausible lengths (the receiver's
    /// SETTINGS_MAX_FRAME_SIZE when known, else the default 16384, which gRPC uses).
    pub fn feed(&mut self, chunk: &[u8], max_frame: u32) -> Found {
        if chunk.is_empty() {
            return Found::NotYet { skipped: 0 };
        }
        if self.chunk_starts.len() >= MAX_CHUNK_STARTS {
            self.chunk_starts.pop_front();
        }
        self.chunk_starts.push_back(self.buf.len());
        self.buf.extend_from_slice(chunk);
        let mut first_undecided = None;
        for at in self.rejected_below..self.buf.len() {
            if self.buf.len() - at < HEADER_LEN {
                first_undecided.get_or_insert(at);
                break;
            }
            let at_chunk_start = self.chunk_starts.contains(&at);
            match chain_at(&self.buf, at, at_chunk_start, max_frame) {
                Chain::Trusted => {
                    let rest = self.buf.split_off(at);
                    let skipped = self.buf.len();
                    *self = Searcher::default();
                    return Found::At { rest, skipped };
                }
                Chain::Rejected => {
                    if first_undecided.is_none() {
                        self.rejected_below = at + 1;
                    }
                }
                Chain::Undecided => {
                    first_undecided.get_or_insert(at);
                }
            }
        }
        // Keep bytes from the first position that is still possible, within the window.
        let keep_from = first_undecided
            .unwrap_or(self.buf.len())
            .max(self.buf.len().saturating_sub(RESYNC_WINDOW));
        self.discard(keep_from)
    }

    fn discard(&mut self, n: usize) -> Found {
        if n == 0 {
            return Found::NotYet { skipped: 0 };
        }
        self.buf.drain(..n);
        self.rejected_below = self.rejected_below.saturating_sub(n);
        self.chunk_starts.retain(|&s| s >= n);
        for s in &mut self.chunk_starts {
            *s -= n;
        }
        Found::NotYet { skipped: n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http2::frame::tests::frame;

    /// Feeds chunks until found; returns the bytes decoding would see (the rest and every later
    /// chunk) and the bytes skipped.
    fn find_all(chunks: &[&[u8]]) -> (Option<Vec<u8>>, usize) {
        let mut s = Searcher::new();
        let mut skipped = 0;
        for (i, c) in chunks.iter().enumerate() {
            match s.feed(c, 16384) {
                Found::At {
                    mut rest,
                    skipped: k,
                } => {
                    chunks[i + 1..]
                        .iter()
                        .for_each(|c| rest.extend_from_slice(c));
                    return (Some(rest), skipped + k);
                }
                Found::NotYet { skipped: k } => skipped += k,
            }
        }
        (None, skipped)
    }

    fn valid_frames() -> Vec<u8> {
        [
            frame(0x1, flags::END_HEADERS, 3, &[0x83, 0x86]),
            frame(0x0, 0, 3, b"\0\0\0\0\x02hi"),
            frame(0x8, 0, 0, &[0, 0, 1, 0]),
            frame(0x6, 0, 0, &[1; 8]),
        ]
        .concat()
    }

    #[test]
    fn garbage_before_valid_frames() {
        let frames = valid_frames();
        for garbage in [&b"\x17\xff\x00zz"[..], &[0xffu8; 300], &[0u8; 1000]] {
            let bytes = [garbage, &frames].concat();
            let (rest, skipped) = find_all(&[&bytes]);
            assert_eq!(rest.as_deref(), Some(&frames[..]), "garbage {garbage:?}");
            assert_eq!(skipped, garbage.len());
        }
    }

    #[test]
    fn starting_mid_frame_finds_the_next_boundary() {
        let frames = valid_frames();
        let first_len = HEADER_LEN + 2;
        for cut in 1..first_len {
            let (rest, skipped) = find_all(&[&frames[cut..]]);
            assert_eq!(rest.as_deref(), Some(&frames[first_len..]), "cut {cut}");
            assert_eq!(skipped, first_len - cut);
        }
    }

    #[test]
    fn fake_headers_inside_a_data_payload_do_not_chain_to_its_end() {
        // The DATA payload holds two fake frames that chain to each other, but not to the end of
        // the payload: the search entering the payload must skip them and land after it.
        let fake = [
            frame(0x8, 0, 0, &[0, 0, 0, 1]),
            frame(0x6, 0, 0, &[0; 8]),
            b"tail".to_vec(),
        ]
        .concat();
        let data = frame(0x0, 0, 5, &fake);
        let after = [
            frame(0x8, 0, 5, &[0, 0, 2, 0]),
            frame(0x0, flags::END_STREAM, 5, b"x"),
            frame(0x3, 0, 5, &[0, 0, 0, 8]),
        ]
        .concat();
        let bytes = [data.clone(), after.clone()].concat();
        // Entering anywhere inside the DATA frame (past its header).
        for cut in 1..data.len() {
            let (rest, _) = find_all(&[&bytes[cut..]]);
            assert_eq!(rest.as_deref(), Some(&after[..]), "cut {cut}");
        }
        // Entering at its header: the real frame wins over the fakes inside it.
        let (rest, skipped) = find_all(&[&bytes]);
        assert_eq!((rest.as_deref(), skipped), (Some(&bytes[..]), 0));
    }

    #[test]
    fn chain_split_across_chunks_waits_for_more_bytes() {
        let frames = valid_frames();
        let bytes = [&b"\x01\x02\x03"[..], &frames].concat();
        for a in 1..bytes.len() {
            let (rest, skipped) = find_all(&[&bytes[..a], &bytes[a..]]);
            assert_eq!(rest.as_deref(), Some(&frames[..]), "split {a}");
            assert_eq!(skipped, 3);
        }
    }

    #[test]
    fn one_frame_filling_a_chunk_is_trusted_two_mid_chunk_are_not() {
        let one = frame(0x0, 0, 7, b"\0\0\0\0\x01z");
        assert_eq!(find_all(&[&one]).0.as_deref(), Some(&one[..]));
        // The same frame after garbage in the same chunk is not at a chunk start.
        let bytes = [&b"\x99"[..], &one].concat();
        assert_eq!(find_all(&[&bytes]).0, None);
    }

    #[test]
    fn continuation_must_continue_an_open_block() {
        let bytes = [
            frame(0x0, 0, 1, b"ab"),
            frame(0x9, flags::END_HEADERS, 1, &[0x82]),
            frame(0x8, 0, 0, &[0, 0, 0, 1]),
        ]
        .concat();
        // DATA then CONTINUATION cannot chain; the CONTINUATION alone can (its HEADERS is lost).
        let (rest, skipped) = find_all(&[&bytes]);
        assert_eq!(skipped, 11);
        assert_eq!(rest.as_deref(), Some(&bytes[11..]));
    }

    #[test]
    fn bounded_while_searching() {
        // A receiver that allows 1 MiB frames, and a DATA header claiming almost that much: the
        // candidate stays undecided for longer than the window.
        let mut s = Searcher::new();
        let mut skipped = 0;
        for i in 0..100 {
            let mut chunk = vec![0u8; 4096];
            if i == 0 {
                chunk[..9].copy_from_slice(&[0x0f, 0, 0, 0x00, 0x00, 0, 0, 0, 1]);
            }
            if let Found::NotYet { skipped: k } = s.feed(&chunk, 1 << 20) {
                skipped += k;
            }
            assert!(s.buffered() <= RESYNC_WINDOW);
        }
        assert_eq!(skipped + s.buffered(), 100 * 4096);
    }
}
