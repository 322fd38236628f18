//! What the selectors name on the file system right now, and how that changes: each exact path
//! resolves (symlinks followed) to a socket file identified by device and inode; each path's
//! directory is identified too, so that a socket re-created there is selected by name before it
//! is seen here. A [`Tracker`] rescans and turns differences into kernel map updates and
//! one-line notices (appeared, replaced, disappeared).

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use containerdsnoop_common::{FileKey, MAX_PATTERNS, PATTERN_BASENAME};

use super::{Selector, matches};

/// Most entries of a prefix directory listed for reports and discovery (the kernel selects
/// every entry by name whatever their number).
pub const MAX_LISTED: usize = 4096;

/// Converts a `stat(2)` `st_dev` (glibc/`new_encode_dev` encoding: minor bits 0-7 and 20-31,
/// major bits 8-19 and 32+) into the kernel's internal `dev_t` that `sb->s_dev` holds
/// (`MKDEV(major, minor)` = `major << 20 | minor`).
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xf_ffff)) as u32
}

/// `major:minor` of a kernel `dev_t`, as `/proc/self/mountinfo` prints it.
pub fn dev_text(kernel_dev: u32) -> String {
    format!("{}:{}", kernel_dev >> 20, kernel_dev & 0xf_ffff)
}

/// The kernel's identity of the file `meta` describes, from stat(2) alone: right wherever
/// `st_dev` is the superblock's device (tmpfs, ext4, xfs...). See [`key_at`] for the others.
pub fn key_of(meta: &fs::Metadata) -> FileKey {
    FileKey {
        dev: kernel_dev(meta.dev()),
        _pad: 0,
        ino: meta.ino(),
    }
}

/// The kernel's identity of the file at `path` (`meta` is its stat). Some file systems report
/// an `st_dev` that is not their superblock's `s_dev` (btrfs subvolumes, overlayfs for
/// non-directories), while the kernel side reads `inode->i_sb->s_dev`: the device is taken
/// from the mount the path is on (statx `STATX_MNT_ID`, then `major:minor` in the mountinfo
/// of the mount namespace the path is resolved in), falling back to the converted `st_dev`.
pub fn key_at(path: &Path, meta: &fs::Metadata) -> FileKey {
    let mut key = key_of(meta);
    if let Some(dev) = superblock_dev(path) {
        key.dev = dev;
    }
    key
}

/// `sb->s_dev` of the mount `path` (symlinks followed) is on, from mountinfo.
fn superblock_dev(path: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero is a valid `struct statx`; statx writes into it and reads the
    // NUL-terminated path we own.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return None;
    }
    let mountinfo = match super::through_proc_root(path) {
        Some(pid) => format!("/proc/{pid}/mountinfo"),
        None => "/proc/self/mountinfo".to_string(),
    };
    mountinfo_dev(&fs::read_to_string(mountinfo).ok()?, stx.stx_mnt_id)
}

/// The kernel `dev_t` of mount `mnt_id` in a mountinfo text (`ID PARENT MAJOR:MINOR ...`).
pub fn mountinfo_dev(mountinfo: &str, mnt_id: u64) -> Option<u32> {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').next().and_then(|id| id.parse().ok()) == Some(mnt_id))?;
    let (major, minor) = line.split(' ').nth(2)?.split_once(':')?;
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    (major < 1 << 12 && minor < 1 << 20).then_some((major << 20) | minor)
}

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
        Ok(m) if m.file_type().is_socket() => Target::Socket(key_at(path, &m)),
        Ok(m) => Target::NotSocket(kind_name(m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::symlink_metadata(path) {
            Ok(_) => Target::NotSocket("a dangling symlink"),
            Err(_) => Target::Missing,
        },
        Err(e) => Target::Error(e.to_string()),
    }
}

fn dir_key(dir: &Path) -> Option<FileKey> {
    fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| key_at(dir, &m))
}

/// Most symlinks followed from a selected path (the kernel's own limit is 40).
const MAX_LINKS: usize = 8;

