//! Kernel capture: loads the embedded eBPF object (`load`), attaches a backend's programs
//! (`backend`, from the table in `programs`), and hands the ring buffer's records (`ring`) to
//! the live source (`live`) as plain record bytes for `record::parse_into`. The only module
//! besides `main` that touches aya, tokio or the kernel.

mod backend;
pub mod live;
mod load;
mod programs;
mod ring;
mod skips;
mod tracefs;
mod verify;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use containerdsnoop_common::{DropCounters, KernelLayout, PathPattern};

use crate::selection::{kernel::SelectionMaps, tracker::Update};

pub use backend::{Backend, BackendChoice};
pub use verify::{Verified, verify_all};

use ring::Ring;

pub struct CaptureConfig {
    pub backend: BackendChoice,
    /// Name patterns, one per selector (see `selection::Selector::kernel_pattern`).
    pub patterns: Vec<PathPattern>,
    /// The socket files and directories selected by identity at start, written to the maps
    /// before any program is attached.
    pub initial: Vec<Update>,
    pub max_call_bytes: u32,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_bytes: u32,
    pub layout: KernelLayout,
}

pub struct Capture {
    // Keeps programs, links and maps alive.
    ebpf: Ebpf,
    /// The records, read by the live source.
    ring: Ring,
    drops: PerCpuArray<MapData, DropCounters>,
    /// The selection maps, kept current by `selection::Selection::rescan`.
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
        let (mut ebpf, selection) = load::load_object(config)?;
        let (backend, fallback_reason) =
            backend::attach(&mut ebpf, config.backend, &config.layout)?;
        // Connection ends: secondary to the data, so a failure is reported, not fatal.
        let close_unavailable = backend::attach_close(&mut ebpf, backend, &config.layout)
            .err()
            .map(|e| format!("{e:#}"));
        let ring = Ring::open(&mut ebpf)?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("map DROPS missing")?)?;
        Ok(Capture {
            ebpf,
            ring,
            drops,
            selection,
            backend,
            fallback_reason,
            close_unavailable,
        })
    }

    /// Applies selection changes to the kernel maps; returns one message per change that
    /// failed, so that a socket that cannot be selected (or unselected) is never silent.
    pub fn apply_selection(&mut self, updates: &[Update]) -> Vec<String> {
        self.selection.apply(updates)
    }

    /// Runs of the attached programs the kernel skipped, by program name (see
    /// `skips::kernel_skips`).
    pub fn kernel_skips(&self) -> Vec<(String, u64)> {
        skips::kernel_skips(&self.ebpf)
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

/// At exit (after the summary), says which programs the kernel skipped, so that no send it
/// kept from the tracer goes unmentioned.
impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(line) = skips::skip_report(&self.kernel_skips()) {
            eprintln!("{line}");
        }
    }
}
