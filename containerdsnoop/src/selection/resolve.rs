//! What the selectors name on the file system right now: each exact path resolves (symlinks
//! followed, through `/proc/PID/root` into other mount namespaces) to a socket file, each path's
//! directory is identified too, so that a socket re-created there is selected by name before it
//! is seen here, and a prefix lists the sockets its directory holds.

use std::{
    fs, io,
    os::unix::fs::FileTypeExt as _,
    path::{Path, PathBuf},
};

use containerdsnoop_common::FileKey;

use super::{
    identity::{key_at, key_on},
    pattern::{Selector, matches, through_proc_root},
};

/// Most entries of a prefix directory listed for reports and discovery (the kernel selects
/// every entry by name whatever their number).
pub const MAX_LISTED: usize = 4096;

/// What a path names now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Missing,
    /// Exists but is not a socket ("directory", "regular file", ...).
    NotSocket(&'static str),
    Socket(FileKey),
    /// stat(2) failed otherwise (permission, a /proc/PID that is gone, ...).
    Error(String),
}

/// One selector resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The directory whose entries are compared by name (`None`: missing or not a directory).
    pub dir: Option<FileKey>,
    /// Exact paths: the file itself.
    pub target: Option<Target>,
    /// Prefix patterns: the matching socket files in the directory now (path, identity).
    pub sockets: Vec<(PathBuf, FileKey)>,
    /// Exact paths whose last component is a symlink: the directory and name the link chain
    /// ends at (the socket's own directory entry), so that a socket re-created there is
    /// selected from its first byte too.
    pub link_target: Option<(FileKey, Vec<u8>)>,
    /// The path or its directory could not be checked (permission denied, as through another
    /// process's `/proc/PID/root` once the tracer has dropped its capabilities): what it named
    /// before stays selected, since it is not known to be gone.
    pub unchecked: bool,
    /// The directory (an exact path's, or a prefix's) does not exist yet, but its parent does:
    /// the parent's identity and the directory's name, so that a socket bound there as soon as
    /// the directory is created is selected from its first byte.
    pub awaited: Option<(FileKey, Vec<u8>)>,
}

fn kind_name(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a dangling symlink"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a socket"
    }
}

/// What `path` names, following symlinks.
pub fn target_of(path: &Path) -> Target {
    match fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => match key_at(path, &m) {
            Some(k) => Target::Socket(k),
            // Gone or replaced while looked at: the next rescan sees what is there.
            None => Target::Missing,
        },
        Ok(m) => Target::NotSocket(kind_name(m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(path) {
            Ok(_) => Target::NotSocket("a dangling symlink"),
            Err(_) => Target::Missing,
        },
        Err(e) => Target::Error(e.to_string()),
    }
}

/// The identity of directory `dir`, and whether its absence is certain (`false`: stat failed
/// otherwise than "no such file" or "not a directory").
fn dir_key(dir: &Path) -> (Option<FileKey>, bool) {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => (key_at(dir, &m), true),
        Ok(_) => (None, true),
        Err(e) => (
            None,
            matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ),
        ),
    }
}

/// The parent's identity and the name of `dir`, which does not exist.
fn awaited(dir: &Path) -> Option<(FileKey, Vec<u8>)> {
    let name = dir.file_name()?.as_encoded_bytes().to_vec();
    Some((dir_key(dir.parent()?).0?, name))
}

/// Most symlinks followed from a selected path (the kernel's own limit is 40).
const MAX_LINKS: usize = 8;

/// Where the symlink chain at `path` ends: the identity of the last link target's directory
/// and its name. `None` when `path` is not a symlink. Absolute targets of a path given as
/// `/proc/PID/root/...` are resolved under that root, as the process would.
pub fn link_target(path: &Path) -> Option<(FileKey, Vec<u8>)> {
    let root = through_proc_root(path).map(|pid| PathBuf::from(format!("/proc/{pid}/root")));
    let mut current = path.to_path_buf();
    let mut followed = 0;
    // The end of the chain need not exist: a socket may be bound there later.
    while fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
        if followed == MAX_LINKS {
            return None;
        }
        let target = fs::read_link(&current).ok()?;
        current = match (target.is_absolute(), &root) {
            (true, Some(root)) => root.join(target.strip_prefix("/").ok()?),
            (true, None) => target,
            (false, _) => current.parent()?.join(target),
        };
        followed += 1;
    }
    if followed == 0 {
        return None;
    }
    let name = current.file_name()?.as_encoded_bytes().to_vec();
    let dir = current.parent()?;
    Some((dir_key(dir).0?, name))
}

/// Resolves one selector against the file system, listing the sockets of prefix directories.
pub fn resolve(selector: &Selector) -> Resolution {
    resolve_with(selector, true)
}

/// [`resolve`] without listing prefix directories: what a periodic rescan needs (the kernel
/// selects their entries by name; only the directory's identity can change).
pub fn resolve_quick(selector: &Selector) -> Resolution {
    resolve_with(selector, false)
}

