//! The fast paths: text and JSON written straight from a message's wire bytes and its
//! descriptor, byte for byte what the `DynamicMessage` path ([`to_text`], [`json_message`] of the
//! [`decode`]d message) writes, without building a `DynamicMessage`.
//!
//! Hand-written because prost-reflect decodes only into a `DynamicMessage` (owned values, a
//! `BTreeMap` per message), which the table renders once and drops: building and dropping them
//! was about 43% of `-r`'s CPU in the profile of issue 16. Here the bytes are walked once per
//! output, each value written as it is read.
//!
//! Shaped as a searcher and its sinks: one walker (`walk.rs`, over the readers of `read.rs`)
//! reads the fields and applies the rules below, the depth limits, redaction and `Any`
//! resolution, and drives a `Writer` per format: `text.rs` ([`wire_text`]) and `json.rs`
//! ([`wire_json_ok`], [`WireJson`], with the well-known types of `wkt.rs`). The scalar
//! mappings are `schema/scalar.rs`, shared with the `DynamicMessage` path.
//!
//! The contract: a writer accepts only when the schema decode would succeed and its output is
//! exactly the slow path's. The walker gives up (the caller takes the slow path) on anything
//! whose rendering depends on `DynamicMessage`'s bookkeeping rather than on the bytes in order:
//!
//! - any decode error (bad key, varint or length, wrong wire type, string not UTF-8): the slow
//!   path then renders schema-less;
//! - fields out of field-number order, a non-repeated field twice (the message sorts fields by
//!   number, keeps the last scalar and merges messages), a repeated field in separate runs,
//!   two members of one oneof (the last clears the first);
//! - unknown fields, extensions and groups (the slow path re-encodes and re-reads them);
//! - an `Any` that holds JSON, names a type not in the pool or one whose value itself gives up,
//!   or is past [`RenderOptions::max_any_depth`](crate::schema::RenderOptions::max_any_depth);
//! - map entries carrying other fields or a key or value twice;
//! - nesting at [`RenderOptions::max_depth`](crate::schema::RenderOptions::max_depth) (the slow
//!   path writes `…` without reading on) or beyond the walker's `DEPTH_GUARD` (prost's
//!   recursion limit must stay out of reach).
//!
//! Each writer adds its own (text: a map whose entries need sorting when the output reaches its
//! cap inside the map; JSON: see `json.rs`).
//!
//! [`to_text`]: crate::schema::to_text
//! [`json_message`]: crate::schema::json_message
//! [`decode`]: crate::schema::decode

mod json;
mod read;
mod text;
mod walk;
mod wkt;

pub use json::{WireJson, wire_json, wire_json_ok};
pub use text::wire_text;
