//! Follows the selectors over time: each scan resolves them again, compares the identities they
//! name now with those the kernel holds, and turns the difference into map updates (additions
//! *and* removals) and one-line notices. An identity is in the kernel only while a selector
//! names it: a socket file or directory that is removed or replaced stops selecting anything at
//! the next scan, so a stale identity can matter for one rescan interval at the most, and only
//! on a file system whose generations cannot be read (elsewhere the generation already keeps a
//! reused inode number from matching). Connections opened on a removed socket stay traced: the
//! kernel keeps their decision per socket (`SELECTION`, checked by socket inode and peer).

use std::collections::BTreeMap;

use containerdsnoop_common::{
    FileKey, MAX_PATTERNS, PATTERN_AWAITED_DIR, PATTERN_BASENAME, PathPattern,
};

use super::{
    notice::{changes, removed},
    pattern::{Selector, name_pattern},
    resolve::{Resolution, Target},
};

/// A change to the kernel's selection maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// `SELECTED_FILES[key] = pattern`.
    File(FileKey, u32),
    /// Delete `SELECTED_FILES[key]`: no selector names that file any more.
    RemoveFile(FileKey),
    /// `SELECTED_DIRS[key] = mask` (the whole new mask).
    Dir(FileKey, u32),
    /// Delete `SELECTED_DIRS[key]`.
    RemoveDir(FileKey),
    /// `PATTERNS[slot] = pattern`: a spare slot given to a symlink target's name.
    Pattern(u32, Box<PathPattern>),
    /// `GENERATIONLESS[0] = count`: how many keys of both maps match any generation.
    Generationless(u32),
    /// `AWAITED_DIRS[key] = mask`: directory `key` holds a selected subdirectory not created
    /// yet, named by the `PATTERN_AWAITED_DIR` patterns in `mask`.
    Awaited(FileKey, u32),
    /// Delete `AWAITED_DIRS[key]`.
    RemoveAwaited(FileKey),
    /// `AWAITED_COUNT[0] = count`.
    AwaitedCount(u32),
}

pub struct Tracker {
    selectors: Vec<Selector>,
    last: Vec<Option<Resolution>>,
    /// Per selector: the latest resolution that could be checked, whose identities stay
    /// selected while the path cannot be checked (see `Resolution::unchecked`).
    checked: Vec<Option<Resolution>>,
    /// What the kernel holds now.
    files: BTreeMap<FileKey, u32>,
    dirs: BTreeMap<FileKey, u32>,
    awaited: BTreeMap<FileKey, u32>,
    /// Per selector: the spare pattern slot holding its symlink target's name, and that name.
    aliases: Vec<Option<(u32, Vec<u8>)>>,
    /// Per selector: the spare pattern slot holding the name of its directory while that does
    /// not exist (`u32::MAX`: none was left).
    awaits: Vec<Option<u32>>,
    /// Spare pattern slots (after the selectors') not given out yet.
    spare: Vec<u32>,
}

/// The identities one scan wants in the kernel.
#[derive(Default)]
struct Wanted {
    files: BTreeMap<FileKey, u32>,
    dirs: BTreeMap<FileKey, u32>,
    awaited: BTreeMap<FileKey, u32>,
}

impl Tracker {
    pub fn new(selectors: Vec<Selector>) -> Tracker {
        let last = vec![None; selectors.len()];
        let aliases = vec![None; selectors.len()];
        let spare = (selectors.len() as u32..MAX_PATTERNS).rev().collect();
        Tracker {
            selectors,
            checked: last.clone(),
            last,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            awaited: BTreeMap::new(),
            awaits: vec![None; aliases.len()],
            aliases,
            spare,
        }
    }

    /// Gives selector `i`'s symlink target name a spare pattern slot (the same one as before
    /// when the name is unchanged) and wants the target's directory selected with it.
    fn select_link_target(
        &mut self,
        i: usize,
        (dir, name): (FileKey, Vec<u8>),
        wanted: &mut Wanted,
        updates: &mut Vec<Update>,
        notices: &mut Vec<String>,
    ) {
        let slot = match &self.aliases[i] {
            Some((slot, _)) => *slot,
            None => match self.spare.pop() {
                Some(slot) => slot,
                None => {
                    notices.push(format!(
                        "{}: a symlink; no pattern slot is left for its target's name (at most \
                         {MAX_PATTERNS} in all), so a socket re-created there is traced from the \
                         next check on",
                        self.selectors[i].text()
                    ));
                    self.aliases[i] = Some((u32::MAX, name));
                    return;
                }
            },
        };
        if slot == u32::MAX {
            return;
        }
        if self.aliases[i].as_ref().is_none_or(|(_, n)| *n != name) {
            updates.push(Update::Pattern(
                slot,
                Box::new(name_pattern(&name, true, PATTERN_BASENAME)),
            ));
            self.aliases[i] = Some((slot, name));
        }
        *wanted.dirs.entry(dir).or_insert(0) |= 1 << slot;
    }

