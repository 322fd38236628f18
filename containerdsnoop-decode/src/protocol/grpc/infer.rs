//! Naming the method of a call whose `:path` was not seen: after a late join or lost bytes the
//! HPACK entry that holds it may predate what we decoded. What is known is weighed against the
//! descriptor pool: which request and response types the message bytes fit (`schema::fits`),
//! whether the call streams, the containerd namespace header, the methods this connection was
//! seen using, and the HPACK rule that a path seen since the table was last unknown is never the
//! value of an unknown entry. A name found this way is always `Method { inferred: true }`; when
//! the evidence does not single out one method, none is given.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

use crate::protocol::call::Role;
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

/// Nesting depth to which fields are counted.
const MAX_COUNT_DEPTH: usize = 32;

/// Messages per role of one call that are scored; later ones add little and cost a decode per
/// candidate type each.
pub const MAX_OBSERVED_MESSAGES: u64 = 4;

/// Larger bodies are not scored (decoding them against every candidate type costs too much).
pub const MAX_SCORED_BODY: usize = 256 * 1024;

/// Unknown HPACK entries whose evidence is remembered per connection.
pub const MAX_SLOTS: usize = 256;

/// One gRPC method of the pool.
#[derive(Debug)]
struct Candidate {
    path: Arc<str>,
    service: Arc<str>,
    input: usize,
    output: usize,
    client_streaming: bool,
    server_streaming: bool,
    containerd: bool,
    deprecated: bool,
    routine: bool,
}

/// The methods inference chooses among, built once from a schema.
#[derive(Debug)]
pub struct Catalog {
    methods: Vec<Candidate>,
    /// Distinct request and response types; candidates refer to them by index.
    types: Vec<MessageDescriptor>,
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

    fn index_of(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    pub fn path(&self, i: usize) -> Option<&Arc<str>> {
        self.methods.get(i).map(|c| &c.path)
    }
}

/// How well one candidate explains what was observed of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fit {
    /// Some message did not decode as the candidate's type, or the call streamed where the
    /// method does not.
    ruled_out: bool,
    /// Fields present that the types do not define.
    unknown_fields: u32,
    /// Fields present that the types define, nested ones included.
    known_fields: u32,
    /// Top-level fields the types define that were absent: the fewer, the more closely the
    /// type describes the bytes (an empty body is best explained by `Empty`).
    absent_fields: u32,
}

/// How `bytes` fit one message type; `None` if they do not decode as it.
fn fit(desc: &MessageDescriptor, bytes: &[u8]) -> Option<Fit> {
    let msg = DynamicMessage::decode(desc.clone(), bytes).ok()?;
    let mut f = Fit::default();
    count(&msg, 0, &mut f);
    let present = msg.fields().count() as u32;
    f.absent_fields = (desc.fields().len() as u32).saturating_sub(present);
    Some(f)
}

fn count(msg: &DynamicMessage, depth: usize, f: &mut Fit) {
    f.unknown_fields += msg.unknown_fields().count() as u32;
    if depth >= MAX_COUNT_DEPTH {
        return;
    }
    for (_, value) in msg.fields() {
        f.known_fields += 1;
        count_value(value, depth, f);
    }
}

fn count_value(value: &Value, depth: usize, f: &mut Fit) {
    match value {
        Value::Message(m) => count(m, depth + 1, f),
        Value::List(items) => items.iter().for_each(|v| count_value(v, depth, f)),
        Value::Map(map) => map.values().for_each(|v| count_value(v, depth, f)),
        _ => {}
    }
}

/// What has been observed of one call (or of every call that used one unknown HPACK entry).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Per candidate; empty until the first observation.
    fits: Vec<Fit>,
    /// Messages scored per role.
    requests: u64,
    responses: u64,
}

impl Evidence {
    pub fn new() -> Evidence {
        Evidence::default()
    }

