//! Record emission, shared by both backends: copies exactly the bytes a send call reported as
//! sent into ring-buffer records of at most `CHUNK_DATA_MAX` payload bytes each, and gives every
//! record its position in the sender's direction stream, so that user space can see any gap.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_smp_processor_id,
    bpf_ktime_get_ns, bpf_probe_read_kernel_buf,
    generated::{bpf_probe_read_kernel, bpf_probe_read_user},
};
use containerdsnoop_common::{
    CHUNK_DATA_MAX, CHUNK_HEADER_LEN, ChunkHeader, MAX_IOV_SEGMENTS, MAX_RECORDS_PER_CALL,
    SockState, flags,
};

use core::ffi::c_void;

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};

use aya_ebpf::helpers::generated::bpf_loop;

use crate::{
    kernel::{MAX_CALL_BYTES, layout, read_u64},
    maps::{
        Cursor, EVENTS, SCRATCH, SOCK_STATE, STASH_KERNEL_IOV, STASH_UNSUPPORTED, STASH_USER_BUF,
        STASH_USER_IOV, Scratch, Stash, count_drop,
    },
    socket,
};

macro_rules! get {
    ($c:expr, $f:ident) => {
        // SAFETY: `$c` points into this CPU's scratch slot.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$c).$f)) }
    };
}
macro_rules! set {
    ($c:expr, $f:ident, $v:expr) => {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*$c).$f), $v) }
    };
}

/// Which `SCRATCH` slot of the current CPU a program uses.
#[derive(Clone, Copy)]
pub enum Slot {
    /// Programs that run with preemption disabled (kprobes, syscall tracepoints): one of them
    /// at a time per CPU.
    Atomic = 0,
    /// Raw tracepoint programs. From Linux 7.0 (tracepoints guarded by SRCU-fast) they run with
    /// migration disabled but preemptible: a syscall tracepoint of another task can run on the
    /// same CPU while one of them is halfway through a record, so they get their own slot. (The
    /// kernel never runs one raw tracepoint program twice at once on a CPU: it skips the nested
    /// run and counts it in the program's `recursion_misses`; see `tracepoint::sys_exit_send`.)
    Preemptible = 1,
}

/// Emits the records of one send call on `sk` that sent `sent` bytes, whose data `stash`
/// describes. Returns false when the socket is not selected (nothing emitted). `stash` is
/// called only for a selected socket: finding the buffers can cost reads that the sends of
/// every other socket on the host should not pay.
///
/// `BPF_LOOP`: the record loop runs as a `bpf_loop` callback (5.17+), which the verifier checks
/// about once; without it, as a bounded loop checked round by round. A program must be built
/// with one or the other: the callback is a BTF-described subprogram that kernels before 5.13
/// reject ("number of funcs in func_info doesn't match number of subprogs") even when unused.
#[inline(always)]
pub fn emit_call<const BPF_LOOP: bool>(
    sk: u64,
    sent: u32,
    stash: impl FnOnce() -> Stash,
    backend: u32,
    slot: Slot,
) -> bool {
    // SAFETY: no preconditions; returns the current CPU id.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu * 2 + slot as u32) else {
        return false;
    };
    // SAFETY: the pointer is this CPU's slot of the map for this kind of program (see `Slot`).
    let side_flag = match socket::select_cached(sk, unsafe { &mut (*scratch).hdr }) {
        Some(f) => f,
        None => return false,
    };
    // SAFETY: as above.
    fill_task(unsafe { &mut (*scratch).hdr });
    count_drop(|c| c.sends += 1);

    // SAFETY: as above.
    let ino = unsafe { (*scratch).hdr.sock_ino };
    let state = match SOCK_STATE.get_ptr_mut(ino) {
        Some(s) => s,
        None => {
            let _ = SOCK_STATE.insert(ino, SockState::default(), 0);
            match SOCK_STATE.get_ptr_mut(ino) {
                Some(s) => s,
                None => return true,
            }
        }
    };
    // Reserve this call's range of the stream. Go serialises writes per fd, so a plain
    // read-modify-write is enough; racing writers on one socket would show up as an overlap.
    // SAFETY: pointer from the map lookup, valid for this program run.
    let call_pos = unsafe { (*state).next_pos };
    // SAFETY: as above.
    unsafe { (*state).next_pos = call_pos + sent as u64 };

    let stash = &stash();
    let max_call = MAX_CALL_BYTES.load();
    let capture_len = if sent < max_call { sent } else { max_call };
    let kind = stash.kind;
    let payload_kind = kind == STASH_USER_BUF || kind == STASH_USER_IOV || kind == STASH_KERNEL_IOV;
    let mut base_flags = backend | side_flag;
    if kind == STASH_UNSUPPORTED {
        base_flags |= flags::NO_PAYLOAD | flags::UNSUPPORTED_ITER;
    } else if !payload_kind {
        base_flags |= flags::NO_PAYLOAD;
    }

    // SAFETY: as above.
    let cur: *mut Cursor = unsafe { core::ptr::addr_of_mut!((*scratch).cursor) };
    set!(cur, sent, sent as u64);
    set!(
        cur,
        capture_len,
        if payload_kind { capture_len as u64 } else { 0 }
    );
    set!(cur, done, 0);
    set!(cur, call_pos, call_pos);
    set!(cur, base_flags, base_flags as u64);
    set!(cur, finished, 0);
    set!(cur, seg_next, 0);
    if kind == STASH_USER_BUF {
        set!(cur, seg_ptr, stash.ptr + stash.skip);
        set!(cur, seg_left, sent as u64);
    } else {
        set!(cur, seg_ptr, 0);
        set!(cur, seg_left, 0);
    }

    if BPF_LOOP {
        let mut ctx = LoopCtx {
            scratch,
            cur,
            state,
            stash: *stash,
        };
        // SAFETY: `emit_step` is a static callback and `ctx` outlives the call; the verifier
        // checks both.
        let rounds = unsafe {
            bpf_loop(
                MAX_RECORDS_PER_CALL,
                emit_step as *mut c_void,
                &mut ctx as *mut LoopCtx as *mut c_void,
                0,
            )
        };
        if rounds < MAX_RECORDS_PER_CALL as i64 {
            return true;
        }
    } else {
        let mut round: u32 = 0;
        while round < MAX_RECORDS_PER_CALL {
            round += 1;
            if !emit_next(scratch, cur, state, stash) {
                return true;
            }
        }
    }
    // Out of loop rounds: one payload-less record covers the rest, so the position stays exact.
    let done = get!(cur, done);
    let sent = get!(cur, sent);
    if done < sent {
        emit_record(scratch, state, cur, done, sent - done, 0, flags::TRUNCATED);
    }
    true
}

