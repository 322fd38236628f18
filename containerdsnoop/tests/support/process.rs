//! Child processes with deadlines, and the clean-up of what daemons leave behind: stray
//! processes, mounts, socket files.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use anyhow::{Context, Result, bail};

/// A finished command: its output, plus helpers that turn a failure into an error that shows
/// what was run and what it printed.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Stdout if the command exited 0, else an error with its status and both streams.
    pub fn ok(self) -> Result<String> {
        if self.output.status.success() {
            return Ok(self.stdout());
        }
        bail!(
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            self.what,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// Runs `cmd` to completion with stdin closed, killing it after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<Run> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    // Drain both pipes in threads: a chatty child would otherwise block on a full pipe.
    let mut out = child.stdout.take().context("stdout pipe")?;
    let mut err = child.stderr.take().context("stderr pipe")?;
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match wait_timeout(&mut child, timeout)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            // Grandchildren may still hold the pipes; don't wait for the reader threads.
            bail!("`{what}` did not finish within {timeout:?}");
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Run {
        what,
        output: Output {
            status,
            stdout,
            stderr,
        },
    })
}

/// Waits for `child` for at most `timeout`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().context("wait for child")? {
            return Ok(Some(s));
        }
        if start.elapsed() > timeout {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig`, waits up to `grace`, then SIGKILLs and reaps. Never fails: used from `Drop`.
pub fn stop_child(child: &mut Child, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signalling our own unreaped child; its pid cannot have been reused.
        unsafe { libc::kill(pid, sig) };
    }
    if let Ok(Some(s)) = wait_timeout(child, grace) {
        return Some(s);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Every process as (pid, parent pid, argv).
pub fn processes() -> Vec<(i32, i32, Vec<String>)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The comm field may hold spaces and parentheses: parse after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let ppid: i32 = rest.split(' ').nth(1)?.parse().ok()?;
        // A zombie's cmdline is empty, which is fine.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some((pid, ppid, argv))
    })
    .collect()
}

/// `roots` and all their descendants (in no particular order: they are all SIGKILLed at once).
pub fn with_descendants(roots: &[i32]) -> Vec<i32> {
    let procs = processes();
    let mut set: HashSet<i32> = roots.iter().copied().collect();
    // Fixed point: a container's processes may be several levels below its shim.
    loop {
        let before = set.len();
        for (pid, ppid, _) in &procs {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set.into_iter().collect()
}

/// Makes this (test) process the reaper of orphans from its subtree. Shims daemonize and outlive
/// containerd; without this they are reparented to PID 1, which on these machines does not reap,
/// and every killed shim or container would stay a zombie. Idempotent.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// SIGKILLs `pids`, reaps those that became our children (see `become_subreaper`), and waits
/// (bounded) until all are gone, so that their mounts can be released.
pub fn kill_and_wait(pids: &[i32], timeout: Duration) {
    for &pid in pids {
        // SAFETY: plain kill(2); a pid that already exited just gives ESRCH.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let start = Instant::now();
    loop {
        for &pid in pids {
            let mut status = 0;
            // SAFETY: waits for one specific pid only, never for a `Child` that std owns.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        }
        if !pids.iter().any(|&p| is_running(p)) || start.elapsed() > timeout {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps our zombie children that are shims: a shim whose container exited normally reparents to
/// us (see `become_subreaper`) and then exits. Only shims: reaping a child that a `Child` handle
/// owns (another test's daemon, say) would break that handle's `wait`.
pub fn reap_shims() {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    for (pid, ppid, _) in processes() {
        if ppid != me {
            continue;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains("(containerd-shim") && !is_running(pid) {
            let mut status = 0;
            // SAFETY: a specific zombie pid that no `Child` handle owns.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        }
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| !s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Deletes, with `runc delete --force`, every runc container under `runc_roots`
/// (`<root>/<namespace>/<id>/state.json`) whose state mentions `dir`. A killed shim leaves the
/// runc state and the container's cgroups behind; for containerd's shims that state sits in
/// `/run/containerd/runc`, shared by every containerd on the machine, and a later container with
/// the same namespace and id would fail with "already exists".
pub fn delete_runc_containers(runc_roots: &Path, dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(namespaces) = fs::read_dir(runc_roots) else {
        return;
    };
    for ns in namespaces.flatten() {
        let Ok(ids) = fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.flatten() {
            let state = fs::read_to_string(id.path().join("state.json")).unwrap_or_default();
            if !state.contains(&needle) {
                continue;
            }
            let mut cmd = Command::new("runc");
            cmd.arg("--root")
                .arg(ns.path())
                .args(["delete", "--force"])
                .arg(id.file_name());
            let deleted =
                run(cmd, Duration::from_secs(10)).is_ok_and(|r| r.output.status.success());
            if !deleted {
                let _ = fs::remove_dir_all(id.path());
            }
        }
    }
}

/// Unix socket paths that process `pid` has open (from /proc/net/unix), e.g. a shim's
/// `/run/containerd/s/<hash>` that it would have removed had it exited cleanly.
pub fn unix_socket_paths(pid: i32) -> Vec<PathBuf> {
    let inodes: HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let link = fs::read_link(e.ok()?.path()).ok()?;
            let s = link.to_str()?;
            Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && inodes.contains(f[6])).then(|| PathBuf::from(f[7]))
        })
        .collect()
}

/// Lazily unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let Ok(c) = CString::new(Path::new(&p).as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: a valid C string; MNT_DETACH so that a busy mount still goes away.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!("warning: umount {p}: {}", std::io::Error::last_os_error());
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
