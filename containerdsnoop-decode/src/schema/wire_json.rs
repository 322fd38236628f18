//! The JSON output's fast path: a message's proto3 JSON serialized straight from its wire bytes
//! and its descriptor, the same serde calls (so the same bytes through [`write_json`]) as
//! [`json_message`] of the [`decode`]d message, without building a `DynamicMessage`.
//!
//! As [`wire_text`](super::wire_text) for the table: building and dropping the
//! `DynamicMessage` dominated `-o json`. Two walks over the bytes instead: [`wire_json_ok`]
//! checks everything (nothing is written), then [`WireJson`] writes, in the slow path's key
//! order: a message's fields sorted by JSON name, map entries sorted by their key as a string,
//! list items in wire order.
//!
//! The contract: [`wire_json_ok`] returns true only when the schema decode would succeed and
//! [`WireJson`] serializes exactly what the slow path does. It gives up on everything
//! `wire_text` gives up on (decode errors, fields out of order or twice, repeated fields in
//! separate runs, two members of a oneof, unknown fields, extensions, groups, nesting at
//! [`RenderOptions::max_depth`], past [`DEPTH_GUARD`] or [`RenderOptions::max_any_depth`], an
//! `Any` holding JSON or a type not in the pool, map entries with other fields or a key or value
//! twice) and, JSON being another mapping, on:
//!
//! - the well-known types with a special JSON form (Struct, Value, ListValue, wrappers);
//!   Timestamp, Duration, FieldMask and Empty are written as prost-reflect writes them, except
//!   where its serializer fails (out of range, a mask path that does not survive
//!   lowerCamelCase, fields other than their own), and any of them as the value of an `Any`
//!   (the slow path puts it under `"value"`);
//! - an `Any` holding an `Any` (the slow path merges the inner `@type` over the outer one), or
//!   holding a message with a field whose JSON name sorts before `@type`;
//! - two fields of one message with the same JSON name (the slow path keeps one).
//!
//! [`write_json`]: super::write_json
//! [`json_message`]: super::json_message
//! [`decode`]: super::decode

use std::borrow::Cow;

use base64::{display::Base64Display, engine::general_purpose::STANDARD};
use prost::encoding::{WireType, decode_key};
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor, prost_types};
use serde::{
    Serialize, Serializer,
    ser::{SerializeMap as _, SerializeSeq as _},
};

use super::{
    RenderOptions, any,
    json::{WKT_SPECIAL, float},
    redact::{self, REDACTED},
    wire_text::{
        DEPTH_GUARD, FieldKeys, Scalar, any_parts, default_of, is_default, next_key_if, read_len,
        read_value,
    },
};

#[cfg(test)]
mod tests;

/// The key an `Any` adds before its value's fields.
const TYPE_KEY: &str = "@type";

/// True when [`wire_json`] of these arguments serializes exactly what
/// `json_message(&decode(Some(desc), bytes), opts)` does, and that decode uses the schema.
/// False: take that slow path instead.
pub fn wire_json_ok(desc: &MessageDescriptor, bytes: &[u8], opts: &RenderOptions) -> bool {
    // At max_depth 0 the slow path writes `…` for the whole message.
    opts.max_depth > 0 && check_message(desc, bytes, 0, 0, false, opts).is_some()
}

/// A message's JSON, serialized from its wire bytes. Only for arguments [`wire_json_ok`]
/// accepted: on others serializing fails with an error (it never panics).
pub struct WireJson<'a> {
    desc: &'a MessageDescriptor,
    bytes: &'a [u8],
    opts: &'a RenderOptions,
}

/// [`WireJson`] of `bytes` as a `desc` message; serialize it with
/// [`write_json`](super::write_json).
pub fn wire_json<'a>(
    desc: &'a MessageDescriptor,
    bytes: &'a [u8],
    opts: &'a RenderOptions,
) -> WireJson<'a> {
    WireJson { desc, bytes, opts }
}

impl Serialize for WireJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageJson {
            desc: self.desc,
            bytes: self.bytes,
            depth: 0,
            any_depth: 0,
            opts: self.opts,
        }
        .serialize(s)
    }
}

