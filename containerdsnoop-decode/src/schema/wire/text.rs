//! The text writer: the table's one-line protobuf text, written as the walker reads the bytes,
//! byte for byte what [`to_text`](crate::schema::to_text) writes for the
//! [`decode`](crate::schema::decode)d message. Fields come in wire order, which the walker
//! requires to be the slow path's (by field number); only a map needs reordering (by key), and
//! a map whose order would show past the length cap gives up.

use crate::{
    escape::push_escaped,
    schema::{RenderOptions, scalar::Scalar, scalar::push_text},
};
use prost_reflect::{Kind, MessageDescriptor};

use super::walk::{AnyAt, Depth, Field, Fields, GiveUp, Slot, Walk, Writer};

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
    let mut text = Text {
        opts,
        out,
        full: false,
        entries: Vec::new(),
        scratch: String::new(),
    };
    let done = match (Walk { opts }).message(&mut text, desc, bytes, Depth::TOP) {
        Ok(true) => true,
        Ok(false) => {
            text.push("{}");
            true
        }
        Err(GiveUp) => false,
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

struct Text<'o, 'a> {
    opts: &'o RenderOptions,
    out: &'o mut String,
    /// `out` is past the cap: nothing more is written, but the bytes are still checked.
    full: bool,
    /// Entries of the maps being written, innermost last (a stack shared by nested maps).
    entries: Vec<Entry<'a>>,
    /// A map's text while its entries are put in key order.
    scratch: String,
}

impl<'a> Writer<'a> for &mut Text<'_, 'a> {
    /// Whether the message had fields to write (an empty top-level message is `{}`).
    type Ok = bool;
    type Error = GiveUp;
    const SCAN_RUNS: bool = false;

    fn gave_up() -> GiveUp {
        GiveUp
    }

    fn message(self, walk: &Walk<'_>, mut fields: Fields<'_, 'a>) -> Result<bool, GiveUp> {
        let at = fields.at();
        let mut first = true;
        while let Some(field) = fields.next().ok_or(GiveUp)? {
            let name = field.fd.name();
            let secret = fields.secret(&field);
            match field.slot {
                Slot::One(value) => {
                    self.sep(&mut first);
                    self.named(walk, name, &field.kind, value, secret, at)?;
                }
                Slot::List(..) => {
                    let mut items = field.items();
                    for value in items.by_ref() {
                        self.sep(&mut first);
                        self.named(walk, name, &field.kind, value, secret, at)?;
                    }
                    if items.bad {
                        return Err(GiveUp);
                    }
                    fields.resume(items.buf);
                }
                Slot::Map(..) => {
                    let rest = self.map_field(walk, &field, secret, &mut first, at)?;
                    fields.resume(rest);
                }
            }
        }
        Ok(!first)
    }

    /// `[type_url] {fields}`.
    fn any(self, walk: &Walk<'_>, any: AnyAt<'_, 'a>) -> Result<bool, GiveUp> {
        if self.full {
            // Nothing more is written; the slow path's rendering of the value cannot show.
            return Ok(true);
        }
        let inner = any.inner().ok_or(GiveUp)?;
        self.push("[");
        if !self.full {
            push_escaped(self.out, any.url);
            self.mark();
        }
        self.push("] {");
        walk.message(&mut *self, &inner, any.value, any.at)?;
        self.push("}");
        Ok(true)
    }
}

impl<'a> Text<'_, 'a> {
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

    /// `name:value` or `name {fields}`.
    fn named(
        &mut self,
        walk: &Walk<'_>,
        name: &str,
        kind: &Kind,
        value: Scalar<'a>,
        secret: bool,
        at: Depth,
    ) -> Result<(), GiveUp> {
        self.push(name);
        if let Scalar::Message(_) = value {
            self.push(" {");
            walk.nested(&mut *self, kind, value, at)?;
            self.push("}");
        } else {
            self.push(":");
            if !self.full {
                push_text(self.out, kind, value, secret, self.opts.max_bytes_preview);
                self.mark();
            }
        }
        Ok(())
    }

    /// Every entry of a map field, written `name {key:K value:V}` in key order, the last of
    /// equal keys kept. Returns what follows the run.
    fn map_field(
        &mut self,
        walk: &Walk<'_>,
        field: &Field<'a>,
        field_secret: bool,
        first: &mut bool,
        at: Depth,
    ) -> Result<&'a [u8], GiveUp> {
        let mut entries = field.entries().ok_or(GiveUp)?;
        let base = self.entries.len();
        // Cut before the map began: none of it is written, so its order cannot show.
        let unwritten = self.full;
        let mut map_start = None;
        while let Some((key, value)) = entries.next() {
            let sort_key = SortKey::of(key).ok_or(GiveUp)?;
            self.sep(first);
            let start = self.out.len();
            map_start.get_or_insert(start);
            self.push(field.fd.name());
            self.push(" {key:");
            if !self.full {
                push_text(
                    self.out,
                    &entries.key_kind,
                    key,
                    false,
                    self.opts.max_bytes_preview,
                );
                self.mark();
            }
            self.push(" ");
            let secret = walk.entry_secret(field_secret, &entries.value_kind, key);
            self.named(walk, "value", &entries.value_kind, value, secret, at)?;
            self.push("}");
            self.entries.push((sort_key, start, self.out.len()));
        }
        if entries.bad {
            return Err(GiveUp);
        }
        let sorted = if unwritten {
            Ok(())
        } else {
            map_start
                .ok_or(GiveUp)
                .and_then(|start| self.in_key_order(base, start))
        };
        self.entries.truncate(base);
        sorted.map(|()| entries.buf)
    }

    /// Rewrites the map text written since `start` (entries `base..`) in key order, keeping the
    /// last of equal keys, as the slow path's `HashMap` and sort do.
    fn in_key_order(&mut self, base: usize, start: usize) -> Result<(), GiveUp> {
        let Text {
            out,
            entries,
            scratch,
            full,
            ..
        } = self;
        let entries = &mut entries[base..];
        if entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Ok(());
        }
        if *full {
            // The written prefix is in wire order and cut; the slow path's may differ.
            return Err(GiveUp);
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
        Ok(())
    }
}
