//! Protocol detection by content (never by socket path): the first bytes of each direction say
//! whether a connection speaks HTTP/2 (gRPC), or something else that stays raw.
// NOTE: being extended with ttrpc and HTTP/1.1 (issue #5).

use crate::{call::Side, conn::RawDecoder, decoder::ConnDecoder, http2};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Http2,
    Raw,
    NeedMore,
}

/// Decides from the first bytes each side sent.
pub fn detect(first_a: &[u8], first_b: &[u8]) -> Detection {
    let mut need_more = false;
    for head in [first_a, first_b] {
        let n = head.len().min(http2::PREFACE.len());
        if head[..n] == http2::PREFACE[..n] {
            if n == http2::PREFACE.len() {
                return Detection::Http2;
            }
            need_more = true;
        }
    }
    if need_more || (first_a.is_empty() && first_b.is_empty()) {
        return Detection::NeedMore;
    }
    // A server's first frame is SETTINGS on stream 0 with a length that is a multiple of 6.
    for head in [first_a, first_b] {
        if head.len() >= 9 && head[3] == 4 && head[5..9] == [0, 0, 0, 0] {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
            if len % 6 == 0 && len <= 16384 {
                return Detection::Http2;
            }
        }
    }
    if first_a.len() + first_b.len() < 24 {
        return Detection::NeedMore;
    }
    Detection::Raw
}

/// A fresh decoder for a detected protocol.
pub fn decoder_for(d: Detection, server: Option<Side>) -> Box<dyn ConnDecoder> {
    match d {
        Detection::Http2 => Box::new(http2::Connection::default()),
        Detection::Raw | Detection::NeedMore => Box::new(RawDecoder::new(server)),
    }
}
