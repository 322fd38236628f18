//! The state of one gRPC call: its two halves (`messages.rs`), what its headers said, and, while
//! its method is unknown, the inference under way with the events held back for it.

use std::sync::Arc;

use super::infer::{Evidence, Hints};
use super::messages::Half;
use crate::protocol::call::{CallEvent, Method, Role};
use crate::protocol::kit::{CallTag, MessageCount};

/// Inference state of a call whose `:path` is unknown.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) evidence: Evidence,
    /// The unknown HPACK entry its `:path` came from, if that can be named.
    pub(super) slot: Option<usize>,
    pub(super) hints: Hints,
    /// Events not yet released, oldest first, with their message bytes.
    pub(super) held: Vec<CallEvent>,
    pub(super) held_bytes: usize,
    /// Capture time of the oldest held event.
    pub(super) since: u64,
    /// Still holding events back (false once released, named or not).
    pub(super) holding: bool,
}

impl Pending {
    /// Inference starting at `ts_ns` from `evidence` (fresh, or seeded by the call's entry).
    pub(super) fn new(
        evidence: Evidence,
        slot: Option<usize>,
        hints: Hints,
        ts_ns: u64,
    ) -> Pending {
        Pending {
            evidence,
            slot,
            hints,
            held: Vec::new(),
            held_bytes: 0,
            since: ts_ns,
            holding: true,
        }
    }
}

#[derive(Debug)]
pub(super) struct Call {
    pub(super) start_ts: u64,
    pub(super) method: Option<Method>,
    pub(super) namespace: Option<Arc<str>>,
    /// `content-type: application/grpc[+proto…]` on the request.
    pub(super) grpc: bool,
    pub(super) http_status: Option<u32>,
    pub(super) response_headers: bool,
    pub(super) request: Half,
    pub(super) response: Half,
    /// Messages of each half so far, for their indexes.
    pub(super) counts: MessageCount,
    /// Present while the method is unknown (or was inferred).
    pub(super) pending: Option<Box<Pending>>,
    /// Taken up mid-call (it started before decoding did): no Start row, no latency.
    pub(super) adopted: bool,
}

impl Call {
    /// Bytes this call holds in incomplete messages and bodies.
    pub(super) fn held(&self) -> usize {
        self.request.held() + self.response.held()
    }

    /// The call as its events on `stream` name it (method as known now).
    pub(super) fn tag(&self, stream: u32) -> CallTag {
        CallTag::new(u64::from(stream), self.method.clone()).with_namespace(self.namespace.clone())
    }

    pub(super) fn half(&mut self, role: Role) -> &mut Half {
        match role {
            Role::Request => &mut self.request,
            Role::Response => &mut self.response,
        }
    }
}

/// Runs `f` on `call` and keeps `held` (the sum of `Call::held` over a connection's calls) in
/// step with what `f` changed.
pub(super) fn tracked<R>(held: &mut usize, call: &mut Call, f: impl FnOnce(&mut Call) -> R) -> R {
    let before = call.held();
    let r = f(call);
    *held = (*held + call.held()).saturating_sub(before);
    r
}
