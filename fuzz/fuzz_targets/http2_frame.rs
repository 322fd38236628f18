//! HTTP/2 framing: one direction's bytes cut into frames by `codec::FrameReader` and parsed by
//! `frame::parse`. The same bytes fed in arbitrary pieces must give the same frames and the
//! same error, and the reader never holds more than one frame.
//!
//! Input: `split_seed:u8` then the stream (a leading client preface is skipped).
#![no_main]

use containerdsnoop_decode::protocol::http2::{
    PREFACE,
    codec::{FrameReader, FrameSink},
    frame::{self, FrameError, Head, MAX_FRAME_LEN},
    limits::MAX_BUFFERED_FRAME,
};
use containerdsnoop_fuzz::input::splits;
use libfuzzer_sys::fuzz_target;

struct Collect {
    max: u32,
    frames: Vec<String>,
}

impl FrameSink for Collect {
    type Error = FrameError;
    fn max_frame_size(&self) -> u32 {
        self.max
    }
    fn frame(&mut self, head: &Head, payload: &[u8]) -> Result<(), FrameError> {
        assert_eq!(payload.len(), head.len as usize);
        // Parse errors are values here: the point is that parsing never panics.
        self.frames
            .push(format!("{head:?} {:?}", frame::parse(head, payload)));
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let stream = rest.strip_prefix(PREFACE.as_slice()).unwrap_or(rest);
    let max = if seed & 0x80 != 0 {
        MAX_FRAME_LEN
    } else {
        16_384
    };

    let mut whole = Collect {
        max,
        frames: Vec::new(),
    };
    let whole_result = FrameReader::new().feed(stream, &mut whole);

    let mut pieces = Collect {
        max,
        frames: Vec::new(),
    };
    let mut reader = FrameReader::new();
    let mut piece_result = Ok(());
    let mut at = 0;
    for n in splits(seed, stream.len()) {
        piece_result = reader.feed(&stream[at..at + n], &mut pieces);
        at += n;
        assert!(reader.buffered() <= MAX_BUFFERED_FRAME);
        if piece_result.is_err() {
            break;
        }
    }
    assert_eq!(
        whole.frames, pieces.frames,
        "frames depend on how the bytes were cut"
    );
    assert_eq!(whole_result, piece_result);
});
