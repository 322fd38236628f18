//! Hostile or broken input at the connection level: nothing panics, memory stays bounded, and
//! every limit is counted.

use super::builders::*;
use crate::protocol::call::{Body, CallEventKind};
use crate::protocol::grpc::{CallLimits, Connection, Limits};
use crate::protocol::http2::frame::flags;

fn connected() -> (Connection, Vec<crate::protocol::call::CallEvent>) {
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &Trace::handshake().writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    (conn, ev)
}

#[test]
fn frame_header_claiming_16_mib() {
    let (mut conn, mut ev) = connected();
    conn.feed(
        SERVER,
        5,
        &[0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1],
        &mut ev,
    );
    conn.feed(SERVER, 6, &vec![0u8; 100_000], &mut ev);
    assert_eq!(conn.stats().http2.desyncs, 1);
    // The 8 bytes after the bad header's first byte, then every zero: no frame header is
    // plausible in zeros (DATA on stream 0), so nothing resynchronises.
    assert_eq!(conn.stats().http2.bytes_skipped, 100_008);
    assert!(conn.is_desynchronised(SERVER));
    assert!(conn.buffered() <= crate::protocol::http2::resync::RESYNC_WINDOW);
}

#[test]
fn hundred_thousand_streams_stay_bounded() {
    let (mut conn, mut ev) = connected();
    let mut c = Peer::new();
    let fields = request_fields("/containerd.services.tasks.v1.Tasks/List");
    let mut starts = 0;
    for i in 0..100_000u32 {
        conn.feed(CLIENT, 10, &c.headers(1 + 2 * i, &fields, false), &mut ev);
        starts += ev
            .iter()
            .filter(|e| matches!(e.kind, CallEventKind::Start { .. }))
            .count();
        ev.clear();
        assert!(conn.open_calls() <= CallLimits::default().max_streams);
    }
    assert_eq!(starts, 100_000);
    assert_eq!(conn.stats().calls.evicted_streams, 100_000 - 1024);
    assert_eq!(conn.stats().http2.desyncs, 0);
}

#[test]
fn grpc_message_claiming_4_gib() {
    let (mut conn, mut ev) = connected();
    let mut c = Peer::new();
    conn.feed(
        CLIENT,
        10,
        &c.headers(1, &request_fields("/x.Y/Z"), false),
        &mut ev,
    );
    conn.feed(
        CLIENT,
        11,
        &data(1, &[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3], false),
        &mut ev,
    );
    for _ in 0..100 {
        conn.feed(CLIENT, 12, &data(1, &[0u8; 16384], false), &mut ev);
    }
    let bodies: Vec<&Body> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Message { body, .. } => Some(body),
            _ => None,
        })
        .collect();
    assert_eq!(bodies.len(), 1);
    assert!(matches!(
        bodies[0],
        Body::Unavailable {
            len: 4294967295,
            ..
        }
    ));
}

#[test]
fn gzip_bomb_is_unavailable() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..8 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    let limits = Limits {
        calls: CallLimits {
            max_decompressed: 1 << 20,
            ..CallLimits::default()
        },
        ..Limits::default()
    };
    let mut conn = Connection::new(limits);
    let mut ev = Vec::new();
    for (side, ts, b) in &Trace::handshake().writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    let mut c = Peer::new();
    let mut fields = request_fields("/x.Y/Z");
    fields.push(("grpc-encoding", "gzip"));
    conn.feed(CLIENT, 10, &c.headers(1, &fields, false), &mut ev);
    let msg = grpc_flagged(1, &bomb);
    for chunk in msg.chunks(16384) {
        conn.feed(CLIENT, 11, &data(1, chunk, false), &mut ev);
    }
    let last = ev.last().unwrap();
    let CallEventKind::Message {
        body: Body::Unavailable { reason, len },
        ..
    } = &last.kind
    else {
        panic!("{last:?}")
    };
    assert_eq!(reason, "decompressed size exceeds 1048576 bytes");
    assert_eq!(*len, bomb.len() as u64);
    assert_eq!(conn.stats().calls.decompress_failures, 1);
}

