//! What a pattern is: the `SOCKET...` arguments (or the default runtime sockets) parsed into
//! [`Selector`]s, which select socket *files* by identity, not by how a server spelled the name
//! it bound, and the name patterns the kernel compares entries of selected directories (and
//! abstract names) with.
//!
//! Abstract names (`@name`) have no file, so they are selected by name by nature: any process
//! in the network namespace may bind a name, and whoever binds a selected name is traced.
//!
//! Pure: std only, no aya, no tokio, no root.

use std::path::{Path, PathBuf};

use containerdsnoop_common::{
    PATH_LEN, PATTERN_ABSTRACT, PATTERN_BASENAME, PATTERN_NONE, PathPattern, SUN_PATH_MAX,
};

/// The sockets of common container runtimes, traced when no `SOCKET` is given.
pub const DEFAULT_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock.ttrpc",
    "/run/containerd/s/*",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/k0s/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
    "/run/docker/containerd/containerd.sock",
];

#[derive(Debug, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    TooLong { pattern: String, max: usize },
    InnerStar(String),
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::Empty => write!(f, "empty socket path"),
            PatternError::TooLong { pattern, max } => {
                write!(f, "socket name in {pattern:?} is longer than {max} bytes")
            }
            PatternError::InnerStar(p) => {
                write!(
                    f,
                    "socket path {p:?}: `*` is only allowed at the end (prefix match)"
                )
            }
        }
    }
}

impl std::error::Error for PatternError {}

/// One `SOCKET` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `/run/x.sock`: the socket file this path resolves to (symlinks followed, through
    /// `/proc/PID/root` into other mount namespaces), and whatever socket is later created at it.
    Exact {
        text: String,
        path: PathBuf,
        /// The directory the last component is looked up in, and that component.
        dir: PathBuf,
        name: Vec<u8>,
    },
    /// `/run/containerd/s/*` or `/run/x/shim-*`: the socket files directly in `dir` whose names
    /// start with `prefix`, present or future.
    Prefix {
        text: String,
        dir: PathBuf,
        prefix: Vec<u8>,
    },
    /// `@name` or `@prefix*`: abstract sockets have no file and are compared by name.
    Abstract { text: String, pattern: PathPattern },
}

impl Selector {
    /// What the user typed.
    pub fn text(&self) -> &str {
        match self {
            Selector::Exact { text, .. }
            | Selector::Prefix { text, .. }
            | Selector::Abstract { text, .. } => text,
        }
    }

    /// The name pattern the kernel compares: the last component (or prefix) for entries of the
    /// selected directory, or the abstract name.
    pub fn kernel_pattern(&self) -> PathPattern {
        match self {
            Selector::Exact { name, .. } => name_pattern(name, true, PATTERN_BASENAME),
            Selector::Prefix { prefix, .. } => name_pattern(prefix, false, PATTERN_BASENAME),
            Selector::Abstract { pattern, .. } => *pattern,
        }
    }
}

pub(crate) fn name_pattern(bytes: &[u8], exact: bool, kind: u32) -> PathPattern {
    let mut pattern = PathPattern {
        bytes: [0; PATH_LEN],
        mask: [0; PATH_LEN],
        match_len: bytes.len() as u32,
        exact: u32::from(exact),
        // A path whose last component has no name ("/", "..") can only match by identity.
        kind: if exact && bytes.is_empty() {
            PATTERN_NONE
        } else {
            kind
        },
        entries: 0,
    };
    let n = bytes.len().min(PATH_LEN);
    pattern.bytes[..n].copy_from_slice(&bytes[..n]);
    pattern.mask[..n].fill(0xff);
    pattern
}

/// Splits `text` at its last `/`: the directory to look the name up in, and the name. `a//b`
/// and `a/b` name the same entry; a name of `.`/`..` (or none) is not a directory entry name.
fn split_last(text: &str) -> (PathBuf, Vec<u8>) {
    match text.rfind('/') {
        Some(0) => (PathBuf::from("/"), text.as_bytes()[1..].to_vec()),
        Some(i) => (PathBuf::from(&text[..i]), text.as_bytes()[i + 1..].to_vec()),
        None => (PathBuf::from("."), text.as_bytes().to_vec()),
    }
}

/// Parses `/path` (exact), `/dir/*` or `/dir/name*` (prefix), `@name` / `@name*` (abstract).
/// Relative paths are relative to the tracer's working directory.
pub fn parse_selector(text: &str) -> Result<Selector, PatternError> {
    if text.is_empty() || text == "@" {
        return Err(PatternError::Empty);
    }
    let (body, prefix) = match text.strip_suffix('*') {
        Some(b) => (b, true),
        None => (text, false),
    };
    if body.contains('*') {
        return Err(PatternError::InnerStar(text.to_string()));
    }
    if let Some(name) = body.strip_prefix('@') {
        let bytes: Vec<u8> = std::iter::once(0).chain(name.bytes()).collect();
        if bytes.len() > SUN_PATH_MAX {
            return Err(PatternError::TooLong {
                pattern: text.to_string(),
                max: SUN_PATH_MAX - 1,
            });
        }
        return Ok(Selector::Abstract {
            text: text.to_string(),
            pattern: name_pattern(&bytes, !prefix, PATTERN_ABSTRACT),
        });
    }
    let (dir, mut name) = split_last(body);
    if name == b"." || name == b".." {
        name.clear();
    }
    // A socket's name is at most what fits sun_path with its NUL, however it was bound.
    if name.len() > SUN_PATH_MAX - 1 {
        return Err(PatternError::TooLong {
            pattern: text.to_string(),
            max: SUN_PATH_MAX - 1,
        });
    }
    Ok(if prefix {
        Selector::Prefix {
            text: text.to_string(),
            dir,
            prefix: name,
        }
    } else {
        Selector::Exact {
            text: text.to_string(),
            path: PathBuf::from(text),
            dir,
            name,
        }
    })
}

