//! Wire builders for tests: frames, gRPC messages, and HPACK blocks from the `hpack` crate's
//! encoder (an independent implementation, so the decoder is not checked against itself).

use crate::protocol::call::{CallEvent, Side};
use crate::protocol::grpc::{Connection, Limits, Stats};
use crate::protocol::http2::PREFACE;
use crate::protocol::http2::frame::{Head, Kind, flags};

pub const CLIENT: Side = Side::A;
pub const SERVER: Side = Side::B;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let head = Head {
        len: payload.len() as u32,
        kind: Kind::from(kind),
        flags,
        stream,
    };
    let mut v = head.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(0x4, 0, 0, &p)
}

pub fn settings_ack() -> Vec<u8> {
    frame(0x4, flags::ACK, 0, &[])
}

pub fn data(stream: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    frame(
        0x0,
        if end_stream { flags::END_STREAM } else { 0 },
        stream,
        payload,
    )
}

pub fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(0x3, 0, stream, &code.to_be_bytes())
}

pub fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(debug);
    frame(0x7, 0, 0, &p)
}

/// A gRPC length-prefixed message.
pub fn grpc(body: &[u8]) -> Vec<u8> {
    grpc_flagged(0, body)
}

pub fn grpc_flagged(flag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One endpoint's HPACK encoder.
pub struct Peer {
    enc: hpack::Encoder<'static>,
}

impl Peer {
    pub fn new() -> Peer {
        Peer {
            enc: hpack::Encoder::new(),
        }
    }

    pub fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.enc
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    pub fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(fields);
        let f = flags::END_HEADERS | if end_stream { flags::END_STREAM } else { 0 };
        frame(0x1, f, stream, &block)
    }
}

pub fn request_fields(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("containerd-namespace", "k8s.io"),
    ]
}

pub const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/grpc")];

/// A recorded connection: who wrote what, in order, with each write's timestamp.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub writes: Vec<(Side, u64, Vec<u8>)>,
}

impl Trace {
    pub fn push(&mut self, side: Side, ts: u64, bytes: Vec<u8>) -> &mut Self {
        self.writes.push((side, ts, bytes));
        self
    }

    /// The usual opening: preface, both SETTINGS and their ACKs.
    pub fn handshake() -> Trace {
        let mut t = Trace::default();
        t.push(CLIENT, 1, PREFACE.to_vec());
        t.push(CLIENT, 1, settings(&[]));
        t.push(
            SERVER,
            2,
            [settings(&[(0x5, 16384)]), settings_ack()].concat(),
        );
        t.push(CLIENT, 3, settings_ack());
        t
    }

    pub fn run(&self) -> (Vec<CallEvent>, Stats) {
        run_with(&self.writes, Limits::default())
    }
}

pub fn run_with(writes: &[(Side, u64, Vec<u8>)], limits: Limits) -> (Vec<CallEvent>, Stats) {
    let mut c = Connection::new(limits);
    let mut out = Vec::new();
    for (side, ts, bytes) in writes {
        c.feed(*side, *ts, bytes, &mut out);
    }
    (out, c.stats())
}
