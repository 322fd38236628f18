//! Small file-system helpers shared by the socket subcommands.

use std::fs;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Removes a leftover socket file so that bind(2) does not fail with EADDRINUSE.
pub fn remove_stale(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove stale socket {}", path.display())),
    }
}

/// Blocks until `path` exists, polling, for at most `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Writes what each receiver read, under the names the tests expect.
pub fn write_outputs(dir: &Path, c2s: &[u8], s2c: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for (name, data) in [("client_to_server.bin", c2s), ("server_to_client.bin", s2c)] {
        let p = dir.join(name);
        fs::write(&p, data).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

/// Joins a worker thread, naming it in the error so a failure says which end broke.
pub fn join<T>(h: std::thread::ScopedJoinHandle<'_, io::Result<T>>, what: &str) -> Result<T> {
    match h.join() {
        Ok(r) => r.with_context(|| what.to_string()),
        Err(_) => bail!("{what}: thread panicked"),
    }
}
