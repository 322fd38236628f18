//! The maps shared by both backends.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use containerdsnoop_common::{
    CHUNK_DATA_MAX, ChunkHeader, DropCounters, FileKey, MAX_PATTERNS, MAX_SELECTED_DIRS,
    MAX_SELECTED_FILES, PathPattern, SockState,
};

/// Records to user space: a `ChunkHeader` followed by `cap_len` payload bytes. User space sets
/// its size (`--ring-buffer-size`) at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(32 << 20, 0);

/// Records under construction: two slots per CPU (`2 * cpu + emit::Slot`), one for the programs
/// that run with preemption disabled (kretprobe, syscall tracepoints) and one for the raw
/// tracepoint, which is preemptible from Linux 7.0, so that two records never share a slot.
/// Its value (header + 32 KiB) is over the 32 KiB limit of per-CPU arrays, so it is a plain
/// array; user space sizes it to twice the number of possible CPUs.
#[map]
pub static SCRATCH: Array<Scratch> = Array::with_max_entries(1024, 0);

#[repr(C)]
pub struct Scratch {
    pub hdr: ChunkHeader,
    pub data: [u8; CHUNK_DATA_MAX],
    /// Loop state of the call being emitted (not sent).
    pub cursor: Cursor,
}

/// The record loop's state. It lives in the scratch map value and is read and written with
/// volatile accesses: the verifier does not track map memory, so every iteration starts from
/// the same (unknown) state and the paths through one iteration converge at the next. Kept in
/// registers instead, each branch would double the paths explored and the program would exceed
/// the verifier's 1M-instruction budget.
#[repr(C)]
pub struct Cursor {
    pub(crate) sent: u64,
    pub(crate) capture_len: u64,
    /// Bytes of the call already covered by records.
    pub(crate) done: u64,
    /// The current segment: `[seg_ptr, seg_ptr + seg_left)`.
    pub(crate) seg_ptr: u64,
    pub(crate) seg_left: u64,
    /// Index of the next iovec to read.
    pub(crate) seg_next: u64,
    pub(crate) call_pos: u64,
    pub(crate) base_flags: u64,
    /// Set when the loop must stop after the current record.
    pub(crate) finished: u64,
}

/// Per socket (by inode): next stream position and records lost since the last delivered.
#[map]
pub static SOCK_STATE: LruHashMap<u64, SockState> = LruHashMap::with_max_entries(65536, 0);

/// Per selected socket (`struct sock *`): the socket fields of its records as `socket::select`
/// filled them on its first send, with the side flag in `flags`. Each later send costs this one
/// lookup instead of the dentry, inode and name reads (see `socket::select`). Only positive
/// decisions are kept; an entry is used only while the socket's inode number and peer are
/// still the ones it was made for, so a freed and reused `struct sock` or a datagram socket
/// connected elsewhere is decided again. LRU: an evicted socket is simply decided again.
#[map]
pub static SELECTION: LruHashMap<u64, ChunkHeader> = LruHashMap::with_max_entries(8192, 0);

/// Per thread (pid_tgid): what a send call is about to send, recorded at its entry and used when
/// it returns. LRU, so entries of threads killed mid-call cannot pile up.
#[map]
pub static STASH: LruHashMap<u64, Stash> = LruHashMap::with_max_entries(65536, 0);

/// Name patterns, indexed like the user's socket arguments; `PATTERN_COUNT` of them are valid.
#[map]
pub static PATTERNS: Array<PathPattern> = Array::with_max_entries(MAX_PATTERNS, 0);

/// Socket files selected by identity (`s_dev`, `i_ino`, `i_generation`: see `FileKey`) -> index
/// of the pattern that selected them. User space keeps it current as sockets are created,
/// replaced and removed: an identity whose file is gone is deleted at the next rescan.
#[map]
pub static SELECTED_FILES: HashMap<FileKey, u32> = HashMap::with_max_entries(MAX_SELECTED_FILES, 0);

/// Directories selected by identity -> bit mask of the `PATTERN_BASENAME` patterns that their
/// entries' names are compared with (an exact path's last component, or a prefix).
#[map]
pub static SELECTED_DIRS: HashMap<FileKey, u32> = HashMap::with_max_entries(MAX_SELECTED_DIRS, 0);

/// Existing directories whose selected subdirectory does not exist yet (by identity) -> bit
/// mask of the `PATTERN_AWAITED_DIR` patterns naming those subdirectories. A socket bound in
/// such a subdirectory as soon as it is created is selected from its first byte, before the
/// rescan that selects the new directory itself (see `socket::select_awaited`).
#[map]
pub static AWAITED_DIRS: HashMap<FileKey, u32> = HashMap::with_max_entries(MAX_PATTERNS, 0);

/// `[0]`: the number of `AWAITED_DIRS` entries; only while it is non-zero is a socket's
/// grandparent looked up. Written by user space.
#[map]
pub static AWAITED_COUNT: Array<u32> = Array::with_max_entries(1, 0);

/// `[0]`: how many keys of `SELECTED_FILES` and `SELECTED_DIRS` have no generation (file systems
/// whose generation user space cannot read); only while it is non-zero are keys looked up a
/// second time without the generation. Written by user space.
#[map]
pub static GENERATIONLESS: Array<u32> = Array::with_max_entries(1, 0);

/// Drop and activity counters, per CPU.
#[map]
pub static DROPS: PerCpuArray<DropCounters> = PerCpuArray::with_max_entries(1, 0);

/// Where the bytes of a send call are.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Stash {
    /// `struct sock *`: kprobe backend, from the entry; tracepoint backend, set by
    /// `sock_send_length` when it ran for the call (0 until then).
    pub sk: u64,
    /// User buffer, or iovec array (user or kernel memory, see `kind`).
    pub ptr: u64,
    /// Bytes to skip at the start of the first segment (`iov_iter.iov_offset`).
    pub skip: u64,
    pub kind: u32,
    /// Number of iovecs.
    pub nr_segs: u32,
    /// The file descriptor written to (tracepoint backend).
    pub fd: u32,
    pub _pad: u32,
}

/// `Stash.kind`: one user buffer (write, sendto, ITER_UBUF).
pub const STASH_USER_BUF: u32 = 1;
/// An iovec array in user memory (writev, sendmsg as seen at syscall entry).
pub const STASH_USER_IOV: u32 = 2;
/// An iovec array in kernel memory (ITER_IOVEC: the kernel's copy made by import_iovec).
pub const STASH_KERNEL_IOV: u32 = 3;
/// An iov_iter flavour with no user pointer (KVEC, BVEC/splice, ...).
pub const STASH_UNSUPPORTED: u32 = 4;

#[inline(always)]
pub fn count_drop(f: impl FnOnce(&mut DropCounters)) {
    if let Some(c) = DROPS.get_ptr_mut(0) {
        // SAFETY: the pointer comes from the map lookup and is this CPU's slot.
        f(unsafe { &mut *c });
    }
}