// ---- reading a message's fields ----

/// Where a field's value sits in the wire bytes.
enum Slot<'a> {
    One(Scalar<'a>),
    /// A repeated field: its first wire type and the run from after its first key to the end
    /// of its last value (later keys included).
    List(WireType, &'a [u8]),
    /// A map field, likewise.
    Map(WireType, &'a [u8]),
}

/// One field the slow path's `DynamicMessage::fields` would yield.
struct Field<'a> {
    fd: FieldDescriptor,
    kind: Kind,
    slot: Slot<'a>,
}

/// The fields of a plain (not `Any`) message in wire order, each value read and checked except
/// what nested messages hold; defaults of fields without presence and empty lists left out.
/// None: give up.
fn fields<'a>(desc: &MessageDescriptor, bytes: &'a [u8]) -> Option<Vec<Field<'a>>> {
    let mut out = Vec::new();
    let mut keys = FieldKeys::new(bytes);
    while let Some((fd, wire)) = keys.next(desc)? {
        let number = fd.number();
        let buf = &mut keys.rest;
        let kind = fd.kind();
        let slot = if fd.cardinality() == Cardinality::Repeated {
            let start = *buf;
            let is_map = matches!(&kind, Kind::Message(entry) if entry.is_map_entry());
            let count = if is_map {
                let mut entries = MapEntries::new(&kind, number, wire, buf)?;
                let count = entries.by_ref().count();
                if entries.bad {
                    return None;
                }
                *buf = entries.buf;
                count
            } else {
                let mut items = ListItems::new(&kind, number, wire, buf);
                let count = items.by_ref().count();
                if items.bad {
                    return None;
                }
                *buf = items.buf;
                count
            };
            if count == 0 {
                continue;
            }
            let run = &start[..start.len() - buf.len()];
            if is_map {
                Slot::Map(wire, run)
            } else {
                Slot::List(wire, run)
            }
        } else {
            let value = read_value(&kind, wire, buf)?;
            if !fd.supports_presence() && is_default(&fd, value)? {
                continue;
            }
            Slot::One(value)
        };
        out.push(Field { fd, kind, slot });
    }
    Some(out)
}

/// The items of a repeated field's run, packed or not. Stops at the first value that does not
/// read (`bad` set) or the first key of another field (`buf` left there).
struct ListItems<'k, 'a> {
    kind: &'k Kind,
    number: u32,
    /// The wire type of the next occurrence, its key already read.
    pending: Option<WireType>,
    packed: &'a [u8],
    buf: &'a [u8],
    bad: bool,
}

impl<'k, 'a> ListItems<'k, 'a> {
    fn new(kind: &'k Kind, number: u32, wire: WireType, buf: &'a [u8]) -> Self {
        ListItems {
            kind,
            number,
            pending: Some(wire),
            packed: &[],
            buf,
            bad: false,
        }
    }

    fn fail(&mut self) -> Option<Scalar<'a>> {
        self.bad = true;
        None
    }
}

impl<'a> Iterator for ListItems<'_, 'a> {
    type Item = Scalar<'a>;

    fn next(&mut self) -> Option<Scalar<'a>> {
        if self.bad {
            return None;
        }
        let packable = !matches!(self.kind, Kind::String | Kind::Bytes | Kind::Message(_));
        loop {
            if !self.packed.is_empty() {
                return match read_value(self.kind, self.kind.wire_type(), &mut self.packed) {
                    Some(v) => Some(v),
                    None => self.fail(),
                };
            }
            let wire = match self.pending.take() {
                Some(wire) => wire,
                None => next_key_if(&mut self.buf, self.number)?,
            };
            if wire == WireType::LengthDelimited && packable {
                match read_len(wire, &mut self.buf) {
                    Some(packed) => self.packed = packed,
                    None => return self.fail(),
                }
                continue;
            }
            return match read_value(self.kind, wire, &mut self.buf) {
                Some(v) => Some(v),
                None => self.fail(),
            };
        }
    }
}

