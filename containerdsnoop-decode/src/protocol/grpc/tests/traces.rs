//! Protocol traces: each test writes a connection as wire bytes and checks the rows.

use super::builders::*;
use crate::protocol::call::{Body, CallEvent, CallEventKind, Method, Role, Side, Status};
use crate::protocol::grpc::{CallLimits, Connection, Limits};
use crate::protocol::http2::PREFACE;
use crate::protocol::http2::frame::flags;

const CREATE: &str = "/containerd.services.tasks.v1.Tasks/Create";
const EVENTS: &str = "/containerd.services.events.v1.Events/Subscribe";

fn method(path: &str) -> Option<Method> {
    Some(Method {
        name: path.into(),
        inferred: false,
    })
}

fn notices(ev: &[CallEvent]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Notice { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn messages(ev: &[CallEvent]) -> Vec<(Role, u64, Body)> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Message {
                role, index, body, ..
            } => Some((*role, *index, body.clone())),
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

fn ok() -> Status {
    Status {
        code: Some(0),
        message: None,
        abnormal: None,
    }
}

/// One unary call: request on `stream` at `ts`, response and OK trailers 10 ns later.
struct Unary<'a> {
    stream: u32,
    path: &'a str,
    req: &'a [u8],
    resp: &'a [u8],
    ts: u64,
}

fn unary(t: &mut Trace, c: &mut Peer, s: &mut Peer, call: Unary) {
    let Unary {
        stream,
        path,
        req,
        resp,
        ts,
    } = call;
    t.push(
        CLIENT,
        ts,
        [
            c.headers(stream, &request_fields(path), false),
            data(stream, &grpc(req), true),
        ]
        .concat(),
    );
    t.push(
        SERVER,
        ts + 10,
        [
            s.headers(stream, RESPONSE, false),
            data(stream, &grpc(resp), false),
            s.headers(stream, &[("grpc-status", "0")], true),
        ]
        .concat(),
    );
}

#[test]
fn unary_call_rows() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    unary(
        &mut t,
        &mut c,
        &mut s,
        Unary {
            stream: 1,
            path: CREATE,
            req: b"req",
            resp: b"resp",
            ts: 100,
        },
    );
    let (ev, stats) = t.run();
    assert_eq!(ev.len(), 4, "{ev:#?}");
    let CallEventKind::Start {
        method: m,
        metadata,
    } = &ev[0].kind
    else {
        panic!("{ev:?}")
    };
    assert_eq!(m, &method(CREATE));
    assert_eq!((ev[0].ts_ns, ev[0].side, ev[0].stream), (100, CLIENT, 1));
    assert!(metadata.contains(&(":path".into(), Some(CREATE.into()))));
    assert!(metadata.contains(&("containerd-namespace".into(), Some("k8s.io".into()))));
    assert_eq!(
        ev[1].kind,
        CallEventKind::Message {
            role: Role::Request,
            index: 0,
            method: method(CREATE),
            namespace: Some("k8s.io".into()),
            body: Body::Protobuf(b"req".to_vec()),
        }
    );
    assert_eq!(
        messages(&ev)[1],
        (Role::Response, 0, Body::Protobuf(b"resp".to_vec()))
    );
    assert_eq!(
        ev[3],
        CallEvent {
            ts_ns: 110,
            side: SERVER,
            stream: 1,
            kind: CallEventKind::End {
                method: method(CREATE),
                namespace: Some("k8s.io".into()),
                status: ok(),
                latency_ns: Some(10),
            },
        }
    );
    assert_eq!(
        (
            stats.http2.desyncs,
            stats.calls.calls_started,
            stats.calls.calls_ended,
            stats.calls.messages
        ),
        (0, 1, 1, 2)
    );
}

