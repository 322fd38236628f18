//! The JSON writer: a message's proto3 JSON serialized as the walker reads the bytes, the same
//! serde calls (so the same bytes through [`write_json`]) as [`json_message`] of the
//! [`decode`]d message. Two walks: [`wire_json_ok`] drives [`Check`] (nothing is written) and
//! [`WireJson`] drives [`Json`], in the slow path's key order: a message's fields sorted by
//! JSON name (prost-reflect's `json_name`), map entries sorted by their key as a string, list
//! items in wire order.
//!
//! Besides the walker's own rules, JSON being another mapping, both give up on:
//!
//! - the well-known types with a special JSON form other than those of `wkt.rs`, and any of
//!   them as the value of an `Any` (the slow path puts it under `"value"`);
//! - an `Any` holding an `Any` (the slow path merges the inner `@type` over the outer one), or
//!   holding a message with a field whose JSON name sorts before `@type`;
//! - two fields of one message with the same JSON name (the slow path keeps one);
//! - the message itself at [`RenderOptions::max_depth`] 0 (the slow path writes `…`).
//!
//! [`write_json`]: crate::schema::write_json
//! [`json_message`]: crate::schema::json_message
//! [`decode`]: crate::schema::decode

use std::borrow::Cow;

use prost_reflect::{Kind, MessageDescriptor};
use serde::{
    Serialize, Serializer,
    ser::{SerializeMap as _, SerializeSeq as _},
};

use super::{
    walk::{AnyAt, Depth, Field, Fields, GiveUp, Slot, Walk, Writer},
    wkt,
};
use crate::schema::{
    RenderOptions,
    scalar::{Scalar, ScalarJson},
};

/// The key an `Any` adds before its value's fields.
const TYPE_KEY: &str = "@type";

/// True when [`wire_json`] of these arguments serializes exactly what
/// `json_message(&decode(Some(desc), bytes), opts)` does, and that decode uses the schema.
/// False: take that slow path instead.
pub fn wire_json_ok(desc: &MessageDescriptor, bytes: &[u8], opts: &RenderOptions) -> bool {
    // At max_depth 0 the slow path writes `…` for the whole message.
    opts.max_depth > 0
        && (Walk { opts })
            .message(Check { in_any: false }, desc, bytes, Depth::TOP)
            .is_ok()
}

/// A message's JSON, serialized from its wire bytes. Only for arguments [`wire_json_ok`]
/// accepted: on others serializing fails with an error (it never panics).
pub struct WireJson<'a> {
    desc: &'a MessageDescriptor,
    bytes: &'a [u8],
    opts: &'a RenderOptions,
}

/// [`WireJson`] of `bytes` as a `desc` message; serialize it with
/// [`write_json`](crate::schema::write_json).
pub fn wire_json<'a>(
    desc: &'a MessageDescriptor,
    bytes: &'a [u8],
    opts: &'a RenderOptions,
) -> WireJson<'a> {
    WireJson { desc, bytes, opts }
}

impl Serialize for WireJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (Walk { opts: self.opts }).message(Json(s), self.desc, self.bytes, Depth::TOP)
    }
}

/// A plain message's fields sorted by JSON name, checked for the JSON-only give-ups. `in_any`:
/// the message is the value of an `Any`, whose `@type` key its fields' keys must sort after.
fn sorted_fields<'a>(fields: &mut Fields<'_, 'a>, in_any: bool) -> Option<Vec<Field<'a>>> {
    let mut out = Vec::new();
    while let Some(field) = fields.next()? {
        out.push(field);
    }
    out.sort_by(|a, b| a.fd.json_name().cmp(b.fd.json_name()));
    if out
        .windows(2)
        .any(|w| w[0].fd.json_name() == w[1].fd.json_name())
    {
        return None;
    }
    if in_any && out.first().is_some_and(|f| f.fd.json_name() <= TYPE_KEY) {
        return None;
    }
    Some(out)
}

/// One map entry to write: its key as a string, its value, whether the value is redacted.
type Entry<'a> = (Cow<'a, str>, Scalar<'a>, bool);

/// A map's entries in the slow path's order: by key string, the last of equal keys kept, each
/// with its redaction.
fn sorted_entries<'a>(
    walk: &Walk<'_>,
    field: &Field<'a>,
    field_secret: bool,
) -> Option<(Kind, Vec<Entry<'a>>)> {
    let mut entries = field.entries()?;
    let mut out = Vec::new();
    while let Some((key, value)) = entries.next() {
        let secret = walk.entry_secret(field_secret, &entries.value_kind, key);
        out.push((key.key_string()?, value, secret));
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
    Some((entries.value_kind, out))
}

// ---- the check ----

/// Writes nothing: whether [`Json`] will write exactly the slow path's JSON.
struct Check {
    in_any: bool,
}

impl<'a> Writer<'a> for Check {
    type Ok = ();
    type Error = GiveUp;

    fn gave_up() -> GiveUp {
        GiveUp
    }

    fn message(self, walk: &Walk<'_>, mut fields: Fields<'_, 'a>) -> Result<(), GiveUp> {
        let full_name = fields.desc().full_name();
        if wkt::is_special(full_name) {
            // Inside an `Any` a special form goes under "value": left to the slow path.
            return match self.in_any {
                true => Err(GiveUp),
                false => wkt::WellKnown::read(fields.desc(), fields.bytes())
                    .map(drop)
                    .ok_or(GiveUp),
            };
        }
        let at = fields.at();
        let value = |kind: &Kind, value: Scalar<'a>| match value {
            Scalar::Message(_) => walk.nested(Check { in_any: false }, kind, value, at),
            _ => Ok(()),
        };
        for field in sorted_fields(&mut fields, self.in_any).ok_or(GiveUp)? {
            match field.slot {
                Slot::One(v) => value(&field.kind, v)?,
                Slot::List(..) => {
                    let mut items = field.items();
                    for v in items.by_ref() {
                        value(&field.kind, v)?;
                    }
                    if items.bad {
                        return Err(GiveUp);
                    }
                }
                Slot::Map(..) => {
                    // Order does not matter here; every entry (even one a later key replaces)
                    // must decode for the slow path's decode to succeed.
                    let mut entries = field.entries().ok_or(GiveUp)?;
                    while let Some((k, v)) = entries.next() {
                        k.key_string().ok_or(GiveUp)?;
                        value(&entries.value_kind, v)?;
                    }
                    if entries.bad {
                        return Err(GiveUp);
                    }
                }
            }
        }
        Ok(())
    }

    fn any(self, walk: &Walk<'_>, any: AnyAt<'_, 'a>) -> Result<(), GiveUp> {
        if self.in_any {
            return Err(GiveUp);
        }
        let inner = any.inner().ok_or(GiveUp)?;
        walk.message(Check { in_any: true }, &inner, any.value, any.at)
    }
}

