//! The contract between containerdsnoop's eBPF programs and user space: the ring-buffer record
//! header and its flags, the kernel structure layout read from BTF, and the socket selection
//! (socket files and directories by identity, name patterns).
//!
//! Everything here is `#[repr(C)]`, defined once and used on both sides; user space parses
//! records with length checks (`containerdsnoop::wire`), never by transmuting ring-buffer bytes.
#![no_std]

/// Bytes of a task comm (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Bytes reserved for a socket path in a record: `sun_path` is 108 bytes, rounded up to 8.
pub const PATH_LEN: usize = 112;
/// Bytes of `sockaddr_un.sun_path`.
pub const SUN_PATH_MAX: usize = 108;
/// Most payload bytes one ring-buffer record carries. grpc-go flushes 32 KiB buffers, so a
/// default gRPC write fits one record; bigger sends are split into several records.
pub const CHUNK_DATA_MAX: usize = 32 * 1024;
/// Upper bound on records emitted for one send call (the eBPF loop bound). A 4 MiB send in
/// one buffer needs 128; sends with many iovecs use one record per segment piece.
pub const MAX_RECORDS_PER_CALL: u32 = 192;
/// Most iovec segments walked for one call; bytes past them are reported as truncated.
pub const MAX_IOV_SEGMENTS: u32 = 128;
/// Most socket path patterns the kernel-side filter holds (a `u32` bit mask indexes them).
pub const MAX_PATTERNS: u32 = 16;
/// Most socket files selected by identity at once (current and replaced ones).
pub const MAX_SELECTED_FILES: u32 = 4096;
/// Most directories whose entries are selected by name at once.
pub const MAX_SELECTED_DIRS: u32 = 1024;
/// Default per-call capture cap (`--max-call-bytes`).
pub const DEFAULT_MAX_CALL_BYTES: u32 = 4 * 1024 * 1024;

/// Flags of a [`ChunkHeader`].
pub mod flags {
    /// The span has bytes past the per-call cap (or past the loop bounds) that were not copied.
    pub const TRUNCATED: u32 = 1 << 0;
    /// The payload could not be read at all (no stashed user buffer, e.g. io_uring, sendmmsg,
    /// a kernel sender), only its length is known.
    pub const NO_PAYLOAD: u32 = 1 << 1;
    /// `bpf_probe_read_user` failed (e.g. a non-resident page); the length is exact.
    pub const READ_FAULT: u32 = 1 << 2;
    /// The `iov_iter` flavour carries no user pointer (KVEC, BVEC/splice, ...).
    pub const UNSUPPORTED_ITER: u32 = 1 << 3;
    /// This is the last record of its send call.
    pub const CALL_END: u32 = 1 << 4;
    /// Captured by the kprobe/kretprobe backend.
    pub const BACKEND_KPROBE: u32 = 1 << 8;
    /// Captured by the tracepoint backend (`sock_send_length` + syscall tracepoints).
    pub const BACKEND_TRACEPOINT: u32 = 1 << 9;
    /// The matched path is the peer socket's bound address (else the socket's own).
    pub const PATH_IS_PEER: u32 = 1 << 10;
}

/// Header of every ring-buffer record; `cap_len` payload bytes follow it.
///
/// A record covers the sender's direction stream range `[stream_pos, stream_pos + span_len)`.
/// Only the first `cap_len` bytes of that range are present; the rest is missing for the reason
/// given in `flags`. Records of one call tile `[stream_pos - chunk_off, ... + call_len)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ChunkHeader {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the send returned.
    pub ts_ns: u64,
    /// Inode number of the sending socket (sockfs).
    pub sock_ino: u64,
    /// Inode number of its peer socket, 0 when unconnected.
    pub peer_ino: u64,
    /// Position of this record's first byte in the sender's direction stream.
    pub stream_pos: u64,
    /// Bytes the send call reported as sent (its return value).
    pub call_len: u32,
    /// Offset of this record's span within the call.
    pub chunk_off: u32,
    /// Stream bytes this record covers.
    pub span_len: u32,
    /// Payload bytes that follow the header (`<= span_len`).
    pub cap_len: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Sender's process id (tgid) and thread id.
    pub tgid: u32,
    pub tid: u32,
    /// Peer process id from `sk_peer_pid` (SO_PEERCRED semantics), 0 when unknown.
    pub peer_tgid: u32,
    /// Records on this socket that the ring buffer refused since the previous record got out.
    pub lost_records: u32,
    /// Bytes of `path` in use (0: unnamed).
    pub path_len: u16,
    /// Index of the pattern that selected this socket.
    pub pattern: u8,
    pub _pad0: u8,
    /// `socket.type`: 1 stream, 2 dgram, 5 seqpacket.
    pub sock_type: u16,
    pub _pad1: [u8; 6],
    /// Sending thread's comm, and its process (group leader) comm.
    pub comm: [u8; COMM_LEN],
    pub process_comm: [u8; COMM_LEN],
    /// The matched socket path as in `sun_path` (abstract names start with NUL).
    pub path: [u8; PATH_LEN],
    /// The sending `struct sock *` and its peer's (0 when unconnected). They identify the
    /// connection from its first byte: a server-side socket gets its inode only at `accept()`,
    /// after the client may already have written. User space never prints them.
    pub sk: u64,
    pub peer_sk: u64,
}

