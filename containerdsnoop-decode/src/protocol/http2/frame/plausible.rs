//! The one rule for "could these 9 bytes be the header of a frame a gRPC peer sends" (the header
//! of RFC 9113 §4.1; what each frame type may carry, §6), used wherever frame boundaries are not
//! known: protocol detection (`protocol::detect`) and resynchronisation (`http2::resync`). Stricter than RFC 9113 where
//! gRPC allows it, since every rejected header makes random bytes less likely to pass.

use super::head::{HEADER_LEN, Head, Kind, flags};

/// Which frame types [`plausible`] accepts besides those gRPC peers send all the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Bytes not yet known to be HTTP/2 (protocol detection): PUSH_PROMISE (gRPC never pushes)
    /// and extension frames are rejected, so that every header accepted is evidence of gRPC
    /// and not a chance match in some other protocol's bytes.
    Grpc,
    /// A stream known to be HTTP/2 (resynchronisation): PUSH_PROMISE and PRIORITY_UPDATE
    /// (RFC 9218, the one extension frame peers are known to send) are accepted too, so that a
    /// peer sending them does not keep the search from finding the boundary.
    Http2,
}

/// The header `raw` holds if it could be a frame a gRPC peer sends: the reserved bit clear, a
/// length within `max_frame` (the receiver's SETTINGS_MAX_FRAME_SIZE when known), a known type
/// (see [`Expect`]) with only its defined flags, stream id zero exactly for connection frames
/// and odd (client-initiated) otherwise since gRPC never pushes, fixed lengths where the type
/// has one, and room for the padding and priority fields its flags announce.
pub fn plausible(raw: &[u8; HEADER_LEN], max_frame: u32, expect: Expect) -> Option<Head> {
    let head = Head::parse(raw)?;
    // `Head::parse` clears the reserved bit; a sender must leave it unset.
    if raw[5] & 0x80 != 0 || head.len > max_frame {
        return None;
    }
    let (len, f, s) = (head.len, head.flags, head.stream);
    let stream_frame = s != 0 && s % 2 == 1;
    let only = |allowed: u8| f & !allowed == 0;
    let padded = u32::from(f & flags::PADDED != 0);
    let rare = expect == Expect::Http2;
    let ok = match head.kind {
        Kind::Data => stream_frame && only(flags::END_STREAM | flags::PADDED) && len >= padded,
        Kind::Headers => {
            let prio = if f & flags::PRIORITY != 0 { 5 } else { 0 };
            stream_frame
                && only(flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY)
                && len >= padded + prio
        }
        Kind::Priority => stream_frame && f == 0 && len == 5,
        Kind::RstStream => stream_frame && f == 0 && len == 4,
        Kind::Settings => s == 0 && only(flags::ACK) && len % 6 == 0 && (f == 0 || len == 0),
        Kind::PushPromise => {
            rare && stream_frame && only(flags::END_HEADERS | flags::PADDED) && len >= 4 + padded
        }
        Kind::Ping => s == 0 && only(flags::ACK) && len == 8,
        Kind::GoAway => s == 0 && f == 0 && len >= 8,
        Kind::WindowUpdate => (s == 0 || s % 2 == 1) && f == 0 && len == 4,
        Kind::Continuation => stream_frame && only(flags::END_HEADERS),
        Kind::Unknown(0x10) => rare && s == 0 && f == 0 && len >= 4,
        Kind::Unknown(_) => false,
    };
    ok.then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: [u8; 9]) -> bool {
        let http2 = plausible(&b, 16384, Expect::Http2).is_some();
        // Detection's rule only ever rejects more.
        assert!(
            http2 || plausible(&b, 16384, Expect::Grpc).is_none(),
            "{b:?}"
        );
        http2
    }

    #[test]
    fn implausible_headers_are_rejected() {
        assert!(h([0, 0, 8, 6, 0, 0, 0, 0, 0])); // PING
        assert!(!h([0, 0, 7, 6, 0, 0, 0, 0, 0])); // PING of 7 bytes
        assert!(!h([0, 0, 8, 6, 0, 0, 0, 0, 1])); // PING on a stream
        assert!(!h([0, 0, 6, 4, 0, 0, 0, 0, 1])); // SETTINGS on a stream
        assert!(!h([0, 0, 5, 4, 0, 0, 0, 0, 0])); // SETTINGS length % 6
        assert!(!h([0, 0, 6, 4, 1, 0, 0, 0, 0])); // SETTINGS ACK with payload
        assert!(!h([0, 0, 1, 0, 0, 0, 0, 0, 0])); // DATA on stream 0
        assert!(!h([0, 0, 1, 0, 0, 0, 0, 0, 2])); // DATA on an even stream
        assert!(!h([0, 0, 1, 0, 2, 0, 0, 0, 1])); // DATA with an undefined flag
        assert!(!h([0, 0, 0, 0, 8, 0, 0, 0, 1])); // PADDED DATA with no pad length
        assert!(!h([0, 0, 4, 1, 0x24, 0, 0, 0, 1])); // PRIORITY HEADERS shorter than 5
        assert!(!h([0, 0, 1, 0, 0, 0x80, 0, 0, 1])); // reserved bit
        assert!(!h([0, 0x40, 1, 0, 0, 0, 0, 0, 1])); // over 16384
        assert!(!h([0, 0, 3, 8, 0, 0, 0, 0, 0])); // WINDOW_UPDATE of 3
        assert!(!h([0, 0, 4, 3, 0, 0, 0, 0, 0])); // RST_STREAM on stream 0
        assert!(!h([0, 0, 4, 0xb, 0, 0, 0, 0, 0])); // unknown type
        assert!(h([0, 0, 4, 0x8, 0, 0, 0, 0, 3])); // stream WINDOW_UPDATE
    }

    #[test]
    fn detection_rejects_what_grpc_never_sends() {
        let push = [0, 0, 4, 5, 4, 0, 0, 0, 1];
        let priority_update = [0, 0, 4, 0x10, 0, 0, 0, 0, 0];
        for b in [push, priority_update] {
            assert!(plausible(&b, 16384, Expect::Http2).is_some(), "{b:?}");
            assert!(plausible(&b, 16384, Expect::Grpc).is_none(), "{b:?}");
        }
        let ping = [0, 0, 8, 6, 1, 0, 0, 0, 0];
        assert_eq!(
            plausible(&ping, 16384, Expect::Grpc),
            plausible(&ping, 16384, Expect::Http2)
        );
    }

    #[test]
    fn the_receivers_frame_size_bounds_the_length() {
        let big = [0, 0x40, 0, 0, 0, 0, 0, 0, 1]; // DATA of 16384
        assert!(plausible(&big, 16384, Expect::Grpc).is_some());
        assert!(plausible(&big, 16383, Expect::Grpc).is_none());
    }
}
