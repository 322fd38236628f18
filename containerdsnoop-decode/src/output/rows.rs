//! Rows: what one printed line says. Turns a connection's [`CallEvent`]s into [`Row`]s, decoding
//! message bodies with the schema (the request/response type comes from the method's
//! descriptor; unknown methods decode schema-less, never blank).

use std::{collections::HashMap, sync::Arc};

use base64::Engine as _;
use prost_reflect::MessageDescriptor;
use serde_json::{Value, json};

use crate::{
    attribution::Attribution,
    escape::escape_str,
    protocol::call::{Body, CallEvent, CallEventKind, Method, Role, Status},
    protocol::{Protocol, grpc},
    schema::{self, RenderOptions, Schema},
    stream::conn::ConnInfo,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKind {
    Req,
    Resp,
    /// The end of a call: its status and latency.
    End,
    /// A connection-level notice (GOAWAY, lost bytes, desynchronisation).
    Notice,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Req => "REQ",
            RowKind::Resp => "RESP",
            RowKind::End => "END",
            RowKind::Notice => "NOTE",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub ts_ns: u64,
    pub kind: RowKind,
    /// The sender.
    pub comm: String,
    pub pid: u32,
    pub tid: u32,
    pub peer_pid: u32,
    pub peer_comm: Option<String>,
    pub stream: u64,
    pub method: Option<Method>,
    pub namespace: Option<Arc<str>>,
    /// Message index within its call and role (streaming calls).
    pub index: Option<u64>,
    pub conn: Arc<ConnInfo>,
    pub event: CallEventKind,
    /// The sender's container and the peer's (None: a host process, or not known).
    pub container: Attribution,
    pub peer_container: Attribution,
    /// Whether the ends were asked about at all (the live capture; not `-r`, whose processes
    /// are not on this machine to ask about).
    pub attributed: bool,
}

impl Row {
    pub fn method_name(&self) -> Option<&str> {
        self.method.as_ref().map(|m| &*m.name)
    }
}

/// A call's request headers, name and value.
type HeaderList = Vec<(String, Option<String>)>;

/// Builds rows from connection events.
#[derive(Default)]
pub struct RowBuilder {
    /// Request headers of calls whose first request message has not been shown yet (only when
    /// an output shows them: JSON's `headers` field).
    starts: HashMap<(u64, u64), HeaderList>,
    /// Bytes of header names and values in `starts`.
    start_bytes: usize,
    keep_headers: bool,
}

/// Most calls whose request headers are remembered for the JSON `headers` field.
const MAX_REMEMBERED_STARTS: usize = 4096;
/// Most bytes of remembered request headers: each list may be up to the HPACK header-list
/// limit, and thousands of calls can be open at once.
pub const MAX_REMEMBERED_HEADER_BYTES: usize = 16 << 20;

fn header_bytes(h: &[(String, Option<String>)]) -> usize {
    h.iter()
        .map(|(n, v)| n.len() + v.as_ref().map_or(0, String::len))
        .sum()
}

impl RowBuilder {
    /// `keep_headers`: remember request headers for the first request row (JSON shows them;
    /// the table does not, so it holds none).
    pub fn new(keep_headers: bool) -> Self {
        RowBuilder {
            keep_headers,
            ..Default::default()
        }
    }

    /// Returns the row for `event`, or None for events that are not rows (call starts).
    pub fn row(&mut self, conn: Arc<ConnInfo>, event: CallEvent) -> Option<Row> {
        if let CallEventKind::Start { metadata, .. } = event.kind {
            if self.keep_headers {
                let size = header_bytes(&metadata);
                if self.starts.len() >= MAX_REMEMBERED_STARTS
                    || self.start_bytes + size > MAX_REMEMBERED_HEADER_BYTES
                {
                    // Calls that never sent a message lose their headers, not the bound.
                    self.starts.clear();
                    self.start_bytes = 0;
                }
                self.start_bytes += size;
                let key = (conn.id, event.stream);
                if let Some(old) = self.starts.insert(key, metadata) {
                    self.start_bytes -= header_bytes(&old);
                }
            }
            return None;
        }
        let sender = conn.end(event.side).cloned().unwrap_or_default();
        let peer_comm = conn.end(event.side.other()).map(|e| e.comm.clone());
        let (kind, method, namespace, index) = match &event.kind {
            // Handled above.
            CallEventKind::Start { .. } => return None,
            CallEventKind::Message {
                role,
                index,
                method,
                namespace,
                ..
            } => (
                if *role == Role::Request {
                    RowKind::Req
                } else {
                    RowKind::Resp
                },
                method.clone(),
                namespace.clone(),
                Some(*index),
            ),
            CallEventKind::End {
                method, namespace, ..
            } => {
                if let Some(old) = self.starts.remove(&(conn.id, event.stream)) {
                    self.start_bytes -= header_bytes(&old);
                }
                (RowKind::End, method.clone(), namespace.clone(), None)
            }
            CallEventKind::Notice { .. } => (RowKind::Notice, None, None, None),
        };
        Some(Row {
            ts_ns: event.ts_ns,
            kind,
            comm: sender.comm,
            pid: sender.pid,
            tid: sender.tid,
            peer_pid: conn.peer_pid(event.side),
            peer_comm,
            stream: event.stream,
            method,
            namespace,
            index,
            conn,
            event: event.kind,
            container: None,
            peer_container: None,
            attributed: false,
        })
    }

    /// Request headers of the call, for its first request row (JSON).
    pub fn take_headers(&mut self, row: &Row) -> Option<Vec<(String, Option<String>)>> {
        if row.kind == RowKind::Req && row.index == Some(0) {
            let headers = self.starts.remove(&(row.conn.id, row.stream));
            if let Some(h) = &headers {
                self.start_bytes -= header_bytes(h);
            }
            headers
        } else {
            None
        }
    }
}

/// A decoded message body, ready for the table and JSON.
pub struct Rendered {
    pub message_type: Option<String>,
    pub text: String,
    pub json: BodyJson,
}

/// The JSON `message` of a row: a value, or a decoded protobuf message serialized straight to
/// the output when the row is written (no `serde_json::Value` tree for it).
pub enum BodyJson {
    Value(Value),
    Message(schema::Decoded, RenderOptions),
    /// A message the JSON fast path accepted ([`schema::wire_json_ok`]): its bytes, serialized
    /// by [`schema::wire_json`] without decoding them into a `DynamicMessage`.
    Wire(MessageDescriptor, Vec<u8>, RenderOptions),
}

impl BodyJson {
    const NULL: BodyJson = BodyJson::Value(Value::Null);
}

impl serde::Serialize for BodyJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BodyJson::Value(v) => v.serialize(s),
            BodyJson::Message(decoded, opts) => schema::json_message(decoded, opts).serialize(s),
            BodyJson::Wire(desc, bytes, opts) => schema::wire_json(desc, bytes, opts).serialize(s),
        }
    }
}

