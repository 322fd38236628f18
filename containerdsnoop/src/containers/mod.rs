//! Which container runs each end of a row, live: pid → container id from `/proc/PID/cgroup`
//! (parsed by the decoding library's `attribution::cgroup`), then id → name, image and pod from
//! the runtimes themselves ([`lookup`], on a thread of its own). The pipeline asks
//! [`LiveAttributor`] once per row end; it answers from its caches and never waits for a
//! runtime: a row whose lookup has not finished carries the id and what its cgroup said.

mod containerd;
mod docker;
mod lookup;
mod procs;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use containerdsnoop_decode::{
    attribution::{
        Attribution, Attributor, Container,
        cgroup::{Certainty, CgroupContainer, CgroupOwner},
    },
    lru::LruMap,
};

pub use lookup::runtime_sockets;

/// The socket files traced by exact path (prefixes and abstract names select no runtime).
pub fn traced_files(selectors: &[crate::selection::Selector]) -> Vec<PathBuf> {
    selectors
        .iter()
        .filter_map(|s| match s {
            crate::selection::Selector::Exact { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Most processes remembered (each a few hundred bytes).
const MAX_PROCESSES: usize = 16 * 1024;
/// Most containers remembered.
const MAX_CONTAINERS: usize = 16 * 1024;
/// How long a process's cgroup is trusted before its start time is checked again: a pid is
/// reused only after the kernel has handed out every other one, which takes far longer.
const RECHECK_AFTER: Duration = Duration::from_millis(250);

/// What the runtimes said about a container id.
#[derive(Clone, Debug)]
enum Known {
    Found(Arc<Container>),
    /// Every runtime asked answered that it has no such container.
    Missing,
}

/// Container metadata by id, filled by the lookup thread, read by the pipeline's thread.
type Directory = Arc<Mutex<LruMap<String, Known>>>;

/// One process as last seen.
struct Process {
    /// From `/proc/PID/stat`: tells a reused pid from the process we looked at.
    start_time: Option<u64>,
    checked: Instant,
    owner: CgroupOwner,
    /// What rows get, once settled; before that, what the cgroup said.
    attribution: Attribution,
    settled: bool,
    asked: bool,
}

/// The pipeline's [`Attributor`] for the live capture.
pub struct LiveAttributor {
    processes: LruMap<u32, Process>,
    directory: Directory,
    lookups: tokio::sync::mpsc::Sender<CgroupContainer>,
    /// Lookups not asked because the queue was full (asked again at the process's next row).
    pub dropped_lookups: u64,
}

impl LiveAttributor {
    /// Starts the lookup thread, which asks the runtimes behind `sockets` (see
    /// [`runtime_sockets`]) for their containers now, and about new ones as they appear.
    pub fn start(sockets: Vec<PathBuf>) -> LiveAttributor {
        let directory: Directory = Arc::new(Mutex::new(LruMap::new(MAX_CONTAINERS)));
        let lookups = lookup::spawn(sockets, directory.clone());
        LiveAttributor {
            processes: LruMap::new(MAX_PROCESSES),
            directory,
            lookups,
            dropped_lookups: 0,
        }
    }
}

/// The process `pid` as it is now: from the cache while its start time is unchanged.
fn process(processes: &mut LruMap<u32, Process>, pid: u32) -> Option<&mut Process> {
    let now = Instant::now();
    let fresh = match processes.get_mut(&pid) {
        Some(p) if now.duration_since(p.checked) < RECHECK_AFTER => true,
        Some(p) => {
            let start_time = procs::start_time(pid);
            if start_time.is_some() && start_time == p.start_time {
                p.checked = now;
                true
            } else {
                false
            }
        }
        None => false,
    };
    if !fresh {
        let start_time = procs::start_time(pid);
        let owner = procs::cgroup(pid).unwrap_or(CgroupOwner::Unknown);
        // The process may have exited between the two reads, and its pid been reused:
        // only a start time read before and after the cgroup vouches for it.
        let owner = if start_time.is_some() && procs::start_time(pid) == start_time {
            owner
        } else {
            CgroupOwner::Unknown
        };
        let attribution = match &owner {
            CgroupOwner::Container(c) if c.certainty == Certainty::Named => {
                Some(Arc::new(partial(c)))
            }
            _ => None,
        };
        let settled = !matches!(owner, CgroupOwner::Container(_));
        processes.insert(
            pid,
            Process {
                start_time,
                checked: now,
                owner,
                attribution,
                settled,
                asked: false,
            },
        );
    }
    processes.get_mut(&pid)
}

impl Attributor for LiveAttributor {
    fn container(&mut self, pid: u32) -> Attribution {
        if pid == 0 {
            return None;
        }
        let (directory, lookups) = (&self.directory, &self.lookups);
        let mut dropped = 0;
        let p = process(&mut self.processes, pid)?;
        if !p.settled {
            let CgroupOwner::Container(c) = &p.owner else {
                return p.attribution.clone();
            };
            let known = directory
                .lock()
                .ok()
                .and_then(|mut d| d.get_mut(&c.id).cloned());
            match known {
                Some(Known::Found(found)) => {
                    p.attribution = Some(found);
                    p.settled = true;
                }
                Some(Known::Missing) => p.settled = true,
                None if !p.asked => match lookups.try_send(c.clone()) {
                    Ok(()) => p.asked = true,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    // The lookup thread is gone: nothing more will be learnt.
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => p.settled = true,
                },
                None => {}
            }
        }
        let attribution = p.attribution.clone();
        self.dropped_lookups += dropped;
        attribution
    }
}

/// What the cgroup path alone says about a container.
fn partial(c: &CgroupContainer) -> Container {
    Container {
        id: c.id.clone(),
        runtime: Some(c.runtime),
        namespace: c.namespace.clone(),
        ..Container::default()
    }
}
