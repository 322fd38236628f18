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
//! (offsets in the tracepoint record: `args[i]` at 16 + 8 i on every kernel from 5.4 to 6.18).
//! Sends with no stash (io_uring, sendmmsg, splice, kernel senders) are reported with their
//! length and no payload.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use containerdsnoop_common::flags;

use crate::{
    emit::emit_call,
    kernel::is_tracer,
    maps::{STASH, STASH_USER_BUF, STASH_USER_IOV, Stash},
};

/// Byte offset of `args[i]` in a syscall tracepoint record.
const fn arg(i: usize) -> usize {
    16 + 8 * i
}

fn stash(ptr: u64, kind: u32, nr_segs: u32) {
    let stash = Stash {
        sk: 0,
        ptr,
        skip: 0,
        kind,
        nr_segs,
    };
    let _ = STASH.insert(bpf_get_current_pid_tgid(), stash, 0);
}

/// `write(fd, buf, count)` and `sendto(fd, buff, len, ...)`: one user buffer at args[1].
#[tracepoint]
pub fn sys_enter_buf(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: the syscall tracepoint record has args[0..6] at these offsets.
    if let Ok(buf) = unsafe { ctx.read_at::<u64>(arg(1)) } {
        stash(buf, STASH_USER_BUF, 1);
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
    let (Ok(vec), Ok(vlen)) = (unsafe { (ctx.read_at::<u64>(arg(1)), ctx.read_at::<u64>(arg(2))) })
    else {
        return 0;
    };
    stash(vec, STASH_USER_IOV, vlen as u32);
    0
}

/// `sendmsg(fd, msg, flags)`: the iovec array named by the user's `struct user_msghdr`.
#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    // SAFETY: as above.
    let Ok(msg) = (unsafe { ctx.read_at::<u64>(arg(1)) }) else {
        return 0;
    };
    // msg_name, msg_namelen (+pad), msg_iov, msg_iovlen.
    // SAFETY: bpf_probe_read_user never faults.
    let Ok(head) = (unsafe { bpf_probe_read_user(msg as *const [u64; 4]) }) else {
        return 0;
    };
    stash(head[2], STASH_USER_IOV, head[3] as u32);
    0
}

/// Every `sys_exit_*` of the stashed syscalls: the stash is only valid during its syscall.
#[tracepoint]
pub fn sys_exit_send(_ctx: TracePointContext) -> u32 {
    let _ = STASH.remove(bpf_get_current_pid_tgid());
    0
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
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out of the map.
    let stash = match unsafe { STASH.get(key) } {
        Some(s) => *s,
        // No stash: the bytes exist but we cannot see them; report their length.
        None => Stash {
            sk: 0,
            ptr: 0,
            skip: 0,
            kind: 0,
            nr_segs: 0,
        },
    };
    emit_call(sk, ret as u32, &stash, flags::BACKEND_TRACEPOINT);
    0
}
