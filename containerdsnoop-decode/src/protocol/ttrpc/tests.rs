//! ttrpc traces: frames built with prost (what containerd and its shims send), recorded
//! containerd ↔ shim traffic, chunking, lost bytes, garbage and limits.

use prost::Message as _;

use super::envelope::{KeyValue, Request, Response, RpcStatus};
use super::frame::*;
use super::{Connection, Limits, NAMESPACE_KEY, TIMEOUT_KEY};
use crate::protocol::call::{Body, CallEvent, CallEventKind, Role, Side, Status};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::detect::testing::{Rng, parse_recording, resplit, run, writes};

pub(super) const TASK: &str = "containerd.task.v2.Task";
const EVENTS: &str = "containerd.services.events.ttrpc.v1.Events";

const SHIM_TASK: &[u8] = include_bytes!("../../../tests/fixtures/ttrpc/shim-task.rec");
const SHIM_EVENTS: &[u8] = include_bytes!("../../../tests/fixtures/ttrpc/shim-events.rec");

pub(super) fn frame(stream: u32, kind: u8, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Header {
        len: data.len() as u32,
        stream,
        kind,
        flags,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(data);
    out
}

pub(super) fn request(stream: u32, service: &str, method: &str, payload: &[u8]) -> Vec<u8> {
    request_with(stream, service, method, payload, 0, &[], 0)
}

pub(super) fn request_with(
    stream: u32,
    service: &str,
    method: &str,
    payload: &[u8],
    timeout_nano: i64,
    metadata: &[(&str, &str)],
    flags: u8,
) -> Vec<u8> {
    let r = Request {
        service: service.into(),
        method: method.into(),
        payload: payload.to_vec(),
        timeout_nano,
        metadata: metadata
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
    };
    frame(stream, TYPE_REQUEST, flags, &r.encode_to_vec())
}

pub(super) fn response(stream: u32, code: i32, message: &str, payload: &[u8]) -> Vec<u8> {
    let r = Response {
        status: (code != 0 || !message.is_empty()).then(|| RpcStatus {
            code,
            message: message.into(),
        }),
        payload: payload.to_vec(),
    };
    frame(stream, TYPE_RESPONSE, 0, &r.encode_to_vec())
}

fn feed_all(conn: &mut Connection, w: &[(Side, u64, Vec<u8>)]) -> Vec<CallEvent> {
    run(conn, w)
}

fn methods(events: &[CallEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Start {
                method: Some(m), ..
            } => Some(m.name.to_string()),
            _ => None,
        })
        .collect()
}

fn ends(events: &[CallEvent]) -> Vec<(u64, Status, Option<u64>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::End {
                status, latency_ns, ..
            } => Some((e.stream, status.clone(), *latency_ns)),
            _ => None,
        })
        .collect()
}

