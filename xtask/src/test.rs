//! `cargo xtask test`: every test — unit, decoding, and the privileged end-to-end tests that
//! drive real containerd, runc, dockerd and tshark through the real tracer — then one closing
//! line `N passed, N failed`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::Context as _;

use crate::setup;

/// Adds up `test result: ok. 12 passed; 0 failed; ...` lines, and remembers the outcome of each
/// test of the runtime-dependent files for the per-runtime report.
#[derive(Default)]
pub struct Tally {
    passed: u64,
    failed: u64,
    /// The test binary cargo is running (`Running tests/e2e_x.rs (...)` lines).
    binary: String,
    /// Per runtime: (test binary::test name, passed).
    sections: Vec<(String, Vec<(String, bool)>)>,
}

impl Tally {
    /// Adds a suite that counts its own checks; an error counts as one failure. Returns
    /// whether the suite passed.
    pub fn add(&mut self, name: &str, result: anyhow::Result<(usize, usize)>) -> bool {
        match result {
            Ok((passed, failed)) => {
                self.passed += passed as u64;
                self.failed += failed as u64;
                failed == 0
            }
            Err(e) => {
                eprintln!("xtask test: {name}: {e:#}");
                self.failed += 1;
                false
            }
        }
    }

    /// (passed, failed) so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.passed, self.failed)
    }

    /// Starts the per-runtime record of `label`.
    pub fn section(&mut self, label: &str) {
        self.sections.push((label.to_string(), Vec::new()));
    }

    /// Prints each runtime's checks.
    pub fn print_sections(&self) {
        for (label, tests) in &self.sections {
            let ok = tests.iter().filter(|(_, p)| *p).count();
            println!("runtime {label}: {ok} of {} checks passed", tests.len());
            for (name, passed) in tests {
                println!("  {} {name}", if *passed { "ok    " } else { "FAILED" });
            }
        }
    }

    fn read(&mut self, line: &str) {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            // `Running tests/e2e_runtimes.rs (target/debug/deps/e2e_runtimes-0123)`
            self.binary = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.rsplit('/').next())
                .map(|f| f.trim_end_matches(".rs").to_string())
                .unwrap_or_default();
        }
        if let Some(rest) = trimmed.strip_prefix("test ")
            && let Some((name, outcome)) = rest.rsplit_once(" ... ")
            && crate::runtimes::TEST_FILES.contains(&self.binary.as_str())
            && let Some((_, tests)) = self.sections.last_mut()
        {
            match outcome.trim() {
                "ok" => tests.push((format!("{}::{name}", self.binary), true)),
                "FAILED" => tests.push((format!("{}::{name}", self.binary), false)),
                _ => {}
            }
        }
        let Some(rest) = trimmed.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap_or(0);
            match kind {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs cargo with `args`, echoing its output and counting test results.
pub fn cargo_counted(
    args: &[&str],
    envs: &[(&str, &str)],
    tally: &mut Tally,
) -> anyhow::Result<bool> {
    let mut child = Command::new(env!("CARGO"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(setup::workspace_root()?)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        tally.read(&line);
    }
    Ok(child.wait()?.success())
}

pub fn test(extra: &[String]) -> anyhow::Result<()> {
    if !setup::is_root() {
        eprintln!(
            "xtask test: not root — installing prerequisites and the privileged end-to-end \
             tests need root; run `sudo -E cargo xtask test`"
        );
    }
    setup::setup(true)?;
    // A test run must leave a clean checkout clean (no rewritten lock files or goldens).
    let dirty_before = tracked_changes()?;
    // The end-to-end tests run the test peer's binary; `cargo test` does not build other
    // packages' binaries, so build it (and the tracer) first.
    setup::cargo(&[
        "build",
        "-p",
        "containerdsnoop",
        "-p",
        "containerdsnoop-testpeer",
    ])?;
    let mut tally = Tally::default();
    let mut ok = true;
    let mut args: Vec<&str> = vec!["test", "--no-fail-fast"];
    args.extend(extra.iter().map(String::as_str));
    // In CI a missing daemon or missing root must fail the run, not skip it.
    let require = if std::env::var_os("CI").is_some() {
        "require"
    } else {
        ""
    };
    tally.section(crate::runtimes::SYSTEM_LABEL);
    ok &= cargo_counted(&args, &[("CONTAINERDSNOOP_E2E", require)], &mut tally)?;
    if extra.is_empty() {
        // The same runtime-dependent tests against newer containerd and dockerd releases.
        ok &= crate::runtimes::run_matrix(require, &mut tally);
    }
    // The kprobe backend cannot attach on a kernel without kprobes: test it on real Debian
    // kernels under QEMU (only with the whole suite, not with a test-name filter).
    if extra.is_empty() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            vm: crate::vm::VmTestArgs,
        }
        let vm_args = Wrap::parse_from(["vm-test", "--kernel", "all"]).vm;
        // Every decoder under libFuzzer for a few seconds (findings fail the run).
        ok &= tally.add("fuzz", crate::fuzz::run_counted(crate::fuzz::smoke_args()));
        ok &= tally.add("vm-test", crate::vm::run_counted(vm_args));
    }
    ok &= tally.add("clean-tree", check_tree_unchanged(&dirty_before));
    tally.print_sections();
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if !ok || tally.failed > 0 {
        anyhow::bail!("tests failed");
    }
    Ok(())
}

/// `git status` of the tracked files (empty on a clean checkout); `None` outside a git checkout.
fn tracked_changes() -> anyhow::Result<Option<String>> {
    let out = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(setup::workspace_root()?)
        .output();
    Ok(match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        _ => None,
    })
}

/// One check: the tracked files are as they were before the run.
fn check_tree_unchanged(before: &Option<String>) -> anyhow::Result<(usize, usize)> {
    let (Some(before), Some(after)) = (before, tracked_changes()?) else {
        return Ok((0, 0)); // not a git checkout: nothing to compare, nothing counted
    };
    if *before == after {
        Ok((1, 0))
    } else {
        anyhow::bail!("the test run changed tracked files:\n{after}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_reads_cargo_summaries() {
        let mut t = Tally::default();
        t.read("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        t.read("test result: FAILED. 3 passed; 2 failed; 0 ignored");
        t.read("running 3 tests");
        assert_eq!((t.passed, t.failed), (15, 2));
    }

    #[test]
    fn tally_records_runtime_checks_per_section() {
        let mut t = Tally::default();
        t.section("a");
        t.read("     Running unittests src/main.rs (target/debug/deps/containerdsnoop-1)");
        t.read("test unit_thing ... ok");
        t.read("     Running tests/e2e_runtimes.rs (target/debug/deps/e2e_runtimes-2)");
        t.read("test docker_works ... ok");
        t.read("test cri_works ... FAILED");
        t.section("b");
        t.read("test docker_works ... ok");
        assert_eq!(
            t.sections,
            vec![
                (
                    "a".to_string(),
                    vec![
                        ("e2e_runtimes::docker_works".to_string(), true),
                        ("e2e_runtimes::cri_works".to_string(), false)
                    ]
                ),
                (
                    "b".to_string(),
                    vec![("e2e_runtimes::docker_works".to_string(), true)]
                ),
            ]
        );
    }
}
