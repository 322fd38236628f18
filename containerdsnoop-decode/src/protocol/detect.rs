//! Which protocol a connection speaks, decided from the first bytes of each direction and never
//! from the socket path (a runtime can listen anywhere, and a path says nothing about
//! connections made before the tracer started).
//!
//! The bytes may start mid-stream (the tracer attached to a long-lived connection), so each
//! protocol is recognised both at its start (HTTP/2 preface, a request line, a first frame) and
//! anywhere in the buffer (a chain of frame headers, a request or status line after a newline).
//! At most [`MAX_DETECT_BYTES`] per side are looked at; past that the connection is `Raw`.
//!
//! [`decoder_for`] builds the matching decoder, and [`Detector`] is both steps as the connection
//! table asks for them (`stream::recognise::Recognise`). Each decoder copes with a start mid-stream
//! on its own: ttrpc and HTTP/1.1 hunt for their next boundary, HTTP/2 reports the join and stops
//! that direction.

use crate::protocol::call::Side;
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::http2::frame::{self, Expect, HEADER_LEN, settings::DEFAULT_MAX_FRAME_SIZE};
use crate::protocol::raw::RawDecoder;
use crate::protocol::ttrpc::envelope::{Request as TtrpcRequest, Response as TtrpcResponse};
use crate::protocol::ttrpc::frame::{
    HEADER_LEN as TTRPC_HEADER_LEN, Header as TtrpcHeader, TYPE_REQUEST, TYPE_RESPONSE,
};
use crate::stream::recognise::Recognise;

/// Bytes per side after which an unrecognised connection is declared `Raw`.
pub const MAX_DETECT_BYTES: usize = 64 * 1024;

/// Bytes each side must have sent before an early `Raw` verdict (see [`detect`]): enough for a
/// start line or a couple of frame headers.
pub const MIN_EARLY_RAW: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Http2,
    Ttrpc,
    Http1,
    /// Nothing recognisable within [`MAX_DETECT_BYTES`].
    Raw,
    /// Not decided yet: call again with more bytes (the same prefix, extended).
    NeedMore,
}

/// Decides the protocol from the bytes each side sent so far (`first_a` from `Side::A`).
///
/// When both sides match different protocols the more specific evidence wins: the HTTP/2
/// preface, then ttrpc frames, then HTTP/2 frames, then an HTTP/1.x line.
pub fn detect(first_a: &[u8], first_b: &[u8]) -> Detection {
    let a = &first_a[..first_a.len().min(MAX_DETECT_BYTES)];
    let b = &first_b[..first_b.len().min(MAX_DETECT_BYTES)];
    let (va, vb) = (Verdict::of(a), Verdict::of(b));
    let both = |f: fn(&Verdict) -> bool| f(&va) || f(&vb);
    if both(|v| v.preface) {
        Detection::Http2
    } else if both(|v| v.ttrpc) {
        Detection::Ttrpc
    } else if both(|v| v.http2) {
        Detection::Http2
    } else if both(|v| v.http1) {
        Detection::Http1
    } else if a.len() >= MAX_DETECT_BYTES || b.len() >= MAX_DETECT_BYTES {
        Detection::Raw
    } else if [(a, &va), (b, &vb)]
        .iter()
        .all(|(buf, v)| buf.len() >= MIN_EARLY_RAW && !v.undecided)
    {
        // Both sides sent a write that starts no known message and contains none: captured
        // writes nearly always start at message boundaries, so waiting for 64 KiB would only
        // hide a quiet raw connection's traffic.
        Detection::Raw
    } else {
        Detection::NeedMore
    }
}

/// The connection table's way to a decoder: [`detect`], then [`decoder_for`]; while
/// undecided it waits, unless it must decide (`last`), and then the bytes are raw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Detector;

impl Recognise for Detector {
    fn decoder(
        &self,
        [a, b]: [&[u8]; 2],
        server: Option<Side>,
        last: bool,
    ) -> Option<Box<dyn ConnDecoder>> {
        match detect(a, b) {
            Detection::NeedMore if !last => None,
            d => Some(decoder_for(d, server)),
        }
    }
}