/// What `emit_step` needs, passed through `bpf_loop`'s context pointer.
#[repr(C)]
struct LoopCtx {
    scratch: *mut Scratch,
    cur: *mut Cursor,
    state: *mut SockState,
    stash: Stash,
}

/// One round of the record loop as a `bpf_loop` callback: 0 to continue, 1 to stop.
#[inline(never)]
extern "C" fn emit_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the LoopCtx that emit_call passed to bpf_loop, alive for the loop.
    let ctx = unsafe { &*(ctx as *const LoopCtx) };
    if emit_next(ctx.scratch, ctx.cur, ctx.state, &ctx.stash) {
        0
    } else {
        1
    }
}

/// Emits the next record of the call; returns false when the call is fully covered.
#[inline(always)]
fn emit_next(
    scratch: *mut Scratch,
    cur: *mut Cursor,
    state: *mut SockState,
    stash: &Stash,
) -> bool {
    let sent = get!(cur, sent);
    let done = get!(cur, done);
    if done >= sent || get!(cur, finished) != 0 {
        return false;
    }
    let rest = sent - done;
    let capture_len = get!(cur, capture_len);
    if done >= capture_len {
        // Past the cap (or no payload at all): one record covers the rest.
        let reason = if capture_len == 0 {
            0
        } else {
            flags::TRUNCATED
        };
        emit_record(scratch, state, cur, done, rest, 0, reason);
        return false;
    }
    let mut seg_left = get!(cur, seg_left);
    let mut seg_ptr = get!(cur, seg_ptr);
    if seg_left == 0 {
        // Advance to the next iovec; a zero-length one takes a round.
        let seg_next = get!(cur, seg_next);
        if stash.kind == STASH_USER_BUF
            || seg_next >= stash.nr_segs as u64
            || seg_next >= MAX_IOV_SEGMENTS as u64
        {
            emit_record(scratch, state, cur, done, rest, 0, flags::TRUNCATED);
            return false;
        }
        let Some((base, len)) = read_iovec(stash.kind, stash.ptr, seg_next as u32) else {
            emit_record(scratch, state, cur, done, rest, 0, flags::READ_FAULT);
            return false;
        };
        set!(cur, seg_next, seg_next + 1);
        let skip = if seg_next == 0 { stash.skip } else { 0 };
        if len <= skip {
            return true;
        }
        seg_ptr = base + skip;
        let avail = len - skip;
        seg_left = if avail < rest { avail } else { rest };
    }
    let mut n = seg_left;
    if n > capture_len - done {
        n = capture_len - done;
    }
    if n > CHUNK_DATA_MAX as u64 {
        n = CHUNK_DATA_MAX as u64;
    }
    let n = n as u32;
    // SAFETY: `n` <= CHUNK_DATA_MAX, the size of `data`; the helper never faults.
    let rc = unsafe {
        bpf_probe_read_user(
            core::ptr::addr_of_mut!((*scratch).data) as *mut _,
            n,
            seg_ptr as *const _,
        )
    };
    set!(cur, seg_ptr, seg_ptr + n as u64);
    set!(cur, seg_left, seg_left - n as u64);
    if rc == 0 {
        emit_record(scratch, state, cur, done, n as u64, n, 0);
    } else {
        emit_record(scratch, state, cur, done, n as u64, 0, flags::READ_FAULT);
    }
    true
}