/// The `(key, value)` entries of a map field's run, absent keys and values as their defaults.
/// Stops as [`ListItems`] does; an entry with another field or a key or value twice is bad.
struct MapEntries<'a> {
    key_kind: Kind,
    value_kind: Kind,
    number: u32,
    pending: Option<WireType>,
    buf: &'a [u8],
    bad: bool,
}

impl<'a> MapEntries<'a> {
    fn new(kind: &Kind, number: u32, wire: WireType, buf: &'a [u8]) -> Option<Self> {
        let Kind::Message(entry) = kind else {
            return None;
        };
        Some(MapEntries {
            key_kind: entry.map_entry_key_field().kind(),
            value_kind: entry.map_entry_value_field().kind(),
            number,
            pending: Some(wire),
            buf,
            bad: false,
        })
    }

    fn entry(&mut self, wire: WireType) -> Option<(Scalar<'a>, Scalar<'a>)> {
        let mut entry = read_len(wire, &mut self.buf)?;
        let (mut key, mut value) = (None, None);
        while !entry.is_empty() {
            let (number, entry_wire) = decode_key(&mut entry).ok()?;
            match number {
                1 if key.is_none() => {
                    key = Some(read_value(&self.key_kind, entry_wire, &mut entry)?)
                }
                2 if value.is_none() => {
                    value = Some(read_value(&self.value_kind, entry_wire, &mut entry)?);
                }
                _ => return None,
            }
        }
        Some((
            key.or_else(|| default_of(&self.key_kind))?,
            value.or_else(|| default_of(&self.value_kind))?,
        ))
    }
}

impl<'a> Iterator for MapEntries<'a> {
    type Item = (Scalar<'a>, Scalar<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.bad {
            return None;
        }
        let wire = match self.pending.take() {
            Some(wire) => wire,
            None => next_key_if(&mut self.buf, self.number)?,
        };
        let entry = self.entry(wire);
        self.bad = entry.is_none();
        entry
    }
}

/// A map key as the slow path's JSON writes it (and sorts it): as a string.
fn key_string<'a>(key: Scalar<'a>) -> Option<Cow<'a, str>> {
    Some(match key {
        Scalar::Str(s) => Cow::Borrowed(s),
        Scalar::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Scalar::I32(n) => Cow::Owned(n.to_string()),
        Scalar::I64(n) => Cow::Owned(n.to_string()),
        Scalar::U32(n) => Cow::Owned(n.to_string()),
        Scalar::U64(n) => Cow::Owned(n.to_string()),
        _ => return None,
    })
}

/// A map's entries in the slow path's order: by key string, the last of equal keys kept.
fn sorted_entries<'a>(
    kind: &Kind,
    number: u32,
    wire: WireType,
    run: &'a [u8],
) -> Option<Vec<(Cow<'a, str>, Scalar<'a>)>> {
    let mut entries = MapEntries::new(kind, number, wire, run)?;
    let mut out = Vec::new();
    for (key, value) in entries.by_ref() {
        out.push((key_string(key)?, value));
    }
    if entries.bad {
        return None;
    }
    // Stable: of equal keys the last is last; it takes the place of the first and the rest go.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    Some(out)
}

/// Whether string or bytes values of `fd` (its map values, for a map) are redacted. Other kinds
/// never are, so their names are not looked at (this runs for every field written).
fn is_secret(opts: &RenderOptions, message: &str, fd: &FieldDescriptor, kind: &Kind) -> bool {
    let value_kind;
    let kind = match kind {
        Kind::Message(entry) if entry.is_map_entry() => {
            value_kind = entry.map_entry_value_field().kind();
            &value_kind
        }
        kind => kind,
    };
    opts.redact
        && matches!(kind, Kind::String | Kind::Bytes)
        && redact::is_secret_field(message, fd.name())
}

/// One of [`WKT_SPECIAL`]; the prefix first, as this runs for every message written.
fn is_special(full_name: &str) -> bool {
    full_name.starts_with("google.protobuf.") && WKT_SPECIAL.contains(&full_name)
}

/// The well-known types written here, in the form prost-reflect's serializer gives them
/// (json.rs hands every type of [`WKT_SPECIAL`] to it).
enum WellKnown {
    Timestamp(prost_types::Timestamp),
    Duration(prost_types::Duration),
    /// The paths, lowerCamelCase, joined by commas.
    FieldMask(String),
    Empty,
}

