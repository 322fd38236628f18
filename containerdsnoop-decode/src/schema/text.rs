//! One-line protobuf text format: `version:"0.1.0" runtime_name:"containerd" nested {a:1}`.
//!
//! Follows the text format (`name:scalar`, `name {message}`, repeated fields repeated, map
//! entries as `name {key:K value:V}`, `Any` as `[type_url] {...}`) with two departures a tracer
//! needs: JSON carried in an `Any` is shown as compact JSON after the `[type_url]`, and
//! schema-less fields are written `number:value` with nested messages as `number:{...}`.
//! Output stops at [`RenderOptions::max_text_len`] bytes and then ends in `…`.

use std::fmt::Write as _;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, ReflectMessage as _, Value};

use crate::escape::{hex_preview, push_escaped, push_quoted, push_quoted_bytes};

use super::{
    RenderOptions,
    any::{self, AnyContent},
    decode::{Decoded, unknown_bytes},
    json::json_to_string,
    raw::{RawField, RawValue, parse_raw},
    redact,
    scalar::{Scalar, push_text, write_num},
};

/// Render a decoded message on one line.
pub fn to_text(decoded: &Decoded, opts: &RenderOptions) -> String {
    let mut t = Text {
        opts,
        s: String::new(),
        full: false,
        scratch: String::new(),
    };
    match decoded {
        Decoded::Message(m) => {
            if !t.message_body(m, 0, 0) {
                t.push("{}");
            }
        }
        Decoded::Raw { fields, .. } => {
            if fields.is_empty() {
                t.push("{}");
            } else {
                t.raw_fields(fields, 0);
            }
        }
        Decoded::Opaque { bytes, .. } => {
            t.push("hex:");
            t.push(&hex_preview(bytes, opts.max_bytes_preview));
        }
    }
    t.s
}

struct Text<'o> {
    opts: &'o RenderOptions,
    s: String,
    /// The length cap was reached; everything after is dropped.
    full: bool,
    /// One scalar's text before it is pushed (reused: no allocation per field).
    scratch: String,
}

