//! WINDOW_UPDATE frames (RFC 9113 §6.9): flow control, parsed only to validate and skip.

use super::{Frame, FrameError, Head, be_u32};

pub(super) fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    match (payload.len(), be_u32(payload)) {
        (4, Some(v)) => Ok(Frame::WindowUpdate {
            stream: head.stream,
            increment: v & 0x7fff_ffff,
        }),
        _ => Err(FrameError::BadLength {
            kind: head.kind,
            len: head.len,
        }),
    }
}
