//! The well-known types the JSON writer writes in their special form: Timestamp, Duration,
//! FieldMask and Empty, exactly as prost-reflect's serializer (which the slow path hands every
//! type of [`WKT_SPECIAL`] to) writes them, or None where that serializer fails (the slow path
//! then shows the plain fields) or the bytes are anything but the type's own fields in order.
//! Struct, Value, ListValue and the wrappers give up (the slow path redacts inside them).
//!
//! FieldMask is handed to prost-reflect itself (decoded into a `DynamicMessage` and serialized
//! by it: its lowerCamelCase mapping is the one used). Timestamp and Duration are read here:
//! their text is `prost_types`' `Display`, but prost-reflect 0.16 keeps the range checks its
//! serializer applies (`check_timestamp`, `check_duration` in `dynamic/serde/mod.rs`) private,
//! so the ranges are restated below, and decoding each timestamp into a `DynamicMessage` to
//! reach them would cost what the walker exists to avoid.

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, prost_types};
use serde::{Serialize, Serializer, ser::SerializeMap as _};

use super::read::{FieldKeys, read_value};
use crate::schema::{json::WKT_SPECIAL, scalar::Scalar};

/// One of [`WKT_SPECIAL`]; the prefix first, as this runs for every message written.
pub(super) fn is_special(full_name: &str) -> bool {
    full_name.starts_with("google.protobuf.") && WKT_SPECIAL.contains(&full_name)
}

/// A well-known type written in its special form.
pub(super) enum WellKnown {
    Timestamp(prost_types::Timestamp),
    Duration(prost_types::Duration),
    /// Checked to serialize.
    FieldMask(DynamicMessage),
    Empty,
}

/// prost-reflect's ranges (see the module comment).
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

impl WellKnown {
    /// The `desc` message in `bytes`, when it is one of the types above and prost-reflect
    /// writes it (None: give up).
    pub(super) fn read(desc: &MessageDescriptor, bytes: &[u8]) -> Option<WellKnown> {
        match desc.full_name() {
            "google.protobuf.Empty" => bytes.is_empty().then_some(WellKnown::Empty),
            "google.protobuf.FieldMask" => {
                let mask = DynamicMessage::decode(desc.clone(), bytes).ok()?;
                serde_json::to_writer(std::io::sink(), &mask).ok()?;
                Some(WellKnown::FieldMask(mask))
            }
            "google.protobuf.Timestamp" => {
                let (seconds, nanos) = seconds_nanos(bytes)?;
                (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS)
                    .contains(&seconds)
                    .then_some(WellKnown::Timestamp(prost_types::Timestamp {
                        seconds,
                        nanos,
                    }))
            }
            "google.protobuf.Duration" => {
                let (seconds, nanos) = seconds_nanos(bytes)?;
                (seconds.unsigned_abs() <= MAX_DURATION_SECONDS
                    && nanos.unsigned_abs() <= MAX_DURATION_NANOS)
                    .then_some(WellKnown::Duration(prost_types::Duration {
                        seconds,
                        nanos,
                    }))
            }
            _ => None,
        }
    }
}

/// A Timestamp's or Duration's two fields, each at most once and in order.
fn seconds_nanos(bytes: &[u8]) -> Option<(i64, i32)> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut keys = FieldKeys::new(bytes);
    while let Some((number, wire)) = keys.next_key()? {
        match (number, read_value(&Kind::Int64, wire, &mut keys.rest)?) {
            (1, Scalar::I64(n)) => seconds = n,
            // An int32 field: prost keeps the low 32 bits.
            (2, Scalar::I64(n)) => nanos = n as i32,
            _ => return None,
        }
    }
    Some((seconds, nanos))
}

impl Serialize for WellKnown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WellKnown::Timestamp(t) => s.collect_str(t),
            WellKnown::Duration(d) => s.collect_str(d),
            WellKnown::FieldMask(mask) => mask.serialize(s),
            WellKnown::Empty => s.serialize_map(Some(0))?.end(),
        }
    }
}
