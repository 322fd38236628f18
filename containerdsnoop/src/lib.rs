//! containerdsnoop: trace what flows over the unix sockets of container runtimes.
//!
//! Only `capture` (and the binary's `main`) touch aya, tokio or the kernel; every other module
//! is bytes in, values out, and is tested without root.

pub mod btf;
pub mod call;
pub mod capture;
pub mod cli;
pub mod conn;
pub mod decoder;
pub mod detect;
pub mod filter;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod paths;
pub mod pcap;
pub mod pipeline;
pub mod reassembly;
pub mod render;
pub mod rows;
pub mod schema;
pub mod stats;
#[cfg(test)]
mod testutil;
pub mod ttrpc;
pub mod wire;
