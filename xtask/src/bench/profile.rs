//! Where the time goes: `perf record` of the tracer decoding the decode benchmark's pcap
//! (`-r`, table and JSON) and of the live tracer under the unary workload; the hottest
//! symbols (self time) go into the report. Needs `perf`; the pcap is generated when missing.

use std::process::{Command, Stdio};

use anyhow::Context as _;

use super::proc::{Helper, Tracer, json_of};
use super::{Env, Report, s};

/// Symbols listed per profile.
const TOP: usize = 14;

pub fn run(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    let perf_ok = Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    anyhow::ensure!(perf_ok, "perf is not installed");
    let dir = env.dir.join("decode");
    let pcap = dir.join("capture.pcap");
    if !pcap.exists() {
        let calls = if env.quick { "4000" } else { "40000" };
        json_of(Command::new(&env.peer).args([
            "bench",
            "gen",
            "--out-dir",
            &s(&dir),
            "--calls",
            calls,
        ]))?;
    }
    for (label, extra) in [("table", &[][..]), ("JSON", &["-o", "json"][..])] {
        let data = env
            .dir
            .join(format!("perf-r-{}.data", label.to_lowercase()));
        let status = Command::new("perf")
            .args(["record", "-q", "-F", "1999", "-g", "-o", &s(&data), "--"])
            .arg(&env.tracer)
            .args(["-r", &s(&pcap), "-q"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("perf record")?;
        anyhow::ensure!(
            status.success(),
            "perf record -r ({label}) failed: {status}"
        );
        r.note(&format!(
            "`-r capture.pcap` → {label}, self time: {}",
            top_symbols(&data)?
        ));
    }
    // The live tracer under the unary workload of the overhead benchmark.
    let secs = if env.quick { 2 } else { 6 };
    let sock = env.dir.join("profile.sock");
    let _server = Helper::start(
        Command::new(&env.peer).args(["bench", "serve", "--path", &s(&sock)]),
        "ready",
    )?;
    let tracer = Tracer::start(&env.tracer, &[s(&sock)])?;
    let data = env.dir.join("perf-live.data");
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-F", "1999", "-g", "-o", &s(&data), "-p"])
        .arg(tracer.pid().to_string())
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf record -p")?;
    let client = json_of(Command::new(&env.peer).args([
        "bench",
        "unary",
        "--path",
        &s(&sock),
        "--secs",
        &secs.to_string(),
    ]));
    let _ = perf.wait();
    let (sum, _) = tracer.stop()?;
    client?;
    r.note(&format!(
        "live tracer (tracepoint backend, table to /dev/null, {} rows) under the unary \
         workload, self time: {}",
        sum.rows,
        top_symbols(&data)?
    ));
    r.note(
        "perf record -F 1999 -g; `perf report --no-children --sort sym`; the profiles stay in \
         target/bench/perf-*.data",
    );
    Ok(())
}

/// The hottest symbols of a profile, as `12.3% name`.
fn top_symbols(data: &std::path::Path) -> anyhow::Result<String> {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "sym",
            "-g",
            "none",
            "-i",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("perf report")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let top: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('%'))
        .filter_map(|l| {
            let (pct, rest) = l.trim().split_once('%')?;
            let sym = rest
                .trim()
                .trim_start_matches("[.]")
                .trim_start_matches("[k]")
                .trim();
            // Rust symbols: drop the hash suffix and long generic paths.
            let sym = sym.split("::h").next().unwrap_or(sym);
            let sym: String = sym.chars().take(90).collect();
            Some(format!("{pct}% `{sym}`"))
        })
        .take(TOP)
        .collect();
    Ok(top.join(", "))
}
