//! End-to-end: rows name the container (and pod) at each end. Real containerd, its CRI and
//! dockerd run containers whose processes call the runtime through a mounted socket, with
//! host binaries (`ctr`, `docker`) and the libraries they link mounted in; the tracer must
//! name the pod, containerd namespace and id, or docker name, of those calls, and nothing for
//! host processes. A runtime socket that is gone or answers garbage costs one notice each.
//! Needs root (skipped otherwise, failed in CI).

mod support;

use std::{
    io::Write as _,
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use support::{
    BUSYBOX_REF, Containerd, Dockerd, Need, Tracer, busybox_image_tar, cri, rows::json_rows,
};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");
/// How long a container may take to make its first traced call.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

fn start_tracer(args: &[&str]) -> Tracer {
    Tracer::started(Path::new(TRACER), args)
}

fn stop_tracer(t: Tracer) -> (String, String) {
    t.stop_ok()
}

/// Waits until the JSON tracer has printed a row that `wanted` accepts; shows the cgroup of
/// its sender (the samples of the cgroup parser's unit tests come from here).
fn wait_for_row(tracer: &Tracer, what: &str, wanted: impl Fn(&Value) -> bool) {
    support::wait_until(CALL_DEADLINE, what, || {
        let found = tracer
            .stdout_so_far()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| wanted(r));
        if let Some(pid) = found.as_ref().and_then(|r| r["pid"].as_u64()) {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"));
            eprintln!("{what}: /proc/{pid}/cgroup: {cgroup:?}");
        }
        Ok(found.is_some())
    })
    .unwrap_or_else(|e| panic!("{e:#}\ntracer output so far:\n{}", tracer.stdout_so_far()));
}

/// Read-only bind mounts that let `binary` run in a busybox container: itself at
/// `/host/<name>`, and every library `ldd` lists (with the loader) at the path it is loaded
/// from. Returns (host path, container path) pairs and the container path of the binary.
fn binary_mounts(binary: &Path) -> (Vec<(PathBuf, String)>, String) {
    let name = binary.file_name().expect("a file").to_string_lossy();
    let inside = format!("/host/{name}");
    let mut mounts = vec![(binary.to_path_buf(), inside.clone())];
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let host = std::fs::canonicalize(path).expect("library exists");
            mounts.push((host, path.to_string()));
        }
    }
    (mounts, inside)
}

/// The library folders of `mounts`, for `LD_LIBRARY_PATH` (no ld.so.cache in busybox).
fn library_path(mounts: &[(PathBuf, String)]) -> String {
    let mut dirs: Vec<String> = mounts[1..]
        .iter()
        .filter_map(|(_, c)| Some(Path::new(c).parent()?.to_string_lossy().into_owned()))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.join(":")
}

fn container<'a>(row: &'a Value, key: &str) -> &'a Value {
    &row[key]
}

/// Rows that have `pred` at either end.
fn either_end(row: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    pred(container(row, "container")) || pred(container(row, "peer_container"))
}

