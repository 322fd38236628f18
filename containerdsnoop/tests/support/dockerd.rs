//! A private dockerd in a temporary folder, using a harness `Containerd`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::containerd::Containerd;
use super::process::{self, Run, run};
use super::runtime::{dockerd_bin, path_with};
use super::{remove_temp_dir, socket_accepts, tail, temp_dir, wait_until, which};

/// dockerd takes a few seconds on first start (it creates its data root and probes storage).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// A running dockerd; stopped and cleaned up on drop. Drop it before its `Containerd`.
#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    child: Child,
    cli: PathBuf,
    /// How long it took from spawn until `docker version` answered.
    pub startup: Duration,
}

impl Dockerd {
    /// Starts dockerd with the flags from docs/testbed.md (no iptables, no bridge, vfs storage),
    /// every path in a new folder, and `containerd` as its containerd.
    pub fn start(containerd: &Containerd) -> Result<Dockerd> {
        let dir = temp_dir("dockerd")?;
        let socket = dir.join("docker.sock");
        // An empty daemon.json, so a host /etc/docker/daemon.json cannot change the setup.
        let config = dir.join("daemon.json");
        fs::write(&config, "{}")?;
        fs::create_dir_all(dir.join("cli"))?;
        let log_path = dir.join("dockerd.log");
        let log = File::create(&log_path).context("create dockerd log")?;
        // Debian's CLI matches the 20.10 daemon; the newer /usr/local/bin one also works, and is
        // preferred for a newer dockerd under test (`CONTAINERDSNOOP_DOCKERD_DIR`).
        let newer = std::env::var_os("CONTAINERDSNOOP_DOCKERD_DIR").is_some();
        let order: &[&str] = if newer {
            &["/usr/local/bin/docker", "/usr/bin/docker"]
        } else {
            &["/usr/bin/docker"]
        };
        let cli = order
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| which("docker"));
        let cli = cli.context("no docker CLI (apt-get install docker.io)")?;
        process::become_subreaper();
        let started = Instant::now();
        let child = Command::new(dockerd_bin())
            .env("PATH", path_with(None))
            .args([
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            .args(["--userland-proxy=false", "--storage-driver=vfs"])
            // Containers left running get 2 s, not 10, to stop when dockerd shuts down.
            .arg("--shutdown-timeout=2")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--containerd")
            .arg(containerd.socket())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn dockerd (apt-get install docker.io)")?;
        let mut d = Dockerd {
            dir,
            socket,
            child,
            cli,
            startup: Duration::ZERO,
        };
        let ready = wait_until(START_TIMEOUT, "dockerd's socket", || {
            if let Some(status) = d.child.try_wait()? {
                bail!("dockerd exited ({status})");
            }
            Ok(socket_accepts(&d.socket) && ping(&d.socket))
        });
        if let Err(e) = ready {
            return Err(e.context(format!("log tail:\n{}", tail(&log_path, 4000))));
        }
        d.startup = started.elapsed();
        Ok(d)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// The docker CLI used by `docker()`.
    pub fn cli(&self) -> &Path {
        &self.cli
    }

    /// Runs `docker -H unix://SOCK ARGS...` with a 120 s deadline.
    pub fn docker(&self, args: &[&str]) -> Result<Run> {
        self.docker_timeout(args, DOCKER_TIMEOUT)
    }

    pub fn docker_timeout(&self, args: &[&str], timeout: Duration) -> Result<Run> {
        let mut cmd = Command::new(&self.cli);
        // A private CLI config folder: no credential helpers or contexts from the host.
        cmd.env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        run(cmd, timeout)
    }
}

/// Whether dockerd answers `GET /_ping` with 200: the socket may accept connections before the
/// daemon has finished initialising.
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

impl Drop for Dockerd {
    fn drop(&mut self) {
        // dockerd's own shutdown gives each container 10 s after SIGTERM (busybox `sleep` as PID 1
        // ignores it), so kill them first. Then SIGTERM, SIGKILL after 15 s. Shims left behind
        // are the Containerd's to kill.
        let running = self
            .docker_timeout(&["ps", "-q"], Duration::from_secs(10))
            .map(|r| r.stdout())
            .unwrap_or_default();
        let ids: Vec<&str> = running.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = self.docker_timeout(&[&["kill"][..], &ids].concat(), Duration::from_secs(10));
        }
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        let children = process::with_descendants(&[pid]);
        process::stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(15));
        let left: Vec<i32> = children.into_iter().filter(|&p| p != pid).collect();
        process::kill_and_wait(&left, Duration::from_secs(2));
        // dockerd's shims keep runc state under its exec root, which is about to go.
        process::delete_runc_containers(&self.dir.join("exec/runtime-runc"), &self.dir);
        process::unmount_under(&self.dir);
        remove_temp_dir(&self.dir);
    }
}
