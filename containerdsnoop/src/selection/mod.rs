//! Socket selection, one concept from the user's words to the kernel's maps:
//! - [`pattern`]: what a `SOCKET` argument is ([`Selector`]);
//! - [`identity`]: the kernel's identity of a file (device, inode, generation);
//! - [`resolve`]: what each selector names on the file system now;
//! - [`tracker`]: how that changes over time, as map additions and removals;
//! - [`notice`] and [`report`]: what the user is told, at start and on each change;
//! - [`discover`]: who listens, and the connections already open (sock_diag);
//! - [`kernel`]: how the updates reach the kernel maps.
//!
//! [`Selection`] ties them together while tracing: it resolves the selectors at start (and
//! reports what they resolved to), then rescans every [`RESCAN_INTERVAL`] so that a socket
//! re-created by a restarting daemon, or a directory that appears later, is selected by its new
//! identity, one that is gone stops selecting anything, and the user is told.
//!
//! What can reach the output, and why nothing unselected does (see docs/selection.md for the
//! whole audit): a data record is emitted only for a socket that `socket::select` (eBPF) finds
//! selected, by an exact identity or a selected directory plus a name, or, for abstract
//! sockets, by name; connection-end records only for sockets that have sent a selected record.

pub mod discover;
pub mod identity;
pub mod kernel;
pub mod notice;
pub mod pattern;
pub mod report;
pub mod resolve;
pub mod tracker;

use std::time::Duration;

use containerdsnoop_common::{FileKey, PATTERN_ABSTRACT, PathPattern};

pub use pattern::{DEFAULT_SOCKETS, Selector, parse_selector};
use resolve::{Target, resolve, resolve_quick};
use tracker::{Tracker, Update};

use crate::capture::Capture;

/// How often the selected paths are checked again. Sockets re-created at a selected path, and
/// new entries of a selected directory, are traced from their first byte regardless (the kernel
/// matches the directory and the name); the rescan adds the new file's identity (for paths
/// reached through a symlink or another mount) and reports the change.
pub const RESCAN_INTERVAL: Duration = Duration::from_millis(250);

pub struct Selection {
    tracker: Tracker,
}

impl Selection {
    /// Resolves `selectors` once; returns the map entries to load before attaching.
    pub fn start(selectors: Vec<Selector>) -> (Selection, Vec<Update>) {
        let mut tracker = Tracker::new(selectors);
        let (updates, _) = tracker.scan(resolve);
        (Selection { tracker }, updates)
    }

    /// Socket files selected at start (for discovering connections already open).
    pub fn current_files(&self) -> Vec<FileKey> {
        self.tracker
            .current_sockets()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The abstract-name patterns (compared by name in user space too).
    pub fn abstract_patterns(&self) -> Vec<PathPattern> {
        (self.tracker.selectors().iter())
            .map(Selector::kernel_pattern)
            .filter(|p| p.kind == PATTERN_ABSTRACT)
            .collect()
    }

    /// One or more lines per selector: what it resolved to and who listens (unescaped). With
    /// `defaults` (no SOCKET given), the default paths that do not exist on this machine are
    /// named in one line instead of one line each.
    pub fn report(&self, defaults: bool) -> Vec<String> {
        let table = discover::listeners(&self.current_files()).ok();
        let listeners = |k: &FileKey| discover::listeners_of(&table, k);
        let mut lines = Vec::new();
        let mut absent = Vec::new();
        for (i, sel) in self.tracker.selectors().iter().enumerate() {
            let Some(res) = self.tracker.resolution(i) else {
                continue;
            };
            let missing = match sel {
                Selector::Exact { .. } => matches!(res.target, Some(Target::Missing)),
                Selector::Prefix { .. } => res.dir.is_none(),
                Selector::Abstract { .. } => false,
            };
            if defaults && missing {
                absent.push(sel.text());
            } else {
                lines.extend(report::lines(sel, res, &listeners));
            }
        }
        if !absent.is_empty() {
            lines.push(format!(
                "not on this machine (traced if they appear): {}",
                absent.join(", ")
            ));
        }
        lines
    }

    /// Checks the selected paths again, updates the kernel maps, and returns what to tell the
    /// user (unescaped).
    pub fn rescan(&mut self, capture: &mut Capture) -> Vec<String> {
        let (updates, mut notices) = self.tracker.scan(resolve_quick);
        notices.extend(capture.apply_selection(&updates));
        notices
    }
}
