//! containerdsnoop's decoding library: everything between a captured record and a printed
//! line, bytes in and values out. No aya, no tokio, no kernel: the CLI crate captures, this
//! crate decodes, and fuzzing, golden tests and benchmarks build it without an eBPF toolchain.
//!
//! The layers, lowest first; each uses only the ones above it in this list (see
//! ARCHITECTURE.md for the flow of one record):
//!
//! - [`escape`]: the one terminal-safe escape policy for anything a traced process wrote.
//! - [`record`]: one ring-buffer record, parsed from the kernel's bytes: a data record (a
//!   [`record::Chunk`]) or a connection end; and the `--raw -o json` lines captures replay.
//! - [`schema`]: protobuf descriptors, decoding, `Any` expansion, redaction, text and JSON.
//! - [`protocol`]: the call model every decoder emits, protocol detection, and the decoders
//!   (HTTP/2 + gRPC, ttrpc, HTTP/1.1).
//! - [`stream`]: per-direction reassembly and the connection table that feeds the decoders.
//! - [`pcap`]: pcap/pcapng files, read (`-r`) and written (`-w`).
//! - [`attribution`]: which container runs a process (the `Container` rows carry, cgroup
//!   paths, and the `Attributor` seam the CLI's runtime lookups plug into).
//! - [`output`]: rows, filters and the sinks that print or export them.
//! - [`source`]: where records come from (a capture file here; the live ring buffer in the CLI).
//! - [`pipeline`] and [`stats`]: records in, rows out, and what went missing on the way.

pub mod attribution;
pub mod escape;
pub mod lru;
pub mod output;
pub mod pcap;
pub mod pipeline;
pub mod protocol;
pub mod record;
pub mod schema;
pub mod source;
pub mod stats;
pub mod stream;
#[cfg(test)]
mod testutil;