#[test]
fn server_settings_before_client_preface() {
    // grpc-go servers write SETTINGS before reading the preface, so B may be seen first.
    let mut t = Trace::default();
    t.push(SERVER, 1, settings(&[]));
    t.push(
        CLIENT,
        2,
        [PREFACE.to_vec(), settings(&[]), settings_ack()].concat(),
    );
    t.push(SERVER, 3, settings_ack());
    let (mut c, mut s) = (Peer::new(), Peer::new());
    unary(
        &mut t,
        &mut c,
        &mut s,
        Unary {
            stream: 1,
            path: CREATE,
            req: b"a",
            resp: b"b",
            ts: 10,
        },
    );
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &t.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    assert_eq!(conn.client(), Some(CLIENT));
    assert_eq!(ends(&ev), vec![(1, ok())]);
}

#[test]
fn preface_split_byte_by_byte_and_roles_on_side_b() {
    // The client may be B: the side that sends the preface is the client.
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for b in PREFACE.iter() {
        conn.feed(Side::B, 1, &[*b], &mut ev);
    }
    conn.feed(Side::B, 1, &settings(&[]), &mut ev);
    assert_eq!(conn.client(), Some(Side::B));
    assert!(ev.is_empty());
}

#[test]
fn hpack_dynamic_table_across_calls() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    for i in 0..20u32 {
        let call = Unary {
            stream: 1 + 2 * i,
            path: CREATE,
            req: &[i as u8],
            resp: b"r",
            ts: 100 + u64::from(i),
        };
        unary(&mut t, &mut c, &mut s, call);
    }
    // As grpc-go does: `:path` inserted into the dynamic table (0x44 = literal with indexing,
    // name index 4), then referenced by index on the next call.
    let mut first = vec![0x83, 0x86, 0x44, CREATE.len() as u8];
    first.extend_from_slice(CREATE.as_bytes());
    t.push(
        CLIENT,
        500,
        [frame(
            0x1,
            flags::END_HEADERS | flags::END_STREAM,
            41,
            &first,
        )]
        .concat(),
    );
    // content-type as a literal without indexing (static name 31), then `:path` as index 62.
    let mut second = vec![0x83, 0x86, 0x0f, 0x10, 16];
    second.extend_from_slice(b"application/grpc");
    second.push(0xbe);
    t.push(
        CLIENT,
        501,
        frame(0x1, flags::END_HEADERS | flags::END_STREAM, 43, &second),
    );
    let (ev, stats) = t.run();
    assert_eq!(stats.calls.calls_ended, 20);
    assert_eq!(stats.calls.calls_started, 22);
    assert!(ev.iter().all(|e| match &e.kind {
        CallEventKind::Start { method: m, .. } => m == &method(CREATE),
        _ => true,
    }));
    let CallEventKind::Start { metadata, .. } = &ev.last().unwrap().kind else {
        panic!()
    };
    assert!(metadata.contains(&("content-type".into(), Some("application/grpc".into()))));
}

#[test]
fn trailers_only_response_with_percent_encoded_message() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(
        CLIENT,
        10,
        [
            c.headers(1, &request_fields(CREATE), false),
            data(1, &grpc(b"x"), true),
        ]
        .concat(),
    );
    t.push(
        SERVER,
        25,
        s.headers(
            1,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "container%20%22abc%22%20not%20found"),
            ],
            true,
        ),
    );
    let (ev, _) = t.run();
    assert_eq!(
        ends(&ev),
        vec![(
            1,
            Status {
                code: Some(5),
                message: Some("container \"abc\" not found".into()),
                abnormal: None
            }
        )]
    );
    let CallEventKind::End { latency_ns, .. } = ev.last().unwrap().kind else {
        panic!()
    };
    assert_eq!(latency_ns, Some(15));
}

