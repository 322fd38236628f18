//! The guest's whole root file system: a gzip'd cpio (newc) archive with busybox, the test
//! script as `/init`, the binaries under test and the shared libraries they load (found with
//! `ldd`, stored under the paths the dynamic loader looks for them); per kernel, a second
//! archive after it with that kernel's modules for the churn check.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use flate2::{Compression, write::GzEncoder};

use super::modules::Module;

pub struct Contents<'a> {
    pub busybox: &'a Path,
    pub init_script: &'a Path,
    pub h2_trace: &'a Path,
    pub tracer: &'a Path,
    pub peer: &'a Path,
    pub helper: &'a Path,
}

/// Writes the archive to `out`; returns its size.
pub fn write(c: &Contents<'_>, out: &Path) -> anyhow::Result<u64> {
    let mut a = Archive::default();
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "proc",
        "sys",
        "tmp",
        "run",
        "test",
        "usr",
        "usr/local",
        "usr/local/bin",
    ] {
        a.dir(d);
    }
    // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
    a.char_dev("dev/console", 0o600, 5, 1);
    a.file("bin/busybox", 0o755, &read(c.busybox)?);
    a.file("init", 0o755, &read(c.init_script)?);
    a.file("test/ctr-version.h2trace", 0o644, &read(c.h2_trace)?);
    a.file("usr/local/bin/containerdsnoop", 0o755, &read(c.tracer)?);
    a.file(
        "usr/local/bin/containerdsnoop-testpeer",
        0o755,
        &read(c.peer)?,
    );
    a.file("usr/local/bin/xtask", 0o755, &read(c.helper)?);

    let mut libs = BTreeSet::new();
    for exe in [c.tracer, c.peer, c.helper] {
        libs.extend(shared_libraries(exe)?);
    }
    let mut lib_dirs = BTreeSet::new();
    for lib in &libs {
        let rel = lib
            .strip_prefix("/")
            .with_context(|| format!("ldd printed a relative path {}", lib.display()))?;
        let mut parent = PathBuf::new();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(part);
            a.dir(&parent.to_string_lossy());
        }
        lib_dirs.insert(format!("/{}", parent.display()));
        // fs::read follows symlinks: the loader gets a real file under the name it asks for.
        a.file(&rel.to_string_lossy(), 0o755, &read(lib)?);
    }
    // No ld.so.cache in the guest: tell the loader where the libraries are.
    let env = format!(
        "export LD_LIBRARY_PATH={}\n",
        lib_dirs.into_iter().collect::<Vec<_>>().join(":")
    );
    a.file("test/env", 0o644, env.as_bytes());

    let bytes = a.finish();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&bytes)?;
    let gz = gz.finish()?;
    fs::write(out, &gz).with_context(|| format!("write {}", out.display()))?;
    Ok(gz.len() as u64)
}

/// Writes `base` followed by a second archive with `modules` as `/test/modules/NN-name.ko`
/// to `out` (the kernel unpacks concatenated archives in turn): one kernel's initramfs.
pub fn write_with_modules(base: &Path, modules: &[Module], out: &Path) -> anyhow::Result<()> {
    let mut bytes = read(base)?;
    if !modules.is_empty() {
        let mut a = Archive::default();
        a.dir("test");
        a.dir("test/modules");
        for (i, m) in modules.iter().enumerate() {
            a.file(
                &format!("test/modules/{:02}-{}.ko", i + 1, m.name),
                0o644,
                &m.elf,
            );
        }
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&a.finish())?;
        bytes.extend_from_slice(&gz.finish()?);
    }
    fs::write(out, &bytes).with_context(|| format!("write {}", out.display()))
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(p).with_context(|| format!("read {}", p.display()))
}

/// The absolute paths of the shared objects `exe` loads, the dynamic loader included; none for
/// a static executable.
fn shared_libraries(exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable" (static builds) is fine.
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic") || err.contains("not a dynamic") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", exe.display(), err.trim());
    }
    parse_ldd(&text)
}

fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.contains("statically linked") {
            continue;
        }
        if line.contains("=> not found") {
            bail!("ldd: {line}");
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no path.
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// A cpio "newc" archive, the format the kernel unpacks into its rootfs.
#[derive(Default)]
struct Archive {
    buf: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Archive {
    fn dir(&mut self, path: &str) {
        if self.dirs.insert(path.to_string()) {
            self.entry(path, 0o040_755, 2, (0, 0), &[]);
        }
    }

    fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | perm, 1, (0, 0), data);
    }

    fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, 0o020_000 | perm, 1, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible archives
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize as u32,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn newc_entries_are_aligned() {
        let mut a = Archive::default();
        a.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = a.finish();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
