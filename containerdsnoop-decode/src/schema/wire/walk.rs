//! The wire walker: reads a message's fields from its bytes and its descriptor, applies every
//! accept/give-up rule, the depth limits, redaction and `Any` resolution once, and drives a
//! [`Writer`] (the text writer in `text.rs`, the JSON check and writer in `json.rs`). Writers see
//! fields and values, never keys or wire types; where they recurse, they do so through
//! [`Walk::nested`] and [`Walk::message`], so the limits cannot be skipped.

use prost::encoding::WireType;
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use super::read::{FieldKeys, ListItems, MapEntries, any_parts, is_default, read_value};
use crate::schema::{RenderOptions, any, redact, scalar::Scalar};

/// Deepest nesting read here. prost stops decoding at 100 levels; one decode never nests deeper
/// than the output does, so staying under this keeps "walker accepts" implying "decode succeeds".
pub(super) const DEPTH_GUARD: usize = 64;

/// The walker declined: the caller takes the `DynamicMessage` path.
#[derive(Debug, Clone, Copy)]
pub(super) struct GiveUp;

/// How deep a message sits: in messages, and in `Any` values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Depth {
    pub(super) depth: usize,
    pub(super) any_depth: usize,
}

impl Depth {
    pub(super) const TOP: Depth = Depth {
        depth: 0,
        any_depth: 0,
    };
}

/// One output format, driven by [`Walk::message`]. `self` is consumed per message, as a serde
/// `Serializer` is (the text writer implements this for `&mut` itself).
pub(super) trait Writer<'a>: Sized {
    type Ok;
    type Error;
    /// Whether [`Fields`] reads each list and map run through before yielding it (a writer
    /// that sorts needs it); false: the writer reads the run as it writes, then hands the rest
    /// back with [`Fields::resume`] (text: each value read once).
    const SCAN_RUNS: bool = true;
    /// The error for bytes the walker declines.
    fn gave_up() -> Self::Error;
    /// A message other than an `Any`; `fields` reads its fields in wire order.
    fn message(self, walk: &Walk<'_>, fields: Fields<'_, 'a>) -> Result<Self::Ok, Self::Error>;
    /// An `Any` within the limits; [`AnyAt::inner`] resolves the type it holds.
    fn any(self, walk: &Walk<'_>, any: AnyAt<'_, 'a>) -> Result<Self::Ok, Self::Error>;
}

/// The walker, with the options every rule reads.
pub(super) struct Walk<'o> {
    pub(super) opts: &'o RenderOptions,
}

impl Walk<'_> {
    /// A `desc` message at `at`, written by `w`.
    pub(super) fn message<'a, W: Writer<'a>>(
        &self,
        w: W,
        desc: &MessageDescriptor,
        bytes: &'a [u8],
        at: Depth,
    ) -> Result<W::Ok, W::Error> {
        if desc.full_name() == any::ANY {
            let any = self.any(desc, bytes, at).ok_or_else(W::gave_up)?;
            return w.any(self, any);
        }
        let mut fields = self.fields(desc, bytes, at);
        fields.scan = W::SCAN_RUNS;
        w.message(self, fields)
    }

    /// The value of a message-typed field of a message at `at`: one level deeper, given up at
    /// the depth limits (where the slow path writes `…` without reading on).
    pub(super) fn nested<'a, W: Writer<'a>>(
        &self,
        w: W,
        kind: &Kind,
        value: Scalar<'a>,
        at: Depth,
    ) -> Result<W::Ok, W::Error> {
        let (Kind::Message(desc), Scalar::Message(body)) = (kind, value) else {
            return Err(W::gave_up());
        };
        let depth = at.depth + 1;
        if !self.within(depth) {
            return Err(W::gave_up());
        }
        self.message(w, desc, body, Depth { depth, ..at })
    }

    /// The one depth rule: a message at `depth` is read.
    fn within(&self, depth: usize) -> bool {
        depth < self.opts.max_depth && depth < DEPTH_GUARD
    }

    /// The fields of a plain `desc` message (an `Any`'s value, for a writer that writes it
    /// inline).
    pub(super) fn fields<'d, 'a>(
        &self,
        desc: &'d MessageDescriptor,
        bytes: &'a [u8],
        at: Depth,
    ) -> Fields<'d, 'a> {
        Fields {
            desc,
            bytes,
            keys: FieldKeys::new(bytes),
            at,
            redact: self.opts.redact,
            scan: true,
            unfinished: false,
        }
    }

    /// An `Any`'s parts, when its value is within the limits.
    fn any<'d, 'a>(
        &self,
        desc: &'d MessageDescriptor,
        bytes: &'a [u8],
        at: Depth,
    ) -> Option<AnyAt<'d, 'a>> {
        let (url, value) = any_parts(bytes)?;
        let depth = at.depth + 1;
        if at.any_depth >= self.opts.max_any_depth || !self.within(depth) {
            return None;
        }
        Some(AnyAt {
            desc,
            url,
            value,
            at: Depth {
                depth,
                any_depth: at.any_depth + 1,
            },
        })
    }

    /// Whether the value under `key` of a map field is redacted: the field's rule
    /// (`field_secret`, [`Fields::secret`]), or a string key that names a credential (values of
    /// other kinds never are).
    pub(super) fn entry_secret(
        &self,
        field_secret: bool,
        value_kind: &Kind,
        key: Scalar<'_>,
    ) -> bool {
        field_secret
            || (self.opts.redact
                && is_text(value_kind)
                && matches!(key, Scalar::Str(k) if redact::is_secret_name(k)))
    }
}

fn is_text(kind: &Kind) -> bool {
    matches!(kind, Kind::String | Kind::Bytes)
}

