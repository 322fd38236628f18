//! HTTP/2 frames (RFC 9113 §4, §6): the header and one parser per frame type, as free functions
//! over one complete frame. Cutting a byte stream into frames, and the limits that go with it,
//! belong to `http2::codec`.

mod data;
mod goaway;
pub mod head;
mod headers;
mod ping;
pub mod plausible;
mod rst_stream;
pub mod settings;
mod window_update;

use std::fmt;

pub use head::{HEADER_LEN, Head, Kind, MAX_FRAME_LEN, flags};
pub use headers::Priority;
pub use plausible::{Expect, plausible};
pub use settings::Settings;

/// One decoded frame; payload slices borrow from the frame buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
        fragment: &'a [u8],
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: u32,
    },
    Settings {
        ack: bool,
        settings: Settings,
    },
    PushPromise {
        stream: u32,
        promised: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// An extension frame: skipped, but kept as a value so callers can see it passed.
    Unknown {
        kind: u8,
        stream: u32,
        len: u32,
    },
}

/// A frame that violates RFC 9113: the direction that sent it can no longer be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A stream-level frame type arrived on stream 0.
    StreamZero(Kind),
    /// A connection-level frame type carried a stream id.
    StreamNonZero(Kind),
    /// The payload length is impossible for this frame type.
    BadLength {
        kind: Kind,
        len: u32,
    },
    /// The pad length is not smaller than the payload.
    BadPadding(Kind),
    SettingsAckWithPayload,
    /// A SETTINGS value outside the range RFC 9113 §6.5.2 allows.
    BadSetting {
        id: u16,
        value: u32,
    },
    /// The length field exceeds the receiver's SETTINGS_MAX_FRAME_SIZE.
    TooLarge {
        len: u32,
        max: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::StreamZero(k) => write!(f, "{k:?} frame on stream 0"),
            FrameError::StreamNonZero(k) => write!(f, "{k:?} frame on a non-zero stream"),
            FrameError::BadLength { kind, len } => write!(f, "{kind:?} frame with length {len}"),
            FrameError::BadPadding(k) => write!(f, "{k:?} frame padding exceeds its payload"),
            FrameError::SettingsAckWithPayload => write!(f, "SETTINGS ACK with a payload"),
            FrameError::BadSetting { id, value } => {
                write!(f, "SETTINGS 0x{id:x} = {value} out of range")
            }
            FrameError::TooLarge { len, max } => {
                write!(
                    f,
                    "frame length {len} exceeds SETTINGS_MAX_FRAME_SIZE {max}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses one complete frame; `payload` must be exactly `head.len` bytes.
pub fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    if payload.len() as u64 != u64::from(head.len) {
        return Err(FrameError::BadLength {
            kind: head.kind,
            len: head.len,
        });
    }
    match head.kind {
        Kind::Data => data::parse(head, payload),
        Kind::Headers => headers::parse_headers(head, payload),
        Kind::Priority => headers::parse_priority(head, payload),
        Kind::RstStream => rst_stream::parse(head, payload),
        Kind::Settings => settings::parse(head, payload),
        Kind::PushPromise => headers::parse_push_promise(head, payload),
        Kind::Ping => ping::parse(head, payload),
        Kind::GoAway => goaway::parse(head, payload),
        Kind::WindowUpdate => window_update::parse(head, payload),
        Kind::Continuation => headers::parse_continuation(head, payload),
        Kind::Unknown(kind) => Ok(Frame::Unknown {
            kind,
            stream: head.stream,
            len: head.len,
        }),
    }
}

/// RFC 9113 §7 error code names, for rows that explain why a call or connection ended.
pub fn error_code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("0x{other:x}"),
    };
    name.to_string()
}

fn require_stream(head: &Head) -> Result<u32, FrameError> {
    if head.stream == 0 {
        Err(FrameError::StreamZero(head.kind))
    } else {
        Ok(head.stream)
    }
}

fn require_connection(head: &Head) -> Result<(), FrameError> {
    if head.stream != 0 {
        Err(FrameError::StreamNonZero(head.kind))
    } else {
        Ok(())
    }
}

