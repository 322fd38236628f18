//! Socket path patterns: what the user selects (`SOCKET...` arguments, or the default runtime
//! sockets) turned into the byte patterns the kernel-side filter compares.

use containerdsnoop_common::{PATH_LEN, PathPattern, SUN_PATH_MAX};

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
                write!(f, "socket path {pattern:?} is longer than {max} bytes")
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

/// Parses `/path` (exact), `/dir/*` (prefix), `@name` / `@name*` (abstract).
pub fn parse_pattern(text: &str) -> Result<PathPattern, PatternError> {
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
    let mut bytes: Vec<u8> = match body.strip_prefix('@') {
        Some(name) => std::iter::once(0).chain(name.bytes()).collect(),
        None => body.bytes().collect(),
    };
    let is_abstract = bytes.first() == Some(&0);
    // A pathname socket's sun_path carries its terminating NUL (unix_mkname_bsd), so an exact
    // match compares it too; abstract names have no terminator and match by length instead.
    if !prefix && !is_abstract {
        bytes.push(0);
    }
    if bytes.len() > SUN_PATH_MAX {
        return Err(PatternError::TooLong {
            pattern: text.to_string(),
            max: SUN_PATH_MAX - 1,
        });
    }
    let mut pattern = PathPattern {
        bytes: [0; PATH_LEN],
        mask: [0; PATH_LEN],
        match_len: bytes.len() as u32,
        exact: u32::from(!prefix),
    };
    pattern.bytes[..bytes.len()].copy_from_slice(&bytes);
    pattern.mask[..bytes.len()].fill(0xff);
    Ok(pattern)
}

/// The same match rule as the kernel side (`containerdsnoop-ebpf/src/socket.rs`), used by
/// user-space paths (late-join discovery, offline filtering) and to test the patterns.
pub fn matches(pattern: &PathPattern, sun_path: &[u8]) -> bool {
    let sun_len = sun_path.len() as u32;
    if sun_len < pattern.match_len || (pattern.exact != 0 && sun_len != pattern.match_len) {
        return false;
    }
    let n = pattern.match_len as usize;
    sun_path[..n]
        .iter()
        .zip(&pattern.bytes[..n])
        .zip(&pattern.mask[..n])
        .all(|((a, b), m)| (a ^ b) & m == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sun_path` bytes as the kernel stores them for a pathname socket (with NUL).
    fn pathname(p: &str) -> Vec<u8> {
        let mut v = p.as_bytes().to_vec();
        v.push(0);
        v
    }

    #[test]
    fn exact_path() {
        let p = parse_pattern("/run/containerd/containerd.sock").expect("pattern");
        assert!(matches(&p, &pathname("/run/containerd/containerd.sock")));
        assert!(!matches(
            &p,
            &pathname("/run/containerd/containerd.sock.ttrpc")
        ));
        assert!(!matches(&p, &pathname("/run/containerd/containerd.soc")));
        assert!(!matches(&p, &pathname("/run/containerd/containerd.sockx")));
    }

    #[test]
    fn prefix_path() {
        let p = parse_pattern("/run/containerd/s/*").expect("pattern");
        assert!(matches(&p, &pathname("/run/containerd/s/0123abcd")));
        assert!(!matches(&p, &pathname("/run/containerd/containerd.sock")));
        assert!(!matches(&p, &pathname("/run/containerd/s")));
    }

    #[test]
    fn abstract_names() {
        let p = parse_pattern("@containerd-shim").expect("pattern");
        assert!(matches(&p, b"\0containerd-shim"));
        assert!(!matches(&p, b"\0containerd-shim2"));
        assert!(!matches(&p, &pathname("containerd-shim")));
        let q = parse_pattern("@containerd-*").expect("pattern");
        assert!(matches(&q, b"\0containerd-shim2"));
        assert!(!matches(&q, b"\0other"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(parse_pattern(""), Err(PatternError::Empty));
        assert!(matches!(
            parse_pattern("/a*b"),
            Err(PatternError::InnerStar(_))
        ));
        let long = format!("/{}", "x".repeat(120));
        assert!(matches!(
            parse_pattern(&long),
            Err(PatternError::TooLong { .. })
        ));
        // 106 characters + NUL fit in sun_path; 107 + NUL do not.
        assert!(parse_pattern(&format!("/{}", "x".repeat(105))).is_ok());
        assert!(parse_pattern(&format!("/{}", "x".repeat(107))).is_err());
    }

    #[test]
    fn defaults_parse() {
        for s in DEFAULT_SOCKETS {
            parse_pattern(s).expect(s);
        }
        assert!(DEFAULT_SOCKETS.len() <= containerdsnoop_common::MAX_PATTERNS as usize);
    }
}
