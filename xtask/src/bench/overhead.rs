//! Overhead on the traced workload: calls/s of a unary gRPC client and server (tonic, CRI
//! ImageStatus) over a unix socket, untraced and traced by each backend that attaches here,
//! in interleaved repetitions so that drifting machine load hits every configuration alike.

use std::process::Command;

use super::proc::{Helper, Tracer, json_of};
use super::{Env, Report, s};

const TARGET: f64 = 0.95;

pub fn run(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    let (reps, secs) = if env.quick { (1, 2.0) } else { (3, 6.0) };
    let sock = env.dir.join("unary.sock");
    let _server = Helper::start(
        Command::new(&env.peer).args(["bench", "serve", "--path", &s(&sock)]),
        "ready",
    )?;
    let client = || -> anyhow::Result<f64> {
        let v = json_of(Command::new(&env.peer).args([
            "bench",
            "unary",
            "--path",
            &s(&sock),
            "--secs",
            &secs.to_string(),
        ]))?;
        let calls = v["calls"].as_f64().unwrap_or(0.0);
        let t = v["secs"].as_f64().unwrap_or(1.0);
        Ok(calls / t)
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
    let mut untraced = Vec::new();
    let mut traced: Vec<Vec<f64>> = vec![Vec::new(); backends.len()];
    let mut rows = vec![0u64; backends.len()];
    let mut cpu = vec![0f64; backends.len()];
    let mut calls = vec![0f64; backends.len()];
    for rep in 0..reps {
        // Alternate the order: U T T' ..., then ... T' T U.
        let mut order: Vec<Option<usize>> = std::iter::once(None)
            .chain((0..backends.len()).map(Some))
            .collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        for cfg in order {
            match cfg {
                None => untraced.push(client()?),
                Some(i) => {
                    let args = vec![s(&sock), "--backend".into(), backends[i].into()];
                    let t = Tracer::start(&env.tracer, &args)?;
                    let before = t.cpu();
                    let rate = client();
                    let used = t.cpu().saturating_sub(before);
                    let (sum, _) = t.stop()?;
                    let rate = rate?;
                    traced[i].push(rate);
                    rows[i] += sum.rows;
                    cpu[i] += used.as_secs_f64();
                    calls[i] += rate * (secs + 0.5);
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
    for (i, b) in backends.iter().enumerate() {
        let t = mean(&traced[i]);
        let ratio = t / base;
        r.figure(
            &format!("traced ({b} backend)"),
            format!(
                "{t:.0} calls/s (runs: {}) = {ratio:.3} × untraced; the tracer printed {} rows \
                 and used {:.0}% of a core, {:.1} µs CPU per call",
                spread(&traced[i]),
                rows[i],
                100.0 * cpu[i] / (reps as f64 * (secs + 0.5)),
                1e6 * cpu[i] / calls[i].max(1.0),
            ),
            &format!("≥ {TARGET} ×"),
            Some(ratio >= TARGET),
        );
    }
    r.note(&format!(
        "one connection, one ImageStatus call at a time, {reps} interleaved runs of {secs} s per \
         configuration; the tracer prints the decoded table to /dev/null"
    ));
    Ok(())
}
