//! Kernel capture: loads the embedded eBPF object, picks and attaches a backend (kprobe or
//! tracepoint), and drains the ring buffer. The only module besides `main` that touches aya,
//! tokio or the kernel; everything it produces is plain record bytes for `wire::parse`.

pub mod live;

use std::{
    fmt,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{KProbe, ProgramError, RawTracePoint, TracePoint},
};
use containerdsnoop_common::{DropCounters, KernelLayout, PATTERN_ABSTRACT, PathPattern};

use crate::selection::{kernel::SelectionMaps, tracker::Update};
use tokio::io::unix::AsyncFd;

/// The eBPF object built by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/containerdsnoop"));

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The kprobe backend where kprobes can attach, else the tracepoint backend.
    Auto,
    Kprobe,
    Tracepoint,
}

/// The backend that runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Kprobe,
    Tracepoint,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Kprobe => "kprobe",
            Backend::Tracepoint => "tracepoint",
        })
    }
}

pub struct CaptureConfig {
    pub backend: BackendChoice,
    /// Name patterns, one per selector (see `paths::Selector::kernel_pattern`).
    pub patterns: Vec<PathPattern>,
    /// The socket files and directories selected by identity at start, written to the maps
    /// before any program is attached.
    pub initial: Vec<Update>,
    pub max_call_bytes: u32,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_bytes: u32,
    pub layout: KernelLayout,
}

/// Functions the kprobe backend attaches to (seqpacket tail-calls dgram: not probed).
const KPROBE_FUNCTIONS: [&str; 2] = ["unix_stream_sendmsg", "unix_dgram_sendmsg"];
/// Syscall tracepoints and the program that stashes each one's buffer.
const SYSCALL_ENTRIES: [(&str, &str); 4] = [
    ("sys_enter_write", "sys_enter_buf"),
    ("sys_enter_sendto", "sys_enter_buf"),
    ("sys_enter_writev", "sys_enter_writev"),
    ("sys_enter_sendmsg", "sys_enter_sendmsg"),
];
const SYSCALL_EXITS: [&str; 4] = [
    "sys_exit_write",
    "sys_exit_sendto",
    "sys_exit_writev",
    "sys_exit_sendmsg",
];

pub struct Capture {
    // Keeps programs, links and maps alive.
    ebpf: Ebpf,
    /// Diagnostics the programs log with aya-log (rare conditions only, never traced bytes).
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    ring: AsyncFd<RingBuf<MapData>>,
    drops: PerCpuArray<MapData, DropCounters>,
    selection: SelectionMaps,
    pub backend: Backend,
    /// Why `auto` did not pick the kprobe backend.
    pub fallback_reason: Option<String>,
    /// Why connection ends are not seen live (they are then seen when a socket identity is
    /// reused or the tracer stops).
    pub close_unavailable: Option<String>,
}

