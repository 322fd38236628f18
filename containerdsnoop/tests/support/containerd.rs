//! A private containerd (with its CRI plugin) in a temporary folder.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::image::{SANDBOX_REF, image_tar};
use super::process::{self, Run, run};
use super::runtime::{containerd_bin, containerd_dir, containerd_version, path_with};
use super::{remove_temp_dir, socket_accepts, tail, temp_dir, wait_until};

/// How long containerd may take to listen (it takes well under a second here).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for one `ctr` command.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// A running containerd; killed, with its shims and containers, on drop.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    child: Child,
    /// How long it took from spawn until the socket accepted a connection.
    pub startup: Duration,
}

impl Containerd {
    /// Starts containerd with a config that keeps root, state and sockets in a new folder
    /// under /tmp and waits until its gRPC socket accepts connections.
    pub fn start() -> Result<Containerd> {
        let dir = temp_dir("ctrd")?;
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        fs::create_dir_all(dir.join("cni/conf"))?;
        fs::create_dir_all(dir.join("cni/bin"))?;
        fs::write(&config, config_toml(&dir, &socket)).context("write containerd config")?;
        let log_path = dir.join("containerd.log");
        let log = File::create(&log_path).context("create containerd log")?;
        process::become_subreaper();
        // Shims of an earlier test in this process that exited after its clean-up.
        process::reap_shims();
        let started = Instant::now();
        // The shim is started by name: the one next to the containerd under test comes first.
        let child = Command::new(containerd_bin("containerd"))
            .env("PATH", path_with(containerd_dir().as_deref()))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd (apt-get install containerd)")?;
        // Build the handle now, so a failed wait still cleans up through Drop.
        let mut c = Containerd {
            dir,
            socket,
            child,
            startup: Duration::ZERO,
        };
        let ready = wait_until(START_TIMEOUT, "containerd's socket", || {
            if let Some(status) = c.child.try_wait()? {
                bail!("containerd exited ({status}):\n{}", tail(&log_path, 4000));
            }
            Ok(socket_accepts(&c.socket))
        });
        if let Err(e) = ready {
            return Err(e.context(format!("log tail:\n{}", tail(&log_path, 4000))));
        }
        c.startup = started.elapsed();
        Ok(c)
    }

    /// The gRPC socket (also the CRI endpoint).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary folder holding config, log, root and state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// Runs `ctr --address SOCK ARGS...` with a 60 s deadline.
    pub fn ctr(&self, args: &[&str]) -> Result<Run> {
        self.ctr_timeout(args, CTR_TIMEOUT)
    }

    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> Result<Run> {
        let mut cmd = Command::new(containerd_bin("ctr"));
        cmd.arg("--address").arg(&self.socket).args(args);
        let mut done = run(cmd, timeout)?;
        if !done.output.status.success() {
            // A failed call is often containerd's own doing: say whether it still runs, and
            // what it logged last.
            let alive = process::is_running(i32::try_from(self.pid()).unwrap_or(0));
            done.what.push_str(&format!(
                "\n[containerd pid {} {}; log tail:\n{}]",
                self.pid(),
                if alive { "still running" } else { "has exited" },
                tail(&self.log_path(), 3000)
            ));
        }
        Ok(done)
    }

    /// Makes pod sandboxes startable: imports a busybox image named like the configured
    /// `sandbox_image` into the CRI namespace `k8s.io` (the pause image cannot be pulled here).
    pub fn prepare_cri(&self) -> Result<()> {
        let tar = image_tar(&self.dir, SANDBOX_REF, &["/bin/sleep", "2147483647"])?;
        let tar = tar.to_str().context("non-UTF-8 temp path")?;
        self.ctr(&["-n", "k8s.io", "images", "import", tar])?.ok()?;
        Ok(())
    }

    /// Shim processes serving this containerd (they outlive it when it is killed).
    pub fn shim_pids(&self) -> Vec<i32> {
        let addr = self.socket.to_string_lossy();
        process::processes()
            .into_iter()
            .filter(|(_, _, argv)| {
                argv.first().is_some_and(|a| a.contains("containerd-shim"))
                    && argv.iter().any(|a| *a == addr)
            })
            .map(|(pid, _, _)| pid)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
        // Shims and their containers keep running without containerd; kill them, and remove the
        // shim sockets in /run/containerd/s/ that a killed shim cannot remove itself.
        let shims = self.shim_pids();
        let sockets: Vec<PathBuf> = shims
            .iter()
            .flat_map(|&p| process::unix_socket_paths(p))
            .filter(|p| p.starts_with("/run/containerd/s"))
            .collect();
        process::delete_runc_containers(Path::new("/run/containerd/runc"), &self.dir);
        process::kill_and_wait(&process::with_descendants(&shims), Duration::from_secs(5));
        for s in sockets {
            let _ = fs::remove_file(s);
        }
        process::reap_shims();
        process::unmount_under(&self.dir);
        remove_temp_dir(&self.dir);
    }
}

/// containerd 1.6 config (version 2; 1.7 reads it as is, 2.x migrates it). The CRI section
/// follows docs/testbed.md: no CAP_SYS_RESOURCE (so restrict_oom_score_adj), runc v2 shims, and an
/// empty CNI folder since pods use the host network. From 1.7 the Transfer service (which 2.x's
/// `ctr images import` uses) needs to know which platforms to unpack for, and each instance
/// needs its own NRI socket: 2.x enables NRI and binds `/var/run/nri/nri.sock` by default, so
/// two test daemons started at once raced for it and the loser exited ("address already in use").
fn config_toml(dir: &Path, socket: &Path) -> String {
    let mut config = config_toml_1_6(dir, socket);
    if containerd_version() >= (1, 7) {
        config.push_str(&format!(
            r#"
[plugins."io.containerd.transfer.v1.local"]
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/{}"
    snapshotter = "overlayfs"

[plugins."io.containerd.nri.v1.nri"]
  socket_path = "{}/nri.sock"
"#,
            go_arch(),
            dir.display()
        ));
    }
    config
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn config_toml_1_6(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    let s = socket.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{s}"

[ttrpc]
  address = "{s}.ttrpc"

[debug]
  address = "{d}/debug.sock"
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_REF}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#
    )
}

/// The shims' socket pattern, `/run/containerd/s/*`, with the directory's parent present.
///
/// containerd creates `/run/containerd/s` for its first shim, binds the shim's socket there and
/// sends it its first requests at once. The tracer selects a directory that appears while it
/// runs from its first byte only when the directory's parent exists (it awaits the name there;
/// see docs/selection.md); before, the containerd 2.1 CI run joined such a connection late.
/// `/run/containerd` is there on any node that runs containerd; the tests make it exist, and
/// leave `s` to containerd, so that this path is exercised.
pub fn shim_sockets() -> String {
    std::fs::create_dir_all("/run/containerd").expect("mkdir /run/containerd");
    "/run/containerd/s/*".to_string()
}