/// Decodes and renders a row's body (or status, for END rows).
pub fn render_body(row: &Row, schema: &Schema, opts: &RenderOptions, want_json: bool) -> Rendered {
    match &row.event {
        CallEventKind::Message { role, body, .. } => {
            render_message(row, *role, body, schema, opts, want_json)
        }
        CallEventKind::End {
            status, latency_ns, ..
        } => Rendered {
            message_type: None,
            text: match row.conn.protocol {
                Some(crate::protocol::Protocol::Http1) => http_end_text(status, *latency_ns),
                _ => end_text(status, *latency_ns),
            },
            json: BodyJson::NULL,
        },
        CallEventKind::Notice { text } => Rendered {
            message_type: None,
            text: escape_str(text),
            json: BodyJson::Value(json!(text)),
        },
        CallEventKind::Start { .. } => Rendered {
            message_type: None,
            text: String::new(),
            json: BodyJson::NULL,
        },
    }
}

fn render_message(
    row: &Row,
    role: Role,
    body: &Body,
    schema: &Schema,
    opts: &RenderOptions,
    want_json: bool,
) -> Rendered {
    match body {
        Body::Protobuf(bytes) => {
            let desc = body_descriptor(row, role, schema);
            // The fast paths: text (and JSON, when wanted) straight from the bytes, taken only
            // when the schema decode would succeed, so the type is the descriptor's.
            let mut text = String::new();
            if let Some(desc) = &desc
                && (!want_json || schema::wire_json_ok(desc, bytes, opts))
                && schema::wire_text(desc, bytes, opts, &mut text)
            {
                let json = if want_json {
                    BodyJson::Wire(desc.clone(), bytes.clone(), opts.clone())
                } else {
                    BodyJson::NULL
                };
                return Rendered {
                    message_type: Some(desc.full_name().to_string()),
                    text,
                    json,
                };
            }
            let decoded = schema::decode(desc.as_ref(), bytes);
            let message_type = decoded.descriptor().map(|d| d.full_name().to_string());
            let text = schema::to_text(&decoded, opts);
            let json = if want_json {
                BodyJson::Message(decoded, opts.clone())
            } else {
                BodyJson::NULL
            };
            Rendered {
                message_type,
                text,
                json,
            }
        }
        Body::Text { content_type, text } => {
            let json = if want_json {
                BodyJson::Value(serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!(text)))
            } else {
                BodyJson::NULL
            };
            Rendered {
                message_type: content_type.clone(),
                text: escape_str(text),
                json,
            }
        }
        Body::Raw(bytes) => Rendered {
            message_type: None,
            text: raw_preview(bytes),
            json: if want_json {
                BodyJson::Value(
                    json!({ "@base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
                )
            } else {
                BodyJson::NULL
            },
        },
        Body::Unavailable { reason, len } => Rendered {
            message_type: None,
            text: format!("<unavailable: {} ({} bytes)>", escape_str(reason), len),
            json: BodyJson::Value(json!({ "@unavailable": reason, "@len": len })),
        },
    }
}

/// The message type of a row's protobuf body, from its method (gRPC path or ttrpc service).
pub(crate) fn body_descriptor(row: &Row, role: Role, schema: &Schema) -> Option<MessageDescriptor> {
    let request = role == Role::Request;
    row.method.as_ref().and_then(|m| match row.conn.protocol {
        Some(Protocol::Ttrpc) => {
            split_ttrpc(&m.name).and_then(|(s, n)| schema.service_message_type(s, n, request))
        }
        _ => schema.message_type(&m.name, request),
    })
}

/// Bytes of an undecoded body shown in MESSAGE; the JSON carries all of it (base64).
pub const RAW_PREVIEW_BYTES: usize = 256;

/// An escaped preview of raw bytes: the first [`RAW_PREVIEW_BYTES`], then the total length.
fn raw_preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(RAW_PREVIEW_BYTES)];
    let mut text = crate::escape::escape_bytes(shown);
    if shown.len() < bytes.len() {
        text.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    text
}