impl Capture {
    /// Loads the programs and attaches the chosen backend. Must run inside a tokio runtime.
    pub fn start(config: &CaptureConfig) -> anyhow::Result<Capture> {
        let (mut ebpf, selection) = load_object(config)?;
        let (backend, fallback_reason) = match config.backend {
            BackendChoice::Kprobe => {
                attach_kprobes(&mut ebpf)?;
                (Backend::Kprobe, None)
            }
            BackendChoice::Tracepoint => {
                attach_tracepoints(&mut ebpf, &config.layout)?;
                (Backend::Tracepoint, None)
            }
            // Verifying the kprobe programs costs about a second: not when they cannot attach.
            BackendChoice::Auto if !kprobes_attachable() => {
                attach_tracepoints(&mut ebpf, &config.layout)
                    .with_context(|| format!("kprobe backend unavailable too ({NO_KPROBES})"))?;
                (Backend::Tracepoint, Some(NO_KPROBES.to_string()))
            }
            BackendChoice::Auto => match attach_kprobes(&mut ebpf) {
                Ok(()) => (Backend::Kprobe, None),
                Err(kprobe_error) => {
                    attach_tracepoints(&mut ebpf, &config.layout).with_context(|| {
                        format!("kprobe backend unavailable too ({kprobe_error:#})")
                    })?;
                    (Backend::Tracepoint, Some(format!("{kprobe_error:#}")))
                }
            },
        };
        // Connection ends: secondary to the data, so a failure is reported, not fatal.
        let close_unavailable = attach_close(&mut ebpf, backend, &config.layout)
            .err()
            .map(|e| format!("{e:#}"));
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            // SAFETY: the logger owns its ring buffer fd for as long as it is registered.
            Ok(l) => unsafe { AsyncFd::register(l) }.ok(),
            Err(_) => None,
        };
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS missing")?)?;
        // SAFETY: the ring buffer map owns its fd and AsyncFd owns the map, so the fd stays open
        // (and is not reused) for as long as it is registered.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow!("registering the ring buffer with tokio: {e}"))?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("map DROPS missing")?)?;
        Ok(Capture {
            ebpf,
            logger,
            ring,
            drops,
            selection,
            backend,
            fallback_reason,
            close_unavailable,
        })
    }

    /// Waits until records are available, then hands every available record to `each`, in
    /// place in the ring (no copy, no allocation here).
    /// Kernel-side log messages are forwarded to the `log` facade while waiting.
    pub async fn read(&mut self, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
        if let Some(logger) = self.logger.as_mut() {
            tokio::select! {
                biased;
                guard = logger.readable_mut() => {
                    let mut guard = guard?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                    return Ok(());
                }
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        each(&item);
                    }
                    guard.clear_ready();
                    return Ok(());
                }
            }
        }
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            each(&item);
        }
        guard.clear_ready();
        Ok(())
    }

    /// Hands whatever is in the ring buffer to `each` without waiting (the periodic drain, and
    /// at exit).
    pub fn read_now(&mut self, mut each: impl FnMut(&[u8])) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            each(&item);
        }
    }

    /// Applies selection changes to the kernel maps; returns one message per change that
    /// failed (a full map), so that a socket that cannot be selected is never silently missed.
    pub fn apply_selection(&mut self, updates: &[Update]) -> Vec<String> {
        self.selection.apply(updates)
    }

    /// Runs of the attached programs the kernel skipped (`recursion_misses` in each program's
    /// fdinfo, Linux 5.12+), by program name. The kernel does not run a program on a CPU where
    /// a run of it (or, for kprobe and syscall tracepoint programs, of any of them) is already
    /// in progress; from Linux 7.0 tracepoint programs are preemptible, so that happens to sends
    /// of other tasks while one is preempted.
    pub fn kernel_skips(&self) -> Vec<(String, u64)> {
        let mut skips = Vec::new();
        for (name, program) in self.ebpf.programs() {
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

    /// The kernel-side counters, summed over CPUs.
    pub fn drop_counters(&self) -> anyhow::Result<DropCounters> {
        let per_cpu = self.drops.get(&0, 0)?;
        Ok(per_cpu.iter().fold(DropCounters::default(), |mut sum, c| {
            sum.lost_records += c.lost_records;
            sum.lost_bytes += c.lost_bytes;
            sum.missed_entries += c.missed_entries;
            sum.sends += c.sends;
            sum.closes += c.closes;
            sum.lost_closes += c.lost_closes;
            sum.exit_scans_cut += c.exit_scans_cut;
            sum.late_sends += c.late_sends;
            sum
        }))
    }
}

/// Whether the kernel has the `bpf_loop` helper (5.17+). The record loop then runs as a callback
/// the verifier checks about once (a second or more of start-up saved); older kernels get the
/// bounded-loop build of the kprobe return program, and cannot run the tracepoint backend
/// (which needs 6.3 anyway).
fn has_bpf_loop() -> bool {
    aya::sys::is_helper_supported(
        aya::programs::ProgramType::KProbe,
        aya::sys::BpfHelper::BPF_FUNC_loop,
    )
    .unwrap_or(false)
}

/// The build of the kprobe return program this kernel can load (see `has_bpf_loop`).
fn kprobe_return_program(bpf_loop: bool) -> &'static str {
    if bpf_loop {
        "unix_sendmsg_return"
    } else {
        "unix_sendmsg_return_bounded"
    }
}

