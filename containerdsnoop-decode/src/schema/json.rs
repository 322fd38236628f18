//! JSON rendering (proto3 JSON mapping) and terminal-safe JSON serialization.
//!
//! Mapping: lowerCamelCase field names, defaults omitted, 64-bit integers as strings, bytes as
//! base64, enums by name, well-known types (Timestamp, Duration, Struct, wrappers, ...) in their
//! special forms, `Any` as `{"@type": url, ...fields}`. Additions for a tracer: JSON carried in an
//! `Any` is embedded as `{"@type": url, "value": <json>}`, an `Any` we cannot type is
//! `{"@type": url, "@raw": {...}}` (schema-less) or `{"@type": url, "value": "<base64>"}`,
//! unknown fields appear under `"@unknown"`, and schema-less messages are objects keyed by field
//! number (`{"1":"abc","2":{"1":5}}`, repeated numbers as arrays, bytes as base64).
//! Bytes that are not protobuf at all become `{"@hex": "<first bytes>", "@len": n}`; nesting
//! past [`RenderOptions::max_depth`] becomes the string `"…"`.

use std::{borrow::Cow, io};

use base64::Engine as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage as _, Value};
use serde_json::{Map, Value as Json};

use crate::escape::is_shown_as_is;

use super::{
    RenderOptions,
    any::{self, AnyContent},
    decode::{Decoded, unknown_bytes},
    raw::{RawField, RawValue, parse_raw},
    redact,
    scalar::{Scalar, ScalarJson},
};

/// Render a decoded message as a JSON value. Serialize it with [`json_to_string`] or
/// [`write_json`], not `serde_json::to_string`, so control characters stay escaped.
pub fn to_json(decoded: &Decoded, opts: &RenderOptions) -> Json {
    let r = Render { opts };
    match decoded {
        Decoded::Message(m) => r.message(m, 0, 0),
        Decoded::Raw { fields, .. } => r.raw_object(fields, 0),
        Decoded::Opaque { bytes, .. } => {
            let shown = &bytes[..bytes.len().min(opts.max_bytes_preview)];
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            let mut obj = Map::new();
            obj.insert("@hex".into(), Json::String(hex));
            obj.insert("@len".into(), Json::from(bytes.len()));
            Json::Object(obj)
        }
    }
}

/// Well-known types whose proto3 JSON form is not an object of their fields.
pub(super) const WKT_SPECIAL: &[&str] = &[
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Empty",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

struct Render<'o> {
    opts: &'o RenderOptions,
}

