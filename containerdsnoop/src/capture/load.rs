//! The eBPF object: embedded at build time, loaded with this run's globals and map sizes, and
//! the selection of start written to its maps (`selection::kernel`) before any program is
//! attached.

use anyhow::{anyhow, bail};
use aya::{Ebpf, EbpfLoader};
use containerdsnoop_common::PATTERN_ABSTRACT;

use super::{CaptureConfig, programs::entry_stash_needed};
use crate::selection::kernel::SelectionMaps;

/// The eBPF object built by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/containerdsnoop"));

pub fn load_object(config: &CaptureConfig) -> anyhow::Result<(Ebpf, SelectionMaps)> {
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