/// At exit (after the summary), says which programs the kernel skipped, so that no send it
/// kept from the tracer goes unmentioned.
impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(line) = skip_report(&self.kernel_skips()) {
            eprintln!("{line}");
        }
    }
}

/// The exit line for the programs the kernel skipped (`recursion_misses`), saying what the
/// skips cost: a skipped entry program nothing (the buffers come from the registers), a skipped
/// `sock_send_length` nothing while its syscall's entry and exit programs ran (the send is
/// emitted at exit); a send is lost, without a gap, only when its `sock_send_length` and its
/// entry or exit program were both skipped. A skipped close program delays a connection's end.
fn skip_report(skips: &[(String, u64)]) -> Option<String> {
    if skips.is_empty() {
        return None;
    }
    let count = |pick: &dyn Fn(&str) -> bool| -> u64 {
        skips.iter().filter(|(n, _)| pick(n)).map(|(_, n)| n).sum()
    };
    let sends = count(&|n| n == "sock_send_length");
    let syscall_ends = count(&|n| n.starts_with("sys_enter_") && !is_close_program(n))
        + count(&|n| n == "sys_exit_send");
    let closes = count(&|n| is_close_program(n));
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

fn is_close_program(name: &str) -> bool {
    CLOSE_TRACEPOINTS.iter().any(|(_, p)| *p == name) || name == "sched_process_exit"
}

fn load_object(config: &CaptureConfig) -> anyhow::Result<(Ebpf, SelectionMaps)> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))? as u32;
    let tracer_tgid = std::process::id();
    // Every slot is compared (under each directory's mask): the slots after the selectors'
    // take symlink targets' names at run time (`Update::Pattern`).
    let pattern_count = containerdsnoop_common::MAX_PATTERNS;
    let has_abstract = u32::from(config.patterns.iter().any(|p| p.kind == PATTERN_ABSTRACT));
    let entry_stash = u32::from(entry_stash_needed(&config.layout));
    let mut ebpf = EbpfLoader::new()
        .override_global("LAYOUT", &config.layout, true)
        .override_global("TRACER_TGID", &tracer_tgid, true)
        .override_global("MAX_CALL_BYTES", &config.max_call_bytes, true)
        .override_global("PATTERN_COUNT", &pattern_count, true)
        .override_global("HAS_ABSTRACT", &has_abstract, true)
        .override_global("ENTRY_STASH", &entry_stash, true)
        // Two record slots per CPU (see the eBPF `emit::Slot`).
        .map_max_entries("SCRATCH", cpus * 2)
        .map_max_entries("EVENTS", config.ring_bytes)
        .load(EBPF_OBJECT)
        .map_err(explain_load_error)?;
    // Taken at once: the programs, loaded later, refer to the maps by the fds these keep open.
    let mut selection = SelectionMaps::take(&mut ebpf)?;
    selection.set_patterns(&config.patterns)?;
    if let Some(e) = selection.apply(&config.initial).first() {
        bail!("{e}");
    }
    Ok((ebpf, selection))
}

fn explain_load_error(e: aya::EbpfError) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        anyhow!(
            "loading eBPF maps/programs was refused ({text}): run as root, or grant CAP_BPF and \
             CAP_PERFMON (and CAP_SYS_ADMIN on kernels before 5.8)"
        )
    } else {
        anyhow!("loading the eBPF object failed: {text}")
    }
}

/// What `--load-only` verified.
pub struct Verified {
    /// The programs the verifier accepted.
    pub programs: Vec<String>,
    /// Why some were not loaded at all, if so.
    pub skipped: Option<&'static str>,
}

