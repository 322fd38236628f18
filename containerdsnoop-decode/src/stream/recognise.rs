//! What the connection table asks of the protocol layer: which decoder a connection's first
//! bytes call for. The table is handed an implementation ([`Recognise`]) and never names a
//! protocol, a detector or a decoder itself; `protocol::detect::Detector` is the one the
//! pipeline hands it.

use crate::protocol::call::Side;
use crate::protocol::decoder::ConnDecoder;

/// Chooses a connection's decoder from the first bytes each side sent.
pub trait Recognise {
    /// The decoder for a connection whose sides' first bytes are `heads` (`heads[0]` from
    /// `Side::A`), or None while they are too few to tell. With `last` (the connection ends, or
    /// the bytes held for detection are full) it must decide: bytes of no known protocol get a
    /// decoder that shows them raw. `server` is the listening side, when the table knows it.
    fn decoder(
        &self,
        heads: [&[u8]; 2],
        server: Option<Side>,
        last: bool,
    ) -> Option<Box<dyn ConnDecoder>>;
}