/// A fresh decoder for a detected protocol; `Raw` and `NeedMore` (given up on) get the raw
/// decoder. `server` is the side that owns the listening socket, when the connection table
/// knows it: the ttrpc and HTTP/1.1 decoders take it as the client's opposite, which matters
/// after a late join where no request shows who is who.
pub fn decoder_for(d: Detection, server: Option<Side>) -> Box<dyn ConnDecoder> {
    let client = server.map(Side::other);
    match d {
        Detection::Http2 => {
            let mut c = crate::protocol::grpc::Connection::default();
            // The kernel knows which socket is the listening side; no need to guess from headers.
            if let Some(client) = client {
                c.set_client(client);
            }
            Box::new(c)
        }
        Detection::Ttrpc => {
            Box::new(crate::protocol::ttrpc::Connection::default().with_client(client))
        }
        Detection::Http1 => {
            Box::new(crate::protocol::http1::Connection::default().with_client(client))
        }
        Detection::Raw | Detection::NeedMore => Box::new(RawDecoder::new(server)),
    }
}

/// What one direction's bytes show.
#[derive(Debug, Default)]
struct Verdict {
    preface: bool,
    ttrpc: bool,
    http2: bool,
    http1: bool,
    /// The bytes start like a message that is not complete yet (a partial preface, frame or
    /// start line): more bytes could still match at offset 0.
    undecided: bool,
}

impl Verdict {
    fn of(buf: &[u8]) -> Verdict {
        Verdict {
            preface: buf.starts_with(crate::protocol::http2::PREFACE),
            ttrpc: ttrpc_at_start(buf) || (0..buf.len()).any(|o| ttrpc_anywhere(&buf[o..])),
            http2: h2_at_start(buf) || (0..buf.len()).any(|o| h2_chain(&buf[o..], 3).complete >= 3),
            http1: http1_lines(buf),
            undecided: crate::protocol::http2::PREFACE.starts_with(&buf[..buf.len().min(24)])
                || partial_start(ttrpc_chain(buf, usize::MAX))
                || partial_start(h2_chain(buf, usize::MAX))
                || http1_partial_start(buf),
        }
    }
}

/// A run of frames from the start of a buffer.
#[derive(Debug, Default)]
struct Chain {
    /// Complete frames whose headers (and envelopes) check out.
    complete: usize,
    /// The run reaches the end of the buffer: the bytes after the last complete frame are
    /// empty or the start of a plausible frame.
    reaches_end: bool,
    /// Request frames with a valid envelope among `complete`.
    requests: usize,
}

/// Frames from the start of `buf`, stopping at the first implausible header (`reaches_end`
/// is set only if none was found) or after `stop_after` complete frames (enough evidence:
/// it keeps a scan over every offset linear).
fn ttrpc_chain(buf: &[u8], stop_after: usize) -> Chain {
    let mut c = Chain::default();
    let mut rest = buf;
    loop {
        if rest.len() < TTRPC_HEADER_LEN {
            c.reaches_end = true;
            return c;
        }
        let Some(h) = TtrpcHeader::parse(rest) else {
            return c;
        };
        if h.plausible().is_err() {
            return c;
        }
        let Some(data) = rest.get(TTRPC_HEADER_LEN..h.frame_len()) else {
            c.reaches_end = true;
            return c;
        };
        match h.kind {
            TYPE_REQUEST if TtrpcRequest::decode_checked(data).is_some() => c.requests += 1,
            TYPE_REQUEST => return c,
            TYPE_RESPONSE if TtrpcResponse::decode_checked(data).is_none() => return c,
            _ => {}
        }
        c.complete += 1;
        if c.complete >= stop_after || (c.requests > 0 && stop_after < usize::MAX) {
            return c;
        }
        rest = &rest[h.frame_len()..];
    }
}

/// The buffer starts at a frame boundary (a fresh connection, or a capture that starts with a
/// write): every byte belongs to plausible frames.
fn ttrpc_at_start(buf: &[u8]) -> bool {
    let c = ttrpc_chain(buf, usize::MAX);
    c.reaches_end && c.complete >= 1
}

