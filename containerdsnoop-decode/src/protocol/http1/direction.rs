//! The HTTP/1.x state machine of one direction: what a direction's next bytes are (a head, a
//! body, raw bytes after an upgrade, a hunt for the next start line), the loop that consumes
//! them, message heads, and resynchronisation on the next request or status line after lost or
//! malformed bytes. Complete heads go to [`super::exchange`], bodies to [`super::message`],
//! raw bytes to [`super::upgrade`].

use super::conn::Connection;
use super::exchange::Owner;
use super::head::{self, StartLine};
use super::message::BodyState;
use crate::protocol::call::{CallEvent, Role};
use crate::protocol::kit::{At, CallTag};

#[derive(Debug)]
pub(super) enum Phase {
    /// Expecting a start line; `Direction::buf` holds the head so far.
    Head,
    Body(Box<BodyState>),
    /// The client sent an upgrade request: its next bytes wait for the server's answer.
    /// `sent` request messages of the call so far (raw ones continue from there).
    AwaitUpgrade {
        owner: Owner,
        sent: u64,
    },
    /// Upgraded (or hijacked): no more HTTP on this connection. `index` is the next message's.
    Raw {
        call: CallTag,
        index: u64,
    },
    /// Lost the message boundary; looking for a start line.
    Hunting,
}

#[derive(Debug)]
pub(super) struct Direction {
    pub(super) phase: Phase,
    pub(super) buf: Vec<u8>,
    /// How far `buf` was searched for the end of the head, so a byte-by-byte feed stays linear.
    pub(super) scanned: usize,
    /// Bytes skipped in the current hunt, for the resync notice.
    pub(super) hunted: u64,
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

    pub(super) fn held(&self) -> usize {
        self.buf.len()
            + match &self.phase {
                Phase::Body(b) => b.held(),
                _ => 0,
            }
    }
}

/// What processing a direction's buffer stopped on.
pub(super) enum Step {
    /// Continue with the rest of the bytes.
    Go,
    /// Need more bytes.
    Wait,
}

impl Connection {
    pub(super) fn lose_sync(&mut self, at: At, why: String, out: &mut Vec<CallEvent>) {
        self.stats.desyncs += 1;
        let text = format!(
            "{} desynchronised: {why}; looking for the next {}",
            self.roles.direction("HTTP", at.side),
            self.roles.noun(at.side)
        );
        out.push(at.notice(0, text));
        let d = &mut self.dirs[at.side.index()];
        d.phase = Phase::Hunting;
        d.scanned = 0;
        d.hunted = 0;
    }

    /// Appends `input` to `at.side`'s buffer and consumes every complete piece in it. With an
    /// empty `input` it re-reads what is buffered (after the other side changed this one's
    /// phase).
    pub(super) fn process(&mut self, at: At, input: &[u8], out: &mut Vec<CallEvent>) {
        let i = at.side.index();
        let mut input = input;
        // Body and raw bytes are consumed straight from the input while nothing is buffered,
        // so a large body is never copied.
        while self.dirs[i].buf.is_empty()
            && !input.is_empty()
            && matches!(self.dirs[i].phase, Phase::Body(_) | Phase::Raw { .. })
        {
            let mut used = 0;
            let step = self.step(at, input, &mut used, out);
            input = &input[used..];
            if matches!(step, Step::Wait) {
                break;
            }
        }
        if input.is_empty() && self.dirs[i].buf.is_empty() {
            return;
        }
        // While hunting, a write that starts with a start line is taken as the boundary even
        // if the bytes before it (the tail of a lost message) did not end their line: writes
        // usually start messages, and the line-start rule alone would miss it.
        if matches!(self.dirs[i].phase, Phase::Hunting)
            && !self.dirs[i].buf.is_empty()
            && self.starts_with_start_line(at, input)
        {
            let n = self.dirs[i].buf.len();
            self.dirs[i].buf.clear();
            self.dirs[i].hunted += n as u64;
            self.stats.bytes_skipped += n as u64;
        }
        let mut buf = std::mem::take(&mut self.dirs[i].buf);
        buf.extend_from_slice(input);
        let mut pos = 0;
        while pos < buf.len() {
            let mut used = 0;
            let step = self.step(at, &buf[pos..], &mut used, out);
            pos += used;
            if matches!(step, Step::Wait) {
                break;
            }
        }
        buf.drain(..pos);
        if buf.is_empty() && buf.capacity() > self.limits.max_head {
            buf = Vec::new();
        }
        // `scanned` counts from the start of the unconsumed bytes, which is where `buf` now
        // starts.
        self.dirs[i].buf = buf;
    }

