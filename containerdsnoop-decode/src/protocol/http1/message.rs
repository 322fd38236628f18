//! HTTP/1.x bodies as messages: the framing of one body (Content-Length, chunked, until
//! close), collecting its bytes, cutting it into messages, and what a finished or broken body
//! means for its call (a response's end, a request's wait for an upgrade).
//!
//! Streaming responses (docker `events`, `logs --follow`, `wait`) produce a message per chunk
//! the server flushed (for JSON, per chunk that ends a line), so rows appear as they arrive.
//! Messages of chunked and length-delimited bodies do not depend on how the capture cut the
//! bytes; close-delimited bodies produce one message per captured write, since there nothing
//! else marks a boundary.

use super::body::{Collector, is_json};
use super::chunked::{Dechunked, Dechunker};
use super::conn::Connection;
use super::direction::{Phase, Step};
use super::exchange::Owner;
use super::head::Head;
use crate::protocol::call::{Body, CallEvent, Role};
use crate::protocol::kit::{At, CallTag};

#[derive(Debug)]
pub(super) enum Framing {
    Length { left: u64 },
    Chunked(Dechunker),
    UntilClose,
}

/// One body being read.
#[derive(Debug)]
pub(super) struct BodyState {
    pub(super) role: Role,
    pub(super) owner: Owner,
    pub(super) framing: Framing,
    content_type: Option<String>,
    json: bool,
    collected: Collector,
    /// The index of the body's next message.
    index: u64,
}

impl BodyState {
    /// The body `h` announces; `None` framing is no body at all.
    pub(super) fn new(role: Role, owner: Owner, framing: Option<Framing>, h: &Head) -> BodyState {
        let content_type = h.content_type().map(str::to_string);
        BodyState {
            role,
            json: is_json(content_type.as_deref()),
            content_type,
            owner,
            framing: framing.unwrap_or(Framing::Length { left: 0 }),
            collected: Collector::default(),
            index: 0,
        }
    }

    /// Bytes held for this body.
    pub(super) fn held(&self) -> usize {
        self.collected.held()
            + match &self.framing {
                Framing::Chunked(d) => d.held(),
                _ => 0,
            }
    }

    fn is_done(&self) -> bool {
        match &self.framing {
            Framing::Length { left } => *left == 0,
            Framing::Chunked(d) => d.is_done(),
            Framing::UntilClose => false,
        }
    }
}

impl Connection {
    /// Reads the body that follows a head (at once, when there is none).
    pub(super) fn start_body(&mut self, at: At, body: BodyState, out: &mut Vec<CallEvent>) {
        if body.is_done() {
            self.finish_body(at, body, out);
        } else {
            self.dirs[at.side.index()].phase = Phase::Body(Box::new(body));
        }
    }

    /// Consumes body bytes. Leaves the body as the phase while it goes on; a finished body
    /// hands over to `finish_body`, a broken one to the hunt.
    pub(super) fn step_body(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        mut body: Box<BodyState>,
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let max = self.limits.max_body;
        let mut step = Step::Go;
        match &mut body.framing {
            Framing::Length { left } => {
                let n = (rest.len() as u64).min(*left) as usize;
                body.collected.push(&rest[..n], max);
                *left -= n as u64;
                *used += n;
                if n == 0 {
                    step = Step::Wait;
                }
            }
            Framing::UntilClose => {
                body.collected.push(rest, max);
                *used += rest.len();
                // Nothing marks message boundaries: each captured write is one (for JSON, each
                // that ends a line).
                if !body.json || body.collected.ends_line() {
                    self.flush(at, &mut body, out);
                }
                step = Step::Wait;
            }
            Framing::Chunked(d) => {
                let (n, piece) = match d.step(rest) {
                    Ok(r) => r,
                    Err(e) => {
                        let why = e.to_string();
                        self.abort_body(at, &mut body, &why, out);
                        self.lose_sync(at, why, out);
                        return Step::Go;
                    }
                };
                *used += n;
                match piece {
                    Some(Dechunked::Data(b)) => body.collected.push(b, max),
                    // A chunk is what the sender flushed: for streams it is the unit to show.
                    Some(Dechunked::ChunkEnd) if !body.json || body.collected.ends_line() => {
                        self.flush(at, &mut body, out);
                    }
                    _ => {}
                }
                if n == 0 && piece.is_none() {
                    step = Step::Wait;
                }
            }
        }
        if body.is_done() {
            self.finish_body(at, *body, out);
            return Step::Go;
        }
        self.dirs[at.side.index()].phase = Phase::Body(body);
        step
    }

