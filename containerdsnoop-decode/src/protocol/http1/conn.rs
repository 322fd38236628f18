//! One HTTP/1.x connection seen from outside (the docker CLI and dockerd): both directions'
//! bytes in, `CallEvent`s out. Owns message framing per direction (Content-Length, chunked,
//! until close), pairing responses with requests in order (keep-alive and pipelining), the
//! switch to raw bytes after an upgrade (docker's attach and exec hijack the connection), and
//! resynchronisation on the next request or status line after lost or malformed bytes.
//!
//! Streaming responses (docker `events`, `logs --follow`, `wait`) produce a message per chunk
//! the server flushed (for JSON, per chunk that ends a line), so rows appear as they arrive.
//! Messages of chunked and length-delimited bodies do not depend on how the capture cut the
//! bytes; raw (upgraded) and close-delimited bodies produce one message per captured write,
//! since there nothing else marks a boundary.

use std::collections::VecDeque;
use std::sync::Arc;

use super::body::{Collector, is_json};
use super::chunked::{Dechunker, Piece};
use super::head::{self, Head, StartLine};
use crate::protocol::call::{Body, CallEvent, CallEventKind, ConnEnd, Method, Role, Side, Status};
use crate::protocol::decoder::ConnDecoder;

/// Every bound of a connection, so memory per connection is a known function of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message head (start line and fields); a longer one desynchronises the direction.
    pub max_head: usize,
    /// Body bytes kept per message; the rest is counted and the body shown as unavailable.
    pub max_body: usize,
    /// Requests awaiting a response; beyond it the oldest is forgotten (and counted).
    pub max_pending: usize,
    /// Bytes a hunting direction keeps while looking for a request or status line.
    pub resync_window: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 64 * 1024,
            max_body: 1 << 20,
            max_pending: 64,
            resync_window: 64 * 1024,
        }
    }
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes: u64,
    pub requests: u64,
    pub responses: u64,
    pub messages: u64,
    /// Bodies over `Limits::max_body`.
    pub oversize_bodies: u64,
    /// Header fields beyond `head::MAX_HEADERS`.
    pub dropped_headers: u64,
    pub gaps: u64,
    pub lost_bytes: u64,
    pub desyncs: u64,
    pub resyncs: u64,
    /// Bytes skipped while hunting for a start line.
    pub bytes_skipped: u64,
    /// Responses no request was known for (late join, lost bytes).
    pub orphan_responses: u64,
    /// Requests forgotten because too many awaited a response.
    pub evicted_requests: u64,
    pub upgrades: u64,
    /// Bytes seen after an upgrade.
    pub raw_bytes: u64,
}

/// A request sent and not answered yet.
#[derive(Clone, Debug)]
struct Pending {
    seq: u64,
    start_ts: u64,
    method: Method,
    head: bool,
    connect: bool,
    /// The request asked to switch protocols (`Upgrade`), as docker's attach and exec do.
    upgrade: bool,
}

/// The call a body belongs to.
#[derive(Clone, Debug)]
struct Owner {
    seq: u64,
    method: Option<Method>,
    /// For a response: the request's start, and the status to end with.
    start_ts: Option<u64>,
    status: Option<(u16, String)>,
    /// After this request's body, wait for the server to accept the upgrade.
    upgrade: bool,
}

#[derive(Debug)]
enum Framing {
    Length { left: u64 },
    Chunked(Dechunker),
    UntilClose,
}

#[derive(Debug)]
struct BodyState {
    role: Role,
    owner: Owner,
    framing: Framing,
    content_type: Option<String>,
    json: bool,
    collected: Collector,
    index: u64,
}

#[derive(Debug)]
enum Phase {
    /// Expecting a start line; `Direction::buf` holds the head so far.
    Head,
    Body(Box<BodyState>),
    /// The client sent an upgrade request: its next bytes wait for the server's answer.
    AwaitUpgrade {
        owner: Owner,
    },
    /// Upgraded (or hijacked): no more HTTP on this connection.
    Raw {
        seq: u64,
        method: Option<Method>,
        index: u64,
    },
    /// Lost the message boundary; looking for a start line.
    Hunting,
}

