//! One protobuf scalar and its one mapping to text and to JSON, shared by both renderers: the
//! `DynamicMessage` path (`text.rs`, `json.rs`, which convert a `Value` or `MapKey` with
//! [`Scalar::of_value`] / [`Scalar::of_key`]) and the wire walker's writers (`wire/`, which read
//! a [`Scalar`] straight from the bytes). A rule written here once cannot drift between them.

use std::{borrow::Cow, fmt::Write as _};

use base64::{display::Base64Display, engine::general_purpose::STANDARD};
use prost_reflect::{Kind, MapKey, Value};
use serde::{Serialize, Serializer};

use super::redact::REDACTED;
use crate::escape::{push_quoted, push_quoted_bytes};

/// One value, borrowing strings, bytes and (on the wire) nested messages.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scalar<'a> {
    Bool(bool),
    I32(i32),
    I64(i64),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Enum(i32),
    /// A nested message's encoded fields (only read from the wire).
    Message(&'a [u8]),
}

impl<'a> Scalar<'a> {
    /// A decoded value that is a scalar (None for messages, lists and maps).
    pub(super) fn of_value(value: &'a Value) -> Option<Self> {
        Some(match value {
            Value::Bool(b) => Scalar::Bool(*b),
            Value::I32(n) => Scalar::I32(*n),
            Value::I64(n) => Scalar::I64(*n),
            Value::U32(n) => Scalar::U32(*n),
            Value::U64(n) => Scalar::U64(*n),
            Value::F32(f) => Scalar::F32(*f),
            Value::F64(f) => Scalar::F64(*f),
            Value::String(s) => Scalar::Str(s),
            Value::Bytes(b) => Scalar::Bytes(b),
            Value::EnumNumber(n) => Scalar::Enum(*n),
            Value::Message(_) | Value::List(_) | Value::Map(_) => return None,
        })
    }

    /// A decoded map key.
    pub(super) fn of_key(key: &'a MapKey) -> Self {
        match key {
            MapKey::Bool(b) => Scalar::Bool(*b),
            MapKey::I32(n) => Scalar::I32(*n),
            MapKey::I64(n) => Scalar::I64(*n),
            MapKey::U32(n) => Scalar::U32(*n),
            MapKey::U64(n) => Scalar::U64(*n),
            MapKey::String(s) => Scalar::Str(s),
        }
    }

    /// Strings and bytes: the only values redaction replaces.
    pub(super) fn is_text(self) -> bool {
        matches!(self, Scalar::Str(_) | Scalar::Bytes(_))
    }

    /// A map key as JSON writes (and sorts) it: as a string. None for kinds no key has.
    pub(super) fn key_string(self) -> Option<Cow<'a, str>> {
        Some(match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            Scalar::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            Scalar::I32(n) => Cow::Owned(n.to_string()),
            Scalar::I64(n) => Cow::Owned(n.to_string()),
            Scalar::U32(n) => Cow::Owned(n.to_string()),
            Scalar::U64(n) => Cow::Owned(n.to_string()),
            _ => return None,
        })
    }
}

/// The text of a value of `kind` (appended to `out`): numbers as Rust writes them, floats with
/// a point or exponent, strings and bytes quoted and escaped (bytes cut at `preview`), enums by
/// name when the number is known; `secret` strings and bytes as `<redacted>`.
pub(super) fn push_text(
    out: &mut String,
    kind: &Kind,
    value: Scalar<'_>,
    secret: bool,
    preview: usize,
) {
    match value {
        _ if secret && value.is_text() => out.push_str(REDACTED),
        Scalar::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Scalar::I32(n) => write_num(out, &n),
        Scalar::I64(n) => write_num(out, &n),
        Scalar::U32(n) => write_num(out, &n),
        Scalar::U64(n) => write_num(out, &n),
        Scalar::F32(f) => write_float(out, f64::from(f)),
        Scalar::F64(f) => write_float(out, f),
        Scalar::Str(s) => push_quoted(out, s),
        Scalar::Bytes(b) => push_quoted_bytes(out, b, preview),
        Scalar::Enum(n) => match kind.as_enum().and_then(|e| e.get_value(n)) {
            Some(v) => out.push_str(v.name()),
            None => write_num(out, &n),
        },
        // Messages are written by the renderers; nothing else reaches here.
        Scalar::Message(_) => out.push('?'),
    }
}

pub(super) fn write_num(buf: &mut String, n: &impl std::fmt::Display) {
    let _ = write!(buf, "{n}");
}

pub(super) fn write_float(buf: &mut String, f: f64) {
    if f.is_nan() {
        buf.push_str("nan");
    } else if f.is_infinite() {
        buf.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        // Debug keeps a decimal point or exponent (`1.0`, `1e300`) so floats read as floats.
        let _ = write!(buf, "{f:?}");
    }
}

/// A value of `kind` in proto3 JSON: 64-bit integers as strings (JavaScript loses precision),
/// bytes as base64, enums by name (number when unknown), non-finite floats as `"NaN"`,
/// `"Infinity"`, `"-Infinity"`; `secret` strings and bytes as `"<redacted>"`. Messages are not
/// scalars: they serialize as `null` (nothing lets one reach here).
pub(super) struct ScalarJson<'k, 'a> {
    pub(super) kind: &'k Kind,
    pub(super) value: Scalar<'a>,
    pub(super) secret: bool,
}

impl Serialize for ScalarJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            value if self.secret && value.is_text() => s.serialize_str(REDACTED),
            Scalar::Bool(b) => s.serialize_bool(b),
            Scalar::I32(n) => s.serialize_i32(n),
            Scalar::U32(n) => s.serialize_u32(n),
            Scalar::I64(n) => s.collect_str(&n),
            Scalar::U64(n) => s.collect_str(&n),
            Scalar::F32(f) => float(s, f64::from(f)),
            Scalar::F64(f) => float(s, f),
            Scalar::Str(v) => s.serialize_str(v),
            Scalar::Bytes(b) => s.collect_str(&Base64Display::new(b, &STANDARD)),
            Scalar::Enum(n) => match self.kind.as_enum().and_then(|e| e.get_value(n)) {
                Some(v) => s.serialize_str(v.name()),
                None => s.serialize_i32(n),
            },
            Scalar::Message(_) => s.serialize_unit(),
        }
    }
}

fn float<S: Serializer>(s: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_nan() {
        s.serialize_str("NaN")
    } else if f.is_infinite() {
        s.serialize_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(f)
    }
}
