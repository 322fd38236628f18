//! RST_STREAM frames (RFC 9113 §6.4): one side abandons a stream.

use super::{Frame, FrameError, Head, be_u32, require_stream};

pub(super) fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let stream = require_stream(head)?;
    match (payload.len(), be_u32(payload)) {
        (4, Some(code)) => Ok(Frame::RstStream { stream, code }),
        _ => Err(FrameError::BadLength {
            kind: head.kind,
            len: head.len,
        }),
    }
}
