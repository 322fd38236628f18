//! Socket selection: is this `struct sock` one of the sockets the user asked for? A socket is
//! selected by the identity of the socket *file* it or its peer is bound to, never by the string
//! passed to bind(2): `///tmp/x.sock`, `x.sock` after chdir, a path through a symlinked
//! directory or a bind mount all name the same inode. Clients that only `connect()` have no file
//! of their own and are selected through their peer, the accepted socket, which shares the
//! listener's `path` (`unix_stream_connect()`: `newu->path = otheru->path`).
//!
//! Per send and side: the bound file's `(s_dev, i_ino, i_generation)` is looked up in
//! `SELECTED_FILES`; on a miss, its directory's in `SELECTED_DIRS`, and only for an entry of a
//! selected directory is its name (`d_name`) compared, with the few patterns of that directory.
//! The generation is what makes the identity exact: a removed socket's (or directory's) inode
//! number is handed out again at once on ext4 and xfs, and without it a stranger's socket bound
//! beside the selected one would be traced. Keys of file systems whose generation user space
//! cannot read are looked up a second time without it, only while such keys exist
//! (`GENERATIONLESS`), and user space removes every identity it sees replaced or gone. A selected
//! directory that does not exist yet is awaited in its parent (`AWAITED_DIRS`, see
//! [`select_awaited`]), so that a socket bound in it as soon as it is created is selected too.
//!
//! A directory plus a name is how a socket re-created by a restarting daemon (a new inode) is
//! selected from its first byte, before user space has seen the new file; and how `dir/*`
//! selects shims as they come. Sockets without a file (abstract names) are compared by name,
//! only when an abstract pattern exists.
//!
//! Kernel structures read (offsets from BTF, see `KernelLayout`):
//! - `struct sock { struct sock_common __sk_common { ... unsigned short skc_family; ... };
//!   ... struct pid *sk_peer_pid; ... struct socket *sk_socket; ... }`
//! - `struct unix_sock { struct sock sk; struct unix_address *addr; struct path path; ...
//!   struct sock *peer; ... }`, `struct path { struct vfsmount *mnt; struct dentry *dentry; }`
//! - `struct dentry { ... struct dentry *d_parent; struct qstr d_name; struct inode *d_inode; ... }`,
//!   `struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const unsigned char *name; }`
//! - `struct inode { ... struct super_block *i_sb; ... unsigned long i_ino; ...
//!   __u32 i_generation; ... }`,
//!   `struct super_block { ... dev_t s_dev; ... }`
//! - `struct unix_address { refcount_t refcnt; int len; [unsigned int hash;] struct sockaddr_un name[]; }`
//! - `struct socket { socket_state state; short type; ... struct sock *sk; ... }` inside
//!   `struct socket_alloc { struct socket socket; struct inode vfs_inode; }`
//! - `struct pid { ... struct upid numbers[]; }`, `struct upid { int nr; ... }`

use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use containerdsnoop_common::{
    ChunkHeader, FileKey, MAX_PATTERNS, PATH_LEN, PATTERN_ABSTRACT, PATTERN_AWAITED_DIR,
    PATTERN_BASENAME, SUN_PATH_MAX, flags,
};

use crate::{
    kernel::{HAS_ABSTRACT, PATTERN_COUNT, layout, read_u16, read_u32, read_u64},
    maps::{
        AWAITED_COUNT, AWAITED_DIRS, GENERATIONLESS, PATTERNS, SELECTED_DIRS, SELECTED_FILES,
        SELECTION,
    },
};

const AF_UNIX: u16 = 1;

