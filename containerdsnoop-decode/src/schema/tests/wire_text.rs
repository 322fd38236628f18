//! Differential tests: wherever [`wire_text`] says yes, its text must be the slow path's
//! (`to_text(&decode(..))`) byte for byte, and the schema decode must have succeeded. Inputs are
//! the message bodies of the recorded traffic under `tests/fixtures/`, generated messages of
//! every type in the embedded pool (then reordered, duplicated, cut and corrupted), and
//! hand-made edge cases.

use prost::Message as _;
use prost_reflect::MessageDescriptor;

use super::testkit::*;
use crate::schema::{RenderOptions, decode, to_text, wire_text};

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

/// The recorded messages take the fast path and agree with the slow path. Reasons the fast
/// path declines, in general: decode errors, fields out of number order or repeated when not
/// repeated, unknown fields, groups, two members of a oneof, an `Any` holding JSON or an
/// unknown type, nesting at the depth limits, a map to sort once the text is cut.
#[test]
fn recorded_traffic_takes_the_fast_path_with_the_same_text() {
    assert_recorded_take_the_fast_path("text", same_or_declined, &option_sets());
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

#[test]
fn proto2_sint_groups_extensions_and_odd_maps_render_the_same() {
    let s = sink_schema("wire-text");
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