#[test]
fn streaming_response_framing_shapes() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(
        CLIENT,
        10,
        [
            c.headers(1, &request_fields(EVENTS), false),
            data(1, &grpc(b"sub"), true),
        ]
        .concat(),
    );
    let m0 = grpc(b"event-zero");
    let m1 = grpc(b"");
    let m2 = grpc(&[7u8; 40]);
    let m3 = grpc(b"three");
    let mut frames = s.headers(1, RESPONSE, false);
    // m0 and m1 in one DATA frame; m2's prefix alone in a frame, its body split over two more;
    // m3 in a padded frame.
    frames.extend(data(1, &[m0.clone(), m1.clone()].concat(), false));
    frames.extend(data(1, &m2[..5], false));
    frames.extend(data(1, &m2[5..20], false));
    frames.extend(data(1, &m2[20..], false));
    let mut padded = vec![3u8];
    padded.extend_from_slice(&m3);
    padded.extend_from_slice(&[0, 0, 0]);
    frames.extend(frame(0x0, flags::PADDED, 1, &padded));
    frames.extend(s.headers(1, &[("grpc-status", "0")], true));
    t.push(SERVER, 20, frames);
    let (ev, _) = t.run();
    let resp: Vec<(u64, Body)> = messages(&ev)
        .into_iter()
        .filter(|m| m.0 == Role::Response)
        .map(|m| (m.1, m.2))
        .collect();
    assert_eq!(
        resp,
        vec![
            (0, Body::Protobuf(b"event-zero".to_vec())),
            (1, Body::Protobuf(vec![])),
            (2, Body::Protobuf(vec![7; 40])),
            (3, Body::Protobuf(b"three".to_vec())),
        ]
    );
    assert_eq!(ends(&ev), vec![(1, ok())]);
}

#[test]
fn headers_with_continuation_and_padding_priority() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    let block = c.block(&request_fields(CREATE));
    let (a, b) = block.split_at(block.len() / 2);
    let mut p = vec![2u8]; // pad length
    p.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
    p.extend_from_slice(a);
    p.extend_from_slice(&[0, 0]);
    let mut w = frame(0x1, flags::PADDED | flags::PRIORITY, 1, &p);
    w.extend(frame(0x9, 0, 1, &b[..1]));
    w.extend(frame(0x9, flags::END_HEADERS, 1, &b[1..]));
    w.extend(data(1, &grpc(b"q"), true));
    t.push(CLIENT, 10, w);
    t.push(
        SERVER,
        11,
        [
            s.headers(1, RESPONSE, false),
            s.headers(1, &[("grpc-status", "0")], true),
        ]
        .concat(),
    );
    let (ev, stats) = t.run();
    assert_eq!(stats.http2.desyncs, 0, "{ev:?}");
    let CallEventKind::Start { method: m, .. } = &ev[0].kind else {
        panic!("{ev:?}")
    };
    assert_eq!(m, &method(CREATE));
    assert_eq!(ends(&ev), vec![(1, ok())]);
}

#[test]
fn frame_interleaved_in_header_block_desyncs_that_direction_only() {
    for bad in [
        data(1, b"x", false),
        frame(0x9, flags::END_HEADERS, 3, &[0x82]),
    ] {
        let mut t = Trace::handshake();
        let (mut c, mut s) = (Peer::new(), Peer::new());
        let block = c.block(&request_fields(CREATE));
        t.push(CLIENT, 10, [frame(0x1, 0, 1, &block), bad].concat());
        // The server direction still decodes (its calls are unknown, so nothing is emitted).
        t.push(SERVER, 11, [s.headers(1, RESPONSE, false)].concat());
        t.push(CLIENT, 12, data(1, &grpc(b"later"), true));
        let (ev, stats) = t.run();
        assert_eq!(stats.http2.desyncs, 1);
        let n = notices(&ev);
        assert!(n[0].starts_with("client→server desynchronised"), "{}", n[0]);
        // The last write is one whole DATA frame: framing resumes there (for a call whose
        // request headers were lost, so its data is not attributed to a method).
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(n[1].starts_with("client→server resynchronised"), "{}", n[1]);
        assert!(
            messages(&ev)
                .iter()
                .all(|m| !matches!(&m.2, Body::Protobuf(b) if b == b"later" )),
            "{ev:?}"
        );
    }
}

