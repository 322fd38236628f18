//! Filters (`-p`, `-c`, `-m`, `-t`, `--container`, `--pod`), compiled once and applied by the
//! pipeline, once, before any sink: rows must pass all of them; records (raw output, the pcap
//! export) pass or fail on the process and container predicates alone, since a record carries
//! no method and is no row type.

use crate::{
    attribution::{Attribution, PodSelector},
    output::rows::{Row, RowKind},
    record::Chunk,
    stream::conn::ConnInfo,
};

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub methods: Vec<MethodPattern>,
    pub kinds: Vec<RowKind>,
    /// `--container ID|NAME` (an id prefix, or the name).
    pub containers: Vec<String>,
    /// `--pod NAME[.NAMESPACE]`.
    pub pods: Vec<PodSelector>,
}

/// `-m PATTERN`: a glob with `*` over the full method name; without `*`, a substring match.
#[derive(Clone, Debug)]
pub struct MethodPattern {
    parts: Vec<String>,
    glob: bool,
}

impl MethodPattern {
    pub fn new(pattern: &str) -> Self {
        let glob = pattern.contains('*');
        MethodPattern {
            parts: pattern.split('*').map(str::to_string).collect(),
            glob,
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        if !self.glob {
            return name.contains(self.parts[0].as_str());
        }
        // Anchored glob: first part is a prefix, last a suffix, the middle in order.
        let first = &self.parts[0];
        let last = &self.parts[self.parts.len() - 1];
        if !name.starts_with(first.as_str()) {
            return false;
        }
        let mut rest = &name[first.len()..];
        for mid in &self.parts[1..self.parts.len() - 1] {
            match rest.find(mid.as_str()) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last.as_str())
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.comms.is_empty()
            && self.methods.is_empty()
            && self.kinds.is_empty()
            && self.containers.is_empty()
            && self.pods.is_empty()
    }

    /// Whether `chunk` passes `-p` and `-c`: its sender or peer has a wanted pid, or its
    /// sender — or, once known from its connection, the other end — a wanted comm.
    pub fn accepts_record(&self, chunk: &Chunk, conn: Option<&ConnInfo>) -> bool {
        let ends = conn.into_iter().flat_map(|c| c.ends.iter().flatten());
        if !self.pids.is_empty()
            && !self.pids.iter().any(|&p| {
                p == chunk.tgid || p == chunk.peer_tgid || ends.clone().any(|e| e.pid == p)
            })
        {
            return false;
        }
        if !self.comms.is_empty()
            && !self
                .comms
                .iter()
                .any(|c| *c == chunk.process_comm || ends.clone().any(|e| e.comm == *c))
        {
            return false;
        }
        true
    }

    pub fn accepts(&self, row: &Row) -> bool {
        if !self.pids.is_empty() && !self.pids.iter().any(|&p| p == row.pid || p == row.peer_pid) {
            return false;
        }
        if !self.comms.is_empty()
            && !self
                .comms
                .iter()
                .any(|c| *c == row.comm || row.peer_comm.as_deref() == Some(c.as_str()))
        {
            return false;
        }
        if !self.methods.is_empty() {
            let Some(name) = row.method_name() else {
                return false;
            };
            if !self.methods.iter().any(|m| m.matches(name)) {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&row.kind) {
            return false;
        }
        self.accepts_containers(&row.container, &row.peer_container)
    }

    /// `--container` and `--pod` for a record, given its ends' containers (None: nobody
    /// asked, as with `-r`, so no record can be said to match).
    pub fn accepts_record_containers(&self, ends: Option<&[Attribution; 2]>) -> bool {
        match ends {
            Some([a, b]) => self.accepts_containers(a, b),
            None => self.containers.is_empty() && self.pods.is_empty(),
        }
    }

    /// `--container` and `--pod`: either end is a wanted container (or in a wanted pod).
    fn accepts_containers(&self, a: &Attribution, b: &Attribution) -> bool {
        let ends = || [a, b].into_iter().flatten();
        (self.containers.is_empty()
            || ends().any(|c| self.containers.iter().any(|w| c.matches_container(w))))
            && (self.pods.is_empty() || ends().any(|c| self.pods.iter().any(|p| c.matches_pod(p))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_and_glob() {
        let sub = MethodPattern::new("Version");
        assert!(sub.matches("/runtime.v1.RuntimeService/Version"));
        assert!(!sub.matches("/runtime.v1.RuntimeService/ListContainers"));
        let g = MethodPattern::new("/runtime.v1.*/List*");
        assert!(g.matches("/runtime.v1.RuntimeService/ListContainers"));
        assert!(g.matches("/runtime.v1.ImageService/ListImages"));
        assert!(!g.matches("/runtime.v1.RuntimeService/Version"));
        assert!(!g.matches("x/runtime.v1.RuntimeService/ListContainers"));
        let all = MethodPattern::new("*");
        assert!(all.matches("anything"));
        let suffix = MethodPattern::new("*Subscribe");
        assert!(suffix.matches("/containerd.services.events.v1.Events/Subscribe"));
        assert!(!suffix.matches("/containerd.services.events.v1.Events/SubscribeX"));
    }
}
