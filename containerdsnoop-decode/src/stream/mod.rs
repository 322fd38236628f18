//! Streams: each direction's bytes put back in order with gaps accounted ([`reassembly`]),
//! and the connection table that pairs both directions and feeds a protocol decoder
//! ([`conn`]), chosen by what it is handed ([`recognise`]). Uses `record` and the protocol
//! layer's interface (the call model and `ConnDecoder`), never a decoder or detection.

pub mod conn;
pub mod reassembly;
pub mod recognise;
