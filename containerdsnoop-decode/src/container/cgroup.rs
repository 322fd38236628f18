//! `/proc/PID/cgroup` → which container, from the path of the process's cgroup alone. Knows
//! the layouts runtimes create; anything else (nested containers, unknown managers, a
//! container's own sub-cgroups) is [`CgroupOwner::Unknown`]: never a wrong container.
//!
//! Layouts (cgroup v2 `0::PATH`, or v1 `N:controllers:PATH` where every controller agrees):
//! - systemd driver: `.../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`,
//!   `crio-<id>.scope`, `docker-<id>.scope` (also `/system.slice/docker-<id>.scope`);
//! - Kubernetes cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>`;
//! - docker's cgroupfs driver: `/docker/<id>`;
//! - containerd's default (`ctr run`, CRI without a cgroup parent): `/<namespace>/<id>`. Any
//!   two-component path looks like that, so this one is only a [`Candidate`] until containerd
//!   confirms that the container exists;
//! - host: `/`, `/init.scope`, `/system.slice/...`, `/user.slice/...`.

use super::RuntimeKind;

/// A container as its cgroup path names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupContainer {
    pub id: String,
    pub runtime: RuntimeKind,
    /// containerd's namespace, when the path names it (`/<namespace>/<id>`).
    pub namespace: Option<String>,
    /// The pod's uid, when the path names it (Kubernetes layouts).
    pub pod_uid: Option<String>,
    /// How sure the path alone is.
    pub certainty: Certainty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Certainty {
    /// A runtime-specific name (`cri-containerd-<id>.scope`, `/docker/<id>`, `/kubepods/...`).
    Named,
    /// `/<namespace>/<id>`: a container only if containerd knows it.
    Candidate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupOwner {
    Host,
    Container(CgroupContainer),
    Unknown,
}

/// Parses the content of `/proc/PID/cgroup`.
pub fn parse_proc_cgroup(content: &str) -> CgroupOwner {
    let mut unified = None;
    let mut v1_paths: Vec<&str> = Vec::new();
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if hierarchy == "0" && controllers.is_empty() {
            unified = Some(path);
        } else if !path.is_empty() {
            v1_paths.push(path);
        }
    }
    // Pure v2; or hybrid where the unified hierarchy holds the process somewhere.
    if let Some(path) = unified.filter(|p| *p != "/" || v1_paths.is_empty()) {
        return classify_path(path);
    }
    // v1 (or hybrid with an empty unified hierarchy): runtimes put a container in the same
    // path under every controller. The controllers must agree on a container; host paths
    // under some controllers and a container under others is not a layout we know.
    let mut found: Option<CgroupContainer> = None;
    let mut unknown = false;
    for path in v1_paths {
        match classify_path(path) {
            CgroupOwner::Host => {}
            CgroupOwner::Unknown => unknown = true,
            CgroupOwner::Container(c) => match &found {
                Some(f) if *f != c => return CgroupOwner::Unknown,
                Some(_) => {}
                None => found = Some(c),
            },
        }
    }
    match found {
        Some(c) if !unknown => CgroupOwner::Container(c),
        Some(_) => CgroupOwner::Unknown,
        None if unknown => CgroupOwner::Unknown,
        // No lines at all (not Linux's format) says nothing.
        None if content.trim().is_empty() => CgroupOwner::Unknown,
        None => CgroupOwner::Host,
    }
}

