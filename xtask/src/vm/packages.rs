//! Kernels and busybox from Debian's packages: `apt-get download` into the cache, then only the
//! files we boot with are unpacked (`/boot/vmlinuz-*`, `/boot/config-*`, `bin/busybox`). A
//! package already unpacked in the cache is not fetched again. Kernels of other Debian releases
//! (bullseye's 5.10, sid's 7.2) come through the private apt configuration of `crate::apt`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

pub struct KernelImage {
    /// What the reports call it: "6.1", "6.12".
    pub label: String,
    /// The Debian package it came from, e.g. linux-image-6.12.117+deb12-amd64.
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// Orders the packages of one kernel series: None for names outside it.
type SeriesOrder = fn(&str) -> Option<u64>;

/// Where a series' packages are listed: the machine's own apt (bookworm) or the private one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lists {
    System,
    Private,
}

/// Debian package names of each kernel series, and the number that orders releases in it.
#[cfg(test)]
fn series_pattern(label: &str) -> anyhow::Result<(&'static str, SeriesOrder)> {
    series(label).map(|(p, o, _)| (p, o))
}

fn series(label: &str) -> anyhow::Result<(&'static str, SeriesOrder, Lists)> {
    // linux-image-6.1.0-<ABI>-amd64 (bookworm) and linux-image-6.12.<N>+deb<R>-amd64
    // (bookworm's 6.12 series); the signed images boot under QEMU like the unsigned ones.
    fn abi_6_1(name: &str) -> Option<u64> {
        name.strip_prefix("linux-image-6.1.0-")?
            .strip_suffix("-amd64")?
            .parse()
            .ok()
    }
    fn rel_6_12(name: &str) -> Option<u64> {
        let rest = name
            .strip_prefix("linux-image-6.12.")?
            .strip_suffix("-amd64")?;
        let (n, deb) = rest.split_once("+deb")?;
        deb.parse::<u64>().ok()?;
        n.parse().ok()
    }
    // linux-image-5.10.0-<ABI>-amd64 (bullseye) and, for sid's 7.2, linux-binary-7.2.<N>+deb<R>-amd64:
    // from 7.x Debian's linux-image-<ver> is an empty package depending on linux-binary-<ver>
    // (the kernel image, in /usr/lib/modules/<ver>/vmlinuz) and linux-modules-<ver>.
    fn abi_5_10(name: &str) -> Option<u64> {
        name.strip_prefix("linux-image-5.10.0-")?
            .strip_suffix("-amd64")?
            .parse()
            .ok()
    }
    fn rel_7_2(name: &str) -> Option<u64> {
        let rest = name
            .strip_prefix("linux-binary-7.2.")?
            .strip_suffix("-amd64")?;
        let (n, deb) = rest.split_once("+deb")?;
        deb.parse::<u64>().ok()?;
        n.parse().ok()
    }
    match label {
        "5.10" => Ok(("linux-image-5.10.0-", abi_5_10, Lists::Private)),
        "6.1" => Ok(("linux-image-6.1.0-", abi_6_1, Lists::System)),
        "6.12" => Ok(("linux-image-6.12.", rel_6_12, Lists::System)),
        "7.2" => Ok(("linux-binary-7.2.", rel_7_2, Lists::Private)),
        _ => bail!("no Debian package series known for kernel {label}"),
    }
}

/// The newest Debian kernel package of the series, downloaded and unpacked into the cache.
pub fn kernel(cache: &Path, label: &str) -> anyhow::Result<KernelImage> {
    let (prefix, order, lists) = series(label)?;
    let dir = cache.join("kernels");
    fs::create_dir_all(&dir)?;
    let private = match lists {
        Lists::Private => match crate::apt::Apt::open(&crate::apt::default_dir()) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("vm-test: private apt lists unavailable: {e:#}");
                None
            }
        },
        Lists::System => None,
    };
    let names = match (&private, lists) {
        (Some(apt), _) => apt.pkgnames(prefix),
        (None, Lists::System) => crate::apt::pkgnames(Command::new("apt-cache"), prefix),
        (None, Lists::Private) => Vec::new(),
    };
    let mut candidates: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|n| order(&n).map(|k| (k, n)))
        .collect();
    candidates.sort();
    let mut tried = Vec::new();
    for (_, name) in candidates.iter().rev() {
        let unpacked = dir.join(name);
        if let Some(image) = unpacked_kernel(label, name, &unpacked) {
            return Ok(image);
        }
        // Only the image: the packages that hold modules too are large.
        let members: &[&str] = if name.starts_with("linux-binary-") {
            &["./boot", "./usr/lib/modules"]
        } else {
            &["./boot"]
        };
        match download_and_unpack(private.as_ref(), &dir, name, &unpacked, members) {
            Ok(()) => {
                if let Some(image) = unpacked_kernel(label, name, &unpacked) {
                    return Ok(image);
                }
                tried.push(format!("{name}: no /boot/vmlinuz-* in the package"));
            }
            Err(e) => tried.push(format!("{name}: {e:#}")),
        }
        // The newest name may exist in the lists without a downloadable candidate; try the next.
        if tried.len() >= 3 {
            break;
        }
    }
    // No package lists (apt-get update never ran) or no network: use what the cache has.
    let mut cached: Vec<(u64, String)> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| order(&n).map(|k| (k, n)))
        .collect();
    cached.sort();
    if let Some((_, name)) = cached.last()
        && let Some(image) = unpacked_kernel(label, name, &dir.join(name))
    {
        eprintln!("vm-test: using cached {name} (could not fetch a newer one)");
        return Ok(image);
    }
    bail!(
        "no Debian kernel package for {label} could be fetched ({}); run `apt-get update` first",
        if tried.is_empty() {
            format!("apt-cache knows no {prefix}* package")
        } else {
            tried.join("; ")
        }
    )
}

