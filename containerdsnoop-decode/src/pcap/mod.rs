//! Capture files: `-w` exports each traced unix connection as a synthetic TCP connection in a
//! pcapng file that Wireshark and tshark decode; `-r` reads pcap/pcapng files of real TCP traffic
//! (or our own exports) back into the [`Chunk`](crate::record::Chunk)s the live capture produces.
//!
//! The formats are written by hand rather than with the `pcap-file` crate: its latest stable
//! release (2.0.0) reads Enhanced Packet Block timestamps as nanoseconds whatever the interface's
//! `if_tsresol` says (dumpcap writes microseconds), and 3.0 is still a release candidate. The
//! container formats are a few hundred lines; the work that matters here — synthesising TCP for
//! export, reassembling it on import, staying bounded on hostile files — no crate does for us.
//!
//! Wireshark port choice: Wireshark 4.0 has no heuristic for cleartext HTTP/2 over TCP and no
//! default port for it, so gRPC connections are exported on a fixed server port
//! ([`server_port`]) 50051 and need one option: `tshark -d tcp.port==50051,http2` (Wireshark: Decode As).
//! HTTP/1.1 goes on port 80, which Wireshark decodes as HTTP natively.
//!
//! ```no_run
//! # use containerdsnoop_decode::{pcap::*, protocol::Protocol, stream::reassembly::Reassembler, record::Chunk};
//! # fn demo(chunks: Vec<Chunk>) -> Result<(), Error> {
//! // -w FILE (or "-"): every record with what the reassembler said about it.
//! let mut w = PcapWriter::create("out.pcapng")?;
//! let mut r = Reassembler::default();
//! for c in &chunks {
//!     let mut pieces = Vec::new();
//!     r.accept(c, &mut pieces);
//!     w.record(c, &pieces, &ConnMeta::from_chunk(c, Protocol::Grpc))?;
//! }
//! w.close_conn(chunks[0].sock_id, chunks[0].peer_id, chunks[0].ts_ns)?;
//! w.finish()?;
//!
//! // -r FILE (or "-"): the same chunks back, plus connection ends.
//! let mut rd = PcapReader::open("out.pcapng")?;
//! while let Some(ev) = rd.next_event() {
//!     match ev? {
//!         Event::Chunk(c) => { /* as from the ring buffer */ }
//!         Event::Closed { sock_id, peer_id, .. } => { /* forget the connection */ }
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod comment;
pub mod file;
pub mod ng;
pub mod packet;
pub mod reader;
mod synth;
pub mod tcp;
pub mod writer;

#[cfg(test)]
mod tests;

pub use reader::{Event, PcapReader, ReaderStats};
pub use writer::{ConnMeta, PcapWriter, WriterStats};

use std::fmt;

use crate::protocol::Protocol;

/// The server port connections of `protocol` get in an export: the one fact of a protocol a
/// capture file shows, since Wireshark picks its dissector by port.
pub fn server_port(protocol: Protocol) -> u16 {
    match protocol {
        // HTTP/2 (gRPC): decoded by Wireshark with `-d tcp.port==50051,http2`.
        Protocol::Grpc => 50051,
        // ttrpc: Wireshark has no dissector; shown as TCP payload.
        Protocol::Ttrpc => 50052,
        // HTTP/1.1 (docker API): decoded by Wireshark without options.
        Protocol::Http1 => 80,
        Protocol::Raw => 50053,
    }
}

/// Why a capture file could not be written or read.
#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// Refused to write binary pcapng to a terminal (`-w -` without a pipe).
    StdoutIsTerminal,
    /// The file is neither pcap nor pcapng.
    NotACapture {
        magic: u32,
    },
    /// The file ends inside a header or block.
    Truncated,
    /// A length field exceeds what this reader accepts (hostile or corrupt file).
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    /// A structurally invalid header or block.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::StdoutIsTerminal => {
                write!(
                    f,
                    "refusing to write pcapng to a terminal: pipe it (`-w - | tshark -i -`)"
                )
            }
            Error::NotACapture { magic } => {
                write!(f, "not a pcap or pcapng file (magic {magic:#010x})")
            }
            Error::Truncated => write!(f, "the file is cut short in the middle of a block"),
            Error::TooLarge { what, len, limit } => {
                write!(f, "{what} of {len} bytes exceeds the limit of {limit}")
            }
            Error::Malformed(what) => write!(f, "malformed capture file: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Truncated
        } else {
            Error::Io(e)
        }
    }
}

/// For callers whose errors are I/O errors: an I/O failure comes back as itself, its kind
/// intact (a closed pipe stays `BrokenPipe`); a bad file is `InvalidData`; a refusal `Other`.
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::StdoutIsTerminal => std::io::Error::other(e.to_string()),
            e => std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}
