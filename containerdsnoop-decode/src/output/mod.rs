//! Output: what one printed line says ([`rows`]), which lines the user asked for
//! ([`filter`]), and every way containerdsnoop writes them — table, JSON, raw records, the
//! pcapng export — each a [`sink::Sink`]. Sinks receive typed values (records, stream pieces,
//! decoded rows) and never see the capture or the protocol decoders.

pub mod client;
pub mod failed;
pub mod filter;
pub mod json;
pub mod pcap;
pub mod raw;
pub mod rows;
pub mod sink;
pub mod table;
pub mod time;
