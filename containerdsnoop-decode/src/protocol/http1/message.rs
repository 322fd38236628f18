//! HTTP/1.x bodies as messages: the framing of one body (Content-Length, chunked, until
//! close), collecting its bytes, cutting it into messages, and what a finished or broken body
//! means for its call (a response's end, a request's wait for an upgrade). Owns [`BodyState`];
//! what the direction does next is handed back to it ([`BodyStep`], [`Finished`]).
//!
//! Streaming responses (docker `events`, `logs --follow`, `wait`) produce a message per chunk
//! the server flushed (for JSON, per chunk that ends a line), so rows appear as they arrive.
//! Messages of chunked and length-delimited bodies do not depend on how the capture cut the
//! bytes; close-delimited bodies produce one message per captured write, since there nothing
//! else marks a boundary.

use super::body::{Collector, is_json};
use super::chunked::{Dechunked, Dechunker};
use super::head::Head;
use super::shared::Shared;
use crate::protocol::call::{Body, CallEvent, Role, Status};
use crate::protocol::kit::{At, CallTag};

#[derive(Debug)]
pub(super) enum Framing {
    Length { left: u64 },
    Chunked(Dechunker),
    UntilClose,
}

/// The call a body belongs to.
#[derive(Clone, Debug)]
pub(super) struct Owner {
    pub(super) call: CallTag,
    /// For a response: the request's start, and the status to end with.
    pub(super) start_ts: Option<u64>,
    pub(super) status: Option<(u16, String)>,
    /// After this request's body, wait for the server to accept the upgrade.
    pub(super) upgrade: bool,
}

impl Owner {
    /// The status a response's call ends with.
    pub(super) fn status(&self) -> Status {
        let (code, reason) = self.status.clone().unwrap_or_default();
        Status::ended(u32::from(code), reason)
    }
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

/// What a step through a body's bytes stopped on.
pub(super) enum BodyStep {
    /// The body goes on: continue with the rest of the bytes.
    Go,
    /// The body goes on and needs more bytes.
    Wait,
    /// The body is complete: [`BodyState::finish`] it.
    Done,
    /// The framing broke (`why`); what was read is reported and the direction hunts.
    Broken(String),
}

/// What a finished body leaves its direction waiting for.
pub(super) enum Finished {
    /// The next head.
    Head,
    /// A request that asked to upgrade, complete after `sent` messages: the server's answer.
    AwaitUpgrade { owner: Owner, sent: u64 },
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

    pub(super) fn is_done(&self) -> bool {
        match &self.framing {
            Framing::Length { left } => *left == 0,
            Framing::Chunked(d) => d.is_done(),
            Framing::UntilClose => false,
        }
    }

    /// Consumes body bytes from `rest` (sent by `at.side`); adds what it consumed to `used`.
    pub(super) fn step(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) -> BodyStep {
        let max = sh.limits.max_body;
        let mut step = BodyStep::Go;
        match &mut self.framing {
            Framing::Length { left } => {
                let n = (rest.len() as u64).min(*left) as usize;
                self.collected.push(&rest[..n], max);
                *left -= n as u64;
                *used += n;
                if n == 0 {
                    step = BodyStep::Wait;
                }
            }
            Framing::UntilClose => {
                self.collected.push(rest, max);
                *used += rest.len();
                // Nothing marks message boundaries: each captured write is one (for JSON, each
                // that ends a line).
                if !self.json || self.collected.ends_line() {
                    self.flush(at, sh, out);
                }
                step = BodyStep::Wait;
            }
            Framing::Chunked(d) => {
                let (n, part) = match d.step(rest) {
                    Ok(r) => r,
                    Err(e) => {
                        let why = e.to_string();
                        self.abort(at, &why, sh, out);
                        return BodyStep::Broken(why);
                    }
                };
                *used += n;
                match part {
                    Some(Dechunked::Data(b)) => self.collected.push(b, max),
                    // A chunk is what the sender flushed: for streams it is the unit to show.
                    Some(Dechunked::ChunkEnd) if !self.json || self.collected.ends_line() => {
                        self.flush(at, sh, out);
                    }
                    _ => {}
                }
                if n == 0 && part.is_none() {
                    step = BodyStep::Wait;
                }
            }
        }
        if self.is_done() {
            return BodyStep::Done;
        }
        step
    }

    /// Emits what was collected as one message.
    fn flush(&mut self, at: At, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        if self.collected.is_empty() {
            return;
        }
        let msg = self
            .collected
            .take(self.content_type.as_deref(), sh.limits.max_body);
        if matches!(msg, Body::Unavailable { .. }) {
            sh.stats.oversize_bodies += 1;
        }
        sh.emit_message(at, &self.owner.call, self.role, self.index, msg, out);
        self.index += 1;
    }

    /// The body is complete: its last message, then the call's end for a response, or the
    /// wait for an upgrade for a request that asked for one. A request's call is told how
    /// many messages it sent (`sent`, for the raw messages after an upgrade).
    pub(super) fn finish(
        mut self,
        at: At,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) -> (Finished, Option<(CallTag, u64)>) {
        self.flush(at, sh, out);
        let mut sent = None;
        if self.role == Role::Request {
            if self.index == 0 {
                // A request is a message even without a body (`GET`, `HEAD`, `DELETE`, most
                // `POST`s of docker's API): its head is what it says, and its REQ row carries
                // the headers. It is complete now, whatever follows (an upgrade, a hijack).
                let empty = Body::Text {
                    content_type: self.content_type.clone(),
                    text: String::new(),
                };
                sh.emit_message(at, &self.owner.call, self.role, 0, empty, out);
                self.index = 1;
            }
            sent = Some((self.owner.call.clone(), self.index));
        }
        let next = match self.role {
            Role::Response => {
                out.push(at.end(&self.owner.call, self.owner.status(), self.owner.start_ts));
                Finished::Head
            }
            Role::Request if self.owner.upgrade => Finished::AwaitUpgrade {
                owner: self.owner,
                sent: self.index,
            },
            Role::Request => Finished::Head,
        };
        (next, sent)
    }

    /// A body cut short (malformed chunking, lost bytes): what was collected is reported as
    /// unavailable and a response's call ends abnormally.
    pub(super) fn abort(&mut self, at: At, why: &str, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        let why = format!("body cut short: {why}");
        // A request's one message is its body: cut short before any of it arrived, it is
        // still shown, as unavailable.
        if !self.collected.is_empty() || (self.role == Role::Request && self.index == 0) {
            let len = match self.collected.take(None, sh.limits.max_body) {
                Body::Unavailable { len, .. } => len,
                Body::Text { text, .. } => text.len() as u64,
                Body::Raw(b) | Body::Protobuf(b) => b.len() as u64,
            };
            let msg = Body::Unavailable {
                reason: why.clone(),
                len,
            };
            sh.emit_message(at, &self.owner.call, self.role, self.index, msg, out);
            self.index += 1;
        }
        if self.role == Role::Response {
            let status = self.owner.status().cut_short(why);
            out.push(at.end(&self.owner.call, status, self.owner.start_ts));
        }
    }
}