/// Mid-stream: a request with a valid envelope, or three chained frames.
fn ttrpc_anywhere(buf: &[u8]) -> bool {
    // Cheap pre-check: every ttrpc header starts with a zero byte (length < 16 MiB).
    if buf.first() != Some(&0) {
        return false;
    }
    let c = ttrpc_chain(buf, 3);
    c.requests >= 1 || c.complete >= 3
}

/// A chain from offset 0 that has not completed a frame but has not failed either.
fn partial_start(c: Chain) -> bool {
    c.reaches_end && c.complete == 0
}

/// The buffer has no complete first line yet and what it has could begin a start line.
fn http1_partial_start(buf: &[u8]) -> bool {
    if buf.contains(&b'\n') {
        return false;
    }
    let n = buf.len().min(8);
    if b"HTTP/1.1"[..n] == buf[..n] || b"HTTP/1.0"[..n] == buf[..n] {
        return true;
    }
    let method = buf.iter().take_while(|c| c.is_ascii_uppercase()).count();
    method == buf.len() || (method > 0 && buf[method] == b' ')
}

/// The length of the frame whose header starts `h`, if the header is plausible. Detection
/// uses the transport's own rule with `Expect::Grpc`: it must tell HTTP/2 from other protocols'
/// bytes, so frames gRPC never sends are not counted as evidence. Until SETTINGS are seen the
/// frame size is the default, which gRPC keeps.
fn h2_plausible(h: &[u8]) -> Option<usize> {
    let raw: &[u8; HEADER_LEN] = h.get(..HEADER_LEN)?.try_into().ok()?;
    let head = frame::plausible(raw, DEFAULT_MAX_FRAME_SIZE, Expect::Grpc)?;
    Some(HEADER_LEN + head.len as usize)
}

fn h2_chain(buf: &[u8], stop_after: usize) -> Chain {
    let mut c = Chain::default();
    let mut rest = buf;
    loop {
        if rest.len() < HEADER_LEN {
            c.reaches_end = true;
            return c;
        }
        let Some(n) = h2_plausible(rest) else {
            return c;
        };
        if rest.len() < n {
            c.reaches_end = true;
            return c;
        }
        c.complete += 1;
        if c.complete >= stop_after {
            return c;
        }
        rest = &rest[n..];
    }
}

fn h2_at_start(buf: &[u8]) -> bool {
    let c = h2_chain(buf, usize::MAX);
    c.reaches_end && c.complete >= 1
}

/// An HTTP/1.x request or status line at the start of the buffer or of any line in it.
fn http1_lines(buf: &[u8]) -> bool {
    let starts = std::iter::once(0).chain(
        buf.iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'\n')
            .map(|(i, _)| i + 1),
    );
    for s in starts {
        let rest = &buf[s..];
        let Some(nl) = rest.iter().position(|&c| c == b'\n') else {
            break;
        };
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if crate::protocol::http1::head::is_request_line(line)
            || crate::protocol::http1::head::is_status_line(line)
        {
            return true;
        }
    }
    false
}

/// Shared by the decoders' tests: recorded fixtures and chunking helpers.
#[cfg(test)]
pub(crate) mod testing {
    use crate::protocol::call::{CallEvent, Side};
    use crate::protocol::decoder::ConnDecoder;

    /// One write of a recorded connection: `client` is true for the connecting side.
    #[derive(Clone, Debug)]
    pub struct Write {
        pub client: bool,
        pub bytes: Vec<u8>,
    }