/// The name rule of the kernel-side filter (`containerdsnoop-ebpf/src/socket.rs`), for user
/// space (late-join discovery of abstract sockets, prefix directory listings, tests).
pub fn matches(pattern: &PathPattern, name: &[u8]) -> bool {
    let len = name.len() as u32;
    if len < pattern.match_len || (pattern.exact != 0 && len != pattern.match_len) {
        return false;
    }
    let n = pattern.match_len as usize;
    name[..n]
        .iter()
        .zip(&pattern.bytes[..n])
        .zip(&pattern.mask[..n])
        .all(|((a, b), m)| (a ^ b) & m == 0)
}

/// Whether `path` is given through another process's root (`/proc/PID/root/...`), i.e. in
/// that process's mount namespace.
pub fn through_proc_root(path: &Path) -> Option<u32> {
    let mut parts = path.components().skip_while(|c| c.as_os_str() == "/");
    if parts.next()?.as_os_str() != "proc" {
        return None;
    }
    let pid = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    (parts.next()?.as_os_str() == "root").then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(s: &Selector) -> PathPattern {
        s.kernel_pattern()
    }

    #[test]
    fn exact_path_splits_into_directory_and_name() {
        let s = parse_selector("/run/containerd/containerd.sock").expect("selector");
        let Selector::Exact { dir, name, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(dir, Path::new("/run/containerd"));
        assert_eq!(name, b"containerd.sock");
        let p = kernel(&s);
        assert_eq!(p.kind, PATTERN_BASENAME);
        assert!(matches(&p, b"containerd.sock"));
        assert!(!matches(&p, b"containerd.sock.ttrpc"));
        assert!(!matches(&p, b"containerd.soc"));
    }

    #[test]
    fn spellings_split_to_the_same_name() {
        for (text, dir) in [
            ("///tmp/x.sock", "//tmp"),
            ("/tmp//x.sock", "/tmp/"),
            ("x.sock", "."),
            ("/x.sock", "/"),
        ] {
            let Selector::Exact { dir: d, name, .. } = parse_selector(text).expect(text) else {
                panic!("{text}")
            };
            assert_eq!(
                (d.as_path(), name.as_slice()),
                (Path::new(dir), &b"x.sock"[..])
            );
        }
        // No entry name: selected by identity only.
        for text in ["/tmp/..", "/tmp/.", "/tmp/"] {
            let s = parse_selector(text).expect(text);
            assert_eq!(kernel(&s).kind, PATTERN_NONE, "{text}");
        }
    }

    #[test]
    fn prefix_selects_names_in_a_directory() {
        let s = parse_selector("/run/containerd/s/*").expect("selector");
        assert_eq!(
            s,
            Selector::Prefix {
                text: "/run/containerd/s/*".into(),
                dir: "/run/containerd/s".into(),
                prefix: vec![],
            }
        );
        let p = kernel(&s);
        assert!(matches(&p, b"0123abcd"));
        let q = kernel(&parse_selector("/run/x/shim-*").expect("selector"));
        assert!(matches(&q, b"shim-1"));
        assert!(!matches(&q, b"other"));
    }

    #[test]
    fn abstract_names() {
        let p = kernel(&parse_selector("@containerd-shim").expect("pattern"));
        assert_eq!(p.kind, PATTERN_ABSTRACT);
        assert!(matches(&p, b"\0containerd-shim"));
        assert!(!matches(&p, b"\0containerd-shim2"));
        assert!(!matches(&p, b"containerd-shim"));
        let q = kernel(&parse_selector("@containerd-*").expect("pattern"));
        assert!(matches(&q, b"\0containerd-shim2"));
        assert!(!matches(&q, b"\0other"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(parse_selector(""), Err(PatternError::Empty));
        assert!(matches!(
            parse_selector("/a*b"),
            Err(PatternError::InnerStar(_))
        ));
        let long = format!("/{}", "x".repeat(120));
        assert!(matches!(
            parse_selector(&long),
            Err(PatternError::TooLong { .. })
        ));
        assert!(parse_selector(&format!("/{}", "x".repeat(107))).is_ok());
        assert!(parse_selector(&format!("/{}", "x".repeat(108))).is_err());
        // A long path is fine as long as its last component fits sun_path: it may be a
        // /proc/PID/root/... path to a socket bound with a short name.
        let deep = format!("/proc/1/root/{}/x.sock", "d".repeat(200));
        assert!(parse_selector(&deep).is_ok());
    }

    #[test]
    fn proc_root_paths() {
        assert_eq!(
            through_proc_root(Path::new("/proc/42/root/run/x.sock")),
            Some(42)
        );
        assert_eq!(through_proc_root(Path::new("/proc/self/root/x")), None);
        assert_eq!(through_proc_root(Path::new("/run/x.sock")), None);
    }

    #[test]
    fn defaults_parse() {
        for s in DEFAULT_SOCKETS {
            parse_selector(s).expect(s);
        }
        assert!(DEFAULT_SOCKETS.len() <= containerdsnoop_common::MAX_PATTERNS as usize);
    }
}
