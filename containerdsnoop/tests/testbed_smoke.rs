//! Proves the end-to-end harness against the real daemons, with no tracer involved: containerd +
//! ctr + runc, dockerd + the docker CLI, the CRI test peer, and clean-up of everything they leave.
//! The daemon tests need root and are skipped otherwise (`CONTAINERDSNOOP_E2E=require` makes a
//! skip a failure).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{BUSYBOX_REF, Containerd, Dockerd, Need, Tracer, busybox_image_tar, cri};

#[test]
fn testbed_smoke() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd, Need::TestPeer);
    let t0 = Instant::now();

    let containerd = Containerd::start().expect("containerd starts");
    eprintln!("containerd ready in {:?}", containerd.startup);
    let version = containerd
        .ctr(&["version"])
        .and_then(|r| r.ok())
        .expect("ctr version");
    assert!(
        version.contains("Server:"),
        "ctr version shows the server:\n{version}"
    );

    let tar = busybox_image_tar(containerd.dir()).expect("build busybox image");
    let tar = tar.to_str().expect("UTF-8 path");
    containerd
        .ctr(&["images", "import", tar])
        .and_then(|r| r.ok())
        .expect("ctr images import");
    let t = Instant::now();
    // Ids are unique per test: runc state and cgroups are keyed by namespace and id machine-wide.
    let hello = containerd
        .ctr(&["run", "--rm", BUSYBOX_REF, "testbed-smoke", "echo", "hello"])
        .and_then(|r| r.ok())
        .expect("ctr run echo");
    assert_eq!(hello.trim(), "hello");
    eprintln!("ctr run took {:?}", t.elapsed());

    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    eprintln!("dockerd ready in {:?}", dockerd.startup);
    dockerd
        .docker(&["load", "-i", tar])
        .and_then(|r| r.ok())
        .expect("docker load");
    let t = Instant::now();
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
        .expect("docker run echo");
    assert_eq!(hi.trim(), "hi");
    eprintln!("docker run took {:?}", t.elapsed());
    drop(dockerd);

    containerd.prepare_cri().expect("import the sandbox image");
    let v: serde_json::Value =
        serde_json::from_str(&cri(containerd.socket(), &["version"]).expect("CRI Version"))
            .expect("JSON");
    assert_eq!(v["runtime_name"], "containerd", "{v}");
    let t = Instant::now();
    let pod =
        cri(containerd.socket(), &["run-pod-sandbox", "testbed-smoke"]).expect("CRI RunPodSandbox");
    let pod = pod.trim();
    assert_eq!(pod.len(), 64, "pod id: {pod}");
    eprintln!("RunPodSandbox took {:?}", t.elapsed());
    let pods = cri(containerd.socket(), &["list-pods"]).expect("CRI ListPodSandbox");
    assert!(pods.contains(pod), "{pods}");
    cri(containerd.socket(), &["stop-remove-pod", pod])
        .expect("CRI StopPodSandbox + RemovePodSandbox");

    drop(containerd);
    eprintln!("smoke test took {:?}", t0.elapsed());
}

