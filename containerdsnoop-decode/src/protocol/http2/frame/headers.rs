//! Frames that carry header block fragments (HEADERS, PUSH_PROMISE, CONTINUATION; RFC 9113
//! §6.2, §6.6, §6.10) and the priority fields HEADERS shares with PRIORITY (§6.3). Assembling
//! fragments into blocks is the codec's job.

use super::{Frame, FrameError, Head, Kind, be_u32, flags, require_stream, strip_padding};

/// Deprecated stream priority fields (RFC 9113 §5.3.2): parsed only to find the fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub depends_on: u32,
    pub weight: u8,
}

fn priority_fields(kind: Kind, b: &[u8]) -> Result<Priority, FrameError> {
    let dep = be_u32(b).ok_or(FrameError::BadLength {
        kind,
        len: b.len() as u32,
    })?;
    let weight = *b.get(4).ok_or(FrameError::BadLength {
        kind,
        len: b.len() as u32,
    })?;
    Ok(Priority {
        exclusive: dep & 0x8000_0000 != 0,
        depends_on: dep & 0x7fff_ffff,
        weight,
    })
}

pub(super) fn parse_headers<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let stream = require_stream(head)?;
    let mut rest = strip_padding(head, payload)?;
    let mut priority = None;
    if head.has(flags::PRIORITY) {
        if rest.len() < 5 {
            return Err(FrameError::BadLength {
                kind: head.kind,
                len: head.len,
            });
        }
        priority = Some(priority_fields(head.kind, rest)?);
        rest = &rest[5..];
    }
    Ok(Frame::Headers {
        stream,
        end_stream: head.has(flags::END_STREAM),
        end_headers: head.has(flags::END_HEADERS),
        priority,
        fragment: rest,
    })
}

pub(super) fn parse_priority<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let stream = require_stream(head)?;
    if payload.len() != 5 {
        return Err(FrameError::BadLength {
            kind: head.kind,
            len: head.len,
        });
    }
    Ok(Frame::Priority {
        stream,
        priority: priority_fields(head.kind, payload)?,
    })
}

pub(super) fn parse_push_promise<'a>(
    head: &Head,
    payload: &'a [u8],
) -> Result<Frame<'a>, FrameError> {
    let stream = require_stream(head)?;
    let rest = strip_padding(head, payload)?;
    let promised = be_u32(rest).ok_or(FrameError::BadLength {
        kind: head.kind,
        len: head.len,
    })?;
    Ok(Frame::PushPromise {
        stream,
        promised: promised & 0x7fff_ffff,
        end_headers: head.has(flags::END_HEADERS),
        fragment: &rest[4..],
    })
}

pub(super) fn parse_continuation<'a>(
    head: &Head,
    payload: &'a [u8],
) -> Result<Frame<'a>, FrameError> {
    let stream = require_stream(head)?;
    Ok(Frame::Continuation {
        stream,
        end_headers: head.has(flags::END_HEADERS),
        fragment: payload,
    })
}
