//! `cargo xtask fuzz [--minutes N] [--smoke] [TARGET]`: the decoders' fuzz targets (`fuzz/`, a
//! cargo-fuzz crate in its own workspace). Installs cargo-fuzz when missing, builds every
//! target, generates seed corpora from the recorded fixtures (nothing is committed in bulk),
//! then runs each target in turn and ends with one line per target: executions, and the input
//! that reproduces each crash. `--smoke` is the CI mode: every target for a few seconds.
//!
//! Inputs under `fuzz/regressions/<target>/` are read before the corpus, so a crash that comes
//! back fails the run at once.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::setup;

/// Seconds per target in `--smoke` mode: enough to replay the seeds and regressions and to try
/// a few hundred thousand mutations, short enough for CI.
const SMOKE_SECONDS: u64 = 15;
/// libFuzzer limits: an input that runs longer, or a process that grows larger, is a finding.
const TIMEOUT_SECONDS: u64 = 10;
const RSS_LIMIT_MB: u64 = 2048;
/// How the targets are built: no sanitizer, with debug assertions and overflow checks. The
/// decoders are safe Rust (bounds are checked, an overflow panics with `-a`); AddressSanitizer
/// finds memory errors only in `unsafe` code, of which the fuzzed crates have a few reviewed
/// unaligned reads, and it cost 7 to 10 times the executions (on one loaded machine, release
/// builds without debug assertions: `pipeline` 25-74/s under ASan, 548/s without it;
/// `http2_conn` 393-467/s against 3,166/s; docs/benchmarks.md has the figures with `-a`).
/// libFuzzer's own limits (`-rss_limit_mb`, `-timeout`) still catch runaway memory and time.
const BUILD_FLAGS: [&str; 3] = ["--sanitizer", "none", "--debug-assertions"];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Minutes to fuzz each target.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// CI mode: build every target and run each for a few seconds.
    #[arg(long)]
    smoke: bool,
    /// Fuzz only this target (`cargo fuzz list` in fuzz/ names them).
    target: Option<String>,
}

/// What one target's run found.
struct Outcome {
    target: String,
    seconds: f64,
    executions: Option<u64>,
    /// `crash-…`, `timeout-…`, `oom-…` files libFuzzer wrote, with what it said.
    findings: Vec<String>,
    log: PathBuf,
}

pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    run_counted(args).map(|_| ())
}

/// `cargo xtask test` runs the smoke mode this way, counting each target as a test.
pub fn smoke_args() -> FuzzArgs {
    FuzzArgs {
        minutes: 1.0,
        smoke: true,
        target: None,
    }
}

/// Fuzzes and returns (targets without findings, targets with findings); an error when any
/// target found something.
pub fn run_counted(args: FuzzArgs) -> anyhow::Result<(usize, usize)> {
    if !args.minutes.is_finite() || args.minutes <= 0.0 {
        bail!("--minutes must be a positive number of minutes");
    }
    let root = setup::workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    ensure_cargo_fuzz()?;

    let all = list_targets(&fuzz_dir)?;
    let targets: Vec<String> = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?}; targets: {}", all.join(", ")),
        None => all,
    };

    // The fuzz crate is its own workspace with its own lock file: a stale lock would be
    // rewritten by the build below and leave the checkout dirty, so refuse one up front.
    run_checked(nightly(&fuzz_dir).args(["metadata", "--locked", "--format-version", "1"]).stdout(std::process::Stdio::null()))
        .context("fuzz/Cargo.lock is out of date with the manifests: run `cargo +nightly update -w` in fuzz/ and commit it")?;
    eprintln!("xtask fuzz: building {} targets", targets.len());
    run_checked(nightly(&fuzz_dir).args(["fuzz", "build"]).args(BUILD_FLAGS))?;

    let corpus = fuzz_dir.join("corpus");
    eprintln!("xtask fuzz: seeding corpora from containerdsnoop-decode/tests/fixtures");
    run_checked(
        nightly(&fuzz_dir)
            .args(["run", "--quiet", "--example", "seeds", "--"])
            .arg(root.join("containerdsnoop-decode/tests/fixtures"))
            .arg(&corpus)
            .args(&targets),
    )?;

    let seconds = if args.smoke {
        SMOKE_SECONDS
    } else {
        (args.minutes * 60.0).ceil() as u64
    };
    let mut outcomes = Vec::new();
    for target in &targets {
        eprintln!("xtask fuzz: {target} for {seconds} s");
        outcomes.push(fuzz_one(&fuzz_dir, target, seconds)?);
    }

    eprintln!();
    eprintln!(
        "{:<18} {:>8} {:>14} {:>10}  findings",
        "target", "seconds", "executions", "exec/s"
    );
    let mut failed = 0;
    for o in &outcomes {
        let execs = o.executions.map_or("?".to_string(), |n| n.to_string());
        let rate = o.executions.map_or("?".to_string(), |n| {
            format!("{:.0}", n as f64 / o.seconds.max(1e-3))
        });
        let found = if o.findings.is_empty() {
            "none".to_string()
        } else {
            failed += 1;
            format!("{} (log: {})", o.findings.join("; "), o.log.display())
        };
        eprintln!(
            "{:<18} {:>8.0} {:>14} {:>10}  {found}",
            o.target, o.seconds, execs, rate
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} fuzz targets found problems: reproduce with `cargo +nightly fuzz run \
             TARGET FILE` in fuzz/, then add the input under fuzz/regressions/TARGET/",
            outcomes.len()
        );
    }
    Ok((outcomes.len(), 0))
}

