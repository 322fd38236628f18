//! The eBPF programs as one table: each program's name in the object, its kind and hook, its
//! backend, the part of the capture it serves and the build it is, with the one loader and the
//! one `attach()` that read it. Starting a backend, `--load-only` and the exit report of
//! skipped programs all take their program names from [`PROGRAMS`].

use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{KProbe, ProgramError, RawTracePoint, TracePoint},
};
use containerdsnoop_common::KernelLayout;

use super::backend::Backend;

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A kprobe on a kernel function's entry.
    Kprobe(&'static str),
    /// A kretprobe on a kernel function's return.
    Kretprobe(&'static str),
    /// A tracefs tracepoint: category and event.
    Tracepoint(&'static str, &'static str),
    /// A raw tracepoint by name.
    RawTracepoint(&'static str),
}

/// What a program is for, which says when its backend attaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The sends: always attached with the backend; a failure stops the tracer.
    Send,
    /// The tracepoint backend's syscall entry stash (see `entry_stash_needed`): attached after
    /// [`Part::Send`], only when the stash is needed.
    EntryStash,
    /// Connection ends (the eBPF `close.rs`): optional, a failure is reported, not fatal.
    Close,
}

/// Which build of a program this is: some exist twice, for kernels with and without
/// `bpf_loop` (see `has_bpf_loop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    Any,
    /// Only where the kernel has `bpf_loop`.
    BpfLoop,
    /// Only where it lacks `bpf_loop` (the bounded-loop build).
    Bounded,
}

impl Build {
    /// Whether this build is the one to load; asks `bpf_loop` only when it matters.
    pub fn fits(self, bpf_loop: &dyn Fn() -> bool) -> bool {
        match self {
            Build::Any => true,
            Build::BpfLoop => bpf_loop(),
            Build::Bounded => !bpf_loop(),
        }
    }
}

/// One attachment of one program; a program attached to several hooks has a row per hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    /// The program's name in the object: its function name in `containerdsnoop-ebpf/src`.
    pub name: &'static str,
    pub kind: Kind,
    pub backend: Backend,
    pub part: Part,
    pub build: Build,
}

impl Program {
    /// This row, for one build only.
    const fn only(self, build: Build) -> Program {
        Program { build, ..self }
    }
}

const fn row(name: &'static str, kind: Kind, backend: Backend, part: Part) -> Program {
    Program {
        name,
        kind,
        backend,
        part,
        build: Build::Any,
    }
}

use Backend::{Kprobe as K, Tracepoint as T};
use Build::{Bounded, BpfLoop};
use Kind::{Kprobe, Kretprobe, RawTracepoint, Tracepoint};
use Part::{Close, EntryStash, Send};

/// Every program of the object. A part is attached in table order (a kprobe before its
/// kretprobe on each function); the table's order of first appearances is the order
/// `--load-only` verifies and lists them in. The kprobe backend probes the stream and dgram
/// send functions (seqpacket tail-calls dgram: not probed); the tracepoint backend reads the
/// length from `sock_send_length` and, with the entry stash, the buffer from each syscall's
/// entry, which its exit drops.
#[rustfmt::skip]
pub const PROGRAMS: [Program; 20] = [
    // The kprobe backend: row(name, kind, backend, part), and the build if not any.
    row("unix_sendmsg_entry",          Kprobe("unix_stream_sendmsg"),    K, Send),
    row("unix_sendmsg_return",         Kretprobe("unix_stream_sendmsg"), K, Send).only(BpfLoop),
    row("unix_sendmsg_return_bounded", Kretprobe("unix_stream_sendmsg"), K, Send).only(Bounded),
    row("unix_sendmsg_entry",          Kprobe("unix_dgram_sendmsg"),     K, Send),
    row("unix_sendmsg_return",         Kretprobe("unix_dgram_sendmsg"),  K, Send).only(BpfLoop),
    row("unix_sendmsg_return_bounded", Kretprobe("unix_dgram_sendmsg"),  K, Send).only(Bounded),
    row("unix_release_entry",          Kprobe("unix_release"),           K, Close),
    row("unix_shutdown_entry",         Kprobe("unix_shutdown"),          K, Close),
    // The tracepoint backend.
    row("sys_enter_buf",      Tracepoint("syscalls", "sys_enter_write"),    T, EntryStash),
    row("sys_enter_buf",      Tracepoint("syscalls", "sys_enter_sendto"),   T, EntryStash),
    row("sys_enter_writev",   Tracepoint("syscalls", "sys_enter_writev"),   T, EntryStash),
    row("sys_enter_sendmsg",  Tracepoint("syscalls", "sys_enter_sendmsg"),  T, EntryStash),
    row("sys_exit_send",      Tracepoint("syscalls", "sys_exit_write"),     T, EntryStash),
    row("sys_exit_send",      Tracepoint("syscalls", "sys_exit_sendto"),    T, EntryStash),
    row("sys_exit_send",      Tracepoint("syscalls", "sys_exit_writev"),    T, EntryStash),
    row("sys_exit_send",      Tracepoint("syscalls", "sys_exit_sendmsg"),   T, EntryStash),
    row("sock_send_length",   RawTracepoint("sock_send_length"),            T, Send),
    row("sys_enter_close",    Tracepoint("syscalls", "sys_enter_close"),    T, Close),
    row("sys_enter_shutdown", Tracepoint("syscalls", "sys_enter_shutdown"), T, Close),
    row("sched_process_exit", RawTracepoint("sched_process_exit"),          T, Close),
];

