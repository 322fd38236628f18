//! `-o json`: JSON Lines, one object per row. The schema is an interface, documented in
//! docs/json.md; fields are added, never renamed.

use std::io::{self, Write};

use serde::ser::{Serialize, SerializeMap as _, Serializer};
use serde_json::Value;

use super::time::Clock;
use crate::{
    attribution::{Attribution, Container, RuntimeKind},
    output::rows::{BodyJson, Rendered, Row},
    output::sink::{Headers, Renderer, Sink},
    protocol::call::CallEventKind,
    schema,
};

pub struct JsonPrinter<W: Write> {
    out: W,
    clock: Clock,
    /// One row, serialized before it is written (reused: no allocation per row once warm).
    line: Vec<u8>,
}

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W, clock: Clock) -> Self {
        JsonPrinter {
            out,
            clock,
            line: Vec::new(),
        }
    }

    /// Prints one row whose body is already rendered (with its JSON value).
    pub fn print_row(
        &mut self,
        row: &Row,
        body: Rendered,
        headers: Option<&Headers>,
    ) -> io::Result<()> {
        self.line.clear();
        schema::write_json(&mut self.line, &row_json(row, &body, headers, &self.clock))?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

impl<W: Write> Sink for JsonPrinter<W> {
    fn wants_headers(&self) -> bool {
        true
    }

    fn row(&mut self, row: &Row, headers: Option<&Headers>, render: &Renderer) -> io::Result<()> {
        let body = render.body(row, true);
        self.print_row(row, body, headers)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One row's fields, written straight to the output (no `serde_json::Value` per row). They are
/// listed in the order below and written sorted by name, as every object of the documented
/// schema is (docs/json.md).
pub struct JsonRow<'a> {
    fields: Vec<(&'static str, Field<'a>)>,
}

/// A row field's value, borrowed from the row where it can be.
pub enum Field<'a> {
    Null,
    Bool(bool),
    U64(u64),
    Str(&'a str),
    String(String),
    Json(&'a Value),
    Body(&'a BodyJson),
    Inodes([u64; 2]),
    Headers(&'a Headers),
    /// `container`, `peer_container` (docs/json.md).
    Container(&'a Container),
}

impl<'a> JsonRow<'a> {
    /// Adds a field (each name once).
    pub fn field(&mut self, name: &'static str, value: Field<'a>) {
        self.fields.push((name, value));
    }
}

impl<T: Into<Field<'static>>> From<Option<T>> for Field<'static> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Field::Null, Into::into)
    }
}

impl From<u64> for Field<'static> {
    fn from(v: u64) -> Self {
        Field::U64(v)
    }
}

impl From<u32> for Field<'static> {
    fn from(v: u32) -> Self {
        Field::U64(u64::from(v))
    }
}

impl From<bool> for Field<'static> {
    fn from(v: bool) -> Self {
        Field::Bool(v)
    }
}

fn opt_str(v: Option<&str>) -> Field<'_> {
    v.map_or(Field::Null, Field::Str)
}

/// `container` and `peer_container`: an object per end, `null` for a host process or when
/// not known; absent when the ends were not asked about (`-r`). See docs/json.md.
fn containers<'a>(m: &mut JsonRow<'a>, row: &'a Row) {
    if !row.attributed {
        return;
    }
    let object = |c: &'a Attribution| c.as_deref().map_or(Field::Null, Field::Container);
    m.field("container", object(&row.container));
    m.field("peer_container", object(&row.peer_container));
}

pub fn row_json<'a>(
    row: &'a Row,
    body: &'a Rendered,
    headers: Option<&'a Headers>,
    clock: &Clock,
) -> JsonRow<'a> {
    let mut m = JsonRow {
        fields: Vec::with_capacity(24),
    };
    m.field("time", Field::String(clock.rfc3339(row.ts_ns)));
    m.field("ts_ns", row.ts_ns.into());
    m.field("type", Field::Str(row.kind.as_str()));
    m.field("comm", Field::Str(&row.comm));
    m.field("pid", row.pid.into());
    m.field("tid", row.tid.into());
    m.field("peer_pid", row.peer_pid.into());
    m.field("peer_comm", opt_str(row.peer_comm.as_deref()));
    containers(&mut m, row);
    m.field("stream", row.stream.into());
    m.field("method", opt_str(row.method.as_ref().map(|x| &*x.name)));
    m.field(
        "method_inferred",
        row.method.as_ref().is_some_and(|x| x.inferred).into(),
    );
    m.field("namespace", opt_str(row.namespace.as_deref()));
    if let Some(i) = row.index {
        m.field("index", i.into());
    }
    m.field(
        "protocol",
        opt_str(row.conn.protocol.map(crate::protocol::Protocol::name)),
    );
    m.field("connection", row.conn.id.into());
    m.field("path", Field::Str(&row.conn.path));
    m.field("sock_inodes", Field::Inodes(row.conn.inodes));
    m.field("sync", Field::Str(row.conn.sync.as_str()));
    m.field(
        "decoding",
        opt_str(row.conn.decoding.map(crate::protocol::Decoding::as_str)),
    );
    match &row.event {
        CallEventKind::End {
            status, latency_ns, ..
        } => {
            m.field("status_code", status.code.into());
            m.field("status_message", opt_str(status.message.as_deref()));
            if let Some(a) = &status.abnormal {
                m.field("abnormal", Field::Str(a));
            }
            m.field("latency_ns", (*latency_ns).into());
        }
        CallEventKind::Notice { text } => {
            m.field("notice", Field::Str(text));
        }
        _ => {
            m.field("message_type", opt_str(body.message_type.as_deref()));
            m.field("message", Field::Body(&body.json));
            m.field("message_text", Field::Str(&body.text));
        }
    }
    if let Some(h) = headers {
        m.field("headers", Field::Headers(h));
    }
    m
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Sorted by name, as serde_json's map (the schema's order); names are unique.
        let mut order: Vec<&(&'static str, Field<'_>)> = self.fields.iter().collect();
        order.sort_unstable_by_key(|(name, _)| *name);
        let mut map = s.serialize_map(Some(order.len()))?;
        for (name, value) in order {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Null => s.serialize_unit(),
            Field::Bool(b) => s.serialize_bool(*b),
            Field::U64(n) => s.serialize_u64(*n),
            Field::Str(v) => s.serialize_str(v),
            Field::String(v) => s.serialize_str(v),
            Field::Json(v) => v.serialize(s),
            Field::Body(v) => v.serialize(s),
            Field::Inodes(i) => i.serialize(s),
            Field::Headers(h) => h.serialize(s),
            Field::Container(c) => {
                // Sorted by name, as every object of the schema.
                let mut map = s.serialize_map(Some(7))?;
                map.serialize_entry("id", &c.id)?;
                map.serialize_entry("image", &c.image)?;
                map.serialize_entry("name", &c.name)?;
                map.serialize_entry("namespace", &c.namespace)?;
                map.serialize_entry("pod", &c.pod)?;
                map.serialize_entry("pod_namespace", &c.pod_namespace)?;
                map.serialize_entry("runtime", &c.runtime.map(RuntimeKind::as_str))?;
                map.end()
            }
        }
    }
}