#[test]
fn continuation_without_headers_desyncs() {
    let mut t = Trace::handshake();
    t.push(CLIENT, 10, frame(0x9, flags::END_HEADERS, 1, &[0x82]));
    let (ev, stats) = t.run();
    assert_eq!(stats.http2.desyncs, 1);
    assert!(notices(&ev)[0].contains("CONTINUATION on stream 1 without HEADERS"));
}

#[test]
fn rst_stream_ends_call_abnormally() {
    let mut t = Trace::handshake();
    let (mut c, _) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(EVENTS), false));
    t.push(CLIENT, 50, rst(1, 8));
    // Frames after the reset for that stream are ignored.
    t.push(SERVER, 51, data(1, &grpc(b"late"), false));
    let (ev, stats) = t.run();
    assert_eq!(
        ends(&ev),
        vec![(
            1,
            Status {
                code: None,
                message: None,
                abnormal: Some("RST_STREAM CANCEL from client".into())
            }
        )]
    );
    assert_eq!(stats.calls.orphan_frames, 1);
}

#[test]
fn goaway_notice_and_unprocessed_streams() {
    let mut t = Trace::handshake();
    let (mut c, _) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(EVENTS), false));
    t.push(CLIENT, 11, c.headers(3, &request_fields(EVENTS), false));
    t.push(SERVER, 12, goaway(1, 0, b"shutting down"));
    let (ev, _) = t.run();
    assert_eq!(
        notices(&ev),
        vec![r#"GOAWAY from server: NO_ERROR, last stream 1, debug "shutting down""#]
    );
    assert_eq!(ends(&ev).len(), 1);
    assert_eq!(ends(&ev)[0].0, 3);
    // An error GOAWAY ends every call.
    let mut t2 = t.clone();
    t2.writes.pop();
    t2.push(SERVER, 12, goaway(3, 2, b""));
    let (ev, _) = t2.run();
    let e = ends(&ev);
    assert_eq!(e.len(), 2);
    assert_eq!(
        e[0].1.abnormal.as_deref(),
        Some("GOAWAY INTERNAL_ERROR from server")
    );
}

#[test]
fn gap_stops_one_direction_and_other_continues() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(
        CLIENT,
        10,
        [
            c.headers(1, &request_fields(EVENTS), false),
            data(1, &grpc(b"sub"), true),
        ]
        .concat(),
    );
    t.push(
        SERVER,
        11,
        [s.headers(1, RESPONSE, false), data(1, &grpc(b"e0"), false)].concat(),
    );
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &t.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    conn.gap(CLIENT, 20, 1000, &mut ev);
    conn.gap(CLIENT, 21, 5, &mut ev); // already desynchronised: counted, no second row
    // Garbage from the client is ignored; the server's stream continues to decode.
    conn.feed(CLIENT, 22, b"\xff\xff\xff garbage", &mut ev);
    conn.feed(
        SERVER,
        23,
        &[
            data(1, &grpc(b"e1"), false),
            s.headers(1, &[("grpc-status", "0")], true),
        ]
        .concat(),
        &mut ev,
    );
    assert_eq!(
        notices(&ev),
        vec![
            "client→server desynchronised: capture lost 1000 bytes; searching for the next frame boundary"
        ]
    );
    let resp: Vec<_> = messages(&ev)
        .into_iter()
        .filter(|m| m.0 == Role::Response)
        .collect();
    assert_eq!(resp.len(), 2);
    assert_eq!(ends(&ev), vec![(1, ok())]);
    let st = conn.stats();
    assert_eq!(
        (
            st.http2.desyncs,
            st.http2.gaps,
            st.http2.lost_bytes,
            st.http2.bytes_skipped
        ),
        (1, 2, 1005, 11)
    );
    assert!(conn.is_desynchronised(CLIENT) && !conn.is_desynchronised(SERVER));
}