/// Where the symlink chain at `path` ends: the identity of the last link target's directory
/// and its name. `None` when `path` is not a symlink. Absolute targets of a path given as
/// `/proc/PID/root/...` are resolved under that root, as the process would.
pub fn link_target(path: &Path) -> Option<(FileKey, Vec<u8>)> {
    let root = super::through_proc_root(path).map(|pid| PathBuf::from(format!("/proc/{pid}/root")));
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
    Some((dir_key(dir)?, name))
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
        Selector::Exact { path, dir, .. } => Resolution {
            dir: dir_key(dir),
            target: Some(target_of(path)),
            sockets: Vec::new(),
            link_target: link_target(path),
        },
        Selector::Prefix { dir, .. } => {
            let pattern = selector.kernel_pattern();
            let mut sockets = Vec::new();
            let dir_key = dir_key(dir);
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
                    {
                        let key = FileKey {
                            dev: dir_key.dev,
                            ..key_of(&m)
                        };
                        sockets.push((entry.path(), key));
                    }
                }
            }
            sockets.sort();
            Resolution {
                dir: dir_key,
                target: None,
                sockets,
                link_target: None,
            }
        }
        Selector::Abstract { .. } => Resolution::default(),
    }
}

/// A change to the kernel's selection maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// `SELECTED_FILES[key] = pattern`.
    File(FileKey, u32),
    /// `SELECTED_DIRS[key] = mask` (the whole new mask).
    Dir(FileKey, u32),
    /// `PATTERNS[slot] = pattern`: a spare slot given to a symlink target's name.
    Pattern(u32, Box<containerdsnoop_common::PathPattern>),
}

/// Follows the selectors over time. Identities once selected stay selected: a replaced socket's
/// established connections keep being traced (its file is gone, its inode is not reused while
/// they live, since the socket holds a reference to it).
pub struct Tracker {
    selectors: Vec<Selector>,
    last: Vec<Option<Resolution>>,
    files: BTreeMap<FileKey, u32>,
    dirs: BTreeMap<FileKey, u32>,
    /// Per selector: the spare pattern slot holding its symlink target's name, and that name.
    aliases: Vec<Option<(u32, Vec<u8>)>>,
    /// Spare pattern slots (after the selectors') not given out yet.
    spare: Vec<u32>,
}

impl Tracker {
    pub fn new(selectors: Vec<Selector>) -> Tracker {
        let last = vec![None; selectors.len()];
        let aliases = vec![None; selectors.len()];
        let spare = (selectors.len() as u32..MAX_PATTERNS).rev().collect();
        Tracker {
            selectors,
            last,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            aliases,
            spare,
        }
    }

    /// Sets bit `slot` of directory `dir`'s mask; an update when it was not set.
    fn select_dir(&mut self, dir: FileKey, slot: u32, updates: &mut Vec<Update>) {
        let mask = self.dirs.entry(dir).or_insert(0);
        if *mask & (1 << slot) == 0 {
            *mask |= 1 << slot;
            updates.push(Update::Dir(dir, *mask));
        }
    }

    /// Gives selector `i`'s symlink target name a spare pattern slot (the same one as before
    /// when the name is unchanged) and selects the target's directory with it.
    fn select_link_target(
        &mut self,
        i: usize,
        (dir, name): (FileKey, Vec<u8>),
        updates: &mut Vec<Update>,
        notices: &mut Vec<String>,
    ) {
        let slot = match &self.aliases[i] {
            Some((slot, current)) if *current == name => *slot,
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
                Box::new(super::name_pattern(&name, true, PATTERN_BASENAME)),
            ));
            self.aliases[i] = Some((slot, name));
        }
        self.select_dir(dir, slot, updates);
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
        for (i, r) in self.last.iter().enumerate() {
            let Some(r) = r else { continue };
            if let Some(Target::Socket(k)) = &r.target {
                out.push((*k, i));
            }
            out.extend(r.sockets.iter().map(|(_, k)| (*k, i)));
        }
        out
    }

    /// Resolves every selector with `resolve` and returns the map updates and the notices for
    /// what changed since the previous scan (none on the first scan: that is the start-up
    /// report's job).
    pub fn scan(
        &mut self,
        resolve: impl Fn(&Selector) -> Resolution,
    ) -> (Vec<Update>, Vec<String>) {
        let mut updates = Vec::new();
        let mut notices = Vec::new();
        for i in 0..self.selectors.len() {
            let now = resolve(&self.selectors[i]);
            let pattern = self.selectors[i].kernel_pattern();
            if let Some(dir) = now.dir
                && pattern.kind == PATTERN_BASENAME
            {
                self.select_dir(dir, i as u32, &mut updates);
            }
            if let Some(target) = now.link_target.clone() {
                self.select_link_target(i, target, &mut updates, &mut notices);
            }
            let selector = &self.selectors[i];
            if let Some(Target::Socket(key)) = &now.target
                && !self.files.contains_key(key)
            {
                self.files.insert(*key, i as u32);
                updates.push(Update::File(*key, i as u32));
            }
            if let Some(before) = &self.last[i] {
                notices.extend(changes(selector, before, &now));
            }
            self.last[i] = Some(now);
        }
        (updates, notices)
    }
}