/// `cargo +nightly …` in `dir` (cargo-fuzz needs nightly for the sanitizer flags).
fn nightly(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").current_dir(dir);
    cmd
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Installs cargo-fuzz from crates.io unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly {
        bail!("fuzzing needs a nightly toolchain: `rustup toolchain install nightly`");
    }
    eprintln!("xtask fuzz: cargo install cargo-fuzz --locked (a minute or two)");
    run_checked(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

fn list_targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = nightly(fuzz_dir)
        .args(["fuzz", "list"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed in {}", fuzz_dir.display());
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", fuzz_dir.display());
    }
    Ok(targets)
}

/// Runs one target for `seconds`, reading its regressions first; its output goes to a log file
/// whose final statistics and artifact lines are the outcome.
fn fuzz_one(fuzz_dir: &Path, target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let artifacts = fuzz_dir.join("artifacts").join(target);
    fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    let log = artifacts.join("last-run.log");

    let mut cmd = nightly(fuzz_dir);
    cmd.args(["fuzz", "run"])
        .args(BUILD_FLAGS)
        .arg(target)
        .arg(&corpus);
    let regressions = fuzz_dir.join("regressions").join(target);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        // NEW_FUNC lines run llvm-symbolizer for each newly covered function: in a short run
        // that costs more CPU than some targets' whole fuzzing.
        .arg("-print_funcs=0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let mut text = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let status = child.wait().context("waiting for cargo fuzz run")?;
    let elapsed = started.elapsed();
    fs::write(&log, &text).with_context(|| format!("writing {}", log.display()))?;

    let mut findings = findings(&text);
    if findings.is_empty() && !status.success() {
        findings.push(format!(
            "cargo fuzz run exited with {status} (no artifact; see the log)"
        ));
    }
    Ok(Outcome {
        target: target.to_string(),
        seconds: elapsed.as_secs_f64(),
        executions: executions(&text),
        findings,
        log,
    })
}

/// Each input libFuzzer saved (`Test unit written to …/crash-<sha1>`, also `timeout-`, `oom-`),
/// with why it stopped: a Rust panic's location and message, or libFuzzer's own verdict.
fn findings(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let reason = lines
        .iter()
        .position(|l| l.contains("panicked at") || l.contains("ERROR: libFuzzer:"))
        .map(|i| match lines.get(i + 1) {
            Some(message) if lines[i].contains("panicked at") => {
                format!("{} {}", lines[i].trim(), message.trim())
            }
            _ => lines[i].trim().to_string(),
        })
        .unwrap_or_default();
    lines
        .iter()
        .filter_map(|l| l.split_once("Test unit written to "))
        .map(|(_, path)| format!("{} [{reason}]", path.trim()))
        .collect()
}

/// `stat::number_of_executed_units: N` from `-print_final_stats`, else the last `#N` status line.
fn executions(log: &str) -> Option<u64> {
    let stat = log.lines().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    });
    stat.or_else(|| {
        log.lines().rev().find_map(|l| {
            let n = l.strip_prefix('#')?.split_whitespace().next()?;
            n.parse().ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{executions, findings};

    #[test]
    fn reads_execution_counts() {
        let log = "#2\tINITED cov: 10\n#4096\tpulse\n#52311\tDONE cov: 99\n\
                   stat::number_of_executed_units: 52312\n";
        assert_eq!(executions(log), Some(52312));
        assert_eq!(executions("#77\tNEW cov: 3\n"), Some(77));
        assert_eq!(executions("nothing"), None);
    }

    #[test]
    fn reads_findings() {
        let log = "#1024\tpulse\n\
                   thread '<unnamed>' panicked at fuzz_targets/hpack.rs:44:13:\n\
                   header list of 70000 bytes kept\n\
                   ==77== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='a/hpack/'; Test unit written to a/hpack/crash-0123abcd\n";
        assert_eq!(
            findings(log),
            [
                "a/hpack/crash-0123abcd [thread '<unnamed>' panicked at fuzz_targets/hpack.rs:44:13: \
              header list of 70000 bytes kept]"
            ]
        );
        let oom = "==9== ERROR: libFuzzer: out-of-memory (malloc(4294967296))\n\
                   Test unit written to a/x/oom-ff\n";
        assert_eq!(
            findings(oom),
            ["a/x/oom-ff [==9== ERROR: libFuzzer: out-of-memory (malloc(4294967296))]"]
        );
        assert!(findings("#5 DONE\n").is_empty());
    }
}