/// [`select`] once per socket: a socket's selection, bound name, inode, peer pid and type do
/// not change while it keeps its inode and peer, so the header fields decided on its first send
/// are kept in `SELECTION` and copied from there (one lookup and three reads per send).
/// Everything else in `hdr` is filled per record later (`fill_task`, `emit_record`).
#[inline(always)]
pub fn select_cached(sk: u64, hdr: &mut ChunkHeader) -> Option<u32> {
    // SAFETY: the entry is copied at once; a concurrent update can at worst give a torn copy of
    // the same socket's fields, which are the same values.
    if let Some(cached) = unsafe { SELECTION.get(sk) }
        && cached.sock_ino != 0
        && cached.sock_ino == socket_inode(sk)
        && cached.peer_sk == read_u64(sk + layout!(unix_sock_peer) as u64).unwrap_or(0)
    {
        *hdr = *cached;
        return Some(hdr.flags);
    }
    match select(sk, hdr) {
        Some(side_flag) => {
            if hdr.sock_ino != 0 {
                hdr.flags = side_flag;
                // By reference: a copy of the 240-byte header would take half the BPF stack.
                let fields: &ChunkHeader = hdr;
                let _ = SELECTION.insert(sk, fields, 0);
            }
            Some(side_flag)
        }
        None => {
            let _ = SELECTION.remove(sk);
            None
        }
    }
}

/// Decides whether `sk` is selected and, if so, fills the socket fields of `hdr` (bound name,
/// pattern, inode numbers, peer pid, socket type). Returns the `PATH_IS_PEER` flag bit on a match.
#[inline(always)]
pub fn select(sk: u64, hdr: &mut ChunkHeader) -> Option<u32> {
    let family = read_u16(sk + layout!(sock_common_skc_family) as u64)?;
    if family != AF_UNIX {
        return None;
    }
    let peer = read_u64(sk + layout!(unix_sock_peer) as u64).unwrap_or(0);
    let (bound, side_flag, pattern) = match select_side(sk, hdr) {
        Some(p) => (sk, 0, p),
        None if peer != 0 => (peer, flags::PATH_IS_PEER, select_side(peer, hdr)?),
        None => return None,
    };
    hdr.pattern = pattern;
    copy_bound_name(bound, hdr);
    hdr.sk = sk;
    hdr.peer_sk = peer;
    hdr.sock_ino = socket_inode(sk);
    hdr.peer_ino = if peer != 0 { socket_inode(peer) } else { 0 };
    hdr.peer_tgid = peer_tgid(sk);
    hdr.sock_type = sock_type(sk);
    Some(side_flag)
}

/// The pattern that selects unix socket `s` by its own binding, if any.
#[inline(always)]
fn select_side(s: u64, hdr: &mut ChunkHeader) -> Option<u8> {
    let dentry = read_u64(s + layout!(unix_sock_path_dentry) as u64).unwrap_or(0);
    if dentry != 0 {
        return select_file(dentry, hdr);
    }
    if HAS_ABSTRACT.load() == 0 {
        return None;
    }
    let addr = read_u64(s + layout!(unix_sock_addr) as u64).unwrap_or(0);
    if addr == 0 {
        return None;
    }
    let len = read_bound_name(addr, hdr)?;
    match_patterns(hdr, len, u32::MAX, PATTERN_ABSTRACT)
}

/// `(inode->i_sb->s_dev, inode->i_ino, inode->i_generation)` of `dentry->d_inode`.
#[inline(always)]
fn file_key(dentry: u64) -> Option<FileKey> {
    let inode = read_u64(dentry + layout!(dentry_d_inode) as u64)?;
    if inode == 0 {
        return None;
    }
    let sb = read_u64(inode + layout!(inode_i_sb) as u64)?;
    Some(FileKey::exact(
        read_u32(sb + layout!(super_block_s_dev) as u64)?,
        read_u64(inode + layout!(inode_i_ino) as u64)?,
        read_u32(inode + layout!(inode_i_generation) as u64)?,
    ))
}

