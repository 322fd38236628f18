//! Shared harness for the privileged end-to-end tests: real containerd, dockerd and runc started
//! in throw-away folders, the test peer, and the tracer as a child process.
//!
//! Everything here is plain std (no async) so that a test reads top to bottom. Handles clean up
//! on `Drop`, so a failing assertion still kills daemons, shims and containers and unmounts what
//! they mounted. Drop a `Dockerd` before the `Containerd` it uses (declare it after, as locals are
//! dropped in reverse order).
//!
//! Environment:
//! - `CONTAINERDSNOOP_TESTPEER`: path of the `containerdsnoop-testpeer` binary; without it the
//!   binary is looked for next to the running test, in `target/<profile>/` (build it first with
//!   `cargo build -p containerdsnoop-testpeer`, as cargo does not build other packages' binaries
//!   for a test).
//! - `CONTAINERDSNOOP_E2E=require`: a test that would be skipped (not root, daemon missing) fails
//!   instead, so that CI cannot pass by skipping everything.
//! - `CONTAINERDSNOOP_KEEP_TESTDIR=1`: keep each temporary folder (logs, configs) after the test;
//!   mounts and processes are still cleaned up.
//! - `CONTAINERDSNOOP_CONTAINERD_DIR`: a folder holding `containerd`, `ctr` and
//!   `containerd-shim-runc-v2` to test instead of the ones in PATH (`cargo xtask test` unpacks
//!   newer Debian releases' packages there); runc stays the one in PATH.
//!   `CONTAINERDSNOOP_DOCKERD_DIR`: the same for `dockerd`.
//! - `CONTAINERDSNOOP_EXPECT_CONTAINERD` / `CONTAINERDSNOOP_EXPECT_DOCKERD`: the version those
//!   daemons must report (checked by `e2e_runtimes`), so a matrix run cannot silently test the
//!   wrong binaries.

// Each test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod containerd;
pub mod dockerd;
pub mod image;
pub mod peer;
pub mod process;
pub mod raw;
pub mod rows;
pub mod runtime;
pub mod tracer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, thread};

use anyhow::{Context, Result, bail};

pub use containerd::Containerd;
pub use dockerd::Dockerd;
pub use image::{BUSYBOX_REF, SANDBOX_REF, busybox_image_tar, image_tar};
pub use peer::{cri, spawn_testpeer, testpeer, testpeer_json};
pub use process::{Run, run};
pub use runtime::{containerd_bin, containerd_version, dockerd_bin, shim_task_package};
pub use tracer::{Tracer, TracerOutput};

/// What a test needs from the machine; a missing one skips the test (see `require!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Root,
    Containerd,
    Dockerd,
    TestPeer,
    /// Python 3 with grpcio (installed with pip when absent, see [`ensure_grpcio`]).
    PythonGrpcio,
}

/// Why the test cannot run here, or `None` when every need is met.
pub fn missing(needs: &[Need]) -> Option<String> {
    for need in needs {
        let reason = match need {
            Need::Root if !is_root() => "needs root (eBPF, daemons, mounts)".to_string(),
            Need::Containerd => match ["containerd", "ctr", "containerd-shim-runc-v2"]
                .iter()
                .find(|b| !containerd_bin(b).is_file())
            {
                Some(b) => format!(
                    "{} not found (apt-get install containerd runc)",
                    containerd_bin(b).display()
                ),
                None if which("runc").is_none() => {
                    "runc not found in PATH (apt-get install runc)".to_string()
                }
                None => continue,
            },
            Need::Dockerd => match (dockerd_bin().is_file(), which("docker")) {
                (false, _) => format!(
                    "{} not found (apt-get install docker.io)",
                    dockerd_bin().display()
                ),
                (true, None) => "docker not found in PATH (apt-get install docker.io)".to_string(),
                _ => continue,
            },
            Need::TestPeer => match testpeer_path() {
                Ok(_) => continue,
                Err(e) => format!("{e:#}"),
            },
            Need::PythonGrpcio => match ensure_grpcio() {
                Ok(()) => continue,
                Err(e) => format!("{e:#}"),
            },
            _ => continue,
        };
        return Some(reason);
    }
    None
}