#[test]
fn server_gap_cuts_the_message_and_the_call_ends_after_resync() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(EVENTS), false));
    t.push(
        SERVER,
        11,
        [
            s.headers(1, RESPONSE, false),
            data(1, &grpc(b"e0")[..3], false),
        ]
        .concat(),
    );
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &t.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    conn.gap(SERVER, 20, 7, &mut ev);
    assert!(conn.is_desynchronised(SERVER));
    conn.feed(CLIENT, 21, &data(1, &grpc(b"more"), false), &mut ev);
    // The server's next write: a whole message and the trailers (two frames ending the write).
    conn.feed(
        SERVER,
        22,
        &[
            data(1, &grpc(b"e2"), false),
            s.headers(1, &[("grpc-status", "0")], true),
        ]
        .concat(),
        &mut ev,
    );
    assert_eq!(
        notices(&ev),
        vec![
            "server→client desynchronised: capture lost 7 bytes; searching for the next frame boundary (1 messages cut)",
            "server→client resynchronised: decoding again, header fields from before are unknown until the header table turns over",
        ]
    );
    assert_eq!(
        messages(&ev),
        vec![
            (
                Role::Response,
                0,
                Body::Unavailable {
                    reason: "bytes lost by the capture (3 bytes seen)".into(),
                    len: 0
                }
            ),
            (Role::Request, 0, Body::Protobuf(b"more".to_vec())),
            (Role::Response, 1, Body::Protobuf(b"e2".to_vec())),
        ]
    );
    assert_eq!(ends(&ev), vec![(1, ok())]);
    assert_eq!(conn.open_calls(), 0);
    assert_eq!(
        conn.sync_state(SERVER),
        crate::protocol::http2::FrameSync::Resynchronised {
            hpack_complete: false
        }
    );
    assert_eq!(
        conn.sync_state(CLIENT),
        crate::protocol::http2::FrameSync::Synced
    );
}

#[test]
fn gzip_compressed_messages() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    let mut req = request_fields(CREATE);
    req.push(("grpc-encoding", "gzip"));
    t.push(
        CLIENT,
        10,
        [
            c.headers(1, &req, false),
            data(1, &grpc_flagged(1, &gzip(b"zipped request")), true),
        ]
        .concat(),
    );
    t.push(
        SERVER,
        11,
        [
            s.headers(
                1,
                &[
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-encoding", "gzip"),
                ],
                false,
            ),
            data(1, &grpc_flagged(1, &gzip(b"zipped response")), false),
            data(1, &grpc_flagged(1, b"not gzip at all"), false),
            data(1, &grpc(b"plain"), false),
            s.headers(1, &[("grpc-status", "0")], true),
        ]
        .concat(),
    );
    let (ev, stats) = t.run();
    let m = messages(&ev);
    assert_eq!(m[0].2, Body::Protobuf(b"zipped request".to_vec()));
    assert_eq!(m[1].2, Body::Protobuf(b"zipped response".to_vec()));
    assert!(matches!(&m[2].2, Body::Unavailable { len: 15, .. }));
    assert_eq!(m[3].2, Body::Protobuf(b"plain".to_vec()));
    assert_eq!(stats.calls.decompress_failures, 1);
}

#[test]
fn compressed_flag_without_encoding_is_unavailable() {
    let mut t = Trace::handshake();
    let (mut c, _) = (Peer::new(), Peer::new());
    t.push(
        CLIENT,
        10,
        [
            c.headers(1, &request_fields(CREATE), false),
            data(1, &grpc_flagged(1, b"??"), true),
        ]
        .concat(),
    );
    let (ev, _) = t.run();
    assert_eq!(
        messages(&ev)[0].2,
        Body::Unavailable {
            reason: "compressed message without grpc-encoding".into(),
            len: 2
        }
    );
}

