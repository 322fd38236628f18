//! Split invariance: the events must not depend on where the capture cut the byte streams.

use super::builders::*;
use crate::protocol::call::{CallEvent, Side};
use crate::protocol::grpc::{CallLimits, Limits};
use crate::protocol::http2::frame::flags;

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

/// Cuts `bytes` into pieces: sometimes 1-byte pieces, sometimes random sizes.
fn cut(bytes: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mode = rng.below(4);
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = match mode {
            0 => 1,
            1 => 1 + rng.below(16),
            2 => 1 + rng.below(rest.len()),
            _ => 1 + rng.below(40_000),
        }
        .min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}

/// Each write cut into pieces that keep its timestamp: events must be identical, timestamps
/// included.
pub fn resplit_writes(writes: &[(Side, u64, Vec<u8>)], rng: &mut Rng) -> Vec<(Side, u64, Vec<u8>)> {
    writes
        .iter()
        .flat_map(|(s, ts, b)| cut(b, rng).into_iter().map(move |p| (*s, *ts, p)))
        .collect()
}

/// Consecutive writes of one side merged and cut again anywhere (timestamps set to 0).
pub fn resplit_runs(writes: &[(Side, u64, Vec<u8>)], rng: &mut Rng) -> Vec<(Side, u64, Vec<u8>)> {
    let mut runs: Vec<(Side, Vec<u8>)> = Vec::new();
    for (s, _, b) in writes {
        match runs.last_mut() {
            Some((rs, rb)) if rs == s => rb.extend_from_slice(b),
            _ => runs.push((*s, b.clone())),
        }
    }
    runs.iter()
        .flat_map(|(s, b)| cut(b, rng).into_iter().map(move |p| (*s, 0, p)))
        .collect()
}

fn zero_ts(writes: &[(Side, u64, Vec<u8>)]) -> Vec<(Side, u64, Vec<u8>)> {
    writes.iter().map(|(s, _, b)| (*s, 0, b.clone())).collect()
}

/// Checks both properties over `rounds` seeds; returns the reference events.
pub fn assert_split_invariant(
    writes: &[(Side, u64, Vec<u8>)],
    limits: Limits,
    rounds: u64,
) -> Vec<CallEvent> {
    let (want, want_stats) = run_with(writes, limits);
    let (want0, _) = run_with(&zero_ts(writes), limits);
    for seed in 1..=rounds {
        let mut rng = Rng::new(seed);
        let (got, stats) = run_with(&resplit_writes(writes, &mut rng), limits);
        assert_eq!(got, want, "seed {seed}: per-write split changed the events");
        assert_eq!(
            (
                stats.http2.frames,
                stats.calls.messages,
                stats.http2.desyncs,
                stats.http2.hpack_errors
            ),
            (
                want_stats.http2.frames,
                want_stats.calls.messages,
                want_stats.http2.desyncs,
                want_stats.http2.hpack_errors
            )
        );
        let (got0, _) = run_with(&resplit_runs(writes, &mut rng), limits);
        assert_eq!(got0, want0, "seed {seed}: re-cut runs changed the events");
    }
    want
}

/// A trace exercising most features: CONTINUATION, padding, streaming, gzip, trailers-only,
/// RST_STREAM, oversize messages, GOAWAY.
fn rich_trace() -> Trace {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    let path = "/containerd.services.events.v1.Events/Subscribe";
    let block = c.block(&request_fields(path));
    let (a, b) = block.split_at(block.len() / 3);
    t.push(
        CLIENT,
        10,
        [
            frame(0x1, 0, 1, a),
            frame(0x9, flags::END_HEADERS, 1, b),
            data(1, &grpc(b"filter"), true),
        ]
        .concat(),
    );
    let mut resp = s.headers(1, RESPONSE, false);
    let mut stream_bytes = Vec::new();
    for i in 0..30u8 {
        stream_bytes.extend(grpc(&vec![i; usize::from(i) * 37]));
    }
    for chunk in stream_bytes.chunks(333) {
        resp.extend(data(1, chunk, false));
    }
    t.push(SERVER, 20, resp);
    let mut gz = request_fields("/containerd.services.content.v1.Content/Write");
    gz.push(("grpc-encoding", "gzip"));
    t.push(
        CLIENT,
        30,
        [
            c.headers(3, &gz, false),
            data(3, &grpc_flagged(1, &gzip(&[5u8; 5000])), true),
        ]
        .concat(),
    );
    t.push(
        SERVER,
        40,
        s.headers(
            3,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "3"),
                ("grpc-message", "bad%20arg"),
            ],
            true,
        ),
    );
    t.push(
        CLIENT,
        50,
        [
            c.headers(5, &request_fields("/a.B/Big"), false),
            data(5, &grpc(&[1u8; 3000]), false),
            data(5, &grpc(b"after"), true),
        ]
        .concat(),
    );
    t.push(SERVER, 60, rst(5, 8));
    let mut padded = vec![4u8];
    padded.extend(grpc(b"last event"));
    padded.extend([0u8; 4]);
    t.push(
        SERVER,
        70,
        [
            frame(0x0, flags::PADDED, 1, &padded),
            s.headers(1, &[("grpc-status", "0")], true),
        ]
        .concat(),
    );
    t.push(SERVER, 80, goaway(5, 0, b"bye"));
    t
}

#[test]
fn rich_trace_is_split_invariant() {
    let limits = Limits {
        calls: CallLimits {
            max_message: 2000,
            ..CallLimits::default()
        },
        ..Limits::default()
    };
    let ev = assert_split_invariant(&rich_trace().writes, limits, 300);
    assert!(ev.len() > 35, "{}", ev.len());
}

#[test]
fn desync_is_split_invariant() {
    let mut t = rich_trace();
    t.writes.truncate(6);
    t.push(CLIENT, 90, frame(0x9, flags::END_HEADERS, 7, &[0x82]));
    // Bytes in which no frame boundary can be found, so no resync: where the search finds one
    // depends on chunk boundaries by design (a frame filling a write is trusted).
    t.push(CLIENT, 91, vec![0xff; 300]);
    let ev = assert_split_invariant(&t.writes, Limits::default(), 100);
    assert!(
        ev.iter()
            .any(|e| matches!(e.kind, crate::protocol::call::CallEventKind::Notice { .. }))
    );
}
