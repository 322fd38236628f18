//! `cargo xtask bench`: the performance figures of issue #6 for this machine, each next to its
//! target and, where one exists, a comparison measured in the same run:
//!
//! - decode: a generated capture of real tonic gRPC traffic (tens of thousands of calls, some
//!   1 MiB messages) through the whole offline pipeline (table and JSON), and through tshark;
//! - overhead: calls/s of a unary gRPC client/server over a unix socket, untraced vs traced by
//!   each backend that attaches here;
//! - ceiling: a rate-limited bulk sender; the highest rate without loss, and the accounting of
//!   every byte above it;
//! - startup: process start to "Tracing...", and RSS with 1,000 open connections;
//! - profile: where the time goes (perf), for `-r` decoding and the live tracer.
//!
//! Everything runs from release builds. Figures are printed as they come and, at the end, as a
//! Markdown block for `docs/benchmarks.md`. Speed targets live here, never in tests.

mod ceiling;
mod decode;
mod overhead;
mod proc;
mod profile;
mod report;
mod startup;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use report::Report;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short runs (a minute or two) for a CI smoke test: the figures are rough.
    #[arg(long)]
    pub quick: bool,
    /// Only these benchmarks (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Which>,
    /// Where captures, sockets and results go [default: target/bench].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Use the release binaries already built.
    #[arg(long)]
    pub no_build: bool,
    /// Measure this tracer binary instead of the release build (a baseline kept from an
    /// earlier commit, for before/after figures).
    #[arg(long, value_name = "PATH")]
    pub tracer: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Decode,
    Overhead,
    Ceiling,
    Startup,
    Profile,
}

/// One benchmark: measures and adds its figures to the report.
type Bench = fn(&Env, &mut Report) -> anyhow::Result<()>;

/// The release binaries and folders every benchmark uses.
pub struct Env {
    pub tracer: PathBuf,
    pub replay: PathBuf,
    pub peer: PathBuf,
    pub protos: PathBuf,
    pub dir: PathBuf,
    pub quick: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let root = crate::setup::workspace_root()?;
    if !args.no_build {
        // tshark is the decode benchmark's yardstick, socat -v the overhead's; protoc builds
        // the peer's CRI code.
        crate::setup::setup(true)?;
        crate::setup::cargo(&["build", "--release", "-p", "containerdsnoop", "--bins"])?;
        crate::setup::cargo(&[
            "build",
            "--release",
            "-p",
            "containerdsnoop-decode",
            "--example",
            "replay",
        ])?;
        crate::setup::cargo(&["build", "--release", "-p", "containerdsnoop-testpeer"])?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let release = target.join("release");
    let dir = args.dir.clone().unwrap_or_else(|| target.join("bench"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let env = Env {
        tracer: existing(
            args.tracer
                .clone()
                .unwrap_or_else(|| release.join("containerdsnoop")),
        )?,
        replay: existing(release.join("examples/replay"))?,
        peer: existing(release.join("containerdsnoop-testpeer"))?,
        protos: root.join("protos"),
        dir,
        quick: args.quick,
    };
    if !crate::setup::is_root() {
        eprintln!(
            "xtask bench: not root — the overhead, ceiling and startup benchmarks run the tracer \
             and need root (sudo -E cargo xtask bench)"
        );
    }
    let mut report = Report::new(args.quick);
    report.machine();
    let wants = |w: Which| args.only.is_empty() || args.only.contains(&w);
    let benches: [(Which, Bench); 5] = [
        (Which::Decode, decode::run),
        (Which::Overhead, overhead::run),
        (Which::Ceiling, ceiling::run),
        (Which::Startup, startup::run),
        (Which::Profile, profile::run),
    ];
    let mut failed = Vec::new();
    for (which, bench) in benches {
        if !wants(which) {
            continue;
        }
        report.section(which);
        // One benchmark that cannot run (no tshark, no root) must not hide the others.
        if let Err(e) = bench(&env, &mut report) {
            eprintln!("xtask bench: {which:?} failed: {e:#}");
            report.note(&format!("{which:?}: could not run: {e:#}"));
            failed.push(which);
        }
    }
    report.load_at_end();
    let md = report.markdown();
    println!("\n{md}");
    let path = env.dir.join("results.md");
    std::fs::write(&path, &md).with_context(|| format!("write {}", path.display()))?;
    eprintln!("xtask bench: results in {}", path.display());
    if !failed.is_empty() {
        anyhow::bail!("benchmarks that could not run: {failed:?}");
    }
    Ok(())
}

fn existing(p: PathBuf) -> anyhow::Result<PathBuf> {
    if !p.exists() {
        anyhow::bail!("{} is missing: build it (or drop --no-build)", p.display());
    }
    Ok(p)
}

/// `path` as a string for command lines (our paths are all UTF-8).
fn s(path: &Path) -> String {
    path.display().to_string()
}
