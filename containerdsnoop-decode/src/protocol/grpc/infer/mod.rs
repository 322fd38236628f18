//! Naming the method of a call whose `:path` was not seen: after a late join or lost bytes the
//! HPACK entry that holds it may predate what we decoded. What is known is weighed against the
//! descriptor pool: which request and response types the message bytes fit (`evidence`),
//! whether the call streams, the containerd namespace header, the methods this connection was
//! seen using, and the HPACK rule that a path seen since the table was last unknown is never the
//! value of an unknown entry. A name found this way is always `Method { inferred: true }`; when
//! the evidence does not single out one method, none is given.

mod catalog;
mod evidence;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use catalog::{Catalog, DEPRECATED_SERVICE_PREFIXES, ROUTINE_METHODS, TTRPC_ONLY_SERVICES};
pub use evidence::{Evidence, MAX_OBSERVED_MESSAGES, MAX_SCORED_BODY};

/// Unknown HPACK entries whose evidence is remembered per connection.
pub const MAX_SLOTS: usize = 256;

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
    use crate::protocol::call::Role;
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
