//! Differential tests: wherever [`wire_json_ok`] says yes, [`wire_json`] written with
//! `write_json` must be the slow path's JSON (`json_message(&decode(..))`, and the `Value` tree
//! of `to_json`) byte for byte, and the schema decode must have succeeded. Inputs as for
//! `wire_text`: the recorded traffic, generated messages of every type in the pool (reordered,
//! duplicated, cut, corrupted), hand-written wire bytes, and edge cases.

use std::{cell::RefCell, io, rc::Rc};

use prost::Message as _;
use prost_reflect::MessageDescriptor;

use serde::Serialize;

use super::testkit::*;
use crate::{
    output::{
        rows::{BodyJson, Row, body_descriptor, render_body},
        sink::{Headers, Renderer, Sink},
    },
    protocol::call::{Body, CallEventKind},
    schema::{
        RenderOptions, Schema, decode, json_message, json_to_string, to_json, to_text, wire_json,
        wire_json_ok, write_json,
    },
};

fn written<T: Serialize>(value: &T) -> Result<String, String> {
    let mut out = Vec::new();
    write_json(&mut out, value).map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// The option sets every input is written with: the text's (redaction on and off, tight caps)
/// and shallow ones, where the slow path writes `…`.
fn json_option_sets() -> Vec<RenderOptions> {
    let mut sets = option_sets();
    sets.push(RenderOptions {
        max_depth: 2,
        max_any_depth: 0,
        ..RenderOptions::default()
    });
    sets.push(RenderOptions {
        max_depth: 0,
        ..RenderOptions::default()
    });
    sets
}

/// Both paths on one input. Returns whether the fast path was taken; panics if it was taken
/// and disagrees with the slow path, or the slow path did not use the schema.
fn same_or_declined(desc: &MessageDescriptor, bytes: &[u8], opts: &RenderOptions) -> bool {
    if !wire_json_ok(desc, bytes, opts) {
        return false;
    }
    let decoded = decode(Some(desc), bytes);
    assert!(
        !decoded.is_schema_less(),
        "fast path taken for bytes the schema decode rejects: {} {bytes:02x?}",
        desc.full_name()
    );
    let fast = written(&wire_json(desc, bytes, opts)).unwrap_or_else(|e| {
        panic!(
            "accepted, then failed: {e}: {} {bytes:02x?}",
            desc.full_name()
        )
    });
    let slow = written(&json_message(&decoded, opts)).expect("slow path writes");
    assert_eq!(
        fast,
        slow,
        "{} with {opts:?}, bytes {bytes:02x?}",
        desc.full_name()
    );
    // The `Value` tree agrees too (its objects are sorted maps: the order is not ours alone).
    assert_eq!(fast, json_to_string(&to_json(&decoded, opts)));
    true
}

/// Checks `bytes` as `name` with every option set; returns whether the default took the fast path.
fn check(name: &str, bytes: &[u8]) -> bool {
    let desc = message(name);
    let took = same_or_declined(&desc, bytes, &RenderOptions::default());
    for o in json_option_sets() {
        same_or_declined(&desc, bytes, &o);
    }
    took
}

// ---- recorded traffic ----

/// The recorded messages take the fast path and agree with the slow path (all 40 did when
/// this was written; the one FieldMask among them is why FieldMask is rendered here).
#[test]
fn recorded_traffic_takes_the_json_fast_path_with_the_same_bytes() {
    assert_recorded_take_the_fast_path("JSON", same_or_declined, &json_option_sets());
}

/// Every cut and many one-byte corruptions of the recorded messages: declined or the same JSON.
#[test]
fn recorded_traffic_cut_and_corrupted_byte_by_byte() {
    let opts = RenderOptions::default();
    let open = RenderOptions {
        redact: false,
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
                same_or_declined(&desc, &changed, &open);
            }
        }
    }
    assert!(took > 0 && took < variants, "{took} of {variants}");
}

/// Renders each protobuf row as the JSON sink does (`render_body` wanting JSON) and checks it
/// against the slow path's rendering of the same row; counts rows and fast-path rows.
struct RowCheck {
    schema: Schema,
    opts: RenderOptions,
    counts: Rc<RefCell<(usize, usize)>>,
}

