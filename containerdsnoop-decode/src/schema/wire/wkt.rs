//! The well-known types the JSON writer writes in their special form: Timestamp, Duration,
//! FieldMask and Empty, exactly as prost-reflect's serializer (which the slow path hands every
//! type of [`WKT_SPECIAL`] to) writes them, or None where that serializer fails (the slow path
//! then shows the plain fields) or the bytes are anything but the type's own fields in order.
//! Struct, Value, ListValue and the wrappers give up (the slow path redacts inside them).
//!
//! Restated rather than called: prost-reflect 0.16 keeps the pieces its serializer uses private
//! (`check_timestamp`, `check_duration` in `dynamic/serde/mod.rs`, `snake_case_to_camel_case`
//! in `dynamic/serde/case.rs`); only JSON field names (`FieldDescriptor::json_name`) are public,
//! and the writer uses those. Reaching the rest means decoding the value into a
//! `DynamicMessage` and serializing that: tried for FieldMask, it cost the JSON fast path about
//! a third more instructions on the recorded `ctr` session (containerd's update requests carry
//! masks), the cost the walker exists to avoid. The text of a Timestamp or Duration is
//! `prost_types`' `Display`, as in prost-reflect.

use prost::encoding::decode_key;
use prost_reflect::{Kind, MessageDescriptor, prost_types};
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
    /// The paths, lowerCamelCase, joined by commas.
    FieldMask(String),
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
            "google.protobuf.FieldMask" => field_mask(bytes).map(WellKnown::FieldMask),
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

/// A FieldMask's JSON string, as prost-reflect's `serialize_field_mask` builds it (None where
/// it fails, on a path that does not survive lowerCamelCase, or on anything but its paths).
fn field_mask(bytes: &[u8]) -> Option<String> {
    let mut joined = String::with_capacity(bytes.len());
    let mut buf = bytes;
    while !buf.is_empty() {
        let (number, wire) = decode_key(&mut buf).ok()?;
        let Scalar::Str(path) = read_value(&Kind::String, wire, &mut buf)? else {
            return None;
        };
        if number != 1 {
            return None;
        }
        // As prost-reflect: a comma once something was written (not after empty paths).
        if !joined.is_empty() {
            joined.push(',');
        }
        for (i, part) in path.split('.').enumerate() {
            if i > 0 {
                joined.push('.');
            }
            snake_to_camel(&mut joined, part)?;
        }
    }
    Some(joined)
}

/// prost-reflect's `snake_case_to_camel_case`: None for an uppercase letter, or a `_` not
/// followed by a lowercase one.
fn snake_to_camel(out: &mut String, part: &str) -> Option<()> {
    let mut upper_next = false;
    for c in part.chars() {
        if c.is_ascii_uppercase() {
            return None;
        }
        if upper_next {
            let upper = c.to_ascii_uppercase();
            if upper == c {
                return None;
            }
            out.push(upper);
            upper_next = false;
        } else if c == '_' {
            upper_next = true;
        } else {
            out.push(c);
        }
    }
    Some(())
}

impl Serialize for WellKnown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WellKnown::Timestamp(t) => s.collect_str(t),
            WellKnown::Duration(d) => s.collect_str(d),
            WellKnown::FieldMask(paths) => s.serialize_str(paths),
            WellKnown::Empty => s.serialize_map(Some(0))?.end(),
        }
    }
}
