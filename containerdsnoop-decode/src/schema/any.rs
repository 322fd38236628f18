//! `google.protobuf.Any` expansion, with containerd's type URL conventions.
//!
//! containerd's `typeurl` names protobuf types by their bare full name
//! (`containerd.events.TaskExit`, no `type.googleapis.com/` prefix) and registers Go structs
//! that it marshals as JSON under a path (`types.containerd.io/opencontainers/runtime-spec/1/Spec`
//! for the OCI spec, CRI's sandbox and container metadata, ...). So: the part after the last `/`
//! is looked up in the pool; a value that is a JSON document is shown as JSON whatever its URL;
//! anything else falls back to schema-less decoding.

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage as _, Value};

use super::raw::{RawField, parse_raw};

pub(crate) const ANY: &str = "google.protobuf.Any";

/// What an `Any` holds, as far as we can tell.
pub(crate) enum AnyContent {
    Message(DynamicMessage),
    Json(serde_json::Value),
    Raw(Vec<RawField>),
    /// Not decodable at all (or depth exhausted): show type URL and bytes.
    Opaque,
}

/// `(type_url, value)` of a message that is an `Any`.
pub(crate) fn parts(msg: &DynamicMessage) -> Option<(String, prost_reflect::bytes::Bytes)> {
    if msg.descriptor().full_name() != ANY {
        return None;
    }
    let url = match msg.get_field_by_number(1)?.as_ref() {
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let value = match msg.get_field_by_number(2)?.as_ref() {
        Value::Bytes(b) => b.clone(),
        _ => return None,
    };
    Some((url, value))
}

/// The message name a type URL refers to.
pub(crate) fn type_name(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(_, name)| name)
}

pub(crate) fn expand(
    pool: &DescriptorPool,
    url: &str,
    value: &[u8],
    raw_depth: usize,
) -> AnyContent {
    if let Some(json) = as_json(value) {
        return AnyContent::Json(json);
    }
    if let Some(desc) = pool.get_message_by_name(type_name(url))
        && let Ok(msg) = DynamicMessage::decode(desc, value)
    {
        return AnyContent::Message(msg);
    }
    match parse_raw(value, raw_depth) {
        Ok(fields) if !fields.is_empty() => AnyContent::Raw(fields),
        _ => AnyContent::Opaque,
    }
}

/// A JSON object or array. Checked before protobuf because a JSON document never parses as the
/// message it is labelled with, and the check is one byte in the common case.
pub(crate) fn as_json(value: &[u8]) -> Option<serde_json::Value> {
    let first = value.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    // serde_json stops at 128 levels of nesting, so hostile JSON cannot exhaust the stack.
    serde_json::from_slice(value).ok()
}
