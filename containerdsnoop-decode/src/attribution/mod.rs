//! Container attribution: who runs a process, the container (and pod) at each end of a row.
//! This module owns the values and the seam; the parsing of `/proc/PID/cgroup` is [`cgroup`],
//! and asking the runtimes for names lives in the CLI crate's `containers` (it needs sockets
//! and tokio), which plugs in through [`Attributor`]. Capture files (`-r`) have no processes to
//! ask about: no attributor.

pub mod cgroup;

use std::sync::Arc;

use serde_json::{Value, json};

/// Which runtime's naming a container id comes from (the cgroup path says, or the runtime
/// that answered for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    Containerd,
    Docker,
    CriO,
    /// A Kubernetes cgroupfs layout (`/kubepods/...`), which does not name its runtime.
    Kubernetes,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::Docker => "docker",
            RuntimeKind::CriO => "cri-o",
            RuntimeKind::Kubernetes => "kubernetes",
        }
    }
}

/// What is known about one container: its id always; the rest once its runtime has answered
/// (a row whose lookup has not finished carries the id and what the cgroup path said).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// The runtime's name for it: the Kubernetes container name, or docker's name.
    pub name: Option<String>,
    pub image: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    pub runtime: Option<RuntimeKind>,
    /// containerd's namespace (`k8s.io`, `default`, `moby`, ...).
    pub namespace: Option<String>,
}

impl Container {
    /// The table's `CONTAINER` cell: `pod/container`, else the name, else the short id.
    pub fn label(&self) -> String {
        match (&self.pod, &self.name) {
            (Some(pod), Some(name)) => format!("{pod}/{name}"),
            (None, Some(name)) => name.clone(),
            _ => self.short_id().to_string(),
        }
    }

    /// The first 12 characters of the id, as docker and crictl show it.
    pub fn short_id(&self) -> &str {
        match self.id.char_indices().nth(12) {
            Some((i, _)) => &self.id[..i],
            None => &self.id,
        }
    }

    /// The JSON object rows carry (docs/json.md).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "pod": self.pod,
            "pod_namespace": self.pod_namespace,
            "runtime": self.runtime.map(RuntimeKind::as_str),
            "namespace": self.namespace,
        })
    }

    /// `--container ID|NAME`: the name, or a prefix of the id.
    pub fn matches_container(&self, wanted: &str) -> bool {
        !wanted.is_empty() && (self.id.starts_with(wanted) || self.name.as_deref() == Some(wanted))
    }

    /// `--pod NAME[.NAMESPACE]`.
    pub fn matches_pod(&self, wanted: &PodSelector) -> bool {
        let Some(pod) = self.pod.as_deref() else {
            return false;
        };
        let text = wanted.0.as_str();
        // Pod names may contain dots: `a.b` is the pod `a.b` in any namespace, or the pod `a`
        // in the namespace `b`.
        text == pod
            || text
                .strip_prefix(pod)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|ns| self.pod_namespace.as_deref() == Some(ns))
    }
}

/// `--pod NAME[.NAMESPACE]`, as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector(pub String);

/// A row end's container: None for a host process, or when it cannot be told (the process is
/// gone, its cgroup layout is not one we know): never a guess.
pub type Attribution = Option<Arc<Container>>;

/// Tells which container a process runs in. The pipeline asks once per row end, so an
/// implementation answers from a cache and never blocks (see the CLI's `containers` module).
pub trait Attributor {
    fn container(&mut self, pid: u32) -> Attribution;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_container() -> Container {
        Container {
            id: "0123456789abcdef0123".into(),
            name: Some("agent".into()),
            pod: Some("web.v2".into()),
            pod_namespace: Some("prod".into()),
            ..Container::default()
        }
    }

    #[test]
    fn labels_prefer_pod_and_name_then_the_short_id() {
        assert_eq!(pod_container().label(), "web.v2/agent");
        let bare = Container {
            id: "0123456789abcdef0123".into(),
            ..Container::default()
        };
        assert_eq!(bare.label(), "0123456789ab");
        let short = Container {
            id: "abc".into(),
            ..Container::default()
        };
        assert_eq!(short.label(), "abc");
    }

    #[test]
    fn selectors_match_names_id_prefixes_and_pods() {
        let c = pod_container();
        assert!(c.matches_container("agent"));
        assert!(c.matches_container("0123"));
        assert!(!c.matches_container("1234"));
        assert!(!c.matches_container(""));
        assert!(c.matches_pod(&PodSelector("web.v2".into())));
        assert!(c.matches_pod(&PodSelector("web.v2.prod".into())));
        assert!(!c.matches_pod(&PodSelector("web.v2.dev".into())));
        assert!(!c.matches_pod(&PodSelector("web".into())));
        assert!(!c.matches_pod(&PodSelector("web.v2.pro".into())));
    }
}