/// prost-reflect's ranges (`check_timestamp`, `check_duration`): outside them its serializer
/// fails and the slow path shows the plain fields instead.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

/// A Timestamp, Duration, FieldMask or Empty read from its bytes (None for the other special
/// types, for anything but its own fields in order, and for values out of range: give up).
fn well_known(full_name: &str, bytes: &[u8]) -> Option<WellKnown> {
    if full_name == "google.protobuf.Empty" {
        return bytes.is_empty().then_some(WellKnown::Empty);
    }
    if full_name == "google.protobuf.FieldMask" {
        return field_mask(bytes).map(WellKnown::FieldMask);
    }
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
    match full_name {
        "google.protobuf.Timestamp" => (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS)
            .contains(&seconds)
            .then_some(WellKnown::Timestamp(prost_types::Timestamp {
                seconds,
                nanos,
            })),
        "google.protobuf.Duration" => (seconds.unsigned_abs() <= MAX_DURATION_SECONDS
            && nanos.unsigned_abs() <= MAX_DURATION_NANOS)
            .then_some(WellKnown::Duration(prost_types::Duration {
                seconds,
                nanos,
            })),
        _ => None,
    }
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

// ---- the check ----

/// Whether a `desc` message at `depth` renders on the fast path (None: give up). `in_any`: it
/// is the value of an `Any`, whose `@type` key its fields' keys must sort after.
fn check_message(
    desc: &MessageDescriptor,
    bytes: &[u8],
    depth: usize,
    any_depth: usize,
    in_any: bool,
    opts: &RenderOptions,
) -> Option<()> {
    let full_name = desc.full_name();
    if full_name == any::ANY {
        return if in_any {
            None
        } else {
            check_any(desc, bytes, depth, any_depth, opts)
        };
    }
    if is_special(full_name) {
        // Inside an `Any` a special form goes under "value": left to the slow path.
        return if in_any {
            None
        } else {
            well_known(full_name, bytes).map(drop)
        };
    }
    let mut fields = fields(desc, bytes)?;
    fields.sort_by(|a, b| a.fd.json_name().cmp(b.fd.json_name()));
    if fields
        .windows(2)
        .any(|w| w[0].fd.json_name() == w[1].fd.json_name())
    {
        return None;
    }
    if in_any && fields.first().is_some_and(|f| f.fd.json_name() <= TYPE_KEY) {
        return None;
    }
    for field in &fields {
        match field.slot {
            Slot::One(value) => check_value(&field.kind, value, depth, any_depth, opts)?,
            Slot::List(wire, run) => {
                let mut items = ListItems::new(&field.kind, field.fd.number(), wire, run);
                for value in items.by_ref() {
                    check_value(&field.kind, value, depth, any_depth, opts)?;
                }
                if items.bad || !items.buf.is_empty() {
                    return None;
                }
            }
            Slot::Map(wire, run) => {
                let Kind::Message(entry) = &field.kind else {
                    return None;
                };
                let value_kind = entry.map_entry_value_field().kind();
                // Order does not matter here; every entry (even one a later key replaces) must
                // decode for the slow path's decode to succeed.
                let mut entries = MapEntries::new(&field.kind, field.fd.number(), wire, run)?;
                for (key, value) in entries.by_ref() {
                    key_string(key)?;
                    check_value(&value_kind, value, depth, any_depth, opts)?;
                }
                if entries.bad || !entries.buf.is_empty() {
                    return None;
                }
            }
        }
    }
    Some(())
}

/// One value of a field of a message at `depth`: scalars were checked when read.
fn check_value(
    kind: &Kind,
    value: Scalar<'_>,
    depth: usize,
    any_depth: usize,
    opts: &RenderOptions,
) -> Option<()> {
    match (value, kind) {
        (Scalar::Message(body), Kind::Message(inner)) => {
            check_nested(inner, body, depth, any_depth, opts)
        }
        (Scalar::Message(_), _) => None,
        _ => Some(()),
    }
}

/// A message one level below `depth`: given up at the depth limits, where the slow path writes
/// `…` without reading on (or prost's recursion limit comes near).
fn check_nested(
    desc: &MessageDescriptor,
    bytes: &[u8],
    depth: usize,
    any_depth: usize,
    opts: &RenderOptions,
) -> Option<()> {
    if depth + 1 >= opts.max_depth || depth + 1 >= DEPTH_GUARD {
        return None;
    }
    check_message(desc, bytes, depth + 1, any_depth, false, opts)
}

/// The type an `Any` holds, when the fast path renders it: known to the pool, not JSON, and
/// within the depth limits.
fn any_type(
    desc: &MessageDescriptor,
    url: &str,
    value: &[u8],
    depth: usize,
    any_depth: usize,
    opts: &RenderOptions,
) -> Option<MessageDescriptor> {
    if any_depth >= opts.max_any_depth
        || depth + 1 >= opts.max_depth
        || depth + 1 >= DEPTH_GUARD
        || any::as_json(value).is_some()
    {
        return None;
    }
    desc.parent_pool().get_message_by_name(any::type_name(url))
}

fn check_any(
    desc: &MessageDescriptor,
    bytes: &[u8],
    depth: usize,
    any_depth: usize,
    opts: &RenderOptions,
) -> Option<()> {
    let (url, value) = any_parts(bytes)?;
    let inner = any_type(desc, url, value, depth, any_depth, opts)?;
    check_message(&inner, value, depth + 1, any_depth + 1, true, opts)
}

// ---- the writing ----

fn gave_up<E: serde::ser::Error>() -> E {
    E::custom("message bytes the JSON fast path does not render (wire_json_ok said no)")
}

/// A message (or `Any`) at `depth`: an object of its fields, sorted by JSON name.
struct MessageJson<'r, 'a> {
    desc: &'r MessageDescriptor,
    bytes: &'a [u8],
    depth: usize,
    any_depth: usize,
    opts: &'r RenderOptions,
}

impl Serialize for MessageJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (desc, opts) = (self.desc, self.opts);
        if is_special(desc.full_name()) {
            return well_known(desc.full_name(), self.bytes)
                .ok_or_else(gave_up::<S::Error>)?
                .serialize(s);
        }
        let mut map = s.serialize_map(None)?;
        if desc.full_name() == any::ANY {
            let (url, value) = any_parts(self.bytes).ok_or_else(gave_up::<S::Error>)?;
            let inner = any_type(desc, url, value, self.depth, self.any_depth, opts)
                .ok_or_else(gave_up::<S::Error>)?;
            map.serialize_entry(TYPE_KEY, url)?;
            let fields = MessageFields {
                desc: &inner,
                bytes: value,
                depth: self.depth + 1,
                any_depth: self.any_depth + 1,
                opts,
            };
            fields.write::<S>(&mut map)?;
        } else {
            let fields = MessageFields {
                desc,
                bytes: self.bytes,
                depth: self.depth,
                any_depth: self.any_depth,
                opts,
            };
            fields.write::<S>(&mut map)?;
        }
        map.end()
    }
}

