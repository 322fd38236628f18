//! Runs of the attached programs the kernel skipped (`recursion_misses`), and the line said at
//! exit about what the skips cost.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::Ebpf;

use super::{
    backend::Backend,
    programs::{self, Part},
};

/// Runs of the attached programs the kernel skipped (`recursion_misses` in each program's
/// fdinfo, Linux 5.12+), by program name. The kernel does not run a program on a CPU where
/// a run of it (or, for kprobe and syscall tracepoint programs, of any of them) is already
/// in progress; from Linux 7.0 tracepoint programs are preemptible, so that happens to sends
/// of other tasks while one is preempted.
pub fn kernel_skips(ebpf: &Ebpf) -> Vec<(String, u64)> {
    let mut skips = Vec::new();
    for (name, program) in ebpf.programs() {
        let Ok(fd) = program.fd() else { continue };
        let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
        let Ok(info) = std::fs::read_to_string(path) else {
            continue;
        };
        let misses = info
            .lines()
            .find_map(|l| l.strip_prefix("recursion_misses:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if misses > 0 {
            skips.push((name.to_string(), misses));
        }
    }
    skips
}

/// The exit line for the programs the kernel skipped (`recursion_misses`), saying what the
/// skips cost: a skipped entry program nothing (the buffers come from the registers), a skipped
/// `sock_send_length` nothing while its syscall's entry and exit programs ran (the send is
/// emitted at exit); a send is lost, without a gap, only when its `sock_send_length` and its
/// entry or exit program were both skipped. A skipped close program delays a connection's end.
/// The costs weighed are those of the tracepoint backend's programs (its [`Part`]s in the
/// program table); the kprobe backend's are listed only.
pub fn skip_report(skips: &[(String, u64)]) -> Option<String> {
    if skips.is_empty() {
        return None;
    }
    let count = |part: Part| -> u64 {
        skips
            .iter()
            .filter(|(name, _)| programs::is(name, Backend::Tracepoint, part))
            .map(|(_, n)| n)
            .sum()
    };
    let sends = count(Part::Send);
    let syscall_ends = count(Part::EntryStash);
    let closes = count(Part::Close);
    let list: Vec<String> = skips
        .iter()
        .map(|(name, n)| format!("{name} {n} times"))
        .collect();
    let mut consequences = Vec::new();
    match sends.min(syscall_ends) {
        0 => consequences.push("no send was lost to them".to_string()),
        n => consequences.push(format!(
            "up to {n} sends may be missing without a gap (their sock_send_length and their \
             syscall's entry or exit program were both skipped)"
        )),
    }
    if closes > 0 {
        consequences.push(format!(
            "up to {closes} connection ends may show only when the socket is reused or the \
             tracer stops"
        ));
    }
    Some(format!(
        "containerdsnoop: the kernel skipped tracer programs while a run of one was in progress \
         on the same CPU: {}; {}",
        list.join(", "),
        consequences.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::skip_report;
    use crate::capture::{
        backend::Backend,
        programs::{self, PROGRAMS, Part},
    };

    /// The report counted programs by name before the program table; every program of the
    /// table falls in the same class as then.
    #[test]
    fn programs_are_weighed_as_they_always_were() {
        let close = |n: &str| {
            [
                "sys_enter_close",
                "sys_enter_shutdown",
                "sched_process_exit",
            ]
            .contains(&n)
        };
        for p in &PROGRAMS {
            let n = p.name;
            let class = |part| programs::is(n, Backend::Tracepoint, part);
            assert_eq!(class(Part::Send), n == "sock_send_length", "{n}");
            assert_eq!(
                class(Part::EntryStash),
                (n.starts_with("sys_enter_") && !close(n)) || n == "sys_exit_send",
                "{n}"
            );
            assert_eq!(class(Part::Close), close(n), "{n}");
        }
    }

    fn skips(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn no_skips_no_line() {
        assert_eq!(skip_report(&[]), None);
    }

    #[test]
    fn skipped_entry_or_exit_programs_alone_lose_nothing() {
        let line = skip_report(&skips(&[("sys_exit_send", 8), ("sys_enter_sendmsg", 18)]))
            .expect("a line");
        assert!(
            line.contains("sys_exit_send 8 times, sys_enter_sendmsg 18 times"),
            "{line}"
        );
        assert!(line.ends_with("no send was lost to them"), "{line}");
    }

    #[test]
    fn a_skipped_send_is_at_risk_only_with_a_skipped_entry_or_exit() {
        let alone = skip_report(&skips(&[("sock_send_length", 7)])).expect("a line");
        assert!(alone.ends_with("no send was lost to them"), "{alone}");
        let both = skip_report(&skips(&[
            ("sock_send_length", 2),
            ("sys_exit_send", 5),
            ("sys_enter_buf", 1),
        ]))
        .expect("a line");
        assert!(
            both.contains("up to 2 sends may be missing without a gap"),
            "{both}"
        );
    }

    #[test]
    fn skipped_close_programs_delay_connection_ends() {
        let line = skip_report(&skips(&[("sys_enter_close", 3), ("sched_process_exit", 1)]))
            .expect("a line");
        assert!(line.contains("no send was lost to them"), "{line}");
        assert!(
            line.contains("up to 4 connection ends may show only when"),
            "{line}"
        );
    }
}