#[test]
fn non_grpc_content_is_raw() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    let req = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/v1/health"),
        (":authority", "x"),
    ];
    t.push(CLIENT, 10, c.headers(1, &req, true));
    t.push(
        SERVER,
        11,
        [
            s.headers(
                1,
                &[(":status", "404"), ("content-type", "text/plain")],
                false,
            ),
            data(1, b"not ", false),
            data(1, b"found", true),
        ]
        .concat(),
    );
    let (ev, _) = t.run();
    assert_eq!(
        messages(&ev),
        vec![(Role::Response, 0, Body::Raw(b"not found".to_vec()))]
    );
    assert_eq!(
        ends(&ev),
        vec![(
            1,
            Status {
                code: Some(404),
                message: None,
                abnormal: None
            }
        )]
    );
}

#[test]
fn grpc_response_without_trailers_is_abnormal() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(CREATE), true));
    t.push(
        SERVER,
        11,
        [
            s.headers(1, RESPONSE, false),
            data(1, &grpc(b"abcdef")[..7], true),
        ]
        .concat(),
    );
    let (ev, _) = t.run();
    assert!(matches!(
        &messages(&ev)[0].2,
        Body::Unavailable { len: 6, .. }
    ));
    assert_eq!(
        ends(&ev)[0].1.abnormal.as_deref(),
        Some("response ended without trailers")
    );
}

#[test]
fn oversize_message_is_skipped_and_framing_continues() {
    let mut t = Trace::handshake();
    let (mut c, _) = (Peer::new(), Peer::new());
    let big = grpc(&[1u8; 300]);
    t.push(CLIENT, 10, c.headers(1, &request_fields(CREATE), false));
    t.push(CLIENT, 11, data(1, &big[..100], false));
    t.push(
        CLIENT,
        12,
        [data(1, &big[100..], false), data(1, &grpc(b"small"), true)].concat(),
    );
    let limits = Limits {
        calls: CallLimits {
            max_message: 100,
            ..CallLimits::default()
        },
        ..Limits::default()
    };
    let (ev, stats) = run_with(&t.writes, limits);
    let m = messages(&ev);
    assert_eq!(
        m[0],
        (
            Role::Request,
            0,
            Body::Unavailable {
                reason: "message exceeds the 100-byte limit".into(),
                len: 300
            }
        )
    );
    assert_eq!(m[1], (Role::Request, 1, Body::Protobuf(b"small".to_vec())));
    assert_eq!(stats.calls.oversize_messages, 1);
}

#[test]
fn max_frame_size_follows_acknowledged_settings() {
    // The client allows 32 KiB frames; the server uses them after acknowledging.
    let mut t = Trace::default();
    t.push(
        CLIENT,
        1,
        [PREFACE.to_vec(), settings(&[(0x5, 32768)])].concat(),
    );
    t.push(SERVER, 2, [settings(&[]), settings_ack()].concat());
    t.push(CLIENT, 3, settings_ack());
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(CLIENT, 4, c.headers(1, &request_fields(CREATE), true));
    let body = vec![9u8; 30000];
    t.push(
        SERVER,
        5,
        [s.headers(1, RESPONSE, false), data(1, &grpc(&body), false)].concat(),
    );
    let (ev, stats) = t.run();
    assert_eq!(stats.http2.desyncs, 0, "{ev:?}");
    assert_eq!(messages(&ev)[0].2, Body::Protobuf(body.clone()));
    // The client never allowed it: a 30000-byte frame from the server is a protocol error.
    let mut t = Trace::handshake();
    let mut c = Peer::new();
    t.push(CLIENT, 4, c.headers(1, &request_fields(CREATE), true));
    t.push(SERVER, 5, data(1, &grpc(&body), false));
    let (ev, stats) = t.run();
    assert_eq!(stats.http2.desyncs, 1);
    assert!(
        notices(&ev)[0].contains("exceeds SETTINGS_MAX_FRAME_SIZE 16384"),
        "{ev:?}"
    );
}

