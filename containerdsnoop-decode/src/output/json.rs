//! `-o json`: JSON Lines, one object per row. The schema is an interface, documented in
//! docs/json.md; fields are added, never renamed.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::time::Clock;
use crate::{
    output::rows::{Rendered, Row},
    output::sink::{Headers, Renderer, Sink},
    protocol::call::CallEventKind,
    schema,
};

pub struct JsonPrinter<W: Write> {
    out: W,
    clock: Clock,
}

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W, clock: Clock) -> Self {
        JsonPrinter { out, clock }
    }

    /// Prints one row whose body is already rendered (with its JSON value).
    pub fn print_row(
        &mut self,
        row: &Row,
        body: Rendered,
        headers: Option<&Headers>,
    ) -> io::Result<()> {
        let v = row_json(row, body, headers, &self.clock);
        schema::write_json(&mut self.out, &v)?;
        self.out.write_all(b"\n")
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

/// `container` and `peer_container`: an object per end, `null` for a host process or when
/// not known; absent when the ends were not asked about (`-r`). See docs/json.md.
fn insert_containers(m: &mut Map<String, Value>, row: &Row) {
    if !row.attributed {
        return;
    }
    let object =
        |c: &crate::container::Attribution| c.as_ref().map_or(Value::Null, |c| c.to_json());
    m.insert("container".into(), object(&row.container));
    m.insert("peer_container".into(), object(&row.peer_container));
}

pub fn row_json(row: &Row, body: Rendered, headers: Option<&Headers>, clock: &Clock) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), json!(clock.rfc3339(row.ts_ns)));
    m.insert("ts_ns".into(), json!(row.ts_ns));
    m.insert("type".into(), json!(row.kind.as_str()));
    m.insert("comm".into(), json!(row.comm));
    m.insert("pid".into(), json!(row.pid));
    m.insert("tid".into(), json!(row.tid));
    m.insert("peer_pid".into(), json!(row.peer_pid));
    m.insert("peer_comm".into(), json!(row.peer_comm));
    insert_containers(&mut m, row);
    m.insert("stream".into(), json!(row.stream));
    m.insert(
        "method".into(),
        json!(row.method.as_ref().map(|x| x.name.to_string())),
    );
    m.insert(
        "method_inferred".into(),
        json!(row.method.as_ref().is_some_and(|x| x.inferred)),
    );
    m.insert("namespace".into(), json!(row.namespace.as_deref()));
    if let Some(i) = row.index {
        m.insert("index".into(), json!(i));
    }
    m.insert(
        "protocol".into(),
        json!(row.conn.protocol.map(crate::protocol::Protocol::name)),
    );
    m.insert("connection".into(), json!(row.conn.id));
    m.insert("path".into(), json!(row.conn.path));
    m.insert("sock_inodes".into(), json!(row.conn.inodes));
    m.insert("sync".into(), json!(row.conn.sync.as_str()));
    m.insert(
        "decoding".into(),
        json!(row.conn.decoding.map(crate::protocol::Decoding::as_str)),
    );
    match &row.event {
        CallEventKind::End {
            status, latency_ns, ..
        } => {
            m.insert("status_code".into(), json!(status.code));
            m.insert("status_message".into(), json!(status.message));
            if let Some(a) = &status.abnormal {
                m.insert("abnormal".into(), json!(a));
            }
            m.insert("latency_ns".into(), json!(latency_ns));
        }
        CallEventKind::Notice { text } => {
            m.insert("notice".into(), json!(text));
        }
        _ => {
            m.insert("message_type".into(), json!(body.message_type));
            m.insert("message".into(), body.json);
            m.insert("message_text".into(), json!(body.text));
        }
    }
    if let Some(h) = headers {
        let list: Vec<Value> = h.iter().map(|(k, v)| json!([k, v])).collect();
        m.insert("headers".into(), Value::Array(list));
    }
    Value::Object(m)
}