impl Render<'_> {
    fn message(&self, m: &DynamicMessage, depth: usize, any_depth: usize) -> Json {
        if depth >= self.opts.max_depth {
            return Json::String("…".into());
        }
        let desc = m.descriptor();
        let full_name = desc.full_name();
        if full_name == any::ANY {
            return self.any(m, depth, any_depth);
        }
        if WKT_SPECIAL.contains(&full_name) {
            // prost-reflect implements these forms; it fails only on out-of-range values
            // (a Timestamp past year 9999), which then show as plain fields below.
            if let Ok(mut v) = serde_json::to_value(m) {
                if self.opts.redact {
                    redact::redact_json(&mut v);
                }
                return v;
            }
        }
        let mut obj = Map::new();
        for (fd, value) in m.fields() {
            let secret = self.opts.redact && redact::is_secret_field(full_name, fd.name());
            let kind = fd.kind();
            let v = match value {
                Value::List(items) => Json::Array(
                    items
                        .iter()
                        .map(|i| self.value(&kind, i, secret, depth, any_depth))
                        .collect(),
                ),
                Value::Map(map) => {
                    let value_kind = match &kind {
                        Kind::Message(entry) => entry.map_entry_value_field().kind(),
                        _ => continue,
                    };
                    let mut out = Map::new();
                    for (k, v) in map {
                        let key = map_key_string(k);
                        let secret = secret || (self.opts.redact && redact::is_secret_name(&key));
                        out.insert(key, self.value(&value_kind, v, secret, depth, any_depth));
                    }
                    Json::Object(out)
                }
                v => self.value(&kind, v, secret, depth, any_depth),
            };
            obj.insert(fd.json_name().to_owned(), v);
        }
        let unknown = unknown_bytes(m);
        if !unknown.is_empty() {
            let v = match parse_raw(&unknown, self.opts.max_depth.saturating_sub(depth + 1)) {
                Ok(fields) => self.raw_object(&fields, depth + 1),
                Err(_) => Json::String(base64::engine::general_purpose::STANDARD.encode(&unknown)),
            };
            obj.insert("@unknown".into(), v);
        }
        Json::Object(obj)
    }

    fn value(
        &self,
        kind: &Kind,
        value: &Value,
        secret: bool,
        depth: usize,
        any_depth: usize,
    ) -> Json {
        match value {
            Value::Message(m) => self.message(m, depth + 1, any_depth),
            // Nested lists and maps do not exist in protobuf.
            Value::List(_) | Value::Map(_) => Json::Null,
            v => Scalar::of_value(v).map_or(Json::Null, |value| {
                // Serializing a scalar into a `Value` cannot fail.
                serde_json::to_value(ScalarJson {
                    kind,
                    value,
                    secret,
                })
                .unwrap_or(Json::Null)
            }),
        }
    }

    fn any(&self, m: &DynamicMessage, depth: usize, any_depth: usize) -> Json {
        let Some((url, value)) = any::parts(m) else {
            return Json::Object(Map::new());
        };
        let room = self.opts.max_depth.saturating_sub(depth + 1);
        let content = if any_depth >= self.opts.max_any_depth || room == 0 {
            AnyContent::Opaque
        } else {
            any::expand(m.descriptor().parent_pool(), &url, &value, room)
        };
        let mut obj = Map::new();
        obj.insert("@type".into(), Json::String(url));
        match content {
            AnyContent::Message(inner) => match self.message(&inner, depth + 1, any_depth + 1) {
                Json::Object(fields) => obj.extend(fields),
                // Well-known types inside an Any go under "value" (proto3 JSON mapping).
                other => {
                    obj.insert("value".into(), other);
                }
            },
            AnyContent::Json(mut j) => {
                if self.opts.redact {
                    redact::redact_json(&mut j);
                }
                obj.insert("value".into(), j);
            }
            AnyContent::Raw(fields) => {
                obj.insert("@raw".into(), self.raw_object(&fields, depth + 1));
            }
            AnyContent::Opaque => {
                if !value.is_empty() {
                    obj.insert(
                        "value".into(),
                        Json::String(base64::engine::general_purpose::STANDARD.encode(&value)),
                    );
                }
            }
        }
        Json::Object(obj)
    }

    fn raw_object(&self, fields: &[RawField], depth: usize) -> Json {
        if depth >= self.opts.max_depth {
            return Json::String("…".into());
        }
        let mut obj = Map::new();
        for f in fields {
            let v = match &f.value {
                RawValue::Varint(v) | RawValue::Fixed64(v) => Json::from(*v),
                RawValue::Fixed32(v) => Json::from(*v),
                RawValue::Text(s) => Json::String(s.clone()),
                RawValue::Bytes(b) => {
                    Json::String(base64::engine::general_purpose::STANDARD.encode(b))
                }
                RawValue::Message(inner) | RawValue::Group(inner) => {
                    self.raw_object(inner, depth + 1)
                }
            };
            // A number seen more than once becomes an array, in wire order.
            match obj.get_mut(&f.number.to_string()) {
                // Raw values are never arrays themselves, so an array means "seen before".
                Some(Json::Array(items)) => items.push(v),
                Some(prev) => {
                    let first = std::mem::take(prev);
                    *prev = Json::Array(vec![first, v]);
                }
                None => {
                    obj.insert(f.number.to_string(), v);
                }
            }
        }
        Json::Object(obj)
    }
}

fn map_key_string(k: &MapKey) -> String {
    Scalar::of_key(k)
        .key_string()
        .map(Cow::into_owned)
        .unwrap_or_default()
}

/// serde_json escapes C0 controls itself; this also escapes every other character the one
/// escaping policy ([`crate::escape`]) refuses (as `\uXXXX`, so the JSON stays valid and
/// lossless).
struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            // Printable ASCII (most of any text) is shown as is: only other characters are
            // decoded and checked.
            if (0x20..0x7f).contains(&bytes[i]) {
                i += 1;
                continue;
            }
            let Some(c) = fragment[i..].chars().next() else {
                break;
            };
            let len = c.len_utf8();
            if !is_shown_as_is(c) {
                writer.write_all(&bytes[start..i])?;
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{u:04x}")?;
                }
                start = i + len;
            }
            i += len;
        }
        writer.write_all(&bytes[start..])
    }
}

/// Serialize compactly with every control and invisible character escaped.
pub fn write_json<W: io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(writer, SafeFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// [`write_json`] into a `String`.
pub fn json_to_string(value: &Json) -> String {
    let mut buf = Vec::new();
    // Writing to a Vec cannot fail, and the formatter only writes UTF-8.
    let _ = write_json(&mut buf, value);
    String::from_utf8(buf).unwrap_or_default()
}

/// A decoded message as JSON, serialized straight to the writer: the same bytes as
/// [`write_json`] of [`to_json`], without building a `serde_json::Value` tree. Plain messages,
/// their scalars, lists and maps (nearly every message) are written directly; `Any`, the
/// well-known types with special forms, unknown fields and schema-less decodes go through the
/// `Value` renderer for their subtree, so both stay one implementation of the mapping.
pub struct JsonMessage<'a> {
    decoded: &'a Decoded,
    opts: &'a RenderOptions,
}

