//! HTTP/1.1 traces: docker CLI ↔ dockerd traffic recorded through a unix socket proxy, and
//! hand-built messages for the framing corners (chunked, HEAD, 204/304, keep-alive,
//! pipelining, upgrade, malformed and hostile input).

use super::{Connection, Limits};
use crate::protocol::call::{Body, CallEvent, CallEventKind, Role, Side, Status};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::detect::testing::{Rng, parse_recording, resplit, run, writes};

use super::recordings::*;

fn replay(rec: &[u8]) -> (Connection, Vec<CallEvent>) {
    let mut c = Connection::default();
    let ev = run(&mut c, &writes(&parse_recording(rec), Side::A));
    (c, ev)
}

fn feed(c: &mut Connection, side: Side, ts: u64, bytes: &[u8]) -> Vec<CallEvent> {
    let mut out = Vec::new();
    c.feed(side, ts, bytes, &mut out);
    out
}

fn starts(ev: &[CallEvent]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Start {
                method: Some(m), ..
            } => Some(m.name.to_string()),
            _ => None,
        })
        .collect()
}

fn ends(ev: &[CallEvent]) -> Vec<(u64, Status)> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::End { status, .. } => Some((e.stream, status.clone())),
            _ => None,
        })
        .collect()
}

fn codes(ev: &[CallEvent]) -> Vec<Option<u32>> {
    ends(ev).into_iter().map(|(_, s)| s.code).collect()
}

fn bodies(ev: &[CallEvent], want: Role) -> Vec<Body> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Message { role, body, .. } if *role == want => Some(body.clone()),
            _ => None,
        })
        .collect()
}

fn text(b: &Body) -> &str {
    match b {
        Body::Text { text, .. } => text,
        other => panic!("not text: {other:?}"),
    }
}

