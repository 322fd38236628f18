//! End-to-end with a real containerd (started on a temporary socket) and its real clients: `ctr`
//! (version, namespaces, image import, `ctr run`, the events subscription) and a CRI client.
//! Every call must appear with the right method and the field values the test knows. Needs root
//! (skipped otherwise, failed in CI).

mod support;

use std::{path::Path, time::Duration};

use support::{BUSYBOX_REF, Containerd, Need, SANDBOX_REF, Tracer, busybox_image_tar, cri};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");

fn start_tracer(args: &[&str]) -> Tracer {
    Tracer::started(Path::new(TRACER), args)
}

fn stop_tracer(t: Tracer) -> (String, String) {
    t.stop_ok()
}

fn json_rows(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON row {l}: {e}")))
        .collect()
}

fn rows_of<'a>(
    rows: &'a [serde_json::Value],
    kind: &str,
    method: &str,
) -> Vec<&'a serde_json::Value> {
    rows.iter()
        .filter(|r| r["type"] == kind && r["method"] == method)
        .collect()
}

/// A field by its proto name or its JSON (lowerCamelCase) name.
fn field<'a>(v: &'a serde_json::Value, proto_name: &str) -> &'a serde_json::Value {
    if !v[proto_name].is_null() {
        return &v[proto_name];
    }
    let mut camel = String::new();
    let mut upper = false;
    for c in proto_name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            camel.extend(c.to_uppercase());
            upper = false;
        } else {
            camel.push(c);
        }
    }
    &v[camel]
}

fn server_version(containerd: &Containerd) -> String {
    let out = containerd
        .ctr(&["version"])
        .and_then(|r| r.ok())
        .expect("ctr version");
    let server = out.split("Server:").nth(1).expect("server section");
    server
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Version:")
                .map(|v| v.trim().to_string())
        })
        .expect("server version")
}

#[test]
fn raw_capture_shows_the_ctr_preface_in_both_directions() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let tracer = start_tracer(&["--raw", "-o", "json", &sock]);
    server_version(&containerd);
    let (stdout, _) = stop_tracer(tracer);
    let records = json_rows(&stdout);
    let preface = records
        .iter()
        .find(|r| r["comm"] == "ctr" && r["stream_pos"] == 0 && r["event"] == "data")
        .expect("a record from ctr at stream position 0");
    let data = base64_decode(preface["data"].as_str().expect("data"));
    assert!(
        data.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        "{data:?}"
    );
    let ctr_pid = preface["pid"].as_u64().expect("pid");
    assert_eq!(
        preface["peer_pid"].as_u64(),
        Some(containerd.pid() as u64),
        "ctr's peer is containerd"
    );
    let from_containerd: Vec<_> = records
        .iter()
        .filter(|r| {
            r["pid"].as_u64() == Some(containerd.pid() as u64)
                && r["peer_pid"].as_u64() == Some(ctr_pid)
        })
        .collect();
    assert!(
        !from_containerd.is_empty(),
        "containerd's replies to ctr are captured"
    );
    assert!(records.iter().all(|r| r["path"] == sock.as_str()));
}

