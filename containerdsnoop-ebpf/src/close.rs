//! Connection ends, seen when they happen: one small `CloseRecord` per traced socket that is
//! closed, shut down or dropped by an exiting process, stamped with that event's own time, so
//! that user space ends the connection's open calls then, not when the socket is reused or the
//! tracer stops.
//!
//! "Traced" means the socket or its peer has sent on a selected path since the tracer started:
//! its inode is in `SOCK_STATE`. Connections the tracer never saw a byte of are of no interest.
//!
//! **kprobe backend.** `unix_release` is `proto_ops.release` of every AF_UNIX socket type and
//! runs once, when the socket's last file reference goes away (`__fput` → `sock_close` →
//! `__sock_release`), whatever dropped it: close, close_range, exec, exit, SCM_RIGHTS cleanup:
//! ```c
//! static int unix_release(struct socket *sock);          // net/unix/af_unix.c, 5.4 .. 6.18
//! static int unix_shutdown(struct socket *sock, int mode); // mode = shutdown(2)'s how
//! ```
//! At entry `sock->sk` and `unix_sk(sk)->peer` are still set (`unix_release_sock` clears them).
//!
//! **tracepoint backend** (no kprobes). There is no tracepoint in the socket release path, so
//! the tracer looks at the syscalls that drop file references, before they do:
//! - `syscalls:sys_enter_close(unsigned int fd)`: the file is
//!   `current->files->fdt->fd[fd]` (`fd < fdt->max_fds`). It is the socket's end when
//!   `file->f_ref` (6.13+, `file_ref_t`: 0 = one reference) or `file->f_count` (older,
//!   `atomic_long_t`: 1 = one reference) says the fd table holds the only reference, and the file
//!   is a socket: `file->f_inode->i_mode` is `S_IFSOCK` and `file->private_data` is a
//!   `struct socket` whose `file` points back at it.
//! - `syscalls:sys_enter_shutdown(int fd, int how)`: the same walk, without the reference check.
//! - raw tracepoint `sched_process_exit(struct task_struct *p[, bool group_dead])`: `do_exit`
//!   fires it before `exit_files()` (verified in kernel/exit.c up to 6.18; 6.16 moved it before
//!   `exit_mm()`, still before `exit_files()`). When the exiting task is the last user of its fd
//!   table (`files->count == 1`), or its whole thread group is exiting (`signal->live == 0`:
//!   threads killed together each still count in `files->count` at their own tracepoint), its fd
//!   table is about to be closed: every open fd (bit set in `fdt->open_fds`) holding a traced
//!   socket's last reference is reported, with the exit's timestamp.
//!
//! Why the fd table scan at exit, and not a map from process to traced sockets filled by the
//! send path: the fd table is exactly what `exit_files()` will close, so sockets passed between
//! processes, inherited, or never written by this process are right; a scan costs one
//! `bpf_loop` round per fd slot (`max_fds`, 64 for most processes) at each process exit, and
//! nothing on the send path. Missed by this backend: `close_range(2)`, close-on-exec, `dup2`
//! over a socket fd, fds sharing one file (`dup`), and a close while another thread of the
//! process is inside a syscall on that fd (it holds a second reference: Go and grpcio wait in
//! epoll instead, so they are seen) — those connections end as before, when their socket
//! identity is reused or the tracer stops.
//!
//! All offsets come from BTF (`KernelLayout`); user space attaches these programs only when
//! every member they read was found.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    macros::{kprobe, raw_tracepoint, tracepoint},
    programs::{ProbeContext, RawTracePointContext, TracePointContext},
};
use containerdsnoop_common::{
    CLOSE_CLOSE, CLOSE_EXIT, CLOSE_RELEASE, CLOSE_SHUTDOWN, CloseRecord, EXIT_SCAN_MAX_FDS, flags,
};

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;

use crate::{
    kernel::{is_tracer, layout, read_u16, read_u32, read_u64},
    maps::{EVENTS, SELECTION, SOCK_STATE, count_drop},
};

