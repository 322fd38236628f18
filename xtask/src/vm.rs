//! `cargo xtask vm-test`: boots real Debian kernels under QEMU (TCG) and runs the tracer's
//! backends there against the test peer, because the development machine cannot attach kprobes.
//!
//! The host side fetches kernels and busybox from Debian's packages, builds the tracer, the test
//! peer and this xtask binary (which doubles as a guest-side helper: `--guest-replay`), packs
//! them with `tests/vm/init.sh` as `/init` into an initramfs, boots each kernel, and checks what
//! the guest sends back over its second serial port. The guest only runs things and ships raw
//! results (the tracer's JSON, the peers' summaries, sha256 of what each receiver read); every
//! verdict is made here, on the host.

mod check;
mod churn_check;
mod close_check;
mod guest;
mod initramfs;
mod modules;
mod packages;
mod qemu;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

/// Kernels `--kernel all` (and so `cargo xtask test`) runs, oldest first. 5.10 (bullseye) has
/// no `bpf_loop` (the bounded-loop build of the kprobe return program runs there), the pre-5.14
/// `iov_iter` and no `sock_send_length` (the tracepoint backend must refuse, saying why); 7.2
/// (sid) runs raw tracepoints preemptible (the tracepoint backend's skipped-run fallback).
const ALL_KERNELS: [&str; 4] = ["5.10", "6.1", "6.12", "7.2"];

#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Kernel to boot: 5.10 (bullseye), 6.1, 6.12 (bookworm), 7.2 (sid), or all of them.
    #[arg(long, default_value = "all")]
    kernel: String,

    /// Where downloaded kernels and busybox are kept [default: <target dir>/vm-cache].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Seconds one VM may run before it is killed and counted as failed.
    #[arg(long, default_value_t = 600)]
    timeout: u64,

    /// Use already built binaries from the target directory instead of running cargo build.
    #[arg(long)]
    no_build: bool,

    /// Print the whole serial console, not just the test script's progress lines.
    #[arg(short, long)]
    verbose: bool,

    /// Guest side (inside the VM): replay a recorded exchange (`tests/vm/*.h2trace`) over a
    /// fresh unix stream connection.
    #[arg(long, hide = true, value_name = "TRACE")]
    guest_replay: Option<PathBuf>,
    #[arg(long, hide = true, value_name = "SOCK")]
    guest_socket: Option<PathBuf>,
    #[arg(long, hide = true, value_name = "DIR")]
    guest_out_dir: Option<PathBuf>,

    /// Guest side: shrink the tracer's `--raw -o json` output for the slow serial line (the
    /// payload of each record replaced by its length, plus sha256 of each socket's stream).
    #[arg(long, hide = true, value_name = "FILE")]
    guest_digest: Option<PathBuf>,

    /// Ship the tracer's whole output (payload included) from the guest instead of digests:
    /// slower (the serial line moves ~0.4 MB/s under TCG), for debugging a mismatch.
    #[arg(long)]
    full_payload: bool,
}

pub fn run(args: VmTestArgs) -> anyhow::Result<()> {
    run_counted(args).map(|_| ())
}

