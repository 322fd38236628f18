//! SETTINGS frames (RFC 9113 §6.5): the parameters one side announces for what it receives.
//! Only the values that change how the other side's bytes must be decoded are kept by name.

use super::{Frame, FrameError, Head, MAX_FRAME_LEN, flags, require_connection};

pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// RFC 9113 §6.5.2 initial values.
pub const DEFAULT_HEADER_TABLE_SIZE: u32 = 4096;
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16384;

/// Parameters present in one SETTINGS frame (the last occurrence of a parameter wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub header_table_size: Option<u32>,
    pub max_frame_size: Option<u32>,
    pub max_header_list_size: Option<u32>,
    pub max_concurrent_streams: Option<u32>,
}

pub(super) fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    require_connection(head)?;
    let ack = head.has(flags::ACK);
    if ack {
        if !payload.is_empty() {
            return Err(FrameError::SettingsAckWithPayload);
        }
        return Ok(Frame::Settings {
            ack,
            settings: Settings::default(),
        });
    }
    if !payload.len().is_multiple_of(6) {
        return Err(FrameError::BadLength {
            kind: head.kind,
            len: head.len,
        });
    }
    let mut s = Settings::default();
    for p in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([p[0], p[1]]);
        let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
        match id {
            HEADER_TABLE_SIZE => s.header_table_size = Some(value),
            ENABLE_PUSH if value > 1 => return Err(FrameError::BadSetting { id, value }),
            MAX_CONCURRENT_STREAMS => s.max_concurrent_streams = Some(value),
            INITIAL_WINDOW_SIZE if value > 0x7fff_ffff => {
                return Err(FrameError::BadSetting { id, value });
            }
            MAX_FRAME_SIZE => {
                if !(DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_LEN).contains(&value) {
                    return Err(FrameError::BadSetting { id, value });
                }
                s.max_frame_size = Some(value);
            }
            MAX_HEADER_LIST_SIZE => s.max_header_list_size = Some(value),
            // Unknown settings must be ignored (RFC 9113 §6.5.2).
            _ => {}
        }
    }
    Ok(Frame::Settings { ack, settings: s })
}
