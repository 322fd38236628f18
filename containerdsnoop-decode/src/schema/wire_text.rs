//! The table's fast path: one-line protobuf text written straight from a message's wire bytes
//! and its descriptor, byte for byte what [`to_text`](super::to_text) writes for the
//! [`decode`](super::decode)d message, without building a `DynamicMessage`.
//!
//! Hand-written because prost-reflect decodes only into a `DynamicMessage` (owned values, a
//! `BTreeMap` per message), which the table renders once and drops: building and dropping them
//! was about 43% of `-r`'s CPU in the profile of issue 16. Here the bytes are walked once, each
//! value written as it is read, with no allocation per field.
//!
//! The contract: [`wire_text`] returns true only when the schema decode would succeed and the
//! text is exactly the slow path's. It gives up (false; the caller takes the slow path) on
//! anything whose rendering depends on `DynamicMessage`'s bookkeeping rather than on the bytes
//! in order:
//!
//! - any decode error (bad key, varint or length, wrong wire type, string not UTF-8): the slow
//!   path then renders schema-less;
//! - fields out of field-number order, a non-repeated field twice (the message sorts fields by
//!   number, keeps the last scalar and merges messages), a repeated field in separate runs,
//!   two members of one oneof (the last clears the first);
//! - unknown fields, extensions and groups (the slow path re-encodes and re-reads them);
//! - an `Any` that holds JSON, names a type not in the pool or one whose value itself gives up,
//!   or is past [`RenderOptions::max_any_depth`];
//! - map entries carrying other fields or a key or value twice;
//! - nesting at [`RenderOptions::max_depth`] (the slow path writes `…` without reading on) or
//!   beyond [`DEPTH_GUARD`] (prost's recursion limit must stay out of reach);
//! - a map whose entries need sorting when the output reaches its cap inside the map.

use prost::encoding::{WireType, decode_key, decode_varint};
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor, Value};

use crate::escape::{push_escaped, push_quoted, push_quoted_bytes};

use super::{
    RenderOptions, any,
    redact::{self, REDACTED},
    text::{write_float, write_num},
};

#[cfg(test)]
mod tests;

/// Deepest nesting read here. prost stops decoding at 100 levels; one decode never nests deeper
/// than the text does, so staying under this keeps "fast path true" implying "decode succeeds".
pub const DEPTH_GUARD: usize = 64;

/// Renders `bytes` as a `desc` message into `out` (cleared first). True when `out` holds exactly
/// `to_text(&decode(Some(desc), bytes), opts)` and that decode uses the schema; false (and `out`
/// empty) when the caller must take that slow path instead.
pub fn wire_text(
    desc: &MessageDescriptor,
    bytes: &[u8],
    opts: &RenderOptions,
    out: &mut String,
) -> bool {
    out.clear();
    // Text is usually a little longer than the bytes (names added); one allocation up front
    // instead of several while growing, never more than the cap allows.
    out.reserve(
        bytes
            .len()
            .saturating_mul(2)
            .saturating_add(16)
            .min(opts.max_text_len.saturating_add(4)),
    );
    let mut w = Writer {
        opts,
        out,
        full: false,
        entries: Vec::new(),
        scratch: String::new(),
    };
    let done = match w.message_body(desc, bytes, 0, 0) {
        Some(true) => true,
        Some(false) => {
            w.push("{}");
            true
        }
        None => false,
    };
    if !done {
        out.clear();
        return false;
    }
    cap(out, opts.max_text_len);
    true
}

/// The slow path's cut: at the last character boundary within `max` bytes, then `…`.
fn cap(out: &mut String, max: usize) {
    if out.len() <= max {
        return;
    }
    let mut end = max;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.push('…');
}

/// One value as read from the wire, borrowing the input for strings, bytes and messages.
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
    /// A nested message's encoded fields.
    Message(&'a [u8]),
}

/// A map key, ordered as prost-reflect's `MapKey` (all keys of one map are the same variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey<'a> {
    Bool(bool),
    I32(i32),
    I64(i64),
    U32(u32),
    U64(u64),
    Str(&'a str),
}

impl<'a> SortKey<'a> {
    fn of(key: Scalar<'a>) -> Option<Self> {
        Some(match key {
            Scalar::Bool(b) => SortKey::Bool(b),
            Scalar::I32(n) => SortKey::I32(n),
            Scalar::I64(n) => SortKey::I64(n),
            Scalar::U32(n) => SortKey::U32(n),
            Scalar::U64(n) => SortKey::U64(n),
            Scalar::Str(s) => SortKey::Str(s),
            _ => return None,
        })
    }
}

