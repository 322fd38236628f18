//! Differential tests: wherever [`wire_text`] says yes, its text must be the slow path's
//! (`to_text(&decode(..))`) byte for byte, and the schema decode must have succeeded. Inputs are
//! the message bodies of the recorded traffic under `tests/fixtures/`, generated messages of
//! every type in the embedded pool (then reordered, duplicated, cut and corrupted), and
//! hand-made edge cases.

use std::{cell::RefCell, io, path::PathBuf, rc::Rc};

use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, Value};

use super::*;
use crate::{
    output::{
        rows::{Row, body_descriptor},
        sink::{Headers, Renderer, Sink},
    },
    pipeline::{Pipeline, Plan},
    protocol::call::{Body, CallEventKind, ConnEnd},
    record::{Chunk, chunks_from_raw_jsonl},
    schema::{Schema, decode, to_text},
};

fn schema() -> Schema {
    Schema::embedded().expect("embedded descriptor set loads")
}

fn message(name: &str) -> MessageDescriptor {
    schema()
        .message(name)
        .unwrap_or_else(|| panic!("{name} is in the pool"))
}

/// The option sets every input is rendered with: the default, no redaction, tight caps.
fn option_sets() -> Vec<RenderOptions> {
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

/// Both paths on one input. Returns whether the fast path was taken; panics if it was taken
/// and disagrees with the slow path, or the slow path did not use the schema.
fn same_or_declined(desc: &MessageDescriptor, bytes: &[u8], opts: &RenderOptions) -> bool {
    let decoded = decode(Some(desc), bytes);
    let slow = to_text(&decoded, opts);
    let mut fast = String::from("stale");
    if !wire_text(desc, bytes, opts, &mut fast) {
        assert!(fast.is_empty(), "declined but left {fast:?}");
        return false;
    }
    assert!(
        !decoded.is_schema_less(),
        "fast path taken for bytes the schema decode rejects: {} {bytes:02x?} -> {fast}",
        desc.full_name()
    );
    assert_eq!(
        fast,
        slow,
        "{} with {opts:?}, bytes {bytes:02x?}",
        desc.full_name()
    );
    true
}

// ---- recorded traffic ----

/// A protobuf body and the type `render_body` would decode it as.
type TypedBody = (Option<MessageDescriptor>, Vec<u8>);

/// Keeps each protobuf body a row carries.
struct Bodies {
    schema: Schema,
    found: Rc<RefCell<Vec<TypedBody>>>,
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

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A `.rec` recording (`> LEN` client write, `< LEN` server write, bytes, newline) as records.
fn rec_chunks(path: &str, client: (&str, u32), server: (&str, u32)) -> Vec<Chunk> {
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
fn recorded_bodies() -> Vec<TypedBody> {
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
    let found = Rc::new(RefCell::new(Vec::new()));
    for chunks in &captures {
        let sink = Bodies {
            schema: schema(),
            found: found.clone(),
        };
        let mut p = Pipeline::new(
            Renderer::new(schema(), RenderOptions::default()),
            Plan::default(),
            vec![Box::new(sink)],
        );
        for c in chunks {
            p.push(c).expect("push");
        }
        let last = chunks.last().map_or(0, |c| c.ts_ns);
        p.finish(last, ConnEnd::CaptureEnded).expect("finish");
    }
    found.take()
}

/// The recorded messages take the fast path and agree with the slow path. Reasons the fast
/// path declines, in general: decode errors, fields out of number order or repeated when not
/// repeated, unknown fields, groups, two members of a oneof, an `Any` holding JSON or an
/// unknown type, nesting at the depth limits, a map to sort once the text is cut.
#[test]
fn recorded_traffic_takes_the_fast_path_with_the_same_text() {
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
        for opts in option_sets() {
            same_or_declined(desc, bytes, &opts);
        }
    }
    assert!(
        took * 10 >= typed.len() * 9,
        "fast path for {took} of {} recorded messages; declined: {declined:?}",
        typed.len()
    );
}

/// Every cut and many one-byte corruptions of the recorded messages: declined or the same text.
#[test]
fn recorded_traffic_cut_and_corrupted_byte_by_byte() {
    let opts = RenderOptions::default();
    let tight = RenderOptions {
        max_text_len: 24,
        ..RenderOptions::default()
    };
    let (mut variants, mut took) = (0, 0);
    for (desc, bytes) in recorded_bodies() {
        let Some(desc) = desc else { continue };
        for cut in 0..bytes.len() {
            variants += 1;
            took += usize::from(same_or_declined(&desc, &bytes[..cut], &opts));
        }
        for at in 0..bytes.len() {
            for mask in [0x01, 0x02, 0x08, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] ^= mask;
                variants += 1;
                took += usize::from(same_or_declined(&desc, &changed, &opts));
                same_or_declined(&desc, &changed, &tight);
            }
        }
    }
    // Both outcomes occur: many corruptions still decode (a changed character, a changed
    // number), many do not.
    assert!(took > 0 && took < variants, "{took} of {variants}");
}

// ---- generated messages ----

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
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

fn gen_string(rng: &mut Rng) -> String {
    match rng.below(12) {
        // Long enough to hit every cap.
        0 => "long é ".repeat(300),
        _ => (*rng.pick(STRINGS)).to_owned(),
    }
}

fn gen_bytes(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => Vec::new(),
        1 => b"printable".to_vec(),
        2 => vec![0, 1, 0xff, b'"', b'\\', 0x1b, 0x80],
        _ => (0..200).map(|i| i as u8).collect(),
    }
}

