//! Shared by the wire walker's differential tests (`wire_text`, `wire_json`): the recorded
//! traffic's message bodies, generated messages of every type in the pool, their mutations,
//! hand-written wire bytes, and a test schema with what the embedded protos do not use.

use std::{cell::RefCell, io, path::PathBuf, rc::Rc};

use prost::{
    Message as _,
    encoding::{WireType, decode_key, decode_varint},
};
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, Value};

use crate::schema::{RenderOptions, Schema, any};
use crate::{
    output::{
        rows::{Row, body_descriptor},
        sink::{Headers, Renderer, Sink},
    },
    pipeline::{Pipeline, Plan},
    protocol::call::{Body, CallEventKind, ConnEnd},
    record::{Chunk, chunks_from_raw_jsonl},
};

pub(super) fn schema() -> Schema {
    Schema::embedded().expect("embedded descriptor set loads")
}

pub(super) fn message(name: &str) -> MessageDescriptor {
    schema()
        .message(name)
        .unwrap_or_else(|| panic!("{name} is in the pool"))
}

/// The option sets every input is rendered with: the default, no redaction, tight caps.
pub(super) fn option_sets() -> Vec<RenderOptions> {
    let d = RenderOptions::default();
    vec![
        d.clone(),
        RenderOptions {
            redact: false,
            ..d.clone()
        },
        RenderOptions {
            max_text_len: 37,
            max_bytes_preview: 5,
            ..d.clone()
        },
        RenderOptions {
            max_depth: 3,
            max_any_depth: 1,
            max_text_len: 0,
            ..d.clone()
        },
    ]
}

// ---- recorded traffic ----

/// A protobuf body and the type `render_body` would decode it as.
pub(super) type TypedBody = (Option<MessageDescriptor>, Vec<u8>);

/// Keeps each protobuf body a row carries.
pub(super) struct Bodies {
    pub(super) schema: Schema,
    pub(super) found: Rc<RefCell<Vec<TypedBody>>>,
}