/// One map entry written to the output: its key and where its text sits in `out`.
type Entry<'a> = (SortKey<'a>, usize, usize);

struct Writer<'o, 'a> {
    opts: &'o RenderOptions,
    out: &'o mut String,
    /// `out` is past the cap: nothing more is written, but the bytes are still checked.
    full: bool,
    /// Entries of the maps being written, innermost last (a stack shared by nested maps).
    entries: Vec<Entry<'a>>,
    /// A map's text while its entries are put in key order.
    scratch: String,
}

impl<'a> Writer<'_, 'a> {
    fn push(&mut self, piece: &str) {
        if !self.full {
            self.out.push_str(piece);
            self.mark();
        }
    }

    fn mark(&mut self) {
        self.full = self.out.len() > self.opts.max_text_len;
    }

    fn sep(&mut self, first: &mut bool) {
        if !*first {
            self.push(" ");
        }
        *first = false;
    }

    /// The fields of a `desc` message, without braces: `Some(false)` when there were none,
    /// `None` to give up.
    fn message_body(
        &mut self,
        desc: &MessageDescriptor,
        bytes: &'a [u8],
        depth: usize,
        any_depth: usize,
    ) -> Option<bool> {
        if desc.full_name() == any::ANY {
            self.any_body(desc, bytes, depth, any_depth)?;
            return Some(true);
        }
        let full_name = desc.full_name();
        let mut first = true;
        let mut keys = FieldKeys::new(bytes);
        while let Some((fd, wire)) = keys.next(desc)? {
            let buf = &mut keys.rest;
            // `kind()` builds a value each call; `is_map`/`is_list` would build it twice more.
            let kind = fd.kind();
            let repeated = fd.cardinality() == Cardinality::Repeated;
            if repeated && matches!(&kind, Kind::Message(entry) if entry.is_map_entry()) {
                let field = FieldAt {
                    message: full_name,
                    fd: &fd,
                    kind: &kind,
                };
                self.map_field(field, wire, buf, &mut first, depth, any_depth)?;
            } else if repeated {
                let field = FieldAt {
                    message: full_name,
                    fd: &fd,
                    kind: &kind,
                };
                self.list_field(field, wire, buf, &mut first, depth, any_depth)?;
            } else {
                let value = read_value(&kind, wire, buf)?;
                if !fd.supports_presence() && is_default(&fd, value)? {
                    continue;
                }
                let secret = self.is_secret(full_name, &fd, &kind);
                self.sep(&mut first);
                self.named(fd.name(), &kind, value, secret, depth, any_depth)?;
            }
        }
        Some(!first)
    }

    /// Whether string or bytes values of `fd` are redacted (other kinds never are).
    fn is_secret(&self, message: &str, fd: &FieldDescriptor, kind: &Kind) -> bool {
        self.opts.redact
            && matches!(kind, Kind::String | Kind::Bytes)
            && redact::is_secret_field(message, fd.name())
    }

    /// Every run-adjacent occurrence of a repeated field, packed or not: one item each.
    fn list_field(
        &mut self,
        field: FieldAt<'_>,
        mut wire: WireType,
        buf: &mut &'a [u8],
        first: &mut bool,
        depth: usize,
        any_depth: usize,
    ) -> Option<()> {
        let FieldAt { message, fd, kind } = field;
        let secret = self.is_secret(message, fd, kind);
        let name = fd.name();
        let packable = !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_));
        loop {
            if wire == WireType::LengthDelimited && packable {
                let mut packed = read_len(wire, buf)?;
                while !packed.is_empty() {
                    let value = read_value(kind, kind.wire_type(), &mut packed)?;
                    self.sep(first);
                    self.named(name, kind, value, secret, depth, any_depth)?;
                }
            } else {
                let value = read_value(kind, wire, buf)?;
                self.sep(first);
                self.named(name, kind, value, secret, depth, any_depth)?;
            }
            match next_key_if(buf, fd.number()) {
                Some(next) => wire = next,
                None => return Some(()),
            }
        }
    }

    /// Every run-adjacent entry of a map field, written `name {key:K value:V}` in key order,
    /// the last of equal keys kept.
    fn map_field(
        &mut self,
        field: FieldAt<'_>,
        mut wire: WireType,
        buf: &mut &'a [u8],
        first: &mut bool,
        depth: usize,
        any_depth: usize,
    ) -> Option<()> {
        let FieldAt { message, fd, kind } = field;
        let Kind::Message(entry) = kind else {
            return None;
        };
        let key_kind = entry.map_entry_key_field().kind();
        let value_kind = entry.map_entry_value_field().kind();
        let field_secret = self.opts.redact && redact::is_secret_field(message, fd.name());
        let base = self.entries.len();
        // Cut before the map began: none of it is written, so its order cannot show.
        let unwritten = self.full;
        let mut map_start = None;
        loop {
            let mut entry_bytes = read_len(wire, buf)?;
            let (mut key, mut value) = (None, None);
            while !entry_bytes.is_empty() {
                let (number, entry_wire) = decode_key(&mut entry_bytes).ok()?;
                match number {
                    1 if key.is_none() => {
                        key = Some(read_value(&key_kind, entry_wire, &mut entry_bytes)?);
                    }
                    2 if value.is_none() => {
                        value = Some(read_value(&value_kind, entry_wire, &mut entry_bytes)?);
                    }
                    _ => return None,
                }
            }
            let key = key.or_else(|| default_of(&key_kind))?;
            let value = value.or_else(|| default_of(&value_kind))?;
            let sort_key = SortKey::of(key)?;
            self.sep(first);
            let start = self.out.len();
            map_start.get_or_insert(start);
            self.push(fd.name());
            self.push(" {key:");
            self.scalar(&key_kind, key);
            self.push(" ");
            let secret = field_secret
                || (self.opts.redact && matches!(key, Scalar::Str(k) if redact::is_secret_name(k)));
            self.named("value", &value_kind, value, secret, depth, any_depth)?;
            self.push("}");
            self.entries.push((sort_key, start, self.out.len()));
            match next_key_if(buf, fd.number()) {
                Some(next) => wire = next,
                None => break,
            }
        }
        let sorted = if unwritten {
            Some(())
        } else {
            self.in_key_order(base, map_start?)
        };
        self.entries.truncate(base);
        sorted
    }

    /// Rewrites the map text written since `start` (entries `base..`) in key order, keeping the
    /// last of equal keys, as the slow path's `HashMap` and sort do.
    fn in_key_order(&mut self, base: usize, start: usize) -> Option<()> {
        let Writer {
            out,
            entries,
            scratch,
            full,
            ..
        } = self;
        let entries = &mut entries[base..];
        if entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Some(());
        }
        if *full {
            // The written prefix is in wire order and cut; the slow path's may differ.
            return None;
        }
        scratch.clear();
        scratch.push_str(&out[start..]);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(start);
        for (i, entry) in entries.iter().enumerate() {
            if entries.get(i + 1).is_some_and(|next| next.0 == entry.0) {
                continue;
            }
            if out.len() > start {
                out.push(' ');
            }
            out.push_str(&scratch[entry.1 - start..entry.2 - start]);
        }
        // Fewer bytes than before (duplicates dropped): still within the cap.
        Some(())
    }

    fn named(
        &mut self,
        name: &str,
        kind: &Kind,
        value: Scalar<'a>,
        secret: bool,
        depth: usize,
        any_depth: usize,
    ) -> Option<()> {
        match value {
            Scalar::Message(body) => {
                let Kind::Message(desc) = kind else {
                    return None;
                };
                if depth + 1 >= self.opts.max_depth || depth + 1 >= DEPTH_GUARD {
                    return None;
                }
                self.push(name);
                self.push(" {");
                self.message_body(desc, body, depth + 1, any_depth)?;
                self.push("}");
            }
            Scalar::Str(_) | Scalar::Bytes(_) if secret => {
                self.push(name);
                self.push(":");
                self.push(REDACTED);
            }
            value => {
                self.push(name);
                self.push(":");
                self.scalar(kind, value);
            }
        }
        Some(())
    }

    fn scalar(&mut self, kind: &Kind, value: Scalar<'_>) {
        if self.full {
            return;
        }
        let out = &mut *self.out;
        match value {
            Scalar::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Scalar::I32(n) => write_num(out, &n),
            Scalar::I64(n) => write_num(out, &n),
            Scalar::U32(n) => write_num(out, &n),
            Scalar::U64(n) => write_num(out, &n),
            Scalar::F32(f) => write_float(out, f64::from(f)),
            Scalar::F64(f) => write_float(out, f),
            Scalar::Str(s) => push_quoted(out, s),
            Scalar::Bytes(b) => push_quoted_bytes(out, b, self.opts.max_bytes_preview),
            Scalar::Enum(n) => match kind.as_enum().and_then(|e| e.get_value(n)) {
                Some(v) => out.push_str(v.name()),
                None => write_num(out, &n),
            },
            // Messages are written by `named`; as in the slow path, nothing else reaches here.
            Scalar::Message(_) => out.push('?'),
        }
        self.mark();
    }

    /// A `google.protobuf.Any`: `[type_url] {fields}` when the pool knows the type.
    fn any_body(
        &mut self,
        desc: &MessageDescriptor,
        bytes: &'a [u8],
        depth: usize,
        any_depth: usize,
    ) -> Option<()> {
        let (url, value) = any_parts(bytes)?;
        if any_depth >= self.opts.max_any_depth
            || depth + 1 >= self.opts.max_depth
            || depth + 1 >= DEPTH_GUARD
        {
            return None;
        }
        if self.full {
            // Nothing more is written; the slow path's rendering of the value cannot show.
            return Some(());
        }
        if any::as_json(value).is_some() {
            return None;
        }
        let inner = desc
            .parent_pool()
            .get_message_by_name(any::type_name(url))?;
        self.push("[");
        if !self.full {
            push_escaped(self.out, url);
            self.mark();
        }
        self.push("]");
        self.push(" {");
        self.message_body(&inner, value, depth + 1, any_depth + 1)?;
        self.push("}");
        Some(())
    }
}

