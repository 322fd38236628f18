//! HTTP/2 as a passive observer sees it: frames, HPACK, and a per-connection decoder that turns
//! both directions' bytes into gRPC `CallEvent`s (via `crate::protocol::grpc`).

pub mod codec;
pub mod conn;
pub mod frame;
pub mod hpack;
pub mod limits;
pub mod resync;
pub mod stats;

pub use conn::{Connection, Desync, PREFACE, SyncState};
pub use limits::Limits;
pub use stats::Stats;

#[cfg(test)]
mod tests;
