//! Attach at any time: dockerd keeps its gRPC connections to containerd open for its whole life
//! (with `Events/Subscribe` streams), and grpc-go puts `:path` in the HPACK dynamic table. A
//! tracer started after dockerd must still name dockerd's calls on those connections: exactly,
//! or by inference marked as such — never a wrong name shown as certain. A second tracer that
//! was running from the start provides the truth. Needs root (skipped otherwise, failed in CI).

mod support;

use std::{collections::HashMap, path::Path, time::Duration};

use support::{Containerd, Dockerd, Need, Tracer, busybox_image_tar};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");

fn start(args: &[&str]) -> Tracer {
    let mut t = Tracer::spawn(Path::new(TRACER), args).expect("spawn tracer");
    t.wait_ready(Duration::from_secs(30))
        .expect("tracer attaches");
    t
}

fn stop(t: Tracer) -> (Vec<serde_json::Value>, String) {
    std::thread::sleep(Duration::from_millis(500));
    let out = t.stop(Duration::from_secs(10)).expect("tracer stops");
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{:?}: {}",
        out.status,
        out.stderr
    );
    let rows = out
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect();
    (rows, out.stderr)
}

/// A call's identity across two tracers: the connection's socket inodes (sorted) and the stream.
fn call_key(r: &serde_json::Value) -> Option<(u64, u64, u64)> {
    let inodes = r["sock_inodes"].as_array()?;
    let (a, b) = (inodes.first()?.as_u64()?, inodes.get(1)?.as_u64()?);
    Some((a.min(b), a.max(b), r["stream"].as_u64()?))
}

/// Methods per call as one tracer saw them: (method, inferred).
fn calls(
    rows: &[serde_json::Value],
    only_late: bool,
) -> HashMap<(u64, u64, u64), (Option<String>, bool)> {
    let mut out = HashMap::new();
    for r in rows {
        if r["protocol"] != "grpc" || r["type"] == "NOTE" || (only_late && r["sync"] != "late_join")
        {
            continue;
        }
        let Some(key) = call_key(r) else { continue };
        let method = r["method"].as_str().map(str::to_string);
        let inferred = r["method_inferred"].as_bool().unwrap_or(false);
        let entry = out.entry(key).or_insert((None, false));
        if entry.0.is_none() && method.is_some() {
            *entry = (method, inferred);
        }
    }
    out
}

fn docker_workload(dockerd: &Dockerd, tag: &str, rounds: usize) {
    for i in 0..rounds {
        let name = format!("late-{tag}-{i}");
        let out = dockerd
            .docker(&[
                "run",
                "--name",
                &name,
                "--network",
                "none",
                "busybox:test",
                "echo",
                "hi",
            ])
            .and_then(|r| r.ok())
            .expect("docker run");
        assert_eq!(out.trim(), "hi");
        dockerd
            .docker(&["ps", "-a"])
            .and_then(|r| r.ok())
            .expect("docker ps");
        dockerd
            .docker(&["inspect", &name])
            .and_then(|r| r.ok())
            .expect("docker inspect");
        dockerd
            .docker(&["rm", &name])
            .and_then(|r| r.ok())
            .expect("docker rm");
    }
}

/// Compares a late tracer's calls with the truth; returns (named correctly, total, wrong certain).
fn score(
    truth: &HashMap<(u64, u64, u64), (Option<String>, bool)>,
    late: &HashMap<(u64, u64, u64), (Option<String>, bool)>,
) -> (usize, usize, Vec<String>) {
    let (mut correct, mut total, mut wrong_certain) = (0, 0, Vec::new());
    for (key, (method, inferred)) in late {
        let Some((Some(true_method), _)) = truth.get(key) else {
            continue;
        };
        total += 1;
        match method {
            Some(m) if m == true_method => correct += 1,
            Some(m) if !inferred => {
                wrong_certain.push(format!("{key:?}: shown {m} (certain), was {true_method}"))
            }
            _ => {}
        }
    }
    (correct, total, wrong_certain)
}

#[test]
fn dockerd_calls_on_connections_opened_before_the_tracer_are_named() {
    support::require!(Need::Root, Need::Containerd, Need::Dockerd);
    let containerd = Containerd::start().expect("containerd starts");
    let sock = containerd.socket().to_str().expect("utf-8").to_string();
    let truth_tracer = start(&["-o", "json", "-q", &sock]);
    let dockerd = Dockerd::start(&containerd).expect("dockerd starts");
    let tar = busybox_image_tar(containerd.dir()).expect("image");
    dockerd
        .docker(&["load", "-i", tar.to_str().expect("utf-8")])
        .and_then(|r| r.ok())
        .expect("load");

    // Phase 1: the tracer joins connections that have carried little traffic.
    let late1 = start(&["-o", "json", "-q", &sock]);
    docker_workload(&dockerd, "a", 3);
    let (late1_rows, late1_err) = stop(late1);
    // Phase 2: more traffic first, so the header tables hold more that this tracer never saw.
    docker_workload(&dockerd, "b", 5);
    let late2 = start(&["-o", "json", "-q", &sock]);
    docker_workload(&dockerd, "c", 3);
    let (late2_rows, _) = stop(late2);
    let (truth_rows, _) = stop(truth_tracer);

    if let Ok(dir) = std::env::var("LATE_JOIN_DUMP") {
        for (name, rows) in [
            ("truth", &truth_rows),
            ("late1", &late1_rows),
            ("late2", &late2_rows),
        ] {
            let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
            std::fs::write(format!("{dir}/{name}.jsonl"), text.join("\n")).expect("dump");
        }
    }
    let truth = calls(&truth_rows, false);
    let mut report = Vec::new();
    for (phase, rows, err) in [
        ("fresh", &late1_rows, &late1_err),
        ("busy", &late2_rows, &String::new()),
    ] {
        assert!(
            phase != "fresh" || err.contains("already open on the selected sockets"),
            "the tracer lists dockerd's open connections at start: {err}"
        );
        let late = calls(rows, true);
        let (correct, total, wrong) = score(&truth, &late);
        assert!(
            total >= 10,
            "{phase}: dockerd's calls on late-joined connections were seen ({total})"
        );
        assert!(
            wrong.is_empty(),
            "{phase}: wrong methods shown as certain: {wrong:#?}"
        );
        let share = correct as f64 / total as f64;
        report.push(format!(
            "{phase}: {correct}/{total} calls named correctly ({:.1}%)",
            share * 100.0
        ));
        assert!(
            share >= 0.9,
            "{phase}: only {:.1}% named correctly",
            share * 100.0
        );
    }
    eprintln!("late join on dockerd's connections: {}", report.join("; "));
}