impl Sink for Bodies {
    fn row(&mut self, row: &Row, _: Option<&Headers>, _: &Renderer) -> io::Result<()> {
        if let CallEventKind::Message {
            role,
            body: Body::Protobuf(bytes),
            ..
        } = &row.event
        {
            let desc = body_descriptor(row, *role, &self.schema);
            self.found.borrow_mut().push((desc, bytes.to_vec()));
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A `.rec` recording (`> LEN` client write, `< LEN` server write, bytes, newline) as records.
pub(super) fn rec_chunks(path: &str, client: (&str, u32), server: (&str, u32)) -> Vec<Chunk> {
    let rec = std::fs::read(fixtures().join(path)).expect("fixture");
    let mut writes = Vec::new();
    let mut rest = &rec[..];
    while let Some(nl) = rest.iter().position(|&c| c == b'\n') {
        let head = std::str::from_utf8(&rest[..nl]).expect("header");
        let (mark, len) = head.split_once(' ').expect("mark and length");
        let len: usize = len.parse().expect("length");
        let side = if mark == ">" {
            crate::protocol::call::Side::A
        } else {
            crate::protocol::call::Side::B
        };
        writes.push((side, 0, rest[nl + 1..nl + 1 + len].to_vec()));
        rest = &rest[nl + 2 + len..];
    }
    crate::testutil::conn_chunks(&writes, 1, "/run/containerd/s/rec", client, server)
}

/// Every protobuf body of the recorded gRPC and ttrpc traffic, replayed through the pipeline.
pub(super) fn recorded_bodies() -> Vec<TypedBody> {
    let found = Rc::new(RefCell::new(Vec::new()));
    replay_recordings(|| {
        Box::new(Bodies {
            schema: schema(),
            found: found.clone(),
        })
    });
    found.take()
}

/// Replays the recorded gRPC and ttrpc traffic through the pipeline, each recording into a
/// sink from `sink`.
pub(super) fn replay_recordings(mut sink: impl FnMut() -> Box<dyn Sink>) {
    let ctr =
        std::fs::read_to_string(fixtures().join("containerd/ctr-basic.jsonl")).expect("fixture");
    let captures = [
        chunks_from_raw_jsonl(&ctr),
        rec_chunks(
            "ttrpc/shim-task.rec",
            ("containerd", 3437),
            ("containerd-shim", 5120),
        ),
        rec_chunks(
            "ttrpc/shim-events.rec",
            ("containerd-shim", 5120),
            ("containerd", 3437),
        ),
    ];
    for chunks in &captures {
        let mut p = Pipeline::new(
            Renderer::new(schema(), RenderOptions::default()),
            Plan::default(),
            vec![sink()],
        );
        for c in chunks {
            p.push(c).expect("push");
        }
        let last = chunks.last().map_or(0, |c| c.ts_ns);
        p.finish(last, ConnEnd::CaptureEnded).expect("finish");
    }
}

// ---- generated messages ----

/// xorshift64*: deterministic inputs without a dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(super) fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }
}

pub(super) const STRINGS: &[&str] = &[
    "",
    "runc",
    "with space",
    "quote\" and \\ backslash",
    "\x1b[2Jclear",
    "ünïcödé ✓",
    "\u{202e}reversed",
    "line\nbreak\ttab",
    "password",
    "sha256:4f1a9c2e0b7d",
];

pub(super) fn gen_string(rng: &mut Rng) -> String {
    match rng.below(12) {
        // Long enough to hit every cap.
        0 => "long é ".repeat(300),
        _ => (*rng.pick(STRINGS)).to_owned(),
    }
}

pub(super) fn gen_bytes(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => Vec::new(),
        1 => b"printable".to_vec(),
        2 => vec![0, 1, 0xff, b'"', b'\\', 0x1b, 0x80],
        _ => (0..200).map(|i| i as u8).collect(),
    }
}

pub(super) fn gen_value(kind: &Kind, rng: &mut Rng, depth: usize) -> Value {
    match kind {
        Kind::Bool => Value::Bool(rng.below(2) == 1),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(*rng.pick(&[0, 1, -1, 150, i32::MIN, i32::MAX]))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(*rng.pick(&[0, 1, -1, 1 << 40, i64::MIN, i64::MAX]))
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(*rng.pick(&[0, 1, 300, u32::MAX])),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(*rng.pick(&[0, 1, 1 << 50, u64::MAX])),
        Kind::Float => Value::F32(*rng.pick(&[0.0, -0.0, 1.5, f32::NAN, f32::INFINITY, 1e-40])),
        Kind::Double => Value::F64(*rng.pick(&[0.0, -0.0, 0.1, f64::NAN, -f64::INFINITY, 1e300])),
        Kind::String => Value::String(gen_string(rng)),
        Kind::Bytes => Value::Bytes(gen_bytes(rng).into()),
        Kind::Enum(e) => {
            let numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
            if rng.below(5) == 0 || numbers.is_empty() {
                Value::EnumNumber(99)
            } else {
                Value::EnumNumber(*rng.pick(&numbers))
            }
        }
        Kind::Message(m) => Value::Message(gen_message(m, rng, depth + 1)),
    }
}

pub(super) fn gen_map_key(kind: &Kind, rng: &mut Rng) -> MapKey {
    match kind {
        Kind::Bool => MapKey::Bool(rng.below(2) == 1),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(rng.below(7) as i32 - 3),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(rng.below(7) as i64 - 3),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(rng.below(7) as u32),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(rng.below(7) as u64),
        _ => MapKey::String(
            (*rng.pick(&["team", "io.kubernetes.pod", "token", "a", "", "Z", "ü"])).to_owned(),
        ),
    }
}

/// An `Any` holding a generated message of a type in the pool, or JSON, or an unknown type.
pub(super) fn gen_any(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> DynamicMessage {
    let mut any = DynamicMessage::new(desc.clone());
    let (url, value) = match rng.below(6) {
        0 => (
            "types.containerd.io/opencontainers/runtime-spec/1/Spec".to_owned(),
            br#"{"process":{"env":["A=1"]},"password":"x"}"#.to_vec(),
        ),
        1 => ("example.com/not.in.the.Pool".to_owned(), vec![0x08, 0x01]),
        _ => {
            let types = [
                "containerd.events.TaskExit",
                "containerd.runc.v1.Options",
                "runtime.v1.AuthConfig",
                "google.protobuf.Struct",
            ];
            let name = *rng.pick(&types);
            let inner = gen_message(&message(name), rng, depth + 1);
            let url = if rng.below(2) == 0 {
                name.to_owned()
            } else {
                format!("type.googleapis.com/{name}")
            };
            (url, inner.encode_to_vec())
        }
    };
    any.set_field_by_number(1, Value::String(url));
    any.set_field_by_number(2, Value::Bytes(value.into()));
    any
}

pub(super) fn gen_message(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> DynamicMessage {
    if desc.full_name() == any::ANY && depth < 4 {
        return gen_any(desc, rng, depth);
    }
    let mut m = DynamicMessage::new(desc.clone());
    if depth >= 4 {
        return m;
    }
    for fd in desc.fields() {
        if rng.below(3) == 0 {
            continue;
        }
        let kind = fd.kind();
        let value = if fd.is_map() {
            let Kind::Message(entry) = &kind else {
                continue;
            };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            Value::Map(
                (0..rng.below(5))
                    .map(|_| {
                        (
                            gen_map_key(&key_kind, rng),
                            gen_value(&value_kind, rng, depth),
                        )
                    })
                    .collect(),
            )
        } else if fd.is_list() {
            Value::List(
                (0..rng.below(4))
                    .map(|_| gen_value(&kind, rng, depth))
                    .collect(),
            )
        } else {
            gen_value(&kind, rng, depth)
        };
        m.set_field(&fd, value);
    }
    m
}

/// The top-level fields of `bytes` as separate encodings (None: not plain wire format).
pub(super) fn field_spans(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut spans = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut buf = rest;
        let (_, wire) = decode_key(&mut buf).ok()?;
        match wire {
            WireType::Varint => {
                decode_varint(&mut buf).ok()?;
            }
            WireType::SixtyFourBit => buf = buf.get(8..)?,
            WireType::ThirtyTwoBit => buf = buf.get(4..)?,
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                buf = buf.get(len..)?;
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        }
        let used = rest.len() - buf.len();
        spans.push(&rest[..used]);
        rest = buf;
    }
    Some(spans)
}

/// Variants of one encoding the fast path must either decline or render exactly: fields
/// reversed, one field twice, cut short, a byte changed.
pub(super) fn mutations(bytes: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(spans) = field_spans(bytes)
        && !spans.is_empty()
    {
        out.push(spans.iter().rev().flat_map(|s| s.iter().copied()).collect());
        let twice = rng.below(spans.len());
        let mut dup: Vec<u8> = bytes.to_vec();
        dup.extend_from_slice(spans[twice]);
        out.push(dup);
        let mut moved: Vec<u8> = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            if i != twice {
                moved.extend_from_slice(s);
            }
        }
        moved.extend_from_slice(spans[twice]);
        out.push(moved);
    }
    if !bytes.is_empty() {
        out.push(bytes[..rng.below(bytes.len())].to_vec());
        let mut flipped = bytes.to_vec();
        let at = rng.below(flipped.len());
        flipped[at] ^= 1 << rng.below(8);
        out.push(flipped);
    }
    out
}

/// Wire bytes written by hand rather than by an encoder: fields of the type (or not) in
/// random order, natural or wrong wire types, over-long varints, packed runs, strings that are
/// not UTF-8, nested messages built the same way.
pub(super) fn random_wire(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> Vec<u8> {
    let fields: Vec<_> = desc.fields().collect();
    let mut parts: Vec<(u32, Vec<u8>)> = Vec::new();
    for _ in 0..rng.below(6) {
        let fd = (!fields.is_empty() && rng.below(10) != 0).then(|| rng.pick(&fields).clone());
        let number = fd.as_ref().map_or(rng.below(40) as u32 + 1, |f| f.number());
        let kind = fd.as_ref().map(|f| f.kind());
        let natural = match &kind {
            Some(k) if rng.below(10) != 0 => match k.wire_type() {
                WireType::Varint => 0,
                WireType::SixtyFourBit => 1,
                WireType::ThirtyTwoBit => 5,
                _ => 2,
            },
            _ => *rng.pick(&[0u8, 1, 2, 5]),
        };
        let packed = fd.as_ref().is_some_and(|f| f.is_list()) && natural != 2 && rng.below(2) == 0;
        let mut out = Vec::new();
        key(number, if packed { 2 } else { natural }, &mut out);
        let mut value = Vec::new();
        for _ in 0..if packed { 1 + rng.below(3) } else { 1 } {
            match natural {
                0 => match rng.below(4) {
                    // Zero in two bytes: not canonical, still zero.
                    0 => value.extend_from_slice(&[0x80, 0x00]),
                    1 => varint(u64::MAX - rng.below(3) as u64, &mut value),
                    _ => varint(rng.below(300) as u64, &mut value),
                },
                1 => value.extend_from_slice(&(rng.next() >> rng.below(64)).to_le_bytes()),
                5 => value.extend_from_slice(&((rng.next() >> 32) as u32).to_le_bytes()),
                _ => {
                    let inner = match &kind {
                        Some(Kind::Message(m)) if depth < 3 && rng.below(4) != 0 => {
                            random_wire(m, rng, depth + 1)
                        }
                        _ => match rng.below(4) {
                            0 => b"\xc3\x28".to_vec(),
                            1 => Vec::new(),
                            _ => rng.pick(STRINGS).as_bytes().to_vec(),
                        },
                    };
                    varint(inner.len() as u64, &mut value);
                    value.extend_from_slice(&inner);
                }
            }
        }
        if packed {
            varint(value.len() as u64, &mut out);
        }
        out.extend_from_slice(&value);
        parts.push((number, out));
    }
    if rng.below(4) != 0 {
        parts.sort_by_key(|(n, _)| *n);
    }
    parts.into_iter().flat_map(|(_, b)| b).collect()
}

pub(super) fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | u32::from(wire)), out);
}

