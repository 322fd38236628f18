//! Why a direction stopped being decoded ([`Desync`]) and how well each direction is being
//! decoded now ([`FrameSync`]): the vocabulary of the connection's notices and of its JSON.

use std::fmt;

use crate::protocol::http2::frame::{FrameError, Kind};
use crate::protocol::http2::hpack::HpackError;

/// Why a direction stopped being decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desync {
    /// The capture lost this many bytes.
    Lost(u64),
    Frame(FrameError),
    Hpack(HpackError),
    /// Starts like the preface but is not.
    BadPreface,
    /// The first frame was not SETTINGS: the capture probably joined mid-connection.
    NoInitialSettings(Kind),
    /// Both directions claimed the same role.
    RoleConflict(&'static str),
    /// A frame other than CONTINUATION on the same stream inside a header block.
    InterleavedHeaderBlock {
        stream: u32,
        got: Kind,
        got_stream: u32,
    },
    ContinuationWithoutHeaders(u32),
    HeaderBlockTooLarge {
        limit: usize,
    },
}

impl fmt::Display for Desync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Desync::Lost(n) => write!(f, "capture lost {n} bytes"),
            Desync::Frame(e) => write!(f, "{e}"),
            Desync::Hpack(e) => write!(f, "{e}"),
            Desync::BadPreface => write!(f, "invalid connection preface"),
            Desync::NoInitialSettings(k) => {
                write!(
                    f,
                    "first frame is {k:?}, not SETTINGS (capture joined mid-connection?)"
                )
            }
            Desync::RoleConflict(why) => write!(f, "{why}"),
            Desync::InterleavedHeaderBlock {
                stream,
                got,
                got_stream,
            } => {
                write!(
                    f,
                    "{got:?} on stream {got_stream} inside the header block of stream {stream}"
                )
            }
            Desync::ContinuationWithoutHeaders(s) => {
                write!(f, "CONTINUATION on stream {s} without HEADERS")
            }
            Desync::HeaderBlockTooLarge { limit } => {
                write!(f, "header block larger than {limit} bytes")
            }
        }
    }
}

impl From<FrameError> for Desync {
    fn from(e: FrameError) -> Desync {
        Desync::Frame(e)
    }
}

/// How well one direction of a connection is being decoded (for display and JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSync {
    /// Decoded from the connection's first byte, nothing lost.
    Synced,
    /// Attached mid-connection and frames found. Until `hpack_complete`, header fields whose
    /// table entries predate the join are unknown (and methods may be inferred).
    LateJoin { hpack_complete: bool },
    /// Searching for frame boundaries (after a late join, lost or malformed bytes): bytes are
    /// skipped until frames chain again.
    Desynchronised,
    /// Frames found again after lost or malformed bytes; `hpack_complete` as for `LateJoin`.
    Resynchronised { hpack_complete: bool },
}

impl FrameSync {
    /// Whether every header field can be decoded (false while the HPACK table is partly
    /// unknown, or while searching).
    pub fn hpack_complete(&self) -> bool {
        match self {
            FrameSync::Synced => true,
            FrameSync::LateJoin { hpack_complete }
            | FrameSync::Resynchronised { hpack_complete } => *hpack_complete,
            FrameSync::Desynchronised => false,
        }
    }
}
