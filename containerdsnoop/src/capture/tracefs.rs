//! tracefs: where the syscall tracepoints are attached through, mounted when it is missing.

use std::path::Path;

use anyhow::bail;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Syscall tracepoints are attached through tracefs ids; mount it when it is missing (a fresh
/// machine or a container often has it unmounted).
pub fn ensure_tracefs() -> anyhow::Result<()> {
    let events = Path::new(TRACEFS).join("events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS)?;
    let fstype = std::ffi::CString::new("tracefs")?;
    // SAFETY: plain mount(2) with valid NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 || !events.exists() {
        bail!(
            "tracefs is not mounted at {TRACEFS} and mounting it failed ({}): run \
             `mount -t tracefs tracefs {TRACEFS}`",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
