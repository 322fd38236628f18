//! The git commit the binary is built from, for `containerdsnoop --version`: exported to the
//! crate as `CONTAINERDSNOOP_GIT_COMMIT` (`unknown` outside a git checkout).

use std::{path::PathBuf, process::Command};

/// Set it to build from a source tree without `.git` (a release tarball, a distro package).
const OVERRIDE: &str = "CONTAINERDSNOOP_GIT_COMMIT";

pub fn emit() {
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    let commit = match std::env::var(OVERRIDE) {
        Ok(commit) if !commit.is_empty() => commit,
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env={OVERRIDE}={commit}");
}

/// `git rev-parse --short=12 HEAD`, re-run when HEAD or the branch it points to moves.
fn from_git() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // A worktree keeps HEAD in its own git dir and the branches in the common one.
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let mut watched = vec![git_dir.join("HEAD")];
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        watched.push(common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(common.join(branch));
        }
    }
    // Cargo reruns the script on every build for a path that does not exist.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty())
}