/// The value `map` holds for `key`, or for `key` without its generation while user space has
/// entered keys of file systems whose generation it cannot read.
#[inline(always)]
fn lookup(map: &aya_ebpf::maps::HashMap<FileKey, u32>, key: FileKey) -> Option<u32> {
    // SAFETY: the value is copied out of the map at once.
    if let Some(v) = unsafe { map.get(key) } {
        return Some(*v);
    }
    if GENERATIONLESS.get(0).copied().unwrap_or(0) == 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { map.get(key.without_generation()) }.copied()
}

/// The socket file `dentry`: selected itself, or as an entry of a selected directory whose
/// name matches one of that directory's patterns.
#[inline(always)]
fn select_file(dentry: u64, hdr: &mut ChunkHeader) -> Option<u8> {
    let key = file_key(dentry)?;
    if let Some(p) = lookup(&SELECTED_FILES, key) {
        return Some(p as u8);
    }
    let parent = read_u64(dentry + layout!(dentry_d_parent) as u64)?;
    let dir = file_key(parent)?;
    let Some(mask) = lookup(&SELECTED_DIRS, dir) else {
        return select_awaited(dentry, parent, hdr);
    };
    let len = read_name(dentry, hdr)?;
    match_patterns(hdr, len, mask, PATTERN_BASENAME)
}

/// A socket in a selected directory created since the last rescan: its directory's parent is
/// in `AWAITED_DIRS`, its directory's name matches one of that entry's `PATTERN_AWAITED_DIR`
/// patterns, and its own name one of that pattern's `entries`. Exact, like the rest: the
/// parent is known by identity and both names are compared whole (or by the user's prefix).
#[inline(always)]
fn select_awaited(dentry: u64, parent: u64, hdr: &mut ChunkHeader) -> Option<u8> {
    if AWAITED_COUNT.get(0).copied().unwrap_or(0) == 0 {
        return None;
    }
    let grandparent = read_u64(parent + layout!(dentry_d_parent) as u64)?;
    let awaited = lookup(&AWAITED_DIRS, file_key(grandparent)?)?;
    let dir_len = read_name(parent, hdr)?;
    let slot = match_patterns(hdr, dir_len, awaited, PATTERN_AWAITED_DIR)?;
    let entries = PATTERNS.get(slot as u32)?.entries;
    let len = read_name(dentry, hdr)?;
    match_patterns(hdr, len, entries, PATTERN_BASENAME)
}

/// Copies `dentry->d_name` (at most `PATH_LEN` bytes) into `hdr.path`; returns its length.
#[inline(always)]
fn read_name(dentry: u64, hdr: &mut ChunkHeader) -> Option<u32> {
    let len = read_u32(dentry + layout!(dentry_d_name_len) as u64)?;
    let name = read_u64(dentry + layout!(dentry_d_name_name) as u64)?;
    let mut n = len;
    if n > PATH_LEN as u32 {
        n = PATH_LEN as u32;
    }
    if n > 0 {
        // SAFETY: `n` is at most PATH_LEN, the size of `hdr.path`.
        let dst = unsafe { core::slice::from_raw_parts_mut(hdr.path.as_mut_ptr(), n as usize) };
        // SAFETY: bpf_probe_read_kernel never faults.
        unsafe { bpf_probe_read_kernel_buf(name as *const u8, dst) }.ok()?;
    }
    Some(len)
}

/// Compares the `len`-byte name now in `hdr.path` with the patterns of `kind` in `mask`.
#[inline(always)]
fn match_patterns(hdr: &ChunkHeader, len: u32, mask: u32, kind: u32) -> Option<u8> {
    let count = PATTERN_COUNT.load();
    let mut i = 0;
    while i < MAX_PATTERNS {
        if i >= count {
            break;
        }
        if mask & (1 << i) != 0
            && let Some(p) = PATTERNS.get(i)
            && p.kind == kind
            && len >= p.match_len
            && (p.exact == 0 || len == p.match_len)
            && words_equal(&hdr.path, &p.bytes, &p.mask)
        {
            return Some(i as u8);
        }
        i += 1;
    }
    None
}

