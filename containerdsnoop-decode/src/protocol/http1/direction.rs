//! The HTTP/1.x state machine of one direction: what a direction's next bytes are (a head, a
//! body, raw bytes after an upgrade, a hunt for the next start line), the loop that consumes
//! them, message heads, and resynchronisation on the next request or status line after lost or
//! malformed bytes. Owns [`Direction`]; it is handed the other direction (an answer releases or
//! switches it), the exchanges and the shared state. Complete heads go to
//! [`super::exchange::Exchanges`], bodies are [`super::message::BodyState`]s, raw bytes
//! [`super::upgrade::Raw`].

use super::exchange::{Answer, Exchanges};
use super::head::{self, Head, StartLine};
use super::message::{BodyState, BodyStep, Finished, Owner};
use super::shared::Shared;
use super::upgrade::Raw;
use crate::protocol::call::{CallEvent, Role};
use crate::protocol::kit::{At, Roles};

#[derive(Debug)]
enum Phase {
    /// Expecting a start line; `Direction::buf` holds the head so far.
    Head,
    Body(Box<BodyState>),
    /// The client sent an upgrade request: its next bytes wait for the server's answer.
    /// `sent` request messages of the call so far (raw ones continue from there).
    AwaitUpgrade {
        owner: Owner,
        sent: u64,
    },
    /// Upgraded (or hijacked): no more HTTP on this connection.
    Raw(Raw),
    /// Lost the message boundary; looking for a start line.
    Hunting,
}

/// One direction of a connection.
#[derive(Debug)]
pub(super) struct Direction {
    phase: Phase,
    buf: Vec<u8>,
    /// How far `buf` was searched for the end of the head, so a byte-by-byte feed stays linear.
    scanned: usize,
    /// Bytes skipped in the current hunt, for the resync notice.
    hunted: u64,
}

/// What processing a direction's buffer stopped on.
enum Step {
    /// Continue with the rest of the bytes.
    Go,
    /// Need more bytes.
    Wait,
}

