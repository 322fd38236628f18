//! Evidence about one call whose method is unknown: how well each candidate's request and
//! response types explain the message bytes seen (`schema` decodes them against each type), and
//! whether the call streamed where the candidate does not.

use std::collections::HashMap;

use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

use super::catalog::Catalog;
use crate::protocol::call::Role;

/// Nesting depth to which fields are counted.
const MAX_COUNT_DEPTH: usize = 32;

/// Messages per role of one call that are scored; later ones add little and cost a decode per
/// candidate type each.
pub const MAX_OBSERVED_MESSAGES: u64 = 4;

/// Larger bodies are not scored (decoding them against every candidate type costs too much).
pub const MAX_SCORED_BODY: usize = 256 * 1024;

/// How well one candidate explains what was observed of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Fit {
    /// Some message did not decode as the candidate's type, or the call streamed where the
    /// method does not.
    pub(super) ruled_out: bool,
    /// Fields present that the types do not define.
    pub(super) unknown_fields: u32,
    /// Fields present that the types define, nested ones included.
    pub(super) known_fields: u32,
    /// Top-level fields the types define that were absent: the fewer, the more closely the
    /// type describes the bytes (an empty body is best explained by `Empty`).
    pub(super) absent_fields: u32,
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
    pub(super) fits: Vec<Fit>,
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
    pub(super) fn merged(&self, other: &Evidence) -> Evidence {
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
