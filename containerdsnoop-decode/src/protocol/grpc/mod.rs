//! gRPC over HTTP/2: message framing, compression, status trailers, and the call tracker that
//! turns one connection's streams into `CallEvent`s.

pub mod calls;
pub mod compress;
pub mod framing;
pub mod infer;
pub mod status;

pub use calls::{CallLimits, Calls, Origin};
