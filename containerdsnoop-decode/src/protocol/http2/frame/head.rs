//! The 9-byte frame header every HTTP/2 frame starts with (RFC 9113 §4.1), and the frame
//! type and flag values. Unknown frame types are carried as a value so the stream can skip them.

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 9;

/// The largest payload length the 24-bit length field can express.
pub const MAX_FRAME_LEN: u32 = (1 << 24) - 1;

/// Flag bits. Their meaning depends on the frame type, hence the shared values.
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// Extension frames (e.g. PRIORITY_UPDATE 0x10, ALTSVC 0xa): RFC 9113 §4.1 says to ignore them.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(b: u8) -> Kind {
        match b {
            0x0 => Kind::Data,
            0x1 => Kind::Headers,
            0x2 => Kind::Priority,
            0x3 => Kind::RstStream,
            0x4 => Kind::Settings,
            0x5 => Kind::PushPromise,
            0x6 => Kind::Ping,
            0x7 => Kind::GoAway,
            0x8 => Kind::WindowUpdate,
            0x9 => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Data => 0x0,
            Kind::Headers => 0x1,
            Kind::Priority => 0x2,
            Kind::RstStream => 0x3,
            Kind::Settings => 0x4,
            Kind::PushPromise => 0x5,
            Kind::Ping => 0x6,
            Kind::GoAway => 0x7,
            Kind::WindowUpdate => 0x8,
            Kind::Continuation => 0x9,
            Kind::Unknown(b) => b,
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload length (excluding these 9 bytes).
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    /// Stream identifier with the reserved bit cleared (the receiver must ignore it).
    pub stream: u32,
}

impl Head {
    /// Parses the first 9 bytes of `buf`; `None` means fewer than 9 bytes are available yet.
    pub fn parse(buf: &[u8]) -> Option<Head> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: Kind::from(h[3]),
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    /// Serialises the header (used by tests and fixtures builders).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.len.to_be_bytes();
        let s = self.stream.to_be_bytes();
        [
            l[1],
            l[2],
            l[3],
            self.kind.code(),
            self.flags,
            s[0],
            s[1],
            s[2],
            s[3],
        ]
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_clears_reserved_bit() {
        let h = Head::parse(&[0x00, 0x40, 0x00, 0x01, 0x05, 0x80, 0x00, 0x00, 0x03]).unwrap();
        assert_eq!(
            h,
            Head {
                len: 0x4000,
                kind: Kind::Headers,
                flags: 5,
                stream: 3
            }
        );
        assert!(h.has(flags::END_STREAM) && h.has(flags::END_HEADERS));
        assert_eq!(Head::parse(&h.encode()), Some(Head { stream: 3, ..h }));
    }

    #[test]
    fn short_input_needs_more() {
        assert_eq!(Head::parse(&[0; 8]), None);
    }

    #[test]
    fn unknown_type_is_a_value() {
        let h = Head::parse(&[0, 0, 0, 0x10, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(h.kind, Kind::Unknown(0x10));
        assert_eq!(h.kind.code(), 0x10);
    }
}