/// [`to_json`], as a value to serialize with [`write_json`].
pub fn json_message<'a>(decoded: &'a Decoded, opts: &'a RenderOptions) -> JsonMessage<'a> {
    JsonMessage { decoded, opts }
}

impl serde::Serialize for JsonMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = Render { opts: self.opts };
        match self.decoded {
            Decoded::Message(m) => DirectMessage {
                r: &r,
                m,
                depth: 0,
                any_depth: 0,
            }
            .serialize(s),
            other => to_json(other, self.opts).serialize(s),
        }
    }
}

struct DirectMessage<'r, 'o> {
    r: &'r Render<'o>,
    m: &'r DynamicMessage,
    depth: usize,
    any_depth: usize,
}

impl serde::Serialize for DirectMessage<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let (r, m, depth, any_depth) = (self.r, self.m, self.depth, self.any_depth);
        let desc = m.descriptor();
        let full_name = desc.full_name();
        // Everything but plain messages without unknown fields: the Value renderer.
        if depth >= r.opts.max_depth
            || full_name == any::ANY
            || WKT_SPECIAL.contains(&full_name)
            || m.unknown_fields().next().is_some()
        {
            return r.message(m, depth, any_depth).serialize(s);
        }
        // Keys in the order of the Value renderer's map (sorted by name).
        // Of two fields with one JSON name the map keeps the last: reversed, the stable sort
        // puts it first, and dedup keeps the first.
        let mut fields: Vec<(prost_reflect::FieldDescriptor, &Value)> = m.fields().collect();
        fields.reverse();
        fields.sort_by(|a, b| a.0.json_name().cmp(b.0.json_name()));
        fields.dedup_by(|later, earlier| later.0.json_name() == earlier.0.json_name());
        let mut map = s.serialize_map(None)?;
        for (fd, value) in &fields {
            let secret = r.opts.redact && redact::is_secret_field(full_name, fd.name());
            let kind = fd.kind();
            match value {
                Value::List(items) => map.serialize_entry(
                    fd.json_name(),
                    &DirectList {
                        r,
                        kind: &kind,
                        items,
                        secret,
                        depth,
                        any_depth,
                    },
                )?,
                Value::Map(entries) => {
                    let value_kind = match &kind {
                        Kind::Message(entry) => entry.map_entry_value_field().kind(),
                        _ => continue,
                    };
                    let mut sorted: Vec<(String, &Value)> = entries
                        .iter()
                        .map(|(k, v)| (map_key_string(k), v))
                        .collect();
                    sorted.sort_by(|a, b| a.0.cmp(&b.0));
                    map.serialize_entry(
                        fd.json_name(),
                        &DirectMap {
                            r,
                            kind: &value_kind,
                            entries: &sorted,
                            secret,
                            depth,
                            any_depth,
                        },
                    )?
                }
                v => map.serialize_entry(
                    fd.json_name(),
                    &DirectValue {
                        r,
                        kind: &kind,
                        value: v,
                        secret,
                        depth,
                        any_depth,
                    },
                )?,
            }
        }
        map.end()
    }
}

struct DirectValue<'r, 'o> {
    r: &'r Render<'o>,
    kind: &'r Kind,
    value: &'r Value,
    secret: bool,
    depth: usize,
    any_depth: usize,
}

impl serde::Serialize for DirectValue<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Message(m) => DirectMessage {
                r: self.r,
                m,
                depth: self.depth + 1,
                any_depth: self.any_depth,
            }
            .serialize(s),
            v => match Scalar::of_value(v) {
                Some(value) => ScalarJson {
                    kind: self.kind,
                    value,
                    secret: self.secret,
                }
                .serialize(s),
                // Nested lists and maps do not exist in protobuf.
                None => s.serialize_unit(),
            },
        }
    }
}

struct DirectList<'r, 'o> {
    r: &'r Render<'o>,
    kind: &'r Kind,
    items: &'r [Value],
    secret: bool,
    depth: usize,
    any_depth: usize,
}

impl serde::Serialize for DirectList<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.items.iter().map(|value| DirectValue {
            r: self.r,
            kind: self.kind,
            value,
            secret: self.secret,
            depth: self.depth,
            any_depth: self.any_depth,
        }))
    }
}

struct DirectMap<'r, 'o> {
    r: &'r Render<'o>,
    kind: &'r Kind,
    entries: &'r [(String, &'r Value)],
    secret: bool,
    depth: usize,
    any_depth: usize,
}

impl serde::Serialize for DirectMap<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(key, value)| {
            let secret = self.secret || (self.r.opts.redact && redact::is_secret_name(key));
            (
                key,
                DirectValue {
                    r: self.r,
                    kind: self.kind,
                    value,
                    secret,
                    depth: self.depth,
                    any_depth: self.any_depth,
                },
            )
        }))
    }
}