impl Sink for RowCheck {
    fn row(&mut self, row: &Row, _: Option<&Headers>, _: &Renderer) -> io::Result<()> {
        let CallEventKind::Message {
            role,
            body: Body::Protobuf(bytes),
            ..
        } = &row.event
        else {
            return Ok(());
        };
        let rendered = render_body(row, &self.schema, &self.opts, true);
        let decoded = decode(body_descriptor(row, *role, &self.schema).as_ref(), bytes);
        assert_eq!(rendered.text, to_text(&decoded, &self.opts));
        assert_eq!(
            rendered.message_type,
            decoded.descriptor().map(|d| d.full_name().to_owned())
        );
        let slow = BodyJson::Message(decoded, self.opts.clone());
        assert_eq!(written(&rendered.json), written(&slow));
        let mut counts = self.counts.borrow_mut();
        counts.0 += 1;
        counts.1 += usize::from(matches!(rendered.json, BodyJson::Wire(..)));
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The rows of the recordings, replayed through the pipeline: with JSON wanted, the body's
/// text, type and JSON are the slow path's, and most take the fast path.
#[test]
fn recorded_rows_with_json_wanted_render_as_the_slow_path() {
    for opts in json_option_sets() {
        let counts = Rc::new(RefCell::new((0, 0)));
        replay_recordings(|| {
            Box::new(RowCheck {
                schema: schema(),
                opts: opts.clone(),
                counts: counts.clone(),
            })
        });
        let (rows, fast) = *counts.borrow();
        assert!(rows >= 40, "{rows} protobuf rows");
        if opts.max_depth >= 8 {
            assert!(
                fast * 10 >= rows * 9,
                "{fast} of {rows} rows on the fast path"
            );
        }
    }
}

/// A row's `BodyJson::Wire` is written with the options it holds (redaction off here).
#[test]
fn body_json_wire_writes_with_its_own_options() {
    let desc = message("runtime.v1.AuthConfig");
    let bytes = cat(&[ld(1, b"user"), ld(2, b"pw")]);
    for redact in [true, false] {
        let opts = RenderOptions {
            redact,
            ..RenderOptions::default()
        };
        assert!(wire_json_ok(&desc, &bytes, &opts));
        let fast = BodyJson::Wire(desc.clone(), bytes.clone(), opts.clone());
        let slow = BodyJson::Message(decode(Some(&desc), &bytes), opts);
        assert_eq!(written(&fast), written(&slow));
        assert_eq!(written(&fast).expect("writes").contains("pw"), !redact);
    }
}

// ---- generated messages ----

#[test]
fn generated_messages_of_every_type_write_the_same() {
    let pool = schema().pool().clone();
    let mut all: Vec<_> = pool.all_messages().filter(|m| !m.is_map_entry()).collect();
    all.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    let opts = json_option_sets();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut encodings, mut took) = (0, 0);
    for desc in &all {
        for _ in 0..3 {
            let bytes = gen_message(desc, &mut rng, 0).encode_to_vec();
            encodings += 1;
            took += usize::from(same_or_declined(desc, &bytes, &opts[0]));
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
    // Declined: the well-known types with special forms (and messages holding one), `Any`s
    // holding JSON or unknown types, maps in an order only a sort restores are not among them.
    assert!(
        took * 10 >= encodings * 6,
        "JSON fast path for {took} of {encodings} generated messages"
    );
}

#[test]
fn hand_written_wire_of_every_type_writes_the_same_or_is_declined() {
    let pool = schema().pool().clone();
    let opts = json_option_sets();
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
    assert!(took > 0 && took < inputs, "{took} of {inputs}");
}

#[test]
fn proto2_sint_groups_extensions_and_odd_maps_write_the_same() {
    let s = sink_schema("wire-json");
    let opts = json_option_sets();
    let mut rng = Rng(0x0dd_ba11);
    let (mut inputs, mut took) = (0, 0);
    for name in ["sink.v1.Two", "sink.v1.Three"] {
        let desc = s.message(name).expect("test type");
        for _ in 0..200 {
            let bytes = gen_message(&desc, &mut rng, 0).encode_to_vec();
            inputs += 1;
            took += usize::from(same_or_declined(&desc, &bytes, &opts[0]));
            for o in &opts[1..] {
                same_or_declined(&desc, &bytes, o);
            }
            for variant in mutations(&bytes, &mut rng) {
                same_or_declined(&desc, &variant, &opts[0]);
            }
            let wire = random_wire(&desc, &mut rng, 0);
            same_or_declined(&desc, &wire, &opts[0]);
        }
    }
    assert!(took > 0, "{took} of {inputs}");
}

// ---- edge cases, one by one ----

#[test]
fn fields_are_written_in_json_name_order_not_number_order() {
    // containerd.events.TaskExit: container_id(1) id(2) pid(3) exit_status(4) exited_at(5).
    let bytes = cat(&[ld(1, b"c1"), ld(2, b"t1"), vi(3, 42), vi(4, 1)]);
    assert!(check("containerd.events.TaskExit", &bytes));
    let out = written(&wire_json(
        &message("containerd.events.TaskExit"),
        &bytes,
        &RenderOptions::default(),
    ))
    .expect("writes");
    assert_eq!(
        out,
        r#"{"containerId":"c1","exitStatus":1,"id":"t1","pid":42}"#
    );
}

#[test]
fn maps_sorted_as_strings_last_key_wins_and_secret_keys_redacted() {
    // runtime.v1.PodSandboxConfig: labels = 6, annotations = 7 (map<string, string>).
    let entry = |k: &[u8], v: &[u8]| ld(6, &cat(&[ld(1, k), ld(2, v)]));
    let name = "runtime.v1.PodSandboxConfig";
    assert!(check(name, &cat(&[entry(b"b", b"1"), entry(b"a", b"2")])));
    assert!(check(
        name,
        &cat(&[entry(b"a", b"1"), entry(b"b", b"2"), entry(b"a", b"3")])
    ));
    assert!(check(name, &cat(&[entry(b"token", b"s3cret")])));
    let out = written(&wire_json(
        &message(name),
        &cat(&[
            entry(b"token", b"s3cret"),
            entry(b"a", b"1"),
            entry(b"a", b"2"),
        ]),
        &RenderOptions::default(),
    ))
    .expect("writes");
    assert_eq!(out, r#"{"labels":{"a":"2","token":"<redacted>"}}"#);
}

#[test]
fn timestamps_durations_masks_and_empty_in_prost_reflects_form_other_well_known_types_decline() {
    // containerd.events.TaskExit.exited_at is a Timestamp.
    let exit = |seconds: u64, nanos: u64| ld(5, &cat(&[vi(1, seconds), vi(2, nanos)]));
    assert!(check("containerd.events.TaskExit", &exit(1_700_000_000, 5)));
    assert!(check(
        "containerd.events.TaskExit",
        &exit(1_700_000_000, 5_000_000)
    ));
    assert!(check("containerd.events.TaskExit", &exit(0, 0)));
    assert!(check("containerd.events.TaskExit", &ld(5, &[])));
    // Negative nanos (normalized by the formatter) and seconds before 1970.
    assert!(check("containerd.events.TaskExit", &exit(0, u64::MAX)));
    assert!(check(
        "containerd.events.TaskExit",
        &exit(u64::MAX - 86_400, 1)
    ));
    // Past year 9999: prost-reflect refuses it and the slow path shows the fields.
    assert!(!check("containerd.events.TaskExit", &exit(1 << 40, 0)));
    // The fields out of order, or another field.
    assert!(!check(
        "containerd.events.TaskExit",
        &ld(5, &cat(&[vi(2, 1), vi(1, 1)]))
    ));
    assert!(!check("containerd.events.TaskExit", &ld(5, &vi(3, 1))));
    let out = written(&wire_json(
        &message("containerd.events.TaskExit"),
        &exit(1_700_000_000, 5_000_000),
        &RenderOptions::default(),
    ))
    .expect("writes");
    assert_eq!(out, r#"{"exitedAt":"2023-11-14T22:13:20.005Z"}"#);
    assert!(check(
        "google.protobuf.Duration",
        &cat(&[vi(1, 90), vi(2, 1_000)])
    ));
    assert!(check("google.protobuf.Duration", &vi(1, u64::MAX)));
    assert!(!check("google.protobuf.Duration", &vi(1, 1 << 40)));
    let mask = |paths: &[&[u8]]| cat(&paths.iter().map(|p| ld(1, p)).collect::<Vec<_>>());
    assert!(check(
        "google.protobuf.FieldMask",
        &mask(&[b"labels", b"spec.runtime_name"])
    ));
    assert!(check(
        "google.protobuf.FieldMask",
        &mask(&[b"", b"a_", b""])
    ));
    assert!(!check("google.protobuf.FieldMask", &mask(&[b"camelCase"])));
    assert!(!check("google.protobuf.FieldMask", &mask(&[b"two__under"])));
    assert!(!check("google.protobuf.FieldMask", &mask(&[b"\xff"])));
    assert!(!check("google.protobuf.FieldMask", &vi(1, 1)));
    let out = written(&wire_json(
        &message("google.protobuf.FieldMask"),
        &mask(&[b"labels", b"spec.runtime_name"]),
        &RenderOptions::default(),
    ))
    .expect("writes");
    assert_eq!(out, r#""labels,spec.runtimeName""#);
    assert!(check("google.protobuf.Empty", &[]));
    assert!(!check("google.protobuf.Empty", &vi(1, 1)));
    assert!(!check("google.protobuf.Struct", &[]));
    assert!(!check("google.protobuf.StringValue", &ld(1, b"x")));
    // A Timestamp as the value of an Any goes under "value" in the slow path: declined.
    let any = ld(
        4,
        &cat(&[ld(1, b"google.protobuf.Timestamp"), ld(2, &vi(1, 5))]),
    );
    assert!(!check("containerd.types.Envelope", &any));
}

#[test]
fn any_values_known_json_unknown_nested_and_any_in_any() {
    let exit = cat(&[ld(1, b"c1"), vi(3, 42)]);
    let any = |url: &[u8], value: &[u8]| cat(&[ld(1, url), ld(2, value)]);
    let envelope = |url: &[u8], value: &[u8]| ld(4, &any(url, value));
    let name = "containerd.types.Envelope";
    assert!(check(name, &envelope(b"containerd.events.TaskExit", &exit)));
    assert!(check(
        name,
        &envelope(b"type.googleapis.com/containerd.events.TaskExit", &exit)
    ));
    assert!(check(name, &envelope(b"containerd.events.TaskExit", b"")));
    assert!(!check(
        name,
        &envelope(b"types.containerd.io/x/Spec", br#"{"a":1}"#)
    ));
    assert!(!check(name, &envelope(b"example.com/Unknown", &exit)));
    assert!(!check(name, &envelope(b"", b"")));
    assert!(!check(
        name,
        &envelope(b"containerd.events.TaskExit", &[0x0a, 0x05])
    ));
    // An Any holding an Any: the slow path's inner `@type` replaces the outer.
    let inner = any(b"containerd.events.TaskExit", &exit);
    assert!(!check(name, &envelope(b"google.protobuf.Any", &inner)));
    // Envelopes in Anys in envelopes, up to and past max_any_depth.
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

#[test]
fn nesting_at_max_depth_declines() {
    // containerd.types.Envelope { event: Any { TaskExit } }: three levels.
    let exit = cat(&[ld(1, b"c1")]);
    let bytes = ld(
        4,
        &cat(&[ld(1, b"containerd.events.TaskExit"), ld(2, &exit)]),
    );
    let desc = message("containerd.types.Envelope");
    for (max_depth, took) in [(0, false), (1, false), (2, false), (3, true), (64, true)] {
        let opts = RenderOptions {
            max_depth,
            ..RenderOptions::default()
        };
        assert_eq!(same_or_declined(&desc, &bytes, &opts), took, "{max_depth}");
    }
}

#[test]
fn scalars_64_bit_floats_bytes_enums_and_secrets() {
    // runtime.v1.AuthConfig: every field is a secret string.
    let auth = cat(&[ld(1, b"user"), ld(2, b"pw"), ld(3, b"a"), ld(4, b"host")]);
    assert!(check("runtime.v1.AuthConfig", &auth));
    // containerd.events.TaskExit.exit_status (uint32) and pid; ContainerStats with uint64s.
    assert!(check(
        "containerd.events.TaskExit",
        &vi(4, u64::from(u32::MAX))
    ));
    let mem = cat(&[vi(1, 1 << 40), vi(2, u64::MAX), ld(3, &[0xc3, 0x28])]);
    same_or_declined(
        &message("runtime.v1.UInt64Value"),
        &mem,
        &RenderOptions::default(),
    );
    assert!(check("runtime.v1.UInt64Value", &vi(1, u64::MAX)));
    // Bytes (base64) and an enum known and unknown: containerd.types.Descriptor? Use CRI's
    // ContainerStatus.state (enum, field 3).
    assert!(check("runtime.v1.ContainerStatus", &vi(3, 1)));
    assert!(check("runtime.v1.ContainerStatus", &vi(3, 99)));
}