    /// Evidence for a new call that uses the same unknown entry as `slot`'s calls: candidates
    /// those ruled out are not scored again (they share one method).
    pub fn seeded(slot: &Evidence) -> Evidence {
        Evidence {
            fits: slot
                .fits
                .iter()
                .map(|f| Fit {
                    ruled_out: f.ruled_out,
                    ..Fit::default()
                })
                .collect(),
            requests: 0,
            responses: 0,
        }
    }

    /// Whether some candidate still explains everything observed.
    pub fn any_possible(&self) -> bool {
        self.fits.is_empty() || self.fits.iter().any(|f| !f.ruled_out)
    }

    /// Messages scored so far (both roles).
    pub fn observed(&self) -> u64 {
        self.requests + self.responses
    }

    pub fn has_response(&self) -> bool {
        self.responses > 0
    }

    /// Scores message `index` of `role` (a decompressed protobuf body) against every candidate
    /// not yet ruled out.
    pub fn observe(&mut self, cat: &Catalog, role: Role, index: u64, body: &[u8]) {
        if self.fits.len() != cat.methods.len() {
            self.fits = vec![Fit::default(); cat.methods.len()];
        }
        let seen = match role {
            Role::Request => &mut self.requests,
            Role::Response => &mut self.responses,
        };
        if *seen >= MAX_OBSERVED_MESSAGES || body.len() > MAX_SCORED_BODY {
            return;
        }
        *seen += 1;
        let mut by_type: HashMap<usize, Option<Fit>> = HashMap::new();
        for (c, f) in cat.methods.iter().zip(self.fits.iter_mut()) {
            if f.ruled_out {
                continue;
            }
            let (ty, streams) = match role {
                Role::Request => (c.input, c.client_streaming),
                Role::Response => (c.output, c.server_streaming),
            };
            if index > 0 && !streams {
                f.ruled_out = true;
                continue;
            }
            let Some(score) = *by_type
                .entry(ty)
                .or_insert_with(|| fit(&cat.types[ty], body))
            else {
                f.ruled_out = true;
                continue;
            };
            f.known_fields += score.known_fields;
            f.unknown_fields += score.unknown_fields;
            f.absent_fields += score.absent_fields;
        }
    }

    /// Evidence from two sets of calls believed to share one method.
    fn merged(&self, other: &Evidence) -> Evidence {
        if self.fits.is_empty() {
            return other.clone();
        }
        if other.fits.is_empty() {
            return self.clone();
        }
        Evidence {
            fits: self
                .fits
                .iter()
                .zip(&other.fits)
                .map(|(a, b)| Fit {
                    ruled_out: a.ruled_out || b.ruled_out,
                    unknown_fields: a.unknown_fields + b.unknown_fields,
                    known_fields: a.known_fields + b.known_fields,
                    absent_fields: a.absent_fields + b.absent_fields,
                })
                .collect(),
            requests: self.requests + other.requests,
            responses: self.responses + other.responses,
        }
    }
}

/// What one connection has taught about its methods; one per connection.
#[derive(Debug)]
pub struct Inference {
    catalog: Option<Arc<Catalog>>,
    /// Methods whose path was decoded since the client's header table was last unknown: each of
    /// those is (or was) at a known index, and the Go and Rust HPACK encoders never insert a
    /// field already in the table, so none of them is the value of an unknown entry.
    known_now: HashSet<usize>,
    /// Methods decoded on this connection before its header table was last lost, and how often.
    known_before: HashMap<usize, u32>,
    /// Services this connection's decoded or inferred paths belong to.
    services: HashSet<Arc<str>>,
    /// Evidence per unknown HPACK entry (`Field::unknown_slot`) of `:path`.
    slots: HashMap<usize, Evidence>,
}

/// What a call's own headers say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints {
    /// The call carried `containerd-namespace`: a containerd service, not CRI.
    pub namespace: bool,
}

impl Inference {
    pub fn new(catalog: Option<Arc<Catalog>>) -> Inference {
        Inference {
            catalog,
            known_now: HashSet::new(),
            known_before: HashMap::new(),
            services: HashSet::new(),
            slots: HashMap::new(),
        }
    }

    pub fn catalog(&self) -> Option<&Arc<Catalog>> {
        self.catalog.as_ref()
    }

