//! Overhead on the traced workload: calls/s of a unary gRPC client and server (tonic, CRI
//! ImageStatus) over a unix socket, untraced, traced by each backend that attaches here, and
//! through a `socat -v` relay (the classic way to watch a daemon's socket without eBPF), in
//! interleaved repetitions so that drifting machine load hits every configuration alike. Then
//! one more traced run with `kernel.bpf_stats_enabled=1` for the kernel side: each program's
//! run time per captured record.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::proc::{BpfStats, Helper, Tracer, bpf_prog_stats, json_of};
use super::{Env, Report, s};

const TARGET: f64 = 0.95;
const TARGET_BPF_NS: f64 = 500.0;
const TARGET_CPU_US: f64 = 3.0;

/// One measured configuration of the workload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Config {
    Untraced,
    Socat,
    Traced(usize),
}

/// `socat -v` relaying a listening socket to the server's, its hex dump thrown away; killed on
/// drop.
struct Relay(Child);

impl Relay {
    fn start(listen: &std::path::Path, server: &std::path::Path) -> anyhow::Result<Relay> {
        let _ = std::fs::remove_file(listen);
        let child = Command::new("socat")
            .arg("-v")
            .arg(format!("UNIX-LISTEN:{},fork", s(listen)))
            .arg(format!("UNIX-CONNECT:{}", s(server)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start socat")?;
        let relay = Relay(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listen.exists() {
            anyhow::ensure!(Instant::now() < deadline, "socat did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(relay)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    let (reps, secs) = if env.quick { (1, 2.0) } else { (3, 6.0) };
    let sock = env.dir.join("unary.sock");
    let relay_sock = env.dir.join("relay.sock");
    let _server = Helper::start(
        Command::new(&env.peer).args(["bench", "serve", "--path", &s(&sock)]),
        "ready",
    )?;
    // (calls, seconds) of one client run against `path`.
    let client = |path: &std::path::Path| -> anyhow::Result<(f64, f64)> {
        let v = json_of(Command::new(&env.peer).args([
            "bench",
            "unary",
            "--path",
            &s(path),
            "--secs",
            &secs.to_string(),
        ]))?;
        let calls = v["calls"].as_f64().unwrap_or(0.0);
        let t = v["secs"].as_f64().unwrap_or(1.0);
        Ok((calls, t))
    };
    // Which backends attach here: try each once.
    let mut backends = Vec::new();
    for b in ["kprobe", "tracepoint"] {
        let args = vec![s(&sock), "--backend".into(), b.into(), "-q".into()];
        match Tracer::start(&env.tracer, &args) {
            Ok(t) => {
                let _ = t.stop();
                backends.push(b);
            }
            Err(e) => {
                let why = format!("{e:#}");
                let why = why
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect::<String>();
                r.figure(
                    &format!("traced ({b} backend)"),
                    "not measurable here: it does not attach".into(),
                    "",
                    None,
                );
                r.note(&format!("{b} backend: {why}"));
            }
        }
    }
    let socat = Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !socat {
        r.note(
            "socat is not installed (`sudo cargo xtask setup` installs it): no relay comparison",
        );
    }
    let mut untraced = Vec::new();
    let mut relayed = Vec::new();
    let mut traced: Vec<Vec<f64>> = vec![Vec::new(); backends.len()];
    let mut rows = vec![0u64; backends.len()];
    let mut cpu = vec![0f64; backends.len()];
    let mut calls = vec![0f64; backends.len()];
    for rep in 0..reps {
        // Alternate the order: U S T T' ..., then ... T' T S U.
        let mut order: Vec<Config> = [Config::Untraced]
            .into_iter()
            .chain(socat.then_some(Config::Socat))
            .chain((0..backends.len()).map(Config::Traced))
            .collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        for cfg in order {
            match cfg {
                Config::Untraced => {
                    let (n, t) = client(&sock)?;
                    untraced.push(n / t);
                }
                Config::Socat => {
                    let _relay = Relay::start(&relay_sock, &sock)?;
                    let (n, t) = client(&relay_sock)?;
                    relayed.push(n / t);
                }
                Config::Traced(i) => {
                    let args = vec![s(&sock), "--backend".into(), backends[i].into()];
                    let t = Tracer::start(&env.tracer, &args)?;
                    let before = t.cpu();
                    let run = client(&sock);
                    let used = t.cpu().saturating_sub(before);
                    let (sum, _) = t.stop()?;
                    let (n, secs) = run?;
                    traced[i].push(n / secs);
                    rows[i] += sum.rows;
                    cpu[i] += used.as_secs_f64();
                    calls[i] += n;
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.0}–{hi:.0}")
    };
    let base = mean(&untraced);
    r.figure(
        "untraced",
        format!("{base:.0} calls/s (runs: {})", spread(&untraced)),
        "",
        None,
    );
    let mut best_ratio = None;
    for (i, b) in backends.iter().enumerate() {
        let t = mean(&traced[i]);
        let ratio = t / base;
        best_ratio = Some(ratio);
        r.figure(
            &format!("traced ({b} backend)"),
            format!(
                "{t:.0} calls/s (runs: {}) = {ratio:.3} × untraced; the tracer printed {} rows \
                 and used {:.0}% of a core",
                spread(&traced[i]),
                rows[i],
                100.0 * cpu[i] / (reps as f64 * (secs + 0.5)),
            ),
            &format!("≥ {TARGET} ×"),
            Some(ratio >= TARGET),
        );
        // Each OK call is three rows (REQ, RESP, END).
        let decoded = rows[i] as f64 / 3.0;
        let per_call = 1e6 * cpu[i] / decoded.max(1.0);
        r.figure(
            &format!("tracer CPU per decoded call ({b} backend)"),
            format!(
                "{per_call:.1} µs (utime+stime from /proc: {:.2} s for {decoded:.0} calls, \
                 3 rows each, table to /dev/null; {:.0} client calls)",
                cpu[i], calls[i]
            ),
            &format!("≤ {TARGET_CPU_US:.0} µs"),
            Some(per_call <= TARGET_CPU_US),
        );
    }
    if !relayed.is_empty() {
        let relay = mean(&relayed);
        let vs_traced = best_ratio.map_or(String::new(), |t| {
            format!(
                "; containerdsnoop's traced/untraced is {:.1}× socat's",
                t / (relay / base)
            )
        });
        r.figure(
            "through a `socat -v` relay",
            format!(
                "{relay:.0} calls/s (runs: {}) = {:.3} × untraced{vs_traced}",
                spread(&relayed),
                relay / base
            ),
            "",
            None,
        );
    }
    r.note(&format!(
        "one connection, one ImageStatus call at a time, {reps} interleaved runs of {secs} s per \
         configuration; the tracer prints the decoded table to /dev/null; socat -v relays a \
         second socket to the server's and writes its dump to /dev/null"
    ));
    if let Some(b) = backends.last() {
        bpf_time(env, r, &sock, b, secs)?;
    }
    Ok(())
}

/// One traced run with bpf_stats on: every program's run time, per captured record (each
/// unary message is at most a few hundred bytes: one send, one record).
fn bpf_time(
    env: &Env,
    r: &mut Report,
    sock: &std::path::Path,
    backend: &str,
    secs: f64,
) -> anyhow::Result<()> {
    let stats = match BpfStats::enable() {
        Ok(s) => s,
        Err(e) => {
            r.note(&format!("no per-program BPF time: {e:#}"));
            return Ok(());
        }
    };
    let args = vec![s(sock), "--backend".into(), backend.into()];
    let t = Tracer::start(&env.tracer, &args)?;
    let before = bpf_prog_stats(t.pid());
    let v = json_of(Command::new(&env.peer).args([
        "bench",
        "unary",
        "--path",
        &s(sock),
        "--secs",
        &secs.to_string(),
    ]));
    let after = bpf_prog_stats(t.pid());
    let (sum, _) = t.stop()?;
    drop(stats);
    let v = v?;
    let records = sum.records.max(1) as f64;
    let mut total_ns = 0u64;
    let mut parts = Vec::new();
    for p in &after {
        let old = before.iter().find(|b| b.id == p.id);
        let ns = p.run_time_ns - old.map_or(0, |o| o.run_time_ns);
        let cnt = p.run_cnt - old.map_or(0, |o| o.run_cnt);
        if cnt == 0 {
            continue;
        }
        total_ns += ns;
        parts.push(format!(
            "`{}` {:.2} µs per record ({cnt} runs, {:.0} ns each)",
            p.name,
            ns as f64 / records / 1e3,
            ns as f64 / cnt as f64
        ));
    }
    let per = total_ns as f64 / records;
    r.figure(
        &format!("BPF time per traced send ({backend} backend)"),
        format!(
            "{:.2} µs ({:.3} s in all programs for {} records of {:.0} calls)",
            per / 1e3,
            total_ns as f64 / 1e9,
            sum.records,
            v["calls"].as_f64().unwrap_or(0.0)
        ),
        &format!("≤ {:.1} µs", TARGET_BPF_NS / 1e3),
        Some(per <= TARGET_BPF_NS),
    );
    r.note(&format!(
        "kernel.bpf_stats_enabled=1 for one extra traced run; run_time_ns and run_cnt of each of \
         the tracer's programs (from /proc/PID/fdinfo of its program fds, names by bpftool) ÷ the \
         records it captured; the syscall tracepoints run for every process's writes, so their \
         time counts all of them: {}",
        parts.join("; ")
    ));
    Ok(())
}
