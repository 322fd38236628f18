//! A busybox image built by hand from Debian's busybox-static, as a docker-archive tarball
//! (`manifest.json`, config JSON, one uncompressed layer) that both `ctr images import` and
//! `docker load` (20.10, which predates OCI-layout support) accept. No registry is reachable.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::process::run;

/// The image tests run containers from; its default command is `sh`.
pub const BUSYBOX_REF: &str = "docker.io/library/busybox:test";
/// Stands in for the CRI pause image (which cannot be pulled here); its command sleeps, because
/// the CRI plugin runs the sandbox image's command as the pod's long-lived process.
pub const SANDBOX_REF: &str = "docker.io/library/busybox:pause";

/// Applets linked in `/bin` besides `busybox` itself.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "true", "false", "cat", "ls", "env", "id", "hostname", "ps", "wc",
    "head", "nc",
];

/// Builds the busybox image tarball (`BUSYBOX_REF`, command `sh`) in `dir`.
pub fn busybox_image_tar(dir: &Path) -> Result<PathBuf> {
    image_tar(dir, BUSYBOX_REF, &["sh"])
}

/// Builds a busybox image tarball named `reference` with default command `cmd` in `dir` and
/// returns its path.
pub fn image_tar(dir: &Path, reference: &str, cmd: &[&str]) -> Result<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("no /bin/busybox (apt-get install busybox-static)")?;
    let safe_name: String = reference
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let work = dir.join(format!("image-{safe_name}"));
    let rootfs = work.join("rootfs");
    let out = work.join("out");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        fs::create_dir_all(rootfs.join(d))
            .with_context(|| format!("create {}", rootfs.join(d).display()))?;
    }
    fs::create_dir_all(&out)?;
    fs::copy(busybox, rootfs.join("bin/busybox")).context("copy busybox")?;
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a))
            .with_context(|| format!("symlink /bin/{a}"))?;
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;

    // Fixed owner, order and times: the layer digest then depends only on busybox itself.
    let layer = out.join("layer.tar");
    let mut tar = Command::new("tar");
    tar.args([
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@0",
        "-C",
    ])
    .arg(&rootfs)
    .arg("-cf")
    .arg(&layer)
    .arg(".");
    run(tar, Duration::from_secs(30))?.ok()?;
    let diff_id = sha256_file(&layer)?;

    let config = serde_json::json!({
        "architecture": go_arch()?,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "containerdsnoop test harness" }],
    });
    let config_path = out.join("config.json");
    fs::write(&config_path, serde_json::to_vec(&config)?)?;
    let config_id = sha256_file(&config_path)?;
    let config_name = format!("{config_id}.json");
    fs::rename(&config_path, out.join(&config_name))?;
    let layer_dir = out.join(&diff_id);
    fs::create_dir_all(&layer_dir)?;
    fs::rename(&layer, layer_dir.join("layer.tar"))?;
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]);
    fs::write(out.join("manifest.json"), serde_json::to_vec(&manifest)?)?;

    let tarball = dir.join(format!("{safe_name}.tar"));
    let mut tar = Command::new("tar");
    tar.args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&out)
        .arg("-cf")
        .arg(&tarball)
        .arg(".");
    run(tar, Duration::from_secs(30))?.ok()?;
    fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    Ok(tarball)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = run(cmd, Duration::from_secs(30))?.ok()?;
    match out.split_whitespace().next() {
        Some(h) if h.len() == 64 => Ok(h.to_string()),
        _ => bail!("unexpected sha256sum output: {out}"),
    }
}

/// The image architecture name for this machine, in Go's spelling.
fn go_arch() -> Result<&'static str> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("no image architecture name for {other}"),
    })
}