#[derive(Debug)]
struct Direction {
    phase: Phase,
    buf: Vec<u8>,
    /// How far `buf` was searched for the end of the head, so a byte-by-byte feed stays linear.
    scanned: usize,
    hunted: u64,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            phase: Phase::Head,
            buf: Vec::new(),
            scanned: 0,
            hunted: 0,
        }
    }

    fn held(&self) -> usize {
        self.buf.len()
            + match &self.phase {
                Phase::Body(b) => {
                    b.collected.held()
                        + match &b.framing {
                            Framing::Chunked(d) => d.held(),
                            _ => 0,
                        }
                }
                _ => 0,
            }
    }
}

/// The decoder of one HTTP/1.x connection.
#[derive(Debug)]
pub struct Connection {
    dirs: [Direction; 2],
    client: Option<Side>,
    pending: VecDeque<Pending>,
    next_seq: u64,
    limits: Limits,
    stats: Stats,
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Default for Connection {
    fn default() -> Connection {
        Connection::new(Limits::default())
    }
}

/// What processing a direction's buffer stopped on.
enum Step {
    /// Continue with the buffer from `pos`.
    Go,
    /// Need more bytes.
    Wait,
}

impl Connection {
    pub fn new(limits: Limits) -> Connection {
        Connection {
            dirs: [Direction::new(), Direction::new()],
            client: None,
            pending: VecDeque::new(),
            next_seq: 1,
            limits,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Starts with the client known (the connection table knows which socket listens).
    /// Without it, the first request or response seen decides.
    pub fn with_client(mut self, client: Option<Side>) -> Connection {
        self.client = client;
        self
    }

    /// The side that sends requests, once known.
    pub fn client(&self) -> Option<Side> {
        self.client
    }

    /// Requests still waiting for their response.
    pub fn open_calls(&self) -> usize {
        self.pending.len()
    }

    fn role(&self, side: Side) -> Option<Role> {
        side.role(self.client)
    }

    fn direction_name(&self, side: Side) -> &'static str {
        match self.role(side) {
            Some(Role::Request) => "HTTP client→server",
            Some(Role::Response) => "HTTP server→client",
            None => "HTTP",
        }
    }

    fn notice(side: Side, ts_ns: u64, stream: u64, text: String, out: &mut Vec<CallEvent>) {
        out.push(CallEvent {
            ts_ns,
            side,
            stream,
            kind: CallEventKind::Notice { text },
        });
    }

    fn lose_sync(&mut self, side: Side, ts_ns: u64, why: String, out: &mut Vec<CallEvent>) {
        self.stats.desyncs += 1;
        let text = format!(
            "{} desynchronised: {why}; looking for the next {}",
            self.direction_name(side),
            match self.role(side) {
                Some(Role::Request) => "request",
                Some(Role::Response) => "response",
                None => "message",
            }
        );
        Self::notice(side, ts_ns, 0, text, out);
        let d = &mut self.dirs[idx(side)];
        d.phase = Phase::Hunting;
        d.scanned = 0;
        d.hunted = 0;
    }

    /// Appends `input` to `side`'s buffer and consumes every complete piece in it. With an
    /// empty `input` it re-reads what is buffered (after the other side changed this one's
    /// phase).
    fn process(&mut self, side: Side, ts_ns: u64, input: &[u8], out: &mut Vec<CallEvent>) {
        let i = idx(side);
        let mut input = input;
        // Body and raw bytes are consumed straight from the input while nothing is buffered,
        // so a large body is never copied.
        while self.dirs[i].buf.is_empty()
            && !input.is_empty()
            && matches!(self.dirs[i].phase, Phase::Body(_) | Phase::Raw { .. })
        {
            let mut used = 0;
            let step = self.step(side, ts_ns, input, &mut used, out);
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
            && self.starts_with_start_line(side, input)
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
            let step = self.step(side, ts_ns, &buf[pos..], &mut used, out);
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

    /// One step on `rest` (the unconsumed bytes of `side`); adds what it consumed to `used`.
    /// Takes the phase out and leaves the next one in place.
    fn step(
        &mut self,
        side: Side,
        ts_ns: u64,
        rest: &[u8],
        used: &mut usize,
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let i = idx(side);
        let phase = std::mem::replace(&mut self.dirs[i].phase, Phase::Head);
        match phase {
            Phase::Head => self.step_head(side, ts_ns, rest, used, out),
            Phase::Hunting => {
                self.dirs[i].phase = Phase::Hunting;
                self.step_hunt(side, ts_ns, rest, used, out)
            }
            Phase::Body(body) => self.step_body(side, ts_ns, rest, used, body, out),
            Phase::Raw { seq, method, index } => {
                if rest.is_empty() {
                    self.dirs[i].phase = Phase::Raw { seq, method, index };
                    return Step::Wait;
                }
                self.stats.raw_bytes += rest.len() as u64;
                *used += rest.len();
                let role = self.role(side).unwrap_or(Role::Request);
                self.emit_message(
                    side,
                    ts_ns,
                    seq,
                    role,
                    index,
                    method.clone(),
                    Body::Raw(rest.to_vec()),
                    out,
                );
                self.dirs[i].phase = Phase::Raw {
                    seq,
                    method,
                    index: index + 1,
                };
                Step::Wait
            }
            Phase::AwaitUpgrade { owner } => {
                // Held until the server answers; bounded by the head limit.
                if rest.len() > self.limits.max_head {
                    // A client streaming that much without an answer has been upgraded in
                    // all but name (the answer was lost).
                    self.dirs[i].phase = Phase::Raw {
                        seq: owner.seq,
                        method: owner.method,
                        index: 0,
                    };
                    return Step::Go;
                }
                self.dirs[i].phase = Phase::AwaitUpgrade { owner };
                Step::Wait
            }
        }
    }

    fn step_head(
        &mut self,
        side: Side,
        ts_ns: u64,
        rest: &[u8],
        used: &mut usize,
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let i = idx(side);
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
            if !self.start_line_fits(side, line) {
                let why = format!(
                    "unexpected start line {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(64)])
                );
                self.lose_sync(side, ts_ns, why, out);
                return Step::Go;
            }
        }
        let from = self.dirs[i].scanned.saturating_sub(3);
        let end = find_head_end(rest, from);
        let Some((head_len, total)) = end else {
            self.dirs[i].scanned = rest.len();
            if rest.len() > self.limits.max_head {
                let why = format!("message head longer than {} bytes", self.limits.max_head);
                self.lose_sync(side, ts_ns, why, out);
                // Skip the head's first byte so the hunt does not accept the same line again.
                *used += 1;
                return Step::Go;
            }
            return Step::Wait;
        };
        self.dirs[i].scanned = 0;
        if total > self.limits.max_head {
            let why = format!("message head longer than {} bytes", self.limits.max_head);
            self.lose_sync(side, ts_ns, why, out);
            *used += 1;
            return Step::Go;
        }
        let parsed = match head::parse(&rest[..head_len]) {
            Ok(h) => h,
            Err(e) => {
                self.lose_sync(side, ts_ns, e.to_string(), out);
                *used += 1;
                return Step::Go;
            }
        };
        *used += total;
        self.stats.dropped_headers += parsed.dropped_headers as u64;
        match parsed.start {
            StartLine::Request { .. } => self.on_request(side, ts_ns, parsed, out),
            StartLine::Status { .. } => self.on_response(side, ts_ns, parsed, out),
        }
        Step::Go
    }

    /// Whether `line` is a start line this side may send: requests from the client,
    /// status lines from the server, either while the roles are unknown.
    fn start_line_fits(&self, side: Side, line: &[u8]) -> bool {
        match self.role(side) {
            Some(Role::Request) => head::is_request_line(line),
            Some(Role::Response) => head::is_status_line(line),
            None => head::is_request_line(line) || head::is_status_line(line),
        }
    }

    fn starts_with_start_line(&self, side: Side, bytes: &[u8]) -> bool {
        bytes.iter().position(|&c| c == b'\n').is_some_and(|nl| {
            let line = &bytes[..nl];
            self.start_line_fits(side, line.strip_suffix(b"\r").unwrap_or(line))
        })
    }

    fn step_hunt(
        &mut self,
        side: Side,
        ts_ns: u64,
        rest: &[u8],
        used: &mut usize,
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let i = idx(side);
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
        if self.start_line_fits(side, line) {
            let skipped = self.dirs[i].hunted;
            self.dirs[i].hunted = 0;
            self.dirs[i].phase = Phase::Head;
            self.dirs[i].scanned = 0;
            self.stats.resyncs += 1;
            if self.role(side) == Some(Role::Response) {
                self.responses_lost(side, ts_ns, out);
            }
            let text = format!(
                "{} resynchronised after skipping {skipped} bytes",
                self.direction_name(side)
            );
            Self::notice(side, ts_ns, 0, text, out);
            return Step::Go;
        }
        *used += nl + 1;
        self.dirs[i].hunted += nl as u64 + 1;
        self.stats.bytes_skipped += nl as u64 + 1;
        Step::Go
    }

    /// The server's direction resynchronised: responses were lost. HTTP/1.1 clients (docker's
    /// included) do not pipeline, so the response found next answers the newest request;
    /// the older ones were answered in the lost bytes.
    fn responses_lost(&mut self, side: Side, ts_ns: u64, out: &mut Vec<CallEvent>) {
        while self.pending.len() > 1 {
            if let Some(p) = self.pending.pop_front() {
                let status = Status {
                    abnormal: Some("response lost by the capture".into()),
                    ..Status::default()
                };
                self.emit_end(
                    side,
                    ts_ns,
                    p.seq,
                    Some(p.method),
                    status,
                    Some(p.start_ts),
                    out,
                );
            }
        }
    }

    fn on_request(&mut self, side: Side, ts_ns: u64, h: Head, out: &mut Vec<CallEvent>) {
        let StartLine::Request { method, target, .. } = &h.start else {
            return;
        };
        if self.client.is_none() {
            self.client = Some(side);
        }
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
        out.push(CallEvent {
            ts_ns,
            side,
            stream: seq,
            kind: CallEventKind::Start {
                method: Some(name.clone()),
                metadata,
            },
        });
        if self.pending.len() >= self.limits.max_pending.max(1) {
            self.pending.pop_front();
            self.stats.evicted_requests += 1;
        }
        self.pending.push_back(Pending {
            seq,
            start_ts: ts_ns,
            method: name.clone(),
            head: method == "HEAD",
            connect: method == "CONNECT",
            upgrade,
        });
        let owner = Owner {
            seq,
            method: Some(name),
            start_ts: None,
            status: None,
            upgrade: upgrade || method == "CONNECT",
        };
        // A request without Transfer-Encoding or Content-Length has no body (RFC 9112 §6.3).
        let framing = match request_framing(&h) {
            Ok(f) => f,
            Err(why) => return self.lose_sync(side, ts_ns, why, out),
        };
        self.start_body(side, Role::Request, owner, framing, &h, ts_ns, out);
    }

    fn on_response(&mut self, side: Side, ts_ns: u64, h: Head, out: &mut Vec<CallEvent>) {
        let StartLine::Status { code, reason, .. } = &h.start else {
            return;
        };
        let code = *code;
        if self.client.is_none() {
            self.client = Some(side.other());
        }
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&code) && code != 101 {
            return;
        }
        self.stats.responses += 1;
        let pending = self.pending.pop_front();
        let (seq, method, start_ts, req_head, req_connect, req_upgrade) = match pending {
            Some(p) => (
                p.seq,
                Some(p.method),
                Some(p.start_ts),
                p.head,
                p.connect,
                p.upgrade,
            ),
            None => {
                self.stats.orphan_responses += 1;
                let seq = self.next_seq;
                self.next_seq += 1;
                (seq, None, None, false, false, false)
            }
        };
        let owner = Owner {
            seq,
            method: method.clone(),
            start_ts,
            status: Some((code, reason.clone())),
            upgrade: false,
        };
        let framed = h.is_chunked() || h.get("content-length").is_some();
        let raw_stream = h.content_type().is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("application/vnd.docker.raw-stream")
                || ct.starts_with("application/vnd.docker.multiplexed-stream")
        });
        let upgraded = code == 101
            || (req_connect && (200..300).contains(&code))
            // dockerd hijacks without 101 when the client did not ask to upgrade, and some
            // clients ask and still get 200: either way no HTTP follows.
            || ((200..300).contains(&code) && !framed && raw_stream && (req_upgrade || method.is_some()));
        if upgraded {
            self.stats.upgrades += 1;
            let status = Status {
                code: Some(u32::from(code)),
                message: (!reason.is_empty()).then(|| reason.clone()),
                abnormal: None,
            };
            self.emit_end(side, ts_ns, seq, method.clone(), status, start_ts, out);
            let what = h
                .get("upgrade")
                .map_or_else(|| "a raw stream".to_string(), |u| format!("{u:?}"));
            Self::notice(
                side,
                ts_ns,
                seq,
                format!("connection switched to {what}: no more HTTP on it"),
                out,
            );
            self.go_raw(side, seq, method.clone(), ts_ns, out);
            return;
        }
        // The request did not get its upgrade: the client's held bytes are HTTP after all.
        let client = side.other();
        if let Phase::AwaitUpgrade { .. } = self.dirs[idx(client)].phase {
            self.dirs[idx(client)].phase = Phase::Head;
            self.process(client, ts_ns, &[], out);
        }
        let framing = if req_head || code == 204 || code == 304 || (100..200).contains(&code) {
            None
        } else {
            match response_framing(&h) {
                Ok(f) => Some(f),
                Err(why) => {
                    let status = Status {
                        code: Some(u32::from(code)),
                        message: (!reason.is_empty()).then(|| reason.clone()),
                        abnormal: Some(why.clone()),
                    };
                    self.emit_end(side, ts_ns, seq, method, status, start_ts, out);
                    return self.lose_sync(side, ts_ns, why, out);
                }
            }
        };
        self.start_body(side, Role::Response, owner, framing, &h, ts_ns, out);
    }