fn notices(events: &[CallEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Notice { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn unary_call_with_metadata_and_timeout() {
    let mut c = Connection::default();
    let w = vec![
        (
            Side::B,
            100,
            request_with(
                1,
                TASK,
                "Create",
                b"\x0a\x03abc",
                5_000_000_000,
                &[(NAMESPACE_KEY, "moby"), ("otel", "x")],
                0,
            ),
        ),
        (Side::A, 350, response(1, 0, "", b"\x08\x2a")),
    ];
    let ev = feed_all(&mut c, &w);
    assert_eq!(c.client(), Some(Side::B));
    assert_eq!(ev.len(), 4, "{ev:#?}");
    match &ev[0].kind {
        CallEventKind::Start { method, metadata } => {
            assert_eq!(
                method.as_ref().unwrap().name.as_ref(),
                "/containerd.task.v2.Task/Create"
            );
            assert_eq!(
                metadata,
                &vec![
                    (NAMESPACE_KEY.to_string(), Some("moby".to_string())),
                    ("otel".to_string(), Some("x".to_string())),
                    (TIMEOUT_KEY.to_string(), Some("5000000000".to_string())),
                ]
            );
        }
        k => panic!("{k:?}"),
    }
    match &ev[1].kind {
        CallEventKind::Message {
            role: Role::Request,
            index: 0,
            namespace,
            body: Body::Protobuf(p),
            ..
        } => {
            assert_eq!(p, b"\x0a\x03abc");
            assert_eq!(namespace.as_deref(), Some("moby"));
        }
        k => panic!("{k:?}"),
    }
    assert!(matches!(
        &ev[2].kind,
        CallEventKind::Message { role: Role::Response, index: 0, body: Body::Protobuf(p), .. } if p == b"\x08\x2a"
    ));
    assert_eq!(ev[2].side, Side::A);
    assert_eq!(
        ends(&ev),
        vec![(
            1,
            Status {
                code: Some(0),
                ..Status::default()
            },
            Some(250)
        )]
    );
    assert_eq!(c.open_calls(), 0);
}

#[test]
fn recorded_shim_task_calls() {
    let rec = parse_recording(SHIM_TASK);
    let mut c = Connection::default();
    let ev = feed_all(&mut c, &writes(&rec, Side::A));
    assert_eq!(
        methods(&ev),
        [
            "Create", "Connect", "Start", "State", "State", "State", "Delete", "Shutdown"
        ]
        .map(|m| format!("/{TASK}/{m}"))
    );
    let e = ends(&ev);
    assert_eq!(e.len(), 8);
    assert!(
        e.iter()
            .all(|(_, s, l)| s.code == Some(0) && s.abnormal.is_none() && *l == Some(1000))
    );
    assert!(notices(&ev).is_empty(), "{:?}", notices(&ev));
    assert_eq!(c.stats().bad_envelopes, 0);
    // The payloads decode with the embedded schema as the shim API types.
    let schema = crate::schema::Schema::embedded().unwrap();
    let create = schema.service_method(TASK, "Create").unwrap();
    let body = ev
        .iter()
        .find_map(|e| match &e.kind {
            CallEventKind::Message {
                role: Role::Request,
                body: Body::Protobuf(p),
                ..
            } => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    let decoded = crate::schema::decode(Some(&create.input), &body);
    assert!(!decoded.is_schema_less());
    let text = crate::schema::to_text(&decoded, &Default::default());
    assert!(text.contains("runc") || text.contains("bundle"), "{text}");
}

#[test]
fn recorded_shim_events_are_forwarded_by_the_shim() {
    let rec = parse_recording(SHIM_EVENTS);
    let mut c = Connection::default();
    let ev = feed_all(&mut c, &writes(&rec, Side::B));
    assert_eq!(c.client(), Some(Side::B));
    assert_eq!(methods(&ev), vec![format!("/{EVENTS}/Forward"); 4]);
    // containerd answers Forward with google.protobuf.Empty: an empty message, still a row.
    let empties = ev
        .iter()
        .filter(|e| matches!(&e.kind, CallEventKind::Message { role: Role::Response, body: Body::Protobuf(p), .. } if p.is_empty()))
        .count();
    assert_eq!(empties, 4);
    assert_eq!(ends(&ev).len(), 4);
}

#[test]
fn split_invariance() {
    let mut generated = Vec::new();
    for s in 0..20u32 {
        let id = 2 * s + 1;
        generated.push((
            Side::A,
            u64::from(s) * 10,
            request(id, TASK, "Wait", &vec![7u8; (s * 37) as usize]),
        ));
        generated.push((
            Side::B,
            u64::from(s) * 10 + 5,
            response(id, (s % 3) as i32, "", &vec![1u8; (s * 11) as usize]),
        ));
    }
    for (writes_, name) in [
        (writes(&parse_recording(SHIM_TASK), Side::A), "task"),
        (writes(&parse_recording(SHIM_EVENTS), Side::B), "events"),
        (generated, "generated"),
    ] {
        let want = feed_all(&mut Connection::default(), &writes_);
        assert!(!want.is_empty());
        let mut rng = Rng::new(11);
        for round in 0..50 {
            let got = feed_all(&mut Connection::default(), &resplit(&writes_, &mut rng));
            assert_eq!(got, want, "{name} round {round}");
        }
    }
}

#[test]
fn gap_then_resync_on_the_next_frame() {
    let mut c = Connection::default();
    let mut out = Vec::new();
    let create = request(1, TASK, "Create", &[9u8; 300]);
    c.feed(Side::A, 1, &create[..100], &mut out);
    c.gap(Side::A, 2, 200, &mut out);
    assert!(c.is_desynchronised(Side::A));
    // The rest of the lost frame's bytes arrive, then whole frames.
    c.feed(Side::A, 3, &create[300..], &mut out);
    c.feed(
        Side::A,
        4,
        &request(3, TASK, "Start", b"\x0a\x01x"),
        &mut out,
    );
    assert!(!c.is_desynchronised(Side::A));
    c.feed(Side::B, 5, &response(3, 0, "", b"\x08\x01"), &mut out);
    assert_eq!(methods(&out), vec![format!("/{TASK}/Start")]);
    let n = notices(&out);
    assert_eq!(n.len(), 2, "{n:?}");
    assert!(n[0].contains("capture lost 200 bytes"), "{n:?}");
    let tail = create.len() - 300;
    assert!(
        n[1].contains(&format!("resynchronised after skipping {tail} bytes")),
        "{n:?}"
    );
    assert_eq!(ends(&out).len(), 1);
    // The lost Create never got a response here; closing ends nothing else as it never started.
    let mut tail = Vec::new();
    c.close(6, crate::protocol::call::ConnEnd::Closed, &mut tail);
    assert!(tail.is_empty());
}

#[test]
fn late_join_at_every_offset_of_a_recording() {
    let rec = parse_recording(SHIM_TASK);
    let client: Vec<u8> = crate::protocol::detect::testing::side_bytes(&rec, true);
    let full = feed_all(&mut Connection::default(), &[(Side::A, 0, client.clone())]);
    let all = methods(&full);
    for skip in 0..client.len() {
        let mut c = Connection::default();
        let mut out = Vec::new();
        c.feed(Side::A, 0, &client[skip..], &mut out);
        let got = methods(&out);
        // Everything after the join point is decoded: a suffix of the full list, missing at most
        // the frame the join cut.
        assert!(all.ends_with(&got), "skip {skip}: {got:?}");
        assert!(
            got.len() + 1 >= all.len() - all_before(&rec, skip),
            "skip {skip}: {got:?}"
        );
        assert!(c.buffered() <= Limits::default().resync_window);
    }
}

/// How many requests start before byte `skip` of the client's stream.
fn all_before(rec: &[crate::protocol::detect::testing::Write], skip: usize) -> usize {
    let mut at = 0;
    let mut n = 0;
    for w in rec.iter().filter(|w| w.client) {
        if at < skip {
            n += 1;
        }
        at += w.bytes.len();
    }
    n
}

#[test]
fn garbage_and_huge_lengths_stay_bounded() {
    let mut rng = Rng::new(3);
    let mut c = Connection::default();
    let mut out = Vec::new();
    // A length claiming 4 GB.
    let mut huge = Header {
        len: 0xffff_fff0,
        stream: 1,
        kind: TYPE_REQUEST,
        flags: 0,
    }
    .encode()
    .to_vec();
    huge.extend_from_slice(&[0xab; 1000]);
    c.feed(Side::A, 1, &huge, &mut out);
    assert!(c.is_desynchronised(Side::A));
    for _ in 0..200 {
        let chunk: Vec<u8> = (0..rng.below(5000)).map(|_| rng.next() as u8).collect();
        c.feed(Side::A, 2, &chunk, &mut out);
        c.feed(Side::B, 2, &chunk, &mut out);
        assert!(
            c.buffered() <= 2 * (Limits::default().resync_window + 5000),
            "{}",
            c.buffered()
        );
    }
    // Garbage never fakes a call.
    assert!(methods(&out).is_empty());
    // Real frames after the garbage are found again.
    c.feed(
        Side::A,
        3,
        &request(101, TASK, "Delete", b"\x0a\x01z"),
        &mut out,
    );
    c.feed(Side::B, 4, &response(101, 0, "", b""), &mut out);
    assert_eq!(methods(&out), vec![format!("/{TASK}/Delete")]);
    // A response alone is weak evidence (ten mostly-zero bytes): the hunt confirms it when
    // the next header chains.
    assert!(ends(&out).is_empty());
    c.feed(Side::B, 5, &response(103, 0, "", b""), &mut out);
    assert!(
        ends(&out)
            .iter()
            .any(|(s, st, _)| *s == 101 && st.code == Some(0))
    );
}

#[test]
fn frames_over_the_limit_are_skipped_and_reported() {
    let mut c = Connection::new(Limits {
        max_frame: 1024,
        ..Limits::default()
    });
    let mut out = Vec::new();
    let big = request(1, TASK, "Create", &vec![1u8; 100_000]);
    for piece in big.chunks(777) {
        c.feed(Side::A, 1, piece, &mut out);
        assert!(c.buffered() < 1024);
    }
    c.feed(Side::A, 2, &request(3, TASK, "Start", b""), &mut out);
    assert!(matches!(
        &out[0].kind,
        CallEventKind::Message { body: Body::Unavailable { len, .. }, .. } if *len == big.len() as u64 - 10
    ));
    assert_eq!(methods(&out), vec![format!("/{TASK}/Start")]);
    assert_eq!(c.stats().oversize_frames, 1);
}

#[test]
fn a_hundred_thousand_streams_stay_bounded() {
    let mut c = Connection::default();
    let mut out = Vec::new();
    for s in 0..100_000u32 {
        c.feed(
            Side::A,
            u64::from(s),
            &request(2 * s + 1, TASK, "Wait", b"\x0a\x01c"),
            &mut out,
        );
        out.clear();
    }
    assert_eq!(c.open_calls(), Limits::default().max_streams);
    assert_eq!(c.stats().evicted_streams, 100_000 - 1024);
    assert_eq!(c.buffered(), 0);
    // A response for an evicted call still shows its status, without a method.
    c.feed(Side::B, 1, &response(1, 0, "", b""), &mut out);
    assert!(matches!(
        &out[1].kind,
        CallEventKind::End {
            method: None,
            latency_ns: None,
            ..
        }
    ));
    // The newest calls are still matched.
    out.clear();
    c.feed(Side::B, 200_000, &response(199_999, 0, "", b""), &mut out);
    assert!(matches!(
        &out[1].kind,
        CallEventKind::End {
            method: Some(_),
            latency_ns: Some(100_001),
            ..
        }
    ));
}

#[test]
fn close_ends_open_calls() {
    let mut c = Connection::default();
    let mut out = Vec::new();
    c.feed(Side::A, 1, &request(1, TASK, "Wait", b""), &mut out);
    c.feed(Side::A, 2, &request(3, TASK, "Wait", b""), &mut out);
    out.clear();
    c.close(10, crate::protocol::call::ConnEnd::Closed, &mut out);
    let e = ends(&out);
    assert_eq!(e.len(), 2);
    assert!(
        e.iter()
            .all(|(_, s, l)| s.abnormal.as_deref() == Some("connection closed") && l.is_some())
    );
    assert!(out.iter().all(|e| e.side == Side::B));
}

#[test]
fn malformed_envelopes_do_not_desynchronise() {
    let mut c = Connection::default();
    let mut out = Vec::new();
    // A request frame whose data is not an envelope, then a good call.
    c.feed(
        Side::A,
        1,
        &frame(1, TYPE_REQUEST, 0, b"\xff\xff\xff"),
        &mut out,
    );
    c.feed(Side::A, 2, &request(3, TASK, "State", b""), &mut out);
    assert!(!c.is_desynchronised(Side::A));
    assert_eq!(methods(&out), vec![format!("/{TASK}/State")]);
    assert_eq!(c.stats().bad_envelopes, 1);
    assert_eq!(notices(&out).len(), 1);
}

#[test]
fn mutated_recordings_never_panic() {
    let limits = Limits::default();
    let mut rng = Rng::new(1234);
    for rec in [SHIM_TASK, SHIM_EVENTS] {
        let base = writes(&parse_recording(rec), Side::A);
        for _ in 0..300 {
            let mut c = Connection::default();
            let mut out = Vec::new();
            for (side, ts, bytes) in &base {
                let mut b = bytes.clone();
                for _ in 0..rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                if rng.below(10) == 0 {
                    c.gap(*side, *ts, rng.below(100) as u64, &mut out);
                    b.drain(..rng.below(b.len()));
                }
                c.feed(*side, *ts, &b, &mut out);
                assert!(c.buffered() <= 2 * limits.resync_window + 2 * 4096);
            }
            c.close(u64::MAX, crate::protocol::call::ConnEnd::Closed, &mut out);
            assert_eq!(c.open_calls(), 0);
        }
    }
}
