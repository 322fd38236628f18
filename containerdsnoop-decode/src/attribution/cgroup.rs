//! `/proc/PID/cgroup` → which container, from the path of the process's cgroup alone. Knows
//! the layouts runtimes create; anything else (nested containers, unknown managers, a
//! container's own sub-cgroups) is [`CgroupOwner::Unknown`]: never a wrong container.
//!
//! Layouts (cgroup v2 `0::PATH`, or v1 `N:controllers:PATH` where the controllers agree; a
//! `/<namespace>/<id>` look-alike must be under every one):
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
    let v1_count = v1_paths.len();
    // v1 (or hybrid with an empty unified hierarchy): runtimes put a container in the same
    // path under every controller. The controllers must agree on a container; host paths
    // under some controllers and a container under others is not a layout we know.
    let mut found: Option<CgroupContainer> = None;
    let mut unknown = false;
    let mut host = false;
    for path in v1_paths {
        match classify_path(path) {
            CgroupOwner::Host => host = true,
            CgroupOwner::Unknown => unknown = true,
            CgroupOwner::Container(c) => match &found {
                Some(f) if *f != c => return CgroupOwner::Unknown,
                Some(_) => {}
                None => found = Some(c),
            },
        }
    }
    match found {
        // A `/<namespace>/<id>` look-alike under some controllers only (a sandbox's own
        // memory cgroup, say) is not how runtimes place a container.
        Some(c) if !unknown && (c.certainty == Certainty::Named || !host) => {
            CgroupOwner::Container(c)
        }
        Some(_) => CgroupOwner::Unknown,
        None if unknown => CgroupOwner::Unknown,
        // No line in Linux's format says nothing.
        None if v1_count == 0 => CgroupOwner::Unknown,
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

#[cfg(test)]
mod tests {
    use super::*;

    const CRI_ID: &str = "fcaa91a5367b46f85874764c27fe27815f6bf17600de212d19c2ab734f4e39f3";
    const DOCKER_ID: &str = "33b28f4d5d3ffaf30b7133febc6cd39c6ed1f2c277f914d04b84ba6897e0b38f";

    /// Every controller line of a hybrid (v1 + unified) host, all at `path`.
    fn hybrid(path: &str) -> String {
        [
            "9:name=systemd",
            "8:pids",
            "7:blkio",
            "6:freezer",
            "5:devices",
            "4:memory",
            "3:cpuset",
            "2:cpuacct",
            "1:cpu",
            "0:",
        ]
        .iter()
        .map(|c| format!("{c}:{path}\n"))
        .collect()
    }

    fn container(owner: CgroupOwner) -> CgroupContainer {
        match owner {
            CgroupOwner::Container(c) => c,
            other => panic!("not a container: {other:?}"),
        }
    }

    // Real samples, read on this project's test machine (hybrid v1 + unified hierarchy) from
    // the processes of e2e_containers' containers.

    #[test]
    fn real_cri_container_without_a_cgroup_parent() {
        let sample = hybrid(&format!("/k8s.io/{CRI_ID}"));
        let c = container(parse_proc_cgroup(&sample));
        assert_eq!(c.id, CRI_ID);
        assert_eq!(c.namespace.as_deref(), Some("k8s.io"));
        assert_eq!(c.runtime, RuntimeKind::Containerd);
        assert_eq!(c.certainty, Certainty::Candidate);
    }

    #[test]
    fn real_ctr_run_container() {
        let c = container(parse_proc_cgroup(&hybrid("/default/attr-ctr")));
        assert_eq!(
            (c.id.as_str(), c.namespace.as_deref()),
            ("attr-ctr", Some("default"))
        );
        assert_eq!(c.certainty, Certainty::Candidate);
    }

    #[test]
    fn real_docker_cgroupfs_container() {
        let c = container(parse_proc_cgroup(&hybrid(&format!("/docker/{DOCKER_ID}"))));
        assert_eq!(c.id, DOCKER_ID);
        assert_eq!(c.runtime, RuntimeKind::Docker);
        assert_eq!(c.certainty, Certainty::Named);
    }

    #[test]
    fn real_host_processes() {
        assert_eq!(parse_proc_cgroup(&hybrid("/")), CgroupOwner::Host);
        // This machine's sandbox puts every process in a memory cgroup of its own, and
        // nothing else: that one path looks like `/<namespace>/<id>`, but runtimes put a
        // container under every controller, so it is no container (and nobody is asked).
        let sample = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
                      4:memory:/process_api/91d54ad37dede7ba91e491b37b6b3ebe\n3:cpuset:/\n\
                      2:cpuacct:/\n1:cpu:/\n0::/\n";
        assert_eq!(parse_proc_cgroup(sample), CgroupOwner::Unknown);
        // A named layout under some controllers only still names its container (a v1 host
        // whose runtime skipped a controller).
        let partial = format!("2:pids:/docker/{DOCKER_ID}\n1:net_cls:/\n");
        assert_eq!(container(parse_proc_cgroup(&partial)).id, DOCKER_ID);
    }

    // Layouts written from the runtimes' documentation (kubelet's cgroup drivers, docker's
    // and CRI-O's systemd scopes), as found on cgroup v2 hosts; and v1 lines from the same.

    #[test]
    fn systemd_driver_scopes_under_kubepods_slices() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/\
             cri-containerd-{CRI_ID}.scope"
        );
        let c = container(parse_proc_cgroup(&format!("0::{path}\n")));
        assert_eq!(c.id, CRI_ID);
        assert_eq!(c.runtime, RuntimeKind::Containerd);
        assert_eq!(c.namespace.as_deref(), Some("k8s.io"));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        );
        assert_eq!(c.certainty, Certainty::Named);
        let guaranteed =
            format!("0::/kubepods.slice/kubepods-pod0f1e2d3c_4b5a.slice/crio-{CRI_ID}.scope\n");
        let c = container(parse_proc_cgroup(&guaranteed));
        assert_eq!(c.runtime, RuntimeKind::CriO);
        assert_eq!(c.pod_uid.as_deref(), Some("0f1e2d3c-4b5a"));
        assert_eq!(c.namespace, None);
        let docker = format!("0::/system.slice/docker-{DOCKER_ID}.scope\n");
        let c = container(parse_proc_cgroup(&docker));
        assert_eq!((c.id.as_str(), c.runtime), (DOCKER_ID, RuntimeKind::Docker));
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        for path in [
            format!("/kubepods/besteffort/pod0f1e2d3c-4b5a/{CRI_ID}"),
            format!("/kubepods/burstable/pod0f1e2d3c-4b5a/{CRI_ID}"),
            format!("/kubepods/pod0f1e2d3c-4b5a/{CRI_ID}"),
        ] {
            let c = container(parse_proc_cgroup(&format!("0::{path}\n")));
            assert_eq!(c.id, CRI_ID, "{path}");
            assert_eq!(c.runtime, RuntimeKind::Kubernetes, "{path}");
            assert_eq!(c.pod_uid.as_deref(), Some("0f1e2d3c-4b5a"), "{path}");
        }
        // A v1 host: every controller, same path.
        let v1: String = ["11:pids", "5:memory", "1:name=systemd"]
            .iter()
            .map(|c| format!("{c}:/kubepods/besteffort/pod0f1e2d3c-4b5a/{CRI_ID}\n"))
            .collect();
        assert_eq!(container(parse_proc_cgroup(&v1)).id, CRI_ID);
    }

    #[test]
    fn host_layouts() {
        for sample in [
            "0::/\n",
            "0::/init.scope\n",
            "0::/system.slice/containerd.service\n",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "12:pids:/system.slice/docker.service\n1:name=systemd:/system.slice/docker.service\n",
        ] {
            assert_eq!(parse_proc_cgroup(sample), CgroupOwner::Host, "{sample}");
        }
    }

    #[test]
    fn nested_and_unknown_layouts_are_unknown() {
        for sample in [
            // kind: a node in a docker container.
            format!("0::/docker/{DOCKER_ID}/kubepods/besteffort/pod1/{CRI_ID}\n"),
            // systemd inside a container.
            format!("0::/system.slice/docker-{DOCKER_ID}.scope/init.scope\n"),
            // CRI-O's monitor, a VM, a container's own sub-cgroup, deeper unknown trees.
            format!("0::/machine.slice/libpod-conmon-{CRI_ID}.scope\n"),
            "0::/machine.slice/machine-qemu.scope\n".to_string(),
            "0::/a/b/c\n".to_string(),
            "0::/kubepods/besteffort/notapod/x\n".to_string(),
            // A tracer in a cgroup namespace sees relative paths: only scope names are trusted.
            "0::/../../default/attr-ctr\n".to_string(),
            "0::/..\n".to_string(),
            // v1 controllers that disagree.
            format!("2:pids:/docker/{DOCKER_ID}\n1:memory:/kubepods/pod1/{CRI_ID}\n"),
            // Not /proc/PID/cgroup at all.
            String::new(),
            "garbage without colons\n".to_string(),
        ] {
            assert_eq!(parse_proc_cgroup(&sample), CgroupOwner::Unknown, "{sample}");
        }
        // ... while a scope name stays self-describing through a cgroup namespace.
        let relative = format!("0::/../kubepods.slice/cri-containerd-{CRI_ID}.scope\n");
        assert_eq!(container(parse_proc_cgroup(&relative)).id, CRI_ID);
    }

    #[test]
    fn identifiers_follow_containerd_rules() {
        assert!(is_identifier("attr-ctr"));
        assert!(is_identifier("k8s.io"));
        assert!(!is_identifier("-x"));
        assert!(!is_identifier("a..b"));
        assert!(!is_identifier(&"a".repeat(77)));
        assert_eq!(classify_path("/ns/bad..id"), CgroupOwner::Unknown);
        assert_eq!(
            classify_path("/system.slice/foo.service"),
            CgroupOwner::Host
        );
    }
}
