//! Cuts one direction's byte stream into frames wherever its chunks were cut. Keeps "need more
//! bytes" (buffer and wait) apart from errors (a length over the receiver's limit), and never
//! buffers more than one frame: at most 9 + SETTINGS_MAX_FRAME_SIZE bytes.

use super::frame::{FrameError, HEADER_LEN, Head};
use super::limits::MAX_BUFFERED_FRAME;

/// Receives complete frames, and says how large a frame may be right now (the receiver's
/// SETTINGS_MAX_FRAME_SIZE, which a SETTINGS frame in this very chunk may change).
pub trait FrameSink {
    type Error: From<FrameError>;
    fn max_frame_size(&self) -> u32;
    fn frame(&mut self, head: &Head, payload: &[u8]) -> Result<(), Self::Error>;
}

/// Capacity above which the buffer is released once empty, so that one large frame does not
/// pin megabytes for the life of the connection.
const KEEP_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct FrameReader {
    /// The start of one incomplete frame, never more.
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds a chunk; complete frames go to `sink` in order. After an error the reader's state
    /// is meaningless: the caller stops feeding this direction.
    pub fn feed<S: FrameSink>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), S::Error> {
        self.feed_resumable(bytes, sink).map_err(|f| f.error)
    }

    /// Like `feed`, but an error also hands back the bytes from just after the first byte of
    /// the frame that failed, where a search for the next frame boundary can start. The reader
    /// is empty afterwards.
    pub fn feed_resumable<S: FrameSink>(
        &mut self,
        mut bytes: &[u8],
        sink: &mut S,
    ) -> Result<(), Failed<S::Error>> {
        if !self.buf.is_empty() {
            // Complete the buffered frame with just the bytes it needs.
            if self.buf.len() < HEADER_LEN {
                let take = (HEADER_LEN - self.buf.len()).min(bytes.len());
                self.buf.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
            }
            let Some(head) = Head::parse(&self.buf) else {
                return Ok(());
            };
            let total = match checked_total(&head, sink.max_frame_size()) {
                Ok(total) => total,
                Err(e) => return Err(self.fail(e.into(), bytes)),
            };
            let take = (total - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() < total {
                return Ok(());
            }
            if let Err(e) = sink.frame(&head, &self.buf[HEADER_LEN..total]) {
                return Err(self.fail(e, bytes));
            }
            self.buf.clear();
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
        // Frames wholly inside the chunk are handed over without copying.
        while let Some(head) = Head::parse(bytes) {
            let total = match checked_total(&head, sink.max_frame_size()) {
                Ok(total) => total,
                Err(e) => return Err(self.fail(e.into(), bytes)),
            };
            if bytes.len() < total {
                break;
            }
            if let Err(error) = sink.frame(&head, &bytes[HEADER_LEN..total]) {
                return Err(self.fail(error, bytes));
            }
            bytes = &bytes[total..];
        }
        // What is left is the start of one frame whose length, if known, is within the limit.
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The failing frame starts at `self.buf[0]` if the buffer holds anything, else at
    /// `bytes[0]`; `bytes` is what the chunk had left.
    fn fail<E>(&mut self, error: E, bytes: &[u8]) -> Failed<E> {
        let mut rest = if self.buf.is_empty() {
            bytes.get(1..).unwrap_or_default().to_vec()
        } else {
            let mut r = self.buf.split_off(1);
            r.extend_from_slice(bytes);
            r
        };
        rest.shrink_to_fit();
        self.buf = Vec::new();
        Failed { error, rest }
    }
}

/// A frame that could not be read or was rejected by the sink.
#[derive(Debug)]
pub struct Failed<E> {
    pub error: E,
    /// The bytes after the first byte of the failed frame.
    pub rest: Vec<u8>,
}

fn checked_total(head: &Head, max: u32) -> Result<usize, FrameError> {
    if head.len > max {
        return Err(FrameError::TooLarge { len: head.len, max });
    }
    let total = HEADER_LEN + head.len as usize;
    // The 24-bit length field already guarantees this; the named cap documents it.
    debug_assert!(total <= MAX_BUFFERED_FRAME);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http2::frame::tests::frame;

    #[derive(Default)]
    struct Collect {
        max: u32,
        frames: Vec<(u8, u32, Vec<u8>)>,
    }

    impl FrameSink for Collect {
        type Error = FrameError;
        fn max_frame_size(&self) -> u32 {
            self.max
        }
        fn frame(&mut self, head: &Head, payload: &[u8]) -> Result<(), FrameError> {
            self.frames
                .push((head.kind.code(), head.stream, payload.to_vec()));
            Ok(())
        }
    }

    #[test]
    fn split_invariant_at_every_point() {
        let mut bytes = frame(0x0, 0, 1, b"hello");
        bytes.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
        bytes.extend(frame(0x0, 1, 1, b""));
        let mut whole = Collect {
            max: 16384,
            ..Default::default()
        };
        FrameReader::new().feed(&bytes, &mut whole).unwrap();
        assert_eq!(whole.frames.len(), 3);
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut c = Collect {
                    max: 16384,
                    ..Default::default()
                };
                let mut r = FrameReader::new();
                for chunk in [&bytes[..a], &bytes[a..b], &bytes[b..]] {
                    r.feed(chunk, &mut c).unwrap();
                }
                assert_eq!(c.frames, whole.frames);
                assert_eq!(r.buffered(), 0);
            }
        }
    }

    #[test]
    fn header_claiming_16_mib_fails_before_buffering() {
        let head = [0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1];
        let mut c = Collect {
            max: 16384,
            ..Default::default()
        };
        let mut r = FrameReader::new();
        r.feed(&head[..4], &mut c).unwrap();
        assert_eq!(
            r.feed(&head[4..], &mut c),
            Err(FrameError::TooLarge {
                len: (1 << 24) - 1,
                max: 16384
            })
        );
        assert!(r.buffered() <= HEADER_LEN);
    }
}