/// The entries of a plain message's object.
struct MessageFields<'r, 'a> {
    desc: &'r MessageDescriptor,
    bytes: &'a [u8],
    depth: usize,
    any_depth: usize,
    opts: &'r RenderOptions,
}

impl MessageFields<'_, '_> {
    fn write<S: Serializer>(&self, map: &mut S::SerializeMap) -> Result<(), S::Error> {
        let full_name = self.desc.full_name();
        let mut fields = fields(self.desc, self.bytes).ok_or_else(gave_up::<S::Error>)?;
        fields.sort_by(|a, b| a.fd.json_name().cmp(b.fd.json_name()));
        for field in &fields {
            let secret = is_secret(self.opts, full_name, &field.fd, &field.kind);
            let name = field.fd.json_name();
            let value = |value| ValueJson {
                kind: &field.kind,
                value,
                secret,
                depth: self.depth,
                any_depth: self.any_depth,
                opts: self.opts,
            };
            match field.slot {
                Slot::One(v) => map.serialize_entry(name, &value(v))?,
                Slot::List(wire, run) => map.serialize_entry(
                    name,
                    &ListJson {
                        field,
                        wire,
                        run,
                        secret,
                        depth: self.depth,
                        any_depth: self.any_depth,
                        opts: self.opts,
                    },
                )?,
                Slot::Map(wire, run) => map.serialize_entry(
                    name,
                    &MapJson {
                        field,
                        wire,
                        run,
                        secret,
                        depth: self.depth,
                        any_depth: self.any_depth,
                        opts: self.opts,
                    },
                )?,
            }
        }
        Ok(())
    }
}

