//! containerdsnoop's eBPF programs: two capture backends that deliver the bytes sent over the
//! selected unix sockets to user space through one ring buffer.
//!
//! - [`kprobe`]: kprobe + kretprobe on `unix_stream_sendmsg` / `unix_dgram_sendmsg` (the
//!   product's design; needs a kernel with kprobes).
//! - [`tracepoint`]: raw tracepoint `sock_send_length` (kernel >= 6.3) with the user buffers
//!   stashed by `syscalls:sys_enter_{write,writev,sendto,sendmsg}`.
//!
//! Both share socket selection ([`socket`]) and record emission ([`emit`]). Kernel structure
//! offsets come from BTF through the globals in [`kernel`]: nothing here hard-codes a layout.
#![no_std]
#![no_main]

mod close;
mod emit;
mod kernel;
mod kprobe;
mod maps;
mod socket;
mod tracepoint;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}

// The programs read kernel memory with GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
