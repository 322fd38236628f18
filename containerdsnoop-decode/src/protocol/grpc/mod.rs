//! gRPC over HTTP/2, on top of the HTTP/2 transport (`crate::protocol::http2`): message framing,
//! compression, status trailers, method inference, and the calls that turn one connection's
//! stream events into `CallEvent`s ([`Connection`] composes the two layers).

mod call;
pub mod calls;
pub mod code;
pub mod compress;
pub mod conn;
mod early;
pub mod framing;
mod headers;
pub mod infer;
mod late;
pub mod limits;
mod messages;
mod shared;
pub mod stats;
pub mod status;

pub use calls::Calls;
pub use conn::Connection;
pub use headers::{NAMESPACE_HEADER, UNKNOWN_NAME, UNKNOWN_STATUS};
pub use limits::{CallLimits, Limits};
pub use shared::{MAX_HELD_BYTES, MAX_HELD_EVENTS, MAX_HELD_TOTAL, MAX_HOLD_NS};
pub use stats::{CallStats, Stats};

#[cfg(test)]
pub(crate) mod tests;
