//! Message bytes to a value: with the schema when they fit it, schema-less when they do not,
//! a hex preview when they are not protobuf at all. Never an error: a tracer shows something.

use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage as _, Value};

use super::{
    MAX_RAW_DEPTH,
    raw::{RawError, RawField, parse_raw},
};

/// Why a message was not decoded with a schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Fallback {
    /// No schema was given (unknown method).
    NoSchema,
    /// The bytes do not parse as the expected type (or nest deeper than prost's limit of 100).
    Mismatch { expected: String, error: String },
}

/// A decoded message body, ready for [`to_text`](super::to_text) or [`to_json`](super::to_json).
#[derive(Debug, Clone)]
pub enum Decoded {
    /// Parsed with the expected type. Unknown fields are kept and rendered by number.
    Message(DynamicMessage),
    /// Protobuf wire format read without a schema.
    Raw {
        fields: Vec<RawField>,
        why: Fallback,
    },
    /// Not protobuf wire format either; rendered as a hex preview.
    Opaque {
        bytes: Vec<u8>,
        why: Fallback,
        error: RawError,
    },
}

impl Decoded {
    /// True unless the schema was used; renderers may mark such rows.
    pub fn is_schema_less(&self) -> bool {
        !matches!(self, Decoded::Message(_))
    }

    /// The type used, if any.
    pub fn descriptor(&self) -> Option<MessageDescriptor> {
        match self {
            Decoded::Message(m) => Some(m.descriptor()),
            _ => None,
        }
    }
}

/// Decode one message body (the gRPC/ttrpc payload, already decompressed).
pub fn decode(desc: Option<&MessageDescriptor>, bytes: &[u8]) -> Decoded {
    let why = match desc {
        None => Fallback::NoSchema,
        Some(desc) => match DynamicMessage::decode(desc.clone(), bytes) {
            Ok(msg) => return Decoded::Message(msg),
            Err(e) => Fallback::Mismatch {
                expected: desc.full_name().to_owned(),
                error: e.to_string(),
            },
        },
    };
    match parse_raw(bytes, MAX_RAW_DEPTH) {
        Ok(fields) => Decoded::Raw { fields, why },
        Err(error) => Decoded::Opaque {
            bytes: bytes.to_vec(),
            why,
            error,
        },
    }
}

/// How well bytes fit a message type, for guessing the method of a call whose headers were
/// missed. Compare candidates by [`FitScore::is_clean`] first, then by `known_fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FitScore {
    /// The bytes decode as the type: wire types match, strings are UTF-8, lengths add up.
    pub parsed: bool,
    /// Fields present that the type (and its nested types) define.
    pub known_fields: usize,
    /// Fields present that the type does not define.
    pub unknown_fields: usize,
}

impl FitScore {
    /// Decodes, and every field is one the type defines. Empty bytes are clean for every type.
    pub fn is_clean(&self) -> bool {
        self.parsed && self.unknown_fields == 0
    }
}

/// Score `bytes` against `desc`. Does not look inside `Any` values (they carry their own type).
pub fn fits(desc: &MessageDescriptor, bytes: &[u8]) -> FitScore {
    match DynamicMessage::decode(desc.clone(), bytes) {
        Ok(msg) => {
            let mut score = FitScore {
                parsed: true,
                ..FitScore::default()
            };
            count(&msg, 0, &mut score);
            score
        }
        Err(_) => FitScore::default(),
    }
}

fn count(msg: &DynamicMessage, depth: usize, score: &mut FitScore) {
    score.unknown_fields += msg.unknown_fields().count();
    if depth >= MAX_RAW_DEPTH {
        return;
    }
    for (_, value) in msg.fields() {
        score.known_fields += 1;
        count_value(value, depth, score);
    }
}

fn count_value(value: &Value, depth: usize, score: &mut FitScore) {
    match value {
        Value::Message(m) => count(m, depth + 1, score),
        Value::List(items) => items.iter().for_each(|v| count_value(v, depth, score)),
        Value::Map(map) => map.values().for_each(|v| count_value(v, depth, score)),
        _ => {}
    }
}

/// Unknown fields of a decoded message, re-encoded so the raw reader can show them.
pub(crate) fn unknown_bytes(msg: &DynamicMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    for f in msg.unknown_fields() {
        f.encode(&mut buf);
    }
    buf
}
