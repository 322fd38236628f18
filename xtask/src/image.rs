//! `cargo xtask image`: the container image (Containerfile: the static binary in an empty
//! image), built with the local docker — or with a private dockerd started for the occasion
//! when none answers — and saved as an OCI image layout archive that both `docker load` and
//! `ctr images import` accept.

use std::{
    fs,
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::json;

use crate::{dist, setup};

const REPOSITORY: &str = "containerdsnoop";

/// What `image` produced.
pub struct Image {
    /// `containerdsnoop:<version>`.
    pub tag: String,
    /// The OCI archive in `target/dist/`.
    pub archive: PathBuf,
}

/// `cargo xtask image`.
pub fn run() -> anyhow::Result<()> {
    let image = build()?;
    println!("{}", image.archive.display());
    println!(
        "load it with `docker load -i {0}` or `ctr images import {0}`; it is {1}",
        image.archive.display(),
        image.tag
    );
    Ok(())
}

/// Builds the static binary, the image, and its OCI archive.
pub fn build() -> anyhow::Result<Image> {
    let binary = dist::build_static_binary()?;
    let root = setup::workspace_root()?;
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("{REPOSITORY}:{version}");
    let out = dist::dist_dir()?;
    let context = out.join("image-context");
    if context.exists() {
        fs::remove_dir_all(&context)?;
    }
    fs::create_dir_all(&context)?;
    fs::copy(&binary, context.join("containerdsnoop")).context("copying the binary")?;

    let docker = Docker::connect_or_start()?;
    let revision = revision(&root);
    docker
        .cli(&["build", "--no-cache", "-t", &tag])
        .args(["--build-arg", &format!("VERSION={version}")])
        .args(["--build-arg", &format!("REVISION={revision}")])
        .arg("-f")
        .arg(root.join("Containerfile"))
        .arg(&context)
        .status_ok("docker build")?;
    let saved = out.join(format!("{REPOSITORY}-{version}.docker.tar"));
    docker
        .cli(&["save", "-o"])
        .arg(&saved)
        .arg(&tag)
        .status_ok("docker save")?;
    let archive = out.join(format!("{REPOSITORY}-{version}-{}.oci.tar", "x86_64-linux"));
    docker_archive_to_oci(&saved, &archive, &tag).context("writing the OCI archive")?;
    fs::remove_file(&saved)?;
    fs::remove_dir_all(&context)?;
    Ok(Image { tag, archive })
}

fn revision(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Rewrites `docker save`'s archive (docker 20.10 writes the legacy layout only) as an OCI
/// image layout: `oci-layout`, `index.json`, `blobs/sha256/*`, with gzip layers. It keeps a
/// `manifest.json` that points into `blobs/`, as docker 25+ does, so that older `docker load`
/// reads it too; containerd reads `index.json` first.
pub fn docker_archive_to_oci(docker_tar: &Path, oci_tar: &Path, tag: &str) -> anyhow::Result<()> {
    let mut files = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(fs::File::open(docker_tar)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let path = entry.path()?.to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            files.insert(path, data);
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(files.get("manifest.json").context("no manifest.json")?)?;
    let image = manifest.get(0).context("manifest.json lists no image")?;
    let config_name = image["Config"].as_str().context("no Config")?;
    let config = files.get(config_name).context("config missing")?.clone();
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add_blob = |data: Vec<u8>| -> String {
        let digest = dist::sha256_hex(&data);
        if !blobs.iter().any(|(d, _)| *d == digest) {
            blobs.push((digest.clone(), data));
        }
        digest
    };
    let config_size = config.len();
    let config_digest = add_blob(config);
    let mut layers = Vec::new();
    for layer in image["Layers"].as_array().context("no Layers")? {
        let name = layer.as_str().context("layer name")?;
        let data = files.get(name).with_context(|| format!("{name} missing"))?;
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        gz.write_all(data)?;
        let compressed = gz.finish()?;
        let size = compressed.len();
        layers.push((add_blob(compressed), size));
    }
    let oci_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config_size,
        },
        "layers": layers.iter().map(|(digest, size)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{digest}"),
            "size": size,
        })).collect::<Vec<_>>(),
    }))?;
    let manifest_size = oci_manifest.len();
    let manifest_digest = add_blob(oci_manifest);
    let version = tag.rsplit(':').next().unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": format!("docker.io/library/{tag}"),
                "org.opencontainers.image.ref.name": version,
            },
        }],
    });
    let docker_manifest = json!([{
        "Config": format!("blobs/sha256/{config_digest}"),
        "RepoTags": [tag],
        "Layers": layers.iter().map(|(d, _)| format!("blobs/sha256/{d}")).collect::<Vec<_>>(),
    }]);

    let file = fs::File::create(oci_tar)?;
    let mut out = tar::Builder::new(file);
    let mut add = |path: &str, data: &[u8], kind: tar::EntryType| -> anyhow::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        out.append_data(&mut header, path, data)?;
        Ok(())
    };
    add(
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        tar::EntryType::Regular,
    )?;
    add(
        "index.json",
        &serde_json::to_vec(&index)?,
        tar::EntryType::Regular,
    )?;
    add(
        "manifest.json",
        &serde_json::to_vec(&docker_manifest)?,
        tar::EntryType::Regular,
    )?;
    add("blobs/", &[], tar::EntryType::Directory)?;
    add("blobs/sha256/", &[], tar::EntryType::Directory)?;
    for (digest, data) in &blobs {
        add(
            &format!("blobs/sha256/{digest}"),
            data,
            tar::EntryType::Regular,
        )?;
    }
    out.into_inner()?.flush()?;
    Ok(())
}