/// What a direction's processing is handed besides itself: the exchanges of the connection
/// and the state its parts share.
pub(super) struct Parts<'a> {
    pub(super) ex: &'a mut Exchanges,
    pub(super) sh: &'a mut Shared,
    pub(super) out: &'a mut Vec<CallEvent>,
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            phase: Phase::Head,
            buf: Vec::new(),
            scanned: 0,
            hunted: 0,
        }
    }

    /// Bytes held: an incomplete head, a hunt's window, a body's collected bytes.
    pub(super) fn held(&self) -> usize {
        self.buf.len()
            + match &self.phase {
                Phase::Body(b) => b.held(),
                _ => 0,
            }
    }

    /// Whether this direction lost its message boundary and is looking for a start line.
    pub(super) fn is_hunting(&self) -> bool {
        matches!(self.phase, Phase::Hunting)
    }

    /// The body being read, if any, taken out (the direction expects a head after).
    pub(super) fn take_body(&mut self) -> Option<BodyState> {
        match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Body(body) => Some(*body),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// Forgets what is held: the connection is gone.
    pub(super) fn reset(&mut self) {
        self.buf = Vec::new();
        self.phase = Phase::Head;
    }

    /// The capture lost `missing` bytes of this direction: a body under way is cut short and
    /// the direction hunts for the next start line; raw bytes have no framing to lose.
    pub(super) fn gap(&mut self, at: At, missing: u64, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        self.buf.clear();
        self.scanned = 0;
        let why = format!("capture lost {missing} bytes");
        match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Raw(raw) => {
                let text = format!("capture lost {missing} bytes of the raw stream");
                out.push(at.notice(raw.call.stream, text));
                self.phase = Phase::Raw(raw);
                return;
            }
            Phase::Body(mut body) => body.abort(at, &why, sh, out),
            _ => {}
        }
        self.lose_sync(at, why, sh, out);
    }

    fn lose_sync(&mut self, at: At, why: String, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        sh.stats.desyncs += 1;
        let text = format!(
            "{} desynchronised: {why}; looking for the next {}",
            sh.roles.direction("HTTP", at.side),
            sh.roles.noun(at.side)
        );
        out.push(at.notice(0, text));
        self.phase = Phase::Hunting;
        self.scanned = 0;
        self.hunted = 0;
    }

    /// Appends `input` (sent by `at.side`) to the buffer and consumes every complete part in
    /// it. With an empty `input` it re-reads what is buffered (after the other side changed
    /// this one's phase). `peer` is the other direction.
    pub(super) fn process(
        &mut self,
        at: At,
        input: &[u8],
        peer: &mut Direction,
        ex: &mut Exchanges,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        let mut cx = Parts { ex, sh, out };
        let mut input = input;
        // Body and raw bytes are consumed straight from the input while nothing is buffered,
        // so a large body is never copied.
        while self.buf.is_empty()
            && !input.is_empty()
            && matches!(self.phase, Phase::Body(_) | Phase::Raw(_))
        {
            let mut used = 0;
            let step = self.step(at, input, &mut used, peer, &mut cx);
            input = &input[used..];
            if matches!(step, Step::Wait) {
                break;
            }
        }
        if input.is_empty() && self.buf.is_empty() {
            return;
        }
        // While hunting, a write that starts with a start line is taken as the boundary even
        // if the bytes before it (the tail of a lost message) did not end their line: writes
        // usually start messages, and the line-start rule alone would miss it.
        if matches!(self.phase, Phase::Hunting)
            && !self.buf.is_empty()
            && starts_with_start_line(cx.sh.roles, at, input)
        {
            let n = self.buf.len();
            self.buf.clear();
            self.hunted += n as u64;
            cx.sh.stats.bytes_skipped += n as u64;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(input);
        let mut pos = 0;
        while pos < buf.len() {
            let mut used = 0;
            let step = self.step(at, &buf[pos..], &mut used, peer, &mut cx);
            pos += used;
            if matches!(step, Step::Wait) {
                break;
            }
        }
        buf.drain(..pos);
        if buf.is_empty() && buf.capacity() > cx.sh.limits.max_head {
            buf = Vec::new();
        }
        // `scanned` counts from the start of the unconsumed bytes, which is where `buf` now
        // starts.
        self.buf = buf;
    }

    /// One step on `rest` (the unconsumed bytes of `at.side`); adds what it consumed to
    /// `used`. Takes the phase out and leaves the next one in place.
    fn step(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        peer: &mut Direction,
        cx: &mut Parts,
    ) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Head => self.step_head(at, rest, used, peer, cx),
            Phase::Hunting => {
                self.phase = Phase::Hunting;
                self.step_hunt(at, rest, used, cx)
            }
            Phase::Body(body) => self.step_body(at, rest, used, body, cx),
            Phase::Raw(mut raw) => {
                if !rest.is_empty() {
                    *used += rest.len();
                    raw.message(at, rest, cx.sh, cx.out);
                }
                self.phase = Phase::Raw(raw);
                Step::Wait
            }
            Phase::AwaitUpgrade { owner, sent } => {
                // The client's bytes after a request that asked to upgrade, before the server
                // answered: held, bounded by the head limit.
                if rest.len() > cx.sh.limits.max_head {
                    // A client streaming that much without an answer has been upgraded in all
                    // but name (the answer was lost).
                    self.phase = Phase::Raw(Raw::new(owner.call, sent));
                    return Step::Go;
                }
                self.phase = Phase::AwaitUpgrade { owner, sent };
                Step::Wait
            }
        }
    }

    fn step_head(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        peer: &mut Direction,
        cx: &mut Parts,
    ) -> Step {
        // Empty lines between messages are allowed (RFC 9112 §2.2).
        let blank = rest
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        if blank > 0 {
            // Only whole line ends: a lone CR might be the start of "\r\n" still to come.
            let skip = rest[..blank]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |p| p + 1);
            if skip > 0 {
                *used += skip;
                self.scanned = 0;
                return Step::Go;
            }
            if blank == rest.len() {
                return Step::Wait;
            }
        }
        // The start line is judged as soon as it is complete, so garbage is caught without
        // waiting for a whole head's worth of it.
        if let Some(nl) = rest.iter().position(|&c| c == b'\n') {
            let line = &rest[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !start_line_fits(cx.sh.roles, at, line) {
                let why = format!(
                    "unexpected start line {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(64)])
                );
                self.lose_sync(at, why, cx.sh, cx.out);
                return Step::Go;
            }
        }
        let max_head = cx.sh.limits.max_head;
        let from = self.scanned.saturating_sub(3);
        let Some((head_len, total)) = find_head_end(rest, from) else {
            self.scanned = rest.len();
            if rest.len() > max_head {
                let why = format!("message head longer than {max_head} bytes");
                self.lose_sync(at, why, cx.sh, cx.out);
                // Skip the head's first byte so the hunt does not accept the same line again.
                *used += 1;
                return Step::Go;
            }
            return Step::Wait;
        };
        self.scanned = 0;
        if total > max_head {
            let why = format!("message head longer than {max_head} bytes");
            self.lose_sync(at, why, cx.sh, cx.out);
            *used += 1;
            return Step::Go;
        }
        let parsed = match head::parse(&rest[..head_len]) {
            Ok(h) => h,
            Err(e) => {
                self.lose_sync(at, e.to_string(), cx.sh, cx.out);
                *used += 1;
                return Step::Go;
            }
        };
        *used += total;
        cx.sh.stats.dropped_headers += parsed.dropped_headers as u64;
        match &parsed.start {
            StartLine::Request { method, target, .. } => {
                let started = cx
                    .ex
                    .on_request(at, (method, target), &parsed, cx.sh, cx.out);
                match started {
                    Ok(body) => self.start_body(at, body, cx),
                    Err(why) => self.lose_sync(at, why, cx.sh, cx.out),
                }
            }
            StartLine::Status { code, reason, .. } => {
                let answer = cx.ex.on_response(at, (*code, reason), &parsed, cx.sh);
                self.on_answer(at, answer, &parsed, peer, cx);
            }
        }
        Step::Go
    }

    /// What a response head (`h`, from `at.side`) leads to. The client's direction (`peer`)
    /// may have held bytes back for an upgrade: it is switched to raw bytes with this one, or
    /// its held bytes are HTTP after all.
    fn on_answer(
        &mut self,
        at: At,
        answer: Answer,
        h: &Head,
        peer: &mut Direction,
        cx: &mut Parts,
    ) {
        let client = At::new(at.side.other(), at.ts_ns);
        match answer {
            Answer::Interim => {}
            Answer::Switched { owner, sent } => {
                self.phase = Phase::Raw(Raw::switched(at, &owner, h, cx.sh, cx.out));
                if matches!(peer.phase, Phase::AwaitUpgrade { .. } | Phase::Head) {
                    peer.phase = Phase::Raw(Raw::new(owner.call, sent));
                    // Bytes the client sent while waiting for the answer are the first raw
                    // message.
                    peer.process(client, &[], self, cx.ex, cx.sh, cx.out);
                }
            }
            Answer::Answered { owner, framing } => {
                // The request did not get its upgrade: the client's held bytes are HTTP.
                if let Phase::AwaitUpgrade { .. } = peer.phase {
                    peer.phase = Phase::Head;
                    peer.process(client, &[], self, cx.ex, cx.sh, cx.out);
                }
                match framing {
                    Ok(framing) => {
                        let body = BodyState::new(Role::Response, owner, framing, h);
                        self.start_body(at, body, cx);
                    }
                    Err(why) => {
                        let status = owner.status().cut_short(why.clone());
                        cx.out.push(at.end(&owner.call, status, owner.start_ts));
                        self.lose_sync(at, why, cx.sh, cx.out);
                    }
                }
            }
        }
    }

    /// Reads the body that follows a head (at once, when there is none).
    fn start_body(&mut self, at: At, body: BodyState, cx: &mut Parts) {
        if body.is_done() {
            self.finish_body(at, body, cx);
        } else {
            self.phase = Phase::Body(Box::new(body));
        }
    }

    /// Consumes body bytes. Leaves the body as the phase while it goes on; a finished body
    /// is finished, a broken one hands over to the hunt.
    fn step_body(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        mut body: Box<BodyState>,
        cx: &mut Parts,
    ) -> Step {
        match body.step(at, rest, used, cx.sh, cx.out) {
            BodyStep::Go => {
                self.phase = Phase::Body(body);
                Step::Go
            }
            BodyStep::Wait => {
                self.phase = Phase::Body(body);
                Step::Wait
            }
            BodyStep::Done => {
                self.finish_body(at, *body, cx);
                Step::Go
            }
            BodyStep::Broken(why) => {
                self.lose_sync(at, why, cx.sh, cx.out);
                Step::Go
            }
        }
    }

    /// The body is complete: the direction expects the next head, or an upgrade's answer.
    fn finish_body(&mut self, at: At, body: BodyState, cx: &mut Parts) {
        let (next, sent) = body.finish(at, cx.sh, cx.out);
        if let Some((call, sent)) = sent {
            cx.ex.requests_sent(&call, sent);
        }
        self.phase = match next {
            Finished::Head => Phase::Head,
            Finished::AwaitUpgrade { owner, sent } => Phase::AwaitUpgrade { owner, sent },
        };
    }

    fn step_hunt(&mut self, at: At, rest: &[u8], used: &mut usize, cx: &mut Parts) -> Step {
        let Some(nl) = rest.iter().position(|&c| c == b'\n') else {
            if rest.len() > cx.sh.limits.resync_window {
                // No line end in a window's worth: drop it all, the next line starts later.
                *used += rest.len();
                self.hunted += rest.len() as u64;
                cx.sh.stats.bytes_skipped += rest.len() as u64;
                return Step::Go;
            }
            return Step::Wait;
        };
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if start_line_fits(cx.sh.roles, at, line) {
            let skipped = self.hunted;
            self.hunted = 0;
            self.phase = Phase::Head;
            self.scanned = 0;
            cx.sh.stats.resyncs += 1;
            if cx.sh.roles.of(at.side) == Some(Role::Response) {
                cx.ex.responses_lost(at, cx.out);
            }
            let text = format!(
                "{} resynchronised after skipping {skipped} bytes",
                cx.sh.roles.direction("HTTP", at.side)
            );
            cx.out.push(at.notice(0, text));
            return Step::Go;
        }
        *used += nl + 1;
        self.hunted += nl as u64 + 1;
        cx.sh.stats.bytes_skipped += nl as u64 + 1;
        Step::Go
    }
}

/// Whether `line` is a start line `at.side` may send: requests from the client, status
/// lines from the server, either while the roles are unknown.
fn start_line_fits(roles: Roles, at: At, line: &[u8]) -> bool {
    match roles.of(at.side) {
        Some(Role::Request) => head::is_request_line(line),
        Some(Role::Response) => head::is_status_line(line),
        None => head::is_request_line(line) || head::is_status_line(line),
    }
}

fn starts_with_start_line(roles: Roles, at: At, bytes: &[u8]) -> bool {
    bytes.iter().position(|&c| c == b'\n').is_some_and(|nl| {
        let line = &bytes[..nl];
        start_line_fits(roles, at, line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// The end of a head: `(head_len, total)` where `head_len` excludes the empty line and
/// `total` includes it. Searches from `from` (bytes before it were searched already).
fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(p) = buf.get(i..)?.iter().position(|&c| c == b'\n') {
        let nl = i + p;
        // The line after this newline is empty when it is "\n" or "\r\n".
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some((nl, nl + 2)),
            Some([b'\r', b'\n', ..]) => return Some((nl, nl + 3)),
            _ => i = nl + 1,
        }
    }
    None
}