#[test]
fn expanding_header_list_is_truncated_and_counted() {
    let (mut conn, mut ev) = connected();
    // A literal with indexing of a 4000-byte value, then 50,000 references to it.
    let mut block = vec![0x40, 0x01, b'k', 0x7f];
    let mut rest = 4000 - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(std::iter::repeat_n(b'v', 4000));
    block.extend(std::iter::repeat_n(0xbe, 50_000));
    // 54 KB block: send it as HEADERS + CONTINUATIONs within the frame size.
    let mut chunks = block.chunks(16_000).peekable();
    let mut w = frame(0x1, 0, 1, chunks.next().unwrap());
    while let Some(c) = chunks.next() {
        let f = if chunks.peek().is_none() {
            flags::END_HEADERS
        } else {
            0
        };
        w.extend(frame(0x9, f, 1, c));
    }
    conn.feed(CLIENT, 10, &w, &mut ev);
    assert_eq!(conn.stats().http2.truncated_header_lists, 1);
    let CallEventKind::Start { metadata, .. } = &ev.last().unwrap().kind else {
        panic!()
    };
    let size: usize = metadata
        .iter()
        .map(|(n, v)| n.len() + v.as_ref().map_or(0, |v| v.len()))
        .sum();
    assert!(size <= 64 * 1024);
}

#[test]
fn header_block_over_the_limit_desyncs() {
    let (mut conn, mut ev) = connected();
    let mut w = frame(0x1, 0, 1, &[0x82; 16000]);
    for _ in 0..20 {
        w.extend(frame(0x9, 0, 1, &[0x82; 16000]));
    }
    conn.feed(CLIENT, 10, &w, &mut ev);
    assert_eq!(conn.stats().http2.desyncs, 1);
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..300 {
        let (mut conn, mut ev) = connected();
        let mut c = Peer::new();
        conn.feed(
            CLIENT,
            5,
            &c.headers(1, &request_fields("/a.B/C"), false),
            &mut ev,
        );
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            // Keep some plausible frame headers in the mix.
            if round % 2 == 0 && len >= 9 {
                bytes[0] = 0;
                bytes[1] = 0;
                bytes[3] %= 12;
                bytes[5] = 0;
            }
            let side = if x & 1 == 0 { CLIENT } else { SERVER };
            conn.feed(side, 6, &bytes, &mut ev);
        }
        assert!(conn.stats().http2.desyncs <= 2);
    }
}

#[test]
fn mutated_valid_traffic_never_panics() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    for i in 0..5u32 {
        let st = 1 + 2 * i;
        t.push(
            CLIENT,
            10,
            [
                c.headers(st, &request_fields("/a.B/C"), false),
                data(st, &grpc(b"req"), true),
            ]
            .concat(),
        );
        t.push(
            SERVER,
            11,
            [
                s.headers(st, RESPONSE, false),
                data(st, &grpc(b"resp"), false),
                s.headers(st, &[("grpc-status", "0")], true),
            ]
            .concat(),
        );
    }
    let mut x: u64 = 77;
    for _ in 0..2000 {
        let mut m = t.clone();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = 4 + (x as usize % (m.writes.len() - 4));
        let bytes = &mut m.writes[w].2;
        let pos = (x >> 16) as usize % bytes.len();
        bytes[pos] ^= (x >> 40) as u8 | 1;
        let _ = m.run();
    }
}

#[test]
fn many_half_sent_messages_stay_within_the_connection_budget() {
    let limits = Limits {
        calls: CallLimits {
            max_buffered: 100_000,
            ..CallLimits::default()
        },
        ..Limits::default()
    };
    let mut conn = Connection::new(limits);
    let mut ev = Vec::new();
    for (side, ts, b) in &Trace::handshake().writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    let mut c = Peer::new();
    // 50 streams each start a 1 MB message and send 16 KB of it: 800 KB would be held.
    for i in 0..50u32 {
        let st = 1 + 2 * i;
        conn.feed(
            CLIENT,
            10,
            &c.headers(st, &request_fields("/a.B/Put"), false),
            &mut ev,
        );
        let mut d = vec![0, 0, 0x10, 0, 0];
        d.extend_from_slice(&[1u8; 16_000]);
        conn.feed(CLIENT, 11, &data(st, &d, false), &mut ev);
    }
    let abandoned = ev
        .iter()
        .filter(|e| matches!(&e.kind, CallEventKind::Message { body: Body::Unavailable { reason, .. }, .. } if reason.contains("buffer limit")))
        .count();
    assert!(abandoned >= 40, "{abandoned}");
    assert!(conn.buffered() <= 100_000, "{}", conn.buffered());
    conn.close(20, crate::protocol::call::ConnEnd::Closed, &mut ev);
    assert_eq!(conn.buffered(), 0);
    assert_eq!(conn.stats().http2.desyncs, 0);
}