/// One value of a field (or list item, or map value) of a message at `depth`.
struct ValueJson<'r, 'a> {
    kind: &'r Kind,
    value: Scalar<'a>,
    secret: bool,
    depth: usize,
    any_depth: usize,
    opts: &'r RenderOptions,
}

impl Serialize for ValueJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // As json.rs's `DirectValue`.
        match self.value {
            Scalar::Str(_) | Scalar::Bytes(_) if self.secret => s.serialize_str(REDACTED),
            Scalar::Bool(b) => s.serialize_bool(b),
            Scalar::I32(n) => s.serialize_i32(n),
            Scalar::U32(n) => s.serialize_u32(n),
            Scalar::I64(n) => s.collect_str(&n),
            Scalar::U64(n) => s.collect_str(&n),
            Scalar::F32(f) => float(f64::from(f)).serialize(s),
            Scalar::F64(f) => float(f).serialize(s),
            Scalar::Str(v) => s.serialize_str(v),
            Scalar::Bytes(b) => s.collect_str(&Base64Display::new(b, &STANDARD)),
            Scalar::Enum(n) => match self.kind.as_enum().and_then(|e| e.get_value(n)) {
                Some(v) => s.serialize_str(v.name()),
                None => s.serialize_i32(n),
            },
            Scalar::Message(body) => match self.kind {
                Kind::Message(desc) => MessageJson {
                    desc,
                    bytes: body,
                    depth: self.depth + 1,
                    any_depth: self.any_depth,
                    opts: self.opts,
                }
                .serialize(s),
                _ => Err(gave_up()),
            },
        }
    }
}

struct ListJson<'r, 'a> {
    field: &'r Field<'a>,
    wire: WireType,
    run: &'a [u8],
    secret: bool,
    depth: usize,
    any_depth: usize,
    opts: &'r RenderOptions,
}

impl Serialize for ListJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = &self.field.kind;
        let mut items = ListItems::new(kind, self.field.fd.number(), self.wire, self.run);
        let mut seq = s.serialize_seq(None)?;
        for value in items.by_ref() {
            seq.serialize_element(&ValueJson {
                kind,
                value,
                secret: self.secret,
                depth: self.depth,
                any_depth: self.any_depth,
                opts: self.opts,
            })?;
        }
        if items.bad {
            return Err(gave_up());
        }
        seq.end()
    }
}

struct MapJson<'r, 'a> {
    field: &'r Field<'a>,
    wire: WireType,
    run: &'a [u8],
    secret: bool,
    depth: usize,
    any_depth: usize,
    opts: &'r RenderOptions,
}

impl Serialize for MapJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = &self.field.kind;
        let entries = sorted_entries(kind, self.field.fd.number(), self.wire, self.run)
            .ok_or_else(gave_up::<S::Error>)?;
        let Kind::Message(entry) = kind else {
            return Err(gave_up());
        };
        let value_kind = entry.map_entry_value_field().kind();
        let mut map = s.serialize_map(None)?;
        let texts = matches!(value_kind, Kind::String | Kind::Bytes);
        for (key, value) in &entries {
            let secret = self.secret || (texts && self.opts.redact && redact::is_secret_name(key));
            map.serialize_entry(
                &**key,
                &ValueJson {
                    kind: &value_kind,
                    value: *value,
                    secret,
                    depth: self.depth,
                    any_depth: self.any_depth,
                    opts: self.opts,
                },
            )?;
        }
        map.end()
    }
}
