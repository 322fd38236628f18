//! What ships, end to end: the tracer gives up its capabilities once attached and still
//! decodes; the container image runs with exactly the privileges, PID namespace and mounts that
//! deploy/kubernetes/daemonset.yaml grants (read from that file) and prints rows of `ctr` calls
//! on its stdout; the image archive loads into both docker and containerd. Needs root (skipped
//! otherwise, failed in CI); the image test needs `CONTAINERDSNOOP_IMAGE_ARCHIVE`, which
//! `cargo xtask test` sets after `cargo xtask image`.

mod support;

use std::{fs, path::Path, time::Duration};

use support::{Containerd, Dockerd, Need, Tracer};
use yaml_rust2::{Yaml, YamlLoader};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");
const VERSION_METHOD: &str = "/containerd.services.version.v1.Version/Version";
const CAP_BPF: u32 = 39;

/// A `CapXxx:` line of a `/proc/.../status` file.
fn cap_field(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(":\t"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// What the tracer may keep: nothing, or CAP_BPF where map reads need it (Linux < 6.5 with
/// unprivileged BPF disabled; see src/privileges.rs).
fn expected_kept() -> u64 {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let disabled = fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .is_ok_and(|v| v.trim() != "0");
    if (major, minor) < (6, 5) && disabled {
        1 << CAP_BPF
    } else {
        0
    }
}

fn json_rows(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON row {l}: {e}")))
        .collect()
}

/// REQ, RESP and END rows of `ctr version`, sent by `ctr` and answered by containerd.
fn assert_version_call(rows: &[serde_json::Value], context: &str) {
    let of = |kind: &str| {
        rows.iter()
            .filter(|r| r["type"] == kind && r["method"] == VERSION_METHOD)
            .collect::<Vec<_>>()
    };
    let reqs = of("REQ");
    assert!(
        reqs.iter().any(|r| r["comm"] == "ctr"),
        "no Version request from ctr; {context}"
    );
    assert!(
        of("RESP").iter().any(|r| r["comm"] == "containerd"
            && r["message"]["version"]
                .as_str()
                .is_some_and(|v| !v.is_empty())),
        "no decoded Version response; {context}"
    );
    assert!(
        of("END").iter().any(|r| r["status_code"] == 0),
        "no OK end of the call; {context}"
    );
}

#[test]
fn tracer_drops_its_capabilities_once_attached_and_still_decodes() {
    support::require!(Need::Root, Need::Containerd);
    let containerd = Containerd::start().expect("containerd");
    let socket = containerd.socket().to_str().expect("UTF-8 path");
    let mut tracer = Tracer::spawn(Path::new(TRACER), &["-o", "json", socket]).expect("spawn");
    tracer
        .wait_ready(Duration::from_secs(30))
        .expect("tracer attaches");
    let pid = tracer.pid().expect("pid");
    // Where nothing is kept, the drop-counter read (a bpf() call) worked without privileges.
    let kept = expected_kept();
    assert_eq!(ALL_CAPABILITIES[CAP_BPF as usize], "BPF");
    // Every thread: capabilities are per thread.
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    for task in tasks.flatten() {
        let status = fs::read_to_string(task.path().join("status")).expect("status");
        for field in ["CapEff", "CapPrm"] {
            assert_eq!(
                cap_field(&status, field),
                kept,
                "{field} of {:?}",
                task.path()
            );
        }
        for field in ["CapInh", "CapAmb", "CapBnd"] {
            assert_eq!(cap_field(&status, field), 0, "{field} of {:?}", task.path());
        }
        assert!(
            status.contains("NoNewPrivs:\t1"),
            "no_new_privs unset: {status}"
        );
    }
    containerd
        .ctr(&["version"])
        .expect("ctr")
        .ok()
        .expect("ctr version");
    std::thread::sleep(Duration::from_millis(300));
    let out = tracer.stop(Duration::from_secs(10)).expect("stop");
    assert!(
        out.status.is_some_and(|s| s.success()),
        "exit {:?}: {}",
        out.status,
        out.stderr
    );
    assert!(
        !out.stderr.contains("could not drop"),
        "stderr: {}",
        out.stderr
    );
    assert_version_call(&json_rows(&out.stdout_str()), &out.stderr);
}

/// The DaemonSet's container, as `ctr run` flags: the test runs it with the test containerd,
/// the runtime a kubelet would hand it to. (Debian's dockerd 20.10 does not know CAP_BPF or
/// CAP_PERFMON, so it cannot run it; it only loads the archive below.)
struct Grants {
    image: String,
    flags: Vec<String>,
    args: Vec<String>,
    capabilities: Vec<String>,
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every capability Linux 6.x knows, in kernel order, for `drop: [ALL]` (ctr drops them one
/// by one).
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Reads deploy/kubernetes/daemonset.yaml into `ctr run` flags: capabilities, hostPID,
/// read-only root, no privilege escalation, seccomp, user, memory limit and the hostPath
/// mounts. A setting this function does not know fails the test, so the two cannot drift.
fn daemonset_grants() -> Grants {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let text = fs::read_to_string(&path).expect("read the DaemonSet");
    let docs = YamlLoader::load_from_str(&text).expect("YAML");
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    // ctr gives a container its own network namespace (no CNI): what hostNetwork unset means.
    assert_ne!(
        pod["hostNetwork"].as_bool(),
        Some(true),
        "teach this test hostNetwork"
    );
    let mut flags = Vec::new();
    if pod["hostPID"].as_bool() == Some(true) {
        // The PID namespace this test, containerd and ctr run in: the host's.
        let ns = format!("pid:/proc/{}/ns/pid", std::process::id());
        flags.extend(["--with-ns".into(), ns]);
    }
    let known = [
        "privileged",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "runAsUser",
        "runAsNonRoot",
        "capabilities",
        "seccompProfile",
    ];
    for (key, _) in sc.as_hash().expect("securityContext") {
        let key = key.as_str().unwrap_or_default();
        assert!(
            known.contains(&key),
            "securityContext.{key}: teach this test about it"
        );
    }
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    // ctr sets no_new_privs unless told otherwise.
    if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
        flags.push("--allow-new-privs".into());
    }
    if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
        flags.push("--read-only".into());
    }
    assert_eq!(
        sc["runAsUser"].as_i64(),
        Some(0),
        "teach this test other users"
    );
    // RuntimeDefault is containerd's default profile, which ctr applies with --seccomp.
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    flags.push("--seccomp".into());
    let capabilities = strings(&sc["capabilities"]["add"]);
    for cap in &capabilities {
        flags.extend(["--cap-add".into(), format!("CAP_{cap}")]);
    }
    for cap in strings(&sc["capabilities"]["drop"]) {
        let dropped: Vec<String> = if cap == "ALL" {
            ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
        } else {
            vec![cap]
        };
        for cap in dropped.into_iter().filter(|c| !capabilities.contains(c)) {
            flags.extend(["--cap-drop".into(), format!("CAP_{cap}")]);
        }
    }
    if let Some(memory) = c["resources"]["limits"]["memory"].as_str() {
        let mib: u64 = memory
            .strip_suffix("Mi")
            .expect("memory in Mi")
            .parse()
            .expect("MiB");
        flags.extend(["--memory-limit".into(), (mib << 20).to_string()]);
    }
    let volumes = pod["volumes"].as_vec().expect("volumes");
    for mount in c["volumeMounts"].as_vec().expect("volumeMounts") {
        let name = mount["name"].as_str().expect("mount name");
        let volume = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .expect("mounted volume");
        let host = volume["hostPath"]["path"]
            .as_str()
            .expect("hostPath volume");
        let target = mount["mountPath"].as_str().expect("mountPath");
        let mode = if mount["readOnly"].as_bool() == Some(true) {
            "ro"
        } else {
            "rw"
        };
        flags.extend([
            "--mount".into(),
            format!("type=bind,src={host},dst={target},options=rbind:{mode}"),
        ]);
    }
    Grants {
        image: c["image"].as_str().expect("image").to_string(),
        flags,
        args: strings(&c["args"]),
        capabilities,
    }
}

/// The bits of `names` in a capability mask (`ALL_CAPABILITIES` is in kernel order).
fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .map(|n| {
            ALL_CAPABILITIES
                .iter()
                .position(|c| c == n)
                .expect("known capability")
        })
        .fold(0, |mask, bit| mask | 1 << bit)
}

#[test]
fn image_runs_with_the_daemonset_privileges_and_prints_rows() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let Some(archive) = std::env::var_os("CONTAINERDSNOOP_IMAGE_ARCHIVE") else {
        let why = "CONTAINERDSNOOP_IMAGE_ARCHIVE not set (run `cargo xtask image`)";
        assert!(!support::skips_are_failures(), "cannot run: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    };
    let archive = archive.to_str().expect("UTF-8 path").to_string();
    let grants = daemonset_grants();
    let mut caps = grants.capabilities.clone();
    caps.sort();
    assert_eq!(caps, ["BPF", "PERFMON"]);

    let containerd = Containerd::start().expect("containerd");
    // docker loads the archive, under the name the DaemonSet runs.
    {
        let dockerd = Dockerd::start(&containerd).expect("dockerd");
        let loaded = dockerd
            .docker(&["load", "-i", &archive])
            .expect("docker load")
            .ok()
            .expect("docker load");
        let tag = loaded
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .expect("loaded image name")
            .trim()
            .to_string();
        assert_eq!(
            format!("docker.io/library/{tag}"),
            grants.image,
            "the DaemonSet runs another image than the one built"
        );
        assert!(tag.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
    }
    // So does containerd, and runs it.
    containerd
        .ctr(&["images", "import", &archive])
        .expect("ctr")
        .ok()
        .expect("ctr images import");
    let images = containerd
        .ctr(&["images", "ls", "-q"])
        .expect("ctr")
        .ok()
        .expect("ctr images ls");
    assert!(images.lines().any(|l| l == grants.image), "{images}");

    let socket = containerd.socket().to_str().expect("UTF-8").to_string();
    let name = format!("csn-ship-{}", std::process::id());
    // The test's containerd listens in a folder of its own, not under the /run the DaemonSet
    // mounts: that folder is mounted the same way (read-only, at its own path), since the
    // tracer selects the socket by the identity of its file.
    let socket_dir = containerd.dir().display().to_string();
    let socket_mount = format!("type=bind,src={socket_dir},dst={socket_dir},options=rbind:ro");
    let mut run: Vec<&str> = vec!["--address", &socket, "run"];
    run.extend(grants.flags.iter().map(String::as_str));
    run.extend(["--mount", socket_mount.as_str()]);
    run.extend([grants.image.as_str(), name.as_str()]);
    // ctr's arguments replace the entry point, where Kubernetes' `args` follow it: name the
    // program, as `kubectl debug ... -- containerdsnoop ARGS` does (the image's PATH finds it).
    run.push("containerdsnoop");
    run.extend(grants.args.iter().map(String::as_str));
    run.push(&socket);
    let ctr = support::which("ctr").expect("ctr");
    // `ctr run` in the foreground relays the container's stdout and stderr, and forwards
    // SIGINT to it: the harness's tracer handling works as is.
    let mut tracer = Tracer::spawn(&ctr, &run).expect("ctr run");
    tracer
        .wait_ready(Duration::from_secs(60))
        .expect("the tracer attaches inside the container");

    // The container process (host PID namespace): bounded to exactly what the DaemonSet
    // grants, and holding none of it any more.
    let pid = containerd
        .ctr(&["tasks", "ls"])
        .expect("ctr tasks ls")
        .ok()
        .expect("ctr tasks ls")
        .lines()
        .find(|l| l.starts_with(&name))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .expect("the task's pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(
        cap_field(&status, "CapBnd"),
        mask(&grants.capabilities),
        "{status}"
    );
    assert_eq!(cap_field(&status, "CapEff"), expected_kept(), "{status}");
    assert_eq!(cap_field(&status, "CapPrm"), expected_kept(), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");

    containerd
        .ctr(&["version"])
        .expect("ctr")
        .ok()
        .expect("ctr version");
    std::thread::sleep(Duration::from_millis(500));
    let out = tracer.stop(Duration::from_secs(15)).expect("stop");
    let context = format!("exit {:?}, stderr: {}", out.status, out.stderr);
    assert!(out.status.is_some_and(|s| s.success()), "{context}");
    assert_version_call(&json_rows(&out.stdout_str()), &context);
    let _ = containerd.ctr(&["containers", "rm", &name]);
}