fn notices(ev: &[CallEvent]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Notice { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn docker_version() {
    let (c, ev) = replay(VERSION);
    assert_eq!(c.client(), Some(Side::A));
    assert_eq!(starts(&ev), ["HEAD /_ping", "GET /v1.41/version"]);
    assert_eq!(codes(&ev), [Some(200), Some(200)]);
    // HEAD's Content-Length describes no body; the version JSON is one compact message.
    let resp = bodies(&ev, Role::Response);
    assert_eq!(resp.len(), 1);
    let t = text(&resp[0]);
    assert!(
        t.starts_with(r#"{"ApiVersion":"1.41","#) || t.contains(r#""ApiVersion":"1.41""#),
        "{t}"
    );
    assert!(!t.contains('\n'));
    // Headers are the Start's metadata, in wire order; latency runs from request to response.
    match &ev[0].kind {
        CallEventKind::Start { metadata, .. } => {
            assert_eq!(metadata[0], ("Host".into(), Some("docker".into())));
            assert!(metadata[1].0 == "User-Agent");
        }
        k => panic!("{k:?}"),
    }
    assert!(ev.iter().all(|e| !matches!(
        &e.kind,
        CallEventKind::End {
            latency_ns: None,
            ..
        }
    )));
    assert!(notices(&ev).is_empty());
    assert_eq!(c.open_calls(), 0);
}

#[test]
fn docker_ps_and_info() {
    let (_, ev) = replay(PS);
    assert_eq!(
        starts(&ev),
        ["HEAD /_ping", "GET /v1.41/containers/json?all=1"]
    );
    assert_eq!(text(&bodies(&ev, Role::Response)[0]), "[]");
    let (_, ev) = replay(INFO);
    assert_eq!(starts(&ev)[1], "GET /v1.41/info");
    let info = text(&bodies(&ev, Role::Response)[0]).to_string();
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["Driver"], "vfs");
}

#[test]
fn docker_events_stream_rows_as_chunks_arrive() {
    let rec = parse_recording(EVENTS);
    let mut c = Connection::default();
    let w = writes(&rec, Side::A);
    let mut seen_before_end = 0;
    let mut all = Vec::new();
    for (side, ts, bytes) in &w {
        let out = feed(&mut c, *side, *ts, bytes);
        if ends(&all).len() < 2 {
            seen_before_end += bodies(&out, Role::Response).len();
        }
        all.extend(out);
    }
    assert_eq!(
        starts(&all)[1],
        "GET /v1.41/events?since=0&until=1795391442"
    );
    let msgs = bodies(&all, Role::Response);
    assert!(msgs.len() >= 5, "{msgs:?}");
    assert!(seen_before_end >= 5);
    // One JSON value per event, compacted.
    for m in &msgs {
        let v: serde_json::Value = serde_json::from_str(text(m)).unwrap();
        assert!(v.get("Type").is_some(), "{v}");
    }
    assert_eq!(codes(&all), [Some(200), Some(200)]);
}

#[test]
fn docker_logs_follow_is_raw_per_chunk_and_closes_abnormally() {
    let (_, ev) = replay(LOGS_FOLLOW);
    assert!(
        starts(&ev)[2].starts_with("GET /v1.41/containers/")
            && starts(&ev)[2].contains("logs?follow=1")
    );
    // The inspect call before it is chunked JSON.
    assert!(
        text(&bodies(&ev, Role::Response)[0]).starts_with(r#"{"AppArmorProfile""#)
            || text(&bodies(&ev, Role::Response)[0]).contains(r#""Id":"#)
    );
    // stdcopy frames: an 8-byte header then the line.
    let logs: Vec<Body> = bodies(&ev, Role::Response).into_iter().skip(1).collect();
    assert!(logs.len() >= 8, "{}", logs.len());
    for b in &logs {
        match b {
            Body::Raw(r) => assert!(r.starts_with(&[1, 0, 0, 0]) && r.ends_with(b"\n"), "{r:?}"),
            other => panic!("{other:?}"),
        }
    }
    // Killing the CLI closed the connection; dockerd then ended the stream properly.
    let e = ends(&ev);
    assert_eq!(e.len(), 3);
    assert_eq!((e[2].1.code, e[2].1.abnormal.clone()), (Some(200), None));
    // Cut before that last chunk, closing the connection ends the call abnormally.
    let rec = parse_recording(LOGS_FOLLOW);
    let w = writes(&rec[..rec.len() - 1], Side::A);
    let mut c = Connection::default();
    run(&mut c, &w);
    let mut out = Vec::new();
    c.close(1, crate::protocol::call::ConnEnd::Closed, &mut out);
    let e = ends(&out);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].1.code, Some(200));
    assert!(
        e[0].1
            .abnormal
            .as_deref()
            .unwrap_or("")
            .contains("connection closed")
    );
}

#[test]
fn docker_attach_upgrades_to_raw() {
    let (c, ev) = replay(ATTACH);
    assert_eq!(starts(&ev).len(), 1);
    assert!(
        starts(&ev)[0].starts_with("POST /v1.41/containers/")
            && starts(&ev)[0].ends_with("/attach?stderr=1&stdout=1&stream=1")
    );
    assert_eq!(codes(&ev), [Some(101)]);
    assert_eq!(ends(&ev)[0].1.message.as_deref(), Some("UPGRADED"));
    assert!(notices(&ev)[0].contains("\"tcp\""));
    assert_eq!(
        bodies(&ev, Role::Response),
        [Body::Raw(
            b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n".to_vec()
        )]
    );
    assert_eq!(c.stats().upgrades, 1);
}

#[test]
fn docker_exec_start_sends_a_body_then_upgrades() {
    let (_, ev) = replay(EXEC_START);
    assert!(starts(&ev)[0].ends_with("/start"));
    let req = text(&bodies(&ev, Role::Request)[0]).to_string();
    let v: serde_json::Value = serde_json::from_str(&req).unwrap();
    assert_eq!(v["Detach"], false);
    assert!(!req.contains(' '), "{req}");
    assert_eq!(codes(&ev), [Some(101)]);
    let out: Vec<u8> = bodies(&ev, Role::Response)
        .iter()
        .flat_map(|b| match b {
            Body::Raw(r) => r.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(out.windows(8).any(|w| w == b"exec-out"));
}

#[test]
fn docker_run_create_and_wait() {
    let (_, ev) = replay(RUN_CREATE_WAIT);
    let s = starts(&ev);
    assert_eq!(s[1], "POST /v1.41/containers/create");
    assert!(s.iter().any(|m| m.contains("/wait?condition=removed")));
    // The create body (after the bodiless ping's request) is compact JSON.
    let create = text(&bodies(&ev, Role::Request)[1]).to_string();
    assert!(
        create.starts_with(r#"{"AttachStderr":true"#)
            || create.contains(r#""Image":"busybox:rec""#)
    );
    assert!(!create.contains(": "));
    assert!(codes(&ev).contains(&Some(201)));
}

#[test]
fn recordings_are_split_invariant() {
    // Attach and exec-start switch to raw bytes, whose messages follow the capture's writes.
    for (name, rec) in [
        ("version", VERSION),
        ("ps", PS),
        ("info", INFO),
        ("events", EVENTS),
        ("logs", LOGS_FOLLOW),
        ("run", RUN_CREATE_WAIT),
    ] {
        let w = writes(&parse_recording(rec), Side::B);
        let want = run(&mut Connection::default(), &w);
        let mut rng = Rng::new(5);
        for round in 0..40 {
            let got = run(&mut Connection::default(), &resplit(&w, &mut rng));
            assert_eq!(got, want, "{name} round {round}");
        }
    }
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let mut c = Connection::default();
    let mut ev = feed(&mut c, Side::A, 1, b"POST /build HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: gzip, chunked\r\nContent-Type: application/json\r\n\r\n");
    ev.extend(feed(
        &mut c,
        Side::A,
        2,
        b"5;ext=1\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\nX-Trailer: t\r\n\r\n",
    ));
    ev.extend(feed(
        &mut c,
        Side::B,
        3,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n",
    ));
    ev.extend(feed(&mut c, Side::B, 4, b"2\r\nhi\r\n0\r\n\r\n"));
    // The JSON split over two chunks is one message (the first chunk does not end a line).
    assert_eq!(text(&bodies(&ev, Role::Request)[0]), r#"{"a":1}"#);
    assert_eq!(text(&bodies(&ev, Role::Response)[0]), "hi");
    assert_eq!(codes(&ev), [Some(200)]);
    assert_eq!(c.open_calls(), 0);
}

#[test]
fn bodiless_responses_and_keep_alive() {
    let mut c = Connection::default();
    let mut ev = Vec::new();
    for (req, resp) in [
        (&b"HEAD /_ping HTTP/1.1\r\n\r\n"[..], &b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"[..]),
        (b"DELETE /v1.41/containers/x HTTP/1.1\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"GET /v1.41/images/json HTTP/1.1\r\nIf-None-Match: x\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        (b"POST /v1.41/containers/x/stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n{\"message\":\"No such x\"}\n     "),
    ] {
        ev.extend(feed(&mut c, Side::A, 1, req));
        ev.extend(feed(&mut c, Side::B, 2, resp));
    }
    assert_eq!(starts(&ev).len(), 4);
    assert_eq!(codes(&ev), [Some(200), Some(204), Some(304), Some(404)]);
    // Each request is one message: its head, with no body.
    let reqs = bodies(&ev, Role::Request);
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|b| text(b).is_empty()));
    assert_eq!(bodies(&ev, Role::Response).len(), 1);
    assert_eq!(
        text(&bodies(&ev, Role::Response)[0]),
        r#"{"message":"No such x"}"#
    );
    assert_eq!(ends(&ev)[3].1.message.as_deref(), Some("Not Found"));
    assert_eq!(
        ends(&ev).iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(notices(&ev).is_empty());
}

#[test]
fn interim_continue_and_close_delimited_response() {
    let mut c = Connection::default();
    let mut ev = feed(
        &mut c,
        Side::A,
        1,
        b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    );
    ev.extend(feed(&mut c, Side::B, 2, b"HTTP/1.1 100 Continue\r\n\r\n"));
    ev.extend(feed(&mut c, Side::A, 3, b"ok"));
    ev.extend(feed(
        &mut c,
        Side::B,
        4,
        b"HTTP/1.0 200 OK\r\n\r\npart one ",
    ));
    ev.extend(feed(&mut c, Side::B, 5, b"part two"));
    assert!(ends(&ev).is_empty());
    c.close(9, crate::protocol::call::ConnEnd::Closed, &mut ev);
    assert_eq!(text(&bodies(&ev, Role::Request)[0]), "ok");
    assert_eq!(
        bodies(&ev, Role::Response)
            .iter()
            .map(text)
            .collect::<Vec<_>>(),
        ["part one ", "part two"]
    );
    let e = ends(&ev);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].1.code, Some(200));
    assert!(e[0].1.abnormal.is_none());
}

#[test]
fn malformed_request_line_resyncs_on_the_next_request() {
    let mut c = Connection::default();
    let mut ev = feed(&mut c, Side::A, 1, b"GET /ok HTTP/1.1\r\n\r\n");
    ev.extend(feed(
        &mut c,
        Side::B,
        2,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ));
    ev.extend(feed(
        &mut c,
        Side::A,
        3,
        b"get lower HTTP/1.1\r\nX: y\r\n\r\nGET /two HTTP/1.1\r\n\r\n",
    ));
    assert!(c.is_desynchronised(Side::A) || starts(&ev).len() == 2);
    assert_eq!(starts(&ev), ["GET /ok", "GET /two"]);
    let n = notices(&ev);
    assert_eq!(n.len(), 2, "{n:?}");
    assert!(n[0].contains("unexpected start line"), "{n:?}");
    assert!(n[1].contains("resynchronised"), "{n:?}");
}

#[test]
fn crlf_injection_stays_inside_a_value() {
    let mut c = Connection::default();
    let ev = feed(
        &mut c,
        Side::A,
        1,
        b"GET /x HTTP/1.1\r\nX-A: one\rInjected: two\r\n\r\n",
    );
    match &ev[0].kind {
        CallEventKind::Start { metadata, .. } => {
            assert_eq!(
                metadata,
                &vec![("X-A".to_string(), Some("one\rInjected: two".to_string()))]
            );
        }
        k => panic!("{k:?}"),
    }
    // A target with a control character is no request line.
    let mut c = Connection::default();
    let ev = feed(&mut c, Side::A, 1, b"GET /a\x1b[2Jb HTTP/1.1\r\n\r\n");
    assert!(starts(&ev).is_empty());
    assert!(c.is_desynchronised(Side::A));
}

#[test]
fn conflicting_content_length_desynchronises() {
    let mut c = Connection::default();
    let ev = feed(
        &mut c,
        Side::A,
        1,
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
    assert!(notices(&ev)[0].contains("conflicting Content-Length"));
    assert!(c.is_desynchronised(Side::A));
}

#[test]
fn huge_heads_and_bodies_are_bounded() {
    let limits = Limits::default();
    let mut c = Connection::default();
    let mut ev = feed(&mut c, Side::A, 1, b"GET /x HTTP/1.1\r\n");
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for _ in 0..5000 {
        ev.extend(feed(&mut c, Side::A, 2, line));
        assert!(c.buffered() <= limits.max_head + limits.resync_window + line.len());
    }
    assert!(
        notices(&ev)[0].contains("longer than"),
        "{:?}",
        notices(&ev)
    );
    assert!(starts(&ev).is_empty());
    // A body over the cap is counted, not kept.
    let mut c = Connection::default();
    let size = 3 * limits.max_body + 7;
    let mut ev = feed(
        &mut c,
        Side::A,
        1,
        format!("POST /load HTTP/1.1\r\nContent-Length: {size}\r\n\r\n").as_bytes(),
    );
    let chunk = vec![b'x'; 65536];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        ev.extend(feed(&mut c, Side::A, 2, &chunk[..n]));
        left -= n;
        assert!(c.buffered() <= limits.max_body);
    }
    assert_eq!(
        bodies(&ev, Role::Request),
        [Body::Unavailable {
            reason: format!("body over the {}-byte limit", limits.max_body),
            len: size as u64
        }]
    );
    assert_eq!(c.stats().oversize_bodies, 1);
}

#[test]
fn gap_in_a_response_body_ends_the_call_and_resyncs() {
    let mut c = Connection::default();
    let mut ev = feed(&mut c, Side::A, 1, b"GET /a HTTP/1.1\r\n\r\n");
    ev.extend(feed(
        &mut c,
        Side::B,
        2,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
    ));
    c.gap(Side::B, 3, 50, &mut ev);
    ev.extend(feed(&mut c, Side::B, 4, b"tail of the lost body"));
    ev.extend(feed(&mut c, Side::A, 5, b"GET /b HTTP/1.1\r\n\r\n"));
    ev.extend(feed(
        &mut c,
        Side::B,
        6,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ));
    let e = ends(&ev);
    assert_eq!(e.len(), 2, "{ev:#?}");
    assert!(
        e[0].1
            .abnormal
            .as_deref()
            .unwrap()
            .contains("capture lost 50 bytes")
    );
    assert_eq!(
        (e[1].0, e[1].1.code, e[1].1.abnormal.clone()),
        (2, Some(200), None)
    );
    assert!(matches!(
        &bodies(&ev, Role::Response)[0],
        Body::Unavailable { len: 10, .. }
    ));
}

#[test]
fn late_join_mid_response_finds_the_next_exchange() {
    let rec = parse_recording(VERSION);
    let w = writes(&rec, Side::A);
    // Join inside the first response.
    let mut c = Connection::default();
    let mut ev = feed(&mut c, w[1].0, w[1].1, &w[1].2[40..]);
    for (side, ts, bytes) in &w[2..] {
        ev.extend(feed(&mut c, *side, *ts, bytes));
    }
    assert_eq!(starts(&ev), ["GET /v1.41/version"]);
    assert_eq!(codes(&ev), [Some(200)]);
}

#[test]
fn garbage_never_panics_and_stays_bounded() {
    let limits = Limits::default();
    let mut rng = Rng::new(99);
    let alphabet: &[u8] = b"GET /HTTP/1.1 200\r\n:;0123456789abcdefchunkedContent-Length: Transfer-Encoding: Upgrade\x00\xff";
    for _ in 0..200 {
        let mut c = Connection::default();
        let mut out = Vec::new();
        for _ in 0..50 {
            let n = rng.below(300);
            let bytes: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let side = if rng.below(2) == 0 { Side::A } else { Side::B };
            if rng.below(20) == 0 {
                c.gap(side, 1, 10, &mut out);
            }
            c.feed(side, 1, &bytes, &mut out);
            assert!(c.buffered() <= 2 * (limits.max_head + limits.resync_window + limits.max_body));
        }
        c.close(2, crate::protocol::call::ConnEnd::Closed, &mut out);
    }
}

#[test]
fn mutated_recordings_never_panic() {
    let limits = Limits::default();
    let mut rng = Rng::new(4321);
    for rec in [
        VERSION,
        PS,
        EVENTS,
        LOGS_FOLLOW,
        ATTACH,
        RUN_CREATE_WAIT,
        EXEC_START,
    ] {
        let base = writes(&parse_recording(rec), Side::B);
        for _ in 0..200 {
            let mut c = Connection::default();
            let mut out = Vec::new();
            for (side, ts, bytes) in &base {
                let mut b = bytes.clone();
                for _ in 0..rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                if rng.below(10) == 0 {
                    c.gap(*side, *ts, rng.below(100) as u64, &mut out);
                    b.drain(..rng.below(b.len()));
                }
                c.feed(*side, *ts, &b, &mut out);
                assert!(c.buffered() <= 2 * (limits.max_head + limits.resync_window));
            }
            c.close(u64::MAX, crate::protocol::call::ConnEnd::Closed, &mut out);
            assert_eq!(c.open_calls(), 0);
        }
    }
}