pub const CHUNK_HEADER_LEN: usize = core::mem::size_of::<ChunkHeader>();
const _: () = assert!(CHUNK_HEADER_LEN == 240);
const _: () = assert!(CHUNK_HEADER_LEN.is_multiple_of(8));

/// A name pattern of the kernel-side filter; `kind` says what it is compared with.
///
/// - [`PATTERN_BASENAME`]: the name of a socket file's directory entry (`dentry.d_name`, no NUL)
///   in a directory selected by identity (`SELECTED_DIRS`). Exact: the whole name; prefix: its
///   first `match_len` bytes (0 for `dir/*`: every entry).
/// - [`PATTERN_ABSTRACT`]: `unix_address.name`'s `sun_path` of an abstract socket (first byte
///   NUL), which has no file and so no identity.
/// - [`PATTERN_AWAITED_DIR`]: the name of a selected directory that did not exist at the last
///   rescan, compared with the name of a socket's directory whose own parent is selected in
///   `AWAITED_DIRS`; on a match, the socket's name is compared with the patterns in `entries`.
///
/// A name matches when `len >= match_len`, its first `match_len` bytes equal `bytes` (compared a
/// word at a time under `mask`, 0xff for the first `match_len` bytes and 0 after), and, when
/// `exact` is set, `len == match_len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathPattern {
    pub bytes: [u8; PATH_LEN],
    pub mask: [u8; PATH_LEN],
    pub match_len: u32,
    pub exact: u32,
    pub kind: u32,
    /// [`PATTERN_AWAITED_DIR`] only: bit mask of the [`PATTERN_BASENAME`] patterns the names of
    /// that directory's entries are compared with (0 for other kinds).
    pub entries: u32,
}
const _: () = assert!(core::mem::size_of::<PathPattern>() == 240);

/// [`PathPattern::kind`]: an unused slot (e.g. a path whose last component has no name).
pub const PATTERN_NONE: u32 = 0;
/// [`PathPattern::kind`]: compared with directory entry names in selected directories.
pub const PATTERN_BASENAME: u32 = 1;
/// [`PathPattern::kind`]: compared with abstract socket names.
pub const PATTERN_ABSTRACT: u32 = 2;
/// [`PathPattern::kind`]: the name of a selected directory not created yet (see above).
pub const PATTERN_AWAITED_DIR: u32 = 3;

/// The identity of a file as the kernel sees it, exact for as long as the tracer runs:
/// `inode->i_sb->s_dev` (kernel `dev_t`, `MKDEV(major, minor)` = `major << 20 | minor`, not the
/// `st_dev` encoding of stat(2)), `inode->i_ino` and `inode->i_generation`. An inode number is
/// handed out again as soon as its file is gone (ext4 and xfs do so at once); the generation is
/// what tells the new file from the old one (NFS file handles rely on it), and ext4, xfs, btrfs
/// and tmpfs set it anew for every inode they allocate.
///
/// Where user space cannot learn a file's generation (a file system whose file handles it does
/// not know), the key has `generation_known == 0` and `generation == 0`, and the kernel
/// compares such keys by device and inode alone (see `containerdsnoop-ebpf/src/socket.rs`).
///
/// Key of `SELECTED_FILES` (value: pattern index) and `SELECTED_DIRS` (value: a bit mask of the
/// [`PATTERN_BASENAME`] patterns that apply to the directory's entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u32,
    pub generation: u32,
    pub ino: u64,
    /// 1: `generation` is the file's generation; 0: unknown (`generation` is 0, matches any).
    pub generation_known: u32,
    pub _pad: u32,
}

impl FileKey {
    /// The key of a file whose generation is known.
    pub const fn exact(dev: u32, ino: u64, generation: u32) -> FileKey {
        FileKey {
            dev,
            generation,
            ino,
            generation_known: 1,
            _pad: 0,
        }
    }

    /// The key of a file whose generation is unknown: it matches any generation.
    pub const fn any_generation(dev: u32, ino: u64) -> FileKey {
        FileKey {
            dev,
            generation: 0,
            ino,
            generation_known: 0,
            _pad: 0,
        }
    }

    /// This key with its generation forgotten (how the kernel looks up the keys of file
    /// systems whose generation user space cannot read).
    pub const fn without_generation(self) -> FileKey {
        FileKey::any_generation(self.dev, self.ino)
    }
}
const _: () = assert!(core::mem::size_of::<FileKey>() == 24);

