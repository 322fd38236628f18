//! The methods inference chooses among: every gRPC method of a schema's services (ttrpc-only
//! services left out), with its request and response types and the priors that break ties
//! (routine methods, deprecated services).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use prost_reflect::MessageDescriptor;

use crate::schema::Schema;

/// Services served only over ttrpc (shims): never the method of a gRPC call.
pub const TTRPC_ONLY_SERVICES: &[&str] = &[
    "containerd.runtime.linux.shim.v1.Shim",
    "containerd.task.v2.Task",
    "containerd.task.v3.Task",
    "containerd.runtime.sandbox.v1.Sandbox",
    "containerd.services.events.ttrpc.v1.Events",
];

/// Services superseded by a same-shaped successor (CRI v1alpha2 by v1, removed in containerd 2.0
/// and kubelet 1.26): on a tie with the successor, the successor is named.
pub const DEPRECATED_SERVICE_PREFIXES: &[&str] = &["runtime.v1alpha2."];

/// Methods that the runtimes' routine clients (dockerd, the containerd Go client, ctr, nerdctl,
/// kubelet's CRI calls) make all the time. When the message bytes fit several methods equally
/// (e.g. Tasks/Kill and Tasks/ResizePty, or Containers/Create and Containers/Update, which have
/// the same wire shape), one of these is preferred to the others. A prior, so a name chosen this
/// way can be wrong: it is marked inferred like every other.
pub const ROUTINE_METHODS: &[&str] = &[
    "/containerd.services.version.v1.Version/Version",
    "/containerd.services.events.v1.Events/Subscribe",
    "/containerd.services.containers.v1.Containers/Get",
    "/containerd.services.containers.v1.Containers/Create",
    "/containerd.services.containers.v1.Containers/Delete",
    "/containerd.services.tasks.v1.Tasks/Create",
    "/containerd.services.tasks.v1.Tasks/Start",
    "/containerd.services.tasks.v1.Tasks/Get",
    "/containerd.services.tasks.v1.Tasks/Kill",
    "/containerd.services.tasks.v1.Tasks/Delete",
    "/containerd.services.tasks.v1.Tasks/Exec",
    "/containerd.services.tasks.v1.Tasks/DeleteProcess",
    "/containerd.services.images.v1.Images/Get",
    "/containerd.services.images.v1.Images/List",
    "/containerd.services.content.v1.Content/Info",
    "/containerd.services.content.v1.Content/Read",
    "/containerd.services.snapshots.v1.Snapshots/Prepare",
    "/containerd.services.snapshots.v1.Snapshots/Mounts",
    "/containerd.services.snapshots.v1.Snapshots/Remove",
    "/containerd.services.leases.v1.Leases/Create",
    "/containerd.services.leases.v1.Leases/Delete",
    "/containerd.services.namespaces.v1.Namespaces/List",
    "/containerd.services.introspection.v1.Introspection/Server",
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1.RuntimeService/Status",
    "/runtime.v1.RuntimeService/ListPodSandbox",
    "/runtime.v1.RuntimeService/PodSandboxStatus",
    "/runtime.v1.RuntimeService/ListContainers",
    "/runtime.v1.RuntimeService/ContainerStatus",
    "/runtime.v1.RuntimeService/ListContainerStats",
    "/runtime.v1.RuntimeService/ListPodSandboxStats",
    "/runtime.v1.RuntimeService/ExecSync",
    "/runtime.v1.RuntimeService/RunPodSandbox",
    "/runtime.v1.RuntimeService/CreateContainer",
    "/runtime.v1.RuntimeService/StartContainer",
    "/runtime.v1.RuntimeService/StopContainer",
    "/runtime.v1.RuntimeService/RemoveContainer",
    "/runtime.v1.RuntimeService/StopPodSandbox",
    "/runtime.v1.RuntimeService/RemovePodSandbox",
    "/runtime.v1.ImageService/ImageFsInfo",
    "/runtime.v1.ImageService/ListImages",
    "/runtime.v1.ImageService/ImageStatus",
    "/runtime.v1.ImageService/PullImage",
];

/// One gRPC method of the pool.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) path: Arc<str>,
    pub(super) service: Arc<str>,
    pub(super) input: usize,
    pub(super) output: usize,
    pub(super) client_streaming: bool,
    pub(super) server_streaming: bool,
    pub(super) containerd: bool,
    pub(super) deprecated: bool,
    pub(super) routine: bool,
}

/// The methods inference chooses among, built once from a schema.
#[derive(Debug)]
pub struct Catalog {
    pub(super) methods: Vec<Candidate>,
    /// Distinct request and response types; candidates refer to them by index.
    pub(super) types: Vec<MessageDescriptor>,
    by_path: HashMap<Arc<str>, usize>,
}

impl Catalog {
    pub fn new(schema: &Schema) -> Catalog {
        let mut cat = Catalog {
            methods: Vec::new(),
            types: Vec::new(),
            by_path: HashMap::new(),
        };
        let mut type_index: HashMap<String, usize> = HashMap::new();
        let mut intern = |d: MessageDescriptor, types: &mut Vec<MessageDescriptor>| {
            *type_index
                .entry(d.full_name().to_owned())
                .or_insert_with(|| {
                    types.push(d);
                    types.len() - 1
                })
        };
        let mut services: Vec<_> = schema.pool().services().collect();
        services.sort_by(|a, b| a.full_name().cmp(b.full_name()));
        for svc in services {
            let name = svc.full_name();
            if TTRPC_ONLY_SERVICES.contains(&name) {
                continue;
            }
            let service: Arc<str> = Arc::from(name);
            for m in svc.methods() {
                let path: Arc<str> = Arc::from(format!("/{name}/{}", m.name()));
                let input = intern(m.input(), &mut cat.types);
                let output = intern(m.output(), &mut cat.types);
                cat.by_path.insert(path.clone(), cat.methods.len());
                let routine = ROUTINE_METHODS.contains(&&*path);
                cat.methods.push(Candidate {
                    path,
                    service: service.clone(),
                    input,
                    output,
                    client_streaming: m.is_client_streaming(),
                    server_streaming: m.is_server_streaming(),
                    containerd: name.starts_with("containerd."),
                    deprecated: DEPRECATED_SERVICE_PREFIXES
                        .iter()
                        .any(|p| name.starts_with(p)),
                    routine,
                });
            }
        }
        cat
    }

    /// The catalog of the embedded schema, built on first use; `None` if it does not load.
    pub fn embedded() -> Option<Arc<Catalog>> {
        static EMBEDDED: OnceLock<Option<Arc<Catalog>>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| Schema::embedded().ok().map(|s| Arc::new(Catalog::new(&s))))
            .clone()
    }

    pub fn len(&self) -> usize {
        self.methods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    pub(super) fn index_of(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    pub fn path(&self, i: usize) -> Option<&Arc<str>> {
        self.methods.get(i).map(|c| &c.path)
    }
}
