//! The tracepoint backend, for kernels where kprobes cannot attach (kernel >= 6.3).
//!
//! `sock_send_length` fires in `sock_sendmsg_nosec()` right after `sock->ops->sendmsg`:
//! ```c
//! TRACE_EVENT(sock_send_length, TP_PROTO(struct sock *sk, int ret, int flags), ...)
//! ```
//! so it has the socket and the exact count sent, for write, writev, send, sendto and sendmsg
//! alike. The user buffers come from the syscall entry tracepoints, stashed per thread:
//! ```c
//! sys_enter_write(unsigned int fd, const char *buf, size_t count)        // fd@16 buf@24 count@32
//! sys_enter_sendto(int fd, void *buff, size_t len, unsigned flags, ...)   // fd@16 buff@24 len@32
//! sys_enter_writev(unsigned long fd, const struct iovec *vec, unsigned long vlen) // vec@24 vlen@32
//! sys_enter_sendmsg(int fd, struct user_msghdr *msg, unsigned flags)       // msg@24
//! struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen; ... }
//! ```
//! (offsets in the tracepoint record: `args[i]` at 16 + 8 i on every kernel from 5.4 to 6.18;
//! `sys_exit_*(long ret)`: ret@16).
//!
//! **Registers instead of a stash.** Those entry programs run for every write of every process
//! on the host (an LRU update, and a delete at exit). Where user space knows the architecture's
//! registers and the kernel does not skip programs (below), it attaches none of them, and
//! `sock_send_length` reads the same four arguments from the sender's saved user registers:
//! ```c
//! struct task_struct *bpf_get_current_task_btf(void);          // 5.11
//! struct pt_regs *bpf_task_pt_regs(struct task_struct *task);   // 5.15
//! ```
//! (x86_64: number in `orig_ax`, arguments in `di`, `si`, `dx`; offsets from BTF, numbers from
//! user space, see `KernelLayout::pt_regs_syscall_nr`). The registers are the syscall's own
//! until it returns. A send inside another syscall (io_uring, sendmmsg, splice, kernel
//! senders) matches none of the four numbers and is reported with its length and no payload,
//! as one without a stash is.
//!
//! **Skipped runs.** From Linux 7.0 tracepoint callbacks are preemptible (guarded by SRCU-fast,
//! not by disabled preemption) and the raw tracepoint program runs with only migration disabled.
//! When a task is preempted inside `sock_send_length` and another task on that CPU sends, the
//! kernel does not run the program a second time there: it skips it and counts a
//! `recursion_misses` of the program. That send would be lost without a trace (its stream
//! position never reserved). So `sock_send_length` marks the call's stash as seen, and
//! `sys_exit_*` (non-preemptible, and not subject to the raw tracepoint's recursion guard)
//! emits any call it was skipped for: the file descriptor, stashed at entry, is walked to its
//! socket (`current->files->fdt->fd[fd]`, as `close.rs` does) and the syscall's return value is
//! the count sent. The user buffer is still there until the syscall returns. So from 7.0 the
//! entry programs are attached; `sock_send_length` still takes the buffers from the registers
//! when it knows them, and the stash only marks the call as seen. The entry and exit programs
//! can be skipped too (a perf-event tracepoint program is skipped while another one is
//! preempted on its CPU): a missing stash costs nothing then, and a stash left behind by a
//! skipped exit is never mistaken for a later call's buffers.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use containerdsnoop_common::flags;

use crate::{
    close::{current_fdtable, fd_file, file_socket},
    emit::{Slot, emit_call},
    kernel::{ENTRY_STASH, is_tracer, layout, read_u64},
    maps::{STASH, STASH_USER_BUF, STASH_USER_IOV, Stash, count_drop},
};

/// Byte offset of `args[i]` in a syscall tracepoint record.
const fn arg(i: usize) -> usize {
    16 + 8 * i
}

/// Where a send syscall's bytes are, as its arguments say (not yet seen by `sock_send_length`).
#[inline(always)]
fn user_stash(fd: u64, ptr: u64, kind: u32, nr_segs: u32) -> Stash {
    Stash {
        sk: 0,
        ptr,
        skip: 0,
        kind,
        nr_segs,
        fd: fd as u32,
        _pad: 0,
    }
}

fn stash(fd: u64, ptr: u64, kind: u32, nr_segs: u32) {
    let _ = STASH.insert(
        bpf_get_current_pid_tgid(),
        user_stash(fd, ptr, kind, nr_segs),
        0,
    );
}

/// `write(fd, buf, count)` and `sendto(fd, buff, len, ...)`: one user buffer at args[1].
#[tracepoint]
pub fn sys_enter_buf(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: the syscall tracepoint record has args[0..6] at these offsets.
    if let (Ok(fd), Ok(buf)) = unsafe { (ctx.read_at::<u64>(arg(0)), ctx.read_at::<u64>(arg(1))) } {
        stash(fd, buf, STASH_USER_BUF, 1);
    }
    0
}

/// `writev(fd, vec, vlen)`: an iovec array in user memory.
#[tracepoint]
pub fn sys_enter_writev(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: as above.
    let (Ok(fd), Ok(vec), Ok(vlen)) = (unsafe {
        (
            ctx.read_at::<u64>(arg(0)),
            ctx.read_at::<u64>(arg(1)),
            ctx.read_at::<u64>(arg(2)),
        )
    }) else {
        return 0;
    };
    stash(fd, vec, STASH_USER_IOV, vlen as u32);
    0
}