/// Runs the VMs and returns (checks passed, checks failed); an error when any failed.
pub fn run_counted(args: VmTestArgs) -> anyhow::Result<(usize, usize)> {
    if let Some(trace) = &args.guest_replay {
        let (Some(socket), Some(out_dir)) = (&args.guest_socket, &args.guest_out_dir) else {
            bail!("--guest-replay needs --guest-socket and --guest-out-dir");
        };
        return guest::replay(trace, socket, out_dir).map(|()| (0, 0));
    }
    if let Some(output) = &args.guest_digest {
        return guest::digest(output).map(|()| (0, 0));
    }
    let kernels: Vec<&str> = match args.kernel.as_str() {
        "all" => ALL_KERNELS.to_vec(),
        k if ALL_KERNELS.contains(&k) => vec![k],
        k => bail!(
            "unknown --kernel {k:?}: use {} or all",
            ALL_KERNELS.join(", ")
        ),
    };
    let workspace = workspace_root();
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| target_dir(&workspace).join("vm-cache"));
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let started = Instant::now();

    qemu::check_installed()?;
    let busybox = packages::busybox(&cache)?;
    let kernel_images = kernels
        .iter()
        .map(|k| packages::kernel(&cache, k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let binaries = build(&workspace, args.no_build)?;

    let work = cache.join("run");
    std::fs::create_dir_all(&work)?;
    let base_initrd = work.join("initramfs.cpio.gz");
    let image = initramfs::Contents {
        busybox: &busybox,
        init_script: &workspace.join("tests/vm/init.sh"),
        h2_trace: &workspace.join("tests/vm/ctr-version.h2trace"),
        tracer: &binaries.tracer,
        peer: &binaries.peer,
        helper: &binaries.helper,
    };
    let size = initramfs::write(&image, &base_initrd)?;
    eprintln!(
        "vm-test: initramfs {} ({:.1} MiB); setup took {:.1}s",
        base_initrd.display(),
        size as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );

    let h2_trace = guest::Trace::read(&workspace.join("tests/vm/ctr-version.h2trace"))?;
    let mut reports = Vec::new();
    for image in &kernel_images {
        let dir = work.join(&image.label);
        std::fs::create_dir_all(&dir)?;
        // The churn check's ext4 RAM disk needs this kernel's modules; without them it runs on
        // tmpfs, and its result says so.
        let modules = modules::ext4(&cache, image).unwrap_or_else(|e| {
            eprintln!(
                "vm-test [{}]: no ext4 modules, the churn check runs on tmpfs: {e:#}",
                image.label
            );
            Vec::new()
        });
        let initrd = dir.join("initramfs.cpio.gz");
        initramfs::write_with_modules(&base_initrd, &modules, &initrd)?;
        let boot = qemu::Boot {
            label: &image.label,
            vmlinuz: &image.vmlinuz,
            initrd: &initrd,
            dir: &dir,
            timeout: std::time::Duration::from_secs(args.timeout),
            verbose: args.verbose,
            full_payload: args.full_payload,
        };
        let run = qemu::boot(&boot)?;
        let mut report = check::check_run(&image.label, &image.package, &run, &h2_trace);
        if report.guest_did_not_finish() {
            // Under TCG a guest kernel occasionally panics while booting, before our init runs
            // (seen once: sched_clock_cpu, "Fatal exception in interrupt"). One more boot tells
            // that flake from a real failure; a guest that finishes is never retried.
            report.print();
            eprintln!(
                "vm-test [{}]: the guest did not finish; booting it once more",
                image.label
            );
            let run = qemu::boot(&boot)?;
            report = check::check_run(&image.label, &image.package, &run, &h2_trace);
        }
        report.print();
        reports.push(report);
    }

    eprintln!();
    eprintln!(
        "vm-test summary ({:.0}s in all):",
        started.elapsed().as_secs_f64()
    );
    let mut failed = 0;
    let mut checks = 0;
    for r in &reports {
        r.print_summary();
        failed += r.failures();
        checks += r.checks();
    }
    if failed > 0 {
        bail!(
            "vm-test: {failed} check(s) failed (logs under {})",
            work.display()
        );
    }
    Ok((checks - failed, failed))
}

/// The workspace this xtask belongs to.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

struct Binaries {
    tracer: PathBuf,
    peer: PathBuf,
    /// This program, built for release: the guest-side helper.
    helper: PathBuf,
}

/// Builds the tracer, the test peer and this program (all release: the guest runs the helper
/// under TCG, where a debug build's sha256 is slow) and returns the executables cargo reports.
fn build(workspace: &Path, no_build: bool) -> anyhow::Result<Binaries> {
    if no_build {
        let dir = target_dir(workspace).join("release");
        let helper = match existing(dir.join("xtask")) {
            Ok(h) => h,
            Err(_) => std::env::current_exe().context("locating the xtask binary")?,
        };
        return Ok(Binaries {
            tracer: existing(dir.join("containerdsnoop"))?,
            peer: existing(dir.join("containerdsnoop-testpeer"))?,
            helper,
        });
    }
    const PACKAGES: [&str; 3] = ["containerdsnoop", "containerdsnoop-testpeer", "xtask"];
    eprintln!(
        "vm-test: cargo build --release -p {}",
        PACKAGES.join(" -p ")
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(PACKAGES.iter().flat_map(|p| ["-p", p]))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build failed ({})", out.status);
    }
    let mut found: [Option<PathBuf>; 3] = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        if let Some(i) = PACKAGES.iter().position(|p| *p == name) {
            found[i] = Some(PathBuf::from(exe));
        }
    }
    let [tracer, peer, helper] = found;
    let missing = |p: &str| format!("cargo build reported no {p} executable");
    Ok(Binaries {
        tracer: tracer.with_context(|| missing(PACKAGES[0]))?,
        peer: peer.with_context(|| missing(PACKAGES[1]))?,
        helper: helper.with_context(|| missing(PACKAGES[2]))?,
    })
}

fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
}

fn existing(p: PathBuf) -> anyhow::Result<PathBuf> {
    if p.is_file() {
        Ok(p)
    } else {
        bail!(
            "{} does not exist (build it, or drop --no-build)",
            p.display()
        )
    }
}
