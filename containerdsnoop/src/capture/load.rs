//! The eBPF object: embedded at build time, loaded with this run's globals and map sizes, and
//! the selection of start written to its maps before any program is attached.

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
};
use containerdsnoop_common::{FileKey, PATTERN_ABSTRACT, PathPattern};

use super::{
    CaptureConfig,
    programs::entry_stash_needed,
    selection_maps::{apply_patterns, apply_updates, apply_updates_dirs},
};

/// The eBPF object built by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/containerdsnoop"));

pub fn load_object(config: &CaptureConfig) -> anyhow::Result<Ebpf> {
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
    let mut patterns: Array<_, PathPattern> =
        Array::try_from(ebpf.map_mut("PATTERNS").context("map PATTERNS missing")?)?;
    for (i, p) in config.patterns.iter().enumerate() {
        patterns
            .set(i as u32, p, 0)
            .context("writing socket patterns")?;
    }
    let mut initial_errors = Vec::new();
    apply_patterns(&mut patterns, &config.initial, &mut initial_errors);
    // Borrowed, not taken: the programs are loaded later and need the maps' fds open.
    let mut files: HashMap<_, FileKey, u32> = HashMap::try_from(
        ebpf.map_mut("SELECTED_FILES")
            .context("map SELECTED_FILES missing")?,
    )?;
    apply_updates(
        &mut files,
        None::<&mut HashMap<MapData, FileKey, u32>>,
        &config.initial,
        &mut initial_errors,
    );
    let mut dirs: HashMap<_, FileKey, u32> = HashMap::try_from(
        ebpf.map_mut("SELECTED_DIRS")
            .context("map SELECTED_DIRS missing")?,
    )?;
    apply_updates_dirs(&mut dirs, &config.initial, &mut initial_errors);
    if let Some(e) = initial_errors.first() {
        bail!("{e}");
    }
    Ok(ebpf)
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