fn python_has_grpcio() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `python3 -c 'import grpc'` work: nothing when it does, else `pip install grpcio` (with
/// `--break-system-packages` where the distribution's Python refuses plain pip, as Debian 12's
/// does). Idempotent; a fresh CI machine runs it once.
pub fn ensure_grpcio() -> Result<()> {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if python_has_grpcio() {
        return Ok(());
    }
    let mut log = String::new();
    for extra in [&[][..], &["--break-system-packages"][..]] {
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet", "grpcio"])
            .args(extra);
        let run = process::run(cmd, Duration::from_secs(600))?;
        log.push_str(&run.stderr());
        if python_has_grpcio() {
            return Ok(());
        }
    }
    bail!("python3 has no grpcio and `python3 -m pip install grpcio` failed: {log}")
}

/// Whether unskippable mode is on (`CONTAINERDSNOOP_E2E=require`).
pub fn skips_are_failures() -> bool {
    env::var("CONTAINERDSNOOP_E2E").is_ok_and(|v| v == "require")
}

/// Returns from the calling test, printing why, when a need is not met. With
/// `CONTAINERDSNOOP_E2E=require` it panics instead.
///
/// ```ignore
/// support::require!(Need::Root, Need::Containerd);
/// ```
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if let Some(reason) = $crate::support::missing(&[$($need),+]) {
            if $crate::support::skips_are_failures() {
                panic!("cannot run (CONTAINERDSNOOP_E2E=require): {reason}");
            }
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
}
pub(crate) use require;

/// `require!(Need::Root)`.
macro_rules! skip_unless_root {
    () => {
        $crate::support::require!($crate::support::Need::Root)
    };
}
pub(crate) use skip_unless_root;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The first executable called `name` in PATH (or in the sbin folders, which a non-login root
/// shell may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Path of the built `containerdsnoop-testpeer`: `$CONTAINERDSNOOP_TESTPEER`, else
/// `target/<profile>/containerdsnoop-testpeer` found from the running test executable
/// (`target/<profile>/deps/<test>-<hash>`), else from `CARGO_MANIFEST_DIR/../target/debug`.
pub fn testpeer_path() -> Result<PathBuf> {
    const NAME: &str = "containerdsnoop-testpeer";
    if let Some(p) = env::var_os("CONTAINERDSNOOP_TESTPEER") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("CONTAINERDSNOOP_TESTPEER={} does not exist", p.display());
    }
    let mut candidates = Vec::new();
    if let Some(profile_dir) = env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
    {
        candidates.push(profile_dir.join(NAME));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/debug")
            .join(NAME),
    );
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!("{NAME} not built (looked at {candidates:?}): run `cargo build -p {NAME}` or set CONTAINERDSNOOP_TESTPEER")
    })
}

/// A fresh folder under /tmp, short because unix socket paths are limited to 107 bytes.
pub fn temp_dir(tag: &str) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    if let Some(root) = TEMP_ROOT.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let dir = root.join(tag);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        return Ok(dir);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = PathBuf::from(format!(
        "/tmp/csn-{tag}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// While set, [`temp_dir`] gives `ROOT/TAG`: paths a test can hand the tracer before the
/// daemon that lives there starts (the tracer selects socket files by identity, so their
/// folder must be known). Tests that set it must run one at a time.
static TEMP_ROOT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Makes [`temp_dir`] deterministic under `root` (None: random folders again).
#[allow(dead_code)] // not every test binary uses it
pub fn set_temp_root(root: Option<PathBuf>) {
    *TEMP_ROOT.lock().unwrap_or_else(|e| e.into_inner()) = root;
}

/// Polls `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready()? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether something accepts connections on the unix socket at `path`.
pub fn socket_accepts(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The last `max` bytes of a log file, for error messages.
pub fn tail(path: &Path, max: usize) -> String {
    let data = fs::read(path).unwrap_or_default();
    let from = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[from..]).into_owned()
}

/// Removes a temporary folder unless `CONTAINERDSNOOP_KEEP_TESTDIR` is set. Mounts under it must
/// be gone already (see `process::unmount_under`).
pub fn remove_temp_dir(dir: &Path) {
    if env::var_os("CONTAINERDSNOOP_KEEP_TESTDIR").is_some() {
        eprintln!("keeping {}", dir.display());
        return;
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        eprintln!("warning: could not remove {}: {e}", dir.display());
    }
}
