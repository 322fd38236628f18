//! End-to-end for `-x/--errors` (issue 14): real clients making calls that succeed and calls that
//! fail against real daemons — `ctr` (a NotFound, a `ctr events` killed mid-call) and the docker
//! CLI (a 404) against containerd and dockerd, and a Python grpcio client that cancels a
//! streaming call (RST_STREAM). Each run is traced twice at once, with and without `-x`: the
//! `-x` output must be exactly the rows of the calls that failed in the full output. The exit
//! summary's clients table is checked against the rows. Needs root (skipped otherwise, failed
//! in CI).

mod support;

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Containerd, Dockerd, Need, Tracer, TracerOutput, containerd_bin};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");
const GET: &str = "/containerd.services.containers.v1.Containers/Get";
const SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";
const VERSION: &str = "/containerd.services.version.v1.Version/Version";

fn rows(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect()
}

/// The same sockets traced with `-x` and without, at once.
struct Pair {
    failed: Tracer,
    all: Tracer,
}

impl Pair {
    fn start(sockets: &[&str]) -> Pair {
        let spawn = |extra: &[&str]| {
            let args: Vec<&str> = ["-o", "json"]
                .iter()
                .chain(extra)
                .chain(sockets)
                .copied()
                .collect();
            let mut t = Tracer::spawn(Path::new(TRACER), &args).expect("spawn tracer");
            t.wait_ready(Duration::from_secs(30))
                .expect("tracer attaches");
            t
        };
        Pair {
            failed: spawn(&["-x"]),
            all: spawn(&[]),
        }
    }

    /// Waits until the full tracer has printed a row of `kind` for `method`.
    fn wait_row(&self, kind: &str, method: &str) {
        let start = Instant::now();
        while !self
            .all
            .stdout_so_far()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|r| r["type"] == kind && r["method"] == method)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no {kind} row for {method}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops both; (with -x, without).
    fn stop(self) -> (TracerOutput, TracerOutput) {
        // The tracers flush every 500 ms: let the last rows out before stopping.
        std::thread::sleep(Duration::from_millis(500));
        let failed = self.failed.stop(Duration::from_secs(10)).expect("stops");
        let all = self.all.stop(Duration::from_secs(10)).expect("stops");
        for out in [&failed, &all] {
            assert!(
                out.status.is_some_and(|s| s.success()),
                "{:?}: {}",
                out.status,
                out.stderr
            );
        }
        (failed, all)
    }
}

/// A connection across both tracers: its socket inodes, lower first (the tracers number
/// connections each in its own order, and each orders the sides by its own key).
fn conn_of(r: &Value) -> String {
    let mut inodes: Vec<u64> = r["sock_inodes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    inodes.sort_unstable();
    format!("{inodes:?}")
}

/// A call across both tracers: its connection and its stream.
fn call_of(r: &Value) -> (String, u64) {
    (conn_of(r), r["stream"].as_u64().unwrap_or(0))
}

/// What identifies a row across both tracers (not its time: each tracer's probe reads the
/// clock for itself).
fn row_id(r: &Value) -> String {
    format!(
        "{} {} {} pid={} {} index={} status={}",
        conn_of(r),
        r["stream"],
        r["type"],
        r["pid"],
        r["method"],
        r["index"],
        r["status_code"]
    )
}

/// Whether an END row says its call failed: a failure status, or an end the call did not send
/// itself, unless that end is the tracer stopping (the call was merely still open) or the
/// capture not seeing the status (dockerd's connections to containerd predate the tracers:
/// their header tables are joined late).
fn failed_end(end: &Value) -> bool {
    let code = end["status_code"].as_u64();
    let failure_code = match code {
        Some(c) if end["protocol"] == "http1" => c >= 400,
        Some(c) => c != 0,
        None => false,
    };
    let cut = end["abnormal"].as_str().is_some_and(|a| {
        !a.contains("tracer stopped")
            && !a.contains("from before decoding started")
            && !a.contains("capture")
    });
    failure_code || cut
}

/// The rows of `all` that belong to calls that failed, in order (notices are no call's).
fn rows_of_failed_calls(all: &[Value]) -> Vec<Value> {
    let failed: Vec<(String, u64)> = all
        .iter()
        .filter(|r| r["type"] == "END" && failed_end(r))
        .map(call_of)
        .collect();
    all.iter()
        .filter(|r| r["type"] != "NOTE" && failed.contains(&call_of(r)))
        .cloned()
        .collect()
}

/// Asserts the `-x` rows are exactly the rows of the failed calls of the full output.
fn assert_exactly_the_failed_calls(failed: &[Value], all: &[Value]) {
    let mut got: Vec<String> = failed.iter().map(row_id).collect();
    let mut want: Vec<String> = rows_of_failed_calls(all).iter().map(row_id).collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "-x rows vs the failed calls' rows of the full output"
    );
    // And each call's rows in the order the full output has them (END last, but for a
    // request the server answered before it was all sent).
    let order = |rows: &[Value]| {
        let mut calls: std::collections::BTreeMap<(String, u64), Vec<String>> = Default::default();
        for r in rows.iter().filter(|r| r["type"] != "NOTE") {
            calls.entry(call_of(r)).or_default().push(row_id(r));
        }
        calls
    };
    assert_eq!(order(failed), order(&rows_of_failed_calls(all)));
}

