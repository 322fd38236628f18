//! containerdsnoop's task runner. It runs things; it builds nothing itself (the eBPF object is
//! built by containerdsnoop/build.rs, as in aya-template).
//!
//! - `cargo xtask setup`: installs what building needs, idempotently (each step skipped when
//!   already present).
//! - `cargo xtask run -- ARGS`: setup, build, run the tracer as root.
//! - `cargo xtask test`: setup (with the test peers: containerd, runc, dockerd, tshark, qemu),
//!   then every test, privileged ones included, a fuzz smoke run of every decoder, and the
//!   kprobe backend in VMs; ends with `N passed, N failed`.
//! - `cargo xtask fuzz [--minutes N | --smoke] [TARGET]`: the decoders under cargo-fuzz.
//! - `cargo xtask bench [--quick]`: the performance figures (docs/benchmarks.md).
//! - `cargo xtask vm-test [--kernel 5.10|6.1|6.12|7.2|all]`: both capture backends on real
//!   Debian kernels (`all`: the four).
//! - `cargo xtask test-runtimes [--runtime bookworm|trixie|sid|all]`: only the runtime-dependent
//!   end-to-end tests, against the system's or newer Debian releases' containerd and dockerd.
//! - `cargo xtask dist [--check]`: the release tarball (static binary, man page, completions)
//!   + `.sha256`; `--check` runs the checks `test` runs on it.
//! - `cargo xtask image`: the container image, saved as an OCI archive.

mod apt;
mod bench;
mod dist;
mod fuzz;
mod image;
mod manifest;
mod runtimes;
mod setup;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the build prerequisites (nightly rust-src, LLVM 22, bpf-linker 0.13.0).
    Setup {
        /// Also install the real peers the end-to-end tests drive.
        #[arg(long)]
        test_deps: bool,
    },
    /// Build (release) and run the tracer with ARGS.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks with figures: decode throughput vs tshark, overhead on a traced gRPC
    /// workload, the lossless capture ceiling, start-up time and memory.
    Bench(bench::BenchArgs),
    /// Fuzz every decoder (cargo-fuzz): `--smoke` runs each target briefly, for CI.
    Fuzz(fuzz::FuzzArgs),
    /// Boot Debian kernels (5.10, 6.1, 6.12, 7.2) under QEMU and test both backends inside.
    VmTest(vm::VmTestArgs),
    /// Build target/dist/containerdsnoop-VERSION-x86_64-linux.tar.gz (static binary, man page,
    /// completions, LICENSE, README) and its .sha256.
    Dist {
        /// Then check it as `cargo xtask test` does (static, runs in an empty root, man page,
        /// completions) and the Kubernetes manifest.
        #[arg(long)]
        check: bool,
    },
    /// Build the container image (Containerfile) with the local docker, or a private dockerd,
    /// and save it as an OCI archive in target/dist/.
    Image,
    /// The runtime-dependent end-to-end tests against containerd 1.6/1.7/2.1 and dockerd
    /// 20.10/28 (newer ones unpacked from Debian trixie and sid packages).
    TestRuntimes {
        /// bookworm (the system's daemons), trixie, sid or all.
        #[arg(long, default_value = "all")]
        runtime: String,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test, privileged end-to-end tests included.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { test_deps } => setup::setup(test_deps),
        Command::Run { args } => run(&args),
        Command::Test { args } => test::test(&args),
        Command::TestRuntimes { runtime, args } => runtimes::test_runtimes(&runtime, &args),
        Command::VmTest(args) => vm::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Dist { check } => dist::run(check),
        Command::Image => image::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    setup::setup(false)?;
    setup::cargo(&["build", "--release", "-p", "containerdsnoop"])?;
    let binary = setup::workspace_root()?.join("target/release/containerdsnoop");
    let status = std::process::Command::new(&binary).args(args).status()?;
    // Ctrl-C reaches the tracer too; its own exit code is what matters.
    if !status.success() && status.code().is_some() {
        anyhow::bail!("{} exited with {status}", binary.display());
    }
    Ok(())
}
