//! Kernel timestamps (CLOCK_MONOTONIC ns, from `bpf_ktime_get_ns`) to wall-clock times.

/// Maps monotonic timestamps to wall-clock time, using the offset between the two clocks taken
/// once at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// wall ns - monotonic ns.
    offset_ns: i128,
    /// Print `hms` in UTC rather than local time (golden files, offline replays).
    utc: bool,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC),
            utc: false,
        }
    }

    /// For timestamps that already are wall-clock ns, printed in local time (`-r` files).
    pub fn wall() -> Clock {
        Clock {
            offset_ns: 0,
            utc: false,
        }
    }

    /// For timestamps that already are wall-clock ns, printed in UTC (tests, golden files).
    pub fn identity() -> Clock {
        Clock {
            offset_ns: 0,
            utc: true,
        }
    }

    pub fn wall_ns(&self, monotonic_ns: u64) -> i128 {
        monotonic_ns as i128 + self.offset_ns
    }

    /// `HH:MM:SS.micros` in local time.
    pub fn hms(&self, monotonic_ns: u64) -> String {
        let mut out = String::new();
        HmsCache::default().push(self, monotonic_ns, &mut out);
        out
    }

    /// `HH:MM:SS` of a wall-clock second, in local time (or UTC).
    fn hms_of_second(&self, secs: i64) -> String {
        let secs = secs as libc::time_t;
        // SAFETY: localtime_r fills the tm we own from a valid time_t.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if self.utc {
                libc::gmtime_r(&secs, &mut tm);
            } else {
                libc::localtime_r(&secs, &mut tm);
            }
            tm
        };
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    }

    /// RFC 3339 UTC with microseconds, for JSON.
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        let wall = self.wall_ns(monotonic_ns);
        let secs = wall.div_euclid(1_000_000_000) as libc::time_t;
        let micros = wall.rem_euclid(1_000_000_000) / 1000;
        // SAFETY: gmtime_r fills the tm we own from a valid time_t.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            libc::gmtime_r(&secs, &mut tm);
            tm
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            micros
        )
    }
}

/// [`Clock::hms`] for rows in time order: the `HH:MM:SS` of the last second is kept, so that
/// the time zone conversion (`localtime_r`) runs once per second, not once per row. Exact: time
/// zone offsets change on whole seconds.
#[derive(Default)]
pub struct HmsCache {
    second: Option<(i64, String)>,
}

impl HmsCache {
    /// Appends `HH:MM:SS.micros` of `monotonic_ns` to `out`.
    pub fn push(&mut self, clock: &Clock, monotonic_ns: u64, out: &mut String) {
        use std::fmt::Write as _;
        let wall = clock.wall_ns(monotonic_ns);
        let secs = wall.div_euclid(1_000_000_000) as i64;
        let micros = wall.rem_euclid(1_000_000_000) / 1000;
        match &self.second {
            Some((s, text)) if *s == secs => out.push_str(text),
            _ => {
                let text = clock.hms_of_second(secs);
                out.push_str(&text);
                self.second = Some((secs, text));
            }
        }
        let _ = write!(out, ".{micros:06}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instant() {
        let c = Clock::identity();
        assert_eq!(
            c.rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456Z"
        );
    }

    #[test]
    fn monotonic_maps_near_now() {
        let c = Clock::now();
        let mono = clock_ns(libc::CLOCK_MONOTONIC) as u64;
        let wall = clock_ns(libc::CLOCK_REALTIME);
        assert!((c.wall_ns(mono) - wall).abs() < 1_000_000_000);
    }
}
