//! The kernel's identity of a file, [`FileKey`], read from user space: the superblock's device
//! (converted from `st_dev`, or taken from the mount the path is on), the inode number, and the
//! inode's generation, read from the file handle the kernel encodes for it
//! (`name_to_handle_at(2)`), where the file system's handle layout is known.
//!
//! Why the generation: ext4 and xfs give a removed file's inode number to the next file created,
//! often at once and often in the same directory. Without it, a selected socket that is removed
//! would select whatever socket gets its number next. With it, an identity names one file for
//! as long as the tracer runs. Where the generation cannot be read (a file system whose handle
//! layout is not known here, or that encodes no handles, like overlayfs without `nfs_export`),
//! the key matches any generation, the start-up report says so, and the identity is dropped at
//! the first rescan that finds the file gone or replaced.

use std::{
    ffi::CString, fs, os::unix::ffi::OsStrExt as _, os::unix::fs::MetadataExt as _, path::Path,
};

use containerdsnoop_common::FileKey;

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

/// The kernel's identity of the file at `path` (`meta` is its stat, symlinks followed). Some
/// file systems report an `st_dev` that is not their superblock's `s_dev` (btrfs subvolumes,
/// overlayfs for non-directories), while the kernel side reads `inode->i_sb->s_dev`: the device
/// is taken from the mount the path is on (statx `STATX_MNT_ID`, then `major:minor` in the
/// mountinfo of the mount namespace the path is resolved in), falling back to the converted
/// `st_dev`.
pub fn key_at(path: &Path, meta: &fs::Metadata) -> Option<FileKey> {
    let dev = superblock_dev(path).unwrap_or_else(|| kernel_dev(meta.dev()));
    key_on(path, meta, dev)
}

/// [`key_at`] for a file known to be on the device `dev` (an entry of a directory on it).
///
/// `None` when the file is gone or replaced while it is looked at (the handle is encoded by a
/// second lookup of `path`): an identity is only ever taken whole from one file. Guessing one
/// then, without its generation, would select whatever file is given the same inode number
/// next (ext4 gives it to the very next file created), until the next rescan.
pub fn key_on(path: &Path, meta: &fs::Metadata, dev: u32) -> Option<FileKey> {
    match handle_identity(path) {
        Handle::Known(ino, generation) if ino == meta.ino() => {
            Some(FileKey::exact(dev, ino, generation))
        }
        Handle::Known(..) | Handle::Gone => None,
        Handle::Unknown => Some(FileKey::any_generation(dev, meta.ino())),
    }
}

/// What the file handle of a path says.
enum Handle {
    /// Inode number and generation.
    Known(u64, u32),
    /// The path names nothing any more (`ENOENT`, `ENOTDIR`).
    Gone,
    /// No handle, or one of a layout not known here: the generation cannot be read.
    Unknown,
}

/// `MAX_HANDLE_SZ`: the largest file handle the kernel encodes.
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The inode number and generation of the file at `path` (symlinks followed), from its handle.
fn handle_identity(path: &Path) -> Handle {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Handle::Gone;
    };
    let mut handle = FileHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: name_to_handle_at(2) reads the NUL-terminated path we own and writes at most
    // `handle_bytes` bytes after the header of `handle`, and one int to `mount_id`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc != 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => Handle::Gone,
            _ => Handle::Unknown,
        };
    }
    let len = (handle.handle_bytes as usize).min(MAX_HANDLE_SZ);
    match handle_fields(handle.handle_type, &handle.f_handle[..len]) {
        Some((ino, generation)) => Handle::Known(ino, generation),
        None => Handle::Unknown,
    }
}