/// Reads iovec `index` of an array in user or kernel memory: `struct iovec { void __user
/// *iov_base; __kernel_size_t iov_len; }`.
#[inline(always)]
fn read_iovec(kind: u32, array: u64, index: u32) -> Option<(u64, u64)> {
    let mut iov = [0u64; 2];
    let src = (array + index as u64 * 16) as *const _;
    // SAFETY: both helpers write at most 16 bytes into `iov` and never fault.
    let rc = unsafe {
        if kind == STASH_KERNEL_IOV {
            bpf_probe_read_kernel(iov.as_mut_ptr() as *mut _, 16, src)
        } else {
            bpf_probe_read_user(iov.as_mut_ptr() as *mut _, 16, src)
        }
    };
    if rc != 0 {
        None
    } else {
        Some((iov[0], iov[1]))
    }
}

/// Finishes the header for one record covering `[done, done + span)` of the call, sends header +
/// `cap` payload bytes, and advances the cursor.
#[inline(always)]
fn emit_record(
    scratch: *mut Scratch,
    state: *mut SockState,
    cur: *mut Cursor,
    done: u64,
    span: u64,
    cap: u32,
    extra_flags: u32,
) {
    let sent = get!(cur, sent);
    let mut record_flags = get!(cur, base_flags) as u32 | extra_flags;
    if done + span >= sent {
        record_flags |= flags::CALL_END;
    }
    // SAFETY: `scratch` and `state` point into map values owned by this program run.
    let (hdr, state) = unsafe { (&mut (*scratch).hdr, &mut *state) };
    hdr.stream_pos = get!(cur, call_pos) + done;
    hdr.call_len = sent as u32;
    hdr.chunk_off = done as u32;
    hdr.span_len = span as u32;
    hdr.cap_len = cap;
    hdr.flags = record_flags;
    hdr.lost_records = state.lost_records;
    set!(cur, done, done + span);
    let mut cap = cap;
    if cap > CHUNK_DATA_MAX as u32 {
        cap = CHUNK_DATA_MAX as u32;
    }
    let len = CHUNK_HEADER_LEN + cap as usize;
    // SAFETY: `len` is within the scratch slot (header + CHUNK_DATA_MAX bytes come first).
    let bytes = unsafe { core::slice::from_raw_parts(scratch as *const u8, len) };
    match EVENTS.output::<[u8]>(bytes, wakeup_flag(len as u64)) {
        Ok(()) => state.lost_records = 0,
        Err(_) => {
            state.lost_records += 1;
            count_drop(|c| {
                c.lost_records += 1;
                c.lost_bytes += span;
            });
        }
    }
}

/// Bytes waiting in the ring buffer at which the reader is woken at once. Below it the reader
/// is not woken (it drains on a short timer): a wakeup per small gRPC write costs the traced
/// workload a context switch per call.
const WAKEUP_BACKLOG: u64 = 512 * 1024;

/// Wakes the reader only with the record that takes the backlog past [`WAKEUP_BACKLOG`], not
/// with every record while it stays there: a wakeup is an interrupt and a task wakeup inside
/// the program (≈ 4–5 µs measured on a virtual machine, where the self-IPI exits to the
/// hypervisor), and one is enough until the reader has drained. A crossing missed by two CPUs
/// adding at once is covered by the reader's drain timer, as below the threshold.
#[inline(always)]
fn wakeup_flag(len: u64) -> u64 {
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if waiting < WAKEUP_BACKLOG && waiting + len >= WAKEUP_BACKLOG {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Sender identity: tgid/tid, thread comm and process (group leader) comm, timestamp.
#[inline(always)]
fn fill_task(hdr: &mut ChunkHeader) {
    let pid_tgid = bpf_get_current_pid_tgid();
    hdr.tgid = (pid_tgid >> 32) as u32;
    hdr.tid = pid_tgid as u32;
    // SAFETY: no preconditions.
    hdr.ts_ns = unsafe { bpf_ktime_get_ns() };
    hdr.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: bpf_get_current_task returns the current task_struct pointer.
    let task = unsafe { bpf_get_current_task() };
    let leader = read_u64(task + layout!(task_group_leader) as u64).unwrap_or(0);
    if leader != 0 {
        let src = (leader + layout!(task_comm) as u64) as *const u8;
        // SAFETY: reads 16 bytes into the 16-byte array; never faults.
        if unsafe { bpf_probe_read_kernel_buf(src, &mut hdr.process_comm) }.is_err() {
            hdr.process_comm = hdr.comm;
        }
    } else {
        hdr.process_comm = hdr.comm;
    }
}
