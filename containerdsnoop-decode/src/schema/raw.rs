//! Schema-less protobuf: the wire format read as field numbers and wire types, the way
//! `protoc --decode_raw` does, for methods we have no schema for and bytes the schema rejects.
//!
//! A length-delimited field is shown as text when it is printable UTF-8, else as a nested
//! message when it parses completely as one, else as bytes. That is a guess (a short printable
//! message reads as text); it is the best the bytes allow without a schema.

use std::fmt;

use crate::escape::is_printable_text;

/// One field as it appeared on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct RawField {
    pub number: u32,
    pub value: RawValue,
}

/// A field value, by wire type plus the guess made for length-delimited ones.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Length-delimited and printable UTF-8.
    Text(String),
    /// Length-delimited and parses completely as a message.
    Message(Vec<RawField>),
    /// Any other length-delimited value (or a nested message past the depth limit).
    Bytes(Vec<u8>),
    /// A proto2 group (wire types 3/4).
    Group(Vec<RawField>),
}

/// Why bytes are not protobuf wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawError {
    /// Ends inside a varint, a fixed-size value, a length-delimited value or a group.
    Truncated,
    /// A varint longer than 10 bytes.
    BadVarint,
    /// Wire type 6 or 7.
    BadWireType(u8),
    /// Field number 0 or above 2^29-1.
    BadFieldNumber(u64),
    /// An end-group tag without its start.
    UnmatchedEndGroup(u32),
    /// Groups nested deeper than the limit.
    TooDeep,
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::Truncated => write!(f, "truncated"),
            RawError::BadVarint => write!(f, "varint longer than 10 bytes"),
            RawError::BadWireType(w) => write!(f, "invalid wire type {w}"),
            RawError::BadFieldNumber(n) => write!(f, "invalid field number {n}"),
            RawError::UnmatchedEndGroup(n) => write!(f, "end of group {n} without its start"),
            RawError::TooDeep => write!(f, "nested too deep"),
        }
    }
}

impl std::error::Error for RawError {}

const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Parse `bytes` as a message without a schema. Nested messages are guessed down to
/// `max_depth` levels; deeper ones stay [`RawValue::Bytes`].
pub fn parse_raw(bytes: &[u8], max_depth: usize) -> Result<Vec<RawField>, RawError> {
    let mut buf = bytes;
    parse_fields(&mut buf, 0, max_depth, None)
}

fn parse_fields(
    buf: &mut &[u8],
    depth: usize,
    max_depth: usize,
    group: Option<u32>,
) -> Result<Vec<RawField>, RawError> {
    let mut fields = Vec::new();
    while !buf.is_empty() {
        let key = read_varint(buf)?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(RawError::BadFieldNumber(number));
        }
        // In range by the check above.
        let number = number as u32;
        let value = match (key & 7) as u8 {
            0 => RawValue::Varint(read_varint(buf)?),
            1 => RawValue::Fixed64(u64::from_le_bytes(take_array(buf)?)),
            2 => {
                let len = read_varint(buf)?;
                let len = usize::try_from(len).map_err(|_| RawError::Truncated)?;
                if len > buf.len() {
                    return Err(RawError::Truncated);
                }
                let (sub, rest) = buf.split_at(len);
                *buf = rest;
                classify(sub, depth, max_depth)
            }
            3 => {
                if depth >= max_depth {
                    return Err(RawError::TooDeep);
                }
                RawValue::Group(parse_fields(buf, depth + 1, max_depth, Some(number))?)
            }
            4 => {
                return if group == Some(number) {
                    Ok(fields)
                } else {
                    Err(RawError::UnmatchedEndGroup(number))
                };
            }
            5 => RawValue::Fixed32(u32::from_le_bytes(take_array(buf)?)),
            w => return Err(RawError::BadWireType(w)),
        };
        fields.push(RawField { number, value });
    }
    if group.is_some() {
        return Err(RawError::Truncated);
    }
    Ok(fields)
}

fn classify(sub: &[u8], depth: usize, max_depth: usize) -> RawValue {
    if let Ok(s) = std::str::from_utf8(sub)
        && is_printable_text(s)
    {
        return RawValue::Text(s.to_owned());
    }
    if depth < max_depth {
        let mut b = sub;
        if let Ok(fields) = parse_fields(&mut b, depth + 1, max_depth, None)
            && !fields.is_empty()
        {
            return RawValue::Message(fields);
        }
    }
    RawValue::Bytes(sub.to_vec())
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, RawError> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or(RawError::Truncated)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RawError::BadVarint)
}

fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], RawError> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or(RawError::Truncated)?;
    *buf = rest;
    Ok(*head)
}
