//! The one-line notices a rescan prints: a selected path that appeared, was replaced or
//! disappeared, and an identity that stopped selecting anything because its file is gone.
//! Returned unescaped; the caller escapes them for the terminal.

use containerdsnoop_common::FileKey;

use super::{
    identity::dev_text,
    pattern::Selector,
    resolve::{Resolution, Target},
};

/// The notice for an identity removed from the kernel: `what` (a socket file or directory) that
/// `text` named is gone or replaced, so a file that is given its inode number next selects
/// nothing.
pub fn removed(text: &str, what: &str, k: &FileKey) -> String {
    format!(
        "{text}: no longer selects {what} inode {} on device {} (gone or replaced); connections already open on it are still traced",
        k.ino,
        dev_text(k.dev)
    )
}

/// One-line notices for what changed between two resolutions of `selector`.
pub fn changes(selector: &Selector, before: &Resolution, now: &Resolution) -> Vec<String> {
    let text = selector.text();
    let mut out = Vec::new();
    match selector {
        Selector::Exact { .. } => match (&before.target, &now.target) {
            (Some(Target::Socket(a)), Some(Target::Socket(b))) if a != b => out.push(format!(
                "{text} was replaced: now socket inode {} (was {}{}); connections to the old \
                 socket are still traced",
                b.ino,
                a.ino,
                if a.ino == b.ino {
                    ", the same number of another file"
                } else {
                    ""
                }
            )),
            (Some(Target::Socket(a)), Some(Target::Error(e))) => out.push(format!(
                "{text} cannot be checked now ({e}); socket inode {} stays selected until it \
                 can be checked again",
                a.ino
            )),
            (Some(Target::Socket(a)), Some(t)) if !matches!(t, Target::Socket(_)) => {
                out.push(format!(
                    "{text} disappeared (socket inode {} {}); its open connections are still \
                     traced, and a socket created there again is traced from its first byte",
                    a.ino,
                    match t {
                        Target::Missing => "removed".to_string(),
                        Target::NotSocket(k) => format!("replaced by {k}"),
                        Target::Error(_) | Target::Socket(_) => String::new(),
                    }
                ))
            }
            (Some(t), Some(Target::Socket(b))) if !matches!(t, Target::Socket(_)) => {
                out.push(format!("{text} exists now: socket inode {}", b.ino))
            }
            _ => {}
        },
        Selector::Prefix { dir, .. } => {
            let dir = dir.display();
            match (before.dir, now.dir) {
                (None, Some(_)) => out.push(format!(
                    "{text}: directory {dir} exists now; its sockets are traced"
                )),
                (Some(_), None) => out.push(format!(
                    "{text}: directory {dir} disappeared; it stays selected and is traced again \
                     when it is re-created"
                )),
                (Some(a), Some(b)) if a != b => out.push(format!(
                    "{text}: directory {dir} was replaced (inode {} -> {})",
                    a.ino, b.ino
                )),
                _ => {}
            }
        }
        Selector::Abstract { .. } => {}
    }
    out
}