/// `sendmsg(fd, msg, flags)`: the iovec array named by the user's `struct user_msghdr`.
#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: as above.
    let (Ok(fd), Ok(msg)) = (unsafe { (ctx.read_at::<u64>(arg(0)), ctx.read_at::<u64>(arg(1))) })
    else {
        return 0;
    };
    // msg_name, msg_namelen (+pad), msg_iov, msg_iovlen.
    // SAFETY: bpf_probe_read_user never faults.
    let Ok(head) = (unsafe { bpf_probe_read_user(msg as *const [u64; 4]) }) else {
        return 0;
    };
    stash(fd, head[2], STASH_USER_IOV, head[3] as u32);
    0
}

/// Every `sys_exit_*` of the stashed syscalls: drops the stash (valid only during its syscall)
/// and emits the call if `sock_send_length` was skipped for it (see the module comment).
#[tracepoint]
pub fn sys_exit_send(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out of the map before the entry is removed.
    let Some(stash) = (unsafe { STASH.get(key) }).copied() else {
        return 0;
    };
    let _ = STASH.remove(key);
    if stash.sk != 0 {
        return 0; // sock_send_length ran for this call
    }
    // SAFETY: `long ret` follows the syscall number in every sys_exit record.
    let ret = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    if ret <= 0 {
        return 0;
    }
    // Not a socket (a file, a pipe): no sock_send_length was due.
    let Some((_, fdt)) = current_fdtable() else {
        return 0;
    };
    let Some(file) = fd_file(fdt, stash.fd as u64) else {
        return 0;
    };
    let Some((sock, _)) = file_socket(file) else {
        return 0;
    };
    let Some(sk) = read_u64(sock + layout!(socket_sk) as u64) else {
        return 0;
    };
    if emit_call::<true>(
        sk,
        ret as u32,
        || stash,
        flags::BACKEND_TRACEPOINT,
        Slot::Atomic,
    ) {
        count_drop(|c| c.late_sends += 1);
        warn!(
            &ctx,
            "sock_send_length was skipped for a {}-byte send by tid {} (preempted on its CPU); \
             captured at syscall exit",
            ret,
            key as u32
        );
    }
    0
}

/// A send whose bytes cannot be found: emitted with its length and no payload.
const NO_PAYLOAD: Stash = Stash {
    sk: 0,
    ptr: 0,
    skip: 0,
    kind: 0,
    nr_segs: 0,
    fd: 0,
    _pad: 0,
};

/// The current task's send syscall, as `sys_enter_*` would have stashed it, from its saved user
/// registers (see the module comment); `None` when the syscall is not one of the four.
#[inline(always)]
fn stash_from_registers() -> Option<Stash> {
    let nr_offset = layout!(pt_regs_syscall_nr);
    if nr_offset == u32::MAX {
        return None;
    }
    // SAFETY: both helpers only read the current task; the pt_regs pointer is read through
    // bpf_probe_read_kernel, never dereferenced.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let nr = read_u64(regs + nr_offset as u64)? as u32;
    let fd = read_u64(regs + layout!(pt_regs_arg0) as u64)?;
    let arg1 = read_u64(regs + layout!(pt_regs_arg1) as u64)?;
    let (ptr, kind, nr_segs) = if nr == layout!(nr_write) || nr == layout!(nr_sendto) {
        (arg1, STASH_USER_BUF, 1)
    } else if nr == layout!(nr_writev) {
        let vlen = read_u64(regs + layout!(pt_regs_arg2) as u64)?;
        (arg1, STASH_USER_IOV, vlen as u32)
    } else if nr == layout!(nr_sendmsg) {
        // msg_name, msg_namelen (+pad), msg_iov, msg_iovlen, as in sys_enter_sendmsg.
        // SAFETY: bpf_probe_read_user never faults.
        let head = unsafe { bpf_probe_read_user(arg1 as *const [u64; 4]) }.ok()?;
        (head[2], STASH_USER_IOV, head[3] as u32)
    } else {
        return None;
    };
    Some(user_stash(fd, ptr, kind, nr_segs))
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    let sk: u64 = ctx.arg(0);
    // `int ret`: only the low 32 bits are meaningful.
    let ret = ctx.arg::<u64>(1) as i32;
    if ret <= 0 {
        return 0;
    }
    // Where the bytes are. The registers are the current syscall's own, so they are preferred
    // whenever they are known; the stash (7.0+) then only marks the call as seen for
    // `sys_exit_send`. That also keeps a stash left behind by a skipped `sys_exit_send` from
    // ever pointing a later send at an older call's buffers.
    let mut stash = NO_PAYLOAD;
    if ENTRY_STASH.load() != 0 {
        let key = bpf_get_current_pid_tgid();
        match STASH.get_ptr_mut(key) {
            // SAFETY: pointer from the map lookup, valid for this program run; the entry is
            // this thread's, and only this thread's programs touch it.
            Some(s) if unsafe { (*s).sk } == 0 => unsafe {
                // Seen: sys_exit_* must not emit this call again.
                (*s).sk = sk;
                stash = *s;
            },
            // A second send in one syscall (or a stash whose sys_exit_send was skipped): the
            // bytes exist but we cannot tell them apart; report their length.
            Some(_) => {
                emit_call::<true>(
                    sk,
                    ret as u32,
                    || NO_PAYLOAD,
                    flags::BACKEND_TRACEPOINT,
                    Slot::Preemptible,
                );
                return 0;
            }
            // No stash: the entry program was skipped (see the module comment).
            None => {}
        }
    }
    emit_call::<true>(
        sk,
        ret as u32,
        || stash_from_registers().unwrap_or(stash),
        flags::BACKEND_TRACEPOINT,
        Slot::Preemptible,
    );
    0
}