/// The rows of `backend`'s `part` whose build fits this kernel, in table order.
pub fn part(
    backend: Backend,
    part: Part,
    bpf_loop: &dyn Fn() -> bool,
) -> impl Iterator<Item = &'static Program> {
    PROGRAMS
        .iter()
        .filter(move |p| p.backend == backend && p.part == part && p.build.fits(bpf_loop))
}

/// Whether `name` is a program of the table with this backend and part (the skip report).
pub fn is(name: &str, backend: Backend, part: Part) -> bool {
    PROGRAMS
        .iter()
        .any(|p| p.name == name && p.backend == backend && p.part == part)
}

/// Loads `rows` without attaching them, each program once.
pub fn load_all<'a>(
    ebpf: &mut Ebpf,
    rows: impl IntoIterator<Item = &'a Program>,
) -> anyhow::Result<()> {
    rows.into_iter().try_for_each(|p| p.load(ebpf))
}

/// Loads and attaches `rows`, one after the other.
pub fn attach_all<'a>(
    ebpf: &mut Ebpf,
    rows: impl IntoIterator<Item = &'a Program>,
) -> anyhow::Result<()> {
    rows.into_iter().try_for_each(|p| p.attach(ebpf))
}

impl Program {
    /// Runs the verifier on the program unless it is loaded already (a program attached to
    /// several hooks, or loaded by a backend that then could not attach).
    pub fn load(&self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let name = self.name;
        let program = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?;
        if program.fd().is_ok() {
            return Ok(());
        }
        let loaded = match self.kind {
            Kprobe(_) | Kretprobe(_) => <&mut KProbe>::try_from(program)?.load(),
            Tracepoint(..) => <&mut TracePoint>::try_from(program)?.load(),
            RawTracepoint(_) => <&mut RawTracePoint>::try_from(program)?.load(),
        };
        loaded.map_err(|e| verifier_error(name, e))
    }

    /// Loads the program if needed and attaches it to its hook (the link lives as long as the
    /// object).
    pub fn attach(&self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        self.load(ebpf)?;
        let name = self.name;
        let program = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?;
        let attached = match self.kind {
            Kprobe(function) | Kretprobe(function) => <&mut KProbe>::try_from(program)?
                .attach(function, 0)
                .map(drop),
            Tracepoint(category, event) => <&mut TracePoint>::try_from(program)?
                .attach(category, event)
                .map(drop),
            RawTracepoint(event) => <&mut RawTracePoint>::try_from(program)?
                .attach(event)
                .map(drop),
        };
        attached.with_context(|| format!("attaching {}", self.hook()))
    }

    /// The hook as the attach errors name it: `kprobe to unix_release`, `tracepoint
    /// syscalls:sys_enter_close`.
    pub fn hook(&self) -> String {
        match self.kind {
            Kprobe(function) => format!("kprobe to {function}"),
            Kretprobe(function) => format!("kretprobe to {function}"),
            Tracepoint(category, event) => format!("tracepoint {category}:{event}"),
            RawTracepoint(event) => format!("raw tracepoint {event}"),
        }
    }
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

/// Whether the kernel has the `bpf_loop` helper (5.17+). The record loop then runs as a callback
/// the verifier checks about once (a second or more of start-up saved); older kernels get the
/// bounded-loop build of the kprobe return program, and cannot run the tracepoint backend
/// (which needs 6.3 anyway). Asked once per run.
pub fn has_bpf_loop() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        aya::sys::is_helper_supported(
            aya::programs::ProgramType::KProbe,
            aya::sys::BpfHelper::BPF_FUNC_loop,
        )
        .unwrap_or(false)
    })
}