const AF_UNIX: u16 = 1;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// Reports the end of `sock` (a `struct socket *` whose sockfs inode number is `ino`) when it or
/// its peer is traced.
#[inline(always)]
fn report(sock: u64, ino: u64, kind: u32, how: u32, backend: u32) {
    let Some(sk) = read_u64(sock + layout!(socket_sk) as u64) else {
        return;
    };
    if sk == 0 || read_u16(sk + layout!(sock_common_skc_family) as u64) != Some(AF_UNIX) {
        return;
    }
    let peer = read_u64(sk + layout!(unix_sock_peer) as u64).unwrap_or(0);
    let peer_ino = if peer != 0 { sk_inode(peer) } else { 0 };
    // SAFETY: lookups only; nothing is kept from the values.
    let traced = (ino != 0 && unsafe { SOCK_STATE.get(ino) }.is_some())
        || (peer_ino != 0 && unsafe { SOCK_STATE.get(peer_ino) }.is_some());
    if !traced {
        return;
    }
    // The socket's cached selection goes with it, so that a `struct sock` freed and given to
    // a new socket is decided afresh (it would be anyway: the cache is checked by socket inode
    // and peer; this keeps the cache to live sockets). A half-close keeps the connection.
    if kind != CLOSE_SHUTDOWN {
        let _ = SELECTION.remove(&sk);
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let record = CloseRecord {
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        sk,
        peer_sk: peer,
        sock_ino: ino,
        peer_ino,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        kind,
        how,
        flags: backend,
        _pad: 0,
    };
    match EVENTS.output::<CloseRecord>(&record, 0) {
        Ok(()) => count_drop(|c| c.closes += 1),
        Err(_) => count_drop(|c| c.lost_closes += 1),
    }
}

/// The sockfs inode number of `sk`'s socket (`sk->sk_socket`, inside `struct socket_alloc`
/// next to its inode); 0 when orphaned.
#[inline(always)]
fn sk_inode(sk: u64) -> u64 {
    match read_u64(sk + layout!(sock_sk_socket) as u64) {
        Some(sock) if sock != 0 => socket_inode(sock),
        _ => 0,
    }
}

#[inline(always)]
fn socket_inode(sock: u64) -> u64 {
    let inode = sock + layout!(socket_alloc_vfs_inode) as u64;
    read_u64(inode + layout!(inode_i_ino) as u64).unwrap_or(0)
}

// ---- kprobe backend ----

#[kprobe]
pub fn unix_release_entry(ctx: ProbeContext) -> u32 {
    if let Some(sock) = ctx.arg::<u64>(0) {
        report(
            sock,
            socket_inode(sock),
            CLOSE_RELEASE,
            0,
            flags::BACKEND_KPROBE,
        );
    }
    0
}

#[kprobe]
pub fn unix_shutdown_entry(ctx: ProbeContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    let (Some(sock), Some(mode)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    report(
        sock,
        socket_inode(sock),
        CLOSE_SHUTDOWN,
        mode as u32,
        flags::BACKEND_KPROBE,
    );
    0
}

// ---- tracepoint backend ----

/// `current->files->fdt`, or None.
#[inline(always)]
pub(crate) fn current_fdtable() -> Option<(u64, u64)> {
    // SAFETY: returns the current task_struct pointer.
    let task = unsafe { bpf_get_current_task() };
    let files = read_u64(task + layout!(task_files) as u64)?;
    if files == 0 {
        return None;
    }
    let fdt = read_u64(files + layout!(files_struct_fdt) as u64)?;
    if fdt == 0 {
        return None;
    }
    Some((files, fdt))
}

/// `fdt->fd[fd]` when `fd < fdt->max_fds`, else None.
#[inline(always)]
pub(crate) fn fd_file(fdt: u64, fd: u64) -> Option<u64> {
    let max = read_u32(fdt + layout!(fdtable_max_fds) as u64)?;
    if fd >= max as u64 {
        return None;
    }
    let array = read_u64(fdt + layout!(fdtable_fd) as u64)?;
    let file = read_u64(array + fd * 8)?;
    (file != 0).then_some(file)
}

/// Whether the caller's reference is the file's only one.
#[inline(always)]
fn last_reference(file: u64) -> bool {
    read_u64(file + layout!(file_ref) as u64) == Some(layout!(file_ref_one) as u64)
}

/// The `struct socket *` and inode number behind `file`, when it is a socket.
#[inline(always)]
pub(crate) fn file_socket(file: u64) -> Option<(u64, u64)> {
    let inode = read_u64(file + layout!(file_f_inode) as u64)?;
    if inode == 0 {
        return None;
    }
    let mode = read_u16(inode + layout!(inode_i_mode) as u64)?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let sock = read_u64(file + layout!(file_private_data) as u64)?;
    if sock == 0 || read_u64(sock + layout!(socket_file) as u64) != Some(file) {
        return None;
    }
    Some((sock, read_u64(inode + layout!(inode_i_ino) as u64)?))
}

/// Byte offset of `args[i]` in a syscall tracepoint record (see tracepoint.rs).
const fn arg(i: usize) -> usize {
    16 + 8 * i
}

/// `close(unsigned int fd)`.
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: the syscall tracepoint record has args[0..6] at these offsets.
    let Ok(fd) = (unsafe { ctx.read_at::<u64>(arg(0)) }) else {
        return 0;
    };
    let Some((_, fdt)) = current_fdtable() else {
        return 0;
    };
    let Some(file) = fd_file(fdt, fd as u32 as u64) else {
        return 0;
    };
    if !last_reference(file) {
        return 0;
    }
    if let Some((sock, ino)) = file_socket(file) {
        report(sock, ino, CLOSE_CLOSE, 0, flags::BACKEND_TRACEPOINT);
    }
    0
}

/// `shutdown(int fd, int how)`.
#[tracepoint]
pub fn sys_enter_shutdown(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: as above.
    let (Ok(fd), Ok(how)) = (unsafe { (ctx.read_at::<u64>(arg(0)), ctx.read_at::<u64>(arg(1))) })
    else {
        return 0;
    };
    let Some((_, fdt)) = current_fdtable() else {
        return 0;
    };
    let Some(file) = fd_file(fdt, fd as u32 as u64) else {
        return 0;
    };
    if let Some((sock, ino)) = file_socket(file) {
        report(
            sock,
            ino,
            CLOSE_SHUTDOWN,
            how as u32,
            flags::BACKEND_TRACEPOINT,
        );
    }
    0
}

/// State of the exit scan, passed through `bpf_loop`'s context pointer.
#[repr(C)]
struct ExitScan {
    fd_array: u64,
    open_fds: u64,
    /// The `open_fds` word of the current 64 fds.
    word: u64,
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: returns the current task_struct pointer (the exiting task).
    let task = unsafe { bpf_get_current_task() };
    let Some((files, fdt)) = current_fdtable() else {
        return 0;
    };
    let sharers = read_u32(files + layout!(files_struct_count) as u64).unwrap_or(0);
    if sharers != 1 {
        let signal = read_u64(task + layout!(task_signal) as u64).unwrap_or(0);
        let live = if signal != 0 {
            read_u32(signal + layout!(signal_live) as u64).unwrap_or(1)
        } else {
            1
        };
        if live != 0 {
            // Other threads (or a CLONE_FILES process) keep the fd table open.
            return 0;
        }
    }
    let (Some(max), Some(fd_array), Some(open_fds)) = (
        read_u32(fdt + layout!(fdtable_max_fds) as u64),
        read_u64(fdt + layout!(fdtable_fd) as u64),
        read_u64(fdt + layout!(fdtable_open_fds) as u64),
    ) else {
        return 0;
    };
    let mut slots = max;
    if slots > EXIT_SCAN_MAX_FDS {
        slots = EXIT_SCAN_MAX_FDS;
        count_drop(|c| c.exit_scans_cut += 1);
    }
    let mut scan = ExitScan {
        fd_array,
        open_fds,
        word: 0,
    };
    // SAFETY: `exit_step` is a static callback and `scan` outlives the call; the verifier
    // checks both. (The tracepoint backend needs Linux >= 6.3, which has bpf_loop.)
    unsafe {
        bpf_loop(
            slots,
            exit_step as *mut c_void,
            &mut scan as *mut ExitScan as *mut c_void,
            0,
        )
    };
    0
}

/// One fd slot of the exit scan: 0 to continue.
#[inline(never)]
extern "C" fn exit_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the ExitScan that sched_process_exit passed to bpf_loop.
    let scan = unsafe { &mut *(ctx as *mut ExitScan) };
    let bit = index & 63;
    if bit == 0 {
        scan.word = read_u64(scan.open_fds + (index >> 6) * 8).unwrap_or(0);
    }
    if (scan.word >> bit) & 1 == 0 {
        return 0;
    }
    let Some(file) = read_u64(scan.fd_array + index * 8) else {
        return 0;
    };
    if file == 0 || !last_reference(file) {
        return 0;
    }
    if let Some((sock, ino)) = file_socket(file) {
        report(sock, ino, CLOSE_EXIT, 0, flags::BACKEND_TRACEPOINT);
    }
    0
}
