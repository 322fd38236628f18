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
    let rows = run_traced(&["-o", "json", &ttrpc, "/run/containerd/s/*"], || {
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