/// An `Any` the walker accepted: its type URL and value, and the depth its value sits at.
pub(super) struct AnyAt<'d, 'a> {
    desc: &'d MessageDescriptor,
    pub(super) url: &'a str,
    pub(super) value: &'a [u8],
    pub(super) at: Depth,
}

impl AnyAt<'_, '_> {
    /// The type of the value: known to the pool, and not a JSON document (which the slow path
    /// shows as JSON). None: give up.
    pub(super) fn inner(&self) -> Option<MessageDescriptor> {
        if any::as_json(self.value).is_some() {
            return None;
        }
        self.desc
            .parent_pool()
            .get_message_by_name(any::type_name(self.url))
    }
}

/// Where a field's value sits in the wire bytes.
#[derive(Clone, Copy)]
pub(super) enum Slot<'a> {
    One(Scalar<'a>),
    /// A repeated field: its first wire type and the run from after its first key to the end
    /// of its last value (later keys included).
    List(WireType, &'a [u8]),
    /// A map field, likewise.
    Map(WireType, &'a [u8]),
}

/// One field the slow path's `DynamicMessage::fields` would yield.
pub(super) struct Field<'a> {
    pub(super) fd: FieldDescriptor,
    pub(super) kind: Kind,
    pub(super) slot: Slot<'a>,
}

impl<'a> Field<'a> {
    /// The items of a list field (none for others).
    pub(super) fn items(&self) -> ListItems<'_, 'a> {
        let (wire, run) = match self.slot {
            Slot::List(wire, run) => (wire, run),
            _ => (WireType::LengthDelimited, &[][..]),
        };
        ListItems::new(&self.kind, self.fd.number(), wire, run)
    }

    /// The entries of a map field (None for others).
    pub(super) fn entries(&self) -> Option<MapEntries<'a>> {
        match (self.slot, &self.kind) {
            (Slot::Map(wire, run), Kind::Message(entry)) => {
                Some(MapEntries::new(entry, self.fd.number(), wire, run))
            }
            _ => None,
        }
    }
}

/// The fields of one plain message, read in wire order: each scalar read and checked, each
/// list and map run read through (nested messages are read when written); defaults of fields
/// without presence and empty lists left out.
pub(super) struct Fields<'d, 'a> {
    desc: &'d MessageDescriptor,
    bytes: &'a [u8],
    keys: FieldKeys<'a>,
    at: Depth,
    redact: bool,
    /// Read each run through before yielding it ([`Writer::SCAN_RUNS`]).
    scan: bool,
    /// A run was yielded unscanned and not [`Fields::resume`]d yet.
    unfinished: bool,
}

impl<'d, 'a> Fields<'d, 'a> {
    pub(super) fn desc(&self) -> &'d MessageDescriptor {
        self.desc
    }

    /// The message's encoded fields.
    pub(super) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Where the message sits.
    pub(super) fn at(&self) -> Depth {
        self.at
    }

    /// The next field; `Some(None)` at the end, None to give up.
    pub(super) fn next(&mut self) -> Option<Option<Field<'a>>> {
        if self.unfinished {
            return None;
        }
        loop {
            let Some((fd, wire)) = self.keys.next(self.desc)? else {
                return Some(None);
            };
            let buf = &mut self.keys.rest;
            // `kind()` builds a value each call; `is_map`/`is_list` would build it twice more.
            let kind = fd.kind();
            let slot = if fd.cardinality() == Cardinality::Repeated {
                let start = *buf;
                let map = match &kind {
                    Kind::Message(entry) if entry.is_map_entry() => Some(entry),
                    _ => None,
                };
                if !self.scan {
                    // The run is the rest: the writer reads it and resumes after it.
                    self.unfinished = true;
                    let slot = match map {
                        Some(_) => Slot::Map(wire, start),
                        None => Slot::List(wire, start),
                    };
                    return Some(Some(Field { fd, kind, slot }));
                }
                let count = if let Some(entry) = map {
                    let mut entries = MapEntries::new(entry, fd.number(), wire, buf);
                    let count = entries.by_ref().count();
                    (!entries.bad).then_some(())?;
                    *buf = entries.buf;
                    count
                } else {
                    let mut items = ListItems::new(&kind, fd.number(), wire, buf);
                    let count = items.by_ref().count();
                    (!items.bad).then_some(())?;
                    *buf = items.buf;
                    count
                };
                if count == 0 {
                    continue;
                }
                let run = &start[..start.len() - buf.len()];
                match map {
                    Some(_) => Slot::Map(wire, run),
                    None => Slot::List(wire, run),
                }
            } else {
                let value = read_value(&kind, wire, buf)?;
                if !fd.supports_presence() && is_default(&fd, value)? {
                    continue;
                }
                Slot::One(value)
            };
            return Some(Some(Field { fd, kind, slot }));
        }
    }

    /// Continues after an unscanned run, at `rest` (what its reader left).
    pub(super) fn resume(&mut self, rest: &'a [u8]) {
        self.keys.rest = rest;
        self.unfinished = false;
    }

    /// Whether the string or bytes values of `field` (a map's values) are redacted; other kinds
    /// never are, so their names are not looked at (this runs for every field written).
    pub(super) fn secret(&self, field: &Field<'_>) -> bool {
        if !self.redact {
            return false;
        }
        let text = match (field.slot, &field.kind) {
            (Slot::Map(..), Kind::Message(entry)) => is_text(&entry.map_entry_value_field().kind()),
            (_, kind) => is_text(kind),
        };
        text && redact::is_secret_field(self.desc.full_name(), field.fd.name())
    }
}