#[test]
fn ctr_calls_are_decoded() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let tar = busybox_image_tar(containerd.dir()).expect("busybox image");
    let tracer = start_tracer(&["-o", "json", &sock]);

    let version = server_version(&containerd);
    containerd
        .ctr(&["namespaces", "create", "e2e-ns"])
        .and_then(|r| r.ok())
        .expect("namespace");
    // The client-side import (Content/Write, Images/Create); 2.x needs `--local` for it (the
    // Transfer path is e2e_runtimes' business).
    let import = [
        support::runtime::ctr_import_local_args(),
        &[tar.to_str().expect("utf-8")],
    ]
    .concat();
    containerd
        .ctr(&import)
        .and_then(|r| r.ok())
        .expect("import");
    // The events subscription, open while a container runs.
    let mut events = std::process::Command::new("ctr")
        .args(["--address", &sock, "events"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ctr events");
    std::thread::sleep(Duration::from_millis(300));
    let hello = containerd
        .ctr(&[
            "run",
            "--rm",
            BUSYBOX_REF,
            "e2e-decode-run",
            "echo",
            "hello",
        ])
        .and_then(|r| r.ok())
        .expect("ctr run");
    assert_eq!(hello.trim(), "hello");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY-free: kill(2) on our own child.
    unsafe { libc::kill(events.id() as i32, libc::SIGTERM) };
    let _ = events.wait();
    let (stdout, stderr) = stop_tracer(tracer);
    let rows = json_rows(&stdout);

    let resp = rows_of(
        &rows,
        "RESP",
        "/containerd.services.version.v1.Version/Version",
    );
    assert!(!resp.is_empty(), "Version response row");
    assert_eq!(
        resp[0]["message"]["version"],
        version.as_str(),
        "the version ctr printed"
    );

    let create_ns = rows_of(
        &rows,
        "REQ",
        "/containerd.services.namespaces.v1.Namespaces/Create",
    );
    assert_eq!(create_ns[0]["message"]["namespace"]["name"], "e2e-ns");

    let image = rows_of(&rows, "REQ", "/containerd.services.images.v1.Images/Create");
    assert!(
        image
            .iter()
            .any(|r| r["message"]["image"]["name"] == BUSYBOX_REF),
        "image create: {image:?}"
    );
    let writes = rows_of(
        &rows,
        "REQ",
        "/containerd.services.content.v1.Content/Write",
    );
    assert!(
        writes.iter().any(|r| r["index"].as_u64() > Some(0)),
        "streaming Content/Write messages are indexed"
    );

    let container = rows_of(
        &rows,
        "REQ",
        "/containerd.services.containers.v1.Containers/Create",
    );
    let c = &container.first().expect("container create")["message"]["container"];
    assert_eq!(c["id"], "e2e-decode-run");
    assert_eq!(c["image"], BUSYBOX_REF);
    // The OCI spec is an Any holding JSON: shown as JSON, with the command in it.
    let spec = serde_json::to_string(&c["spec"]).expect("spec");
    assert!(
        spec.contains("\"echo\"") && spec.contains("\"hello\""),
        "spec: {spec}"
    );
    for m in ["Create", "Start", "Delete"] {
        let method = format!("/containerd.services.tasks.v1.Tasks/{m}");
        let ends = rows_of(&rows, "END", &method);
        assert!(!ends.is_empty(), "{method} ends");
        assert_eq!(ends[0]["status_code"], 0, "{method} OK");
        assert_eq!(ends[0]["namespace"], "default");
        assert!(ends[0]["latency_ns"].as_u64().is_some_and(|l| l > 0));
    }

    let events = rows_of(
        &rows,
        "RESP",
        "/containerd.services.events.v1.Events/Subscribe",
    );
    let topics: Vec<&str> = events
        .iter()
        .filter_map(|r| r["message"]["topic"].as_str())
        .collect();
    assert!(
        topics.contains(&"/tasks/start") && topics.contains(&"/tasks/exit"),
        "topics: {topics:?}"
    );
    let exit = events
        .iter()
        .find(|r| r["message"]["topic"] == "/tasks/exit")
        .expect("exit event");
    let event = &exit["message"]["event"];
    assert!(
        event["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with("containerd.events.TaskExit")),
        "{event}"
    );
    assert_eq!(field(event, "container_id"), "e2e-decode-run");
    assert!(
        events.iter().filter_map(|r| r["index"].as_u64()).max() >= Some(2),
        "stream messages indexed"
    );

    assert!(
        rows.iter().all(|r| r["type"] != "NOTE"),
        "no connection notices: {stderr}"
    );
    assert!(stderr.contains("lost 0 records"), "{stderr}");
}

#[test]
fn cri_calls_are_decoded() {
    support::require!(Need::Root, Need::Containerd, Need::TestPeer);
    let containerd = Containerd::start().expect("containerd starts");
    containerd.prepare_cri().expect("sandbox image");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let version = server_version(&containerd);
    let tracer = start_tracer(&["-o", "json", &sock]);
    cri(containerd.socket(), &["version"]).expect("Version");
    cri(containerd.socket(), &["list-containers"]).expect("ListContainers");
    cri(containerd.socket(), &["list-images"]).expect("ListImages");
    let pod = cri(containerd.socket(), &["run-pod-sandbox", "e2e-cri-pod"]).expect("RunPodSandbox");
    let pod = pod.trim().to_string();
    cri(containerd.socket(), &["stop-remove-pod", &pod]).expect("stop/remove");
    let (stdout, _) = stop_tracer(tracer);
    let rows = json_rows(&stdout);

    let v = rows_of(&rows, "RESP", "/runtime.v1.RuntimeService/Version");
    let m = &v.first().expect("Version response")["message"];
    assert_eq!(field(m, "runtime_name"), "containerd");
    assert_eq!(field(m, "runtime_version"), version.as_str());
    assert_eq!(v[0]["message_type"], "runtime.v1.VersionResponse");

    assert!(!rows_of(&rows, "END", "/runtime.v1.RuntimeService/ListContainers").is_empty());
    let images = rows_of(&rows, "RESP", "/runtime.v1.ImageService/ListImages");
    let listed = serde_json::to_string(&images.first().expect("ListImages response")["message"])
        .expect("json");
    assert!(listed.contains(SANDBOX_REF), "{listed}");

    let run = rows_of(&rows, "REQ", "/runtime.v1.RuntimeService/RunPodSandbox");
    let config = field(
        &run.first().expect("RunPodSandbox request")["message"],
        "config",
    );
    assert_eq!(config["metadata"]["name"], "e2e-cri-pod");
    let run_resp = rows_of(&rows, "RESP", "/runtime.v1.RuntimeService/RunPodSandbox");
    assert_eq!(
        field(&run_resp[0]["message"], "pod_sandbox_id"),
        pod.as_str()
    );
    for m in ["StopPodSandbox", "RemovePodSandbox"] {
        let ends = rows_of(&rows, "END", &format!("/runtime.v1.RuntimeService/{m}"));
        assert_eq!(
            ends.first().unwrap_or_else(|| panic!("{m} end"))["status_code"],
            0
        );
    }
}

#[test]
fn table_output_and_filters() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let tracer = start_tracer(&["-m", "Version", "-t", "resp", &sock]);
    server_version(&containerd);
    containerd
        .ctr(&["namespaces", "ls"])
        .and_then(|r| r.ok())
        .expect("ns ls");
    let (stdout, _) = stop_tracer(tracer);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("TIMESTAMP       COMM"),
        "header: {}",
        lines[0]
    );
    assert_eq!(
        lines.len(),
        2,
        "only the Version response passes the filters:\n{stdout}"
    );
    assert!(
        lines[1].contains("containerd")
            && lines[1].contains(" RESP ")
            && lines[1].contains("/Version")
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

#[test]
fn closed_pipe_ends_the_tracer_with_status_0() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let err_path = containerd.dir().join("tracer-pipe.err");
    let mut child = std::process::Command::new(TRACER)
        .args(["-o", "json", &sock])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn tracer");
    support::wait_until(Duration::from_secs(30), "the tracer to attach", || {
        Ok(std::fs::read_to_string(&err_path).is_ok_and(|e| e.contains("Tracing ")))
    })
    .expect("tracer attaches");
    // The reader goes away (like `containerdsnoop | head -1` after its line).
    drop(child.stdout.take());
    server_version(&containerd);
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(10))
        .expect("wait")
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("tracer kept running after its stdout closed")
        });
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
}

