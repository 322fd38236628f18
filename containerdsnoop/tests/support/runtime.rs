//! Which containerd and dockerd the tests drive: the ones in PATH, or the folders named by
//! `CONTAINERDSNOOP_CONTAINERD_DIR` / `CONTAINERDSNOOP_DOCKERD_DIR` (the runtime matrix of
//! `cargo xtask test`), and what differs between their versions.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::{env, time::Duration};

use super::process::run;
use super::which;

fn dir_from_env(var: &str) -> Option<PathBuf> {
    env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `containerd`, `ctr` or `containerd-shim-runc-v2` under test.
pub fn containerd_bin(name: &str) -> PathBuf {
    match dir_from_env("CONTAINERDSNOOP_CONTAINERD_DIR") {
        Some(dir) => dir.join(name),
        None => which(name).unwrap_or_else(|| PathBuf::from(name)),
    }
}

/// The `dockerd` under test.
pub fn dockerd_bin() -> PathBuf {
    match dir_from_env("CONTAINERDSNOOP_DOCKERD_DIR") {
        Some(dir) => dir.join("dockerd"),
        None => which("dockerd").unwrap_or_else(|| PathBuf::from("dockerd")),
    }
}

/// PATH for a daemon whose helpers must come from `dir` first (containerd starts
/// `containerd-shim-runc-v2` by name).
pub fn path_with(dir: Option<&Path>) -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = dir.into_iter().map(Path::to_path_buf).collect();
    dirs.extend(env::split_paths(&current));
    // A non-login root shell may lack the sbin folders, where Debian puts runc's peers.
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|p| p == Path::new(d)) {
            dirs.push(PathBuf::from(d));
        }
    }
    env::join_paths(dirs).unwrap_or(current)
}

/// The folder of the containerd under test, when it is not the one in PATH.
pub fn containerd_dir() -> Option<PathBuf> {
    dir_from_env("CONTAINERDSNOOP_CONTAINERD_DIR")
}

/// The containerd under test's version as it prints it (`containerd --version`'s third word,
/// e.g. `1.6.20~ds1` or `2.1.9+unknown`).
pub fn containerd_version_string() -> Option<&'static str> {
    static V: OnceLock<Option<String>> = OnceLock::new();
    V.get_or_init(|| {
        let mut cmd = Command::new(containerd_bin("containerd"));
        cmd.arg("--version");
        let out = run(cmd, Duration::from_secs(20)).ok()?.stdout();
        out.split_whitespace().nth(2).map(str::to_string)
    })
    .as_deref()
}

/// (major, minor) of the containerd under test; (1, 6) when it cannot be told.
pub fn containerd_version() -> (u32, u32) {
    containerd_version_string()
        .and_then(parse_major_minor)
        .unwrap_or((1, 6))
}

/// `2.1.9+ds1` → (2, 1).
pub fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
    let v = v.trim_start_matches('v');
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The ttrpc task service containerd speaks to its runc shims: `containerd.task.v2` in 1.x,
/// `containerd.task.v3` from 2.0.
pub fn shim_task_package() -> &'static str {
    if containerd_version().0 >= 2 {
        "containerd.task.v3"
    } else {
        "containerd.task.v2"
    }
}

/// `ctr images import` arguments for the client-side import path (Content/Write, Images/Create):
/// containerd 2.x's ctr goes through the Transfer service unless told `--local`.
pub fn ctr_import_local_args() -> &'static [&'static str] {
    if containerd_version().0 >= 2 {
        &["images", "import", "--local"]
    } else {
        &["images", "import"]
    }
}