    /// Gives selector `i`'s missing directory a spare pattern slot holding the directory's name
    /// (once: the name is the selector's), and wants the directory's parent awaited with it.
    fn await_dir(
        &mut self,
        i: usize,
        (parent, name): (FileKey, Vec<u8>),
        wanted: &mut Wanted,
        updates: &mut Vec<Update>,
    ) {
        let slot = match self.awaits[i] {
            Some(slot) => slot,
            None => {
                let slot = self.spare.pop().unwrap_or(u32::MAX);
                if slot != u32::MAX {
                    let mut pattern = name_pattern(&name, true, PATTERN_AWAITED_DIR);
                    pattern.entries = 1 << i;
                    updates.push(Update::Pattern(slot, Box::new(pattern)));
                }
                self.awaits[i] = Some(slot);
                slot
            }
        };
        if slot != u32::MAX {
            *wanted.awaited.entry(parent).or_insert(0) |= 1 << slot;
        }
    }

    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// The latest resolution of selector `i` (after the first [`Tracker::scan`]).
    pub fn resolution(&self, i: usize) -> Option<&Resolution> {
        self.last.get(i).and_then(Option::as_ref)
    }

    /// Every socket file the selectors name now, with the index of the selector.
    pub fn current_sockets(&self) -> Vec<(FileKey, usize)> {
        let mut out = Vec::new();
        for (i, r) in self.checked.iter().enumerate() {
            let Some(r) = r else { continue };
            if let Some(Target::Socket(k)) = &r.target {
                out.push((*k, i));
            }
            out.extend(r.sockets.iter().map(|(_, k)| (*k, i)));
        }
        out
    }

    /// The text of the first selector whose bit is set in `mask` (a spare slot's: its owner's).
    fn owner_text(&self, mask: u32) -> &str {
        let slot = mask.trailing_zeros();
        let owner = (self.aliases.iter())
            .position(|a| a.as_ref().is_some_and(|(s, _)| *s == slot))
            .unwrap_or(slot as usize);
        self.selectors.get(owner).map_or("?", Selector::text)
    }

