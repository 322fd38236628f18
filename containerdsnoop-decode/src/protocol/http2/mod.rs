//! HTTP/2 as a passive observer sees it: frames, HPACK, and a per-connection transport that turns
//! both directions' bytes into stream events (`sink::StreamSink`). What runs on the streams is
//! decoded above it (gRPC: `crate::protocol::grpc`); nothing here knows of it.

pub mod codec;
pub mod conn;
pub mod frame;
pub mod hpack;
pub mod limits;
pub mod resync;
pub mod sink;
pub mod stats;

pub use conn::{Connection, Desync, FrameSync, PREFACE};
pub use limits::Limits;
pub use sink::{Origin, StreamSink};
pub use stats::Stats;