impl Text<'_> {
    fn push(&mut self, piece: &str) {
        if self.full {
            return;
        }
        let room = self.opts.max_text_len.saturating_sub(self.s.len());
        if piece.len() <= room {
            self.s.push_str(piece);
            return;
        }
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        self.s.push_str(&piece[..end]);
        self.s.push('…');
        self.full = true;
    }

    fn sep(&mut self, first: &mut bool) {
        if !*first {
            self.push(" ");
        }
        *first = false;
    }

    /// The fields of `m` without braces; false when there were none.
    fn message_body(&mut self, m: &DynamicMessage, depth: usize, any_depth: usize) -> bool {
        if let Some((url, value)) = any::parts(m) {
            self.any_body(m.descriptor().parent_pool(), &url, &value, depth, any_depth);
            return true;
        }
        let desc = m.descriptor();
        let full_name = desc.full_name();
        let mut first = true;
        for (fd, value) in m.fields() {
            if self.full {
                return true;
            }
            let secret = self.opts.redact && redact::is_secret_field(full_name, fd.name());
            let kind = fd.kind();
            match value {
                Value::List(items) => {
                    for item in items {
                        self.sep(&mut first);
                        self.named(fd.name(), &kind, item, secret, depth, any_depth);
                    }
                }
                Value::Map(map) => {
                    let (key_kind, value_kind) = match &kind {
                        Kind::Message(entry) => (
                            entry.map_entry_key_field().kind(),
                            entry.map_entry_value_field().kind(),
                        ),
                        _ => continue,
                    };
                    let mut entries: Vec<_> = map.iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in entries {
                        self.sep(&mut first);
                        self.push(fd.name());
                        self.push(" {key:");
                        self.scalar(&key_kind, Some(Scalar::of_key(k)), false);
                        self.push(" ");
                        let secret = secret || (self.opts.redact && map_key_is_secret(k));
                        self.named("value", &value_kind, v, secret, depth, any_depth);
                        self.push("}");
                    }
                }
                v => {
                    self.sep(&mut first);
                    self.named(fd.name(), &kind, v, secret, depth, any_depth);
                }
            }
        }
        let unknown = unknown_bytes(m);
        if !unknown.is_empty() {
            self.sep(&mut first);
            match parse_raw(&unknown, self.opts.max_depth.saturating_sub(depth + 1)) {
                Ok(fields) => self.raw_fields(&fields, depth),
                Err(_) => {
                    self.push("unknown:");
                    self.push(&hex_preview(&unknown, self.opts.max_bytes_preview));
                }
            }
        }
        !first
    }

    fn named(
        &mut self,
        name: &str,
        kind: &Kind,
        value: &Value,
        secret: bool,
        depth: usize,
        any_depth: usize,
    ) {
        match value {
            Value::Message(m) => {
                self.push(name);
                self.push(" {");
                if depth + 1 >= self.opts.max_depth {
                    self.push("…");
                } else {
                    self.message_body(m, depth + 1, any_depth);
                }
                self.push("}");
            }
            v => {
                self.push(name);
                self.push(":");
                self.scalar(kind, Scalar::of_value(v), secret);
            }
        }
    }

    /// A scalar (None: a list, map or message, which the callers handle; shown as `?`).
    fn scalar(&mut self, kind: &Kind, value: Option<Scalar<'_>>, secret: bool) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match value {
            Some(v) => push_text(&mut buf, kind, v, secret, self.opts.max_bytes_preview),
            None => buf.push('?'),
        }
        self.push(&buf);
        self.scratch = buf;
    }

    fn any_body(
        &mut self,
        pool: &DescriptorPool,
        url: &str,
        value: &[u8],
        depth: usize,
        any_depth: usize,
    ) {
        let room = self.opts.max_depth.saturating_sub(depth + 1);
        let content = if any_depth >= self.opts.max_any_depth || room == 0 {
            AnyContent::Opaque
        } else {
            any::expand(pool, url, value, room)
        };
        let mut head = String::from("[");
        push_escaped(&mut head, url);
        head.push(']');
        match content {
            AnyContent::Message(m) => {
                self.push(&head);
                self.push(" {");
                self.message_body(&m, depth + 1, any_depth + 1);
                self.push("}");
            }
            AnyContent::Json(mut j) => {
                if self.opts.redact {
                    redact::redact_json(&mut j);
                }
                self.push(&head);
                self.push(" ");
                self.push(&json_to_string(&j));
            }
            AnyContent::Raw(fields) => {
                self.push(&head);
                self.push(" {");
                self.raw_fields(&fields, depth + 1);
                self.push("}");
            }
            AnyContent::Opaque => {
                let mut buf = String::from("type_url:");
                push_quoted(&mut buf, url);
                if !value.is_empty() {
                    buf.push_str(" value:");
                    push_quoted_bytes(&mut buf, value, self.opts.max_bytes_preview);
                }
                self.push(&buf);
            }
        }
    }

    fn raw_fields(&mut self, fields: &[RawField], depth: usize) {
        let mut first = true;
        for f in fields {
            if self.full {
                return;
            }
            self.sep(&mut first);
            let mut buf = String::new();
            write_num(&mut buf, &f.number);
            buf.push(':');
            match &f.value {
                RawValue::Varint(v) => write_num(&mut buf, v),
                RawValue::Fixed64(v) => {
                    let _ = write!(buf, "0x{v:016x}");
                }
                RawValue::Fixed32(v) => {
                    let _ = write!(buf, "0x{v:08x}");
                }
                RawValue::Text(s) => push_quoted(&mut buf, s),
                RawValue::Bytes(b) => push_quoted_bytes(&mut buf, b, self.opts.max_bytes_preview),
                RawValue::Message(inner) | RawValue::Group(inner) => {
                    buf.push('{');
                    self.push(&buf);
                    if depth + 1 >= self.opts.max_depth {
                        self.push("…");
                    } else {
                        self.raw_fields(inner, depth + 1);
                    }
                    self.push("}");
                    continue;
                }
            }
            self.push(&buf);
        }
    }
}

fn map_key_is_secret(key: &MapKey) -> bool {
    matches!(key, MapKey::String(k) if redact::is_secret_name(k))
}
