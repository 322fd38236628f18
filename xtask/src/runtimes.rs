//! The runtime matrix of `cargo xtask test`: the real-peer end-to-end tests run once with the
//! machine's own containerd 1.6 and dockerd 20.10 (bookworm), then again, with the same test
//! list, against containerd 1.7 (trixie) and containerd 2.1 with dockerd 28 (sid). The newer
//! daemons come from Debian's packages through a private apt configuration (`crate::apt`) and
//! are unpacked, not installed, into `<target>/runtimes/`; runc stays the system's (sid's needs
//! a newer glibc). The tests find them through `CONTAINERDSNOOP_CONTAINERD_DIR` and
//! `CONTAINERDSNOOP_DOCKERD_DIR` (see `containerdsnoop/tests/support/mod.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::apt::{self, Apt};
use crate::setup;
use crate::test::{Tally, cargo_counted};

/// What the report calls the main test run (the machine's own daemons).
pub const SYSTEM_LABEL: &str = "bookworm (system): containerd 1.6 + dockerd 20.10";

/// The test files whose tests depend on the runtime; each runtime runs all of them.
pub const TEST_FILES: &[&str] = &[
    "e2e_containerd",
    "e2e_containers",
    "e2e_protocols",
    "e2e_late_join",
    "e2e_runtimes",
    "e2e_errors",
];

/// One row of the matrix besides the system's runtimes.
pub struct Runtime {
    /// What reports call it.
    pub label: &'static str,
    /// Debian release the packages come from.
    pub suite: &'static str,
    /// Whether dockerd comes from that release too (otherwise the system's dockerd is used).
    pub with_dockerd: bool,
}

/// The runtimes run after the system's (containerd 1.6, dockerd 20.10), oldest first.
pub const MATRIX: &[Runtime] = &[
    Runtime {
        label: "trixie: containerd 1.7 + system dockerd 20.10",
        suite: "trixie",
        with_dockerd: false,
    },
    Runtime {
        label: "sid: containerd 2.1 + dockerd 28",
        suite: "sid",
        with_dockerd: true,
    },
];

/// `cargo xtask test-runtimes`: builds what the tests run, then the runtime-dependent tests on
/// `which` (`bookworm` = the system's daemons, `trixie`, `sid`, or `all`).
pub fn test_runtimes(which: &str, extra: &[String]) -> anyhow::Result<()> {
    setup::setup(true)?;
    setup::cargo(&[
        "build",
        "-p",
        "containerdsnoop",
        "-p",
        "containerdsnoop-testpeer",
    ])?;
    let require = if std::env::var_os("CI").is_some() {
        "require"
    } else {
        ""
    };
    let mut tally = Tally::default();
    let mut ok = true;
    if matches!(which, "bookworm" | "all") {
        tally.section(SYSTEM_LABEL);
        ok &= run_tests(&[], require, extra, &mut tally)?;
    }
    if which != "bookworm" {
        let only = (which != "all").then_some(which);
        if let Some(o) = only
            && !MATRIX.iter().any(|r| r.suite == o)
        {
            bail!("unknown runtime {o:?}: bookworm, trixie, sid or all");
        }
        ok &= run_matrix_with(only, require, extra, &mut tally);
    }
    tally.print_sections();
    let (passed, failed) = tally.totals();
    println!("{passed} passed, {failed} failed");
    if !ok || failed > 0 {
        bail!("tests failed");
    }
    Ok(())
}

/// Runs the runtime-dependent test files against every runtime of `MATRIX`, one after another;
/// a runtime that cannot be fetched counts as one failure. Returns whether all passed.
pub fn run_matrix(require: &str, tally: &mut Tally) -> bool {
    run_matrix_with(None, require, &[], tally)
}

fn run_matrix_with(only: Option<&str>, require: &str, extra: &[String], tally: &mut Tally) -> bool {
    let cache = target_dir().join("runtimes");
    let apt = match Apt::open(&apt::default_dir()) {
        Ok(a) => a,
        Err(e) => return tally.add("runtimes: private apt lists", Err(e)),
    };
    let mut ok = true;
    for rt in MATRIX.iter().filter(|r| only.is_none_or(|o| o == r.suite)) {
        let started = Instant::now();
        let fetched = match fetch(&apt, &cache, rt) {
            Ok(f) => f,
            Err(e) => {
                ok &= tally.add(&format!("runtime {}", rt.label), Err(e));
                continue;
            }
        };
        let fetch_secs = started.elapsed().as_secs_f64();
        tally.section(&fetched.label);
        let env: Vec<(&str, &str)> = fetched
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match run_tests(&env, require, extra, tally) {
            Ok(passed) => ok &= passed,
            Err(e) => ok &= tally.add(&format!("runtime {}", rt.label), Err(e)),
        }
        eprintln!(
            "xtask test: runtime {}: {:.0}s (fetch {fetch_secs:.0}s)",
            fetched.label,
            started.elapsed().as_secs_f64()
        );
    }
    ok
}