/// A repeated field being written: its message's full name (for redaction), its descriptor
/// and its kind.
#[derive(Clone, Copy)]
struct FieldAt<'f> {
    message: &'f str,
    fd: &'f FieldDescriptor,
    kind: &'f Kind,
}

/// The keys of one message's fields in the order both fast paths require: rising field
/// numbers (so the slow path's by-number order is the wire order and no non-repeated field comes
/// twice), no group, at most one member of each oneof. The caller reads each value from `rest`.
pub(super) struct FieldKeys<'a> {
    pub(super) rest: &'a [u8],
    last: u32,
    /// Oneof members seen so far (by number); a second member of the same oneof gives up.
    oneof_members: [u32; 8],
    oneof_count: usize,
}

impl<'a> FieldKeys<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        FieldKeys {
            rest: bytes,
            last: 0,
            oneof_members: [0; 8],
            oneof_count: 0,
        }
    }

    /// The next field number and wire type, above the one before; `Some(None)` at the end,
    /// None to give up (a bad key, or numbers not rising).
    pub(super) fn next_key(&mut self) -> Option<Option<(u32, WireType)>> {
        if self.rest.is_empty() {
            return Some(None);
        }
        let (number, wire) = decode_key(&mut self.rest).ok()?;
        if number <= self.last {
            return None;
        }
        self.last = number;
        Some(Some((number, wire)))
    }

    /// The next field of `desc` and its wire type; `Some(None)` at the end, None to give up.
    pub(super) fn next(
        &mut self,
        desc: &MessageDescriptor,
    ) -> Option<Option<(FieldDescriptor, WireType)>> {
        let Some((number, wire)) = self.next_key()? else {
            return Some(None);
        };
        let fd = desc.get_field(number)?;
        if fd.is_group() {
            return None;
        }
        if let Some(oneof) = fd.containing_oneof() {
            let seen = &self.oneof_members[..self.oneof_count];
            if oneof.fields().any(|f| seen.contains(&f.number())) {
                return None;
            }
            *self.oneof_members.get_mut(self.oneof_count)? = number;
            self.oneof_count += 1;
        }
        Some(Some((fd, wire)))
    }
}