/// Verifies (loads) every program this kernel can run without attaching anything: `--load-only`,
/// used by tests to prove the kprobe programs pass the verifier on kernels where they cannot
/// attach.
pub fn verify_all(config: &CaptureConfig) -> anyhow::Result<Verified> {
    let (mut ebpf, _selection) = load_object(config)?;
    let mut loaded = Vec::new();
    let bpf_loop = has_bpf_loop();
    for name in ["unix_sendmsg_entry", kprobe_return_program(bpf_loop)] {
        kprobe(&mut ebpf, name)?;
        loaded.push(name.to_string());
    }
    for name in CLOSE_KPROBES.map(|(_, p)| p) {
        kprobe(&mut ebpf, name)?;
        loaded.push(name.to_string());
    }
    if !bpf_loop {
        // The tracepoint backend's programs use bpf_loop; kernels without it (< 5.17) also
        // lack sock_send_length (6.3), so they could not run it anyway.
        return Ok(Verified {
            programs: loaded,
            skipped: Some("the tracepoint backend's, which need bpf_loop (Linux >= 5.17)"),
        });
    }
    for name in [
        "sys_enter_buf",
        "sys_enter_writev",
        "sys_enter_sendmsg",
        "sys_exit_send",
    ] {
        tracepoint(&mut ebpf, name)?;
        loaded.push(name.to_string());
    }
    raw_tracepoint(&mut ebpf, "sock_send_length")?;
    loaded.push("sock_send_length".to_string());
    if config.layout.close_fields_present() {
        for name in CLOSE_TRACEPOINTS.map(|(_, p)| p) {
            tracepoint(&mut ebpf, name)?;
            loaded.push(name.to_string());
        }
        raw_tracepoint(&mut ebpf, "sched_process_exit")?;
        loaded.push("sched_process_exit".to_string());
    }
    Ok(Verified {
        programs: loaded,
        skipped: None,
    })
}

fn kprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut KProbe> {
    let program: &mut KProbe = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?;
    if program.fd().is_err() {
        program.load().map_err(|e| verifier_error(name, e))?;
    }
    Ok(program)
}

fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut TracePoint> {
    let program: &mut TracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?;
    if program.fd().is_err() {
        program.load().map_err(|e| verifier_error(name, e))?;
    }
    Ok(program)
}

fn raw_tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut RawTracePoint> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?;
    if program.fd().is_err() {
        program.load().map_err(|e| verifier_error(name, e))?;
    }
    Ok(program)
}

fn verifier_error(name: &str, e: ProgramError) -> anyhow::Error {
    match &e {
        ProgramError::LoadError { verifier_log, .. } => {
            // The tail of the log says why; the whole log can be thousands of lines.
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow!(
                "the kernel's verifier rejected program {name}:\n{}",
                tail.join("\n")
            )
        }
        _ => anyhow!("loading program {name}: {e}"),
    }
}

/// Whether this kernel can attach kprobes at all: aya uses the kprobe PMU (>= 4.17) or
/// tracefs `kprobe_events`; both exist only with CONFIG_KPROBE_EVENTS.
fn kprobes_attachable() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

const NO_KPROBES: &str = "this kernel cannot attach kprobes (no kprobe PMU in \
    /sys/bus/event_source/devices, no kprobe_events: CONFIG_KPROBE_EVENTS is off)";

fn attach_kprobes(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    // Load both first: the verifier runs even where kprobes cannot attach, and a forced
    // `--backend kprobe` says whether the programs themselves are fine.
    let return_program = kprobe_return_program(has_bpf_loop());
    kprobe(ebpf, "unix_sendmsg_entry")?;
    kprobe(ebpf, return_program)?;
    if !kprobes_attachable() {
        bail!("{NO_KPROBES}; the programs passed the verifier");
    }
    for function in KPROBE_FUNCTIONS {
        kprobe(ebpf, "unix_sendmsg_entry")?
            .attach(function, 0)
            .with_context(|| format!("attaching kprobe to {function}"))?;
        kprobe(ebpf, return_program)?
            .attach(function, 0)
            .with_context(|| format!("attaching kretprobe to {function}"))?;
    }
    Ok(())
}

