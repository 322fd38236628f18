//! Tests that read like traces: build real messages from the embedded pool, encode them to the
//! bytes a peer would send, decode and render them.

use std::path::PathBuf;

use prost::Message as _;
use prost_reflect::{DynamicMessage, MapKey, Value};

use crate::schema::*;

fn schema() -> Schema {
    Schema::embedded().expect("embedded descriptor set loads")
}

/// A message builder: `msg("runtime.v1.VersionResponse").s("version", "0.1.0").build()`.
struct B(DynamicMessage);

fn msg(name: &str) -> B {
    let desc = schema()
        .message(name)
        .unwrap_or_else(|| panic!("{name} is in the pool"));
    B(DynamicMessage::new(desc))
}

impl B {
    fn set(mut self, field: &str, v: Value) -> Self {
        self.0
            .try_set_field_by_name(field, v)
            .unwrap_or_else(|e| panic!("set {field}: {e}"));
        self
    }
    fn s(self, field: &str, v: &str) -> Self {
        self.set(field, Value::String(v.into()))
    }
    fn u32(self, field: &str, v: u32) -> Self {
        self.set(field, Value::U32(v))
    }
    fn m(self, field: &str, v: B) -> Self {
        self.set(field, Value::Message(v.0))
    }
    fn map(self, field: &str, entries: &[(&str, &str)]) -> Self {
        let map = entries
            .iter()
            .map(|(k, v)| (MapKey::String((*k).into()), Value::String((*v).into())))
            .collect();
        self.set(field, Value::Map(map))
    }
    fn bytes(self) -> Vec<u8> {
        self.0.encode_to_vec()
    }
}

fn any(url: &str, value: Vec<u8>) -> B {
    msg("google.protobuf.Any")
        .s("type_url", url)
        .set("value", Value::Bytes(value.into()))
}

fn timestamp(seconds: i64, nanos: i32) -> B {
    msg("google.protobuf.Timestamp")
        .set("seconds", Value::I64(seconds))
        .set("nanos", Value::I32(nanos))
}

fn decode_as(name: &str, bytes: &[u8]) -> Decoded {
    let desc = schema().message(name).expect("type in pool");
    decode(Some(&desc), bytes)
}

fn text(d: &Decoded) -> String {
    to_text(d, &RenderOptions::default())
}

fn json(d: &Decoded) -> serde_json::Value {
    json_with(d, &RenderOptions::default())
}

/// [`to_json`], checked against the direct serializer JSON rows use: both must write the same
/// bytes, so every JSON test here covers both.
fn json_with(d: &Decoded, opts: &RenderOptions) -> serde_json::Value {
    let v = to_json(d, opts);
    let mut direct = Vec::new();
    write_json(&mut direct, &json_message(d, opts)).expect("writes to a Vec");
    assert_eq!(
        String::from_utf8(direct).expect("UTF-8"),
        json_to_string(&v),
        "direct serialization differs from the Value renderer"
    );
    v
}