/// `(inode number, generation)` in a file handle of a known encoding (words in host order):
/// - `FILEID_INO32_GEN` (1), 8 bytes, `generic_encode_ino32_fh`: ext2/3/4, xfs with 32-bit
///   inode numbers, and most others: `u32 ino, u32 generation`;
/// - type 1, 12 bytes, `shmem_encode_fh` (tmpfs): `u32 generation, u32 ino_lo, u32 ino_hi`;
/// - `XFS_FILEID_TYPE_64FLAG | FILEID_INO32_GEN` (0x81), 12 bytes: `u64 ino, u32 generation`;
/// - `FILEID_BTRFS_WITHOUT_PARENT` (0x4d), 20 bytes: `u64 objectid, u64 root, u32 generation`.
///
/// `None` for any other encoding: its generation is unknown.
pub fn handle_fields(handle_type: i32, raw: &[u8]) -> Option<(u64, u32)> {
    let word = |i: usize| {
        raw.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let wide = |i: usize| Some(word(i)? as u64 | (word(i + 1)? as u64) << 32);
    match (handle_type, raw.len()) {
        (1, 8) => Some((word(0)? as u64, word(1)?)),
        (1, 12) => Some((wide(1)?, word(0)?)),
        (0x81, 12) => Some((wide(0)?, word(2)?)),
        (0x4d, 20) => Some((wide(0)?, word(4)?)),
        _ => None,
    }
}

/// `sb->s_dev` of the mount `path` (symlinks followed) is on, from mountinfo.
fn superblock_dev(path: &Path) -> Option<u32> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
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
    let mountinfo = match super::pattern::through_proc_root(path) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::{os::unix::net::UnixListener, path::PathBuf};

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
            assert_eq!(
                key_at(Path::new(path), &m).expect("key").dev,
                kernel_dev(m.dev()),
                "{path}"
            );
        }
    }

    /// A file that is gone by the time its handle is asked for has no identity (it used to get
    /// one without its generation, which then selected the next file given its number).
    #[test]
    fn a_file_removed_while_looked_at_has_no_identity() {
        let dir = std::env::temp_dir().join(format!("csn-gone-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let sock = dir.join("a.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let meta = fs::metadata(&sock).expect("stat");
        assert!(key_at(&sock, &meta).is_some());
        drop(listener);
        fs::remove_file(&sock).expect("rm");
        assert_eq!(key_at(&sock, &meta), None, "removed after its stat");
        // Replaced after its stat: another file's handle is not taken for this one.
        let _again = UnixListener::bind(&sock).expect("bind");
        let other = fs::metadata(&dir).expect("stat dir");
        assert_eq!(key_on(&sock, &other, 1), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_handles_of_known_layouts_give_inode_and_generation() {
        let words = |w: &[u32]| w.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
        assert_eq!(handle_fields(1, &words(&[42, 7])), Some((42, 7)));
        assert_eq!(
            handle_fields(1, &words(&[7, 42, 1])),
            Some(((1 << 32) | 42, 7)),
            "tmpfs: generation first"
        );
        assert_eq!(
            handle_fields(0x81, &words(&[42, 1, 7])),
            Some(((1 << 32) | 42, 7))
        );
        assert_eq!(
            handle_fields(0x4d, &words(&[42, 0, 5, 0, 7])),
            Some((42, 7))
        );
        // Unknown encodings, and known types of an unexpected length, give nothing.
        assert_eq!(handle_fields(0xf8, &words(&[1, 2, 3])), None);
        assert_eq!(handle_fields(1, &words(&[1, 2, 3, 4])), None);
        assert_eq!(handle_fields(1, &[0; 3]), None);
    }

    /// On the file systems the tests run on, a socket's key carries its generation, and a
    /// socket created after the first was removed differs from it even when the file system
    /// gave it the same inode number.
    #[test]
    fn a_reused_inode_number_is_a_different_identity() {
        for base in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
            let dir = base.join(format!("csn-generation-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("mkdir");
            let sock = dir.join("a.sock");
            let key = |p: &Path| key_at(p, &fs::metadata(p).expect("stat")).expect("key");
            let mut reused = 0;
            let mut keys = std::collections::BTreeSet::new();
            for _ in 0..50 {
                let listener = UnixListener::bind(&sock).expect("bind");
                let k = key(&sock);
                assert_eq!(k.generation_known, 1, "{}: {k:?}", base.display());
                assert_eq!(k.ino, fs::metadata(&sock).expect("stat").ino());
                if keys.iter().any(|o: &FileKey| o.ino == k.ino) {
                    reused += 1;
                }
                assert!(
                    keys.insert(k),
                    "{}: the same identity twice: {k:?}",
                    base.display()
                );
                drop(listener);
                fs::remove_file(&sock).expect("rm");
            }
            let _ = fs::remove_dir_all(&dir);
            eprintln!("{}: {reused} of 50 inode numbers reused", base.display());
        }
    }
}