    pub fn set_catalog(&mut self, catalog: Option<Arc<Catalog>>) {
        *self = Inference::new(catalog);
    }

    /// A call whose `:path` was decoded.
    pub fn saw_path(&mut self, path: &str) {
        let Some(i) = self.catalog.as_ref().and_then(|c| c.index_of(path)) else {
            return;
        };
        self.known_now.insert(i);
        if let Some(c) = self.catalog.as_ref().and_then(|c| c.methods.get(i)) {
            self.services.insert(c.service.clone());
        }
    }

    /// The client's header table became unknown (late join or lost bytes): slots are renumbered,
    /// and the paths decoded so far may now sit in unknown entries.
    pub fn table_lost(&mut self) {
        for i in self.known_now.drain() {
            *self.known_before.entry(i).or_default() += 1;
        }
        self.slots.clear();
    }

    /// A call was named by inference: its service is one this peer talks to.
    pub fn saw_inferred(&mut self, path: &str) {
        if let Some(c) = self
            .catalog
            .as_ref()
            .and_then(|c| c.index_of(path).and_then(|i| c.methods.get(i)))
        {
            self.services.insert(c.service.clone());
        }
    }

    /// Forgets an unknown entry's evidence (its calls contradicted each other).
    pub fn forget(&mut self, slot: usize) {
        self.slots.remove(&slot);
    }

    /// Evidence remembered for an unknown entry.
    pub fn slot(&self, slot: usize) -> Option<&Evidence> {
        self.slots.get(&slot)
    }

    /// Folds a finished call's evidence into its entry's. When the two contradict (no method
    /// explains both), the entry's identity is doubtful and the newer evidence replaces it.
    pub fn learn(&mut self, slot: usize, call: &Evidence) {
        if call.observed() == 0 {
            return;
        }
        if !self.slots.contains_key(&slot) && self.slots.len() >= MAX_SLOTS {
            return;
        }
        let merged = match self.slots.get(&slot) {
            Some(old) => {
                let m = old.merged(call);
                if m.any_possible() { m } else { call.clone() }
            }
            None => call.clone(),
        };
        self.slots.insert(slot, merged);
    }

