//! Every bound a connection decoder respects, in one place, so memory per connection is a
//! known function of these numbers whatever the bytes say.

use super::hpack;

/// The hard cap on buffered frame bytes: the largest frame the 24-bit length allows, plus its
/// header. The peer's SETTINGS_MAX_FRAME_SIZE usually keeps us far below it.
pub const MAX_BUFFERED_FRAME: usize = (1 << 24) - 1 + super::frame::HEADER_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A header block (HEADERS + CONTINUATIONs) larger than this desynchronises its direction:
    /// skipping it would leave the HPACK table wrong.
    pub max_header_block: usize,
    pub hpack: hpack::Limits,
    /// Calls tracked per connection; the oldest is evicted (and counted) beyond it.
    pub max_streams: usize,
    /// Bytes of incomplete messages held per connection, all streams together; beyond it the
    /// message that grew is abandoned. Keeps `max_streams * max_message` from being the bound.
    pub max_buffered: usize,
    /// Largest gRPC message (or non-gRPC body) kept; bigger ones become `Body::Unavailable`.
    pub max_message: usize,
    /// Largest decompressed gRPC message.
    pub max_decompressed: usize,
    /// SETTINGS frames one side may have outstanding before we assume the oldest acknowledged.
    pub max_unacked_settings: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_block: 256 * 1024,
            hpack: hpack::Limits::default(),
            max_streams: 1024,
            max_buffered: 64 << 20,
            max_message: 16 << 20,
            max_decompressed: 16 << 20,
            max_unacked_settings: 16,
        }
    }
}