#[test]
fn header_table_size_setting_bounds_the_other_sides_updates() {
    let mut t = Trace::default();
    // The server announces 8192 for the blocks the client sends.
    t.push(CLIENT, 1, [PREFACE.to_vec(), settings(&[])].concat());
    t.push(
        SERVER,
        2,
        [settings(&[(0x1, 8192)]), settings_ack()].concat(),
    );
    t.push(CLIENT, 3, settings_ack());
    let mut ok_block = vec![0x3f, 0xe1, 0x3f]; // size update to 8192
    ok_block.extend(Peer::new().block(&request_fields(CREATE)));
    let mut bad_t = t.clone();
    t.push(CLIENT, 4, frame(0x1, flags::END_HEADERS, 1, &ok_block));
    let (_, stats) = t.run();
    assert_eq!(stats.http2.desyncs, 0);
    let mut bad_block = vec![0x3f, 0xf1, 0x4d]; // 10000
    bad_block.extend(Peer::new().block(&request_fields(CREATE)));
    bad_t.push(CLIENT, 4, frame(0x1, flags::END_HEADERS, 1, &bad_block));
    let (ev, stats) = bad_t.run();
    assert_eq!((stats.http2.desyncs, stats.http2.hpack_errors), (1, 1));
    assert!(
        notices(&ev)[0].contains("table size update to 10000 exceeds 8192"),
        "{ev:?}"
    );
}

#[test]
fn unknown_frames_ping_priority_window_update_are_skipped() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(
        CLIENT,
        5,
        [
            frame(0x10, 0, 0, b"priority-update"),
            frame(0x6, 0, 0, &[0; 8]),
            frame(0x8, 0, 0, &[0, 0, 1, 0]),
        ]
        .concat(),
    );
    unary(
        &mut t,
        &mut c,
        &mut s,
        Unary {
            stream: 1,
            path: CREATE,
            req: b"a",
            resp: b"b",
            ts: 10,
        },
    );
    let (ev, stats) = t.run();
    assert_eq!(stats.http2.unknown_frames, 1);
    assert_eq!(ends(&ev), vec![(1, ok())]);
}

#[test]
fn mid_connection_start_without_join_decodes_as_late_join() {
    // Neither side starts with the preface or SETTINGS, and nobody called `joined`.
    let mut s = Peer::new();
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    conn.feed(SERVER, 1, &data(1, &grpc(b"x"), false), &mut ev);
    conn.feed(
        CLIENT,
        1,
        &s.headers(3, &request_fields(CREATE), false),
        &mut ev,
    );
    assert_eq!(conn.stats().http2.desyncs, 0);
    assert!(notices(&ev).is_empty(), "{ev:?}");
    // The DATA came before anything said which side is the client: not attributed.
    assert!(messages(&ev).is_empty());
    assert_eq!(conn.client(), Some(CLIENT));
    let starts: Vec<_> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Start { method, .. } => Some(method.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        vec![Some(Method {
            name: CREATE.into(),
            inferred: false
        })]
    );
    for side in [CLIENT, SERVER] {
        assert_eq!(
            crate::protocol::Decoding::from(conn.sync_state(side)),
            crate::protocol::Decoding::LateJoin
        );
    }
}

#[test]
fn close_ends_open_calls() {
    let mut t = Trace::handshake();
    let (mut c, _) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(EVENTS), false));
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &t.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    conn.close(99, crate::protocol::call::ConnEnd::Closed, &mut ev);
    assert_eq!(
        ends(&ev),
        vec![(
            1,
            Status {
                abnormal: Some("connection closed".into()),
                ..Status::default()
            }
        )]
    );
}

