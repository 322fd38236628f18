//! How selection reaches the kernel: the [`Update`]s of a scan written to the maps the eBPF
//! selection reads (`SELECTED_FILES`, `SELECTED_DIRS`, `PATTERNS`, `GENERATIONLESS`; see
//! `containerdsnoop-ebpf/src/maps.rs`). A write that fails is one message, so that a socket that
//! cannot be selected is never silently missed, nor one that cannot be unselected silently kept.

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError},
};
use containerdsnoop_common::{FileKey, PathPattern};

use super::{identity::dev_text, tracker::Update};

/// The selection maps, taken out of the object as soon as it is loaded (the programs keep
/// referring to them by fd, which these handles keep open).
pub struct SelectionMaps {
    files: HashMap<MapData, FileKey, u32>,
    dirs: HashMap<MapData, FileKey, u32>,
    patterns: Array<MapData, PathPattern>,
    generationless: Array<MapData, u32>,
    awaited: HashMap<MapData, FileKey, u32>,
    awaited_count: Array<MapData, u32>,
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &str,
) -> anyhow::Result<T> {
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} missing"))?;
    T::try_from(map).with_context(|| format!("map {name}"))
}

impl SelectionMaps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<SelectionMaps> {
        Ok(SelectionMaps {
            files: take(ebpf, "SELECTED_FILES")?,
            dirs: take(ebpf, "SELECTED_DIRS")?,
            patterns: take(ebpf, "PATTERNS")?,
            generationless: take(ebpf, "GENERATIONLESS")?,
            awaited: take(ebpf, "AWAITED_DIRS")?,
            awaited_count: take(ebpf, "AWAITED_COUNT")?,
        })
    }

    /// Writes the selectors' own name patterns (slot `i` for selector `i`).
    pub fn set_patterns(&mut self, patterns: &[PathPattern]) -> anyhow::Result<()> {
        for (i, p) in patterns.iter().enumerate() {
            (self.patterns.set(i as u32, p, 0)).context("writing socket patterns")?;
        }
        Ok(())
    }

    /// Applies `updates` in order (the tracker orders them so that no new key is looked up
    /// before what it needs); returns one message per write that failed.
    pub fn apply(&mut self, updates: &[Update]) -> Vec<String> {
        let mut errors = Vec::new();
        for u in updates {
            let result = match u {
                Update::Pattern(slot, p) => self.patterns.set(*slot, **p, 0).map_err(|e| {
                    format!(
                        "cannot write name pattern {slot} in the kernel: {e}; a socket \
                         re-created at a symlink's target is traced only from the next check on"
                    )
                }),
                Update::File(k, v) => {
                    (self.files.insert(k, v, 0)).map_err(|e| not_selected("socket file", k, &e))
                }
                Update::Dir(k, mask) => {
                    (self.dirs.insert(k, mask, 0)).map_err(|e| not_selected("directory", k, &e))
                }
                Update::RemoveFile(k) => removal(self.files.remove(k), "socket file", k),
                Update::RemoveDir(k) => removal(self.dirs.remove(k), "directory", k),
                Update::Awaited(k, mask) => (self.awaited.insert(k, mask, 0)).map_err(|e| {
                    format!(
                        "cannot await directory inode {} in the kernel: {e}; sockets bound as soon \
                         as the selected directory below it is created are traced only from the \
                         next check on",
                        k.ino
                    )
                }),
                Update::RemoveAwaited(k) => removal(self.awaited.remove(k), "awaited directory", k),
                Update::AwaitedCount(n) => self.awaited_count.set(0, n, 0).map_err(|e| {
                    format!("cannot write the count of awaited directories in the kernel: {e}")
                }),
                Update::Generationless(n) => self.generationless.set(0, n, 0).map_err(|e| {
                    format!(
                        "cannot write the count of generationless identities in the kernel: {e}; \
                         sockets on file systems without file handle generations may be missed"
                    )
                }),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }
}

fn not_selected(what: &str, k: &FileKey, e: &dyn std::fmt::Display) -> String {
    format!(
        "cannot select {what} (device {}, inode {}) in the kernel: {e}; its sockets are NOT \
         traced",
        dev_text(k.dev),
        k.ino
    )
}

/// A removal that found nothing to remove is fine (never written, e.g. after a failed insert).
fn removal(result: Result<(), MapError>, what: &str, k: &FileKey) -> Result<(), String> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(format!(
            "cannot unselect {what} (device {}, inode {}) in the kernel: {e}; a socket given \
             its inode number on a file system without generations could be traced",
            dev_text(k.dev),
            k.ino
        )),
    }
}