/// One-line notices for what changed between two resolutions of `selector`.
pub fn changes(selector: &Selector, before: &Resolution, now: &Resolution) -> Vec<String> {
    let text = selector.text();
    let mut out = Vec::new();
    match selector {
        Selector::Exact { .. } => match (&before.target, &now.target) {
            (Some(Target::Socket(a)), Some(Target::Socket(b))) if a != b => out.push(format!(
                "{text} was replaced: now socket inode {} (was {}); connections to the old \
                 socket are still traced",
                b.ino, a.ino
            )),
            (Some(Target::Socket(a)), Some(t)) if !matches!(t, Target::Socket(_)) => {
                out.push(format!(
                    "{text} disappeared (socket inode {} {}); its open connections are still \
                     traced, and a socket created there again is traced from its first byte",
                    a.ino,
                    match t {
                        Target::Missing => "removed".to_string(),
                        Target::NotSocket(k) => format!("replaced by {k}"),
                        Target::Error(e) => format!("cannot be checked: {e}"),
                        Target::Socket(_) => String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::parse_selector;
    use std::os::unix::net::UnixListener;

    fn key(dev: u32, ino: u64) -> FileKey {
        FileKey { dev, _pad: 0, ino }
    }

    #[test]
    fn st_dev_converts_to_the_kernels_dev_t() {
        // new_encode_dev(MKDEV(8, 1)) = 0x801 -> MKDEV = 8 << 20 | 1.
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
        // Anonymous devices (tmpfs, overlay, proc) have major 0 and minors past 255, whose high
        // bits sit at 20.. in st_dev: minor 300 = 0x12c -> st_dev 0x10_002c.
        assert_eq!(kernel_dev(0x10_002c), 300);
        assert_eq!(kernel_dev(0x2c), 44);
        // Major 259 (NVMe), minor 3: st_dev 0x10303.
        assert_eq!(kernel_dev(0x10303), (259 << 20) | 3);
        // glibc's makedev agrees on both sides of the conversion.
        for (major, minor) in [
            (0u32, 0u32),
            (8, 1),
            (0, 300),
            (259, 70000),
            (4095, 0xfffff),
        ] {
            let st = libc::makedev(major, minor);
            assert_eq!(kernel_dev(st), (major << 20) | minor, "{major}:{minor}");
            assert_eq!(dev_text(kernel_dev(st)), format!("{major}:{minor}"));
        }
    }

    /// The conversion checked against the kernel itself: `/proc/self/mountinfo` prints each
    /// mount's `sb->s_dev` as `major:minor`.
    #[test]
    fn st_dev_of_a_mount_matches_mountinfo() {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mut checked = 0;
        for line in info.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let (Some(devs), Some(mount_point)) = (f.get(2), f.get(4)) else {
                continue;
            };
            if !["/", "/tmp", "/proc", "/dev/shm", "/run"].contains(mount_point) {
                continue;
            }
            let Ok(m) = fs::metadata(mount_point) else {
                continue;
            };
            // A mount point can be covered by a later mount: compare with the last one listed.
            let last = info
                .lines()
                .rfind(|l| l.split(' ').nth(4) == Some(*mount_point))
                .and_then(|l| l.split(' ').nth(2))
                .unwrap_or(devs);
            assert_eq!(dev_text(kernel_dev(m.dev())), last, "{mount_point}");
            checked += 1;
        }
        assert!(checked > 0, "no known mount point found in mountinfo");
    }

    #[test]
    fn mountinfo_gives_the_superblock_device() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    31 1 0:45 /@home /home rw - btrfs /dev/sda2 rw\n\
                    40 31 259:3 / /data rw - ext4 /dev/nvme0n1p3 rw\n";
        assert_eq!(mountinfo_dev(info, 31), Some(45));
        assert_eq!(mountinfo_dev(info, 40), Some((259 << 20) | 3));
        assert_eq!(mountinfo_dev(info, 99), None);
        assert_eq!(mountinfo_dev("7 1 x:y / / rw - a b rw", 7), None);
        // Live: where st_dev is the superblock's device, both ways agree.
        for path in ["/", "/proc", "/tmp", "/dev/shm"] {
            let Ok(m) = fs::metadata(path) else { continue };
            assert_eq!(key_at(Path::new(path), &m), key_of(&m), "{path}");
        }
    }

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
        assert_eq!(k, key_at(&sock, &m));
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

    /// Scans with scripted resolutions: map updates once per identity, notices per change.
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
            vec![Update::Dir(key(7, 1), 1), Update::File(key(7, 10), 0)]
        );
        assert!(n.is_empty(), "{n:?}");
        let (u, n) = t.scan(|_| r(Target::Socket(key(7, 10))));
        assert!(u.is_empty() && n.is_empty());
        let (u, n) = t.scan(|_| r(Target::Missing));
        assert!(u.is_empty());
        assert_eq!(n.len(), 1);
        assert!(
            n[0].starts_with("/run/x.sock disappeared (socket inode 10 removed)"),
            "{n:?}"
        );
        let (u, n) = t.scan(|_| r(Target::Socket(key(7, 11))));
        assert_eq!(u, vec![Update::File(key(7, 11), 0)]);
        assert_eq!(
            n,
            vec!["/run/x.sock exists now: socket inode 11".to_string()]
        );
        let (u, n) = t.scan(|_| r(Target::Socket(key(7, 12))));
        assert_eq!(u, vec![Update::File(key(7, 12), 0)]);
        assert!(n[0].starts_with("/run/x.sock was replaced: now socket inode 12 (was 11)"));
        assert_eq!(t.current_sockets(), vec![(key(7, 12), 0)]);
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
        };
        let link = |s: &Selector, name: &'static [u8]| match s.text() {
            "/run/docker.sock" => res(name),
            _ => Resolution::default(),
        };
        let (u, n) = t.scan(|s| link(s, b"desktop.sock"));
        // The first spare slot after the two selectors'.
        let slot = 2;
        assert_eq!(
            u,
            vec![
                Update::Dir(key(1, 2), 0b1),
                Update::Pattern(
                    slot,
                    Box::new(crate::paths::name_pattern(
                        b"desktop.sock",
                        true,
                        PATTERN_BASENAME
                    ))
                ),
                Update::Dir(key(1, 9), 1 << slot),
            ]
        );
        assert!(n.is_empty());
        assert_eq!(t.scan(|s| link(s, b"desktop.sock")), (vec![], vec![]));
        let (u, _) = t.scan(|s| link(s, b"renamed.sock"));
        assert_eq!(
            u,
            vec![Update::Pattern(
                slot,
                Box::new(crate::paths::name_pattern(
                    b"renamed.sock",
                    true,
                    PATTERN_BASENAME
                ))
            )]
        );
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
        );
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
        assert_eq!(
            u,
            vec![Update::Dir(key(1, 2), 0b1), Update::Dir(key(1, 2), 0b11)]
        );
        // A prefix directory that appears later, then is replaced.
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
        assert_eq!(u, vec![Update::Dir(key(1, 6), 1)]);
        assert_eq!(
            n,
            vec!["/run/s/*: directory /run/s was replaced (inode 5 -> 6)"]
        );
    }
}
