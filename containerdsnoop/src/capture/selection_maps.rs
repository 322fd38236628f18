//! The kernel's selection maps (`SELECTED_FILES`, `SELECTED_DIRS`, `PATTERNS`): the selection's
//! updates written to them, and what a failed write means.

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use containerdsnoop_common::{FileKey, PathPattern};

use anyhow::Context as _;

use super::Capture;
use crate::paths::identity::Update;

impl Capture {
    /// Applies selection changes to the kernel maps; returns one message per change that
    /// failed (a full map), so that a socket that cannot be selected is never silently missed.
    pub fn apply_selection(&mut self, updates: &[Update]) -> Vec<String> {
        let mut errors = Vec::new();
        // Names first: a directory's new mask bit must not meet a stale name.
        apply_patterns(&mut self.patterns, updates, &mut errors);
        apply_updates(
            &mut self.selected_files,
            Some(&mut self.selected_dirs),
            updates,
            &mut errors,
        );
        errors
    }
}

/// `SELECTED_FILES` or `SELECTED_DIRS`, owned.
pub(super) type SelectionMap = HashMap<MapData, FileKey, u32>;

/// The two selection maps, taken out of the object once the programs that use them are loaded.
pub(super) fn selection_maps(ebpf: &mut Ebpf) -> anyhow::Result<(SelectionMap, SelectionMap)> {
    let files = ebpf
        .take_map("SELECTED_FILES")
        .context("map SELECTED_FILES missing")?;
    let dirs = ebpf
        .take_map("SELECTED_DIRS")
        .context("map SELECTED_DIRS missing")?;
    Ok((HashMap::try_from(files)?, HashMap::try_from(dirs)?))
}

/// Writes the `Update::File`s of `updates` to `files` (and the `Update::Dir`s to `dirs` when
/// given); failures are described in `errors`.
pub(super) fn apply_updates<
    T: std::borrow::BorrowMut<MapData>,
    U: std::borrow::BorrowMut<MapData>,
>(
    files: &mut HashMap<T, FileKey, u32>,
    dirs: Option<&mut HashMap<U, FileKey, u32>>,
    updates: &[Update],
    errors: &mut Vec<String>,
) {
    for u in updates {
        if let Update::File(k, v) = u
            && let Err(e) = files.insert(k, v, 0)
        {
            errors.push(selection_error("socket file", k, &e));
        }
    }
    if let Some(dirs) = dirs {
        apply_updates_dirs(dirs, updates, errors);
    }
}

pub(super) fn apply_updates_dirs<T: std::borrow::BorrowMut<MapData>>(
    dirs: &mut HashMap<T, FileKey, u32>,
    updates: &[Update],
    errors: &mut Vec<String>,
) {
    for u in updates {
        if let Update::Dir(k, mask) = u
            && let Err(e) = dirs.insert(k, mask, 0)
        {
            errors.push(selection_error("directory", k, &e));
        }
    }
}

pub(super) fn apply_patterns<T: std::borrow::BorrowMut<MapData>>(
    patterns: &mut Array<T, PathPattern>,
    updates: &[Update],
    errors: &mut Vec<String>,
) {
    for u in updates {
        if let Update::Pattern(slot, p) = u
            && let Err(e) = patterns.set(*slot, **p, 0)
        {
            errors.push(format!(
                "cannot write name pattern {slot} in the kernel: {e}; a socket re-created at a \
                 symlink's target is traced only from the next check on"
            ));
        }
    }
}

fn selection_error(what: &str, k: &FileKey, e: &dyn std::fmt::Display) -> String {
    format!(
        "cannot select {what} (device {}, inode {}) in the kernel: {e}; its sockets are NOT \
         traced",
        crate::paths::identity::dev_text(k.dev),
        k.ino
    )
}
