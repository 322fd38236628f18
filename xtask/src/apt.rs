//! A private apt configuration for Debian releases other than the machine's own (bullseye,
//! trixie, sid): its own source list, package lists and cache under the target directory, so
//! `apt-get download` can fetch packages of those releases without touching the system's apt
//! state or installing anything. The mirror is the one the machine already uses (the `URIs:`
//! value of `/etc/apt/sources.list.d/debian.sources`, or the first `deb` line of
//! `/etc/apt/sources.list`), read at run time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};

/// The shared private configuration: `<target dir>/debian-apt` (runtimes and kernels).
pub fn default_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debian-apt")
}

/// The releases the private configuration lists.
pub const SUITES: [&str; 3] = ["bullseye", "trixie", "sid"];
/// Package lists younger than this are not fetched again.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The private apt state, in `<dir>/{sources.list,lists,cache}`.
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    /// The configuration in `dir` (created if needed), with its package lists fetched unless
    /// they are recent. Without a mirror or network, lists already there are used as they are.
    pub fn open(dir: &Path) -> anyhow::Result<Apt> {
        let apt = Apt {
            dir: dir.to_path_buf(),
        };
        fs::create_dir_all(apt.dir.join("lists/partial"))?;
        fs::create_dir_all(apt.dir.join("cache/archives/partial"))?;
        let uri = mirror_uri()?;
        let list: String = SUITES
            .iter()
            .map(|s| {
                format!(
                    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {s} main\n"
                )
            })
            .collect();
        let list_path = apt.dir.join("sources.list");
        let changed = fs::read_to_string(&list_path).ok().as_deref() != Some(list.as_str());
        if changed {
            fs::write(&list_path, &list)?;
        }
        if changed || !apt.lists_fresh() {
            eprintln!(
                "xtask: apt-get update ({}) into {}",
                SUITES.join(", "),
                apt.dir.display()
            );
            let out = apt
                .command("apt-get")
                .args(["update", "-q"])
                .stdout(Stdio::null())
                .output()
                .context("running apt-get update")?;
            if out.status.success() {
                fs::write(apt.dir.join("updated"), "")?;
            } else if apt.has_lists() {
                eprintln!(
                    "xtask: apt-get update failed, using the lists already there: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            } else {
                bail!(
                    "apt-get update (private lists) failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(apt)
    }

    /// `apt-get`/`apt-cache` with the private configuration.
    pub fn command(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut c = Command::new(program);
        c.arg(format!(
            "-oDir::Etc::sourcelist={}",
            d.join("sources.list").display()
        ))
        .arg("-oDir::Etc::sourceparts=-")
        .arg(format!("-oDir::State::Lists={}", d.join("lists").display()))
        .arg(format!("-oDir::Cache={}", d.join("cache").display()))
        // Only the Packages indexes: no translations, no AppStream metadata.
        .arg("-oAcquire::Languages=none")
        .arg("-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
        .arg("-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false")
        .arg("-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false")
        .arg("-oAPT::Sandbox::User=root")
        .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// The Packages indexes fetched (apt may keep them compressed: `..._Packages.lz4`).
    fn packages_indexes(&self) -> usize {
        fs::read_dir(self.dir.join("lists"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
            .count()
    }

    fn has_lists(&self) -> bool {
        self.packages_indexes() >= SUITES.len()
    }

    /// Lists are there and the last successful update (the `updated` stamp) is recent.
    fn lists_fresh(&self) -> bool {
        self.has_lists()
            && fs::metadata(self.dir.join("updated"))
                .and_then(|m| m.modified())
                .is_ok_and(|t: SystemTime| t.elapsed().is_ok_and(|age| age < LISTS_MAX_AGE))
    }

    /// Package names starting with `prefix` in any listed release.
    pub fn pkgnames(&self, prefix: &str) -> Vec<String> {
        pkgnames(self.command("apt-cache"), prefix)
    }

    /// The version `apt-get download NAME/SUITE` would fetch.
    pub fn version_in(&self, name: &str, suite: &str) -> anyhow::Result<String> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", &format!("{name}/{suite}")])
            .stderr(Stdio::null())
            .output()
            .context("running apt-cache show")?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
            .with_context(|| format!("{suite} has no package {name} in the private lists"))
    }

    /// `apt-get download SPEC` (`name`, `name/suite` or `name=version`) into `dir`; returns
    /// the .deb's path.
    pub fn download(&self, spec: &str, dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        let name = spec.split(['/', '=']).next().unwrap_or(spec);
        let before = debs_of(dir, name);
        eprintln!("xtask: apt-get download {spec}");
        let out = self
            .command("apt-get")
            .args(["download", "-q", spec])
            .current_dir(dir)
            .output()
            .context("running apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download {spec} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let after = debs_of(dir, name);
        after
            .iter()
            .find(|p| !before.contains(p))
            .or(after.first())
            .cloned()
            .with_context(|| format!("apt-get download {spec} left no {name}_*.deb"))
    }
}

fn debs_of(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}_");
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect()
}

/// The Debian mirror this machine uses (never written into the repository).
fn mirror_uri() -> anyhow::Result<String> {
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        && let Some(uri) = uri_from_deb822(&text)
    {
        return Ok(uri);
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list")
        && let Some(uri) = uri_from_one_line(&text)
    {
        return Ok(uri);
    }
    bail!(
        "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    )
}

/// The first `URIs:` value of a deb822 sources file whose suites are not the security ones.
fn uri_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let suites = field("Suites").unwrap_or_default();
        if suites.contains("security") {
            return None;
        }
        field("URIs")?.split_whitespace().next().map(str::to_string)
    })
}

/// The URI of the first `deb` line of a one-line-style sources.list.
fn uri_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut w = words.next()?;
        if w.starts_with('[') {
            while !w.ends_with(']') {
                w = words.next()?;
            }
            w = words.next()?;
        }
        (!l.contains("security")).then(|| w.to_string())
    })
}

/// Unpacks the members of `deb` that start with one of `members` (e.g. `./usr/bin/`) into
/// `dest`, through a temporary folder so that an interrupted run leaves no half package.
pub fn unpack(deb: &Path, dest: &Path, members: &[&str]) -> anyhow::Result<()> {
    let tmp = dest.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"deb="$1"; dest="$2"; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" --wildcards "$@" 2>/dev/null || true"#)
        .arg("sh")
        .arg(deb)
        .arg(&tmp)
        .args(members.iter().map(|m| format!("{m}*")))
        .status()
        .context("running dpkg-deb | tar")?;
    if !status.success() {
        bail!("unpacking {} failed ({status})", deb.display());
    }
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest)?;
    Ok(())
}

/// Package names starting with `prefix`, as `apt_cache` (the system's or a private apt-cache
/// command) lists them; none when it cannot run.
pub fn pkgnames(mut apt_cache: Command, prefix: &str) -> Vec<String> {
    let Ok(out) = apt_cache
        .args(["pkgnames", prefix])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_uri() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            uri_from_deb822(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let sec_first = "Types: deb\nURIs: http://m/debian-security\nSuites: bookworm-security\n\n\
                         Types: deb\nURIs: http://m/debian\nSuites: bookworm\n";
        assert_eq!(
            uri_from_deb822(sec_first).as_deref(),
            Some("http://m/debian")
        );
        let one_line =
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main\n";
        assert_eq!(
            uri_from_one_line(one_line).as_deref(),
            Some("http://m/debian")
        );
        assert_eq!(
            uri_from_one_line("deb-src http://m/debian bookworm main\n"),
            None
        );
    }
}
