//! Lossless ceiling: a bulk sender over one unix connection at increasing rates, traced with
//! each ring buffer size. The ceiling is the highest rate at which the tracer captured every
//! byte; above it, every byte sent must be accounted for as captured or reported lost.

use std::process::Command;

use super::proc::{Tracer, json_of};
use super::{Env, Report, s};

const TARGET_MB_S: f64 = 500.0;

/// A ring buffer size (MiB) and extra tracer flags.
type Config = (u32, &'static [&'static str]);

struct Run {
    achieved: f64,
    sent: u64,
    captured: u64,
    lost: u64,
    lost_records: u64,
    gaps: u64,
    /// Bytes the tracer reported as not captured (truncated or unavailable).
    missing: u64,
    records: u64,
}

pub fn run(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    // The capture path alone (a method filter that matches nothing: rows are built and
    // dropped, never rendered), and the default output (every undecodable record becomes a
    // table row with up to 16 KiB of escaped bytes).
    let filtered: &'static [&'static str] = &["--method", "/no.such.Service/Method"];
    // Ring sizes around the default, to choose it from the ceiling against the memory it
    // costs (the ring is mapped twice and resident: 2 × its size of the tracer's RSS).
    let (rates, configs, secs): (&[f64], Vec<Config>, f64) = if env.quick {
        (&[200.0, 500.0, 0.0], vec![(16, filtered), (16, &[])], 1.5)
    } else {
        (
            &[100.0, 200.0, 300.0, 500.0, 700.0, 1000.0, 0.0],
            vec![(8, filtered), (16, filtered), (16, &[]), (64, &[])],
            3.0,
        )
    };
    let sock = env.dir.join("bulk.sock");
    let chunk = 64 * 1024;
    // The sender's own maximum, untraced: what "flat out" means on this machine now.
    {
        let sent = json_of(Command::new(&env.peer).args([
            "bench",
            "bulk",
            "--path",
            &s(&sock),
            "--rate-mb",
            "0",
            "--secs",
            &secs.to_string(),
            "--chunk",
            &chunk.to_string(),
        ]))?;
        r.figure(
            "sender's maximum, untraced",
            format!("{:.0} MB/s", sent["rate_mb_s"].as_f64().unwrap_or(0.0)),
            "",
            None,
        );
    }
    let mut all_accounted = true;
    for (ring, extra) in configs {
        let label = if extra.is_empty() {
            "default table output"
        } else {
            "capture path, rows filtered out"
        };
        let mut ceiling: Option<f64> = None;
        let mut first_loss: Option<f64> = None;
        let mut lines = Vec::new();
        for &rate in rates {
            let mut args = vec![s(&sock), "--ring-buffer-mib".into(), ring.to_string()];
            args.extend(extra.iter().map(|a| a.to_string()));
            let tracer = Tracer::start(&env.tracer, &args)?;
            let sent = json_of(Command::new(&env.peer).args([
                "bench",
                "bulk",
                "--path",
                &s(&sock),
                "--rate-mb",
                &rate.to_string(),
                "--secs",
                &secs.to_string(),
                "--chunk",
                &chunk.to_string(),
            ]));
            // Let the tracer drain what is still in the ring buffer before it stops.
            std::thread::sleep(std::time::Duration::from_millis(500));
            let (sum, _) = tracer.stop()?;
            let sent = sent?;
            let run = Run {
                achieved: sent["rate_mb_s"].as_f64().unwrap_or(0.0),
                sent: sent["sent_bytes"].as_u64().unwrap_or(0),
                captured: sum.captured_bytes,
                lost: sum.lost_bytes,
                lost_records: sum.lost_records,
                gaps: sum.gap_bytes,
                missing: sum.missing_bytes,
                records: sum.records,
            };
            let lossless =
                run.lost == 0 && run.gaps == 0 && run.missing == 0 && run.captured == run.sent;
            let accounted = run.captured + run.lost + run.missing == run.sent;
            all_accounted &= accounted;
            if lossless {
                if ceiling.is_none_or(|c| run.achieved > c) && first_loss.is_none() {
                    ceiling = Some(run.achieved);
                }
            } else if first_loss.is_none() {
                first_loss = Some(run.achieved);
            }
            let target = if rate > 0.0 {
                format!("{rate:.0}")
            } else {
                "max".into()
            };
            lines.push(format!(
                "{label}, ring {ring} MiB, rate {target}: sent {:.1} MB at {:.0} MB/s; captured {:.1} MB \
                 in {} records, lost {} records ({:.1} MB), stream gaps {:.1} MB, not captured \
                 {} B; captured + lost + not captured = {} sent",
                run.sent as f64 / 1e6,
                run.achieved,
                run.captured as f64 / 1e6,
                run.records,
                run.lost_records,
                run.lost as f64 / 1e6,
                run.gaps as f64 / 1e6,
                run.missing,
                if accounted {
                    "exactly".to_string()
                } else {
                    format!(
                        "{:+} bytes off from",
                        (run.captured + run.lost + run.missing) as i64 - run.sent as i64
                    )
                },
            ));
        }
        let c = ceiling.unwrap_or(0.0);
        let above = match first_loss {
            Some(f) => format!("; first loss at {f:.0} MB/s"),
            None => "; no loss at any rate tried (the sender's own maximum)".into(),
        };
        r.figure(
            &format!("ceiling, {label}, --ring-buffer-mib {ring}"),
            format!("{c:.0} MB/s with zero loss{above}"),
            &format!("≥ {TARGET_MB_S:.0} MB/s"),
            Some(c >= TARGET_MB_S),
        );
        for l in lines {
            r.note(&l);
        }
    }
    r.figure(
        "every byte above the ceiling accounted for",
        if all_accounted {
            "yes: captured + reported lost = sent, in every run".into()
        } else {
            "no (see the runs)".into()
        },
        "all",
        Some(all_accounted),
    );
    r.note(&format!(
        "one connection, {chunk}-byte write(2)s, a thread draining the other end, {secs} s per \
         rate, tracer output to /dev/null. The bulk bytes are no protocol the tracer decodes: with \
         rows filtered out this measures the capture path (kernel copy, ring buffer, reassembly, \
         protocol detection); with the default output each 32 KiB record also becomes a row of \
         escaped bytes"
    ));
    Ok(())
}