fn resolve_with(selector: &Selector, list: bool) -> Resolution {
    match selector {
        Selector::Exact { path, dir, .. } => {
            let (dir_key, dir_certain) = dir_key(dir);
            let target = target_of(path);
            Resolution {
                awaited: dir_key.is_none().then(|| awaited(dir)).flatten(),
                dir: dir_key,
                unchecked: !dir_certain || matches!(target, Target::Error(_)),
                target: Some(target),
                sockets: Vec::new(),
                link_target: link_target(path),
            }
        }
        Selector::Prefix { dir, .. } => {
            let pattern = selector.kernel_pattern();
            let mut sockets = Vec::new();
            let (dir_key, dir_certain) = dir_key(dir);
            if list
                && let Some(dir_key) = dir_key
                && let Ok(entries) = fs::read_dir(dir)
            {
                for entry in entries.flatten().take(MAX_LISTED) {
                    let name = entry.file_name();
                    if !matches(&pattern, name.as_encoded_bytes()) {
                        continue;
                    }
                    // Entries are compared by their own name in the kernel: no symlinks here.
                    // An entry is on its directory's file system (mount points aside).
                    if let Ok(m) = fs::symlink_metadata(entry.path())
                        && m.file_type().is_socket()
                        && let Some(k) = key_on(&entry.path(), &m, dir_key.dev)
                    {
                        sockets.push((entry.path(), k));
                    }
                }
            }
            sockets.sort();
            Resolution {
                dir: dir_key,
                target: None,
                sockets,
                link_target: None,
                unchecked: !dir_certain,
                awaited: dir_key.is_none().then(|| awaited(dir)).flatten(),
            }
        }
        Selector::Abstract { .. } => Resolution::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::pattern::parse_selector;
    use std::os::unix::{fs::MetadataExt as _, net::UnixListener};

    #[test]
    fn spellings_resolve_to_the_same_socket() {
        let dir = std::env::temp_dir().join(format!("csn-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).expect("symlink");
        let sock = dir.join("real/x.sock");
        let _listener = UnixListener::bind(&sock).expect("bind");
        let real = dir.join("real").display().to_string();
        let link = dir.join("link").display().to_string();
        let spellings = [
            format!("{real}/x.sock"),
            format!("/{real}/x.sock"),
            format!("{real}//x.sock"),
            format!("{link}/x.sock"),
            format!("{real}/../real/x.sock"),
            format!("/proc/{}/root{real}/x.sock", std::process::id()),
        ];
        let first = resolve(&parse_selector(&spellings[0]).expect("selector"));
        let Some(Target::Socket(k)) = first.target else {
            panic!("{first:?}")
        };
        let m = fs::metadata(&sock).expect("stat");
        assert_eq!(Some(k), key_at(&sock, &m));
        assert_eq!(k.ino, m.ino());
        for text in &spellings {
            let r = resolve(&parse_selector(text).expect("selector"));
            assert_eq!(r, first, "{text}");
        }
        // What is not a socket says what it is.
        fs::write(dir.join("file"), b"x").expect("write");
        let t = |p: &str| resolve(&parse_selector(p).expect(p)).target;
        assert_eq!(
            t(&format!("{}/file", dir.display())),
            Some(Target::NotSocket("a regular file"))
        );
        assert_eq!(t(&real), Some(Target::NotSocket("a directory")));
        assert_eq!(t(&format!("{real}/nothing")), Some(Target::Missing));
        // A prefix lists the sockets in the directory, not other files.
        fs::write(dir.join("real/x.txt"), b"x").expect("write");
        let p = resolve(&parse_selector(&format!("{real}/x*")).expect("selector"));
        assert_eq!(p.sockets, vec![(sock.clone(), k)]);
        assert_eq!(p.dir, first.dir);
        let quick = resolve_quick(&parse_selector(&format!("{real}/x*")).expect("selector"));
        assert_eq!((quick.dir, quick.sockets.len()), (first.dir, 0));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn symlink_chains_end_at_the_sockets_entry() {
        let dir = std::env::temp_dir().join(format!("csn-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("real/s.sock", dir.join("one")).expect("symlink");
        std::os::unix::fs::symlink(dir.join("one"), dir.join("two")).expect("symlink");
        let real = key_at(
            &dir.join("real"),
            &fs::metadata(dir.join("real")).expect("stat"),
        )
        .expect("key");
        // Dangling (the socket does not exist yet) is fine: its entry is what is selected.
        for link in ["one", "two"] {
            assert_eq!(
                link_target(&dir.join(link)),
                Some((real, b"s.sock".to_vec())),
                "{link}"
            );
        }
        assert_eq!(link_target(&dir.join("real")), None, "not a symlink");
        let me = std::process::id();
        let through = PathBuf::from(format!("/proc/{me}/root{}", dir.join("two").display()));
        assert_eq!(link_target(&through), Some((real, b"s.sock".to_vec())));
        let _ = fs::remove_dir_all(&dir);
    }
}