#[test]
fn a_cri_pod_calling_containerd_is_named_by_pod_and_container() {
    support::require!(Need::Root, Need::Containerd, Need::TestPeer);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    containerd.prepare_cri().expect("sandbox image");
    let tar = busybox_image_tar(containerd.dir()).expect("busybox image");
    let import = [
        &["-n", "k8s.io"][..],
        support::runtime::ctr_import_local_args(),
        &[tar.to_str().expect("utf-8")],
    ]
    .concat();
    containerd
        .ctr(&import)
        .and_then(|r| r.ok())
        .expect("import");

    let json = start_tracer(&["-o", "json", &sock]);
    let table = start_tracer(&["-C", "--pod", "attr-pod", &sock]);

    let pod = cri(containerd.socket(), &["run-pod-sandbox", "attr-pod"]).expect("RunPodSandbox");
    let pod = pod.trim().to_string();
    let (mounts, ctr) = binary_mounts(&support::containerd_bin("ctr"));
    let mut args: Vec<String> = ["run-container", &pod, "attr-pod", "caller", BUSYBOX_REF]
        .map(String::from)
        .to_vec();
    for (host, inside) in &mounts {
        args.extend(["--mount".into(), format!("{}:{inside}", host.display())]);
    }
    args.extend(["--mount".into(), format!("{sock}:/run/attr.sock")]);
    args.extend([
        "--env".into(),
        format!("LD_LIBRARY_PATH={}", library_path(&mounts)),
    ]);
    let script = format!("{ctr} -a /run/attr.sock version; exec {ctr} -a /run/attr.sock events");
    args.extend(["--", "/bin/sh", "-c", &script].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let container_id = cri(containerd.socket(), &args).expect("CreateContainer + StartContainer");
    let container_id = container_id.trim().to_string();

    let subscribe = "/containerd.services.events.v1.Events/Subscribe";
    wait_for_row(&json, "the pod's Subscribe request", |r| {
        r["type"] == "REQ" && r["method"] == subscribe && r["container"]["pod"] == "attr-pod"
    });
    // A host client in the same run.
    containerd
        .ctr(&["version"])
        .and_then(|r| r.ok())
        .expect("host ctr");
    cri(containerd.socket(), &["stop-remove-pod", &pod]).expect("stop/remove");
    let (stdout, stderr) = stop_tracer(json);
    let (table_out, _) = stop_tracer(table);
    let rows = json_rows(&stdout);

    let sub = rows
        .iter()
        .find(|r| r["type"] == "REQ" && r["method"] == subscribe && !r["container"].is_null())
        .unwrap_or_else(|| panic!("no attributed Subscribe in:\n{stdout}\n{stderr}"));
    let c = &sub["container"];
    assert_eq!(c["id"], container_id.as_str(), "{sub}");
    assert_eq!(c["pod"], "attr-pod", "{sub}");
    assert_eq!(c["pod_namespace"], "containerdsnoop", "{sub}");
    assert_eq!(c["name"], "caller", "{sub}");
    assert_eq!(c["runtime"], "containerd", "{sub}");
    assert_eq!(c["namespace"], "k8s.io", "{sub}");
    assert_eq!(c["image"], BUSYBOX_REF, "{sub}");
    assert!(
        sub["peer_container"].is_null(),
        "containerd is a host process: {sub}"
    );
    // Never a wrong answer: every attributed end is the pod's container (the CRI client,
    // containerd and host ctr are host processes).
    for r in &rows {
        for key in ["container", "peer_container"] {
            let c = &r[key];
            assert!(
                c.is_null() || c["id"] == container_id.as_str(),
                "{key} of {r}"
            );
        }
    }
    let host_version = rows.iter().find(|r| {
        r["type"] == "REQ"
            && r["method"] == "/containerd.services.version.v1.Version/Version"
            && r["comm"] == "ctr"
            && r["container"].is_null()
    });
    assert!(host_version.is_some(), "host ctr's Version row:\n{stdout}");
    // `-C --pod attr-pod`: the columns, and only rows with the pod at an end.
    let mut lines = table_out.lines();
    let header = lines.next().expect("table header");
    assert!(
        header.contains("CONTAINER") && header.contains("PEER_CONTAINER"),
        "{header}"
    );
    let table_rows: Vec<&str> = lines.collect();
    assert!(
        table_rows
            .iter()
            .any(|l| l.contains(subscribe) && l.contains("attr-pod/caller")),
        "{table_out}"
    );
    assert!(
        table_rows.iter().all(|l| l.contains("attr-pod/caller")),
        "--pod selected a row without the pod:\n{table_out}"
    );
}

#[test]
fn a_ctr_run_container_is_named_by_namespace_and_id() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let tar = busybox_image_tar(containerd.dir()).expect("busybox image");
    let import = [
        support::runtime::ctr_import_local_args(),
        &[tar.to_str().expect("utf-8")],
    ]
    .concat();
    containerd
        .ctr(&import)
        .and_then(|r| r.ok())
        .expect("import");
    let json = start_tracer(&["-o", "json", "--container", "attr-ctr", &sock]);

    let (mounts, ctr) = binary_mounts(&support::containerd_bin("ctr"));
    let mut args: Vec<String> = vec!["run".into(), "-d".into()];
    for (host, inside) in &mounts {
        args.extend([
            "--mount".into(),
            format!(
                "type=bind,src={},dst={inside},options=rbind:ro",
                host.display()
            ),
        ]);
    }
    args.extend([
        "--mount".into(),
        format!("type=bind,src={sock},dst=/run/attr.sock,options=rbind"),
        "--env".into(),
        format!("LD_LIBRARY_PATH={}", library_path(&mounts)),
    ]);
    let script = format!("{ctr} -a /run/attr.sock version; exec {ctr} -a /run/attr.sock events");
    args.extend([BUSYBOX_REF, "attr-ctr", "/bin/sh", "-c", &script].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    containerd.ctr(&args).and_then(|r| r.ok()).expect("ctr run");

    let subscribe = "/containerd.services.events.v1.Events/Subscribe";
    wait_for_row(&json, "the container's Subscribe request", |r| {
        r["type"] == "REQ" && r["method"] == subscribe
    });
    containerd
        .ctr(&["version"])
        .and_then(|r| r.ok())
        .expect("host ctr");
    let _ = containerd.ctr(&["task", "kill", "-s", "KILL", "attr-ctr"]);
    let (stdout, stderr) = stop_tracer(json);
    let rows = json_rows(&stdout);
    let sub = rows
        .iter()
        .find(|r| r["type"] == "REQ" && r["method"] == subscribe)
        .unwrap_or_else(|| panic!("no Subscribe in:\n{stdout}\n{stderr}"));
    let c = &sub["container"];
    assert_eq!(c["id"], "attr-ctr", "{sub}");
    assert_eq!(c["namespace"], "default", "{sub}");
    assert_eq!(c["runtime"], "containerd", "{sub}");
    assert_eq!(c["image"], BUSYBOX_REF, "{sub}");
    assert!(c["pod"].is_null(), "{sub}");
    // `--container attr-ctr`: nothing else, so the host ctr's calls are not shown.
    for r in &rows {
        assert!(either_end(r, |c| c["id"] == "attr-ctr"), "{r}");
    }
}

#[test]
fn a_docker_container_calling_dockerd_is_named() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let containerd = Containerd::start().expect("containerd starts");
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    let sock = dockerd.socket().to_str().expect("utf-8").to_string();
    let tar = busybox_image_tar(dockerd.dir()).expect("busybox image");
    dockerd
        .docker(&["load", "-i", tar.to_str().expect("utf-8")])
        .and_then(|r| r.ok())
        .expect("docker load");
    let json = start_tracer(&["-o", "json", &sock]);

    let (mounts, docker) = binary_mounts(dockerd.cli());
    let mut args: Vec<String> = ["run", "-d", "--name", "attr-docker"]
        .map(String::from)
        .to_vec();
    for (host, inside) in &mounts {
        args.extend(["-v".into(), format!("{}:{inside}:ro", host.display())]);
    }
    args.extend([
        "-v".into(),
        format!("{sock}:/run/docker.sock"),
        "-e".into(),
        format!("LD_LIBRARY_PATH={}", library_path(&mounts)),
        "-e".into(),
        "DOCKER_CONFIG=/tmp".into(),
    ]);
    let script = format!(
        "{docker} -H unix:///run/docker.sock version; exec {docker} -H unix:///run/docker.sock events"
    );
    args.extend([BUSYBOX_REF, "sh", "-c", &script].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dockerd
        .docker(&args)
        .and_then(|r| r.ok())
        .expect("docker run");

    wait_for_row(&json, "a named request from the container", |r| {
        r["type"] == "REQ" && r["container"]["name"] == "attr-docker"
    });
    let _ = dockerd.docker(&["rm", "-f", "attr-docker"]);
    let (stdout, _) = stop_tracer(json);
    let rows = json_rows(&stdout);
    let named: Vec<&Value> = rows
        .iter()
        .filter(|r| r["container"]["name"] == "attr-docker")
        .collect();
    let c = &named[0]["container"];
    assert_eq!(c["runtime"], "docker", "{}", named[0]);
    assert_eq!(c["image"], BUSYBOX_REF, "{}", named[0]);
    assert_eq!(c["id"].as_str().map(str::len), Some(64), "{}", named[0]);
    // Never a wrong answer: every attributed end is that container; and named from its first
    // call on (dockerd announced its creation before it started).
    for r in &rows {
        for key in ["container", "peer_container"] {
            let other = &r[key];
            assert!(other.is_null() || other["id"] == c["id"], "{key} of {r}");
            assert!(
                other.is_null() || other["name"] == "attr-docker",
                "{key} of {r}"
            );
        }
    }
}

#[test]
fn unreachable_runtimes_cost_one_notice_and_rows_still_flow() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let dir = support::temp_dir("attr").expect("temp dir");
    // A socket whose server answers anything with garbage, and one nobody serves any more.
    std::fs::create_dir_all(dir.join("garbage")).expect("dir");
    std::fs::create_dir_all(dir.join("gone")).expect("dir");
    let garbage = dir.join("garbage/containerd.sock");
    let gone = dir.join("gone/docker.sock");
    let listener = UnixListener::bind(&garbage).expect("bind");
    drop(UnixListener::bind(&gone).expect("bind"));
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"\x00\xffnot a runtime\r\n\r\n\x01\x02");
        }
    });
    let (g, o) = (
        garbage.to_str().expect("utf-8"),
        gone.to_str().expect("utf-8"),
    );
    let tracer = start_tracer(&["-o", "json", &sock, g, o]);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        containerd
            .ctr(&["version"])
            .and_then(|r| r.ok())
            .expect("ctr version");
    }
    let (stdout, stderr) = stop_tracer(tracer);
    let rows = json_rows(&stdout);
    let versions = rows
        .iter()
        .filter(|r| r["method"] == "/containerd.services.version.v1.Version/Version")
        .filter(|r| r["type"] == "END")
        .count();
    assert_eq!(versions, 3, "{stdout}\n{stderr}");
    for path in [g, o] {
        let notices = stderr
            .lines()
            .filter(|l| l.contains("cannot ask") && l.contains(path))
            .count();
        assert_eq!(notices, 1, "one notice for {path}:\n{stderr}");
    }
    // What the garbage server sent the tracer's probe is not a row.
    assert!(rows.iter().all(|r| r["path"] == sock.as_str()), "{stdout}");
    support::remove_temp_dir(&dir);
}
