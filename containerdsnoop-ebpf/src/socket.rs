//! Socket selection: is this `struct sock` one of the sockets the user asked for? A socket is
//! selected when its own bound address, or its peer's, matches a path pattern, so that clients
//! that only `connect()` (and have no address of their own) are selected too.
//!
//! Kernel structures read (offsets from BTF, see `KernelLayout`):
//! - `struct sock { struct sock_common __sk_common { ... unsigned short skc_family; ... };
//!   ... struct pid *sk_peer_pid; ... struct socket *sk_socket; ... }`
//! - `struct unix_sock { struct sock sk; struct unix_address *addr; ... struct sock *peer; ... }`
//! - `struct unix_address { refcount_t refcnt; int len; [unsigned int hash;] struct sockaddr_un name[]; }`
//! - `struct socket { socket_state state; short type; ... struct sock *sk; ... }` inside
//!   `struct socket_alloc { struct socket socket; struct inode vfs_inode; }`
//! - `struct pid { ... struct upid numbers[]; }`, `struct upid { int nr; ... }`

use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use containerdsnoop_common::{ChunkHeader, MAX_PATTERNS, PATH_LEN, SUN_PATH_MAX, flags};

use crate::{
    kernel::{PATTERN_COUNT, layout, read_u16, read_u32, read_u64},
    maps::PATTERNS,
};

const AF_UNIX: u16 = 1;

/// Decides whether `sk` is selected and, if so, fills the socket fields of `hdr` (path, pattern,
/// inode numbers, peer pid, socket type). Returns the `PATH_IS_PEER` flag bit on a match.
#[inline(always)]
pub fn select(sk: u64, hdr: &mut ChunkHeader) -> Option<u32> {
    let family = read_u16(sk + layout!(sock_common_skc_family) as u64)?;
    if family != AF_UNIX {
        return None;
    }
    let mut side_flag = 0;
    let own_addr = read_u64(sk + layout!(unix_sock_addr) as u64).unwrap_or(0);
    let mut matched = own_addr != 0 && match_address(own_addr, hdr);
    let peer = read_u64(sk + layout!(unix_sock_peer) as u64).unwrap_or(0);
    if !matched && peer != 0 {
        let peer_addr = read_u64(peer + layout!(unix_sock_addr) as u64).unwrap_or(0);
        if peer_addr != 0 && match_address(peer_addr, hdr) {
            matched = true;
            side_flag = flags::PATH_IS_PEER;
        }
    }
    if !matched {
        return None;
    }
    hdr.sk = sk;
    hdr.peer_sk = peer;
    hdr.sock_ino = socket_inode(sk);
    hdr.peer_ino = if peer != 0 { socket_inode(peer) } else { 0 };
    hdr.peer_tgid = peer_tgid(sk);
    hdr.sock_type = sock_type(sk);
    Some(side_flag)
}

/// Reads `addr`'s `sun_path` into `hdr.path` and compares it with every pattern.
#[inline(always)]
fn match_address(addr: u64, hdr: &mut ChunkHeader) -> bool {
    let Some(len) = read_u32(addr + layout!(unix_address_len) as u64) else {
        return false;
    };
    // `len` counts sun_family (2 bytes) + sun_path bytes (with the NUL for pathname sockets).
    let sun_len = (len as i32) - 2;
    if sun_len <= 0 {
        return false;
    }
    let mut n = sun_len as u32;
    if n > SUN_PATH_MAX as u32 {
        n = SUN_PATH_MAX as u32;
    }
    let src = (addr + layout!(unix_address_sun_path) as u64) as *const u8;
    // SAFETY: `n` is at most SUN_PATH_MAX, within `hdr.path`; the read cannot fault.
    let dst = unsafe { core::slice::from_raw_parts_mut(hdr.path.as_mut_ptr(), n as usize) };
    // SAFETY: bpf_probe_read_kernel never faults.
    if unsafe { bpf_probe_read_kernel_buf(src, dst) }.is_err() {
        return false;
    }
    hdr.path_len = n as u16;

    let count = PATTERN_COUNT.load();
    let mut i = 0;
    while i < MAX_PATTERNS {
        if i >= count {
            break;
        }
        if let Some(p) = PATTERNS.get(i) {
            if sun_len as u32 >= p.match_len
                && (p.exact == 0 || sun_len as u32 == p.match_len)
                && words_equal(&hdr.path, &p.bytes, &p.mask)
            {
                hdr.pattern = i as u8;
                return true;
            }
        }
        i += 1;
    }
    false
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