    /// Both directions carry raw bytes from now on.
    fn go_raw(
        &mut self,
        server: Side,
        seq: u64,
        method: Option<Method>,
        ts_ns: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let client = server.other();
        self.dirs[idx(server)].phase = Phase::Raw {
            seq,
            method: method.clone(),
            index: 0,
        };
        let was_waiting = matches!(
            self.dirs[idx(client)].phase,
            Phase::AwaitUpgrade { .. } | Phase::Head
        );
        if was_waiting {
            self.dirs[idx(client)].phase = Phase::Raw {
                seq,
                method,
                index: 0,
            };
            // Bytes the client sent while waiting for the answer are the first raw message.
            self.process(client, ts_ns, &[], out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_body(
        &mut self,
        side: Side,
        role: Role,
        owner: Owner,
        framing: Option<Framing>,
        h: &Head,
        ts_ns: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let content_type = h.content_type().map(str::to_string);
        let body = Box::new(BodyState {
            role,
            json: is_json(content_type.as_deref()),
            content_type,
            owner,
            framing: framing.unwrap_or(Framing::Length { left: 0 }),
            collected: Collector::default(),
            index: 0,
        });
        if body_done(&body) {
            self.finish_body(side, ts_ns, *body, out);
        } else {
            self.dirs[idx(side)].phase = Phase::Body(body);
        }
    }

    /// Consumes body bytes. Leaves the body as the phase while it goes on; a finished body
    /// hands over to `finish_body`, a broken one to the hunt.
    fn step_body(
        &mut self,
        side: Side,
        ts_ns: u64,
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
                    self.flush(side, ts_ns, &mut body, out);
                }
                step = Step::Wait;
            }
            Framing::Chunked(d) => {
                let (n, piece) = match d.step(rest) {
                    Ok(r) => r,
                    Err(e) => {
                        let why = e.to_string();
                        self.abort_body(side, ts_ns, &mut body, &why, out);
                        self.lose_sync(side, ts_ns, why, out);
                        return Step::Go;
                    }
                };
                *used += n;
                match piece {
                    Some(Piece::Data(b)) => body.collected.push(b, max),
                    // A chunk is what the sender flushed: for streams it is the unit to show.
                    Some(Piece::ChunkEnd) if !body.json || body.collected.ends_line() => {
                        self.flush(side, ts_ns, &mut body, out);
                    }
                    _ => {}
                }
                if n == 0 && piece.is_none() {
                    step = Step::Wait;
                }
            }
        }
        if body_done(&body) {
            self.finish_body(side, ts_ns, *body, out);
            return Step::Go;
        }
        self.dirs[idx(side)].phase = Phase::Body(body);
        step
    }

