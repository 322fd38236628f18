//! Reading a process's cgroup and start time from `/proc`.

use containerdsnoop_decode::attribution::cgroup::{CgroupOwner, parse_proc_cgroup};

/// Most bytes of `/proc/PID/cgroup` read (a v1 system lists a dozen controllers).
const MAX_CGROUP_FILE: u64 = 64 * 1024;

/// Which container `pid` runs in; None when the process is gone.
pub fn cgroup(pid: u32) -> Option<CgroupOwner> {
    use std::io::Read as _;
    let file = std::fs::File::open(format!("/proc/{pid}/cgroup")).ok()?;
    let mut text = String::new();
    file.take(MAX_CGROUP_FILE).read_to_string(&mut text).ok()?;
    Some(parse_proc_cgroup(&text))
}

/// The process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &[u8]) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last
    // `)`, with the state (field 3) first.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_after_a_tricky_comm() {
        let stat =
            b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time(b"4242 (x) S 1"), None);
        assert!(start_time(std::process::id()).is_some());
        assert!(cgroup(std::process::id()).is_some());
    }
}
