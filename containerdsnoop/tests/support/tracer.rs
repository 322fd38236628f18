//! The tracer (or any program that announces readiness on stderr) as a child process whose
//! stdout and stderr go to files.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::process::stop_child;
use super::{remove_temp_dir, temp_dir, wait_until};

/// The stderr line prefix that means "attached, events now flow".
pub const READY_PREFIX: &str = "Tracing ";

/// A running tracer. Killed on drop if `stop()` was not called.
#[derive(Debug)]
pub struct Tracer {
    child: Option<Child>,
    dir: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// What the tracer printed, after it stopped.
#[derive(Debug)]
pub struct TracerOutput {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl TracerOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Tracer {
    /// Spawns `binary ARGS...` (e.g. `env!("CARGO_BIN_EXE_containerdsnoop")`).
    pub fn spawn(binary: &Path, args: &[&str]) -> Result<Tracer> {
        let dir = temp_dir("tracer")?;
        let stdout = dir.join("stdout");
        let stderr = dir.join("stderr");
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        Ok(Tracer {
            child: Some(child),
            dir,
            stdout,
            stderr,
        })
    }

    /// What the tracer has written to stdout so far (it flushes rows at least every 500 ms),
    /// for tests that must see a row while the tracer still runs.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the tracer has written to stderr so far (its selection notices, as they come).
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until stderr has a line starting with `Tracing `; fails early, with stderr, if the
    /// tracer exits first.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let stderr = self.stderr.clone();
        let child = self.child.as_mut().context("tracer already stopped")?;
        let res = wait_until(timeout, "the tracer's `Tracing ` line", || {
            let text = fs::read_to_string(&stderr).unwrap_or_default();
            if text.lines().any(|l| l.starts_with(READY_PREFIX)) {
                return Ok(true);
            }
            if let Some(status) = child.try_wait()? {
                bail!("tracer exited ({status}) before it was ready; stderr:\n{text}");
            }
            Ok(false)
        });
        res.map_err(|e| {
            let text = fs::read_to_string(&self.stderr).unwrap_or_default();
            e.context(format!("tracer stderr so far:\n{text}"))
        })
    }

    /// Sends SIGINT (the tracer flushes and exits), waits up to `grace`, then SIGKILLs; returns
    /// everything it printed.
    pub fn stop(mut self, grace: Duration) -> Result<TracerOutput> {
        let status = match self.child.as_mut() {
            Some(c) => stop_child(c, libc::SIGINT, grace),
            None => None,
        };
        self.child = None;
        Ok(TracerOutput {
            status,
            stdout: fs::read(&self.stdout).context("read tracer stdout")?,
            stderr: fs::read_to_string(&self.stderr).context("read tracer stderr")?,
        })
    }
}

impl Tracer {
    /// Spawns the tracer and waits until it is attached; a test that cannot start it fails.
    pub fn started(binary: &Path, args: &[&str]) -> Tracer {
        let mut t = Tracer::spawn(binary, args).expect("spawn tracer");
        t.wait_ready(Duration::from_secs(30))
            .expect("tracer attaches");
        t
    }

    /// Stops the tracer after a moment for records still in flight, and fails the test unless
    /// it exited 0; returns its stdout and stderr.
    pub fn stop_ok(self) -> (String, String) {
        std::thread::sleep(Duration::from_millis(300));
        let out = self.stop(Duration::from_secs(10)).expect("tracer stops");
        assert!(
            out.status.is_some_and(|s| s.success()),
            "tracer exit {:?}: {}",
            out.status,
            out.stderr
        );
        (out.stdout_str(), out.stderr)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            stop_child(c, libc::SIGKILL, Duration::from_secs(1));
        }
        remove_temp_dir(&self.dir);
    }
}