fn no_raw_controls(s: &str) {
    assert!(
        !s.chars()
            .any(|c| !crate::escape::is_shown_as_is(c) && c != ' '),
        "raw control character in output: {s:?}"
    );
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `field` as a length-delimited wrapper around `inner`.
fn ld(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 6);
    varint(u64::from(field << 3 | 2), &mut out);
    varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

// ---- the pool ----

#[test]
fn embedded_pool_has_every_api() {
    let s = schema();
    for svc in [
        "runtime.v1.RuntimeService",
        "runtime.v1.ImageService",
        "runtime.v1alpha2.RuntimeService",
        "runtime.v1alpha2.ImageService",
        "containerd.services.containers.v1.Containers",
        "containerd.services.content.v1.Content",
        "containerd.services.diff.v1.Diff",
        "containerd.services.events.v1.Events",
        "containerd.services.images.v1.Images",
        "containerd.services.introspection.v1.Introspection",
        "containerd.services.leases.v1.Leases",
        "containerd.services.namespaces.v1.Namespaces",
        "containerd.services.snapshots.v1.Snapshots",
        "containerd.services.tasks.v1.Tasks",
        "containerd.services.version.v1.Version",
        "containerd.services.transfer.v1.Transfer",
        "containerd.services.sandbox.v1.Store",
        "containerd.services.sandbox.v1.Controller",
        "containerd.services.streaming.v1.Streaming",
        "containerd.services.events.ttrpc.v1.Events",
        "containerd.task.v2.Task",
        "containerd.task.v3.Task",
        "containerd.runtime.linux.shim.v1.Shim",
        "containerd.runtime.sandbox.v1.Sandbox",
    ] {
        assert!(
            s.pool().get_service_by_name(svc).is_some(),
            "service {svc} missing"
        );
    }
    for m in [
        "containerd.events.TaskExit",
        "containerd.types.Envelope",
        "containerd.runc.v1.Options",
        "io.containerd.cgroups.v1.Metrics",
        "io.containerd.cgroups.v2.Metrics",
        "google.rpc.Status",
        "google.protobuf.Struct",
    ] {
        assert!(s.message(m).is_some(), "message {m} missing");
    }
}

#[test]
fn method_lookup_grpc_paths() {
    let s = schema();
    let m = s
        .method("/runtime.v1.RuntimeService/Version")
        .expect("CRI Version");
    assert_eq!(m.service, "runtime.v1.RuntimeService");
    assert_eq!(m.method, "Version");
    assert_eq!(m.input.full_name(), "runtime.v1.VersionRequest");
    assert_eq!(m.output.full_name(), "runtime.v1.VersionResponse");
    assert!(!m.client_streaming && !m.server_streaming);

    let m = s
        .method("/containerd.services.version.v1.Version/Version")
        .expect("containerd Version");
    assert_eq!(m.input.full_name(), "google.protobuf.Empty");
    assert_eq!(
        m.output.full_name(),
        "containerd.services.version.v1.VersionResponse"
    );

    let m = s
        .method("/containerd.services.events.v1.Events/Subscribe")
        .expect("Subscribe");
    assert!(m.server_streaming && !m.client_streaming);
    assert_eq!(m.output.full_name(), "containerd.types.Envelope");

    let m = s
        .method("/runtime.v1alpha2.ImageService/PullImage")
        .expect("v1alpha2 PullImage");
    assert_eq!(m.input.full_name(), "runtime.v1alpha2.PullImageRequest");

    assert!(
        s.method("/runtime.v1.RuntimeService/NoSuchMethod")
            .is_none()
    );
    assert!(s.method("/no.such.Service/Version").is_none());
    assert!(s.method("garbage").is_none());
    assert!(s.method("").is_none());
}

#[test]
fn method_lookup_shim_ttrpc() {
    let s = schema();
    let m = s
        .method("/containerd.task.v2.Task/Create")
        .expect("shim v2 Create");
    assert_eq!(m.input.full_name(), "containerd.task.v2.CreateTaskRequest");
    assert_eq!(
        m.output.full_name(),
        "containerd.task.v2.CreateTaskResponse"
    );
    let m = s
        .service_method("containerd.task.v3.Task", "Wait")
        .expect("shim v3 Wait");
    assert_eq!(m.output.full_name(), "containerd.task.v3.WaitResponse");
    let m = s
        .service_method("containerd.services.events.ttrpc.v1.Events", "Forward")
        .expect("shim events");
    assert_eq!(
        m.input.full_name(),
        "containerd.services.events.ttrpc.v1.ForwardRequest"
    );
}

// ---- decoding with a schema ----

#[test]
fn cri_version_response_text_and_json() {
    let bytes = msg("runtime.v1.VersionResponse")
        .s("version", "0.1.0")
        .s("runtime_name", "containerd")
        .s("runtime_version", "1.6.20")
        .s("runtime_api_version", "v1")
        .bytes();
    let d = decode_as("runtime.v1.VersionResponse", &bytes);
    assert!(!d.is_schema_less());
    assert_eq!(
        text(&d),
        r#"version:"0.1.0" runtime_name:"containerd" runtime_version:"1.6.20" runtime_api_version:"v1""#
    );
    assert_eq!(
        json_to_string(&json(&d)),
        r#"{"runtimeApiVersion":"v1","runtimeName":"containerd","runtimeVersion":"1.6.20","version":"0.1.0"}"#
    );
}

#[test]
fn empty_message_is_not_blank() {
    let d = decode_as("runtime.v1.VersionRequest", &[]);
    assert_eq!(text(&d), "{}");
    assert_eq!(json_to_string(&json(&d)), "{}");
    let d = decode(None, &[]);
    assert_eq!(text(&d), "{}");
}

#[test]
fn envelope_with_task_exit_any_bare_type_url() {
    let exit = msg("containerd.events.TaskExit")
        .s("container_id", "c1")
        .s("id", "c1")
        .u32("pid", 4242)
        .u32("exit_status", 137)
        .m("exited_at", timestamp(1_700_000_000, 5))
        .bytes();
    let bytes = msg("containerd.types.Envelope")
        .m("timestamp", timestamp(1_700_000_001, 0))
        .s("namespace", "k8s.io")
        .s("topic", "/tasks/exit")
        // containerd's typeurl uses the bare full name for protobuf types.
        .m("event", any("containerd.events.TaskExit", exit))
        .bytes();
    let d = decode_as("containerd.types.Envelope", &bytes);
    assert_eq!(
        text(&d),
        r#"timestamp {seconds:1700000001} namespace:"k8s.io" topic:"/tasks/exit" event {[containerd.events.TaskExit] {container_id:"c1" id:"c1" pid:4242 exit_status:137 exited_at {seconds:1700000000 nanos:5}}}"#
    );
    let j = json(&d);
    assert_eq!(j["timestamp"], "2023-11-14T22:13:21Z");
    assert_eq!(j["event"]["@type"], "containerd.events.TaskExit");
    assert_eq!(j["event"]["containerId"], "c1");
    assert_eq!(j["event"]["exitStatus"], 137);
    assert_eq!(j["event"]["exitedAt"], "2023-11-14T22:13:20.000000005Z");
    assert!(json_to_string(&j["event"]).starts_with(r#"{"@type":"containerd.events.TaskExit""#));
}

#[test]
fn any_with_googleapis_prefix_resolves() {
    let inner = msg("containerd.events.TaskStart")
        .s("container_id", "c2")
        .u32("pid", 7)
        .bytes();
    let bytes = msg("containerd.types.Envelope")
        .m(
            "event",
            any("type.googleapis.com/containerd.events.TaskStart", inner),
        )
        .bytes();
    let d = decode_as("containerd.types.Envelope", &bytes);
    assert_eq!(
        text(&d),
        r#"event {[type.googleapis.com/containerd.events.TaskStart] {container_id:"c2" pid:7}}"#
    );
}

#[test]
fn container_spec_any_holding_json() {
    let spec = br#"{"ociVersion":"1.0.2-dev","process":{"args":["sh","-c","echo \u001b[2J"],"env":["PATH=/bin"]},"root":{"path":"rootfs"}}"#;
    let runc_opts = msg("containerd.runc.v1.Options")
        .s("binary_name", "runc")
        .bytes();
    let bytes = msg("containerd.services.containers.v1.Container")
        .s("id", "redis")
        .map("labels", &[("b", "2"), ("a", "1")])
        .s("image", "docker.io/library/redis:7")
        .m(
            "runtime",
            msg("containerd.services.containers.v1.Container.Runtime")
                .s("name", "io.containerd.runc.v2")
                .m("options", any("containerd.runc.v1.Options", runc_opts)),
        )
        .m(
            "spec",
            any(
                "types.containerd.io/opencontainers/runtime-spec/1/Spec",
                spec.to_vec(),
            ),
        )
        .s("snapshotter", "overlayfs")
        .bytes();
    let d = decode_as("containerd.services.containers.v1.Container", &bytes);
    let t = text(&d);
    assert_eq!(
        t,
        concat!(
            r#"id:"redis" labels {key:"a" value:"1"} labels {key:"b" value:"2"} image:"docker.io/library/redis:7" "#,
            r#"runtime {name:"io.containerd.runc.v2" options {[containerd.runc.v1.Options] {binary_name:"runc"}}} "#,
            r#"spec {[types.containerd.io/opencontainers/runtime-spec/1/Spec] {"ociVersion":"1.0.2-dev","#,
            r#""process":{"args":["sh","-c","echo \u001b[2J"],"env":["PATH=/bin"]},"root":{"path":"rootfs"}}} "#,
            r#"snapshotter:"overlayfs""#
        )
    );
    no_raw_controls(&t);
    let j = json(&d);
    assert_eq!(j["labels"]["a"], "1");
    assert_eq!(
        j["spec"]["@type"],
        "types.containerd.io/opencontainers/runtime-spec/1/Spec"
    );
    assert_eq!(j["spec"]["value"]["ociVersion"], "1.0.2-dev");
    assert_eq!(j["spec"]["value"]["process"]["args"][2], "echo \u{1b}[2J");
    assert_eq!(
        j["runtime"]["options"]["@type"],
        "containerd.runc.v1.Options"
    );
    assert_eq!(j["runtime"]["options"]["binaryName"], "runc");
    let s = json_to_string(&j);
    no_raw_controls(&s);
    assert!(s.contains(r#"echo \u001b[2J"#));
}

#[test]
fn enums_by_name_and_64_bit_json_strings() {
    let bytes = msg("containerd.task.v2.StateResponse")
        .s("id", "c1")
        .u32("pid", 10)
        .set("status", Value::EnumNumber(2))
        .bytes();
    let d = decode_as("containerd.task.v2.StateResponse", &bytes);
    assert_eq!(text(&d), r#"id:"c1" pid:10 status:RUNNING"#);
    assert_eq!(json(&d)["status"], "RUNNING");

    let bytes = msg("containerd.services.content.v1.Info")
        .s("digest", "sha256:00")
        .set("size", Value::I64(1 << 40))
        .bytes();
    let d = decode_as("containerd.services.content.v1.Info", &bytes);
    assert_eq!(json(&d)["size"], "1099511627776");
    assert!(text(&d).contains("size:1099511627776"));
}

#[test]
fn bytes_fields_printable_and_binary() {
    let bytes = msg("containerd.services.content.v1.WriteContentRequest")
        .s("ref", "layer-1")
        .set("data", Value::Bytes(b"hello\n".to_vec().into()))
        .bytes();
    let d = decode_as("containerd.services.content.v1.WriteContentRequest", &bytes);
    assert_eq!(text(&d), r#"ref:"layer-1" data:"hello\n""#);
    assert_eq!(json(&d)["data"], "aGVsbG8K");

    let bin: Vec<u8> = (0u8..200).collect();
    let bytes = msg("containerd.services.content.v1.WriteContentRequest")
        .set("data", Value::Bytes(bin.into()))
        .bytes();
    let d = decode_as("containerd.services.content.v1.WriteContentRequest", &bytes);
    let t = text(&d);
    assert!(t.starts_with(r#"data:"\x00\x01\x02"#), "{t}");
    assert!(t.ends_with("…(200 bytes)"), "{t}");
    no_raw_controls(&t);
}

#[test]
fn unknown_fields_are_shown_and_scored() {
    let mut bytes = msg("runtime.v1.VersionResponse")
        .s("version", "0.1.0")
        .bytes();
    bytes.extend_from_slice(&[0x98, 0x06, 0x07]); // field 99, varint 7
    let d = decode_as("runtime.v1.VersionResponse", &bytes);
    assert_eq!(text(&d), r#"version:"0.1.0" 99:7"#);
    assert_eq!(json(&d)["@unknown"]["99"], 7);

    let desc = schema()
        .message("runtime.v1.VersionResponse")
        .expect("type");
    let score = fits(&desc, &bytes);
    assert!(score.parsed && !score.is_clean());
    assert_eq!((score.known_fields, score.unknown_fields), (1, 1));
}

#[test]
fn fits_tells_matching_types_apart() {
    let s = schema();
    let bytes = msg("containerd.task.v2.CreateTaskRequest")
        .s("id", "c1")
        .s(
            "bundle",
            "/run/containerd/io.containerd.runtime.v2.task/default/c1",
        )
        .m(
            "rootfs",
            msg("containerd.types.Mount")
                .s("type", "overlay")
                .s("source", "overlay"),
        )
        .set("terminal", Value::Bool(true))
        .bytes();
    let create = s
        .message("containerd.task.v2.CreateTaskRequest")
        .expect("type");
    let score = fits(&create, &bytes);
    assert!(score.is_clean(), "{score:?}");
    assert_eq!(score.known_fields, 6); // id, bundle, rootfs, rootfs.type, rootfs.source, terminal

    // field 4 is a bool (varint) in CreateTaskRequest but a string in ExecProcessRequest's
    // field 4 (stdin): the wire type clash makes it not parse.
    let exec = s
        .message("containerd.task.v2.ExecProcessRequest")
        .expect("type");
    assert!(!fits(&exec, &bytes).parsed);

    let empty = s.message("google.protobuf.Empty").expect("type");
    let score = fits(&empty, &bytes);
    assert!(score.parsed && !score.is_clean());
    assert_eq!(score.known_fields, 0);
}

// ---- redaction ----

fn pull_request(pkg: &str) -> Vec<u8> {
    msg(&format!("{pkg}.PullImageRequest"))
        .m(
            "image",
            msg(&format!("{pkg}.ImageSpec")).s("image", "registry.example/app:1"),
        )
        .m(
            "auth",
            msg(&format!("{pkg}.AuthConfig"))
                .s("username", "alice")
                .s("password", "hunter2")
                .s("auth", "YWxpY2U6aHVudGVyMg==")
                .s("server_address", "registry.example")
                .s("identity_token", "idtok")
                .s("registry_token", "regtok"),
        )
        .bytes()
}

#[test]
fn cri_auth_is_redacted_by_default() {
    for pkg in ["runtime.v1", "runtime.v1alpha2"] {
        let d = decode_as(&format!("{pkg}.PullImageRequest"), &pull_request(pkg));
        let t = text(&d);
        assert_eq!(
            t,
            concat!(
                r#"image {image:"registry.example/app:1"} auth {username:<redacted> password:<redacted> "#,
                r#"auth:<redacted> server_address:"registry.example" identity_token:<redacted> registry_token:<redacted>}"#
            )
        );
        let j = json_to_string(&json(&d));
        for secret in [
            "alice",
            "hunter2",
            "YWxpY2U6aHVudGVyMg==",
            "idtok",
            "regtok",
        ] {
            assert!(
                !t.contains(secret) && !j.contains(secret),
                "{secret} leaked in {pkg}: {t} / {j}"
            );
        }
        assert!(j.contains(r#""serverAddress":"registry.example""#));
        assert!(j.contains(r#""password":"<redacted>""#));
    }
}

#[test]
fn redaction_off_shows_credentials() {
    let opts = RenderOptions {
        redact: false,
        ..RenderOptions::default()
    };
    let d = decode_as("runtime.v1.PullImageRequest", &pull_request("runtime.v1"));
    let t = to_text(&d, &opts);
    assert!(t.contains(r#"username:"alice" password:"hunter2""#), "{t}");
    assert_eq!(json_with(&d, &opts)["auth"]["registryToken"], "regtok");
}

#[test]
fn transfer_credentials_headers_and_json_keys_are_redacted() {
    let bytes = msg("containerd.types.transfer.AuthResponse")
        .set("authType", Value::EnumNumber(1))
        .s("secret", "s3cr3t")
        .s("username", "bob")
        .bytes();
    let d = decode_as("containerd.types.transfer.AuthResponse", &bytes);
    let t = text(&d);
    assert!(t.contains("secret:<redacted> username:<redacted>"), "{t}");

    let bytes = msg("containerd.types.transfer.RegistryResolver")
        .map(
            "headers",
            &[("Authorization", "Bearer abc"), ("User-Agent", "ctr")],
        )
        .bytes();
    let d = decode_as("containerd.types.transfer.RegistryResolver", &bytes);
    assert_eq!(
        text(&d),
        r#"headers {key:"Authorization" value:<redacted>} headers {key:"User-Agent" value:"ctr"}"#
    );
    assert_eq!(json(&d)["headers"]["Authorization"], "<redacted>");

    let meta = br#"{"Config":{"registry_password":"pw","name":"x"}}"#.to_vec();
    let bytes = msg("containerd.services.containers.v1.Container")
        .m(
            "spec",
            any("github.com/containerd/cri/pkg/store/sandbox/Metadata", meta),
        )
        .bytes();
    let d = decode_as("containerd.services.containers.v1.Container", &bytes);
    let t = text(&d);
    assert!(
        t.contains(r#""registry_password":"<redacted>""#) && !t.contains(r#""pw""#),
        "{t}"
    );
    assert_eq!(
        json(&d)["spec"]["value"]["Config"]["registry_password"],
        "<redacted>"
    );
}

// ---- schema-less ----

#[test]
fn schema_less_unknown_method() {
    let mut bytes = ld(1, b"abc");
    bytes.extend(ld(2, &[0x08, 0x05]));
    bytes.extend([0x18, 0x01, 0x18, 0x02]); // field 3 twice
    bytes.extend([0x25, 0x2a, 0, 0, 0]); // field 4 fixed32 42
    let d = decode(None, &bytes);
    assert!(d.is_schema_less());
    assert!(matches!(
        d,
        Decoded::Raw {
            why: Fallback::NoSchema,
            ..
        }
    ));
    assert_eq!(text(&d), r#"1:"abc" 2:{1:5} 3:1 3:2 4:0x0000002a"#);
    assert_eq!(
        json_to_string(&json(&d)),
        r#"{"1":"abc","2":{"1":5},"3":[1,2],"4":42}"#
    );
}

#[test]
fn schema_mismatch_falls_back_to_raw() {
    // VersionResponse.version is a string; a varint in field 1 cannot be it.
    let bytes = [0x08, 0x96, 0x01];
    let d = decode_as("runtime.v1.VersionResponse", &bytes);
    match &d {
        Decoded::Raw {
            why: Fallback::Mismatch { expected, .. },
            ..
        } => {
            assert_eq!(expected, "runtime.v1.VersionResponse")
        }
        other => panic!("expected raw fallback, got {other:?}"),
    }
    assert_eq!(text(&d), "1:150");
}

#[test]
fn not_protobuf_is_a_hex_preview() {
    let bytes = [0x0f, 0xff, 0xee]; // wire type 7
    let d = decode_as("runtime.v1.VersionResponse", &bytes);
    assert!(matches!(d, Decoded::Opaque { .. }));
    assert_eq!(text(&d), "hex:0fffee(3 bytes)");
    assert_eq!(json_to_string(&json(&d)), r#"{"@hex":"0fffee","@len":3}"#);
}

#[test]
fn unresolvable_any_is_decoded_schema_less() {
    let inner = ld(1, b"x");
    let bytes = msg("containerd.types.Envelope")
        .m("event", any("example.com/Unknown", inner))
        .bytes();
    let d = decode_as("containerd.types.Envelope", &bytes);
    assert_eq!(text(&d), r#"event {[example.com/Unknown] {1:"x"}}"#);
    assert_eq!(json(&d)["event"]["@raw"]["1"], "x");
}

// ---- hostile input ----

#[test]
fn nested_ten_thousand_deep_schema_less() {
    let mut bytes = vec![0x08, 0x01];
    for _ in 0..10_000 {
        bytes = ld(1, &bytes);
    }
    let d = decode(None, &bytes);
    let t = text(&d);
    assert!(t.starts_with("1:{1:{1:{"), "{}", &t[..40]);
    assert!(t.len() <= RenderOptions::default().max_text_len + '…'.len_utf8());
    let _ = json_to_string(&json(&d));
    // The schema path: prost's recursion limit rejects it, the raw reader takes over.
    let d = decode_as("google.protobuf.Struct", &bytes);
    assert!(d.is_schema_less());
    let _ = text(&d);
}

#[test]
fn nested_ten_thousand_deep_through_a_recursive_schema() {
    // Struct{fields{key:"a" value:Value{struct_value:Struct{...}}}}, 10,000 levels.
    let mut s = Vec::new();
    for _ in 0..10_000 {
        let value = ld(5, &s);
        let mut entry = ld(1, b"a");
        entry.extend(ld(2, &value));
        s = ld(1, &entry);
    }
    let desc = schema().message("google.protobuf.Struct").expect("type");
    let d = decode(Some(&desc), &s);
    assert!(d.is_schema_less());
    let t = text(&d);
    assert!(!t.is_empty());
    let _ = json(&d);
    assert!(!fits(&desc, &s).parsed);

    // Under prost's limit the schema is used, and our depth limit cuts the rendering.
    let mut s = Vec::new();
    for _ in 0..40 {
        let value = ld(5, &s);
        let mut entry = ld(1, b"a");
        entry.extend(ld(2, &value));
        s = ld(1, &entry);
    }
    let d = decode(Some(&desc), &s);
    assert!(!d.is_schema_less());
    let opts = RenderOptions {
        max_depth: 8,
        ..RenderOptions::default()
    };
    let t = to_text(&d, &opts);
    assert!(t.contains('…'), "{t}");
    let j = json_to_string(&json_with(&d, &opts));
    assert!(j.contains('…'), "{j}");
}

#[test]
fn nested_groups_ten_thousand_deep() {
    let bytes = vec![0x0b; 10_000]; // start-group field 1, never closed
    let d = decode(None, &bytes);
    assert!(matches!(d, Decoded::Opaque { .. }));
    assert!(text(&d).starts_with("hex:0b0b"));
}

#[test]
fn any_inside_any_stops_at_the_limit() {
    let mut bytes = msg("containerd.events.TaskOOM")
        .s("container_id", "deep")
        .bytes();
    let mut url = "containerd.events.TaskOOM".to_owned();
    for _ in 0..20 {
        bytes = msg("containerd.types.Envelope")
            .m("event", any(&url, bytes))
            .bytes();
        url = "containerd.types.Envelope".to_owned();
    }
    let d = decode_as("containerd.types.Envelope", &bytes);
    let t = text(&d);
    assert_eq!(
        t.matches("[containerd.types.Envelope]").count(),
        RenderOptions::default().max_any_depth
    );
    assert!(
        t.contains(r#"type_url:"containerd.types.Envelope" value:"#),
        "{t}"
    );
    let _ = json(&d);
}

#[test]
fn escape_sequences_never_reach_the_terminal() {
    let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\u{9b}31m\u{202e}gnp.exe\u{7f}";
    let bytes = msg("runtime.v1.VersionResponse")
        .s("version", evil)
        .s("runtime_name", "ok")
        .bytes();
    let d = decode_as("runtime.v1.VersionResponse", &bytes);
    let t = text(&d);
    assert_eq!(
        t,
        r#"version:"\x1b[2J\x1b]0;pwned\x07\r\u{9b}31m\u{202e}gnp.exe\x7f" runtime_name:"ok""#
    );
    no_raw_controls(&t);
    let j = json_to_string(&json(&d));
    no_raw_controls(&j);
    assert!(
        j.contains(r#"\u001b[2J"#)
            && j.contains(r#"\u009b"#)
            && j.contains(r#"\u202e"#)
            && j.contains(r#"\u007f"#)
    );
    // Still valid JSON with the original string inside.
    let back: serde_json::Value = serde_json::from_str(&j).expect("valid JSON");
    assert_eq!(back["version"], evil);

    // Schema-less text and map keys too.
    let d = decode(None, &ld(1, "\u{1b}[2Jx".as_bytes()));
    let t = text(&d);
    no_raw_controls(&t);
    let bytes = msg("containerd.services.containers.v1.Container")
        .map("labels", &[("\u{1b}[31mk", "\u{1b}v")])
        .bytes();
    let t = text(&decode_as(
        "containerd.services.containers.v1.Container",
        &bytes,
    ));
    assert_eq!(t, r#"labels {key:"\x1b[31mk" value:"\x1bv"}"#);
    assert_eq!(
        crate::escape::escape_str("\u{e0041}\u{200b}"),
        r"\u{e0041}\u{200b}"
    );
}

#[test]
fn text_output_is_capped() {
    let long = "x".repeat(10_000);
    let bytes = msg("runtime.v1.VersionResponse")
        .s("version", &long)
        .s("runtime_name", "é".repeat(100).as_str())
        .bytes();
    let d = decode_as("runtime.v1.VersionResponse", &bytes);
    let opts = RenderOptions {
        max_text_len: 50,
        ..RenderOptions::default()
    };
    let t = to_text(&d, &opts);
    assert!(t.ends_with('…'));
    assert!(t.len() <= 50 + '…'.len_utf8());
    // Cut on a character boundary inside multi-byte text.
    let bytes = msg("runtime.v1.VersionResponse")
        .s("version", "é".repeat(100).as_str())
        .bytes();
    let t = to_text(
        &decode_as("runtime.v1.VersionResponse", &bytes),
        &RenderOptions {
            max_text_len: 20,
            ..opts
        },
    );
    assert!(t.ends_with('…') && t.len() <= 20 + '…'.len_utf8(), "{t}");
}

// ---- user-supplied protos ----

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "containerdsnoop-schema-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("acme/v1")).expect("temp dir");
    dir
}

const USER_PROTO: &str = r#"
syntax = "proto3";
package acme.v1;
import "google/protobuf/any.proto";
import "github.com/containerd/containerd/api/types/mount.proto";
service Widgets { rpc Make(MakeRequest) returns (MakeResponse); }
message MakeRequest { string name = 1; repeated containerd.types.Mount mounts = 2; google.protobuf.Any extra = 3; string api_token = 4; }
message MakeResponse { uint64 id = 1; }
"#;

#[test]
fn add_proto_paths_directory_and_file() {
    let dir = temp_dir("dir");
    std::fs::write(dir.join("acme/v1/widgets.proto"), USER_PROTO).expect("write");
    let mut s = schema();
    s.add_proto_paths(std::slice::from_ref(&dir))
        .expect("compiles against the embedded pool");
    let m = s.method("/acme.v1.Widgets/Make").expect("user method");
    let bytes = DynamicMessage::new(m.input.clone());
    let mut req = bytes;
    req.set_field_by_name("name", Value::String("w".into()));
    req.set_field_by_name("api_token", Value::String("t0k".into()));
    let d = decode(Some(&m.input), &req.encode_to_vec());
    assert_eq!(text(&d), r#"name:"w" api_token:<redacted>"#);
    // The embedded methods are still there.
    assert!(s.method("/runtime.v1.RuntimeService/Version").is_some());
    // The embedded pool is decoded once and shared: another schema made from it does not
    // see what this one added.
    assert!(schema().method("/acme.v1.Widgets/Make").is_none());

    // A single file works too, named relative to its directory.
    let file_dir = temp_dir("file");
    let file = file_dir.join("acme/v1/widgets.proto");
    std::fs::write(&file, USER_PROTO).expect("write");
    let mut s = schema();
    s.add_proto_paths(&[file]).expect("single file");
    assert!(s.method("/acme.v1.Widgets/Make").is_some());

    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(file_dir);
}

#[test]
fn add_proto_paths_reports_errors() {
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("acme/v1/bad.proto"),
        "syntax = \"proto3\"; message {",
    )
    .expect("write");
    let mut s = schema();
    let err = s
        .add_proto_paths(std::slice::from_ref(&dir))
        .expect_err("syntax error");
    assert!(matches!(err, SchemaError::Compile { .. }), "{err}");
    assert!(err.to_string().contains("bad.proto"), "{err}");

    let err = s
        .add_proto_paths(&[dir.join("missing")])
        .expect_err("missing path");
    assert!(matches!(err, SchemaError::Io { .. }));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = s.add_proto_paths(&[empty]).expect_err("no protos");
    assert!(matches!(err, SchemaError::NoProtoFiles(_)));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn add_descriptor_set_is_idempotent_and_rejects_garbage() {
    let mut s = schema();
    s.add_descriptor_set(EMBEDDED_DESCRIPTORS)
        .expect("same files are skipped");
    assert!(s.method("/containerd.task.v2.Task/Create").is_some());
    assert!(matches!(
        s.add_descriptor_set(b"\xff\xff\xff"),
        Err(SchemaError::DescriptorSet(_))
    ));
}

#[test]
fn add_proto_paths_with_the_vendored_protos_is_harmless() {
    // Users may point --proto at a checkout of the same APIs: files identical to embedded ones
    // resolve to the embedded descriptors and are skipped instead of clashing.
    let protos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../protos");
    let mut s = schema();
    s.add_proto_paths(std::slice::from_ref(&protos))
        .expect("same files load again");
    assert!(s.method("/runtime.v1.RuntimeService/Version").is_some());

    // The same file under another name (wrong include root) defines the names twice.
    let err = s
        .add_proto_paths(&[protos.join("k8s.io")])
        .expect_err("duplicate names");
    assert!(matches!(err, SchemaError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("already defined"), "{err}");
}
