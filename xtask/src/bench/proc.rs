//! Running what is measured: wall time and peak RSS of a process (wait4's rusage), and the
//! tracer as a background process: started, waited for until it says "Tracing...", stopped
//! with SIGINT, its exit summary parsed.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    pub max_rss_kb: u64,
    pub cpu: Duration,
}

/// Waits for `child` with wait4(2), which reports its peak RSS and CPU time.
fn wait_rusage(child: &Child, start: Instant) -> anyhow::Result<(i32, Measured)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it and status, both owned here.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: pid is our own unreaped child.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    if rc != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((
        status,
        Measured {
            wall,
            max_rss_kb: ru.ru_maxrss as u64,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        },
    ))
}

/// Runs `cmd` to the end with stdout counted (lines containing `count`, when given) and
/// discarded, stderr kept; fails on a non-zero exit.
/// Runs `cmd` to the end, timing it; `count` (if any) is called on each stdout line and its
/// results are summed (e.g. the messages a line reports).
pub fn measure(
    cmd: &mut Command,
    count: Option<fn(&[u8]) -> u64>,
) -> anyhow::Result<(Measured, u64, String)> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {cmd:?}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let counter = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut r = BufReader::with_capacity(1 << 20, stdout);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).is_ok_and(|k| k > 0) {
            if let Some(count) = count {
                n += count(&line);
            }
            line.clear();
        }
        n
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (status, m) = wait_rusage(&child, start)?;
    let n = counter.join().unwrap_or(0);
    let err = err_reader.join().unwrap_or_default();
    if status != 0 {
        bail!("{cmd:?} failed (status {status}): {}", tail(&err));
    }
    Ok((m, n, err))
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

/// The tracer's exit summary line, as numbers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub rows: u64,
    pub records: u64,
    pub captured_bytes: u64,
    pub lost_records: u64,
    pub lost_bytes: u64,
    pub gap_bytes: u64,
    pub missing_bytes: u64,
}

impl Summary {
    /// `N rows; captured N records, N bytes; lost N records (N bytes) in the kernel, N bytes as
    /// stream gaps; N bytes not captured ...`
    pub fn parse(stderr: &str) -> Option<Summary> {
        let line = stderr
            .lines()
            .rev()
            .find(|l| l.contains(" rows; captured "))?;
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .filter_map(|w| w.parse().ok())
            .collect();
        if nums.len() < 7 {
            return None;
        }
        Some(Summary {
            rows: nums[0],
            records: nums[1],
            captured_bytes: nums[2],
            lost_records: nums[3],
            lost_bytes: nums[4],
            gap_bytes: nums[5],
            missing_bytes: nums[6],
        })
    }
}

/// /proc/PID/status memory lines, in kB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss: kb("VmRSS:"),
        hwm: kb("VmHWM:"),
        anon: kb("RssAnon:"),
        file: kb("RssFile:"),
        shmem: kb("RssShmem:"),
    })
}

/// User + system CPU time of a live process, from /proc/PID/stat (clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised comm; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Resident bytes (kB) of the tracer's BPF map mappings (the ring buffer, mapped twice for
/// wrap-around): kernel memory that RSS counts as file-backed.
pub fn bpf_map_rss_kb(pid: u32) -> u64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return 0;
    };
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            if in_map {
                total += kb
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|a| a.contains('-') && !a.ends_with(':'))
        {
            in_map = line.ends_with("anon_inode:bpf-map");
        }
    }
    total
}

/// The tracer running in the background, its decoded output thrown away.
pub struct Tracer {
    child: Child,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
    /// Process start to the "Tracing..." line.
    pub ready_after: Duration,
    pub backend: String,
}

