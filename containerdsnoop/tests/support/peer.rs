//! Running `containerdsnoop-testpeer` from a test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::process::run;
use super::testpeer_path;

/// Runs the test peer with `args`, waits (bounded), and parses its one-line JSON summary
/// (`exchange` and `dgram` print one).
pub fn testpeer_json(args: &[&str], timeout: Duration) -> Result<serde_json::Value> {
    let out = testpeer(args, timeout)?;
    let line = out.lines().last().context("test peer printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("test peer summary is not JSON: {line}"))
}

/// Runs the test peer with `args` and returns its stdout; an error shows stderr on failure.
pub fn testpeer(args: &[&str], timeout: Duration) -> Result<String> {
    let mut cmd = Command::new(testpeer_path()?);
    cmd.args(args);
    run(cmd, timeout)?.ok()
}

/// Starts the test peer without waiting, e.g. with `--wait-file` so that a tracer can attach
/// after the peer has connected; read the summary from its stdout after `wait_with_output`.
pub fn spawn_testpeer(args: &[&str]) -> Result<Child> {
    Command::new(testpeer_path()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn the test peer")
}

/// `containerdsnoop-testpeer cri --address SOCKET ARGS...`: stdout (JSON, or the pod id).
pub fn cri(socket: &Path, args: &[&str]) -> Result<String> {
    let socket = socket.to_str().context("non-UTF-8 socket path")?;
    testpeer(
        &[&["cri", "--address", socket][..], args].concat(),
        Duration::from_secs(60),
    )
}