/// `/containerd.task.v2.Task/Create` -> (`containerd.task.v2.Task`, `Create`).
fn split_ttrpc(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix('/')?.split_once('/')
}

/// The MESSAGE of an END row: `OK`, `NotFound(5): "no such container"`, latency.
pub fn end_text(status: &Status, latency_ns: Option<u64>) -> String {
    let mut s = match status.code {
        Some(code) => format!("{}({code})", grpc::code::name(code)),
        None => "status=?".to_string(),
    };
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        s.push_str(&format!(" \"{}\"", escape_str(m)));
    }
    if let Some(a) = &status.abnormal {
        s.push_str(&format!(" [{}]", escape_str(a)));
    }
    if let Some(l) = latency_ns {
        s.push_str(&format!(" latency={}", format_latency(l)));
    }
    s
}

/// The MESSAGE of an HTTP END row: `200 OK latency=1.2ms`.
pub fn http_end_text(status: &Status, latency_ns: Option<u64>) -> String {
    let mut s = match status.code {
        Some(code) => code.to_string(),
        None => "status=?".to_string(),
    };
    if let Some(reason) = status.message.as_deref().filter(|m| !m.is_empty()) {
        s.push(' ');
        s.push_str(&escape_str(reason));
    }
    if let Some(a) = &status.abnormal {
        s.push_str(&format!(" [{}]", escape_str(a)));
    }
    if let Some(l) = latency_ns {
        s.push_str(&format!(" latency={}", format_latency(l)));
    }
    s
}

pub fn format_latency(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
    }
}
