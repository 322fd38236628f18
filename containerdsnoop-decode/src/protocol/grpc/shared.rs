//! What the calls of one connection share: their limits, their counters, and method inference,
//! which holds a call's events back while its method is unknown and names them when they are
//! released (bounded by [`MAX_HELD_EVENTS`], [`MAX_HELD_BYTES`], [`MAX_HELD_TOTAL`] and
//! [`MAX_HOLD_NS`]). Owns [`Shared`], through which a call's message bodies (cut by its halves,
//! `messages.rs`) become `Message` events, each scored for the inference of an unknown method.

use super::call::{Call, Pending};
use super::infer::Inference;
use super::limits::CallLimits;
use super::stats::CallStats;
use crate::protocol::call::{Body, CallEvent, CallEventKind, Method, Role};
use crate::protocol::http2::Origin;

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
    /// A DATA payload for the half `at.role` names: the gRPC messages it completes, or more
    /// bytes of a non-gRPC body.
    pub(super) fn deliver(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        data: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        let grpc = call.grpc;
        let bodies = call
            .half(at.role)
            .deliver(grpc, data, &self.limits, &mut self.stats);
        for body in bodies {
            self.message(call, at, stream, body, out);
        }
    }

    /// END_STREAM on the half `at.role` names: report a message cut short, or deliver a
    /// non-gRPC body.
    pub(super) fn finish_half(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        out: &mut Vec<CallEvent>,
    ) {
        let grpc = call.grpc;
        if let Some(body) = call
            .half(at.role)
            .finish(grpc, &self.limits, &mut self.stats)
        {
            self.message(call, at, stream, body, out);
        }
    }

    /// Too much is waiting for the rest of its message on this connection: gives up the message
    /// of the half `at.role` names (the one that just grew) rather than grow without bound.
    pub(super) fn abandon(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        out: &mut Vec<CallEvent>,
    ) {
        if let Some(body) = call.half(at.role).abandon(&self.limits, &mut self.stats) {
            self.message(call, at, stream, body, out);
        }
    }

    /// Emits the next message of the half `at.role` names, scoring it for inference first.
    pub(super) fn message(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        body: Body,
        out: &mut Vec<CallEvent>,
    ) {
        let index = call.counts.next(at.role);
        self.stats.messages += 1;
        let (mut settle, mut retry) = (false, false);
        if let (Some(p), Some(cat)) = (call.pending.as_deref_mut(), self.infer.inference.catalog())
        {
            if let Body::Protobuf(bytes) = &body {
                p.evidence.observe(cat, at.role, index, bytes);
            }
            // The first response message usually settles it.
            settle = p.holding && at.role == Role::Response;
            // Released unnamed: each later message may still name it.
            retry = !p.holding && call.method.is_none();
        }
        if retry {
            self.try_name(call);
        }
        let bytes = match &body {
            Body::Protobuf(b) | Body::Raw(b) => b.len(),
            Body::Text { text, .. } => text.len(),
            Body::Unavailable { .. } => 0,
        };
        let ev = at.at().message(&call.tag(stream), at.role, index, body);
        self.emit(call, ev, bytes, out);
        self.settle(call, settle, out);
    }

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
