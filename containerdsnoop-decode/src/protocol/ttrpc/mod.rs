//! ttrpc, the lightweight RPC containerd speaks to its shims (`/run/containerd/s/<hash>`) and
//! shims use to publish events (`containerd.sock.ttrpc`): 10-byte frame headers, protobuf
//! request/response envelopes, and a per-connection decoder that turns both directions'
//! bytes into `CallEvent`s. Payloads are handed on as `Body::Protobuf`; the schema resolves
//! them with `Schema::service_method(service, method)`.

mod calls;
pub mod conn;
pub mod envelope;
pub mod frame;
mod framing;
mod shared;

pub use calls::{NAMESPACE_KEY, TIMEOUT_KEY};
pub use conn::Connection;
pub use shared::{Limits, Stats};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod traces;
