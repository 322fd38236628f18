//! Build step: compile every vendored `.proto` of this folder into one `FileDescriptorSet`.
//!
//! The set is written to `$OUT_DIR/descriptors.bin` and embedded by `src/lib.rs` with
//! `include_bytes!`. protox does the compiling, so no system `protoc` is needed.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Compile this crate's folder into `$OUT_DIR/descriptors.bin`.
fn main() -> Result<()> {
    let manifest_dir =
        env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR is not set")?;
    let root = PathBuf::from(manifest_dir);
    // Cargo rescans a directory named here recursively, so added or edited files rebuild too.
    for dir in ["github.com", "gogoproto", "google", "k8s.io"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let mut files = Vec::new();
    collect_protos(&root, &root, &mut files)
        .with_context(|| format!("listing .proto files under {}", root.display()))?;
    if files.is_empty() {
        bail!("no .proto files under {}", root.display());
    }
    // A stable order keeps the embedded set byte-identical between builds.
    files.sort();

    let mut compiler = protox::Compiler::new([&root])
        .with_context(|| format!("setting up protox with include path {}", root.display()))?;
    // Imports are part of the set so the runtime pool is self-contained; source info (comments)
    // would only make the binary bigger.
    compiler.include_imports(true).include_source_info(false);
    for name in &files {
        compiler
            .open_file(name)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("compiling {name} (under {})", root.display()))?;
    }
    let bytes = compiler.encode_file_descriptor_set();

    let out_dir = env::var_os("OUT_DIR").context("OUT_DIR is not set")?;
    let out = PathBuf::from(out_dir).join("descriptors.bin");
    fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Push the import-style name (`a/b/c.proto`, `/` separated) of every `.proto` under `dir`.
fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path
                .strip_prefix(root)
                .with_context(|| format!("{} is outside {}", path.display(), root.display()))?;
            let name: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(name.join("/"));
        }
    }
    Ok(())
}