fn gen_value(kind: &Kind, rng: &mut Rng, depth: usize) -> Value {
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

fn gen_map_key(kind: &Kind, rng: &mut Rng) -> MapKey {
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
fn gen_any(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> DynamicMessage {
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

fn gen_message(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> DynamicMessage {
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
fn field_spans(bytes: &[u8]) -> Option<Vec<&[u8]>> {
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
fn mutations(bytes: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
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

#[test]
fn generated_messages_of_every_type_render_the_same() {
    let pool = schema().pool().clone();
    let mut all: Vec<_> = pool.all_messages().filter(|m| !m.is_map_entry()).collect();
    all.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    let opts = option_sets();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut encodings, mut took) = (0, 0);
    for desc in &all {
        for _ in 0..3 {
            let bytes = gen_message(desc, &mut rng, 0).encode_to_vec();
            encodings += 1;
            if same_or_declined(desc, &bytes, &opts[0]) {
                took += 1;
            }
            for o in &opts[1..] {
                same_or_declined(desc, &bytes, o);
            }
            for variant in mutations(&bytes, &mut rng) {
                for o in &opts {
                    same_or_declined(desc, &variant, o);
                }
            }
        }
    }
    // Prost-reflect's own encoding is in field order with no unknown fields, so most take the
    // fast path; the rest hold an `Any` the fast path leaves to the slow one (JSON, unknown
    // type) or maps with duplicate-free keys in an order only a sort restores.
    assert!(
        took * 10 >= encodings * 9,
        "fast path for {took} of {encodings} generated messages"
    );
}

/// Wire bytes written by hand rather than by an encoder: fields of the type (or not) in
/// random order, natural or wrong wire types, over-long varints, packed runs, strings that are
/// not UTF-8, nested messages built the same way.
fn random_wire(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> Vec<u8> {
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

#[test]
fn hand_written_wire_of_every_type_renders_the_same_or_is_declined() {
    let pool = schema().pool().clone();
    let opts = option_sets();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut inputs, mut took) = (0, 0);
    for desc in pool.all_messages().filter(|m| !m.is_map_entry()) {
        for _ in 0..20 {
            let bytes = random_wire(&desc, &mut rng, 0);
            inputs += 1;
            took += usize::from(same_or_declined(&desc, &bytes, &opts[0]));
            for o in &opts[1..] {
                same_or_declined(&desc, &bytes, o);
            }
        }
    }
    // Both outcomes occur, so both sides of the comparison were exercised.
    assert!(took > 0 && took < inputs, "{took} of {inputs}");
}

// ---- edge cases, one by one ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | u32::from(wire)), out);
}

fn ld(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 2, &mut out);
    varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

fn vi(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 0, &mut out);
    varint(v, &mut out);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Checks `bytes` as `name` with every option set; returns whether the default took the fast path.
fn check(name: &str, bytes: &[u8]) -> bool {
    let desc = message(name);
    let took = same_or_declined(&desc, bytes, &RenderOptions::default());
    for o in option_sets() {
        same_or_declined(&desc, bytes, &o);
    }
    took
}

#[test]
fn proto3_defaults_on_the_wire_are_skipped() {
    // runtime.v1.VersionResponse: version=1, runtime_name=2 (strings, implicit presence).
    let bytes = cat(&[ld(1, b""), ld(2, b"containerd")]);
    assert!(check("runtime.v1.VersionResponse", &bytes));
    let mut out = String::new();
    assert!(wire_text(
        &message("runtime.v1.VersionResponse"),
        &bytes,
        &RenderOptions::default(),
        &mut out
    ));
    assert_eq!(out, r#"runtime_name:"containerd""#);
    // containerd.events.TaskExit: pid=3 (uint32) zero, exit_status=4 zero: nothing shown.
    assert!(check(
        "containerd.events.TaskExit",
        &cat(&[vi(3, 0), vi(4, 0)])
    ));
    assert!(check("containerd.events.TaskExit", &[]));
}

#[test]
fn out_of_order_and_duplicate_fields_decline() {
    let name = "runtime.v1.VersionResponse";
    assert!(!check(name, &cat(&[ld(2, b"b"), ld(1, b"a")])));
    assert!(!check(name, &cat(&[ld(1, b"a"), ld(1, b"b")])));
    // A nested message twice is merged by the slow path.
    let ns = |n: &[u8]| ld(1, &ld(1, n));
    assert!(!check(
        "containerd.services.namespaces.v1.CreateNamespaceRequest",
        &cat(&[ns(b"a"), ns(b"b")])
    ));
}

#[test]
fn repeated_fields_packed_unpacked_and_split() {
    // runtime.v1.LinuxContainerResources.cpuset... use a repeated string and a repeated int.
    // containerd.services.tasks.v1.ListPidsResponse: processes=1 (repeated message).
    let p = |pid: u64| ld(1, &vi(1, pid));
    assert!(check(
        "containerd.services.tasks.v1.ListPidsResponse",
        &cat(&[p(1), p(2), p(3)])
    ));
    // runtime.v1.Int64Value-like repeated scalars: LinuxContainerSecurityContext.supplemental_groups.
    let desc = message("runtime.v1.LinuxContainerSecurityContext");
    let groups = desc
        .get_field_by_name("supplemental_groups")
        .expect("field");
    let n = groups.number();
    let mut packed = Vec::new();
    for v in [1u64, 1000, 0] {
        varint(v, &mut packed);
    }
    let unpacked = cat(&[vi(n, 5), vi(n, 6)]);
    assert!(check(desc.full_name(), &ld(n, &packed)));
    assert!(check(
        desc.full_name(),
        &cat(&[ld(n, &packed), unpacked.clone(), ld(n, &[])])
    ));
    assert!(check(desc.full_name(), &ld(n, &[])));
    // Packed bytes that end mid-varint: a decode error.
    assert!(!check(desc.full_name(), &ld(n, &[0x80])));
    // The same repeated field in two runs is regrouped by the slow path: declined.
    let other = desc
        .get_field_by_name("run_as_group")
        .expect("field")
        .number();
    let split = if other > n {
        cat(&[vi(n, 1), ld(other, &vi(1, 7)), vi(n, 2)])
    } else {
        cat(&[ld(other, &vi(1, 7)), vi(n, 1), ld(other, &vi(1, 8))])
    };
    assert!(!check(desc.full_name(), &split));
}

#[test]
fn invalid_utf8_truncation_and_wrong_wire_types_decline() {
    let name = "runtime.v1.VersionResponse";
    assert!(!check(name, &ld(1, b"\xff\xfe")));
    assert!(!check(name, &ld(1, b"abc")[..3]));
    assert!(!check(name, &vi(1, 5)));
    assert!(!check(name, &[0x0a]));
    // Field 0 and wire types 6/7 are not protobuf.
    assert!(!check(name, &[0x00, 0x00]));
    assert!(!check(name, &[0x0e]));
    // An unknown field and a group.
    assert!(!check(name, &vi(99, 1)));
    assert!(!check(name, &[0x0b, 0x0c]));
}

#[test]
fn enums_known_and_unknown_numbers() {
    // runtime.v1.ContainerStatus.state (enum ContainerState) is field 3.
    let desc = message("runtime.v1.ContainerStatus");
    let state = desc.get_field_by_name("state").expect("field").number();
    assert!(check(desc.full_name(), &vi(state, 1)));
    assert!(check(desc.full_name(), &vi(state, 77)));
    assert!(check(desc.full_name(), &vi(state, u64::MAX)));
}

#[test]
fn oneof_members_twice_decline_once_render() {
    // google.protobuf.Value: oneof kind {null_value=1, number_value=2, string_value=3, ...}.
    let mut number = Vec::new();
    key(2, 1, &mut number);
    number.extend_from_slice(&0.0f64.to_le_bytes());
    assert!(
        check("google.protobuf.Value", &number),
        "a default inside a oneof is shown"
    );
    assert!(check("google.protobuf.Value", &ld(3, b"")));
    assert!(!check(
        "google.protobuf.Value",
        &cat(&[number, ld(3, b"x")])
    ));
}

#[test]
fn maps_sorted_last_key_wins_and_secret_keys_redacted() {
    // containerd.services.namespaces.v1.Namespace: name=1, labels=2 (map<string,string>).
    let entry = |k: &[u8], v: &[u8]| ld(2, &cat(&[ld(1, k), ld(2, v)]));
    let name = "containerd.services.namespaces.v1.Namespace";
    let bytes = cat(&[
        ld(1, b"ns"),
        entry(b"z", b"1"),
        entry(b"a", b"2"),
        entry(b"z", b"3"),
        entry(b"token", b"s3cret"),
    ]);
    assert!(check(name, &bytes));
    let mut out = String::new();
    assert!(wire_text(
        &message(name),
        &bytes,
        &RenderOptions::default(),
        &mut out
    ));
    assert_eq!(
        out,
        r#"name:"ns" labels {key:"a" value:"2"} labels {key:"token" value:<redacted>} labels {key:"z" value:"3"}"#
    );
    // Entries with the value first, a missing key or value, an extra field.
    assert!(check(name, &ld(2, &cat(&[ld(2, b"v"), ld(1, b"k")]))));
    assert!(check(name, &ld(2, &ld(2, b"v"))));
    assert!(check(name, &ld(2, &[])));
    assert!(!check(name, &ld(2, &cat(&[ld(1, b"k"), ld(3, b"x")]))));
    assert!(!check(name, &ld(2, &cat(&[ld(1, b"k"), ld(1, b"j")]))));
    // Unsorted entries whose text is cut: declined under a small cap, same text otherwise.
    let many: Vec<u8> = (0..50u8)
        .rev()
        .flat_map(|i| entry(&[b'a' + i % 26, b'0' + i / 26], b"v"))
        .collect();
    assert!(check(name, &many));
    let small = RenderOptions {
        max_text_len: 30,
        ..RenderOptions::default()
    };
    assert!(!same_or_declined(&message(name), &many, &small));
    // The same map after the cut: nothing of it shows, so its order does not matter.
    let after_cut = cat(&[ld(1, "n".repeat(40).as_bytes()), many.clone()]);
    assert!(same_or_declined(&message(name), &after_cut, &small));
}

#[test]
fn secrets_are_redacted_as_the_slow_path_does() {
    // runtime.v1.AuthConfig: username=1, password=2, auth=3, server_address=4.
    let bytes = cat(&[
        ld(1, b"me"),
        ld(2, b"hunter2"),
        ld(3, b"dXNlcg=="),
        ld(4, b"registry.example"),
    ]);
    assert!(check("runtime.v1.AuthConfig", &bytes));
    let mut out = String::new();
    assert!(wire_text(
        &message("runtime.v1.AuthConfig"),
        &bytes,
        &RenderOptions::default(),
        &mut out
    ));
    assert!(!out.contains("hunter2") && !out.contains("dXNlcg"), "{out}");
}

#[test]
fn long_text_is_cut_like_the_slow_path() {
    let long = "é".repeat(20_000);
    let bytes = cat(&[ld(1, long.as_bytes()), ld(2, b"after")]);
    for max in [0, 1, 2, 3, 14, 15, 16, 17, 100, 16 * 1024] {
        let opts = RenderOptions {
            max_text_len: max,
            ..RenderOptions::default()
        };
        assert!(same_or_declined(
            &message("runtime.v1.VersionResponse"),
            &bytes,
            &opts
        ));
    }
}

#[test]
fn nesting_near_the_limits() {
    // google.protobuf.Struct{fields{key:"a" value:Value{struct_value:Struct{...}}}}.
    let nest = |levels: usize| {
        let mut s = Vec::new();
        for _ in 0..levels {
            let value = ld(5, &s);
            s = ld(1, &cat(&[ld(1, b"a"), ld(2, &value)]));
        }
        s
    };
    let desc = message("google.protobuf.Struct");
    for levels in [1, 2, 10, 20, 31, 32, 33, 40, 60] {
        let bytes = nest(levels);
        for max_depth in [1, 2, 3, 8, 63, 64, 65, 200] {
            let opts = RenderOptions {
                max_depth,
                ..RenderOptions::default()
            };
            same_or_declined(&desc, &bytes, &opts);
        }
    }
    // Shallow nesting takes the fast path; nesting the slow path cuts with `…` does not.
    assert!(same_or_declined(&desc, &nest(3), &RenderOptions::default()));
    let shallow = RenderOptions {
        max_depth: 4,
        ..RenderOptions::default()
    };
    assert!(!same_or_declined(&desc, &nest(10), &shallow));
}

#[test]
fn any_values_known_json_unknown_and_nested() {
    let exit = cat(&[ld(1, b"c1"), vi(3, 42)]);
    let envelope = |url: &[u8], value: &[u8]| ld(4, &cat(&[ld(1, url), ld(2, value)]));
    let name = "containerd.types.Envelope";
    assert!(check(name, &envelope(b"containerd.events.TaskExit", &exit)));
    assert!(check(
        name,
        &envelope(b"type.googleapis.com/containerd.events.TaskExit", &exit)
    ));
    assert!(!check(
        name,
        &envelope(b"types.containerd.io/x/Spec", br#"{"a":1}"#)
    ));
    // JSON that is also a valid TaskExit (`\n` = field 1, `{` = 123 bytes of container_id):
    // the slow path shows it as JSON, so the fast path must not render it as the type.
    let mut both = b"\n{\"k\":\"".to_vec();
    both.resize(2 + 121, b'x');
    both.extend_from_slice(br#""}"#);
    assert!(
        decode(Some(&message("containerd.events.TaskExit")), &both)
            .descriptor()
            .is_some()
    );
    assert!(!check(
        name,
        &envelope(b"containerd.events.TaskExit", &both)
    ));
    assert!(!check(name, &envelope(b"example.com/Unknown", &exit)));
    assert!(!check(name, &envelope(b"", b"")));
    // Value bytes that do not decode as the named type: the slow path shows them schema-less.
    assert!(!check(
        name,
        &envelope(b"containerd.events.TaskExit", &[0x0a, 0x05])
    ));
    // Any in Any, deeper than max_any_depth.
    let mut bytes = exit.clone();
    let mut url: &[u8] = b"containerd.events.TaskExit";
    for _ in 0..3 {
        bytes = envelope(url, &bytes);
        url = b"containerd.types.Envelope";
    }
    assert!(check(name, &bytes));
    let shallow = RenderOptions {
        max_any_depth: 2,
        ..RenderOptions::default()
    };
    assert!(!same_or_declined(&message(name), &bytes, &shallow));
}

// ---- what the embedded protos do not use: proto2, sint, groups, extensions, odd maps ----

const PROTO2: &str = r#"
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

const PROTO3: &str = r#"
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

fn sink_schema() -> Schema {
    let dir =
        std::env::temp_dir().join(format!("containerdsnoop-wire-text-{}", std::process::id()));
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

#[test]
fn proto2_sint_groups_extensions_and_odd_maps_render_the_same() {
    let s = sink_schema();
    let opts = option_sets();
    let mut rng = Rng(0x0dd_ba11);
    let (mut inputs, mut took) = (0, 0);
    for name in ["sink.v1.Two", "sink.v1.Two.G", "sink.v1.Three"] {
        let desc = s.message(name).expect("type");
        for _ in 0..300 {
            let encoded = gen_message(&desc, &mut rng, 0).encode_to_vec();
            let mut all = mutations(&encoded, &mut rng);
            all.push(encoded);
            all.push(random_wire(&desc, &mut rng, 0));
            for bytes in all {
                inputs += 1;
                took += usize::from(same_or_declined(&desc, &bytes, &opts[0]));
                for o in &opts[1..] {
                    same_or_declined(&desc, &bytes, o);
                }
            }
        }
    }
    assert!(took > 0 && took < inputs, "{took} of {inputs}");

    let three = s.message("sink.v1.Three").expect("type");
    let two = s.message("sink.v1.Two").expect("type");
    let double = |field: u32, v: f64| {
        let mut out = Vec::new();
        key(field, 1, &mut out);
        out.extend_from_slice(&v.to_le_bytes());
        out
    };
    let float = |field: u32, v: f32| {
        let mut out = Vec::new();
        key(field, 5, &mut out);
        out.extend_from_slice(&v.to_le_bytes());
        out
    };
    let d = RenderOptions::default();
    // -0.0 equals the default 0.0 (not shown); NaN does not (shown as nan).
    for bytes in [
        double(1, -0.0),
        float(2, -0.0),
        double(1, f64::NAN),
        float(2, f32::NAN),
        cat(&[double(1, 1e-310), float(2, f32::MIN_POSITIVE)]),
    ] {
        assert!(same_or_declined(&three, &bytes, &d));
    }
    // Zigzag: 1 is -1, u64::MAX is i64::MIN; an sint32 takes the low 32 bits.
    for v in [0, 1, 2, 3, u64::from(u32::MAX), u64::MAX, 1 << 40] {
        assert!(same_or_declined(&three, &cat(&[vi(3, v), vi(4, v)]), &d));
        assert!(same_or_declined(&two, &cat(&[vi(3, v), vi(4, v)]), &d));
    }
    // proto2: a value equal to its custom default is still shown (presence), a default never
    // sent is not; a group, an extension, two oneof members are left to the slow path.
    assert!(same_or_declined(
        &two,
        &cat(&[vi(1, 7), vi(9, 1), vi(10, 2)]),
        &d
    ));
    assert!(same_or_declined(&two, &[], &d));
    assert!(!same_or_declined(&two, &[0x6b, 0x70, 0x01, 0x6c], &d));
    assert!(!same_or_declined(&two, &vi(100, 1), &d));
    assert!(!same_or_declined(
        &two,
        &cat(&[vi(17, 1), ld(18, b"x")]),
        &d
    ));
    // Enum numbers a proto2 (closed) enum does not define.
    assert!(same_or_declined(
        &two,
        &cat(&[vi(10, 9), vi(19, 0), vi(19, 1)]),
        &d
    ));
}