/// A server that answers before the request's DATA is written (here a trailers-only
/// `Unimplemented`, as containerd 2.x does for CRI v1alpha2): the request message is still shown,
/// after the End, instead of being dropped as a frame for an unknown stream.
#[test]
fn request_message_after_a_trailers_only_answer_is_shown() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(CREATE), false));
    t.push(
        SERVER,
        20,
        s.headers(
            1,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "12"),
            ],
            true,
        ),
    );
    t.push(CLIENT, 30, data(1, &grpc(b"late"), true));
    // A second call on the same connection is unaffected, and the finished late request is
    // forgotten: more DATA on stream 1 is an orphan frame again.
    t.push(CLIENT, 40, data(1, &grpc(b"stray"), true));
    let (ev, stats) = t.run();
    assert_eq!(ends(&ev).len(), 1);
    assert_eq!(ends(&ev)[0].1.code, Some(12));
    let msgs = messages(&ev);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!((msgs[0].0, msgs[0].1), (Role::Request, 0));
    let last = ev.last().unwrap();
    assert!(
        matches!(&last.kind, CallEventKind::Message { method: m, .. } if *m == method(CREATE)),
        "{last:?}"
    );
    assert_eq!(stats.calls.orphan_frames, 1);
}

/// The client's request recorded after the server's answer to it (the client's CPU was taken
/// away right after its write, while the server answered trailers-only): the answer is held
/// until the request headers open the call, so the call keeps its method, its status and its
/// request message, in request-then-answer order.
#[test]
fn an_answer_recorded_before_its_request_is_held_until_the_request_comes() {
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(
        SERVER,
        20,
        s.headers(
            1,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "12"),
            ],
            true,
        ),
    );
    t.push(CLIENT, 10, c.headers(1, &request_fields(CREATE), false));
    t.push(CLIENT, 30, data(1, &grpc(b"late"), true));
    // A normal call afterwards is unaffected.
    t.push(CLIENT, 40, c.headers(3, &request_fields(CREATE), false));
    t.push(CLIENT, 41, data(3, &grpc(b"req"), true));
    t.push(
        SERVER,
        50,
        s.headers(
            3,
            &[(":status", "200"), ("content-type", "application/grpc")],
            false,
        ),
    );
    t.push(SERVER, 51, data(3, &grpc(b"resp"), false));
    t.push(SERVER, 52, s.headers(3, &[("grpc-status", "0")], true));
    let (ev, stats) = t.run();
    let ends = ends(&ev);
    assert_eq!(
        ends.iter().map(|(s, st)| (*s, st.code)).collect::<Vec<_>>(),
        vec![(1, Some(12)), (3, Some(0))],
        "{ev:#?}"
    );
    let end_1 = ev
        .iter()
        .find(|e| e.stream == 1 && matches!(e.kind, CallEventKind::End { .. }))
        .expect("END of stream 1");
    assert_eq!(end_1.ts_ns, 20, "the END keeps the answer's own time");
    let msgs = messages(&ev);
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        ev.iter().any(|e| e.stream == 1
            && matches!(&e.kind, CallEventKind::Message { method: m, .. } if *m == method(CREATE))),
        "the late request message is shown with its method"
    );
    assert_eq!(stats.calls.orphan_frames, 0);
}

/// Answers whose requests never come (the connection ends first) are counted as orphan frames,
/// and no more of them are held than the bounds allow.
#[test]
fn held_answers_are_bounded_and_counted_when_their_requests_never_come() {
    let mut t = Trace::handshake();
    let mut s = Peer::new();
    for stream in (1..=2 * 12).step_by(2) {
        t.push(
            SERVER,
            u64::from(stream),
            s.headers(
                stream,
                &[
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", "5"),
                ],
                true,
            ),
        );
    }
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &t.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    conn.close(99, crate::protocol::call::ConnEnd::Closed, &mut ev);
    assert!(ends(&ev).is_empty(), "{ev:#?}");
    assert_eq!(conn.stats().calls.orphan_frames, 12);
}