    /// Resolves every selector with `resolve` and returns the map updates that make the kernel
    /// hold exactly the identities they name now, and the notices for what changed since the
    /// previous scan (none on the first scan: that is the start-up report's job).
    pub fn scan(
        &mut self,
        resolve: impl Fn(&Selector) -> Resolution,
    ) -> (Vec<Update>, Vec<String>) {
        let mut updates = Vec::new();
        let mut notices = Vec::new();
        let mut wanted = Wanted::default();
        for i in 0..self.selectors.len() {
            let now = resolve(&self.selectors[i]);
            if let Some(before) = &self.last[i] {
                notices.extend(changes(&self.selectors[i], before, &now));
            }
            self.last[i] = Some(now.clone());
            // What cannot be checked now is not known to be gone: it keeps what it named.
            let now = match (now.unchecked, &self.checked[i]) {
                (true, Some(checked)) => checked.clone(),
                _ => {
                    self.checked[i] = Some(now.clone());
                    now
                }
            };
            if let Some(dir) = now.dir
                && self.selectors[i].kernel_pattern().kind == PATTERN_BASENAME
            {
                *wanted.dirs.entry(dir).or_insert(0) |= 1 << i;
            }
            if let Some(target) = now.link_target.clone() {
                self.select_link_target(i, target, &mut wanted, &mut updates, &mut notices);
            }
            if let Some(Target::Socket(key)) = &now.target {
                wanted.files.entry(*key).or_insert(i as u32);
            }
            if let Some(awaited) = now.awaited.clone()
                && self.selectors[i].kernel_pattern().kind == PATTERN_BASENAME
            {
                self.await_dir(i, awaited, &mut wanted, &mut updates);
            }
        }
        // The counts the kernel reads before the extra lookups: a larger one first, so that a
        // new key is never looked up without it; a smaller one last, after its keys are gone.
        let counts = [
            (
                self.awaited.len(),
                wanted.awaited.len(),
                Update::AwaitedCount as fn(u32) -> Update,
            ),
            (
                generationless(&self.files, &self.dirs),
                generationless(&wanted.files, &wanted.dirs),
                Update::Generationless,
            ),
        ];
        for (held, want, update) in counts {
            if want > held {
                updates.push(update(want as u32));
            }
        }
        let awaited = changed(&self.awaited, &wanted.awaited);
        let files = changed(&self.files, &wanted.files);
        let dirs = changed(&self.dirs, &wanted.dirs);
        updates.extend(awaited.0.into_iter().map(|(k, m)| Update::Awaited(k, m)));
        updates.extend(files.0.into_iter().map(|(k, p)| Update::File(k, p)));
        updates.extend(dirs.0.into_iter().map(|(k, m)| Update::Dir(k, m)));
        for (k, p) in files.1 {
            updates.push(Update::RemoveFile(k));
            notices.push(removed(
                self.selectors[p as usize].text(),
                "socket file",
                &k,
            ));
        }
        for (k, mask) in dirs.1 {
            updates.push(Update::RemoveDir(k));
            notices.push(removed(self.owner_text(mask), "directory", &k));
        }
        updates.extend(awaited.1.into_iter().map(|(k, _)| Update::RemoveAwaited(k)));
        for (held, want, update) in counts {
            if want < held {
                updates.push(update(want as u32));
            }
        }
        self.files = wanted.files;
        self.dirs = wanted.dirs;
        self.awaited = wanted.awaited;
        (updates, notices)
    }
}

/// How many keys of `files` and `dirs` have no generation.
fn generationless(files: &BTreeMap<FileKey, u32>, dirs: &BTreeMap<FileKey, u32>) -> usize {
    (files.keys().chain(dirs.keys()))
        .filter(|k| k.generation_known == 0)
        .count()
}

/// From the map the kernel holds to the one a scan wants: the entries to write (new, or with a
/// new value) and the entries to delete.
type Change = (Vec<(FileKey, u32)>, Vec<(FileKey, u32)>);

