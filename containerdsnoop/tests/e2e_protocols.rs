//! End-to-end for the other protocols on runtime sockets: ttrpc between containerd and its shims
//! (driven by `ctr run`), and HTTP/1.1 between the docker CLI and dockerd. Needs root (skipped
//! otherwise, failed in CI).

mod support;

use std::{path::Path, time::Duration};

use support::{BUSYBOX_REF, Containerd, Dockerd, Need, Tracer, busybox_image_tar};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");

fn run_traced(args: &[&str], work: impl FnOnce()) -> Vec<serde_json::Value> {
    let mut t = Tracer::spawn(Path::new(TRACER), args).expect("spawn tracer");
    t.wait_ready(Duration::from_secs(30))
        .expect("tracer attaches");
    work();
    std::thread::sleep(Duration::from_millis(500));
    let out = t.stop(Duration::from_secs(10)).expect("tracer stops");
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{:?}: {}",
        out.status,
        out.stderr
    );
    out.stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect()
}

#[test]
fn ctr_run_shows_containerd_and_shim_talking_ttrpc() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("image");
    containerd
        .ctr(&["images", "import", tar.to_str().expect("utf-8")])
        .and_then(|r| r.ok())
        .expect("import");
    let ttrpc = format!("{}.ttrpc", containerd.socket().display());
    let shims = support::containerd::shim_sockets();
    let rows = run_traced(&["-o", "json", &ttrpc, &shims], || {
        let hello = containerd
            .ctr(&[
                "run",
                "--rm",
                BUSYBOX_REF,
                "e2e-ttrpc-echo",
                "echo",
                "hello",
            ])
            .and_then(|r| r.ok())
            .expect("ctr run");
        assert_eq!(hello.trim(), "hello");
        containerd
            .ctr(&["run", "-d", BUSYBOX_REF, "e2e-ttrpc-kill", "sleep", "60"])
            .and_then(|r| r.ok())
            .expect("ctr run -d");
        containerd
            .ctr(&["tasks", "kill", "-s", "SIGKILL", "e2e-ttrpc-kill"])
            .and_then(|r| r.ok())
            .expect("kill");
        std::thread::sleep(Duration::from_millis(300));
        containerd
            .ctr(&["tasks", "delete", "e2e-ttrpc-kill"])
            .and_then(|r| r.ok())
            .expect("delete");
    });
    // Other tests may run shims at the same time: look at this test's containers only.
    let mine = |r: &&&serde_json::Value| {
        let text = r["message_text"].as_str().unwrap_or("");
        text.contains("e2e-ttrpc-echo") || text.contains("e2e-ttrpc-kill")
    };
    let task = support::shim_task_package();
    let ttrpc_rows: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["protocol"] == "ttrpc").collect();
    for method in ["Create", "Start", "Wait", "Kill", "Delete"] {
        // containerd.task.v2 on containerd 1.x, v3 on 2.x.
        let name = format!("/{task}.Task/{method}");
        let reqs: Vec<_> = ttrpc_rows
            .iter()
            .filter(|r| r["type"] == "REQ" && r["method"] == name.as_str())
            .filter(mine)
            .collect();
        assert!(
            !reqs.is_empty(),
            "containerd -> shim {name} for our containers"
        );
        assert_eq!(reqs[0]["comm"], "containerd", "containerd calls the shim");
        assert!(
            reqs[0]["message_type"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{task}."))),
            "{}",
            reqs[0]
        );
    }
    let create = ttrpc_rows
        .iter()
        .find(|r| {
            r["type"] == "REQ"
                && r["method"] == format!("/{task}.Task/Create").as_str()
                && r["message"]["id"] == "e2e-ttrpc-echo"
        })
        .expect("Create of the echo container");
    assert!(
        create["message"]["bundle"]
            .as_str()
            .is_some_and(|b| b.contains("e2e-ttrpc-echo"))
    );
    // The shim publishes the exit to containerd over containerd.sock.ttrpc.
    let exits: Vec<_> = ttrpc_rows
        .iter()
        .filter(|r| {
            r["type"] == "REQ"
                && r["method"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("/Forward"))
        })
        .filter(|r| r["message"]["envelope"]["topic"] == "/tasks/exit")
        .collect();
    assert!(
        exits.iter().any(|r| r["message"]["envelope"]["event"]
            .to_string()
            .contains("e2e-ttrpc-echo")),
        "the shim's /tasks/exit publish for our container: {exits:?}"
    );
    assert!(exits.iter().all(|r| {
        r["comm"]
            .as_str()
            .is_some_and(|c| c.starts_with("containerd-shim"))
    }));
}

