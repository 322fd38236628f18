//! Output: what one printed line says ([`rows`]), which lines the user asked for
//! ([`filter`]), and every way containerdsnoop writes them (table, JSON, raw records). Printers
//! receive typed values (chunks, stream pieces, decoded rows) and never see the capture or the
//! protocol decoders.

pub mod filter;
pub mod json;
pub mod raw;
pub mod rows;
pub mod table;
pub mod time;
