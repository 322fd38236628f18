//! GOAWAY frames (RFC 9113 §6.8): the sender stops accepting streams above `last_stream`.

use super::{Frame, FrameError, Head, be_u32, require_connection};

pub(super) fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    require_connection(head)?;
    let bad = FrameError::BadLength {
        kind: head.kind,
        len: head.len,
    };
    let last = be_u32(payload).ok_or(bad.clone())?;
    let code = payload.get(4..).and_then(be_u32).ok_or(bad)?;
    Ok(Frame::GoAway {
        last_stream: last & 0x7fff_ffff,
        code,
        debug: &payload[8..],
    })
}
