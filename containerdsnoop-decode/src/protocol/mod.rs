//! Protocols: the call model every decoder emits ([`call`]), the per-connection decoder
//! interface ([`decoder`]), what the decoders share ([`kit`]: roles, event builders, traces),
//! detection from the first bytes ([`detect`], which is how the connection table's
//! `stream::recognise::Recognise` is answered), and the decoders themselves. Uses `schema`
//! (method inference) and `escape`; knows nothing else of sockets, reassembly or output.
//!
//!
//! [`Protocol`] and [`Decoding`] are the two facts about a connection that travel from the
//! decoders to every output (JSON, the pcap export's ports, the summary) as values; their
//! spellings exist only here, for printing and for the pcap comments that carry them.

pub mod call;
pub mod decoder;
pub mod detect;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod kit;
pub mod raw;
pub mod ttrpc;

use std::fmt;

/// The application protocol a connection was detected to speak. A connection whose first
/// bytes have not decided it yet has no protocol (`Option<Protocol>`), which is not the same
/// as [`Protocol::Raw`]: raw is the verdict "none we know".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/2 carrying gRPC.
    Grpc,
    /// containerd's ttrpc.
    Ttrpc,
    /// HTTP/1.1 (the docker API).
    Http1,
    /// No protocol we decode: every write is shown as raw bytes.
    Raw,
}

impl Protocol {
    /// Every protocol, for tests that check each is documented and round-trips.
    pub const ALL: [Protocol; 4] = [
        Protocol::Grpc,
        Protocol::Ttrpc,
        Protocol::Http1,
        Protocol::Raw,
    ];

    /// The name JSON prints and pcap comments carry (`grpc`, `ttrpc`, `http1`, `raw`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Ttrpc => "ttrpc",
            Protocol::Http1 => "http1",
            Protocol::Raw => "raw",
        }
    }

    /// The protocol [`name`](Self::name) printed, or None for any other text (a pcap comment
    /// written by another tool or a newer version).
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How well a decoder follows one direction of its connection (JSON's `decoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decoding {
    /// Decoded from the direction's first byte, nothing lost.
    Synced,
    /// The tracer attached mid-connection and the decoder found its footing.
    LateJoin,
    /// Searching for message boundaries after lost or malformed bytes: bytes are skipped.
    Desynchronised,
    /// Boundaries found again after lost or malformed bytes.
    Resynchronised,
}

impl Decoding {
    /// Every state, for tests that check each is documented.
    pub const ALL: [Decoding; 4] = [
        Decoding::Synced,
        Decoding::LateJoin,
        Decoding::Desynchronised,
        Decoding::Resynchronised,
    ];

    /// The JSON spelling. `late_join` matches the `sync` field's spelling of the same fact.
    pub fn as_str(self) -> &'static str {
        match self {
            Decoding::Synced => "synced",
            Decoding::LateJoin => "late_join",
            Decoding::Desynchronised => "desynchronised",
            Decoding::Resynchronised => "resynchronised",
        }
    }
}

impl From<http2::FrameSync> for Decoding {
    fn from(s: http2::FrameSync) -> Decoding {
        match s {
            http2::FrameSync::Synced => Decoding::Synced,
            http2::FrameSync::LateJoin { .. } => Decoding::LateJoin,
            http2::FrameSync::Desynchronised => Decoding::Desynchronised,
            http2::FrameSync::Resynchronised { .. } => Decoding::Resynchronised,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_name(p.name()), Some(p));
        }
        assert_eq!(Protocol::from_name("unknown"), None);
        assert_eq!(Protocol::from_name("GRPC"), None);
        assert_eq!(Protocol::from_name(""), None);
    }
}
