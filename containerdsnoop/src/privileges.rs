//! Giving up privileges once the capture runs, as tcpdump does after opening its device.
//!
//! Everything privileged happens before the programs are attached: loading maps and programs
//! (CAP_BPF, CAP_PERFMON), mounting tracefs if needed (CAP_SYS_ADMIN), opening the perf events,
//! listing open connections (sock_diag) and reading `/proc/*/fd` to name their processes. After
//! that the tracer only reads its ring buffers, which are memory-mapped already, and writes
//! to stdout and a `-w` file it already opened. So it drops every capability from its
//! effective, permitted, inheritable and ambient sets, empties its bounding set when it may,
//! and sets `no_new_privs`, so that neither it nor anything it could be tricked into executing
//! can regain them.
//!
//! One exception: reading the drop counters at exit is a `bpf(BPF_MAP_LOOKUP_ELEM)` on a map
//! the tracer already holds. Linux 6.5+ allows it without privileges; older kernels refuse every
//! `bpf()` command without CAP_BPF while `kernel.unprivileged_bpf_disabled` is set (the default
//! on most distributions). The caller passes that lookup as a probe: if it fails without
//! CAP_BPF, CAP_BPF alone is kept.

use caps::{CapSet, Capability, CapsHashSet};

/// Drops every capability; keeps CAP_BPF only if `map_read` fails without it (documented, so
/// not announced on every run). Says on stderr only when dropping failed: not fatal, the
/// capture works either way, with more privilege than it needs.
pub fn drop_after_attach(map_read: impl Fn() -> anyhow::Result<()>) {
    if let Err(e) = drop_capabilities(map_read) {
        eprintln!("containerdsnoop: could not drop capabilities after attaching: {e}");
    }
}

/// The drop itself; returns the capabilities still permitted.
fn drop_capabilities(
    map_read: impl Fn() -> anyhow::Result<()>,
) -> Result<Vec<Capability>, caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    // Bounding and ambient first, while CAP_SETPCAP may still be effective. Without it (a
    // container granted only CAP_BPF and CAP_PERFMON) the runtime has bounded the set already.
    caps::clear(None, CapSet::Ambient)?;
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)? {
        caps::clear(None, CapSet::Bounding)?;
    }
    set_no_new_privs();
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Effective)?;
    let mut keep = CapsHashSet::new();
    if map_read().is_err() && permitted.contains(&Capability::CAP_BPF) {
        keep.insert(Capability::CAP_BPF);
    }
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    let mut capabilities: Vec<Capability> = keep.into_iter().collect();
    capabilities.sort_by_key(|c| c.index());
    Ok(capabilities)
}

/// `prctl(PR_SET_NO_NEW_PRIVS)`: an execve can no longer grant privileges (setuid bits, file
/// capabilities). Best effort: it cannot fail on kernels this tracer runs on.
fn set_no_new_privs() {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes only integer arguments and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capabilities, the bounding set and no_new_privs belong to a thread: each test drops
    /// them on a thread of its own and reads that thread's `/proc/self/task/TID/status`, so the
    /// test process keeps its privileges (no fork: other test threads may hold locks).
    fn on_own_thread(
        map_read: impl Fn() -> anyhow::Result<()> + Send + 'static,
    ) -> (Result<Vec<Capability>, String>, String) {
        std::thread::spawn(move || {
            let kept = drop_capabilities(map_read).map_err(|e| e.to_string());
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
                .expect("thread status");
            (kept, status)
        })
        .join()
        .expect("thread")
    }

    fn field(status: &str, name: &str) -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(":\t"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    }

    fn is_root() -> bool {
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false)
    }

    #[test]
    fn drops_everything_when_map_reads_need_no_privilege() {
        if !is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let (kept, status) = on_own_thread(|| Ok(()));
        assert_eq!(kept, Ok(vec![]));
        for name in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
            assert_eq!(field(&status, name), 0, "{name}: {status}");
        }
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        // This thread kept its privileges.
        assert!(is_root());
    }

    #[test]
    fn keeps_only_cap_bpf_when_map_reads_need_it() {
        if !is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        // The probe runs with an empty effective set: it fails as a map lookup on a kernel
        // before 6.5 would.
        let needs_bpf = || {
            if caps::has_cap(None, CapSet::Effective, Capability::CAP_BPF).unwrap_or(true) {
                Ok(())
            } else {
                Err(anyhow::anyhow!("EPERM"))
            }
        };
        let (kept, status) = on_own_thread(needs_bpf);
        assert_eq!(kept, Ok(vec![Capability::CAP_BPF]));
        let bpf = 1u64 << Capability::CAP_BPF.index();
        assert_eq!(field(&status, "CapEff"), bpf, "{status}");
        assert_eq!(field(&status, "CapPrm"), bpf, "{status}");
        assert_eq!(field(&status, "CapBnd"), 0, "{status}");
    }
}