/// Byte offsets of kernel structure members and enum values, read from BTF in user space and
/// passed to the programs as one read-only global. `u32::MAX` marks "absent in this kernel".
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    // struct msghdr / struct iov_iter (kprobe backend)
    pub msghdr_msg_iter: u32,
    /// Offset of the flavour field: `iter_type` (u8, >= 5.14) or `type` (u32, older).
    pub iov_iter_type: u32,
    /// 1 when the flavour field is the old `unsigned int type` with direction bits.
    pub iov_iter_type_is_u32: u32,
    pub iov_iter_iov_offset: u32,
    pub iov_iter_count: u32,
    /// `iov`/`__iov` (the iovec pointer) and `ubuf`; `ubuf` is u32::MAX before 6.0.
    pub iov_iter_iov: u32,
    pub iov_iter_ubuf: u32,
    pub iov_iter_nr_segs: u32,
    /// `enum iter_type` values (old kernels: the bit values, direction bit masked off).
    pub iter_ubuf: u32,
    pub iter_iovec: u32,
    // struct sock / unix_sock / unix_address
    pub sock_common_skc_family: u32,
    pub sock_sk_socket: u32,
    pub sock_sk_peer_pid: u32,
    pub unix_sock_addr: u32,
    pub unix_sock_peer: u32,
    pub unix_address_len: u32,
    /// Offset of `sun_path` from the start of `unix_address` (name + offsetof(sun_path)).
    pub unix_address_sun_path: u32,
    // struct socket / socket_alloc / inode
    pub socket_type: u32,
    pub socket_sk: u32,
    pub socket_alloc_vfs_inode: u32,
    pub inode_i_ino: u32,
    // the bound socket file: unix_sock.path.dentry, its inode, directory and name
    pub unix_sock_path_dentry: u32,
    pub dentry_d_inode: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name_len: u32,
    pub dentry_d_name_name: u32,
    pub inode_i_sb: u32,
    /// `inode.i_generation` (`__u32`): with `i_ino`, a file's identity (see [`FileKey`]).
    pub inode_i_generation: u32,
    pub super_block_s_dev: u32,
    // struct pid / upid
    pub pid_numbers: u32,
    pub upid_nr: u32,
    // struct task_struct (process comm via group_leader)
    pub task_group_leader: u32,
    pub task_comm: u32,
    // Connection ends on the tracepoint backend (`close.rs`): the fd table walk
    // `task->files->fdt->fd[fd]`, the file's reference count and the socket behind it, and
    // whether the exiting task's thread group is dead. `u32::MAX` when missing: user space then
    // leaves close detection off on that backend (see `close_fields_present`).
    pub task_files: u32,
    pub task_signal: u32,
    /// `signal_struct.live`: threads of the group not yet exiting (`atomic_t`).
    pub signal_live: u32,
    /// `files_struct.count` (`atomic_t`): tasks sharing the fd table.
    pub files_struct_count: u32,
    pub files_struct_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub fdtable_open_fds: u32,
    /// `file.f_ref` (`file_ref_t`, 6.13+) or `file.f_count` (`atomic_long_t`), read as a u64.
    pub file_ref: u32,
    /// The value of that counter when exactly one reference is held: 0 for `file_ref_t`
    /// (`FILE_REF_ONEREF`), 1 for `atomic_long_t f_count`.
    pub file_ref_one: u32,
    pub file_private_data: u32,
    pub file_f_inode: u32,
    pub inode_i_mode: u32,
    pub socket_file: u32,
    // The sender's syscall, read from its saved user registers (`bpf_task_pt_regs`) by the
    // tracepoint backend instead of stashing every write at syscall entry: the `struct pt_regs`
    // members holding the syscall number and its first three arguments, and this
    // architecture's numbers of the four send syscalls. `u32::MAX` where user space does not
    // know the architecture's registers; the entry stash is then used (see
    // `registers_fields_present`).
    pub pt_regs_syscall_nr: u32,
    pub pt_regs_arg0: u32,
    pub pt_regs_arg1: u32,
    pub pt_regs_arg2: u32,
    pub nr_write: u32,
    pub nr_writev: u32,
    pub nr_sendto: u32,
    pub nr_sendmsg: u32,
}

impl KernelLayout {
    /// Whether `sock_send_length` can find the sender's buffers in its saved registers.
    pub fn registers_fields_present(&self) -> bool {
        [
            self.pt_regs_syscall_nr,
            self.pt_regs_arg0,
            self.pt_regs_arg1,
            self.pt_regs_arg2,
            self.nr_write,
            self.nr_writev,
            self.nr_sendto,
            self.nr_sendmsg,
        ]
        .iter()
        .all(|&v| v != u32::MAX)
    }

