//! The kernel modules the churn check loads in the guest: `brd` (a RAM disk) and `ext4` with
//! the modules it depends on, taken from the kernel's own Debian package, decompressed and put
//! in load order. Debian builds both as modules, and what its kernels have built in to hold
//! files (tmpfs, the initramfs) hands out fresh inode numbers, while ext4 gives a removed
//! file's number to the next file: the case the churn check is about.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::packages::{self, KernelImage};

/// What the guest loads (with their dependencies and the `softdep=pre:` modules that can be
/// found, which come first: ext4 before 6.15 needs the crypto API's crc32c to mount).
const WANTED: [&str; 2] = ["brd", "ext4"];

/// Where modules live in the kernel packages: `/lib/modules` (bullseye, bookworm) or
/// `/usr/lib/modules` (sid's linux-modules-*). Only these subtrees are unpacked.
const MEMBERS: [&str; 8] = [
    "./lib/modules/*/kernel/crypto/",
    "./usr/lib/modules/*/kernel/crypto/",
    "./lib/modules/*/kernel/fs/",
    "./lib/modules/*/kernel/lib/",
    "./lib/modules/*/kernel/drivers/block/",
    "./usr/lib/modules/*/kernel/fs/",
    "./usr/lib/modules/*/kernel/lib/",
    "./usr/lib/modules/*/kernel/drivers/block/",
];

/// One module: its name (`jbd2`) and its ELF bytes.
pub struct Module {
    pub name: String,
    pub elf: Vec<u8>,
}

/// The modules of `image`'s kernel that give the guest an ext4 RAM disk, in load order; cached
/// decompressed under `<cache>/kernels/<package>.ext4-modules/NN-name.ko`.
pub fn ext4(cache: &Path, image: &KernelImage) -> anyhow::Result<Vec<Module>> {
    let dir = cache
        .join("kernels")
        .join(format!("{}.ext4-modules", image.package));
    if !dir.is_dir() {
        build_cache(cache, image, &dir)?;
    }
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let name = stem.split_once('-').map_or(stem, |(_, n)| n).to_string();
            Ok(Module {
                name,
                elf: fs::read(p).with_context(|| format!("read {}", p.display()))?,
            })
        })
        .collect()
}

/// From 7.x Debian ships the modules in `linux-modules-<ver>`, beside `linux-binary-<ver>`.
fn modules_package(package: &str) -> String {
    match package.strip_prefix("linux-binary-") {
        Some(ver) => format!("linux-modules-{ver}"),
        None => package.to_string(),
    }
}

fn build_cache(cache: &Path, image: &KernelImage, dir: &Path) -> anyhow::Result<()> {
    let raw = dir.with_extension("unpacked");
    let name = modules_package(&image.package);
    packages::unpack_series_package(cache, &image.label, &name, &raw, &MEMBERS)
        .with_context(|| format!("unpacking modules of {name}"))?;
    let mut found = BTreeMap::new();
    index(&raw, &mut found)?;
    let aliases = crypto_aliases(&found)?;
    let order = load_order(&WANTED, |m| {
        let path = found
            .get(m)
            .with_context(|| format!("{name} has no module {m}"))?;
        let elf = decompress(path)?;
        let mut deps = depends(&elf);
        // A soft dependency is a module or an alias (`crypto-crc32c`); one not found is left
        // out (a later kernel has it built in).
        for soft in modinfo(&elf, "softdep=") {
            for d in soft.split_whitespace().skip_while(|w| *w != "pre:").skip(1) {
                let d = d.replace('-', "_");
                if found.contains_key(&d) {
                    deps.push(d);
                } else if let Some(m) = aliases.get(&d) {
                    deps.push(m.clone());
                }
            }
        }
        Ok(deps)
    })?;
    let tmp = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    for (i, m) in order.iter().enumerate() {
        let elf = decompress(&found[m])?;
        fs::write(tmp.join(format!("{:02}-{m}.ko", i + 1)), elf)?;
    }
    fs::rename(&tmp, dir)?;
    let _ = fs::remove_dir_all(&raw);
    Ok(())
}

/// Every `*.ko[.xz|.zst|.gz]` under `dir`, by module name (`-` and `_` are one to modprobe).
fn index(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_dir() {
            index(&path, out)?;
            continue;
        }
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some((stem, _)) = file.split_once(".ko") {
            out.insert(stem.replace('-', "_"), path.clone());
        }
    }
    Ok(())
}

/// `wanted` and everything they depend on, each after its dependencies.
fn load_order(
    wanted: &[&str],
    mut deps_of: impl FnMut(&str) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    fn visit(
        m: &str,
        deps_of: &mut dyn FnMut(&str) -> anyhow::Result<Vec<String>>,
        order: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if order.iter().any(|o| o == m) {
            return Ok(());
        }
        if path.iter().any(|p| p == m) {
            bail!("modules depend on each other in a circle: {path:?} -> {m}");
        }
        path.push(m.to_string());
        for d in deps_of(m)? {
            visit(&d, deps_of, order, path)?;
        }
        path.pop();
        order.push(m.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for m in wanted {
        visit(m, &mut deps_of, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// The values of a module's `.modinfo` strings with `key` (`depends=`, `alias=`).
fn modinfo(elf: &[u8], key: &str) -> Vec<String> {
    elf.split(|&b| b == 0)
        .filter_map(|s| s.strip_prefix(key.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The `depends=` entry of a module's `.modinfo` strings (names normalised to `_`).
fn depends(elf: &[u8]) -> Vec<String> {
    modinfo(elf, "depends=")
        .first()
        .map(|list| {
            list.split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// The aliases of the crypto modules (`crypto_crc32c` -> `crc32c_generic`), normalised to `_`.
fn crypto_aliases(found: &BTreeMap<String, PathBuf>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, path) in found {
        if !path.components().any(|c| c.as_os_str() == "crypto") {
            continue;
        }
        for a in modinfo(&decompress(path)?, "alias=") {
            out.entry(a.replace('-', "_"))
                .or_insert_with(|| name.clone());
        }
    }
    Ok(out)
}

fn decompress(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko") {
        return fs::read(path).with_context(|| format!("read {name}"));
    } else if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        bail!("unknown module compression: {name}");
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("running {tool} -dc"))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = b"\x7fELF\0license=GPL\0depends=jbd2,crc16,mbcache\0softdep=pre: crc32c\0";
        assert_eq!(depends(elf), ["jbd2", "crc16", "mbcache"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"nothing").is_empty());
        assert_eq!(modinfo(elf, "softdep="), ["pre: crc32c"]);
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let deps = |m: &str| -> anyhow::Result<Vec<String>> {
            Ok(match m {
                "ext4" => vec!["jbd2".into(), "crc16".into(), "mbcache".into()],
                "jbd2" => vec!["crc16".into()],
                _ => vec![],
            })
        };
        let order = load_order(&["brd", "ext4"], deps).unwrap();
        assert_eq!(order, ["brd", "crc16", "jbd2", "mbcache", "ext4"]);
        let circle = |m: &str| -> anyhow::Result<Vec<String>> {
            Ok(vec![if m == "a" { "b" } else { "a" }.into()])
        };
        assert!(load_order(&["a"], circle).is_err());
    }

    #[test]
    fn sid_modules_come_from_their_own_package() {
        assert_eq!(
            modules_package("linux-binary-7.2.13+deb14-amd64"),
            "linux-modules-7.2.13+deb14-amd64"
        );
        assert_eq!(
            modules_package("linux-image-6.1.0-56-amd64"),
            "linux-image-6.1.0-56-amd64"
        );
    }
}