/// A `google.protobuf.Any`'s type URL and value, both fields at most once and in order.
pub(super) fn any_parts(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (mut url, mut value) = ("", &[][..]);
    let mut keys = FieldKeys::new(bytes);
    while let Some((number, wire)) = keys.next_key()? {
        match number {
            1 => url = std::str::from_utf8(read_len(wire, &mut keys.rest)?).ok()?,
            2 => value = read_len(wire, &mut keys.rest)?,
            _ => return None,
        }
    }
    Some((url, value))
}

/// The key after `buf` when it is field `number` again (consumed), else None (not consumed).
pub(super) fn next_key_if(buf: &mut &[u8], number: u32) -> Option<WireType> {
    let mut peek = *buf;
    match decode_key(&mut peek) {
        Ok((n, wire)) if n == number => {
            *buf = peek;
            Some(wire)
        }
        _ => None,
    }
}

/// A length-delimited value, as prost reads one (no other wire type accepted).
pub(super) fn read_len<'a>(wire: WireType, buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if wire != WireType::LengthDelimited {
        return None;
    }
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Some(value)
}

fn read_fixed<const N: usize>(
    wire: WireType,
    expected: WireType,
    buf: &mut &[u8],
) -> Option<[u8; N]> {
    if wire != expected {
        return None;
    }
    let (head, rest) = buf.split_first_chunk::<N>()?;
    *buf = rest;
    Some(*head)
}

