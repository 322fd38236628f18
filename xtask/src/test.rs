//! `cargo xtask test`: every test — unit, decoding, and the privileged end-to-end tests that
//! drive real containerd, runc, dockerd and tshark through the real tracer — then the
//! runtime-dependent end-to-end files again per newer runtime (`crate::runtimes`), the fuzz smoke
//! run and the kernels under QEMU (`crate::vm`); a per-runtime list of checks, and one closing
//! line `N passed, N failed` that counts all of it.

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
    /// Test binaries cargo announced (`Running tests/x.rs (...)`, `Doc-tests x`, on stderr)
    /// that no `running N tests` line (stdout) has claimed yet: the two streams are read
    /// separately, so either may come first.
    announced: std::collections::VecDeque<String>,
    /// Per runtime: the test binaries in the order they ran, each with (test name, passed);
    /// a binary's name is `None` until its announcement has been read.
    sections: Vec<(String, Vec<Binary>)>,
}

type Binary = (Option<String>, Vec<(String, bool)>);

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
        self.announced.clear();
        self.sections.push((label.to_string(), Vec::new()));
    }

    /// Each runtime's checks: (label, [(file::test, passed)]) for the runtime-dependent files.
    fn runtime_checks(&self) -> Vec<(String, Vec<(String, bool)>)> {
        self.sections
            .iter()
            .map(|(label, binaries)| {
                let tests = binaries
                    .iter()
                    .filter_map(|(name, tests)| {
                        let name = name.as_deref()?;
                        crate::runtimes::TEST_FILES.contains(&name).then(|| {
                            tests
                                .iter()
                                .map(move |(t, ok)| (format!("{name}::{t}"), *ok))
                        })
                    })
                    .flatten()
                    .collect();
                (label.clone(), tests)
            })
            .collect()
    }

    /// Prints each runtime's checks.
    pub fn print_sections(&self) {
        for (label, tests) in self.runtime_checks() {
            let ok = tests.iter().filter(|(_, p)| *p).count();
            println!("runtime {label}: {ok} of {} checks passed", tests.len());
            for (name, passed) in tests {
                println!("  {} {name}", if passed { "ok    " } else { "FAILED" });
            }
        }
    }

    fn read(&mut self, line: &str) {
        let trimmed = line.trim();
        // `Running tests/e2e_runtimes.rs (target/debug/deps/e2e_runtimes-0123)`,
        // `Running unittests src/main.rs (...)`, `Doc-tests containerdsnoop`.
        let announced = if let Some(rest) = trimmed.strip_prefix("Running ") {
            rest.split_whitespace()
                .find(|w| w.ends_with(".rs"))
                .and_then(|p| p.rsplit('/').next())
                .map(|f| f.trim_end_matches(".rs").to_string())
                .or(Some(String::new()))
        } else {
            trimmed
                .strip_prefix("Doc-tests ")
                .map(|n| format!("doc {n}"))
        };
        if let Some(name) = announced {
            let unnamed = self
                .sections
                .last_mut()
                .and_then(|(_, b)| b.iter_mut().find(|(n, _)| n.is_none()));
            match unnamed {
                Some(b) => b.0 = Some(name),
                None => self.announced.push_back(name),
            }
            return;
        }
        if trimmed.starts_with("running ")
            && (trimmed.ends_with(" tests") || trimmed.ends_with(" test"))
        {
            let name = self.announced.pop_front();
            if let Some((_, binaries)) = self.sections.last_mut() {
                binaries.push((name, Vec::new()));
            }
            return;
        }
        if let Some(rest) = trimmed.strip_prefix("test ")
            && let Some((name, outcome)) = rest.rsplit_once(" ... ")
            && let Some((_, binaries)) = self.sections.last_mut()
            && let Some((_, tests)) = binaries.last_mut()
        {
            match outcome.trim() {
                "ok" => tests.push((name.to_string(), true)),
                "FAILED" => tests.push((name.to_string(), false)),
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

/// Runs cargo with `args`, echoing its output and counting test results. Both streams are
/// read: cargo names each test binary (`Running ...`) on stderr, its tests report on stdout.
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
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    let stderr = child.stderr.take().context("cargo stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((false, line));
            }
        }),
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send((true, line));
            }
        }),
    ];
    for (is_err, line) in rx {
        if is_err {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        tally.read(&line);
    }
    for r in readers {
        let _ = r.join();
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
    // What ships: the tarball and the image are built and checked first, so that the image
    // test in e2e_ship.rs can load the archive (only with the whole suite or a `ship` filter:
    // the static release build takes minutes).
    let mut image_archive: Option<String> = None;
    if extra.is_empty() || extra.iter().any(|a| a.contains("ship")) {
        ok &= tally.add("dist", crate::dist::build().map(|d| crate::dist::check(&d)));
        ok &= tally.add("manifest", Ok(crate::manifest::check()));
        match crate::image::build() {
            Ok(image) => image_archive = Some(image.archive.to_string_lossy().into_owned()),
            Err(e) => ok &= tally.add("image", Err(e)),
        }
    }
    let mut args: Vec<&str> = vec!["test", "--no-fail-fast"];
    args.extend(extra.iter().map(String::as_str));
    // In CI a missing daemon or missing root must fail the run, not skip it.
    let require = if std::env::var_os("CI").is_some() {
        "require"
    } else {
        ""
    };
    let mut envs = vec![("CONTAINERDSNOOP_E2E", require)];
    if let Some(archive) = &image_archive {
        envs.push(("CONTAINERDSNOOP_IMAGE_ARCHIVE", archive.as_str()));
    }
    tally.section(crate::runtimes::SYSTEM_LABEL);
    ok &= cargo_counted(&args, &envs, &mut tally)?;
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
        t.read("running 1 test");
        t.read("test unit_thing ... ok");
        t.read("     Running tests/e2e_runtimes.rs (target/debug/deps/e2e_runtimes-2)");
        t.read("running 2 tests");
        t.read("test docker_works ... ok");
        // The next announcement read before this binary's last line (two pipes).
        t.read("     Running tests/e2e_protocols.rs (target/debug/deps/e2e_protocols-3)");
        t.read("test cri_works ... FAILED");
        t.read("running 1 test");
        t.read("test ttrpc ... ok");
        t.read("   Doc-tests containerdsnoop");
        t.read("running 0 tests");
        t.section("b");
        // An announcement read after its binary's first lines.
        t.read("running 1 test");
        t.read("test docker_works ... ok");
        t.read("     Running tests/e2e_runtimes.rs (target/debug/deps/e2e_runtimes-2)");
        let s = |v: &str| v.to_string();
        assert_eq!(
            t.runtime_checks(),
            vec![
                (
                    s("a"),
                    vec![
                        (s("e2e_runtimes::docker_works"), true),
                        (s("e2e_runtimes::cri_works"), false),
                        (s("e2e_protocols::ttrpc"), true),
                    ]
                ),
                (s("b"), vec![(s("e2e_runtimes::docker_works"), true)]),
            ]
        );
    }
}
