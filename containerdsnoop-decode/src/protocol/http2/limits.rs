//! Every bound the HTTP/2 transport respects, in one place, so its memory per connection is a
//! known function of these numbers whatever the bytes say. What runs on the streams has its own
//! (gRPC: `grpc::CallLimits`).

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
    /// SETTINGS frames one side may have outstanding before we assume the oldest acknowledged.
    pub max_unacked_settings: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_block: 256 * 1024,
            hpack: hpack::Limits::default(),
            max_unacked_settings: 16,
        }
    }
}