/// Whether the tracepoint backend stashes every write, writev, sendto and sendmsg at syscall
/// entry (and drops the stash at exit), rather than reading the sender's registers in
/// `sock_send_length` (the eBPF `tracepoint.rs`). The registers are cheaper: nothing runs for
/// the writes of other processes. The stash is kept where the registers are unknown (an
/// architecture user space has no `SyscallRegisters` for) and from Linux 7.0, whose preemptible
/// tracepoints can skip `sock_send_length`: only the stash lets `sys_exit_*` emit those sends.
pub fn entry_stash_needed(layout: &KernelLayout) -> bool {
    let preemptible_tracepoints = aya::util::KernelVersion::current()
        .map_or(true, |v| v >= aya::util::KernelVersion::new(7, 0, 0));
    !layout.registers_fields_present() || preemptible_tracepoints
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    use super::*;

    /// The program attributes of aya-ebpf; the table supports the first four.
    const ATTRIBUTES: [&str; 16] = [
        "kprobe",
        "kretprobe",
        "tracepoint",
        "raw_tracepoint",
        "btf_tracepoint",
        "fentry",
        "fexit",
        "uprobe",
        "uretprobe",
        "lsm",
        "xdp",
        "classifier",
        "socket_filter",
        "sk_msg",
        "perf_event",
        "cgroup_skb",
    ];

    /// Every program function of the eBPF crate's sources: name -> (attribute, its arguments).
    fn ebpf_programs() -> BTreeMap<String, (String, String)> {
        fn walk(dir: &Path, found: &mut BTreeMap<String, (String, String)>) {
            for entry in std::fs::read_dir(dir).expect("eBPF sources") {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("an eBPF source");
                    scan(&text, found);
                }
            }
        }
        fn scan(text: &str, found: &mut BTreeMap<String, (String, String)>) {
            let mut lines = text.lines().map(str::trim);
            while let Some(line) = lines.next() {
                let Some(attr) = line.strip_prefix("#[").and_then(|l| l.strip_suffix(']')) else {
                    continue;
                };
                let (word, args) = attr.split_once('(').unwrap_or((attr, ")"));
                if !ATTRIBUTES.contains(&word) {
                    continue;
                }
                let function = lines
                    .find_map(|l| l.split_once("fn ").map(|(_, rest)| rest.to_string()))
                    .expect("a function after the attribute");
                let name = function.split('(').next().expect("a name").to_string();
                let args = args
                    .strip_suffix(')')
                    .expect("closed arguments")
                    .to_string();
                assert!(found.insert(name, (word.to_string(), args)).is_none());
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../containerdsnoop-ebpf/src");
        let mut found = BTreeMap::new();
        walk(&src, &mut found);
        found
    }

    #[test]
    fn every_program_of_the_table_is_in_the_ebpf_source_with_its_kind() {
        let source = ebpf_programs();
        assert!(source.len() >= 12, "programs found: {source:?}");
        for p in &PROGRAMS {
            let (attribute, args) = source
                .get(p.name)
                .unwrap_or_else(|| panic!("{} is not a program of the eBPF source", p.name));
            let expected = match p.kind {
                Kprobe(_) => "kprobe",
                Kretprobe(_) => "kretprobe",
                Tracepoint(..) => "tracepoint",
                RawTracepoint(_) => "raw_tracepoint",
            };
            assert_eq!(attribute, expected, "{}", p.name);
            if let RawTracepoint(event) = p.kind {
                assert_eq!(*args, format!("tracepoint = \"{event}\""), "{}", p.name);
            }
        }
    }

    #[test]
    fn every_program_of_the_ebpf_source_is_in_the_table() {
        for name in ebpf_programs().keys() {
            assert!(
                PROGRAMS.iter().any(|p| p.name == name),
                "{name} is in no row of PROGRAMS"
            );
        }
    }

    /// Rows that differ only in build come in pairs, so that every kernel gets one of them.
    #[test]
    fn every_hook_has_one_build_per_kernel() {
        for bpf_loop in [false, true] {
            let mut hooks: Vec<(Backend, String)> = PROGRAMS
                .iter()
                .filter(|p| p.build.fits(&|| bpf_loop))
                .map(|p| (p.backend, p.hook()))
                .collect();
            let all = hooks.len();
            hooks.sort_by(|a, b| a.1.cmp(&b.1));
            hooks.dedup();
            assert_eq!(hooks.len(), all, "a hook twice with bpf_loop={bpf_loop}");
        }
        let hooks = |build| {
            let mut h: Vec<String> = PROGRAMS
                .iter()
                .filter(|p| p.build == build)
                .map(Program::hook)
                .collect();
            h.sort();
            h
        };
        assert_eq!(hooks(Build::BpfLoop), hooks(Build::Bounded));
    }
}
