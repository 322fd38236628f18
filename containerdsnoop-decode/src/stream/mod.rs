//! Streams: each direction's bytes put back in order with gaps accounted ([`reassembly`]),
//! and the connection table that pairs both directions and feeds a protocol decoder
//! ([`conn`]). Uses `record` and `protocol`.

pub mod conn;
pub mod reassembly;