/// Classifies one cgroup path.
pub fn classify_path(path: &str) -> CgroupOwner {
    // A tracer in a cgroup namespace sees paths relative to its own cgroup (`/../..`): only
    // the self-describing systemd scope names are trusted then.
    let relative = path.split('/').any(|s| s == "..");
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "..")
        .collect();
    let Some(&last) = segs.last() else {
        return if relative {
            CgroupOwner::Unknown
        } else {
            CgroupOwner::Host
        };
    };
    let outer = &segs[..segs.len() - 1];
    // A container id in an outer component: a container inside a container (kind, docker in
    // docker), whose inner runtime we cannot reach.
    if outer
        .iter()
        .any(|s| scope_container(s).is_some() || is_hex_id(s))
    {
        return CgroupOwner::Unknown;
    }
    if let Some((runtime, id)) = scope_container(last) {
        return CgroupOwner::Container(CgroupContainer {
            id: id.to_string(),
            runtime,
            namespace: (runtime == RuntimeKind::Containerd
                && outer.iter().any(|s| s.starts_with("kubepods")))
            .then(|| "k8s.io".to_string()),
            pod_uid: outer.iter().find_map(|s| slice_pod_uid(s)),
            certainty: Certainty::Named,
        });
    }
    if relative {
        return CgroupOwner::Unknown;
    }
    match segs.as_slice() {
        ["kubepods", qos, pod, id] | ["kubepods.slice", qos, pod, id]
            if matches!(*qos, "besteffort" | "burstable") =>
        {
            kubepods(pod, id)
        }
        ["kubepods", pod, id] => kubepods(pod, id),
        ["docker", id] if is_hex_id(id) => CgroupOwner::Container(CgroupContainer {
            id: id.to_string(),
            runtime: RuntimeKind::Docker,
            namespace: None,
            pod_uid: None,
            certainty: Certainty::Named,
        }),
        ["init.scope"] => CgroupOwner::Host,
        [first, ..] if matches!(*first, "system.slice" | "user.slice") => CgroupOwner::Host,
        [ns, id] if !is_systemd_unit(ns) && is_identifier(ns) && is_identifier(id) => {
            CgroupOwner::Container(CgroupContainer {
                id: id.to_string(),
                runtime: RuntimeKind::Containerd,
                namespace: Some(ns.to_string()),
                pod_uid: None,
                certainty: Certainty::Candidate,
            })
        }
        _ => CgroupOwner::Unknown,
    }
}

fn kubepods(pod: &str, id: &str) -> CgroupOwner {
    match (pod.strip_prefix("pod"), is_hex_id(id)) {
        (Some(uid), true) if !uid.is_empty() => CgroupOwner::Container(CgroupContainer {
            id: id.to_string(),
            runtime: RuntimeKind::Kubernetes,
            namespace: None,
            pod_uid: Some(uid.to_string()),
            certainty: Certainty::Named,
        }),
        _ => CgroupOwner::Unknown,
    }
}

/// `cri-containerd-<id>.scope`, `docker-<id>.scope`, `crio-<id>.scope`.
fn scope_container(seg: &str) -> Option<(RuntimeKind, &str)> {
    let name = seg.strip_suffix(".scope")?;
    let (runtime, id) = if let Some(id) = name.strip_prefix("cri-containerd-") {
        (RuntimeKind::Containerd, id)
    } else if let Some(id) = name.strip_prefix("docker-") {
        (RuntimeKind::Docker, id)
    } else if let Some(id) = name.strip_prefix("crio-") {
        (RuntimeKind::CriO, id)
    } else {
        return None;
    };
    is_hex_id(id).then_some((runtime, id))
}

/// `kubepods-besteffort-pod<uid>.slice` → the uid (systemd spells its dashes `_`).
fn slice_pod_uid(seg: &str) -> Option<String> {
    let name = seg.strip_suffix(".slice")?;
    let (_, uid) = name.rsplit_once("-pod")?;
    (!uid.is_empty() && name.starts_with("kubepods")).then(|| uid.replace('_', "-"))
}

/// A 64-hex-digit id, as docker, CRI and CRI-O name containers.
fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_systemd_unit(s: &str) -> bool {
    [".slice", ".scope", ".service", ".mount", ".socket"]
        .iter()
        .any(|suffix| s.ends_with(suffix))
}

/// containerd's identifier rule: alphanumerics separated by single `.`, `_` or `-`, at most
/// 76 characters.
fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 76
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
        && !b
            .windows(2)
            .any(|w| !w[0].is_ascii_alphanumeric() && !w[1].is_ascii_alphanumeric())
}
