//! The kprobe backend: `unix_stream_sendmsg` and `unix_dgram_sendmsg` (not seqpacket: it
//! tail-calls dgram, which would count its sends twice).
//!
//! ```c
//! static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//! static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//! ```
//! Stream sends return `sent ? : err`: a partial count when a non-blocking socket fills up, so
//! the data is copied at return, exactly `ret` bytes. The iterator advances during the call, so
//! the entry saves where the data starts (`msg->msg_iter`):
//! ```c
//! struct iov_iter { u8 iter_type; ...; size_t iov_offset;
//!     union { struct iovec __ubuf_iovec; struct { union { const struct iovec *__iov;
//!     ...; void __user *ubuf; }; size_t count; }; }; unsigned long nr_segs; ... };  // 6.4+
//! ```
//! ITER_UBUF (write(2) from 6.0; send/1-segment writev/sendmsg from 6.4) gives a user pointer;
//! ITER_IOVEC points to the kernel's copy of the user's iovec array, valid until the syscall
//! returns. Other flavours (KVEC, BVEC from splice) carry no user pointer. Before 5.14 the
//! flavour is `unsigned int type` (flavour bits | direction bit) and there is no `ubuf`; before
//! 6.4 the iovec pointer is `iov`: user space reads which from BTF (`KernelLayout`).
//!
//! The return probe comes in two builds of the same code: [`unix_sendmsg_return`] runs the
//! record loop with `bpf_loop` (5.17+), [`unix_sendmsg_return_bounded`] as a bounded loop for
//! older kernels (5.10); user space loads the one the kernel supports (see `emit::emit_call`).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use aya_log_ebpf::warn;
use containerdsnoop_common::flags;

use crate::{
    emit::{Slot, emit_call},
    kernel::{is_tracer, layout, read_u8, read_u32, read_u64},
    maps::{STASH, STASH_KERNEL_IOV, STASH_UNSUPPORTED, STASH_USER_BUF, Stash, count_drop},
};

#[kprobe]
pub fn unix_sendmsg_entry(ctx: ProbeContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    let (Some(sock), Some(msg)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    let Some(sk) = read_u64(sock + layout!(socket_sk) as u64) else {
        return 0;
    };
    let iter = msg + layout!(msghdr_msg_iter) as u64;
    let flavour = if layout!(iov_iter_type_is_u32) != 0 {
        // Before 5.14: `unsigned int type` = flavour bits | READ/WRITE direction bit.
        read_u32(iter + layout!(iov_iter_type) as u64).unwrap_or(u32::MAX) & !3
    } else {
        read_u8(iter + layout!(iov_iter_type) as u64).map_or(u32::MAX, |v| v as u32)
    };
    let skip = read_u64(iter + layout!(iov_iter_iov_offset) as u64).unwrap_or(0);
    let ubuf_off = layout!(iov_iter_ubuf);
    let mut stash = Stash {
        sk,
        ptr: 0,
        skip,
        kind: STASH_UNSUPPORTED,
        nr_segs: 0,
        fd: 0,
        _pad: 0,
    };
    if ubuf_off != u32::MAX && flavour == layout!(iter_ubuf) {
        stash.kind = STASH_USER_BUF;
        stash.ptr = read_u64(iter + ubuf_off as u64).unwrap_or(0);
    } else if flavour == layout!(iter_iovec) {
        stash.kind = STASH_KERNEL_IOV;
        stash.ptr = read_u64(iter + layout!(iov_iter_iov) as u64).unwrap_or(0);
        stash.nr_segs = read_u64(iter + layout!(iov_iter_nr_segs) as u64).unwrap_or(0) as u32;
    }
    let _ = STASH.insert(bpf_get_current_pid_tgid(), stash, 0);
    0
}

/// The return probe on kernels with `bpf_loop`.
#[kretprobe]
pub fn unix_sendmsg_return(ctx: RetProbeContext) -> u32 {
    sendmsg_return::<true>(&ctx)
}

/// The return probe on kernels without `bpf_loop` (before 5.17).
#[kretprobe]
pub fn unix_sendmsg_return_bounded(ctx: RetProbeContext) -> u32 {
    sendmsg_return::<false>(&ctx)
}

#[inline(always)]
fn sendmsg_return<const BPF_LOOP: bool>(ctx: &RetProbeContext) -> u32 {
    if is_tracer() {
        return 0;
    }
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(stash) = (unsafe { STASH.get(key) }).copied() else {
        // The entry probe did not run (kretprobe instances exhausted, or attached mid-call).
        count_drop(|c| c.missed_entries += 1);
        warn!(
            ctx,
            "send by tid {} returned without a recorded entry; its bytes are reported as a gap",
            key as u32
        );
        return 0;
    };
    let _ = STASH.remove(key);
    // `int` return value: only the low 32 bits of the register are defined.
    let ret = ctx.ret::<u64>() as i32;
    if ret <= 0 {
        return 0;
    }
    emit_call::<BPF_LOOP>(
        stash.sk,
        ret as u32,
        || stash,
        flags::BACKEND_KPROBE,
        Slot::Atomic,
    );
    0
}