    /// Emits what was collected as one message.
    fn flush(&mut self, side: Side, ts_ns: u64, body: &mut BodyState, out: &mut Vec<CallEvent>) {
        if body.collected.is_empty() {
            return;
        }
        let msg = body
            .collected
            .take(body.content_type.as_deref(), self.limits.max_body);
        if matches!(msg, Body::Unavailable { .. }) {
            self.stats.oversize_bodies += 1;
        }
        self.emit_message(
            side,
            ts_ns,
            body.owner.seq,
            body.role,
            body.index,
            body.owner.method.clone(),
            msg,
            out,
        );
        body.index += 1;
    }

    /// The body is complete: its last message, then the call's end for a response, or the
    /// wait for an upgrade for a request that asked for one.
    fn finish_body(
        &mut self,
        side: Side,
        ts_ns: u64,
        mut body: BodyState,
        out: &mut Vec<CallEvent>,
    ) {
        self.flush(side, ts_ns, &mut body, out);
        match body.role {
            Role::Response => {
                let (code, reason) = body.owner.status.clone().unwrap_or_default();
                let status = Status {
                    code: Some(u32::from(code)),
                    message: (!reason.is_empty()).then_some(reason),
                    abnormal: None,
                };
                self.emit_end(
                    side,
                    ts_ns,
                    body.owner.seq,
                    body.owner.method,
                    status,
                    body.owner.start_ts,
                    out,
                );
                self.dirs[idx(side)].phase = Phase::Head;
            }
            Role::Request if body.owner.upgrade => {
                self.dirs[idx(side)].phase = Phase::AwaitUpgrade { owner: body.owner };
            }
            Role::Request => self.dirs[idx(side)].phase = Phase::Head,
        }
    }