/// A docker daemon to talk to: the machine's, or a private one stopped on drop.
pub struct Docker {
    host: String,
    cli: PathBuf,
    config_dir: PathBuf,
    private: Option<(Child, PathBuf)>,
}

/// dockerd creates its data root and probes storage drivers on first start.
const DOCKERD_START: Duration = Duration::from_secs(60);

impl Docker {
    /// `$DOCKER_HOST` or `/var/run/docker.sock` if a daemon answers there; else starts
    /// dockerd (flags as in docs/testbed.md, letting it run its own containerd) in a fresh folder.
    pub fn connect_or_start() -> anyhow::Result<Docker> {
        let cli = ["/usr/bin/docker", "/usr/local/bin/docker"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("no docker CLI (apt-get install docker.io)")?;
        let config_dir = dist::target_dir()?.join("docker-cli-config");
        fs::create_dir_all(&config_dir)?;
        let existing = std::env::var("DOCKER_HOST")
            .ok()
            .or_else(|| Some("unix:///var/run/docker.sock".to_string()))
            .filter(|host| {
                host.strip_prefix("unix://")
                    .is_some_and(|p| ping(Path::new(p)))
            });
        if let Some(host) = existing {
            eprintln!("xtask image: using the docker daemon at {host}");
            return Ok(Docker {
                host,
                cli,
                config_dir,
                private: None,
            });
        }
        let dir = PathBuf::from(format!("/tmp/csn-xtask-dockerd-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let socket = dir.join("docker.sock");
        fs::write(dir.join("daemon.json"), "{}")?;
        let log = fs::File::create(dir.join("dockerd.log"))?;
        eprintln!(
            "xtask image: no docker daemon answers; starting one in {}",
            dir.display()
        );
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip-forward=false", "--ip-masq=false"])
            .args([
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=vfs",
            ])
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dockerd (apt-get install docker.io)")?;
        let mut docker = Docker {
            host: format!("unix://{}", socket.display()),
            cli,
            config_dir,
            private: Some((child, dir.clone())),
        };
        let started = Instant::now();
        while !ping(&socket) {
            if let Some((child, _)) = docker.private.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "dockerd exited ({status}); see {}/dockerd.log",
                    dir.display()
                );
            }
            if started.elapsed() > DOCKERD_START {
                bail!(
                    "dockerd did not answer within {DOCKERD_START:?}; see {}",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(docker)
    }

    /// `docker -H HOST ARGS` with a private CLI config (no host credential helpers).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.env("DOCKER_CONFIG", &self.config_dir)
            // The classic builder: the Containerfile needs nothing more, and the 20.10 CLI
            // has no buildx.
            .env("DOCKER_BUILDKIT", "0")
            .args(["-H", &self.host])
            .args(args);
        cmd
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let Some((child, dir)) = self.private.as_mut() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: signals the dockerd we spawned (and have not reaped yet).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        unmount_under(dir);
        let _ = fs::remove_dir_all(dir);
    }
}

/// Detaches every mount below `dir` (dockerd's managed containerd and the vfs driver may leave
/// some), deepest first.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let Ok(c) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: umount2 with a NUL-terminated path we own.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Whether a docker daemon answers `GET /_ping` on `socket`.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Runs a command, failing with its name when it exits non-zero.
trait StatusOk {
    fn status_ok(&mut self, what: &str) -> anyhow::Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self, what: &str) -> anyhow::Result<()> {
        let status = self.status().with_context(|| format!("running {what}"))?;
        ensure!(status.success(), "{what} failed ({status})");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made docker archive becomes an OCI layout whose digests and sizes hold.
    #[test]
    fn oci_layout_from_docker_archive() {
        let dir = std::env::temp_dir().join(format!("xtask-oci-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let layer = b"not really a tar, but bytes to digest".to_vec();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let config_name = format!("{}.json", dist::sha256_hex(&config));
        let manifest =
            json!([{ "Config": config_name, "RepoTags": ["x:1"], "Layers": ["l/layer.tar"] }]);
        let docker_tar = dir.join("docker.tar");
        {
            let mut b = tar::Builder::new(fs::File::create(&docker_tar).expect("create"));
            for (path, data) in [
                (
                    "manifest.json",
                    serde_json::to_vec(&manifest).expect("json"),
                ),
                (config_name.as_str(), config.clone()),
                ("l/layer.tar", layer.clone()),
            ] {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, path, data.as_slice())
                    .expect("append");
            }
            b.finish().expect("finish");
        }
        let oci = dir.join("oci.tar");
        docker_archive_to_oci(&docker_tar, &oci, "x:1").expect("convert");
        let mut files = std::collections::HashMap::new();
        let mut a = tar::Archive::new(fs::File::open(&oci).expect("open"));
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            files.insert(e.path().expect("path").to_string_lossy().into_owned(), data);
        }
        for (name, data) in &files {
            if let Some(digest) = name.strip_prefix("blobs/sha256/").filter(|d| !d.is_empty()) {
                assert_eq!(dist::sha256_hex(data), digest, "{name}");
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).expect("index");
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "docker.io/library/x:1"
        );
        let digest = m["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:");
        let manifest: serde_json::Value =
            serde_json::from_slice(&files[&format!("blobs/sha256/{digest}")]).expect("manifest");
        assert_eq!(m["size"], files[&format!("blobs/sha256/{digest}")].len());
        let layer_digest = manifest["layers"][0]["digest"].as_str().expect("layer");
        let blob = &files[&format!(
            "blobs/sha256/{}",
            layer_digest.trim_start_matches("sha256:")
        )];
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(blob.as_slice())
            .read_to_end(&mut unpacked)
            .expect("gunzip");
        assert_eq!(unpacked, layer);
        let compat: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
        assert_eq!(
            compat[0]["Layers"][0],
            format!(
                "blobs/sha256/{}",
                layer_digest.trim_start_matches("sha256:")
            )
        );
        assert!(files.contains_key(compat[0]["Config"].as_str().expect("config")));
        let _ = fs::remove_dir_all(&dir);
    }
}