/// `cargo test` of the runtime-dependent files with `env`.
fn run_tests(
    env: &[(&str, &str)],
    require: &str,
    extra: &[String],
    tally: &mut Tally,
) -> anyhow::Result<bool> {
    let mut args = vec!["test", "--no-fail-fast", "-p", "containerdsnoop"];
    for f in TEST_FILES {
        args.extend(["--test", f]);
    }
    args.extend(extra.iter().map(String::as_str));
    let mut env = env.to_vec();
    env.push(("CONTAINERDSNOOP_E2E", require));
    cargo_counted(&args, &env, tally)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            setup::workspace_root()
                .unwrap_or_else(|_| PathBuf::from("."))
                .join("target")
        })
}

/// A runtime unpacked and ready: the environment for `cargo test`.
pub struct Fetched {
    pub label: String,
    pub env: Vec<(String, String)>,
}

/// Fetches (or finds in the cache) the packages of `rt` and returns the test environment.
pub fn fetch(apt: &Apt, cache: &Path, rt: &Runtime) -> anyhow::Result<Fetched> {
    let containerd = package(apt, cache, "containerd", rt.suite, &["./usr/bin/"])?;
    let bin = containerd.dir.join("usr/bin");
    for b in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        if !bin.join(b).is_file() {
            bail!("{} has no /usr/bin/{b}", containerd.name);
        }
    }
    let mut env = vec![
        (
            "CONTAINERDSNOOP_CONTAINERD_DIR".to_string(),
            path_str(&bin)?,
        ),
        (
            "CONTAINERDSNOOP_EXPECT_CONTAINERD".to_string(),
            upstream_version(&containerd.version),
        ),
    ];
    let mut label = format!("{} ({} {}", rt.label, containerd.name, containerd.version);
    if rt.with_dockerd {
        let docker = package(
            apt,
            cache,
            "docker.io",
            rt.suite,
            &["./usr/sbin/", "./usr/bin/"],
        )?;
        let sbin = docker.dir.join("usr/sbin");
        if !sbin.join("dockerd").is_file() {
            bail!("{} has no /usr/sbin/dockerd", docker.name);
        }
        env.push(("CONTAINERDSNOOP_DOCKERD_DIR".to_string(), path_str(&sbin)?));
        env.push((
            "CONTAINERDSNOOP_EXPECT_DOCKERD".to_string(),
            upstream_version(&docker.version),
        ));
        label.push_str(&format!(", {} {}", docker.name, docker.version));
    }
    label.push(')');
    Ok(Fetched { label, env })
}

struct Package {
    name: String,
    version: String,
    dir: PathBuf,
}

/// `name` from `suite`, unpacked into `<cache>/<name>_<version>/` (kept between runs).
fn package(
    apt: &Apt,
    cache: &Path,
    name: &str,
    suite: &str,
    members: &[&str],
) -> anyhow::Result<Package> {
    let version = match apt.version_in(name, suite) {
        Ok(v) => v,
        Err(e) => {
            // No lists (offline): the newest unpacked copy for this suite, if any.
            let marker = format!("{name}_{suite}_");
            let mut cached: Vec<String> = fs::read_dir(cache)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&marker) && !n.ends_with(".partial"))
                .collect();
            cached.sort();
            match cached.pop() {
                Some(n) => n[marker.len()..].to_string(),
                None => return Err(e),
            }
        }
    };
    let dir = cache.join(format!("{name}_{suite}_{version}"));
    if !dir.is_dir() {
        let debs = cache.join("debs");
        let deb = apt.download(&format!("{name}={version}"), &debs)?;
        apt::unpack(&deb, &dir, members)?;
        let _ = fs::remove_file(&deb);
    }
    Ok(Package {
        name: name.to_string(),
        version,
        dir,
    })
}

/// `2.1.9+ds1-5` → `2.1.9`: what the daemon itself reports, in front.
fn upstream_version(debian: &str) -> String {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, v)| v);
    no_epoch
        .split(['~', '+', '-'])
        .next()
        .unwrap_or(no_epoch)
        .to_string()
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream_version("2.1.9+ds1-5"), "2.1.9");
        assert_eq!(upstream_version("1.7.24~ds1-6+deb13u1"), "1.7.24");
        assert_eq!(upstream_version("28.5.2+dfsg4-5"), "28.5.2");
        assert_eq!(upstream_version("1:2.0-1"), "2.0");
    }
}