    /// The method `call` (merged with its entry's evidence, if any) points to, if exactly one.
    pub fn decide(&self, call: &Evidence, slot: Option<usize>, hints: Hints) -> Option<Arc<str>> {
        match self.best(call, slot, hints).as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// The methods that explain the evidence best, after every tie-breaker.
    pub fn best(&self, call: &Evidence, slot: Option<usize>, hints: Hints) -> Vec<Arc<str>> {
        let Some(cat) = self.catalog.as_ref() else {
            return Vec::new();
        };
        let ev = match slot.and_then(|s| self.slots.get(&s)) {
            Some(s) => {
                let m = s.merged(call);
                if m.any_possible() { m } else { call.clone() }
            }
            None => call.clone(),
        };
        if ev.fits.len() != cat.methods.len() {
            return Vec::new();
        }
        let mut alive: Vec<usize> = (0..cat.methods.len())
            .filter(|&i| !ev.fits[i].ruled_out && !self.known_now.contains(&i))
            .collect();
        // A call with the containerd namespace header is a containerd service (CRI has none).
        narrow(&mut alive, |i| {
            !hints.namespace || cat.methods[i].containerd
        });
        // Fewest fields the type does not define, then most fields it does.
        let key = |i: usize| {
            let f = ev.fits[i];
            (f.unknown_fields, std::cmp::Reverse(f.known_fields))
        };
        let Some(best) = alive.iter().map(|&i| key(i)).min() else {
            return Vec::new();
        };
        alive.retain(|&i| key(i) == best);
        // Ties: methods this connection used before, then its services, then routine methods,
        // then the closest description of the bytes, then current APIs.
        narrow(&mut alive, |i| self.known_before.contains_key(&i));
        // A peer talks one API family (containerd's own, or CRI), then some of its services.
        let containerd_seen = self.services.iter().any(|s| s.starts_with("containerd."));
        let cri_seen = self.services.iter().any(|s| !s.starts_with("containerd."));
        if containerd_seen != cri_seen {
            narrow(&mut alive, |i| cat.methods[i].containerd == containerd_seen);
        }
        narrow(&mut alive, |i| {
            self.services.contains(&cat.methods[i].service)
        });
        narrow(&mut alive, |i| cat.methods[i].routine);
        if let Some(fewest) = alive.iter().map(|&i| ev.fits[i].absent_fields).min() {
            alive.retain(|&i| ev.fits[i].absent_fields == fewest);
        }
        narrow(&mut alive, |i| !cat.methods[i].deprecated);
        alive.iter().map(|&i| cat.methods[i].path.clone()).collect()
    }
}

/// Keeps the candidates `keep` accepts, unless that would leave none.
fn narrow(alive: &mut Vec<usize>, keep: impl Fn(usize) -> bool) {
    if alive.iter().any(|&i| keep(i)) {
        alive.retain(|&i| keep(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use prost_reflect::{DynamicMessage, Value};

    fn encode(cat: &Catalog, path: &str, role: Role, fields: &[(&str, Value)]) -> Vec<u8> {
        let c = &cat.methods[cat.index_of(path).unwrap()];
        let ty = match role {
            Role::Request => c.input,
            Role::Response => c.output,
        };
        let mut m = DynamicMessage::new(cat.types[ty].clone());
        for (name, v) in fields {
            m.set_field_by_name(name, v.clone());
        }
        m.encode_to_vec()
    }

    #[test]
    fn catalog_excludes_ttrpc_services() {
        let cat = Catalog::embedded().unwrap();
        assert!(
            cat.index_of("/containerd.services.tasks.v1.Tasks/Start")
                .is_some()
        );
        assert!(cat.index_of("/containerd.task.v2.Task/Start").is_none());
        assert!(cat.len() > 100);
    }

    #[test]
    fn request_and_response_together_name_the_method() {
        let cat = Catalog::embedded().unwrap();
        let inf = Inference::new(Some(cat.clone()));
        let start = "/containerd.services.tasks.v1.Tasks/Start";
        let mut ev = Evidence::new();
        let req = encode(
            &cat,
            start,
            Role::Request,
            &[("container_id", Value::String("web".into()))],
        );
        ev.observe(&cat, Role::Request, 0, &req);
        // `{container_id: "web"}` alone fits many requests.
        assert_eq!(inf.decide(&ev, None, Hints { namespace: true }), None);
        let resp = encode(&cat, start, Role::Response, &[("pid", Value::U32(4242))]);
        ev.observe(&cat, Role::Response, 0, &resp);
        let got = inf.decide(&ev, None, Hints { namespace: true });
        // Still several (every request with a string field 1 and a response with a uint32
        // field 1); the connection's history settles it.
        let mut inf2 = Inference::new(Some(cat.clone()));
        inf2.saw_path(start);
        inf2.table_lost();
        assert_eq!(
            inf2.decide(&ev, None, Hints { namespace: true }).as_deref(),
            Some(start)
        );
        if let Some(g) = got {
            assert_eq!(&*g, start);
        }
    }

    #[test]
    fn a_path_decoded_since_the_table_was_lost_is_never_an_unknown_entry() {
        let cat = Catalog::embedded().unwrap();
        let version = "/containerd.services.version.v1.Version/Version";
        let mut ev = Evidence::new();
        ev.observe(&cat, Role::Request, 0, &[]);
        let resp = encode(
            &cat,
            version,
            Role::Response,
            &[
                ("version", Value::String("v2.1.0".into())),
                ("revision", Value::String("abc".into())),
            ],
        );
        ev.observe(&cat, Role::Response, 0, &resp);
        let mut inf = Inference::new(Some(cat.clone()));
        inf.saw_path("/containerd.services.containers.v1.Containers/List");
        inf.table_lost();
        inf.saw_path(version);
        assert_ne!(
            inf.decide(&ev, None, Hints::default()).as_deref(),
            Some(version)
        );
    }
}
