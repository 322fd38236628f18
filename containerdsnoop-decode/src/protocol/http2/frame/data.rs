//! DATA frames (RFC 9113 §6.1): the payload of a stream, possibly padded.

use super::{Frame, FrameError, Head, flags, require_stream, strip_padding};

pub(super) fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let stream = require_stream(head)?;
    let data = strip_padding(head, payload)?;
    Ok(Frame::Data {
        stream,
        end_stream: head.has(flags::END_STREAM),
        data,
    })
}
