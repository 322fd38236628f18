//! The start-up report: for each selector, one line saying what it resolved to (the socket
//! file, who listens on it and the name it was bound with when that differs from what the user
//! typed), and a warning for a path that is not a socket or a socket nobody listens on. Lines
//! are returned unescaped; the caller escapes them for the terminal.

use containerdsnoop_common::FileKey;

use super::{
    identity::dev_text,
    pattern::Selector,
    resolve::{Resolution, Target},
};

/// A socket bound to a selected file (from sock_diag): a listener, or a bound datagram socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The owning process, when a `/proc/*/fd` link names the socket.
    pub process: Option<(u32, String)>,
    /// The name passed to bind(2) (`sun_path` without its NUL).
    pub bound_name: Vec<u8>,
}

/// Who listens on a socket file: `None` when that cannot be known (sock_diag unavailable).
pub type Listeners<'a> = &'a dyn Fn(&FileKey) -> Option<Vec<Listener>>;

/// Most sockets named in one prefix line.
const MAX_NAMED: usize = 5;

fn identity(k: &FileKey) -> String {
    match k.generation_known {
        0 => format!("device {}, inode {}", dev_text(k.dev), k.ino),
        _ => format!(
            "device {}, inode {}, generation {}",
            dev_text(k.dev),
            k.ino,
            k.generation
        ),
    }
}

fn who(text: &str, listeners: &[Listener]) -> String {
    let mut parts = Vec::new();
    for l in listeners {
        let mut s = match &l.process {
            Some((pid, comm)) => format!("{comm} (pid {pid})"),
            None => "a process not found in /proc".to_string(),
        };
        let bound = String::from_utf8_lossy(&l.bound_name);
        if bound != text {
            s.push_str(&format!(", bound as '{bound}'"));
        }
        parts.push(s);
    }
    parts.join("; ")
}

/// The report lines for selector `sel` resolved as `res`. Warnings start with `warning: `.
pub fn lines(sel: &Selector, res: &Resolution, listeners: Listeners<'_>) -> Vec<String> {
    let mut out = resolution_lines(sel, res, listeners);
    out.extend(generationless_warning(sel, res));
    out
}

/// A warning when an identity of `sel` matches any generation (see `identity`): there, a
/// removed file's inode number given to a new socket selects it until the next rescan.
fn generationless_warning(sel: &Selector, res: &Resolution) -> Option<String> {
    let target = match &res.target {
        Some(Target::Socket(k)) => Some(k),
        _ => None,
    };
    let keys = target.into_iter().chain(res.dir.as_ref());
    let what = keys
        .filter(|k| k.generation_known == 0)
        .map(|k| format!("inode {} on device {}", k.ino, dev_text(k.dev)))
        .collect::<Vec<_>>();
    (!what.is_empty()).then(|| {
        format!(
            "warning: {}: the file system of {} does not tell this tracer which file an inode number belongs to (no file handle generation); if it is removed, a socket given the same inode number can be traced until the next check (250 ms)",
            sel.text(),
            what.join(" and ")
        )
    })
}