fn attach_tracepoints(ebpf: &mut Ebpf, layout: &KernelLayout) -> anyhow::Result<()> {
    ensure_tracefs()?;
    if !Path::new(TRACEFS)
        .join("events/sock/sock_send_length")
        .exists()
    {
        bail!(
            "the tracepoint backend needs the sock:sock_send_length tracepoint (Linux >= 6.3), \
             which this kernel lacks; on older kernels use --backend kprobe"
        );
    }
    let stash_at_entry = entry_stash_needed(layout);
    if stash_at_entry && !layout.fd_walk_fields_present() {
        // Without the fd walk, a send the kernel skipped sock_send_length for (Linux 7.0+)
        // would be lost without a trace.
        bail!(
            "the tracepoint backend needs the fd table members of task_struct/files_struct/\
             fdtable/file in the kernel's BTF, and one is missing"
        );
    }
    // Raw tracepoint first: if it cannot attach there is no point stashing buffers.
    raw_tracepoint(ebpf, "sock_send_length")?
        .attach("sock_send_length")
        .context("attaching raw tracepoint sock_send_length")?;
    if !stash_at_entry {
        return Ok(());
    }
    for (event, program) in SYSCALL_ENTRIES {
        tracepoint(ebpf, program)?
            .attach("syscalls", event)
            .with_context(|| format!("attaching tracepoint syscalls:{event}"))?;
    }
    for event in SYSCALL_EXITS {
        tracepoint(ebpf, "sys_exit_send")?
            .attach("syscalls", event)
            .with_context(|| format!("attaching tracepoint syscalls:{event}"))?;
    }
    Ok(())
}

/// Whether the tracepoint backend stashes every write, writev, sendto and sendmsg at syscall
/// entry (and drops the stash at exit), rather than reading the sender's registers in
/// `sock_send_length` (the eBPF `tracepoint.rs`). The registers are cheaper: nothing runs for
/// the writes of other processes. The stash is kept where the registers are unknown (an
/// architecture user space has no `SyscallRegisters` for) and from Linux 7.0, whose preemptible
/// tracepoints can skip `sock_send_length`: only the stash lets `sys_exit_*` emit those sends.
fn entry_stash_needed(layout: &KernelLayout) -> bool {
    let preemptible_tracepoints = aya::util::KernelVersion::current()
        .map_or(true, |v| v >= aya::util::KernelVersion::new(7, 0, 0));
    !layout.registers_fields_present() || preemptible_tracepoints
}

/// Connection ends (`close.rs`): kernel functions and syscall tracepoints, with their programs.
const CLOSE_KPROBES: [(&str, &str); 2] = [
    ("unix_release", "unix_release_entry"),
    ("unix_shutdown", "unix_shutdown_entry"),
];
const CLOSE_TRACEPOINTS: [(&str, &str); 2] = [
    ("sys_enter_close", "sys_enter_close"),
    ("sys_enter_shutdown", "sys_enter_shutdown"),
];

/// Attaches the programs that report connection ends for `backend`: the socket release and
/// shutdown kprobes, or the close/shutdown syscall tracepoints and the process-exit raw
/// tracepoint (which need the fd-table members of `layout`).
fn attach_close(ebpf: &mut Ebpf, backend: Backend, layout: &KernelLayout) -> anyhow::Result<()> {
    match backend {
        Backend::Kprobe => {
            for (function, program) in CLOSE_KPROBES {
                kprobe(ebpf, program)?
                    .attach(function, 0)
                    .with_context(|| format!("attaching kprobe to {function}"))?;
            }
        }
        Backend::Tracepoint => {
            if !layout.close_fields_present() {
                bail!("kernel BTF lacks a file/fd-table member that close detection reads");
            }
            for (event, program) in CLOSE_TRACEPOINTS {
                tracepoint(ebpf, program)?
                    .attach("syscalls", event)
                    .with_context(|| format!("attaching tracepoint syscalls:{event}"))?;
            }
            raw_tracepoint(ebpf, "sched_process_exit")?
                .attach("sched_process_exit")
                .context("attaching raw tracepoint sched_process_exit")?;
        }
    }
    Ok(())
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// Syscall tracepoints are attached through tracefs ids; mount it when it is missing (a fresh
/// machine or a container often has it unmounted).
fn ensure_tracefs() -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::skip_report;

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