    /// Emits what was collected as one message.
    fn flush(&mut self, at: At, body: &mut BodyState, out: &mut Vec<CallEvent>) {
        if body.collected.is_empty() {
            return;
        }
        let msg = body
            .collected
            .take(body.content_type.as_deref(), self.limits.max_body);
        if matches!(msg, Body::Unavailable { .. }) {
            self.stats.oversize_bodies += 1;
        }
        self.emit_message(at, &body.owner.call, body.role, body.index, msg, out);
        body.index += 1;
    }

    /// The body is complete: its last message, then the call's end for a response, or the
    /// wait for an upgrade for a request that asked for one.
    pub(super) fn finish_body(&mut self, at: At, mut body: BodyState, out: &mut Vec<CallEvent>) {
        self.flush(at, &mut body, out);
        if body.role == Role::Request {
            if body.index == 0 {
                // A request is a message even without a body (`GET`, `HEAD`, `DELETE`, most
                // `POST`s of docker's API): its head is what it says, and its REQ row carries
                // the headers. It is complete now, whatever follows (an upgrade, a hijack).
                let empty = Body::Text {
                    content_type: body.content_type.clone(),
                    text: String::new(),
                };
                self.emit_message(at, &body.owner.call, body.role, 0, empty, out);
                body.index = 1;
            }
            self.requests_sent(&body.owner.call, body.index);
        }
        let next = match body.role {
            Role::Response => {
                out.push(at.end(&body.owner.call, body.owner.status(), body.owner.start_ts));
                Phase::Head
            }
            Role::Request if body.owner.upgrade => Phase::AwaitUpgrade {
                owner: body.owner,
                sent: body.index,
            },
            Role::Request => Phase::Head,
        };
        self.dirs[at.side.index()].phase = next;
    }

    /// A body cut short (malformed chunking, lost bytes): what was collected is reported as
    /// unavailable and a response's call ends abnormally.
    pub(super) fn abort_body(
        &mut self,
        at: At,
        body: &mut BodyState,
        why: &str,
        out: &mut Vec<CallEvent>,
    ) {
        let why = format!("body cut short: {why}");
        // A request's one message is its body: cut short before any of it arrived, it is
        // still shown, as unavailable.
        if !body.collected.is_empty() || (body.role == Role::Request && body.index == 0) {
            let len = match body.collected.take(None, self.limits.max_body) {
                Body::Unavailable { len, .. } => len,
                Body::Text { text, .. } => text.len() as u64,
                Body::Raw(b) | Body::Protobuf(b) => b.len() as u64,
            };
            let msg = Body::Unavailable {
                reason: why.clone(),
                len,
            };
            self.emit_message(at, &body.owner.call, body.role, body.index, msg, out);
            body.index += 1;
        }
        if body.role == Role::Response {
            let status = body.owner.status().cut_short(why);
            out.push(at.end(&body.owner.call, status, body.owner.start_ts));
        }
    }

    pub(super) fn emit_message(
        &mut self,
        at: At,
        call: &CallTag,
        role: Role,
        index: u64,
        body: Body,
        out: &mut Vec<CallEvent>,
    ) {
        self.stats.messages += 1;
        out.push(at.message(call, role, index, body));
    }
}
