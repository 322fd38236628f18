//! HTTP/1.x exchanges: a request head starts a call, the next response head answers the
//! oldest request still waiting (keep-alive and pipelining pair in order), and each head says
//! how its body is framed (RFC 9112 §6.3).

use std::collections::VecDeque;
use std::sync::Arc;

use super::chunked::Dechunker;
use super::conn::Connection;
use super::direction::Phase;
use super::head::{Head, StartLine};
use super::message::{BodyState, Framing};
use crate::protocol::call::{Body, CallEvent, Method, Role, Status};
use crate::protocol::kit::{At, CallTag};

/// A request sent and not answered yet.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub(super) call: CallTag,
    /// When the request head arrived; unknown for a response no request was seen for.
    pub(super) start_ts: Option<u64>,
    head: bool,
    pub(super) connect: bool,
    /// The request asked to switch protocols (`Upgrade`), as docker's attach and exec do.
    pub(super) upgrade: bool,
    /// Request messages of the call so far, once its body is complete.
    sent: u64,
}

/// Requests awaiting their responses, oldest first. A FIFO, not the LRU table the other
/// decoders use: HTTP/1.1 answers requests in the order they were sent, so the front is
/// always the one the next response belongs to, and when too many wait it is the one to
/// forget (its response is the likeliest to have been lost).
pub(super) type PendingQueue = VecDeque<Pending>;

/// The call a body belongs to.
#[derive(Clone, Debug)]
pub(super) struct Owner {
    pub(super) call: CallTag,
    /// For a response: the request's start, and the status to end with.
    pub(super) start_ts: Option<u64>,
    status: Option<(u16, String)>,
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

impl Connection {
    pub(super) fn on_request(&mut self, at: At, h: Head, out: &mut Vec<CallEvent>) {
        let StartLine::Request { method, target, .. } = &h.start else {
            return;
        };
        self.roles.learn(at.side, Role::Request);
        self.stats.requests += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let name = Method {
            name: Arc::from(format!("{method} {target}")),
            inferred: false,
        };
        let upgrade = h.get("upgrade").is_some() || h.has_token("connection", "upgrade");
        let metadata = h
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Some(v.clone())))
            .collect();
        out.push(at.start(seq, Some(name.clone()), metadata));
        if self.pending.len() >= self.limits.max_pending.max(1) {
            self.pending.pop_front();
            self.stats.evicted_requests += 1;
        }
        let call = CallTag::new(seq, Some(name));
        self.pending.push_back(Pending {
            call: call.clone(),
            start_ts: Some(at.ts_ns),
            head: method == "HEAD",
            connect: method == "CONNECT",
            upgrade,
            sent: 0,
        });
        let owner = Owner {
            call,
            start_ts: None,
            status: None,
            upgrade: upgrade || method == "CONNECT",
        };
        // A request without Transfer-Encoding or Content-Length has no body (RFC 9112 §6.3).
        let framing = match request_framing(&h) {
            Ok(f) => f,
            Err(why) => {
                // Still a request, and its one REQ row: the body that cannot be framed is
                // unavailable (the server closes the connection on it).
                let body = Body::Unavailable {
                    reason: format!("body cannot be framed: {why}"),
                    len: 0,
                };
                self.emit_message(at, &owner.call, Role::Request, 0, body, out);
                return self.lose_sync(at, why, out);
            }
        };
        self.start_body(at, BodyState::new(Role::Request, owner, framing, &h), out);
    }

    pub(super) fn on_response(&mut self, at: At, h: Head, out: &mut Vec<CallEvent>) {
        let StartLine::Status { code, reason, .. } = &h.start else {
            return;
        };
        let code = *code;
        self.roles.learn(at.side, Role::Response);
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&code) && code != 101 {
            return;
        }
        self.stats.responses += 1;
        let req = match self.pending.pop_front() {
            Some(p) => p,
            None => {
                self.stats.orphan_responses += 1;
                let seq = self.next_seq;
                self.next_seq += 1;
                Pending {
                    call: CallTag::new(seq, None),
                    start_ts: None,
                    head: false,
                    connect: false,
                    upgrade: false,
                    sent: 0,
                }
            }
        };
        let owner = Owner {
            call: req.call.clone(),
            start_ts: req.start_ts,
            status: Some((code, reason.clone())),
            upgrade: false,
        };
        if switches_protocols(code, &req, &h) {
            return self.upgraded(at, owner, req.sent, &h, out);
        }
        // The request did not get its upgrade: the client's held bytes are HTTP after all.
        let client = at.side.other();
        if let Phase::AwaitUpgrade { .. } = self.dirs[client.index()].phase {
            self.dirs[client.index()].phase = Phase::Head;
            self.process(At::new(client, at.ts_ns), &[], out);
        }
        let framing = if req.head || code == 204 || code == 304 || (100..200).contains(&code) {
            None
        } else {
            match response_framing(&h) {
                Ok(f) => Some(f),
                Err(why) => {
                    let status = owner.status().cut_short(why.clone());
                    out.push(at.end(&owner.call, status, owner.start_ts));
                    return self.lose_sync(at, why, out);
                }
            }
        };
        self.start_body(at, BodyState::new(Role::Response, owner, framing, &h), out);
    }

    /// `call`'s request is complete after `sent` messages (see [`super::upgrade`]).
    pub(super) fn requests_sent(&mut self, call: &CallTag, sent: u64) {
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.call.stream == call.stream)
        {
            p.sent = sent;
        }
    }

    /// The server's direction resynchronised: responses were lost. HTTP/1.1 clients (docker's
    /// included) do not pipeline, so the response found next answers the newest request;
    /// the older ones were answered in the lost bytes.
    pub(super) fn responses_lost(&mut self, at: At, out: &mut Vec<CallEvent>) {
        while self.pending.len() > 1 {
            if let Some(p) = self.pending.pop_front() {
                let status = Status::abnormal("response lost by the capture");
                out.push(at.end(&p.call, status, p.start_ts));
            }
        }
    }
}

/// Whether the response to `req` ends HTTP on the connection (see [`super::upgrade`]).
fn switches_protocols(code: u16, req: &Pending, h: &Head) -> bool {
    let framed = h.is_chunked() || h.get("content-length").is_some();
    let raw_stream = h.content_type().is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/vnd.docker.raw-stream")
            || ct.starts_with("application/vnd.docker.multiplexed-stream")
    });
    let known = req.call.method.is_some();
    code == 101
        || (req.connect && (200..300).contains(&code))
        // dockerd hijacks without 101 when the client did not ask to upgrade, and some
        // clients ask and still get 200: either way no HTTP follows.
        || ((200..300).contains(&code) && !framed && raw_stream && (req.upgrade || known))
}

fn request_framing(h: &Head) -> Result<Option<Framing>, String> {
    if h.is_chunked() {
        return Ok(Some(Framing::Chunked(Dechunker::default())));
    }
    if h.get("transfer-encoding").is_some() {
        // RFC 9112 §6.3: a request with a transfer coding other than final chunked cannot
        // be framed; the server closes the connection.
        return Err("request Transfer-Encoding without final chunked".into());
    }
    Ok(h.content_length()?.map(|n| Framing::Length { left: n }))
}

fn response_framing(h: &Head) -> Result<Framing, String> {
    if h.is_chunked() {
        return Ok(Framing::Chunked(Dechunker::default()));
    }
    if h.get("transfer-encoding").is_some() {
        return Ok(Framing::UntilClose);
    }
    Ok(match h.content_length()? {
        Some(n) => Framing::Length { left: n },
        None => Framing::UntilClose,
    })
}