    /// Parses the fixture format: `> LEN\n` (client's write) or `< LEN\n` (server's), then LEN
    /// bytes and a newline, repeated. Raw bytes keep HTTP readable and ttrpc exact.
    pub fn parse_recording(data: &[u8]) -> Vec<Write> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let nl = rest.iter().position(|&c| c == b'\n').expect("header line");
            let head = std::str::from_utf8(&rest[..nl]).expect("ascii header");
            let (mark, len) = head.split_once(' ').expect("mark and length");
            let len: usize = len.parse().expect("length");
            let client = match mark {
                ">" => true,
                "<" => false,
                other => panic!("bad mark {other:?}"),
            };
            let body = &rest[nl + 1..nl + 1 + len];
            assert_eq!(rest[nl + 1 + len], b'\n', "record terminator");
            out.push(Write {
                client,
                bytes: body.to_vec(),
            });
            rest = &rest[nl + 2 + len..];
        }
        out
    }

    /// The recording as timestamped writes, with the client on `client_side`; write `i` is
    /// stamped `1000 * (i + 1)` so latencies are checkable.
    pub fn writes(rec: &[Write], client_side: Side) -> Vec<(Side, u64, Vec<u8>)> {
        rec.iter()
            .enumerate()
            .map(|(i, w)| {
                let side = if w.client {
                    client_side
                } else {
                    client_side.other()
                };
                (side, 1000 * (i as u64 + 1), w.bytes.clone())
            })
            .collect()
    }

    /// All bytes one side sent, concatenated.
    pub fn side_bytes(rec: &[Write], client: bool) -> Vec<u8> {
        rec.iter()
            .filter(|w| w.client == client)
            .flat_map(|w| w.bytes.iter().copied())
            .collect()
    }

    pub fn run(dec: &mut dyn ConnDecoder, writes: &[(Side, u64, Vec<u8>)]) -> Vec<CallEvent> {
        let mut out = Vec::new();
        for (side, ts, bytes) in writes {
            dec.feed(*side, *ts, bytes, &mut out);
        }
        out
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.max(1))
        }
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Each write cut into random pieces that keep its timestamp.
    pub fn resplit(writes: &[(Side, u64, Vec<u8>)], rng: &mut Rng) -> Vec<(Side, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for (side, ts, bytes) in writes {
            let mode = rng.below(3);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = match mode {
                    0 => 1,
                    1 => 1 + rng.below(16),
                    _ => 1 + rng.below(rest.len()),
                }
                .min(rest.len());
                out.push((*side, *ts, rest[..n].to_vec()));
                rest = &rest[n..];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    const HTTP1_FIXTURES: &[&[u8]] = &[
        include_bytes!("../../tests/fixtures/http1/version.rec"),
        include_bytes!("../../tests/fixtures/http1/ps.rec"),
        include_bytes!("../../tests/fixtures/http1/info.rec"),
        include_bytes!("../../tests/fixtures/http1/events.rec"),
        include_bytes!("../../tests/fixtures/http1/logs-follow.rec"),
        include_bytes!("../../tests/fixtures/http1/attach.rec"),
    ];
    const TTRPC_FIXTURES: &[&[u8]] = &[
        include_bytes!("../../tests/fixtures/ttrpc/shim-task.rec"),
        include_bytes!("../../tests/fixtures/ttrpc/shim-events.rec"),
    ];

    /// The first `n` bytes each side sent, starting after `skip` bytes of each side's stream.
    fn window(rec: &[Write], skip: usize, n: usize) -> (Vec<u8>, Vec<u8>) {
        let cut = |v: Vec<u8>| v.into_iter().skip(skip).take(n).collect::<Vec<u8>>();
        (cut(side_bytes(rec, true)), cut(side_bytes(rec, false)))
    }

    #[test]
    fn http1_fixtures_from_the_start() {
        for f in HTTP1_FIXTURES {
            let rec = parse_recording(f);
            let (c, s) = window(&rec, 0, MAX_DETECT_BYTES);
            assert_eq!(detect(&c, &s), Detection::Http1);
            assert_eq!(detect(&s, &c), Detection::Http1);
            // The client's first write alone decides it.
            assert_eq!(detect(&rec[0].bytes, b""), Detection::Http1);
        }
    }

    #[test]
    fn http1_fixtures_mid_stream() {
        // A connection with a single exchange (attach) joined inside both heads shows no
        // start line at all: only the multi-request ones are decidable.
        for f in &HTTP1_FIXTURES[..5] {
            let rec = parse_recording(f);
            // Joining inside the first request: the server's status line (or the next request)
            // gives it away.
            for skip in [1, 7, 40] {
                let (c, s) = window(&rec, skip, MAX_DETECT_BYTES);
                assert_eq!(detect(&c, &s), Detection::Http1, "skip {skip}");
            }
        }
    }

    #[test]
    fn ttrpc_fixtures_from_the_start_and_mid_stream() {
        for f in TTRPC_FIXTURES {
            let rec = parse_recording(f);
            let (c, s) = window(&rec, 0, MAX_DETECT_BYTES);
            assert_eq!(detect(&c, &s), Detection::Ttrpc);
            assert_eq!(detect(&rec[0].bytes, b""), Detection::Ttrpc);
            // The server's first response alone (a 10-byte empty response for events).
            let first_server = rec.iter().find(|w| !w.client).map(|w| w.bytes.clone());
            assert_eq!(
                detect(b"", &first_server.unwrap_or_default()),
                Detection::Ttrpc
            );
            for skip in [1, 5, 13, 60] {
                let (c, s) = window(&rec, skip, MAX_DETECT_BYTES);
                assert_eq!(detect(&c, &s), Detection::Ttrpc, "skip {skip}");
            }
        }
    }

    #[test]
    fn http2_preface_and_frame_chains() {
        let mut client = crate::protocol::http2::PREFACE.to_vec();
        // SETTINGS (empty), WINDOW_UPDATE on stream 0.
        client.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        client.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(detect(&client, b""), Detection::Http2);
        assert_eq!(detect(&client[..10], b""), Detection::NeedMore);
        // Late join: the server's SETTINGS ACK + PING ack as one write...
        let mut server = vec![0, 0, 0, 4, 1, 0, 0, 0, 0];
        server.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(detect(b"", &server), Detection::Http2);
        // ...and mid-stream: garbage before three chained frames.
        let mut mid = b"\xff\xfe tail of a message".to_vec();
        mid.extend_from_slice(&server);
        mid.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 3, 0, 0, 0x10, 0]);
        mid.extend_from_slice(b"\x00\x00");
        assert_eq!(detect(&mid, b""), Detection::Http2);
    }

    #[test]
    fn garbage_is_raw_once_the_limit_is_reached() {
        let mut rng = Rng::new(7);
        let garbage: Vec<u8> = (0..MAX_DETECT_BYTES).map(|_| rng.next() as u8).collect();
        assert_eq!(detect(&garbage[..1000], b""), Detection::NeedMore);
        assert_eq!(detect(&garbage, b""), Detection::Raw);
        assert_eq!(detect(&garbage, &garbage[..10]), Detection::Raw);
        let zeros = vec![0u8; MAX_DETECT_BYTES];
        assert_eq!(detect(&zeros, &zeros), Detection::Raw);
        let text = b"hello world, this is not a protocol\n".repeat(2000);
        assert_eq!(detect(&text, b""), Detection::Raw);
        assert_eq!(detect(b"", b""), Detection::NeedMore);
    }

    #[test]
    fn decoders_are_built_for_each_verdict() {
        let p = |d| decoder_for(d, Some(Side::B)).protocol();
        use crate::protocol::Protocol;
        assert_eq!(p(Detection::Ttrpc), Protocol::Ttrpc);
        assert_eq!(p(Detection::Http1), Protocol::Http1);
        assert_eq!(p(Detection::Http2), Protocol::Grpc);
        assert_eq!(p(Detection::Raw), Protocol::Raw);
        assert_eq!(p(Detection::NeedMore), Protocol::Raw);
    }

    #[test]
    fn early_raw_only_when_both_sides_rule_everything_out() {
        let junk = b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":[1,2,3,4,5,6,7,8,9,10]}\n";
        assert!(junk.len() >= MIN_EARLY_RAW);
        assert_eq!(detect(junk, junk), Detection::Raw);
        // One side silent: it may still show a start line or frame.
        assert_eq!(detect(junk, b""), Detection::NeedMore);
        // A partial start on either side keeps the question open.
        let long_line = [b"GET /".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(detect(junk, &long_line), Detection::NeedMore);
        let partial_frame = request_frame_prefix();
        assert_eq!(detect(junk, &partial_frame), Detection::NeedMore);
    }

    /// The first 80 bytes of a 500-byte ttrpc request frame.
    fn request_frame_prefix() -> Vec<u8> {
        let mut f = vec![0, 0, 1, 0xea, 0, 0, 0, 1, 1, 0, 0x0a, 0x17];
        f.extend_from_slice(b"containerd.task.v2.Task");
        f.resize(80, 7);
        f
    }
}