    /// A body cut short (malformed chunking, lost bytes): what was collected is reported as
    /// unavailable and a response's call ends abnormally.
    fn abort_body(
        &mut self,
        side: Side,
        ts_ns: u64,
        body: &mut BodyState,
        why: &str,
        out: &mut Vec<CallEvent>,
    ) {
        if !body.collected.is_empty() {
            let len = body.collected.take(None, self.limits.max_body);
            let len = match len {
                Body::Unavailable { len, .. } => len,
                Body::Text { text, .. } => text.len() as u64,
                Body::Raw(b) | Body::Protobuf(b) => b.len() as u64,
            };
            self.emit_message(
                side,
                ts_ns,
                body.owner.seq,
                body.role,
                body.index,
                body.owner.method.clone(),
                Body::Unavailable {
                    reason: format!("body cut short: {why}"),
                    len,
                },
                out,
            );
            body.index += 1;
        }
        if body.role == Role::Response {
            let (code, reason) = body.owner.status.clone().unwrap_or_default();
            let status = Status {
                code: Some(u32::from(code)),
                message: (!reason.is_empty()).then_some(reason),
                abnormal: Some(format!("body cut short: {why}")),
            };
            self.emit_end(
                side,
                ts_ns,
                body.owner.seq,
                body.owner.method.clone(),
                status,
                body.owner.start_ts,
                out,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_message(
        &mut self,
        side: Side,
        ts_ns: u64,
        seq: u64,
        role: Role,
        index: u64,
        method: Option<Method>,
        body: Body,
        out: &mut Vec<CallEvent>,
    ) {
        self.stats.messages += 1;
        out.push(CallEvent {
            ts_ns,
            side,
            stream: seq,
            kind: CallEventKind::Message {
                role,
                index,
                method,
                namespace: None,
                body,
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_end(
        &mut self,
        side: Side,
        ts_ns: u64,
        seq: u64,
        method: Option<Method>,
        status: Status,
        start_ts: Option<u64>,
        out: &mut Vec<CallEvent>,
    ) {
        out.push(CallEvent {
            ts_ns,
            side,
            stream: seq,
            kind: CallEventKind::End {
                method,
                namespace: None,
                status,
                latency_ns: start_ts.map(|s| ts_ns.saturating_sub(s)),
            },
        });
    }
}

fn body_done(b: &BodyState) -> bool {
    match &b.framing {
        Framing::Length { left } => *left == 0,
        Framing::Chunked(d) => d.is_done(),
        Framing::UntilClose => false,
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

impl ConnDecoder for Connection {
    fn feed(&mut self, side: Side, ts_ns: u64, bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.stats.bytes += bytes.len() as u64;
        self.process(side, ts_ns, bytes, out);
    }

    fn gap(&mut self, side: Side, ts_ns: u64, missing: u64, out: &mut Vec<CallEvent>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing;
        let i = idx(side);
        self.dirs[i].buf.clear();
        self.dirs[i].scanned = 0;
        let phase = std::mem::replace(&mut self.dirs[i].phase, Phase::Head);
        match phase {
            // Raw bytes have no framing to lose.
            Phase::Raw { seq, method, index } => {
                self.dirs[i].phase = Phase::Raw { seq, method, index };
                let text = format!("capture lost {missing} bytes of the raw stream");
                Self::notice(side, ts_ns, seq, text, out);
                return;
            }
            Phase::Body(mut body) => {
                let why = format!("capture lost {missing} bytes");
                self.abort_body(side, ts_ns, &mut body, &why, out);
            }
            _ => {}
        }
        self.lose_sync(side, ts_ns, format!("capture lost {missing} bytes"), out);
    }

    fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let server = self.client.map_or(Side::B, Side::other);
        // A close-delimited response ends normally here.
        let phase = std::mem::replace(&mut self.dirs[idx(server)].phase, Phase::Head);
        if let Phase::Body(body) = phase {
            if matches!(body.framing, Framing::UntilClose) && body.role == Role::Response {
                self.finish_body(server, ts_ns, *body, out);
            } else {
                let mut body = body;
                self.abort_body(server, ts_ns, &mut body, end.reason(), out);
            }
        }
        for p in std::mem::take(&mut self.pending) {
            let status = Status {
                abnormal: Some(format!("{} before the response", end.reason())),
                ..Status::default()
            };
            self.emit_end(
                server,
                ts_ns,
                p.seq,
                Some(p.method),
                status,
                Some(p.start_ts),
                out,
            );
        }
        for d in &mut self.dirs {
            d.buf = Vec::new();
            d.phase = Phase::Head;
        }
    }

    fn protocol(&self) -> crate::protocol::Protocol {
        crate::protocol::Protocol::Http1
    }

    fn buffered(&self) -> usize {
        self.dirs.iter().map(Direction::held).sum()
    }

    fn is_desynchronised(&self, side: Side) -> bool {
        matches!(self.dirs[idx(side)].phase, Phase::Hunting)
    }
}