fn changed(held: &BTreeMap<FileKey, u32>, wanted: &BTreeMap<FileKey, u32>) -> Change {
    let write = (wanted.iter())
        .filter(|(k, v)| held.get(k) != Some(v))
        .map(|(k, v)| (*k, *v))
        .collect();
    let delete = (held.iter())
        .filter(|(k, _)| !wanted.contains_key(k))
        .map(|(k, v)| (*k, *v))
        .collect();
    (write, delete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::pattern::parse_selector;

    fn key(dev: u32, ino: u64) -> FileKey {
        FileKey::exact(dev, ino, 1)
    }

    /// Scans with scripted resolutions: an identity is added once, and removed as soon as the
    /// path no longer names it; a reused inode number with another generation is another
    /// identity.
    #[test]
    fn tracker_follows_a_restarting_server() {
        let sel = parse_selector("/run/x.sock").expect("selector");
        let mut t = Tracker::new(vec![sel]);
        let r = |target| Resolution {
            dir: Some(key(7, 1)),
            target: Some(target),
            ..Resolution::default()
        };
        let (u, n) = t.scan(|_| r(Target::Socket(key(7, 10))));
        assert_eq!(
            u,
            vec![Update::File(key(7, 10), 0), Update::Dir(key(7, 1), 1)]
        );
        assert!(n.is_empty(), "{n:?}");
        let (u, n) = t.scan(|_| r(Target::Socket(key(7, 10))));
        assert!(u.is_empty() && n.is_empty());
        let (u, n) = t.scan(|_| r(Target::Missing));
        assert_eq!(u, vec![Update::RemoveFile(key(7, 10))]);
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            n[0].starts_with("/run/x.sock disappeared (socket inode 10 removed)"),
            "{n:?}"
        );
        assert!(
            n[1].starts_with("/run/x.sock: no longer selects socket file inode 10 on device 0:7"),
            "{n:?}"
        );
        let (u, n) = t.scan(|_| r(Target::Socket(key(7, 11))));
        assert_eq!(u, vec![Update::File(key(7, 11), 0)]);
        assert_eq!(
            n,
            vec!["/run/x.sock exists now: socket inode 11".to_string()]
        );
        // The same inode number, another generation: the old identity goes, the new comes.
        let reused = FileKey::exact(7, 11, 2);
        let (u, n) = t.scan(|_| r(Target::Socket(reused)));
        assert_eq!(
            u,
            vec![Update::File(reused, 0), Update::RemoveFile(key(7, 11))]
        );
        assert!(n[0].starts_with("/run/x.sock was replaced"), "{n:?}");
        assert_eq!(t.current_sockets(), vec![(reused, 0)]);
    }

    /// A path that cannot be checked (permission denied) keeps what it named; once it can be
    /// checked again and is gone, its identities go.
    #[test]
    fn what_cannot_be_checked_stays_selected() {
        let sel = parse_selector("/proc/1/root/x.sock").expect("selector");
        let mut t = Tracker::new(vec![sel]);
        let ok = Resolution {
            dir: Some(key(7, 1)),
            target: Some(Target::Socket(key(7, 10))),
            ..Resolution::default()
        };
        let denied = Resolution {
            target: Some(Target::Error("Permission denied".into())),
            unchecked: true,
            ..Resolution::default()
        };
        t.scan(|_| ok.clone());
        let (u, n) = t.scan(|_| denied.clone());
        assert!(u.is_empty(), "{u:?}");
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].contains("cannot be checked"), "{n:?}");
        assert_eq!(t.scan(|_| denied.clone()), (vec![], vec![]));
        assert_eq!(t.current_sockets(), vec![(key(7, 10), 0)]);
        let gone = Resolution {
            target: Some(Target::Missing),
            ..Resolution::default()
        };
        let (u, _) = t.scan(|_| gone.clone());
        assert_eq!(
            u,
            vec![Update::RemoveFile(key(7, 10)), Update::RemoveDir(key(7, 1))]
        );
    }

    /// A prefix directory that does not exist yet: its parent is awaited with the directory's
    /// name in a spare slot whose entries are the selector's pattern, until the directory is
    /// there; then the directory itself is selected and the parent no longer awaited.
    #[test]
    fn a_missing_directory_is_awaited_in_its_parent() {
        let sel = parse_selector("/run/containerd/s/*").expect("selector");
        let mut t = Tracker::new(vec![sel]);
        let parent = key(1, 40);
        let missing = Resolution {
            awaited: Some((parent, b"s".to_vec())),
            ..Resolution::default()
        };
        let (u, _) = t.scan(|_| missing.clone());
        let mut pattern = name_pattern(b"s", true, PATTERN_AWAITED_DIR);
        pattern.entries = 1;
        let slot = 1; // the first spare slot after the selector's
        assert_eq!(
            u,
            vec![
                Update::Pattern(slot, Box::new(pattern)),
                Update::AwaitedCount(1),
                Update::Awaited(parent, 1 << slot),
            ]
        );
        assert_eq!(t.scan(|_| missing.clone()), (vec![], vec![]));
        let there = Resolution {
            dir: Some(key(1, 41)),
            ..Resolution::default()
        };
        let (u, _) = t.scan(|_| there.clone());
        assert_eq!(
            u,
            vec![
                Update::Dir(key(1, 41), 1),
                Update::RemoveAwaited(parent),
                Update::AwaitedCount(0),
            ]
        );
        // Gone again: awaited again, in the same slot (no new pattern write).
        let (u, _) = t.scan(|_| missing.clone());
        assert_eq!(
            u,
            vec![
                Update::AwaitedCount(1),
                Update::Awaited(parent, 1 << slot),
                Update::RemoveDir(key(1, 41)),
            ]
        );
    }

    /// Keys whose generation is unknown are counted for the kernel: the count rises before
    /// such a key is added and falls after it is removed.
    #[test]
    fn generationless_keys_are_counted_around_their_updates() {
        let sel = parse_selector("/ovl/x.sock").expect("selector");
        let mut t = Tracker::new(vec![sel]);
        let loose = FileKey::any_generation(9, 5);
        let dir = FileKey::any_generation(9, 2);
        let r = |target| Resolution {
            dir: Some(dir),
            target: Some(target),
            ..Resolution::default()
        };
        let (u, _) = t.scan(|_| r(Target::Socket(loose)));
        assert_eq!(
            u,
            vec![
                Update::Generationless(2),
                Update::File(loose, 0),
                Update::Dir(dir, 1)
            ]
        );
        let (u, _) = t.scan(|_| r(Target::Missing));
        assert_eq!(
            u,
            vec![Update::RemoveFile(loose), Update::Generationless(1)]
        );
    }

    /// A path whose last component is a symlink: its target's directory is selected with the
    /// target's name in a spare slot, kept while the name stays, rewritten when it changes.
    #[test]
    fn tracker_selects_a_symlink_targets_entry() {
        let sels = ["/run/docker.sock", "/run/other.sock"]
            .map(|s| parse_selector(s).expect(s))
            .to_vec();
        let mut t = Tracker::new(sels);
        let res = |name: &[u8]| Resolution {
            dir: Some(key(1, 2)),
            target: Some(Target::NotSocket("a dangling symlink")),
            sockets: vec![],
            link_target: Some((key(1, 9), name.to_vec())),
            unchecked: false,
            awaited: None,
        };
        let link = |s: &Selector, name: &'static [u8]| match s.text() {
            "/run/docker.sock" => res(name),
            _ => Resolution::default(),
        };
        let (u, n) = t.scan(|s| link(s, b"desktop.sock"));
        // The first spare slot after the two selectors'.
        let slot = 2;
        let pattern = |name: &[u8]| {
            Update::Pattern(slot, Box::new(name_pattern(name, true, PATTERN_BASENAME)))
        };
        assert_eq!(
            u,
            vec![
                pattern(b"desktop.sock"),
                Update::Dir(key(1, 2), 0b1),
                Update::Dir(key(1, 9), 1 << slot),
            ]
        );
        assert!(n.is_empty());
        assert_eq!(t.scan(|s| link(s, b"desktop.sock")), (vec![], vec![]));
        let (u, _) = t.scan(|s| link(s, b"renamed.sock"));
        assert_eq!(u, vec![pattern(b"renamed.sock")]);
        // The link is removed: the target's directory is no longer selected.
        let (u, n) = t.scan(|s| match s.text() {
            "/run/docker.sock" => Resolution {
                dir: Some(key(1, 2)),
                target: Some(Target::Missing),
                ..Resolution::default()
            },
            _ => Resolution::default(),
        });
        assert_eq!(u, vec![Update::RemoveDir(key(1, 9))]);
        assert!(
            n.iter()
                .any(|l| l.starts_with("/run/docker.sock: no longer selects directory")),
            "{n:?}"
        );
    }

    #[test]
    fn tracker_merges_patterns_of_one_directory() {
        let sels = ["/run/a.sock", "/run/b*", "@abs"]
            .map(|s| parse_selector(s).expect(s))
            .to_vec();
        let mut t = Tracker::new(sels);
        let (u, _) = t.scan(|s| match s {
            Selector::Abstract { .. } => Resolution::default(),
            _ => Resolution {
                dir: Some(key(1, 2)),
                ..Resolution::default()
            },
        });
        assert_eq!(u, vec![Update::Dir(key(1, 2), 0b11)]);
        // A prefix directory that appears later, then is replaced: the old one stops selecting.
        let sels = vec![parse_selector("/run/s/*").expect("selector")];
        let mut t = Tracker::new(sels);
        let at = |dir| {
            move |_: &Selector| Resolution {
                dir,
                ..Resolution::default()
            }
        };
        assert_eq!(t.scan(at(None)), (vec![], vec![]));
        let (u, n) = t.scan(at(Some(key(1, 5))));
        assert_eq!(u, vec![Update::Dir(key(1, 5), 1)]);
        assert_eq!(
            n,
            vec!["/run/s/*: directory /run/s exists now; its sockets are traced"]
        );
        let (u, n) = t.scan(at(Some(key(1, 6))));
        assert_eq!(
            u,
            vec![Update::Dir(key(1, 6), 1), Update::RemoveDir(key(1, 5))]
        );
        assert_eq!(
            n[0],
            "/run/s/*: directory /run/s was replaced (inode 5 -> 6)"
        );
        assert!(
            n[1].starts_with("/run/s/*: no longer selects directory inode 5"),
            "{n:?}"
        );
        let (u, _) = t.scan(at(None));
        assert_eq!(u, vec![Update::RemoveDir(key(1, 6))]);
    }
}
