//! Rebuild the eBPF object when the `bpf-linker` binary changes: cargo does not know that the
//! link step depends on it (the same workaround as aya-template).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found in PATH: run `cargo xtask setup`"),
    }
}