    /// Whether every field the fd-to-socket walk needs was found (`current->files->fdt->fd[fd]`,
    /// the file's inode mode and its `struct socket`): the tracepoint backend's fallback for
    /// sends its raw tracepoint was skipped for.
    pub fn fd_walk_fields_present(&self) -> bool {
        [
            self.task_files,
            self.files_struct_fdt,
            self.fdtable_max_fds,
            self.fdtable_fd,
            self.file_private_data,
            self.file_f_inode,
            self.inode_i_mode,
            self.socket_file,
        ]
        .iter()
        .all(|&v| v != u32::MAX)
    }

    /// Whether every field the close/shutdown/exit tracepoints need was found.
    pub fn close_fields_present(&self) -> bool {
        [
            self.task_files,
            self.task_signal,
            self.signal_live,
            self.files_struct_count,
            self.files_struct_fdt,
            self.fdtable_max_fds,
            self.fdtable_fd,
            self.fdtable_open_fds,
            self.file_ref,
            self.file_ref_one,
            self.file_private_data,
            self.file_f_inode,
            self.inode_i_mode,
            self.socket_file,
        ]
        .iter()
        .all(|&v| v != u32::MAX)
    }
}

/// Drop counters kept per CPU by the programs; user space sums them.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct DropCounters {
    /// Records the ring buffer refused.
    pub lost_records: u64,
    /// Stream bytes those records covered.
    pub lost_bytes: u64,
    /// Sends whose kretprobe fired without a stashed entry (kretprobe maxactive exhausted).
    pub missed_entries: u64,
    /// Sends of matched sockets seen in total.
    pub sends: u64,
    /// Connection-end records ([`CloseRecord`]) delivered, and refused by the ring buffer.
    pub closes: u64,
    pub lost_closes: u64,
    /// Exiting processes whose fd table was larger than the exit scan covers
    /// (`EXIT_SCAN_MAX_FDS`): sockets past it are not reported as closed at exit.
    pub exit_scans_cut: u64,
    /// Sends of selected sockets for which the kernel skipped the `sock_send_length` program
    /// (tracepoint backend, Linux 7.0+: the program was preempted on that CPU), emitted at
    /// syscall exit instead. Not a loss; counted to show the fallback at work.
    pub late_sends: u64,
}

/// Per-socket state: the next stream position and records lost since the last one delivered.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SockState {
    pub next_pos: u64,
    pub lost_records: u32,
    pub _pad: u32,
}

/// A connection end, in the same ring buffer as the data records. Told apart from them by its
/// length: a data record is at least [`CHUNK_HEADER_LEN`] bytes, this one exactly
/// [`CLOSE_RECORD_LEN`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseRecord {
    /// `bpf_ktime_get_ns()` at the close, shutdown, release or exit itself.
    pub ts_ns: u64,
    /// The ending `struct sock *` and its peer's (0 when unconnected), as in [`ChunkHeader`].
    pub sk: u64,
    pub peer_sk: u64,
    pub sock_ino: u64,
    pub peer_ino: u64,
    /// The task that closed it (for exits: the exiting task; for releases: whoever dropped the
    /// last reference, possibly a kernel worker).
    pub tgid: u32,
    pub tid: u32,
    /// One of the `CLOSE_*` kinds.
    pub kind: u32,
    /// `shutdown(2)`'s `how` (`SHUT_RD` 0, `SHUT_WR` 1, `SHUT_RDWR` 2); 0 for other kinds.
    pub how: u32,
    /// `flags::BACKEND_*`.
    pub flags: u32,
    pub _pad: u32,
}

pub const CLOSE_RECORD_LEN: usize = core::mem::size_of::<CloseRecord>();
const _: () = assert!(CLOSE_RECORD_LEN == 64);
const _: () = assert!(CLOSE_RECORD_LEN < CHUNK_HEADER_LEN);

/// `CloseRecord.kind`: the socket's last reference went away (`unix_release`, kprobe backend).
pub const CLOSE_RELEASE: u32 = 1;
/// `close(2)` of the last file descriptor referring to the socket (tracepoint backend).
pub const CLOSE_CLOSE: u32 = 2;
/// `shutdown(2)` (both backends; `how` says which directions).
pub const CLOSE_SHUTDOWN: u32 = 3;
/// The last task using an fd table exits while it holds the socket's last reference
/// (tracepoint backend).
pub const CLOSE_EXIT: u32 = 4;
/// Most file descriptors the exit scan looks at per exiting process.
pub const EXIT_SCAN_MAX_FDS: u32 = 1 << 16;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data `#[repr(C)]` structs with explicit padding and no pointers; any bit
    // pattern is a valid value.
    unsafe impl aya::Pod for KernelLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PathPattern {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DropCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SockState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FileKey {}
}