impl Tracer {
    pub fn start(binary: &std::path::Path, args: &[String]) -> anyhow::Result<Tracer> {
        let start = Instant::now();
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut t = Tracer {
            child,
            stderr: rx,
            lines: Vec::new(),
            ready_after: Duration::ZERO,
            backend: String::new(),
        };
        let deadline = start + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match t.stderr.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.starts_with("Tracing ");
                    if ready {
                        t.ready_after = start.elapsed();
                        t.backend = line
                            .rsplit_once(" backend")
                            .and_then(|(a, _)| a.rsplit_once(" with "))
                            .map_or("?".into(), |(_, b)| b.to_string());
                    }
                    t.lines.push(line);
                    if ready {
                        return Ok(t);
                    }
                }
                Err(_) => {
                    let _ = t.child.kill();
                    let _ = t.child.wait();
                    while let Ok(l) = t.stderr.try_recv() {
                        t.lines.push(l);
                    }
                    bail!("the tracer did not start: {}", t.lines.join(" / "));
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the tracer has used so far.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.child.id()).unwrap_or_default()
    }

    /// SIGINT, then its exit summary (and everything else it said on stderr).
    pub fn stop(mut self) -> anyhow::Result<(Summary, String)> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the tracer did not stop within 60 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.lines.push(l);
        }
        let text = self.lines.join("\n");
        let summary = Summary::parse(&text)
            .with_context(|| format!("no exit summary from the tracer: {}", tail(&text)))?;
        Ok((summary, text))
    }
}

/// A helper process that prints a line (`ready...`) on stdout once it is ready; killed on drop.
pub struct Helper {
    child: Child,
    pub stdout: BufReader<std::process::ChildStdout>,
}

impl Helper {
    pub fn start(cmd: &mut Command, ready: &str) -> anyhow::Result<Helper> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {cmd:?}"))?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if !line.starts_with(ready) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not get ready (said {line:?})");
        }
        Ok(Helper { child, stdout })
    }

    /// Waits for the helper to exit by itself.
    pub fn wait(mut self) -> anyhow::Result<String> {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("helper exited with {status}");
        }
        Ok(rest)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a peer command to its end and returns its stdout's last line as JSON.
pub fn json_of(cmd: &mut Command) -> anyhow::Result<serde_json::Value> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("{cmd:?} printed {last:?}"))
}

/// One of the tracer's loaded eBPF programs and its cumulated run time (bpf_stats).
#[derive(Clone, Debug, Default)]
pub struct ProgStat {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The eBPF programs `pid` holds open, with their `run_time_ns` and `run_cnt` from
/// /proc/PID/fdinfo (counted only while `kernel.bpf_stats_enabled` is 1). Names come from
/// `bpftool prog show -j` when bpftool is installed (fdinfo has only the id and tag).
pub fn bpf_prog_stats(pid: u32) -> Vec<ProgStat> {
    let mut progs: Vec<ProgStat> = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return progs;
    };
    for fd in fds.flatten() {
        let is_prog = std::fs::read_link(fd.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        )) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim_start_matches(':').trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let id = field("prog_id") as u32;
        if progs.iter().any(|p| p.id == id) {
            continue;
        }
        progs.push(ProgStat {
            id,
            name: format!("prog {id}"),
            run_time_ns: field("run_time_ns"),
            run_cnt: field("run_cnt"),
        });
    }
    if let Ok(out) = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .stderr(Stdio::null())
        .output()
        && let Ok(serde_json::Value::Array(list)) =
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
    {
        for p in &mut progs {
            if let Some(name) = list
                .iter()
                .find(|v| v["id"].as_u64() == Some(u64::from(p.id)))
                .and_then(|v| v["name"].as_str())
            {
                p.name = name.to_string();
            }
        }
    }
    progs.sort_by_key(|p| std::cmp::Reverse(p.run_time_ns));
    progs
}

/// Turns on the kernel's per-program run-time statistics for as long as it lives, and
/// restores the previous setting after (they cost two clock reads per program run).
pub struct BpfStats {
    previous: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> anyhow::Result<BpfStats> {
        let previous = std::fs::read_to_string(BPF_STATS).ok();
        std::fs::write(BPF_STATS, "1").with_context(|| format!("write 1 to {BPF_STATS}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(p) = &self.previous {
            let _ = std::fs::write(BPF_STATS, p.trim());
        }
    }
}