/// Dropping the handles must leave nothing behind even with a ctr container, a docker container
/// and a pod still running: no shim or container process, no mount, no temporary folder.
#[test]
fn cleanup_after_leftovers() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd, Need::TestPeer);
    let containerd = Containerd::start().expect("containerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("build busybox image");
    let tar = tar.to_str().expect("UTF-8 path");
    containerd
        .ctr(&["images", "import", tar])
        .and_then(|r| r.ok())
        .expect("ctr images import");
    containerd
        .ctr(&[
            "run",
            "-d",
            BUSYBOX_REF,
            "cleanup-after-leftovers",
            "sleep",
            "1000",
        ])
        .and_then(|r| r.ok())
        .expect("ctr run -d");
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    dockerd
        .docker(&["load", "-i", tar])
        .and_then(|r| r.ok())
        .expect("docker load");
    dockerd
        .docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "busybox:test",
            "sleep",
            "1000",
        ])
        .and_then(|r| r.ok())
        .expect("docker run -d");
    containerd.prepare_cri().expect("import the sandbox image");
    cri(
        containerd.socket(),
        &["run-pod-sandbox", "cleanup-after-leftovers"],
    )
    .expect("CRI RunPodSandbox");

    let shims = containerd.shim_pids();
    assert_eq!(shims.len(), 3, "one shim per container and pod: {shims:?}");
    let everything = support::process::with_descendants(&shims);
    let dirs = [containerd.dir().to_path_buf(), dockerd.dir().to_path_buf()];
    let t = Instant::now();
    drop(dockerd);
    drop(containerd);
    eprintln!("clean-up took {:?}", t.elapsed());

    let alive: Vec<i32> = everything
        .iter()
        .copied()
        .filter(|&p| support::process::is_running(p))
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for d in &dirs {
        let d = d.to_str().expect("UTF-8 path");
        assert!(!mounts.contains(d), "mounts left under {d}:\n{mounts}");
        if std::env::var_os("CONTAINERDSNOOP_KEEP_TESTDIR").is_none() {
            assert!(!Path::new(d).exists(), "{d} not removed");
        }
    }
}

/// The tracer handle with a shell stand-in: readiness line, SIGINT, captured output.
#[test]
fn tracer_handle_with_stand_in() {
    let script = "echo 'Loading...' >&2; trap 'echo bye; exit 0' INT; echo 'Tracing unix sockets' >&2; \
                  echo event; while :; do sleep 0.05; done";
    let mut tracer = Tracer::spawn(Path::new("/bin/sh"), &["-c", script]).expect("spawn stand-in");
    tracer
        .wait_ready(Duration::from_secs(5))
        .expect("ready line");
    let out = tracer.stop(Duration::from_secs(5)).expect("stop");
    assert!(out.status.is_some_and(|s| s.success()), "{out:?}");
    assert_eq!(out.stdout_str(), "event\nbye\n");
    assert!(out.stderr.contains("Tracing unix sockets"));

    let mut early_exit = Tracer::spawn(
        Path::new("/bin/sh"),
        &["-c", "echo 'no BPF for you' >&2; exit 3"],
    )
    .expect("spawn");
    let err = early_exit
        .wait_ready(Duration::from_secs(5))
        .expect_err("exits before ready");
    assert!(format!("{err:#}").contains("no BPF for you"), "{err:#}");
}

/// The stream and datagram peers run without root; each receiver's file equals what was sent.
#[test]
fn testpeer_exchange_and_dgram() {
    support::require!(Need::TestPeer);
    let dir = support::temp_dir("peer").expect("temp dir");
    for mode in ["write", "writev", "send", "sendmsg", "nonblock"] {
        let out = dir.join(mode);
        let sock = dir.join(format!("{mode}.sock"));
        let v = support::testpeer_json(
            &[
                "exchange",
                "--path",
                sock.to_str().expect("path"),
                "--mode",
                mode,
                "--bytes",
                "5000000",
                "--seed",
                "9",
                "--iovecs",
                "26",
                "--out-dir",
                out.to_str().expect("path"),
            ],
            Duration::from_secs(60),
        )
        .expect("exchange");
        assert_eq!(v["c2s_len"], 5_000_000, "{v}");
        assert_eq!(v["s2c_len"], 2_500_000, "{v}");
        assert_eq!(
            std::fs::metadata(out.join("client_to_server.bin"))
                .expect("c2s file")
                .len(),
            5_000_000
        );
        if mode == "nonblock" {
            assert!(
                v["eagain"].as_u64() > Some(0) && v["partial_writes"].as_u64() > Some(0),
                "{v}"
            );
        }
    }
    let sock = dir.join("d.sock");
    let v = support::testpeer_json(
        &[
            "dgram",
            "--path",
            sock.to_str().expect("path"),
            "--count",
            "40",
            "--seed",
            "3",
            "--mode",
            "sendmsg",
        ],
        Duration::from_secs(60),
    )
    .expect("dgram");
    assert_eq!(v["c2s_sizes"].as_array().map(Vec::len), Some(40), "{v}");
    support::remove_temp_dir(&dir);
}
