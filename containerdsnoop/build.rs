//! Builds the eBPF programs (containerdsnoop-ebpf) with aya-build, as aya-template does, so
//! that the binary embeds them; and records the version and git commit `--version` states.
use anyhow::{Context as _, anyhow};

#[path = "build/version.rs"]
mod version;

fn main() -> anyhow::Result<()> {
    version::emit();
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "containerdsnoop-ebpf")
        .ok_or_else(|| anyhow!("containerdsnoop-ebpf package not found"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    let ebpf = aya_build::Package {
        name: package.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