fn resolution_lines(sel: &Selector, res: &Resolution, listeners: Listeners<'_>) -> Vec<String> {
    let text = sel.text();
    match sel {
        Selector::Exact { dir, .. } => match &res.target {
            Some(Target::Socket(k)) => vec![match listeners(k) {
                Some(l) if !l.is_empty() => {
                    format!(
                        "{text}: socket file ({}); listening: {}",
                        identity(k),
                        who(text, &l)
                    )
                }
                Some(_) => format!(
                    "warning: {text}: socket file ({}), but nobody listens on it in this network \
                     namespace (a server that stopped?); traced when a server binds there again",
                    identity(k)
                ),
                None => format!("{text}: socket file ({})", identity(k)),
            }],
            Some(Target::NotSocket(_)) if res.link_target.is_some() => vec![format!(
                "{text}: a symlink to a socket that does not exist yet; traced from its first \
                 byte once a server binds it"
            )],
            Some(Target::NotSocket(kind)) => vec![format!(
                "warning: {text}: is {kind}, not a socket; nothing is traced there until a socket \
                 replaces it"
            )],
            Some(Target::Error(e)) => vec![format!("warning: {text}: cannot be checked ({e})")],
            Some(Target::Missing) | None if res.dir.is_some() => vec![format!(
                "{text}: does not exist yet; traced from its first byte once a server binds it"
            )],
            Some(Target::Missing) | None if res.awaited.is_some() => vec![format!(
                "{text}: does not exist yet, nor does its directory {}; traced from its first \
                 byte once a server binds it there",
                dir.display()
            )],
            Some(Target::Missing) | None => vec![format!(
                "{text}: does not exist yet, nor does its directory {} or that directory's \
                 parent; traced once they exist (checked every 250 ms)",
                dir.display()
            )],
        },
        Selector::Prefix { dir, prefix, .. } => {
            let names = match prefix.is_empty() {
                true => "sockets".to_string(),
                false => format!(
                    "sockets named {:?}...",
                    String::from_utf8_lossy(prefix).into_owned()
                ),
            };
            if res.dir.is_none() && res.awaited.is_some() {
                return vec![format!(
                    "{text}: directory {} does not exist yet; {names} in it are traced from \
                     their first byte once it is created",
                    dir.display()
                )];
            }
            if res.dir.is_none() {
                return vec![format!(
                    "{text}: directory {} does not exist yet, nor does its parent; {names} in \
                     it are traced once they exist (checked every 250 ms)",
                    dir.display()
                )];
            }
            let mut named = Vec::new();
            for (path, k) in res.sockets.iter().take(MAX_NAMED) {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                let file = file.unwrap_or_default();
                named.push(match listeners(k).unwrap_or_default().first() {
                    Some(Listener {
                        process: Some((pid, comm)),
                        ..
                    }) => format!("{file} ({comm} pid {pid})"),
                    _ => file,
                });
            }
            if res.sockets.len() > MAX_NAMED {
                named.push(format!("... {} more", res.sockets.len() - MAX_NAMED));
            }
            vec![format!(
                "{text}: {names} in directory {}, present or created later ({} now{}{})",
                dir.display(),
                res.sockets.len(),
                if named.is_empty() { "" } else { ": " },
                named.join(", ")
            )]
        }
        Selector::Abstract { .. } => vec![format!(
            "warning: {text}: abstract socket name: selected by name, not by a file's identity; whichever process in a network namespace binds this name is traced"
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::pattern::parse_selector;
    use std::path::PathBuf;

    const SOCK: FileKey = FileKey::exact(34, 5521, 9);
    const DIR: FileKey = FileKey::exact(34, 1, 9);

    fn sock(target: Target) -> Resolution {
        Resolution {
            dir: Some(DIR),
            target: Some(target),
            ..Resolution::default()
        }
    }

    fn python(bound: &str) -> Vec<Listener> {
        vec![Listener {
            process: Some((812, "python3".into())),
            bound_name: bound.as_bytes().to_vec(),
        }]
    }

    #[test]
    fn a_socket_bound_with_another_spelling_says_so() {
        let sel = parse_selector("/tmp/demo.sock").expect("selector");
        let l = lines(&sel, &sock(Target::Socket(SOCK)), &|_| {
            Some(python("///tmp/demo.sock"))
        });
        assert_eq!(
            l,
            vec![
                "/tmp/demo.sock: socket file (device 0:34, inode 5521, generation 9); listening: python3 \
                 (pid 812), bound as '///tmp/demo.sock'"
            ]
        );
        // The same spelling is not repeated.
        let l = lines(&sel, &sock(Target::Socket(SOCK)), &|_| {
            Some(python("/tmp/demo.sock"))
        });
        assert_eq!(
            l,
            vec![
                "/tmp/demo.sock: socket file (device 0:34, inode 5521, generation 9); listening: python3 (pid 812)"
            ]
        );
    }

    /// Abstract names and identities without a generation say what they cannot promise.
    #[test]
    fn abstract_and_generationless_selections_warn() {
        let abs = parse_selector("@abs").expect("selector");
        let l = lines(&abs, &Resolution::default(), &|_| None);
        assert!(
            l[0].starts_with("warning: @abs: abstract socket name: selected by name"),
            "{l:?}"
        );
        let sel = parse_selector("/ovl/demo.sock").expect("selector");
        let loose = Resolution {
            dir: Some(DIR),
            target: Some(Target::Socket(FileKey::any_generation(34, 5521))),
            ..Resolution::default()
        };
        let l = lines(&sel, &loose, &|_| None);
        assert_eq!(
            l[0],
            "/ovl/demo.sock: socket file (device 0:34, inode 5521)"
        );
        assert!(
            l[1].starts_with(
                "warning: /ovl/demo.sock: the file system of inode 5521 on device 0:34 does not"
            ),
            "{l:?}"
        );
        assert_eq!(l.len(), 2, "the directory has its generation: {l:?}");
        // With generations, no warning.
        assert_eq!(lines(&sel, &sock(Target::Socket(SOCK)), &|_| None).len(), 1);
    }

    #[test]
    fn warnings_for_what_cannot_be_traced() {
        let sel = parse_selector("/tmp/demo.sock").expect("selector");
        let nobody = lines(&sel, &sock(Target::Socket(SOCK)), &|_| Some(vec![]));
        assert!(
            nobody[0].starts_with(
                "warning: /tmp/demo.sock: socket file (device 0:34, inode 5521, generation 9), but nobody listens"
            ),
            "{nobody:?}"
        );
        let file = lines(&sel, &sock(Target::NotSocket("a regular file")), &|_| None);
        assert!(
            file[0].starts_with("warning: /tmp/demo.sock: is a regular file, not a socket"),
            "{file:?}"
        );
        let missing = lines(&sel, &sock(Target::Missing), &|_| None);
        assert!(
            missing[0]
                .starts_with("/tmp/demo.sock: does not exist yet; traced from its first byte")
        );
        let no_dir = Resolution {
            dir: None,
            target: Some(Target::Missing),
            ..Resolution::default()
        };
        let dangling = Resolution {
            link_target: Some((DIR, b"real.sock".to_vec())),
            ..sock(Target::NotSocket("a dangling symlink"))
        };
        let l = lines(&sel, &dangling, &|_| None);
        assert_eq!(
            l,
            vec![
                "/tmp/demo.sock: a symlink to a socket that does not exist yet; traced from its \
                 first byte once a server binds it"
            ]
        );
        let l = lines(&sel, &no_dir, &|_| None);
        assert!(l[0].contains("nor does its directory /tmp or"), "{l:?}");
        // sock_diag unavailable: no claim about listeners either way.
        let unknown = lines(&sel, &sock(Target::Socket(SOCK)), &|_| None);
        assert_eq!(
            unknown,
            vec!["/tmp/demo.sock: socket file (device 0:34, inode 5521, generation 9)"]
        );
    }

    #[test]
    fn prefix_lines_count_and_name_sockets() {
        let sel = parse_selector("/run/containerd/s/*").expect("selector");
        let sockets: Vec<(PathBuf, FileKey)> = (0..7)
            .map(|i| {
                (
                    PathBuf::from(format!("/run/containerd/s/{i:02}")),
                    FileKey::exact(34, 100 + i, 1),
                )
            })
            .collect();
        let res = Resolution {
            dir: Some(DIR),
            sockets,
            ..Resolution::default()
        };
        let l = lines(&sel, &res, &|k| {
            Some(if k.ino == 100 {
                python("/run/containerd/s/00")
            } else {
                vec![]
            })
        });
        assert_eq!(
            l,
            vec![
                "/run/containerd/s/*: sockets in directory /run/containerd/s, present or \
                 created later (7 now: 00 (python3 pid 812), 01, 02, 03, 04, ... 2 more)"
            ]
        );
        let missing = Resolution::default();
        let l = lines(
            &parse_selector("/run/x/shim-*").expect("sel"),
            &missing,
            &|_| None,
        );
        assert_eq!(
            l,
            vec![
                "/run/x/shim-*: directory /run/x does not exist yet, nor does its parent; \
                 sockets named \"shim-\"... in it are traced once they exist (checked every \
                 250 ms)"
            ]
        );
    }
}