/// The fields of a row that a capture file must reproduce.
fn projection(r: &serde_json::Value) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {}",
        r["time"],
        r["type"],
        r["comm"],
        r["pid"],
        r["peer_pid"],
        r["stream"],
        r["method"],
        r["message_text"],
        r["status_code"]
    )
}

#[test]
fn pcap_export_decodes_in_tshark_and_reads_back_as_the_same_rows() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let file = containerd.dir().join("capture.pcapng");
    let file_s = file.to_str().expect("utf-8").to_string();
    let tracer = start_tracer(&["-o", "json", "-w", &file_s, &sock]);
    server_version(&containerd);
    containerd
        .ctr(&["namespaces", "create", "pcap-ns"])
        .and_then(|r| r.ok())
        .expect("ns");
    let (stdout, _) = stop_tracer(tracer);
    let live = json_rows(&stdout);
    assert!(live.len() >= 9, "live rows: {stdout}");

    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file)
        .expect("pcap file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "capture files are private");

    // Stock tshark, with the one documented option, finds the same gRPC calls.
    if support::which("tshark").is_some() {
        let out = support::run(
            {
                let mut c = std::process::Command::new("tshark");
                c.args([
                    "-r",
                    &file_s,
                    "-d",
                    "tcp.port==50051,http2",
                    "-Y",
                    "http2.type == 1",
                    "-T",
                    "fields",
                    "-e",
                    "http2.headers.path",
                ]);
                c
            },
            Duration::from_secs(60),
        )
        .expect("tshark");
        let paths = out.stdout();
        for r in live.iter().filter(|r| r["type"] == "REQ") {
            let method = r["method"].as_str().expect("method");
            assert!(
                paths.contains(method),
                "tshark sees {method}:\n{paths}\n{}",
                out.stderr()
            );
        }
    } else if support::skips_are_failures() {
        panic!("tshark is missing");
    }

    // Reading the file back gives the live rows (-r needs no root and no kernel).
    let out = support::run(
        {
            let mut c = std::process::Command::new(TRACER);
            c.args(["-r", &file_s, "-o", "json", "-q"]);
            c
        },
        Duration::from_secs(60),
    )
    .expect("-r");
    assert!(out.output.status.success(), "{}", out.stderr());
    let offline = json_rows(&out.stdout());
    let live: Vec<String> = live.iter().map(projection).collect();
    let offline: Vec<String> = offline.iter().map(projection).collect();
    assert_eq!(offline, live);
}
