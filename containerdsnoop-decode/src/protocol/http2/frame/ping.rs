//! PING frames (RFC 9113 §6.7): 8 opaque bytes, connection-level.

use super::{Frame, FrameError, Head, flags, require_connection};

pub(super) fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    require_connection(head)?;
    let data: [u8; 8] = payload.try_into().map_err(|_| FrameError::BadLength {
        kind: head.kind,
        len: head.len,
    })?;
    Ok(Frame::Ping {
        ack: head.has(flags::ACK),
        data,
    })
}