#[test]
fn docker_cli_talks_http1_to_dockerd() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let containerd = Containerd::start().expect("containerd starts");
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("image");
    dockerd
        .docker(&["load", "-i", tar.to_str().expect("utf-8")])
        .and_then(|r| r.ok())
        .expect("load");
    let sock = dockerd.socket().to_str().expect("utf-8").to_string();
    let rows = run_traced(&["-o", "json", &sock], || {
        dockerd
            .docker(&["version"])
            .and_then(|r| r.ok())
            .expect("docker version");
        dockerd
            .docker(&["ps", "-a"])
            .and_then(|r| r.ok())
            .expect("docker ps");
        let hi = dockerd
            .docker(&[
                "run",
                "--rm",
                "--network",
                "none",
                "busybox:test",
                "echo",
                "hi",
            ])
            .and_then(|r| r.ok())
            .expect("docker run");
        assert_eq!(hi.trim(), "hi");
    });
    let http: Vec<&serde_json::Value> = rows.iter().filter(|r| r["protocol"] == "http1").collect();
    let method = |r: &serde_json::Value| r["method"].as_str().unwrap_or("").to_string();
    let version_end = http
        .iter()
        .find(|r| {
            r["type"] == "END" && method(r).starts_with("GET /v") && method(r).ends_with("/version")
        })
        .expect("GET /version ends");
    assert_eq!(version_end["status_code"], 200);
    let version_resp = http
        .iter()
        .find(|r| r["type"] == "RESP" && method(r).ends_with("/version"))
        .expect("GET /version response body");
    assert!(
        version_resp["message"]["ApiVersion"].is_string(),
        "compacted JSON body: {version_resp}"
    );
    assert_eq!(version_resp["comm"], "dockerd");
    assert!(
        http.iter()
            .any(|r| r["type"] == "END" && method(r).contains("/containers/json")),
        "docker ps"
    );
    let create = http
        .iter()
        .find(|r| {
            r["type"] == "REQ"
                && method(r).starts_with("POST")
                && method(r).contains("/containers/create")
        })
        .expect("container create request");
    assert_eq!(create["message"]["Image"], "busybox:test");
    assert!(
        http.iter().any(|r| r["type"] == "END"
            && method(r).contains("/containers/create")
            && r["status_code"] == 201),
        "created"
    );
    assert!(
        http.iter().any(|r| method(r).contains("/start")),
        "container start"
    );
}