pub(super) fn ld(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 2, &mut out);
    varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

pub(super) fn vi(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 0, &mut out);
    varint(v, &mut out);
    out
}

pub(super) fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---- what the embedded protos do not use: proto2, sint, groups, extensions, odd maps ----

pub(super) const PROTO2: &str = r#"
syntax = "proto2";
package sink.v1;
enum Color { RED = 1; GREEN = 2; }
message Two {
  optional int32 a = 1 [default = 7];
  optional string s = 2 [default = "hi"];
  optional sint32 z32 = 3;
  optional sint64 z64 = 4;
  optional sfixed32 f32 = 5;
  optional sfixed64 f64 = 6;
  optional float fl = 7 [default = 1.5];
  optional double db = 8;
  optional bool b = 9 [default = true];
  optional Color c = 10 [default = GREEN];
  repeated sint32 zs = 11 [packed = true];
  repeated int64 ns = 12;
  optional group G = 13 { optional int32 x = 14; }
  required bytes raw = 15;
  map<sint64, Two> children = 16;
  oneof pick { uint32 u = 17; string t = 18; }
  repeated Color cs = 19;
  extensions 100 to 199;
}
extend Two { optional int32 ext = 100; }
"#;

pub(super) const PROTO3: &str = r#"
syntax = "proto3";
package sink.v1;
enum Mode { MODE_UNSPECIFIED = 0; MODE_ON = 1; }
message Three {
  double d = 1; float f = 2; sint32 z = 3; sint64 y = 4; fixed32 x = 5; fixed64 w = 6;
  sfixed32 v = 7; sfixed64 u = 8; bool b = 9; Mode m = 10;
  optional int32 opt = 11;
  repeated double ds = 12;
  map<bool, string> flags = 13;
  map<int32, Mode> modes = 14;
  map<uint64, bytes> blobs = 15;
  oneof o { Three child = 16; string password = 17; }
  bytes secret_key = 18;
  repeated sint64 ys = 19;
}
"#;

