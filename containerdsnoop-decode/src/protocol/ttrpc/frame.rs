//! The ttrpc message frame: a 10-byte header (length u32 BE, stream id u32 BE, type u8,
//! flags u8) and its data, as containerd/ttrpc `channel.go` and `PROTOCOL.md` define it.
//! Also the plausibility test that resynchronisation and protocol detection rely on.

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 10;

/// `messageLengthMax` in ttrpc's `channel.go`: a peer rejects (and discards) longer data, so a
/// longer length means we are not looking at a frame boundary.
pub const MESSAGE_LENGTH_MAX: u32 = 4 << 20;

/// Message types (`messageType`).
pub const TYPE_REQUEST: u8 = 0x1;
pub const TYPE_RESPONSE: u8 = 0x2;
pub const TYPE_DATA: u8 = 0x3;

/// Flags: on a request, `REMOTE_CLOSED` means the client sends no data frames (server
/// streaming) and `REMOTE_OPEN` that it will (client streaming); on data, `REMOTE_CLOSED` ends the
/// sender's half and `NO_DATA` says the frame carries no message.
pub const FLAG_REMOTE_CLOSED: u8 = 0x1;
pub const FLAG_REMOTE_OPEN: u8 = 0x2;
pub const FLAG_NO_DATA: u8 = 0x4;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub stream: u32,
    pub kind: u8,
    pub flags: u8,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes; `None` when there are fewer.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            stream: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            kind: b[8],
            flags: b[9],
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&self.len.to_be_bytes());
        out[4..8].copy_from_slice(&self.stream.to_be_bytes());
        out[8] = self.kind;
        out[9] = self.flags;
        out
    }

    /// Total frame size, header included.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }

    /// Whether a real ttrpc peer could have sent this header. Stricter than what a peer
    /// accepts, because it is what tells a frame boundary from arbitrary bytes:
    /// - length at most [`MESSAGE_LENGTH_MAX`] (so the first byte is always 0);
    /// - a known type with only the flags defined for it (responses have none; `NO_DATA` only
    ///   on empty data frames);
    /// - an odd stream id: only client-initiated streams exist (`PROTOCOL.md`).
    pub fn plausible(&self) -> Result<(), Implausible> {
        if self.len > MESSAGE_LENGTH_MAX {
            return Err(Implausible::Length(self.len));
        }
        if self.stream.is_multiple_of(2) {
            return Err(Implausible::StreamId(self.stream));
        }
        let allowed = match self.kind {
            TYPE_REQUEST => FLAG_REMOTE_CLOSED | FLAG_REMOTE_OPEN,
            TYPE_RESPONSE => 0,
            TYPE_DATA => FLAG_REMOTE_CLOSED | FLAG_NO_DATA,
            other => return Err(Implausible::Type(other)),
        };
        if self.flags & !allowed != 0
            || (self.kind == TYPE_REQUEST && self.flags == FLAG_REMOTE_CLOSED | FLAG_REMOTE_OPEN)
            || (self.flags & FLAG_NO_DATA != 0 && self.len != 0)
        {
            return Err(Implausible::Flags {
                kind: self.kind,
                flags: self.flags,
            });
        }
        Ok(())
    }
}

/// Why a header cannot be a ttrpc frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implausible {
    Length(u32),
    StreamId(u32),
    Type(u8),
    Flags { kind: u8, flags: u8 },
}

impl std::fmt::Display for Implausible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Implausible::Length(n) => {
                write!(
                    f,
                    "frame length {n} over the {MESSAGE_LENGTH_MAX}-byte maximum"
                )
            }
            Implausible::StreamId(s) => write!(f, "even stream id {s}"),
            Implausible::Type(t) => write!(f, "unknown message type {t:#x}"),
            Implausible::Flags { kind, flags } => {
                write!(f, "flags {flags:#x} invalid for message type {kind:#x}")
            }
        }
    }
}

/// How strongly the bytes at some offset look like the start of a frame sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// A frame with a valid request envelope, or two plausible headers that chain.
    Confirmed,
    /// Plausible so far; more bytes would decide.
    NeedMore,
    Rejected,
}

/// Frames longer than this cannot anchor a resynchronisation: waiting for their end would
/// hold that many bytes of what may well be garbage.
pub const MAX_ANCHOR_FRAME: usize = 64 * 1024;

/// Whether `buf` starts with a frame boundary. A request is confirmed by its envelope alone
/// (service and method are identifiers: hard to hit by chance); a response or data frame needs
/// the next header to be plausible too, since an empty response is just ten mostly-zero bytes.
pub fn anchor(buf: &[u8]) -> Anchor {
    let Some(h) = Header::parse(buf) else {
        return Anchor::NeedMore;
    };
    if h.plausible().is_err() || h.frame_len() > MAX_ANCHOR_FRAME {
        return Anchor::Rejected;
    }
    let end = h.frame_len();
    if h.kind == TYPE_REQUEST {
        let Some(data) = buf.get(HEADER_LEN..end) else {
            return Anchor::NeedMore;
        };
        return match super::envelope::Request::decode_checked(data) {
            Some(_) => Anchor::Confirmed,
            None => Anchor::Rejected,
        };
    }
    if h.kind == TYPE_RESPONSE {
        let Some(data) = buf.get(HEADER_LEN..end) else {
            return Anchor::NeedMore;
        };
        if super::envelope::Response::decode_checked(data).is_none() {
            return Anchor::Rejected;
        }
    }
    match buf.get(end..).and_then(Header::parse) {
        None => Anchor::NeedMore,
        Some(next) if next.plausible().is_ok() => Anchor::Confirmed,
        Some(_) => Anchor::Rejected,
    }
}