/// Issue #12: every HTTP/1.1 request the docker CLI makes, with a body or not, is exactly one
/// REQ row carrying its method, path and headers, paired with the RESP/END of the same
/// connection and request number; stdin written after an upgrade keeps counting `index`.
#[test]
fn docker_cli_every_request_has_one_req_row() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let containerd = Containerd::start().expect("containerd starts");
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("image");
    dockerd
        .docker(&["load", "-i", tar.to_str().expect("utf-8")])
        .and_then(|r| r.ok())
        .expect("load");
    let sock = dockerd.socket().to_str().expect("utf-8").to_string();
    let docker = |args: &[&str]| {
        dockerd
            .docker(args)
            .and_then(|r| r.ok())
            .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
    };
    let rows = run_traced(&["-o", "json", &sock], || {
        docker(&["ps"]);
        let run = |name: &str, script: &str| {
            docker(&[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                "busybox:test",
                "sh",
                "-c",
                script,
            ])
        };
        run("e2e-logs", "echo hello; sleep 1");
        let logs = docker(&["logs", "-f", "e2e-logs"]);
        assert_eq!(logs.trim(), "hello");
        run("e2e-attach", "sleep 1; echo attached");
        docker(&["attach", "e2e-attach"]);
        docker(&["start", "e2e-logs"]);
        run("e2e-exec", "sleep 30");
        let mut exec = std::process::Command::new(dockerd.cli());
        exec.env("DOCKER_CONFIG", dockerd.dir().join("cli"))
            .args([
                "-H",
                &format!("unix://{sock}"),
                "exec",
                "-i",
                "e2e-exec",
                "cat",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = exec.spawn().expect("docker exec -i");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"stdin-line\n").expect("write stdin");
        }
        let out = child.wait_with_output().expect("docker exec -i ends");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "stdin-line");
        docker(&["events", "--since", "0", "--until", "1s"]);
        docker(&["rm", "-f", "e2e-logs", "e2e-attach", "e2e-exec"]);
    });
    let http: Vec<&serde_json::Value> = rows.iter().filter(|r| r["protocol"] == "http1").collect();
    let key = |r: &serde_json::Value| (r["connection"].as_u64(), r["stream"].as_u64());
    let method = |r: &serde_json::Value| r["method"].as_str().unwrap_or("").to_string();
    let mut calls: std::collections::BTreeMap<_, Vec<&serde_json::Value>> = Default::default();
    for r in &http {
        calls.entry(key(r)).or_default().push(r);
    }
    assert!(calls.len() >= 11, "{} HTTP calls: {http:#?}", calls.len());
    for (k, call) in &calls {
        let heads: Vec<_> = call
            .iter()
            .filter(|r| r["type"] == "REQ" && r["headers"].is_array())
            .collect();
        assert_eq!(
            heads.len(),
            1,
            "call {k:?}: one REQ row with headers: {call:#?}"
        );
        let head = heads[0];
        assert_eq!(head["index"], 0, "call {k:?}: {head}");
        let m = method(head);
        let (verb, path) = m.split_once(' ').unwrap_or_else(|| panic!("method {m:?}"));
        assert!(
            ["GET", "HEAD", "POST", "DELETE", "PUT"].contains(&verb) && path.starts_with('/'),
            "call {k:?}: {m:?}"
        );
        assert!(
            head["headers"]
                .as_array()
                .is_some_and(|h| h.iter().any(|f| f[0]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("host")))),
            "call {k:?}: headers {head}"
        );
        let ends = call.iter().filter(|r| r["type"] == "END").count();
        assert!(ends <= 1, "call {k:?}: {ends} END rows");
        // Requests: indices strictly increase per call and direction (upgraded stdin too).
        for ty in ["REQ", "RESP"] {
            let idx: Vec<u64> = call
                .iter()
                .filter(|r| r["type"] == ty)
                .filter_map(|r| r["index"].as_u64())
                .collect();
            assert!(
                idx.windows(2).all(|w| w[0] < w[1]),
                "call {k:?} {ty}: {idx:?}"
            );
        }
    }
    let requested = |verb: &str, part: &str| {
        http.iter()
            .any(|r| r["type"] == "REQ" && method(r).starts_with(verb) && method(r).contains(part))
    };
    for (verb, part) in [
        ("HEAD", "/_ping"),
        ("GET", "/containers/json"),
        ("POST", "/containers/create"),
        ("POST", "/start"),
        ("GET", "/logs"),
        ("POST", "/attach"),
        ("POST", "/wait"),
        ("POST", "/exec"),
        ("GET", "/events"),
        ("DELETE", "/containers/"),
    ] {
        assert!(requested(verb, part), "no REQ row for {verb} …{part}");
    }
    // `exec -i`: stdin after `101 Switching Protocols` continues the call's REQ indices.
    let exec_start = calls
        .values()
        .find(|c| {
            c.iter().any(|r| {
                r["type"] == "REQ" && method(r).contains("/exec/") && method(r).ends_with("/start")
            })
        })
        .expect("exec start call");
    let stdin_rows: Vec<_> = exec_start
        .iter()
        .filter(|r| r["type"] == "REQ" && r["index"].as_u64().is_some_and(|i| i > 0))
        .collect();
    assert!(
        stdin_rows.iter().any(|r| r["message_text"]
            .as_str()
            .is_some_and(|t| t.contains("stdin-line"))),
        "stdin after the upgrade is a later REQ of the same call: {exec_start:#?}"
    );
}