pub(super) fn sink_schema(tag: &str) -> Schema {
    let dir = std::env::temp_dir().join(format!("containerdsnoop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sink/v1")).expect("temp dir");
    std::fs::write(dir.join("sink/v1/two.proto"), PROTO2).expect("write");
    std::fs::write(dir.join("sink/v1/three.proto"), PROTO3).expect("write");
    let mut s = schema();
    s.add_proto_paths(std::slice::from_ref(&dir))
        .expect("protos compile");
    let _ = std::fs::remove_dir_all(dir);
    s
}

/// The recorded messages (at least 40 typed bodies) go through `same_or_declined` (which
/// asserts fast == slow whenever the fast path accepts) under the default options and each of
/// `option_sets`; at least 90% of them must take the fast path with the defaults.
pub(super) fn assert_recorded_take_the_fast_path(
    what: &str,
    same_or_declined: fn(&MessageDescriptor, &[u8], &RenderOptions) -> bool,
    option_sets: &[RenderOptions],
) {
    let bodies = recorded_bodies();
    let typed: Vec<_> = bodies
        .iter()
        .filter_map(|(d, b)| d.as_ref().map(|d| (d, b)))
        .collect();
    assert!(typed.len() >= 40, "only {} typed bodies", typed.len());
    let mut took = 0;
    let mut declined = Vec::new();
    for (desc, bytes) in &typed {
        if same_or_declined(desc, bytes, &RenderOptions::default()) {
            took += 1;
        } else {
            declined.push(desc.full_name().to_owned());
        }
        for opts in option_sets {
            same_or_declined(desc, bytes, opts);
        }
    }
    assert!(
        took * 10 >= typed.len() * 9,
        "{what} fast path for {took} of {} recorded messages; declined: {declined:?}",
        typed.len()
    );
}
