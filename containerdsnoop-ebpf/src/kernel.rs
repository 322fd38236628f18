//! Kernel memory access and the read-only globals that user space fills at load time: the
//! structure layout read from BTF, the tracer's own pid, and the per-call capture cap.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
};
use containerdsnoop_common::{DEFAULT_MAX_CALL_BYTES, KernelLayout};

/// Member offsets and enum values of this kernel (see `KernelLayout`).
#[unsafe(no_mangle)]
pub static LAYOUT: Global<KernelLayout> = Global::new(
    // SAFETY: KernelLayout is plain u32 fields; all-zero is a valid value (replaced at load).
    unsafe { core::mem::zeroed() },
);
/// The tracer's own tgid: never traced, so that its output cannot feed back into itself.
#[unsafe(no_mangle)]
pub static TRACER_TGID: Global<u32> = Global::new(0);
/// Most payload bytes copied per send call; the rest is reported as truncated.
#[unsafe(no_mangle)]
pub static MAX_CALL_BYTES: Global<u32> = Global::new(DEFAULT_MAX_CALL_BYTES);
/// Number of `PATTERNS` entries compared (the selectors', plus the spare slots user space
/// fills with symlink targets' names while tracing).
#[unsafe(no_mangle)]
pub static PATTERN_COUNT: Global<u32> = Global::new(0);
/// 1 when the tracepoint backend stashes send syscalls at entry (Linux 7.0+, or registers
/// unknown; see the user-space `entry_stash_needed`); 0 when `sock_send_length` reads the
/// sender's registers and the stash map is always empty, so it is not looked up.
#[unsafe(no_mangle)]
pub static ENTRY_STASH: Global<u32> = Global::new(1);
/// 1 when some pattern is an abstract name: only then are the names of sockets without a
/// file compared at all.
#[unsafe(no_mangle)]
pub static HAS_ABSTRACT: Global<u32> = Global::new(0);

/// Reads one field of [`LAYOUT`] as a usize offset (or value).
///
/// `Global::load` would copy the whole struct onto the 512-byte stack; a volatile read of the
/// one field keeps the compiler from folding the zero initialiser while loading 4 bytes.
macro_rules! layout {
    ($field:ident) => {
        // SAFETY: LAYOUT is a static (a frozen .rodata map at run time); `Global<T>` is
        // `repr(transparent)` over `MaybeUninit<T>` and always initialised.
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!(
                (*(core::ptr::addr_of!($crate::kernel::LAYOUT)
                    as *const containerdsnoop_common::KernelLayout))
                    .$field
            ))
        }
    };
}
pub(crate) use layout;

/// Whether the current task belongs to the tracer itself.
#[inline(always)]
pub fn is_tracer() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == TRACER_TGID.load()
}

#[inline(always)]
pub fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_kernel never faults; a bad address returns an error.
    unsafe { bpf_probe_read_kernel(addr as *const u64).ok() }
}

#[inline(always)]
pub fn read_u32(addr: u64) -> Option<u32> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(addr as *const u32).ok() }
}

#[inline(always)]
pub fn read_u16(addr: u64) -> Option<u16> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(addr as *const u16).ok() }
}

#[inline(always)]
pub fn read_u8(addr: u64) -> Option<u8> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(addr as *const u8).ok() }
}