/// Strips PADDED padding (RFC 9113 §6.1): a pad-length byte, then the padding at the end.
fn strip_padding<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if !head.has(flags::PADDED) {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or(FrameError::BadPadding(head.kind))?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(FrameError::BadPadding(head.kind))?;
    Ok(&rest[..keep])
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test builder: a frame's wire bytes.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let head = Head {
            len: payload.len() as u32,
            kind: Kind::from(kind),
            flags,
            stream,
        };
        let mut v = head.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn parse_bytes(b: &[u8]) -> Result<Frame<'_>, FrameError> {
        let head = Head::parse(b).unwrap();
        parse(&head, &b[HEADER_LEN..])
    }

    #[test]
    fn data_with_padding() {
        let b = frame(
            0x0,
            flags::PADDED | flags::END_STREAM,
            1,
            &[2, b'h', b'i', 0, 0],
        );
        assert_eq!(
            parse_bytes(&b),
            Ok(Frame::Data {
                stream: 1,
                end_stream: true,
                data: b"hi"
            })
        );
    }

    #[test]
    fn data_padding_too_long_is_an_error() {
        let b = frame(0x0, flags::PADDED, 1, &[5, 0, 0]);
        assert_eq!(parse_bytes(&b), Err(FrameError::BadPadding(Kind::Data)));
        let b = frame(0x0, flags::PADDED, 1, &[]);
        assert_eq!(parse_bytes(&b), Err(FrameError::BadPadding(Kind::Data)));
    }

    #[test]
    fn data_on_stream_zero_is_an_error() {
        assert_eq!(
            parse_bytes(&frame(0, 0, 0, b"x")),
            Err(FrameError::StreamZero(Kind::Data))
        );
    }

    #[test]
    fn headers_with_padding_and_priority() {
        let mut p = vec![1]; // pad length
        p.extend_from_slice(&[0x80, 0, 0, 3, 15]); // exclusive, depends on 3, weight 15
        p.extend_from_slice(&[0x82, 0x86]);
        p.push(0); // padding
        let b = frame(
            0x1,
            flags::PADDED | flags::PRIORITY | flags::END_HEADERS,
            5,
            &p,
        );
        assert_eq!(
            parse_bytes(&b),
            Ok(Frame::Headers {
                stream: 5,
                end_stream: false,
                end_headers: true,
                priority: Some(Priority {
                    exclusive: true,
                    depends_on: 3,
                    weight: 15
                }),
                fragment: &[0x82, 0x86],
            })
        );
        // PRIORITY flag with too short a payload.
        let b = frame(0x1, flags::PRIORITY, 5, &[0, 0]);
        assert_eq!(
            parse_bytes(&b),
            Err(FrameError::BadLength {
                kind: Kind::Headers,
                len: 2
            })
        );
    }

    #[test]
    fn priority_rst_ping_window_update_goaway() {
        assert_eq!(
            parse_bytes(&frame(0x2, 0, 3, &[0, 0, 0, 1, 7])),
            Ok(Frame::Priority {
                stream: 3,
                priority: Priority {
                    exclusive: false,
                    depends_on: 1,
                    weight: 7
                }
            })
        );
        assert!(parse_bytes(&frame(0x2, 0, 3, &[0; 4])).is_err());
        assert_eq!(
            parse_bytes(&frame(0x3, 0, 3, &[0, 0, 0, 8])),
            Ok(Frame::RstStream { stream: 3, code: 8 })
        );
        assert!(parse_bytes(&frame(0x3, 0, 0, &[0, 0, 0, 8])).is_err());
        assert!(parse_bytes(&frame(0x3, 0, 3, &[0, 0, 8])).is_err());
        assert_eq!(
            parse_bytes(&frame(0x6, 1, 0, &[1, 2, 3, 4, 5, 6, 7, 8])),
            Ok(Frame::Ping {
                ack: true,
                data: [1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
        assert!(parse_bytes(&frame(0x6, 0, 1, &[0; 8])).is_err());
        assert!(parse_bytes(&frame(0x6, 0, 0, &[0; 7])).is_err());
        assert_eq!(
            parse_bytes(&frame(0x8, 0, 0, &[0x80, 0, 1, 0])),
            Ok(Frame::WindowUpdate {
                stream: 0,
                increment: 256
            })
        );
        assert!(parse_bytes(&frame(0x8, 0, 0, &[0; 5])).is_err());
        assert_eq!(
            parse_bytes(&frame(
                0x7,
                0,
                0,
                &[0, 0, 0, 9, 0, 0, 0, 0xb, b'b', b'y', b'e']
            )),
            Ok(Frame::GoAway {
                last_stream: 9,
                code: 0xb,
                debug: b"bye"
            })
        );
        assert!(parse_bytes(&frame(0x7, 0, 0, &[0; 7])).is_err());
        assert!(parse_bytes(&frame(0x7, 0, 1, &[0; 8])).is_err());
    }

    #[test]
    fn push_promise_and_continuation() {
        assert_eq!(
            parse_bytes(&frame(0x5, flags::END_HEADERS, 1, &[0, 0, 0, 2, 0x82])),
            Ok(Frame::PushPromise {
                stream: 1,
                promised: 2,
                end_headers: true,
                fragment: &[0x82]
            })
        );
        assert!(parse_bytes(&frame(0x5, 0, 1, &[0, 0, 2])).is_err());
        assert_eq!(
            parse_bytes(&frame(0x9, flags::END_HEADERS, 1, &[0x82])),
            Ok(Frame::Continuation {
                stream: 1,
                end_headers: true,
                fragment: &[0x82]
            })
        );
        assert!(parse_bytes(&frame(0x9, 0, 0, &[0x82])).is_err());
    }

    #[test]
    fn settings_values_and_ack() {
        let p = [
            0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0, 0x40, 0, 0, 0x77, 0, 0, 0, 1,
        ];
        let Ok(Frame::Settings {
            ack: false,
            settings,
        }) = parse_bytes(&frame(0x4, 0, 0, &p))
        else {
            panic!("settings")
        };
        assert_eq!(settings.header_table_size, Some(4096));
        assert_eq!(settings.max_frame_size, Some(16384));
        assert_eq!(
            parse_bytes(&frame(0x4, 1, 0, &[])),
            Ok(Frame::Settings {
                ack: true,
                settings: Settings::default()
            })
        );
        assert_eq!(
            parse_bytes(&frame(0x4, 1, 0, &p[..6])),
            Err(FrameError::SettingsAckWithPayload)
        );
        assert!(parse_bytes(&frame(0x4, 0, 0, &p[..5])).is_err());
        assert!(parse_bytes(&frame(0x4, 0, 1, &p[..6])).is_err());
        // MAX_FRAME_SIZE below 16384 is out of range.
        assert_eq!(
            parse_bytes(&frame(0x4, 0, 0, &[0, 5, 0, 0, 0x10, 0])),
            Err(FrameError::BadSetting { id: 5, value: 4096 })
        );
    }

    #[test]
    fn unknown_frame_is_skipped_as_a_value() {
        assert_eq!(
            parse_bytes(&frame(0x10, 0, 0, b"abc")),
            Ok(Frame::Unknown {
                kind: 0x10,
                stream: 0,
                len: 3
            })
        );
    }
}
