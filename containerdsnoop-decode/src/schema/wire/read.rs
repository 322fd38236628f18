//! Reading the wire: field keys in the order the walker accepts, one value of a kind exactly as
//! prost's `merge` converts it, packed and unpacked runs of a repeated field, map entries, an
//! `Any`'s two fields. Every reader returns None where prost's decode would fail or where the
//! walker gives up; none allocates.

use prost::encoding::{WireType, decode_key, decode_varint};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, Value};

use crate::schema::scalar::Scalar;

/// The keys of one message's fields in the order the walker requires: rising field
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

/// The items of a repeated field's run, packed or not. Stops at the first value that does not
/// read (`bad` set) or the first key of another field (`buf` left there).
pub(super) struct ListItems<'k, 'a> {
    kind: &'k Kind,
    number: u32,
    /// The wire type of the next occurrence, its key already read.
    pending: Option<WireType>,
    packed: &'a [u8],
    /// What is left after the run read so far.
    pub(super) buf: &'a [u8],
    /// A value did not read: give up.
    pub(super) bad: bool,
}

impl<'k, 'a> ListItems<'k, 'a> {
    pub(super) fn new(kind: &'k Kind, number: u32, wire: WireType, buf: &'a [u8]) -> Self {
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
pub(super) struct MapEntries<'a> {
    pub(super) key_kind: Kind,
    pub(super) value_kind: Kind,
    number: u32,
    pending: Option<WireType>,
    /// What is left after the run read so far.
    pub(super) buf: &'a [u8],
    /// A value did not read: give up.
    pub(super) bad: bool,
}

impl<'a> MapEntries<'a> {
    /// The run of map field `number` whose entries are `entry` messages.
    pub(super) fn new(
        entry: &MessageDescriptor,
        number: u32,
        wire: WireType,
        buf: &'a [u8],
    ) -> Self {
        MapEntries {
            key_kind: entry.map_entry_key_field().kind(),
            value_kind: entry.map_entry_value_field().kind(),
            number,
            pending: Some(wire),
            buf,
            bad: false,
        }
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