/// Reads `addr`'s `sun_path` into `hdr.path` (and `path_len`); returns its length as stored
/// (with the NUL for pathname sockets), which may exceed the bytes copied.
#[inline(always)]
fn read_bound_name(addr: u64, hdr: &mut ChunkHeader) -> Option<u32> {
    let len = read_u32(addr + layout!(unix_address_len) as u64)?;
    // `len` counts sun_family (2 bytes) + sun_path bytes (with the NUL for pathname sockets).
    let sun_len = (len as i32) - 2;
    if sun_len <= 0 {
        return None;
    }
    let mut n = sun_len as u32;
    if n > SUN_PATH_MAX as u32 {
        n = SUN_PATH_MAX as u32;
    }
    let src = (addr + layout!(unix_address_sun_path) as u64) as *const u8;
    // SAFETY: `n` is at most SUN_PATH_MAX, within `hdr.path`.
    let dst = unsafe { core::slice::from_raw_parts_mut(hdr.path.as_mut_ptr(), n as usize) };
    // SAFETY: bpf_probe_read_kernel never faults.
    unsafe { bpf_probe_read_kernel_buf(src, dst) }.ok()?;
    hdr.path_len = n as u16;
    Some(sun_len as u32)
}

/// Puts the name `s` was bound with (as passed to bind(2)) in the record, for display.
#[inline(always)]
fn copy_bound_name(s: u64, hdr: &mut ChunkHeader) {
    hdr.path_len = 0;
    let addr = read_u64(s + layout!(unix_sock_addr) as u64).unwrap_or(0);
    if addr != 0 {
        let _ = read_bound_name(addr, hdr);
    }
}

/// `(a ^ b) & mask == 0` over the whole path buffer, eight bytes at a time.
#[inline(always)]
fn words_equal(a: &[u8; PATH_LEN], b: &[u8; PATH_LEN], mask: &[u8; PATH_LEN]) -> bool {
    let mut w = 0;
    while w < PATH_LEN / 8 {
        // SAFETY: w * 8 + 8 <= PATH_LEN; unaligned reads of plain bytes.
        let (x, y, m) = unsafe {
            (
                core::ptr::read_unaligned(a.as_ptr().add(w * 8) as *const u64),
                core::ptr::read_unaligned(b.as_ptr().add(w * 8) as *const u64),
                core::ptr::read_unaligned(mask.as_ptr().add(w * 8) as *const u64),
            )
        };
        if (x ^ y) & m != 0 {
            return false;
        }
        w += 1;
    }
    true
}
/// The sockfs inode number of `sk`'s `struct socket`, 0 when orphaned.
#[inline(always)]
fn socket_inode(sk: u64) -> u64 {
    let Some(sock) = read_u64(sk + layout!(sock_sk_socket) as u64) else {
        return 0;
    };
    if sock == 0 {
        return 0;
    }
    // `struct socket` is the first member of `struct socket_alloc`, next to its inode.
    let inode = sock + layout!(socket_alloc_vfs_inode) as u64;
    read_u64(inode + layout!(inode_i_ino) as u64).unwrap_or(0)
}

/// `pid_nr(sk->sk_peer_pid)`: the peer's tgid in the initial pid namespace, 0 when unknown.
#[inline(always)]
fn peer_tgid(sk: u64) -> u32 {
    let Some(pid) = read_u64(sk + layout!(sock_sk_peer_pid) as u64) else {
        return 0;
    };
    if pid == 0 {
        return 0;
    }
    read_u32(pid + layout!(pid_numbers) as u64 + layout!(upid_nr) as u64).unwrap_or(0)
}

#[inline(always)]
fn sock_type(sk: u64) -> u16 {
    let Some(sock) = read_u64(sk + layout!(sock_sk_socket) as u64) else {
        return 0;
    };
    if sock == 0 {
        return 0;
    }
    read_u16(sock + layout!(socket_type) as u64).unwrap_or(0)
}
