//! HPACK header decompression (RFC 7541) for a passive observer: never panics, never allocates
//! beyond `Limits`, and tolerates table entries it never saw (late join, or an encoder table
//! bigger than we keep) by decoding them as fields with unknown names or values.

mod decoder;
pub mod huffman;
mod integer;
pub mod table;

use std::fmt;

pub use decoder::{Decoder, Field, HeaderList, Limits};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended inside a prefixed integer.
    IntegerTruncated,
    /// A prefixed integer does not fit 32 bits (or uses more than 5 continuation bytes).
    IntegerOverflow,
    /// A string literal's length runs past the end of the block.
    StringTruncated,
    /// A Huffman string contains the EOS symbol.
    HuffmanEos,
    /// Huffman padding longer than 7 bits or not made of ones.
    HuffmanPadding,
    HuffmanInvalid,
    /// A decoded string exceeds its size limit (internal: such strings become unknown).
    StringTooLong,
    /// Index 0 is never valid.
    IndexZero,
    /// An index beyond a table this decoder holds completely.
    IndexOutOfRange(usize),
    /// A dynamic table size update above what the receiver announced.
    SizeUpdateTooLarge {
        size: usize,
        max: usize,
    },
    /// A dynamic table size update after the first field of a block (RFC 7541 §4.2).
    SizeUpdateNotAtStart,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HpackError::IntegerTruncated => write!(f, "truncated HPACK integer"),
            HpackError::IntegerOverflow => write!(f, "HPACK integer overflow"),
            HpackError::StringTruncated => write!(f, "HPACK string runs past the header block"),
            HpackError::HuffmanEos => write!(f, "Huffman string contains EOS"),
            HpackError::HuffmanPadding => write!(f, "invalid Huffman padding"),
            HpackError::HuffmanInvalid => write!(f, "invalid Huffman code"),
            HpackError::StringTooLong => write!(f, "HPACK string over its size limit"),
            HpackError::IndexZero => write!(f, "HPACK index 0"),
            HpackError::IndexOutOfRange(i) => write!(f, "HPACK index {i} out of range"),
            HpackError::SizeUpdateTooLarge { size, max } => {
                write!(f, "HPACK table size update to {size} exceeds {max}")
            }
            HpackError::SizeUpdateNotAtStart => write!(f, "HPACK table size update after a field"),
        }
    }
}

impl std::error::Error for HpackError {}