/// One value of `kind`, converted exactly as prost's `merge` for that type does.
pub(super) fn read_value<'a>(
    kind: &Kind,
    wire: WireType,
    buf: &mut &'a [u8],
) -> Option<Scalar<'a>> {
    let varint = |buf: &mut &'a [u8]| -> Option<u64> {
        if wire != WireType::Varint {
            return None;
        }
        decode_varint(buf).ok()
    };
    const B32: WireType = WireType::ThirtyTwoBit;
    const B64: WireType = WireType::SixtyFourBit;
    Some(match kind {
        Kind::Bool => Scalar::Bool(varint(buf)? != 0),
        Kind::Int32 => Scalar::I32(varint(buf)? as i32),
        Kind::Int64 => Scalar::I64(varint(buf)? as i64),
        Kind::Uint32 => Scalar::U32(varint(buf)? as u32),
        Kind::Uint64 => Scalar::U64(varint(buf)?),
        Kind::Sint32 => {
            let v = varint(buf)? as u32;
            Scalar::I32(((v >> 1) as i32) ^ (-((v & 1) as i32)))
        }
        Kind::Sint64 => {
            let v = varint(buf)?;
            Scalar::I64(((v >> 1) as i64) ^ (-((v & 1) as i64)))
        }
        Kind::Enum(_) => Scalar::Enum(varint(buf)? as i32),
        Kind::Fixed32 => Scalar::U32(u32::from_le_bytes(read_fixed(wire, B32, buf)?)),
        Kind::Sfixed32 => Scalar::I32(i32::from_le_bytes(read_fixed(wire, B32, buf)?)),
        Kind::Float => Scalar::F32(f32::from_le_bytes(read_fixed(wire, B32, buf)?)),
        Kind::Fixed64 => Scalar::U64(u64::from_le_bytes(read_fixed(wire, B64, buf)?)),
        Kind::Sfixed64 => Scalar::I64(i64::from_le_bytes(read_fixed(wire, B64, buf)?)),
        Kind::Double => Scalar::F64(f64::from_le_bytes(read_fixed(wire, B64, buf)?)),
        Kind::String => Scalar::Str(std::str::from_utf8(read_len(wire, buf)?).ok()?),
        Kind::Bytes => Scalar::Bytes(read_len(wire, buf)?),
        Kind::Message(_) => Scalar::Message(read_len(wire, buf)?),
    })
}

/// The value an absent map key or value takes (prost-reflect's default for the kind).
pub(super) fn default_of(kind: &Kind) -> Option<Scalar<'static>> {
    Some(match kind {
        Kind::Bool => Scalar::Bool(false),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Scalar::I32(0),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Scalar::I64(0),
        Kind::Uint32 | Kind::Fixed32 => Scalar::U32(0),
        Kind::Uint64 | Kind::Fixed64 => Scalar::U64(0),
        Kind::Float => Scalar::F32(0.0),
        Kind::Double => Scalar::F64(0.0),
        Kind::String => Scalar::Str(""),
        Kind::Bytes => Scalar::Bytes(&[]),
        Kind::Enum(e) => Scalar::Enum(e.default_value().number()),
        Kind::Message(_) => Scalar::Message(&[]),
    })
}

/// Whether a field without presence holds its default, so `DynamicMessage::fields` skips it
/// (compared as prost-reflect compares `Value`s). None: a value the field cannot hold.
pub(super) fn is_default(fd: &FieldDescriptor, value: Scalar<'_>) -> Option<bool> {
    Some(match (value, fd.default_value()) {
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::I32(a), Value::I32(b)) => a == b,
        (Scalar::I64(a), Value::I64(b)) => a == b,
        (Scalar::U32(a), Value::U32(b)) => a == b,
        (Scalar::U64(a), Value::U64(b)) => a == b,
        (Scalar::F32(a), Value::F32(b)) => a == b,
        (Scalar::F64(a), Value::F64(b)) => a == b,
        (Scalar::Str(a), Value::String(b)) => a == b,
        (Scalar::Bytes(a), Value::Bytes(b)) => a == &b[..],
        (Scalar::Enum(a), Value::EnumNumber(b)) => a == b,
        _ => return None,
    })
}
