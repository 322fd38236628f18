//! HTTP/1.x exchanges: a request head starts a call, the next response head answers the
//! oldest request still waiting (keep-alive and pipelining pair in order), and each head says
//! how its body is framed (RFC 9112 §6.3). Owns [`Exchanges`], the requests awaiting their
//! responses; what a head leads to next is handed back to the direction that read it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::chunked::Dechunker;
use super::head::Head;
use super::message::{BodyState, Framing, Owner};
use super::shared::Shared;
use crate::protocol::call::{Body, CallEvent, ConnEnd, Method, Role, Status};
use crate::protocol::kit::{At, CallTag};

/// A request sent and not answered yet.
#[derive(Clone, Debug)]
struct Pending {
    call: CallTag,
    /// When the request head arrived; unknown for a response no request was seen for.
    start_ts: Option<u64>,
    head: bool,
    connect: bool,
    /// The request asked to switch protocols (`Upgrade`), as docker's attach and exec do.
    upgrade: bool,
    /// Request messages of the call so far, once its body is complete.
    sent: u64,
}

/// The requests of one connection awaiting their responses, oldest first, and the number of
/// the next call. A FIFO, not the LRU table the other decoders use: HTTP/1.1 answers requests
/// in the order they were sent, so the front is always the one the next response belongs to,
/// and when too many wait it is the one to forget (its response is the likeliest to have been
/// lost).
#[derive(Debug)]
pub(super) struct Exchanges {
    pending: VecDeque<Pending>,
    /// The stream number of the next call: requests are numbered from 1 in order.
    next_seq: u64,
}

/// What a response head leads to.
pub(super) enum Answer {
    /// An interim response (`100 Continue`, `103 Early Hints`): the real one follows.
    Interim,
    /// The server switched protocols (see [`super::upgrade`]); `sent` request messages of the
    /// call so far.
    Switched { owner: Owner, sent: u64 },
    /// The response's body follows: how it is framed (`None`: there is none), or why it cannot
    /// be framed.
    Answered {
        owner: Owner,
        framing: Result<Option<Framing>, String>,
    },
}

impl Exchanges {
    pub(super) fn new() -> Exchanges {
        Exchanges {
            pending: VecDeque::new(),
            next_seq: 1,
        }
    }

    /// Requests still waiting for their response.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// A request head `h` (`method`, `target`) from `at.side`: its call starts. Returns its
    /// body to read, or why the body cannot be framed (its one REQ row is out, shown
    /// unavailable; the direction loses its sync).
    pub(super) fn on_request(
        &mut self,
        at: At,
        (method, target): (&str, &str),
        h: &Head,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) -> Result<BodyState, String> {
        sh.roles.learn(at.side, Role::Request);
        sh.stats.requests += 1;
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
        if self.pending.len() >= sh.limits.max_pending.max(1) {
            self.pending.pop_front();
            sh.stats.evicted_requests += 1;
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
        match request_framing(h) {
            Ok(framing) => Ok(BodyState::new(Role::Request, owner, framing, h)),
            Err(why) => {
                // Still a request, and its one REQ row: the body that cannot be framed is
                // unavailable (the server closes the connection on it).
                let body = Body::Unavailable {
                    reason: format!("body cannot be framed: {why}"),
                    len: 0,
                };
                sh.emit_message(at, &owner.call, Role::Request, 0, body, out);
                Err(why)
            }
        }
    }

    /// A response head `h` (`code`, `reason`) from `at.side`: it answers the oldest request
    /// waiting.
    pub(super) fn on_response(
        &mut self,
        at: At,
        (code, reason): (u16, &str),
        h: &Head,
        sh: &mut Shared,
    ) -> Answer {
        sh.roles.learn(at.side, Role::Response);
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&code) && code != 101 {
            return Answer::Interim;
        }
        sh.stats.responses += 1;
        let req = match self.pending.pop_front() {
            Some(p) => p,
            None => {
                sh.stats.orphan_responses += 1;
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
            status: Some((code, reason.to_string())),
            upgrade: false,
        };
        if switches_protocols(code, &req, h) {
            return Answer::Switched {
                owner,
                sent: req.sent,
            };
        }
        let framing = if req.head || code == 204 || code == 304 || (100..200).contains(&code) {
            Ok(None)
        } else {
            response_framing(h).map(Some)
        };
        Answer::Answered { owner, framing }
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

    /// The connection is gone (`end` says how): requests still waiting end abnormally.
    pub(super) fn close(&mut self, at: At, end: ConnEnd, out: &mut Vec<CallEvent>) {
        for p in std::mem::take(&mut self.pending) {
            let status = Status::abnormal(format!("{} before the response", end.reason()));
            out.push(at.end(&p.call, status, p.start_ts));
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
