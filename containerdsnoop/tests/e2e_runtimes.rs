//! The runtime-matrix checks: on whichever containerd and dockerd are under test (the system's,
//! or those `cargo xtask test` unpacks from newer Debian releases, see `support::runtime`), a
//! broad workload — ctr calls, `ctr run` and exec (shim task v2 on 1.x, v3 on 2.x), image
//! import through both paths, the events subscription, a CRI v1 pod lifecycle, CRI v1alpha2
//! where it is served, and docker run/logs/exec/rm — is traced from before the daemons start,
//! and every call must be named, every message decoded with its schema, no connection
//! desynchronised. Needs root (skipped otherwise, failed in CI).

mod support;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use support::rows::{assert_all_decoded, json_rows, methods, rows_of};
use support::{BUSYBOX_REF, Containerd, Dockerd, Need, Tracer, busybox_image_tar, cri};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");

/// The tracer follows every containerd and dockerd this test process starts (by socket path
/// prefix) and all shims: one test at a time, so no test sees another's traffic.
static SERIAL: Mutex<()> = Mutex::new(());

/// A tracer on every socket this process's daemons will create, started before them so that
/// every connection is seen from its first byte.
/// A tracer started before the daemons, so that every connection is seen from its first byte.
/// The daemons' folders are made first under a fresh root: the tracer selects socket files by
/// identity, and a socket created in a folder it watches is matched from its first byte.
fn start_tracer() -> Tracer {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let root = std::path::PathBuf::from(format!(
        "/tmp/csn-rt-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    support::set_temp_root(Some(root.clone()));
    for tag in ["ctrd", "dockerd"] {
        std::fs::create_dir_all(root.join(tag)).expect("daemon folder");
    }
    let ctrd = root.join("ctrd/containerd.sock").display().to_string();
    let ctrd_ttrpc = format!("{ctrd}.ttrpc");
    let dockerd = root.join("dockerd/docker.sock").display().to_string();
    let shims = support::containerd::shim_sockets();
    let mut t = Tracer::spawn(
        Path::new(TRACER),
        &["-o", "json", &ctrd, &ctrd_ttrpc, &dockerd, &shims],
    )
    .expect("spawn tracer");
    t.wait_ready(Duration::from_secs(30))
        .expect("tracer attaches");
    t
}

/// Stops the tracer; returns the rows with one of `pids` (our daemons) at either end, since
/// other containerds on the machine may have shims on `/run/containerd/s/`, and its stderr.
fn stop_tracer(t: Tracer, pids: &[u32]) -> (Vec<Value>, String) {
    let (mine, _, stderr) = stop_tracer_all(t, pids);
    (mine, stderr)
}

/// [`stop_tracer`], also returning every row (for failure reports).
fn stop_tracer_all(t: Tracer, pids: &[u32]) -> (Vec<Value>, Vec<Value>, String) {
    std::thread::sleep(Duration::from_millis(500));
    let out = t.stop(Duration::from_secs(10)).expect("tracer stops");
    assert!(
        out.status.is_some_and(|s| s.success()),
        "tracer exit {:?}: {}",
        out.status,
        out.stderr
    );
    let mine = |r: &Value| {
        pids.iter().any(|&p| {
            r["pid"].as_u64() == Some(u64::from(p)) || r["peer_pid"].as_u64() == Some(u64::from(p))
        })
    };
    let all = json_rows(&out.stdout_str());
    let rows = all.iter().filter(|r| mine(r)).cloned().collect();
    (rows, all, out.stderr)
}

fn ctr_ok(c: &Containerd, args: &[&str]) -> String {
    c.ctr(args)
        .and_then(|r| r.ok())
        .unwrap_or_else(|e| panic!("ctr {args:?}: {e:#}"))
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests and ends of `method`, both present, the end with status `code`.
fn assert_call(rows: &[Value], method: &str, code: u64) {
    assert!(
        !rows_of(rows, "REQ", method).is_empty(),
        "a request row of {method}; methods seen: {:#?}",
        methods(rows)
    );
    let ends = rows_of(rows, "END", method);
    assert!(
        ends.iter().any(|e| e["status_code"] == code),
        "{method} ends with status {code}: {ends:?}"
    );
}

#[test]
fn containerd_under_test_is_the_expected_version() {
    support::require!(Need::Root, Need::Containerd);
    let _serial = lock();
    let tracer = start_tracer();
    let containerd = Containerd::start().expect("containerd starts");
    let printed = ctr_ok(&containerd, &["version"]);
    let (rows, _) = stop_tracer(tracer, &[containerd.pid()]);
    let resp = rows_of(
        &rows,
        "RESP",
        "/containerd.services.version.v1.Version/Version",
    );
    let version = resp.first().expect("Version response")["message"]["version"]
        .as_str()
        .expect("version string")
        .to_string();
    assert!(printed.contains(&version), "ctr printed {printed}");
    // What `cargo xtask test` asked for, else what the binary says about itself.
    let expected = std::env::var("CONTAINERDSNOOP_EXPECT_CONTAINERD")
        .ok()
        .or_else(|| support::runtime::containerd_version_string().map(str::to_string))
        .expect("containerd --version");
    let num = |v: &str| {
        v.trim_start_matches('v')
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(num(&version), num(&expected), "containerd under test");
    eprintln!("containerd under test: {version}");
}

#[test]
fn ctr_workload_is_fully_decoded() {
    support::require!(Need::Root, Need::Containerd);
    let _serial = lock();
    let (major, minor) = support::containerd_version();
    let tracer = start_tracer();
    let containerd = Containerd::start().expect("containerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("busybox image");
    let tar = tar.to_str().expect("utf-8");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();

    ctr_ok(&containerd, &["version"]);
    ctr_ok(&containerd, &["namespaces", "create", "rt-ns"]);
    ctr_ok(&containerd, &["namespaces", "ls"]);
    ctr_ok(&containerd, &["plugins", "ls"]);
    // The default import path: the Transfer service on 2.x, client-side before.
    ctr_ok(&containerd, &["images", "import", tar]);
    if major >= 2 {
        // And the client-side path, into another namespace so that it writes content again.
        ctr_ok(
            &containerd,
            &["-n", "rt-ns", "images", "import", "--local", tar],
        );
    }
    ctr_ok(&containerd, &["images", "ls"]);
    ctr_ok(&containerd, &["content", "ls"]);
    ctr_ok(&containerd, &["snapshots", "ls"]);
    ctr_ok(&containerd, &["leases", "ls"]);
    let mut events = std::process::Command::new(support::containerd_bin("ctr"))
        .args(["--address", &sock, "events"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ctr events");
    std::thread::sleep(Duration::from_millis(300));
    let hello = ctr_ok(
        &containerd,
        &["run", "--rm", BUSYBOX_REF, "rt-echo", "echo", "hello"],
    );
    assert_eq!(hello.trim(), "hello");
    ctr_ok(
        &containerd,
        &["run", "-d", BUSYBOX_REF, "rt-sleep", "sleep", "60"],
    );
    let exec = ctr_ok(
        &containerd,
        &[
            "tasks",
            "exec",
            "--exec-id",
            "rt-exec",
            "rt-sleep",
            "echo",
            "in-exec",
        ],
    );
    assert_eq!(exec.trim(), "in-exec");
    ctr_ok(&containerd, &["tasks", "ls"]);
    ctr_ok(&containerd, &["tasks", "ps", "rt-sleep"]);
    ctr_ok(&containerd, &["tasks", "metrics", "rt-sleep"]);
    ctr_ok(&containerd, &["tasks", "pause", "rt-sleep"]);
    ctr_ok(&containerd, &["tasks", "resume", "rt-sleep"]);
    ctr_ok(&containerd, &["tasks", "kill", "-s", "SIGKILL", "rt-sleep"]);
    std::thread::sleep(Duration::from_millis(300));
    ctr_ok(&containerd, &["tasks", "delete", "rt-sleep"]);
    ctr_ok(&containerd, &["containers", "delete", "rt-sleep"]);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY-free: kill(2) on our own child.
    unsafe { libc::kill(events.id() as i32, libc::SIGTERM) };
    let _ = events.wait();
    let (rows, stderr) = stop_tracer(tracer, &[containerd.pid()]);

    eprintln!(
        "containerd {major}.{minor}: {} rows, methods: {:#?}",
        rows.len(),
        methods(&rows)
    );
    assert_all_decoded(&rows, "ctr workload");
    assert!(stderr.contains("lost 0 records"), "{stderr}");

    for m in [
        "/containerd.services.version.v1.Version/Version",
        "/containerd.services.namespaces.v1.Namespaces/Create",
        "/containerd.services.namespaces.v1.Namespaces/List",
        "/containerd.services.introspection.v1.Introspection/Plugins",
        "/containerd.services.images.v1.Images/List",
        "/containerd.services.content.v1.Content/List",
        "/containerd.services.snapshots.v1.Snapshots/List",
        "/containerd.services.leases.v1.Leases/List",
        "/containerd.services.containers.v1.Containers/Create",
        "/containerd.services.containers.v1.Containers/Delete",
        "/containerd.services.tasks.v1.Tasks/Create",
        "/containerd.services.tasks.v1.Tasks/Start",
        "/containerd.services.tasks.v1.Tasks/Exec",
        "/containerd.services.tasks.v1.Tasks/ListPids",
        "/containerd.services.tasks.v1.Tasks/Metrics",
        "/containerd.services.tasks.v1.Tasks/Pause",
        "/containerd.services.tasks.v1.Tasks/Resume",
        "/containerd.services.tasks.v1.Tasks/Kill",
        "/containerd.services.tasks.v1.Tasks/Delete",
    ] {
        assert_call(&rows, m, 0);
    }
    // Image import: client-side writes content and creates the image; 2.x's default goes
    // through the Transfer service (its progress and data over the Streaming service).
    let creates = rows_of(&rows, "REQ", "/containerd.services.images.v1.Images/Create");
    assert!(
        creates
            .iter()
            .any(|r| r["message"]["image"]["name"] == BUSYBOX_REF),
        "client-side import creates the image: {creates:?}"
    );
    assert!(
        rows_of(
            &rows,
            "REQ",
            "/containerd.services.content.v1.Content/Write"
        )
        .iter()
        .any(|r| r["index"].as_u64() > Some(0)),
        "streaming Content/Write"
    );
    if major >= 2 {
        assert_call(
            &rows,
            "/containerd.services.transfer.v1.Transfer/Transfer",
            0,
        );
        let transfer = rows_of(
            &rows,
            "REQ",
            "/containerd.services.transfer.v1.Transfer/Transfer",
        );
        let text = transfer[0]["message"].to_string();
        assert!(
            text.contains("containerd.types.transfer.ImageImportStream")
                && text.contains("containerd.types.transfer.ImageStore"),
            "Transfer source and destination decoded through Any: {text}"
        );
        assert!(
            !rows_of(
                &rows,
                "REQ",
                "/containerd.services.streaming.v1.Streaming/Stream"
            )
            .is_empty(),
            "the import stream: {:#?}",
            methods(&rows)
        );
    }
    // Events: the subscription delivers the run's lifecycle.
    let topics: Vec<&str> = rows_of(
        &rows,
        "RESP",
        "/containerd.services.events.v1.Events/Subscribe",
    )
    .iter()
    .filter_map(|r| r["message"]["topic"].as_str())
    .collect();
    for t in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exit",
    ] {
        assert!(topics.contains(&t), "event {t}: {topics:?}");
    }
    // containerd -> shim over ttrpc, in the task API of this containerd's generation.
    let task = support::shim_task_package();
    for m in [
        "Create", "Start", "Exec", "Pids", "Stats", "Pause", "Resume", "Kill", "Wait", "Delete",
    ] {
        let method = format!("/{task}.Task/{m}");
        let reqs: Vec<&Value> = rows_of(&rows, "REQ", &method)
            .into_iter()
            .filter(|r| r["protocol"] == "ttrpc" && r["comm"] == "containerd")
            .collect();
        assert!(
            !reqs.is_empty(),
            "containerd -> shim {method}; methods seen: {:#?}",
            methods(&rows)
        );
        assert!(
            reqs[0]["message_type"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{task}."))),
            "{}",
            reqs[0]
        );
    }
    // The shims' events back to containerd.
    let forwarded: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            r["type"] == "REQ"
                && r["protocol"] == "ttrpc"
                && r["method"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("Events/Forward"))
        })
        .collect();
    assert!(
        forwarded
            .iter()
            .any(|r| r["message"]["envelope"]["topic"] == "/tasks/exit"),
        "shim -> containerd /tasks/exit"
    );
}

#[test]
fn cri_pod_lifecycle_and_v1alpha2_are_fully_decoded() {
    support::require!(Need::Root, Need::Containerd, Need::TestPeer);
    let _serial = lock();
    let (major, _) = support::containerd_version();
    let tracer = start_tracer();
    let containerd = Containerd::start().expect("containerd starts");
    containerd.prepare_cri().expect("sandbox image");
    let s = containerd.socket();
    cri(s, &["version"]).expect("Version");
    cri(s, &["list-images"]).expect("ListImages");
    let pod = cri(s, &["run-pod-sandbox", "rt-cri-pod"]).expect("RunPodSandbox");
    let pod = pod.trim().to_string();
    cri(s, &["list-pods"]).expect("ListPodSandbox");
    cri(s, &["list-containers"]).expect("ListContainers");
    cri(s, &["stop-remove-pod", &pod]).expect("stop/remove");
    // containerd 2.0 dropped CRI v1alpha2; 1.x serves it.
    let v1alpha2 = cri(s, &["v1alpha2"]);
    assert_eq!(
        v1alpha2.is_ok(),
        major < 2,
        "v1alpha2 served by containerd {major}.x: {v1alpha2:?}"
    );
    let (rows, all_rows, stderr) = stop_tracer_all(tracer, &[containerd.pid()]);
    eprintln!("CRI on containerd {major}.x: methods {:#?}", methods(&rows));
    assert_all_decoded(&rows, "CRI workload");

    for m in [
        "/runtime.v1.RuntimeService/Version",
        "/runtime.v1.ImageService/ListImages",
        "/runtime.v1.RuntimeService/RunPodSandbox",
        "/runtime.v1.RuntimeService/ListPodSandbox",
        "/runtime.v1.RuntimeService/ListContainers",
        "/runtime.v1.RuntimeService/StopPodSandbox",
        "/runtime.v1.RuntimeService/RemovePodSandbox",
    ] {
        assert_call(&rows, m, 0);
    }
    let run = rows_of(&rows, "RESP", "/runtime.v1.RuntimeService/RunPodSandbox");
    assert_eq!(
        run.first().expect("RunPodSandbox response")["message"]["pod_sandbox_id"]
            .as_str()
            .or(run[0]["message"]["podSandboxId"].as_str()),
        Some(pod.as_str())
    );
    let pods = rows_of(&rows, "RESP", "/runtime.v1.RuntimeService/ListPodSandbox");
    assert!(
        pods.iter()
            .any(|r| r["message"].to_string().contains("rt-cri-pod")),
        "ListPodSandbox shows the pod: {pods:?}"
    );
    // The pod's sandbox process runs under a shim, in this containerd's task API.
    let task = support::shim_task_package();
    assert!(
        !rows_of(&rows, "REQ", &format!("/{task}.Task/Create")).is_empty(),
        "the sandbox task is created over ttrpc: {:#?}",
        methods(&rows)
    );
    let a2 = "/runtime.v1alpha2.RuntimeService/Version";
    if major < 2 {
        assert_call(&rows, a2, 0);
        assert_call(&rows, "/runtime.v1alpha2.ImageService/ListImages", 0);
        let resp = rows_of(&rows, "RESP", a2);
        assert_eq!(
            resp.first().expect("v1alpha2 Version response")["message_type"],
            "runtime.v1alpha2.VersionResponse"
        );
    } else {
        // Not served: the call is still named, and ends UNIMPLEMENTED. containerd 2.x answers
        // from the request headers alone (trailers-only), often before the client's request
        // message arrives: the REQ row then follows the END row, and is still there.
        if rows_of(&rows, "END", a2).is_empty() {
            // Once in CI the whole call was missing: show what the tracer saw of the last
            // connections and what it said, to tell a lost capture from a decode fault.
            let tail: Vec<String> = all_rows[all_rows.len().saturating_sub(16)..]
                .iter()
                .map(Value::to_string)
                .collect();
            panic!(
                "no END row of {a2}; last rows of all connections:\n{}\ntracer stderr:\n{stderr}",
                tail.join("\n")
            );
        }
        assert_call(&rows, a2, 12);
    }
}

#[test]
fn docker_run_logs_exec_rm_are_fully_decoded() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let _serial = lock();
    let tracer = start_tracer();
    let containerd = Containerd::start().expect("containerd starts");
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("image");
    let docker = |args: &[&str]| {
        dockerd
            .docker(args)
            .and_then(|r| r.ok())
            .unwrap_or_else(|e| panic!("docker {args:?}: {e:#}"))
    };
    docker(&["version"]);
    docker(&["load", "-i", tar.to_str().expect("utf-8")]);
    let id = docker(&[
        "run",
        "-d",
        "--name",
        "rt-docker",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "echo hello-logs; exec sleep 60",
    ]);
    let id = id.trim().to_string();
    support::wait_until(Duration::from_secs(20), "the container's log line", || {
        Ok(dockerd
            .docker(&["logs", "rt-docker"])
            .map(|r| r.stdout())
            .unwrap_or_default()
            .contains("hello-logs"))
    })
    .expect("docker logs");
    let exec = docker(&["exec", "rt-docker", "echo", "hi-exec"]);
    assert_eq!(exec.trim(), "hi-exec");
    docker(&["rm", "-f", "rt-docker"]);
    let (rows, _) = stop_tracer(tracer, &[containerd.pid(), dockerd.pid()]);
    eprintln!("docker: methods {:#?}", methods(&rows));
    assert_all_decoded(&rows, "docker workload");

    let http: Vec<&Value> = rows.iter().filter(|r| r["protocol"] == "http1").collect();
    let method = |r: &Value| r["method"].as_str().unwrap_or("").to_string();
    let ended = |verb: &str, part: &str, status: u64| {
        http.iter().any(|r| {
            r["type"] == "END"
                && method(r).starts_with(verb)
                && method(r).contains(part)
                && r["status_code"] == status
        })
    };
    let version = http
        .iter()
        .find(|r| r["type"] == "RESP" && method(r).ends_with("/version"))
        .expect("GET /version response");
    let daemon_version = version["message"]["Version"]
        .as_str()
        .expect("daemon Version");
    if let Ok(want) = std::env::var("CONTAINERDSNOOP_EXPECT_DOCKERD") {
        assert!(
            daemon_version.starts_with(&want),
            "dockerd under test is {daemon_version}, wanted {want}"
        );
    }
    eprintln!("dockerd under test: {daemon_version}");
    // The CLI names the container by name or (docker 28 for logs) by the id it looked up.
    let ended_c = |verb: &str, rest: &str, status: u64| {
        ended(verb, &format!("/containers/rt-docker{rest}"), status)
            || ended(verb, &format!("/containers/{id}{rest}"), status)
    };
    assert!(ended("POST", "/containers/create", 201), "create");
    assert!(ended_c("POST", "/start", 204), "start");
    assert!(ended_c("GET", "/logs", 200), "logs");
    assert!(
        http.iter().any(|r| r["type"] == "RESP"
            && method(r).contains("/logs")
            && r["message_text"]
                .as_str()
                .is_some_and(|t| t.contains("hello-logs"))),
        "the log line in the logs response"
    );
    assert!(ended_c("POST", "/exec", 201), "exec create");
    assert!(
        http.iter().any(|r| r["type"] == "REQ"
            && method(r).starts_with("POST")
            && method(r).contains("/exec/")
            && method(r).ends_with("/start")),
        "exec start"
    );
    assert!(ended_c("DELETE", "", 204), "rm");
    // dockerd -> containerd, named and decoded (namespace moby).
    for m in [
        "/containerd.services.containers.v1.Containers/Create",
        "/containerd.services.tasks.v1.Tasks/Create",
        "/containerd.services.tasks.v1.Tasks/Start",
        "/containerd.services.tasks.v1.Tasks/Exec",
        "/containerd.services.tasks.v1.Tasks/Kill",
        "/containerd.services.tasks.v1.Tasks/Delete",
    ] {
        assert_call(&rows, m, 0);
        assert!(
            rows_of(&rows, "REQ", m)
                .iter()
                .any(|r| r["comm"] == "dockerd" && r["namespace"] == "moby"),
            "{m} from dockerd in namespace moby"
        );
    }
}
