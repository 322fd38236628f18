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

/// What is left after [`drop_after_attach`].
#[derive(Debug, PartialEq, Eq)]
pub struct Kept {
    /// Capabilities still permitted (empty, or CAP_BPF on kernels that need it for map reads).
    pub capabilities: Vec<Capability>,
}

/// Drops every capability; keeps CAP_BPF only if `map_read` fails without it. Says on stderr
/// what it kept or why it could not drop: not fatal, the capture works either way.
pub fn drop_after_attach(map_read: impl Fn() -> anyhow::Result<()>) {
    match drop_capabilities(map_read) {
        Ok(kept) if kept.capabilities.is_empty() => {}
        Ok(kept) => eprintln!(
            "containerdsnoop: kept {:?} after attaching: this kernel refuses to read the drop \
             counters without it (Linux < 6.5 with kernel.unprivileged_bpf_disabled set)",
            kept.capabilities
        ),
        Err(e) => eprintln!("containerdsnoop: could not drop capabilities after attaching: {e}"),
    }
}

fn drop_capabilities(
    map_read: impl Fn() -> anyhow::Result<()>,
) -> Result<Kept, caps::errors::CapsError> {
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
    Ok(Kept { capabilities })
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

    /// Runs in a child process, since dropping capabilities is for good: the child drops, and
    /// reports through its exit code what its `/proc/self/status` shows afterwards.
    #[test]
    fn drops_everything_when_map_reads_need_no_privilege() {
        if !caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false) {
            eprintln!("SKIPPED: needs root");
            return;
        }
        // SAFETY: fork in a test; the child only makes syscalls and reads a /proc file, then
        // leaves with _exit, so no state shared with the parent's other threads is touched.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match drop_capabilities(|| Ok(())) {
                Ok(kept) if kept.capabilities.is_empty() => {
                    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                    let zero = |field: &str| {
                        status.lines().any(|l| {
                            l.strip_prefix(field)
                                .is_some_and(|v| v.trim() == "0000000000000000")
                        })
                    };
                    let nnp = status.lines().any(|l| l == "NoNewPrivs:\t1");
                    if ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:", "CapBnd:"]
                        .iter()
                        .all(|f| zero(f))
                        && nnp
                    {
                        0
                    } else {
                        2
                    }
                }
                _ => 1,
            };
            // SAFETY: leaves the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: drop failed, 2: caps left");
    }

    #[test]
    fn keeps_only_cap_bpf_when_map_reads_need_it() {
        if !caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false) {
            eprintln!("SKIPPED: needs root");
            return;
        }
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let needs_bpf = || {
                // The probe runs with an empty effective set: a privileged call fails like a
                // map lookup on a pre-6.5 kernel would.
                if caps::has_cap(None, CapSet::Effective, Capability::CAP_BPF).unwrap_or(true) {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("EPERM"))
                }
            };
            let code = match drop_capabilities(needs_bpf) {
                Ok(kept) if kept.capabilities == [Capability::CAP_BPF] => {
                    let eff = caps::read(None, CapSet::Effective).unwrap_or_default();
                    let prm = caps::read(None, CapSet::Permitted).unwrap_or_default();
                    let only_bpf =
                        |s: &CapsHashSet| s.len() == 1 && s.contains(&Capability::CAP_BPF);
                    if only_bpf(&eff) && only_bpf(&prm) {
                        0
                    } else {
                        2
                    }
                }
                _ => 1,
            };
            // SAFETY: as above.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: drop failed, 2: wrong set");
    }
}
