//! The bounds the gRPC layer respects per connection, and the bounds of a whole
//! gRPC-over-HTTP/2 connection (the transport's and the calls'), so memory per connection is a
//! known function of these numbers whatever the bytes say.

use crate::protocol::http2;

/// Bounds on the calls of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Calls tracked per connection; the oldest is evicted (and counted) beyond it.
    pub max_streams: usize,
    /// Bytes of incomplete messages held across all calls of the connection; beyond it the
    /// message that grew is abandoned (reported unavailable and skipped). Keeps
    /// `max_streams * max_message` from being the bound.
    pub max_buffered: usize,
    /// Largest gRPC message (or non-gRPC body) kept; bigger ones become `Body::Unavailable`.
    pub max_message: usize,
    /// Largest decompressed gRPC message.
    pub max_decompressed: usize,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits {
            max_streams: 1024,
            max_buffered: 64 << 20,
            max_message: 16 << 20,
            max_decompressed: 16 << 20,
        }
    }
}

/// Every bound of one gRPC-over-HTTP/2 connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub http2: http2::Limits,
    pub calls: CallLimits,
}