/// The rows of the calls whose END has `method`'s name and whose REQ rows came from `comm`.
fn calls_from(rows: &[Value], comm: &str) -> Vec<(String, u64)> {
    let mut calls: Vec<(String, u64)> = rows
        .iter()
        .filter(|r| r["type"] == "REQ" && r["comm"] == comm)
        .map(call_of)
        .collect();
    calls.sort();
    calls.dedup();
    calls
}

/// The cells of the clients-table line of `client` in a summary.
fn client_line(stderr: &str, client: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find(|l| l.split('|').next().map(str::trim) == Some(client) && l.matches('|').count() == 3)
        .unwrap_or_else(|| panic!("no clients-table line for {client} in\n{stderr}"));
    line.split('|').map(|c| c.trim().to_string()).collect()
}

fn types_of<'a>(rows: &'a [Value], method: &str) -> Vec<&'a str> {
    rows.iter()
        .filter(|r| r["method"] == method)
        .map(|r| r["type"].as_str().unwrap_or(""))
        .collect()
}

#[test]
fn errors_only_shows_exactly_the_failed_calls_of_ctr_and_docker() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let containerd = Containerd::start().expect("containerd starts");
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    let ctr_sock = containerd.socket().to_str().expect("utf-8").to_string();
    let docker_sock = dockerd.socket().to_str().expect("utf-8").to_string();
    let pair = Pair::start(&[&ctr_sock, &docker_sock]);

    containerd
        .ctr(&["version"])
        .and_then(|r| r.ok())
        .expect("ctr version");
    let missing = containerd
        .ctr(&["containers", "info", "e2e-missing"])
        .expect("ctr runs");
    assert!(!missing.output.status.success(), "no such container");
    dockerd
        .docker(&["ps", "-a"])
        .and_then(|r| r.ok())
        .expect("docker ps");
    let missing = dockerd
        .docker(&["container", "inspect", "e2e-missing"])
        .expect("docker runs");
    assert!(!missing.output.status.success(), "no such container");
    // A streaming call cut short: `ctr events` killed while subscribed (connection lost).
    let events = || {
        Command::new(containerd_bin("ctr"))
            .args(["--address", &ctr_sock, "events"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events")
    };
    let mut killed = events();
    pair.wait_row("REQ", SUBSCRIBE);
    killed.kill().expect("kill ctr events");
    let _ = killed.wait();
    pair.wait_row("END", SUBSCRIBE);
    // Another subscription still open when tracing stops: it has not failed.
    let mut open = events();
    let start = Instant::now();
    while rows(&pair.all.stdout_so_far())
        .iter()
        .filter(|r| r["type"] == "REQ" && r["method"] == SUBSCRIBE)
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "second Subscribe"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (x, full) = pair.stop();
    let _ = open.kill();
    let _ = open.wait();
    let failed = rows(&x.stdout_str());
    let all = rows(&full.stdout_str());

    assert_exactly_the_failed_calls(&failed, &all);
    // What each client did, named.
    let get_end = failed
        .iter()
        .find(|r| r["type"] == "END" && r["method"] == GET)
        .expect("the NotFound call");
    assert_eq!(get_end["status_code"], 5, "{get_end}");
    assert_eq!(types_of(&failed, GET), ["REQ", "END"]);
    let inspect = |r: &&Value| {
        r["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("GET ") && m.ends_with("/containers/e2e-missing/json"))
    };
    let not_found: Vec<&Value> = failed.iter().filter(inspect).collect();
    assert_eq!(
        not_found
            .iter()
            .map(|r| r["type"].as_str())
            .collect::<Vec<_>>(),
        [Some("REQ"), Some("RESP"), Some("END")],
        "{not_found:#?}"
    );
    assert_eq!(not_found[2]["status_code"], 404);
    let subscribe_ends: Vec<&Value> = failed
        .iter()
        .filter(|r| r["type"] == "END" && r["method"] == SUBSCRIBE)
        .collect();
    assert_eq!(subscribe_ends.len(), 1, "the killed one, not the open one");
    assert!(
        subscribe_ends[0]["abnormal"]
            .as_str()
            .is_some_and(|a| a.contains("connection closed")),
        "{}",
        subscribe_ends[0]
    );
    // The calls that succeeded are in the full output, and not in -x's.
    assert!(
        all.iter()
            .any(|r| r["type"] == "END" && r["method"] == VERSION && r["status_code"] == 0)
    );
    assert!(!failed.iter().any(|r| r["method"] == VERSION));
    assert!(all.iter().any(|r| {
        r["type"] == "END"
            && r["status_code"] == 200
            && r["method"]
                .as_str()
                .is_some_and(|m| m.contains("/containers/json"))
    }));
    assert!(!failed.iter().any(|r| {
        r["method"]
            .as_str()
            .is_some_and(|m| m.contains("/containers/json"))
    }));
    // The subscription open at the end is dropped, and said.
    let open_at_end: u64 = x
        .stderr
        .split("not known to have failed: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the -x summary line in\n{}", x.stderr));
    assert!(open_at_end >= 1, "{}", x.stderr);

    // The clients table: every call a client made, and those that failed.
    for client in ["ctr", "docker"] {
        let made = calls_from(&all, client);
        let failed_calls = calls_from(&failed, client);
        assert!(!failed_calls.is_empty(), "{client} had failed calls");
        for summary in [&x.stderr, &full.stderr] {
            let line = client_line(summary, client);
            assert_eq!(line[1], made.len().to_string(), "{client} calls: {line:?}");
            assert_eq!(
                line[2],
                failed_calls.len().to_string(),
                "{client} errors: {line:?}"
            );
            assert!(line[3].ends_with('s'), "a p99 latency: {line:?}");
        }
    }
}

/// A grpcio server and client: a unary call that succeeds, and a server-streaming call that
/// the client cancels after its first message (grpc-core resets the stream).
const GRPCIO_CANCEL: &str = r#"
import sys, threading
from concurrent import futures
import grpc

target = sys.argv[1]
ident = lambda b: b
release = threading.Event()

def version(request, context):
    return b"\x0a\x0514-ok"

def subscribe(request, context):
    yield b"\x12\x07default"
    release.wait(10)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((
    grpc.method_handlers_generic_handler("containerd.services.version.v1.Version", {
        "Version": grpc.unary_unary_rpc_method_handler(version, ident, ident)}),
    grpc.method_handlers_generic_handler("containerd.services.events.v1.Events", {
        "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, ident, ident)}),
))
server.add_insecure_port(target)
server.start()
print("listening", flush=True)
sys.stdin.readline()
with grpc.insecure_channel(target) as ch:
    ch.unary_unary("/containerd.services.version.v1.Version/Version", ident, ident)(b"")
    stream = ch.unary_stream("/containerd.services.events.v1.Events/Subscribe", ident, ident)(b"")
    next(stream)
    stream.cancel()
    release.set()
server.stop(1).wait()
print("done", flush=True)
"#;

#[test]
fn errors_only_shows_a_stream_reset_by_a_cancelling_grpcio_client() {
    support::require!(Need::Root, Need::PythonGrpcio);
    let dir = support::temp_dir("errors-grpcio").expect("temp dir");
    let script = dir.join("peer.py");
    fs::write(&script, GRPCIO_CANCEL).expect("script");
    let sock = dir.join("cancel.sock");
    let mut peer = Command::new("python3")
        .arg(&script)
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let waited = support::wait_until(Duration::from_secs(30), "grpcio's socket", || {
        Ok(sock.exists())
    });
    if let Err(e) = waited {
        let _ = peer.kill();
        let out = peer.wait_with_output().expect("peer");
        panic!("{e:#}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let pair = Pair::start(&[sock.to_str().expect("utf-8")]);
    {
        use std::io::Write as _;
        let mut stdin = peer.stdin.take().expect("piped stdin");
        stdin.write_all(b"go\n").expect("go");
    }
    let out = peer.wait_with_output().expect("peer exits");
    assert!(
        out.status.success(),
        "grpcio peer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (x, full) = pair.stop();
    let failed = rows(&x.stdout_str());
    let all = rows(&full.stdout_str());
    assert_exactly_the_failed_calls(&failed, &all);
    assert!(
        all.iter()
            .any(|r| r["type"] == "END" && r["method"] == VERSION && r["status_code"] == 0),
        "the unary call succeeded: {all:#?}"
    );
    let types = types_of(&failed, SUBSCRIBE);
    assert_eq!(
        types.len(),
        failed.len(),
        "only the cancelled call: {failed:#?}"
    );
    assert_eq!(types, ["REQ", "RESP", "END"], "{failed:#?}");
    let end = &failed[2];
    assert!(
        end["abnormal"]
            .as_str()
            .is_some_and(|a| a.starts_with("RST_STREAM CANCEL from client")),
        "{end}"
    );
    support::remove_temp_dir(&dir);
}
