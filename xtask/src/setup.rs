//! Idempotent installation of prerequisites. Each step checks first and does nothing when the
//! thing is there, so `setup` is cheap to run before every build and test.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Debian packages the eBPF build needs (bpf-linker links against LLVM 22, rustc nightly's).
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev"];
/// Real peers and oracles of the end-to-end tests; protobuf-compiler for the CRI client's
/// generated code (k8s-cri's build script runs protoc); man-db, zsh and fish to check the
/// shipped man page and completions, python3-venv for the Kubernetes schema validator;
/// socat (the `socat -v` relay the overhead benchmark compares with) and bpftool (program names
/// for its per-program BPF time).
const TEST_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "docker.io",
    "busybox-static",
    "tshark",
    "protobuf-compiler",
    "man-db",
    "zsh",
    "fish",
    "python3-venv",
    "socat",
    "bpftool",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn succeeds(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn step(what: &str) {
    eprintln!("xtask setup: {what}");
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run_checked(
        Command::new(env!("CARGO"))
            .args(args)
            .current_dir(workspace_root()?),
    )
}

fn missing_packages(packages: &[&str]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

fn apt_install(packages: &[String]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `sudo cargo xtask setup`, or `sudo apt-get install {}`",
            packages.join(" "),
            packages.join(" ")
        );
    }
    step(&format!("apt-get install {}", packages.join(" ")));
    run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

pub fn setup(test_deps: bool) -> anyhow::Result<()> {
    // Nightly rust-src: aya-build builds the eBPF crate with `-Z build-std=core`.
    if output("rustup", &["toolchain", "list"]).is_none_or(|t| !t.contains("nightly")) {
        bail!(
            "no nightly toolchain: the eBPF programs build with nightly (`rustup toolchain \
             install nightly --component rust-src`)"
        );
    }
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        step("rustup component add rust-src --toolchain nightly");
        run_checked(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    let mut packages = missing_packages(BUILD_PACKAGES);
    if test_deps {
        packages.extend(missing_packages(TEST_PACKAGES));
        if !succeeds("which", &["qemu-system-x86_64"]) {
            packages.extend(missing_packages(&["qemu-system-x86", "cpio"]));
        }
    }
    apt_install(&packages)?;
    if test_deps {
        crate::manifest::setup_validator()?;
    }

    let linker_ok = output("bpf-linker", &["--version"])
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION));
    if !linker_ok {
        step(&format!(
            "cargo install bpf-linker {BPF_LINKER_VERSION} (about a minute)"
        ));
        run_checked(
            Command::new(env!("CARGO"))
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--locked",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }
    Ok(())
}
