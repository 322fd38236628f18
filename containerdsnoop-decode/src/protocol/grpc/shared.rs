//! What the calls of one connection share: their limits, their counters, and method inference,
//! which holds a call's events back while its method is unknown and names them when they are
//! released (bounded by [`MAX_HELD_EVENTS`], [`MAX_HELD_BYTES`], [`MAX_HELD_TOTAL`] and
//! [`MAX_HOLD_NS`]).

use super::call::{Call, Pending};
use super::infer::Inference;
use super::limits::CallLimits;
use super::stats::CallStats;
use crate::protocol::call::{CallEvent, CallEventKind, Method};

/// Events of one call held back while its method is being inferred; beyond it they are released
/// with whatever name the evidence so far gives (possibly none).
pub const MAX_HELD_EVENTS: usize = 32;

/// Message bytes of one call held back while its method is being inferred.
pub const MAX_HELD_BYTES: usize = 1 << 20;

/// Message bytes held back for inference across all calls of a connection.
pub const MAX_HELD_TOTAL: usize = 8 << 20;

/// How long (capture time) a call's events may be held back for inference: a streaming call
/// whose response is slow to come is shown unnamed rather than late.
pub const MAX_HOLD_NS: u64 = 1_000_000_000;

/// Method inference across the calls of one connection.
#[derive(Debug)]
pub(super) struct InferState {
    pub(super) inference: Inference,
    /// Message bytes held back for inference, all calls together.
    pub(super) held_total: usize,
    /// Calls currently holding events back.
    pub(super) holding: usize,
}

/// Everything a call's events are produced with, apart from the call itself.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) limits: CallLimits,
    pub(super) stats: CallStats,
    pub(super) infer: InferState,
}

impl Shared {
    /// Starts holding back the events of a call whose method is unknown.
    pub(super) fn hold(&mut self, pending: Pending) -> Box<Pending> {
        self.infer.holding += 1;
        Box::new(pending)
    }

    /// Names the call from the evidence so far if it can, and if events are held back, releases
    /// them (named or not). Later events of a call released unnamed carry a name only if one is
    /// inferred by then.
    pub(super) fn release(&mut self, call: &mut Call, out: &mut Vec<CallEvent>) {
        let Some(p) = call.pending.as_deref_mut() else {
            return;
        };
        try_name(
            &mut call.method,
            p,
            &mut self.infer.inference,
            &mut self.stats,
        );
        if !p.holding {
            return;
        }
        p.holding = false;
        let inf = &mut self.infer;
        inf.holding = inf.holding.saturating_sub(1);
        inf.held_total = inf.held_total.saturating_sub(p.held_bytes);
        p.held_bytes = 0;
        for mut ev in p.held.drain(..) {
            match &mut ev.kind {
                CallEventKind::Start { method, .. }
                | CallEventKind::Message { method, .. }
                | CallEventKind::End { method, .. } => method.clone_from(&call.method),
                CallEventKind::Notice { .. } => {}
            }
            out.push(ev);
        }
    }

    /// Names the call now if the evidence so far singles out one method.
    pub(super) fn try_name(&mut self, call: &mut Call) {
        if let Some(p) = call.pending.as_deref() {
            try_name(
                &mut call.method,
                p,
                &mut self.infer.inference,
                &mut self.stats,
            );
        }
    }

    /// Sends `ev` (carrying `bytes` of message) out, or holds it back while the call's method is
    /// being inferred.
    pub(super) fn emit(
        &mut self,
        call: &mut Call,
        ev: CallEvent,
        bytes: usize,
        out: &mut Vec<CallEvent>,
    ) {
        match call.pending.as_deref_mut() {
            Some(p) if p.holding => {
                if p.held.is_empty() {
                    p.since = ev.ts_ns;
                }
                p.held.push(ev);
                p.held_bytes += bytes;
                self.infer.held_total += bytes;
            }
            _ => out.push(ev),
        }
    }

    /// Releases the call's events if a limit says they have waited long enough (or it is
    /// named). `settle`: this message usually decides the method (the first response).
    pub(super) fn settle(&mut self, call: &mut Call, settle: bool, out: &mut Vec<CallEvent>) {
        let Some(p) = call.pending.as_deref() else {
            return;
        };
        if !p.holding {
            return;
        }
        // Limits keep rows from waiting without bound.
        let forced = p.held.len() >= MAX_HELD_EVENTS
            || p.held_bytes >= MAX_HELD_BYTES
            || self.infer.held_total >= MAX_HELD_TOTAL;
        if settle && !forced {
            self.try_name(call);
        }
        if forced || call.method.is_some() {
            self.release(call, out);
        }
    }
}

fn try_name(method: &mut Option<Method>, p: &Pending, inf: &mut Inference, stats: &mut CallStats) {
    if method.is_some() || p.evidence.observed() == 0 {
        return;
    }
    if let Some(name) = inf.decide(&p.evidence, p.slot, p.hints) {
        inf.saw_inferred(&name);
        stats.inferred_calls += 1;
        *method = Some(Method {
            name,
            inferred: true,
        });
    }
}