    /// One step on `rest` (the unconsumed bytes of `at.side`); adds what it consumed to
    /// `used`. Takes the phase out and leaves the next one in place.
    fn step(&mut self, at: At, rest: &[u8], used: &mut usize, out: &mut Vec<CallEvent>) -> Step {
        let i = at.side.index();
        let phase = std::mem::replace(&mut self.dirs[i].phase, Phase::Head);
        match phase {
            Phase::Head => self.step_head(at, rest, used, out),
            Phase::Hunting => {
                self.dirs[i].phase = Phase::Hunting;
                self.step_hunt(at, rest, used, out)
            }
            Phase::Body(body) => self.step_body(at, rest, used, body, out),
            Phase::Raw { call, index } => self.step_raw(at, rest, used, (call, index), out),
            Phase::AwaitUpgrade { owner, sent } => self.step_await_upgrade(at, rest, owner, sent),
        }
    }

    fn step_head(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let i = at.side.index();
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
                self.dirs[i].scanned = 0;
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
            if !self.start_line_fits(at, line) {
                let why = format!(
                    "unexpected start line {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(64)])
                );
                self.lose_sync(at, why, out);
                return Step::Go;
            }
        }
        let from = self.dirs[i].scanned.saturating_sub(3);
        let Some((head_len, total)) = find_head_end(rest, from) else {
            self.dirs[i].scanned = rest.len();
            if rest.len() > self.limits.max_head {
                let why = format!("message head longer than {} bytes", self.limits.max_head);
                self.lose_sync(at, why, out);
                // Skip the head's first byte so the hunt does not accept the same line again.
                *used += 1;
                return Step::Go;
            }
            return Step::Wait;
        };
        self.dirs[i].scanned = 0;
        if total > self.limits.max_head {
            let why = format!("message head longer than {} bytes", self.limits.max_head);
            self.lose_sync(at, why, out);
            *used += 1;
            return Step::Go;
        }
        let parsed = match head::parse(&rest[..head_len]) {
            Ok(h) => h,
            Err(e) => {
                self.lose_sync(at, e.to_string(), out);
                *used += 1;
                return Step::Go;
            }
        };
        *used += total;
        self.stats.dropped_headers += parsed.dropped_headers as u64;
        match parsed.start {
            StartLine::Request { .. } => self.on_request(at, parsed, out),
            StartLine::Status { .. } => self.on_response(at, parsed, out),
        }
        Step::Go
    }

    /// Whether `line` is a start line `at.side` may send: requests from the client, status
    /// lines from the server, either while the roles are unknown.
    fn start_line_fits(&self, at: At, line: &[u8]) -> bool {
        match self.roles.of(at.side) {
            Some(Role::Request) => head::is_request_line(line),
            Some(Role::Response) => head::is_status_line(line),
            None => head::is_request_line(line) || head::is_status_line(line),
        }
    }

    fn starts_with_start_line(&self, at: At, bytes: &[u8]) -> bool {
        bytes.iter().position(|&c| c == b'\n').is_some_and(|nl| {
            let line = &bytes[..nl];
            self.start_line_fits(at, line.strip_suffix(b"\r").unwrap_or(line))
        })
    }

    fn step_hunt(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let i = at.side.index();
        let Some(nl) = rest.iter().position(|&c| c == b'\n') else {
            if rest.len() > self.limits.resync_window {
                // No line end in a window's worth: drop it all, the next line starts later.
                *used += rest.len();
                self.dirs[i].hunted += rest.len() as u64;
                self.stats.bytes_skipped += rest.len() as u64;
                return Step::Go;
            }
            return Step::Wait;
        };
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.start_line_fits(at, line) {
            let d = &mut self.dirs[i];
            let skipped = d.hunted;
            d.hunted = 0;
            d.phase = Phase::Head;
            d.scanned = 0;
            self.stats.resyncs += 1;
            if self.roles.of(at.side) == Some(Role::Response) {
                self.responses_lost(at, out);
            }
            let text = format!(
                "{} resynchronised after skipping {skipped} bytes",
                self.roles.direction("HTTP", at.side)
            );
            out.push(at.notice(0, text));
            return Step::Go;
        }
        *used += nl + 1;
        self.dirs[i].hunted += nl as u64 + 1;
        self.stats.bytes_skipped += nl as u64 + 1;
        Step::Go
    }
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
