//! The backend: `--backend`, the kprobe or tracepoint backend's own checks before its programs
//! of [`PROGRAMS`](super::programs::PROGRAMS) attach, the fallback `auto` takes, and the
//! connection-end programs attached beside the chosen backend.

use std::{fmt, path::Path};

use anyhow::{Context as _, bail};
use aya::Ebpf;
use containerdsnoop_common::KernelLayout;

use super::{
    programs::{self, Part, Program, entry_stash_needed, has_bpf_loop},
    tracefs::{TRACEFS, ensure_tracefs},
};

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

/// Attaches the backend `choice` names (for `auto`, the kprobe one if it attaches, else the
/// tracepoint one); returns it, and why `auto` did not pick the kprobe backend.
pub fn attach(
    ebpf: &mut Ebpf,
    choice: BackendChoice,
    layout: &KernelLayout,
) -> anyhow::Result<(Backend, Option<String>)> {
    Ok(match choice {
        BackendChoice::Kprobe => {
            attach_kprobes(ebpf)?;
            (Backend::Kprobe, None)
        }
        BackendChoice::Tracepoint => {
            attach_tracepoints(ebpf, layout)?;
            (Backend::Tracepoint, None)
        }
        // Verifying the kprobe programs costs about a second: not when they cannot attach.
        BackendChoice::Auto if !kprobes_attachable() => {
            attach_tracepoints(ebpf, layout)
                .with_context(|| format!("kprobe backend unavailable too ({NO_KPROBES})"))?;
            (Backend::Tracepoint, Some(NO_KPROBES.to_string()))
        }
        BackendChoice::Auto => match attach_kprobes(ebpf) {
            Ok(()) => (Backend::Kprobe, None),
            Err(kprobe_error) => {
                attach_tracepoints(ebpf, layout).with_context(|| {
                    format!("kprobe backend unavailable too ({kprobe_error:#})")
                })?;
                (Backend::Tracepoint, Some(format!("{kprobe_error:#}")))
            }
        },
    })
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
    // Load them all first: the verifier runs even where kprobes cannot attach, and a forced
    // `--backend kprobe` says whether the programs themselves are fine.
    let sends = || sends(Backend::Kprobe, false, &has_bpf_loop);
    programs::load_all(ebpf, sends())?;
    if !kprobes_attachable() {
        bail!("{NO_KPROBES}; the programs passed the verifier");
    }
    programs::attach_all(ebpf, sends())
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
    programs::attach_all(
        ebpf,
        sends(Backend::Tracepoint, stash_at_entry, &has_bpf_loop),
    )
}

/// The rows `backend` attaches for the sends, in order: its [`Part::Send`] (for the tracepoint
/// backend `sock_send_length`: if it cannot attach there is no point stashing buffers), then,
/// when `entry_stash` (see `entry_stash_needed`), its [`Part::EntryStash`].
fn sends<'a>(
    backend: Backend,
    entry_stash: bool,
    bpf_loop: &'a dyn Fn() -> bool,
) -> impl Iterator<Item = &'static Program> + 'a {
    let stash = programs::part(backend, Part::EntryStash, bpf_loop).filter(move |_| entry_stash);
    programs::part(backend, Part::Send, bpf_loop).chain(stash)
}

/// Attaches the programs that report connection ends for `backend`: the socket release and
/// shutdown kprobes, or the close/shutdown syscall tracepoints and the process-exit raw
/// tracepoint (which need the fd-table members of `layout`).
pub fn attach_close(
    ebpf: &mut Ebpf,
    backend: Backend,
    layout: &KernelLayout,
) -> anyhow::Result<()> {
    if backend == Backend::Tracepoint && !layout.close_fields_present() {
        bail!("kernel BTF lacks a file/fd-table member that close detection reads");
    }
    programs::attach_all(ebpf, programs::part(backend, Part::Close, &has_bpf_loop))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (program, hook) in attach order.
    fn plan(rows: impl Iterator<Item = &'static Program>) -> Vec<(&'static str, String)> {
        rows.map(|p| (p.name, p.hook())).collect()
    }

    fn expect(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        list.iter().map(|(n, h)| (*n, h.to_string())).collect()
    }

    /// What the kprobe backend attached before the program table, per build of the return probe.
    #[test]
    fn kprobe_backend_attaches_what_it_always_did() {
        for (bpf_loop, ret) in [
            (true, "unix_sendmsg_return"),
            (false, "unix_sendmsg_return_bounded"),
        ] {
            let bpf_loop = move || bpf_loop;
            for entry_stash in [false, true] {
                assert_eq!(
                    plan(sends(Backend::Kprobe, entry_stash, &bpf_loop)),
                    expect(&[
                        ("unix_sendmsg_entry", "kprobe to unix_stream_sendmsg"),
                        (ret, "kretprobe to unix_stream_sendmsg"),
                        ("unix_sendmsg_entry", "kprobe to unix_dgram_sendmsg"),
                        (ret, "kretprobe to unix_dgram_sendmsg"),
                    ])
                );
            }
            assert_eq!(
                plan(programs::part(Backend::Kprobe, Part::Close, &bpf_loop)),
                expect(&[
                    ("unix_release_entry", "kprobe to unix_release"),
                    ("unix_shutdown_entry", "kprobe to unix_shutdown"),
                ])
            );
        }
    }

    /// What the tracepoint backend attached before the program table, with and without the
    /// entry stash; it never asked whether the kernel has bpf_loop.
    #[test]
    fn tracepoint_backend_attaches_what_it_always_did() {
        let unasked = || -> bool { panic!("the tracepoint backend asked for bpf_loop") };
        let length = ("sock_send_length", "raw tracepoint sock_send_length");
        assert_eq!(
            plan(sends(Backend::Tracepoint, false, &unasked)),
            expect(&[length])
        );
        assert_eq!(
            plan(sends(Backend::Tracepoint, true, &unasked)),
            expect(&[
                length,
                ("sys_enter_buf", "tracepoint syscalls:sys_enter_write"),
                ("sys_enter_buf", "tracepoint syscalls:sys_enter_sendto"),
                ("sys_enter_writev", "tracepoint syscalls:sys_enter_writev"),
                ("sys_enter_sendmsg", "tracepoint syscalls:sys_enter_sendmsg"),
                ("sys_exit_send", "tracepoint syscalls:sys_exit_write"),
                ("sys_exit_send", "tracepoint syscalls:sys_exit_sendto"),
                ("sys_exit_send", "tracepoint syscalls:sys_exit_writev"),
                ("sys_exit_send", "tracepoint syscalls:sys_exit_sendmsg"),
            ])
        );
        assert_eq!(
            plan(programs::part(Backend::Tracepoint, Part::Close, &unasked)),
            expect(&[
                ("sys_enter_close", "tracepoint syscalls:sys_enter_close"),
                (
                    "sys_enter_shutdown",
                    "tracepoint syscalls:sys_enter_shutdown"
                ),
                ("sched_process_exit", "raw tracepoint sched_process_exit"),
            ])
        );
    }
}