// ---- the writing ----

/// Serializes with `S`; an error where [`Check`] would have given up.
struct Json<S>(S);

fn gave_up<E: serde::ser::Error>() -> E {
    E::custom("message bytes the JSON fast path does not render (wire_json_ok said no)")
}

impl<'a, S: Serializer> Writer<'a> for Json<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn gave_up() -> S::Error {
        gave_up()
    }

    fn message(self, walk: &Walk<'_>, fields: Fields<'_, 'a>) -> Result<S::Ok, S::Error> {
        let full_name = fields.desc().full_name();
        if wkt::is_special(full_name) {
            return wkt::WellKnown::read(fields.desc(), fields.bytes())
                .ok_or_else(gave_up::<S::Error>)?
                .serialize(self.0);
        }
        let mut map = self.0.serialize_map(None)?;
        write_fields::<S>(&mut map, walk, fields)?;
        map.end()
    }

    /// `{"@type": url, fields of the value...}`.
    fn any(self, walk: &Walk<'_>, any: AnyAt<'_, 'a>) -> Result<S::Ok, S::Error> {
        let inner = any.inner().ok_or_else(gave_up::<S::Error>)?;
        let mut map = self.0.serialize_map(None)?;
        map.serialize_entry(TYPE_KEY, any.url)?;
        write_fields::<S>(&mut map, walk, walk.fields(&inner, any.value, any.at))?;
        map.end()
    }
}

/// The entries of a plain message's object.
fn write_fields<S: Serializer>(
    map: &mut S::SerializeMap,
    walk: &Walk<'_>,
    mut fields: Fields<'_, '_>,
) -> Result<(), S::Error> {
    let at = fields.at();
    let sorted = sorted_fields(&mut fields, false).ok_or_else(gave_up::<S::Error>)?;
    for field in &sorted {
        let name = field.fd.json_name();
        let secret = fields.secret(field);
        match field.slot {
            Slot::One(value) => map.serialize_entry(
                name,
                &ValueJson {
                    walk,
                    kind: &field.kind,
                    value,
                    secret,
                    at,
                },
            )?,
            Slot::List(..) => map.serialize_entry(
                name,
                &ListJson {
                    walk,
                    field,
                    secret,
                    at,
                },
            )?,
            Slot::Map(..) => map.serialize_entry(
                name,
                &MapJson {
                    walk,
                    field,
                    secret,
                    at,
                },
            )?,
        }
    }
    Ok(())
}

/// One value of a field (or list item, or map value) of a message at `at`.
struct ValueJson<'r, 'a> {
    walk: &'r Walk<'r>,
    kind: &'r Kind,
    value: Scalar<'a>,
    secret: bool,
    at: Depth,
}

impl Serialize for ValueJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Scalar::Message(_) => self.walk.nested(Json(s), self.kind, self.value, self.at),
            value => ScalarJson {
                kind: self.kind,
                value,
                secret: self.secret,
            }
            .serialize(s),
        }
    }
}

struct ListJson<'r, 'a> {
    walk: &'r Walk<'r>,
    field: &'r Field<'a>,
    secret: bool,
    at: Depth,
}

impl Serialize for ListJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut items = self.field.items();
        let mut seq = s.serialize_seq(None)?;
        for value in items.by_ref() {
            seq.serialize_element(&ValueJson {
                walk: self.walk,
                kind: &self.field.kind,
                value,
                secret: self.secret,
                at: self.at,
            })?;
        }
        if items.bad {
            return Err(gave_up());
        }
        seq.end()
    }
}

struct MapJson<'r, 'a> {
    walk: &'r Walk<'r>,
    field: &'r Field<'a>,
    secret: bool,
    at: Depth,
}

impl Serialize for MapJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (value_kind, entries) =
            sorted_entries(self.walk, self.field, self.secret).ok_or_else(gave_up::<S::Error>)?;
        let mut map = s.serialize_map(None)?;
        for (key, value, secret) in &entries {
            map.serialize_entry(
                &**key,
                &ValueJson {
                    walk: self.walk,
                    kind: &value_kind,
                    value: *value,
                    secret: *secret,
                    at: self.at,
                },
            )?;
        }
        map.end()
    }
}