/// Downloads package `name` of kernel series `label` (from the lists that series comes from)
/// and unpacks its `members` into `dest`: what `super::modules` takes modules from.
pub(super) fn unpack_series_package(
    cache: &Path,
    label: &str,
    name: &str,
    dest: &Path,
    members: &[&str],
) -> anyhow::Result<()> {
    let (_, _, lists) = series(label)?;
    let private = match lists {
        Lists::Private => Some(crate::apt::Apt::open(&crate::apt::default_dir())?),
        Lists::System => None,
    };
    download_and_unpack(
        private.as_ref(),
        &cache.join("kernels"),
        name,
        dest,
        members,
    )
}

/// `/boot/vmlinuz-<ver>`, or `/usr/lib/modules/<ver>/vmlinuz` (linux-binary packages).
fn unpacked_kernel(label: &str, package: &str, dir: &Path) -> Option<KernelImage> {
    let in_boot = || {
        fs::read_dir(dir.join("boot"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
    };
    let in_modules = || {
        fs::read_dir(dir.join("usr/lib/modules"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("vmlinuz"))
            .find(|p| p.is_file())
    };
    let vmlinuz = in_boot().or_else(in_modules)?;
    Some(KernelImage {
        label: label.to_string(),
        package: package.to_string(),
        vmlinuz,
    })
}

/// Debian's statically linked busybox (the host's busybox may be a dynamic build).
pub fn busybox(cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join("busybox-static");
    let bin = dir.join("bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    download_and_unpack(
        None,
        cache,
        "busybox-static",
        &dir,
        &["./bin/busybox", "./usr/bin/busybox"],
    )
    .context("fetching busybox-static (run `apt-get update` first?)")?;
    for p in [dir.join("bin/busybox"), dir.join("usr/bin/busybox")] {
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("busybox-static has no bin/busybox")
}

/// `apt-get download NAME` (with `apt`'s private lists if given) in `dl_dir`, then extracts
/// `members` of the .deb into `dest`.
fn download_and_unpack(
    apt: Option<&crate::apt::Apt>,
    dl_dir: &Path,
    name: &str,
    dest: &Path,
    members: &[&str],
) -> anyhow::Result<()> {
    let debs = dl_dir.join("debs");
    fs::create_dir_all(&debs)?;
    let deb = match find_deb(&debs, name) {
        Some(d) => d,
        None => {
            eprintln!("vm-test: apt-get download {name}");
            let mut cmd = match apt {
                Some(a) => a.command("apt-get"),
                None => Command::new("apt-get"),
            };
            let out = cmd
                .args(["download", "-q", name])
                .current_dir(&debs)
                .output()
                .context("running apt-get download")?;
            if !out.status.success() {
                bail!(
                    "apt-get download {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            find_deb(&debs, name).with_context(|| format!("apt-get left no {name}_*.deb"))?
        }
    };
    // Unpack into a temporary folder first so that an interrupted run leaves no half package.
    let tmp = dest.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"deb="$1"; dest="$2"; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" --wildcards "$@" 2>/dev/null || true"#)
        .arg("sh")
        .arg(&deb)
        .arg(&tmp)
        .args(members.iter().map(|m| format!("{m}*")))
        .status()
        .context("running dpkg-deb | tar")?;
    if !status.success() {
        bail!("unpacking {} failed ({status})", deb.display());
    }
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest)?;
    // The unpacked folder is the cache; the .deb (mostly modules we never load) is not kept.
    let _ = fs::remove_file(&deb);
    Ok(())
}

fn find_deb(dir: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}_");
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_package_names() {
        let (_, o) = series_pattern("6.1").unwrap();
        assert_eq!(o("linux-image-6.1.0-56-amd64"), Some(56));
        assert_eq!(o("linux-image-6.1.0-56-amd64-dbg"), None);
        assert_eq!(o("linux-image-6.1.0-56-cloud-amd64"), None);
        let (_, o) = series_pattern("6.12").unwrap();
        assert_eq!(o("linux-image-6.12.117+deb12-amd64"), Some(117));
        assert_eq!(o("linux-image-6.12-amd64"), None);
        assert_eq!(o("linux-image-6.12.117+deb12-amd64-unsigned"), None);
        let (_, o) = series_pattern("5.10").unwrap();
        assert_eq!(o("linux-image-5.10.0-32-amd64"), Some(32));
        assert_eq!(o("linux-image-5.10.0-32-rt-amd64"), None);
        let (_, o) = series_pattern("7.2").unwrap();
        assert_eq!(o("linux-binary-7.2.13+deb14-amd64"), Some(13));
        assert_eq!(o("linux-image-7.2.13+deb14-amd64"), None);
        assert_eq!(o("linux-binary-7.2.13+deb14-cloud-amd64"), None);
        assert_eq!(o("linux-binary-7.2.13+deb14-rt-amd64"), None);
    }
}
