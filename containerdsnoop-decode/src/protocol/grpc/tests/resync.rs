//! Resynchronisation at the connection level: garbage before frames, fake frame headers inside a
//! DATA payload, and a gap that ends in the middle of a frame, with the HPACK table lost.

use super::builders::*;
use super::late_join::{GoEncoder, grpc_go_request};
use crate::protocol::call::{CallEvent, CallEventKind, Method};
use crate::protocol::grpc::Connection;
use crate::protocol::http2::FrameSync;

const GET: &str = "/containerd.services.containers.v1.Containers/Get";
const VERSION: &str = "/containerd.services.version.v1.Version/Version";

fn starts(ev: &[CallEvent]) -> Vec<(u64, Option<Method>)> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Start { method, .. } => Some((e.stream, method.clone())),
            _ => None,
        })
        .collect()
}

fn exact(name: &str) -> Option<Method> {
    Some(Method {
        name: name.into(),
        inferred: false,
    })
}

#[test]
fn late_join_after_garbage_decodes_the_frames_that_follow() {
    let mut c = GoEncoder::new();
    let mut conn = Connection::late_join(Default::default());
    let mut ev = Vec::new();
    // The tail of some earlier frame, then a call whose `:path` is sent literally.
    let mut bytes = vec![0x17, 0xff, 0x00, 0x42, 0x99, 0x01];
    bytes.extend(c.headers(41, &grpc_go_request(GET), false));
    bytes.extend(data(41, &grpc(b"\x0a\x03web"), true));
    conn.feed(CLIENT, 1, &bytes, &mut ev);
    assert_eq!(starts(&ev), vec![(41, exact(GET))]);
    assert_eq!(conn.stats().http2.bytes_skipped, 6);
    assert_eq!(conn.client(), Some(CLIENT));
    assert_eq!(
        conn.sync_state(CLIENT),
        FrameSync::LateJoin {
            hpack_complete: false
        }
    );
    assert_eq!(conn.sync_state(SERVER), FrameSync::Desynchronised);
}

#[test]
fn fake_frames_inside_a_data_payload_are_not_decoded() {
    let mut c = GoEncoder::new();
    let mut fake_client = GoEncoder::new();
    // A message whose bytes hold a HEADERS frame for stream 99 and a PING: two plausible
    // frames that chain, but not to the end of the DATA payload.
    let mut payload = fake_client.headers(99, &grpc_go_request(VERSION), true);
    payload.extend(frame(0x6, 0, 0, &[0; 8]));
    payload.extend(b"more message bytes");
    let data_frame = data(41, &grpc(&payload), false);
    let mut real = c.headers(43, &grpc_go_request(GET), false);
    real.extend(data(43, &grpc(b"\x0a\x03web"), true));
    real.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
    for cut in 1..data_frame.len() {
        let mut conn = Connection::late_join(Default::default());
        let mut ev = Vec::new();
        conn.feed(
            CLIENT,
            1,
            &[&data_frame[cut..], &real[..]].concat(),
            &mut ev,
        );
        assert_eq!(starts(&ev), vec![(43, exact(GET))], "cut {cut}");
    }
}

#[test]
fn gap_mid_frame_then_calls_through_the_lost_table_are_inferred() {
    let (mut c, mut s) = (GoEncoder::new(), GoEncoder::new());
    let mut t = Trace::handshake();
    let req_version = grpc(b"");
    let resp_version = grpc(b"\x0a\x07v1.7.22\x12\x0c7f7fdf5fed64");
    let req_get = grpc(b"\x0a\x03web");
    let resp_get = grpc(b"\x0a\x25\x0a\x03web\x1a\x1edocker.io/library/nginx:latest");
    let mut stream = 1u32;
    let call = |stream: &mut u32,
                t: &mut Trace,
                c: &mut GoEncoder,
                s: &mut GoEncoder,
                path,
                req: &[u8],
                resp: &[u8]| {
        let stream_id = *stream;
        t.push(
            CLIENT,
            10,
            [
                c.headers(stream_id, &grpc_go_request(path), false),
                data(stream_id, req, true),
            ]
            .concat(),
        );
        t.push(
            SERVER,
            11,
            [
                s.headers(stream_id, RESPONSE, false),
                data(stream_id, resp, false),
                s.headers(stream_id, &[("grpc-status", "0")], true),
            ]
            .concat(),
        );
        *stream += 2;
    };
    for _ in 0..3 {
        call(
            &mut stream,
            &mut t,
            &mut c,
            &mut s,
            VERSION,
            &req_version,
            &resp_version,
        );
        call(
            &mut stream,
            &mut t,
            &mut c,
            &mut s,
            GET,
            &req_get,
            &resp_get,
        );
    }
    // The client's next write is lost from its 5th byte to 10 bytes into the one after.
    let lost_call = c.headers(stream, &grpc_go_request(GET), false);
    let after = [
        c.headers(stream + 2, &grpc_go_request(VERSION), false),
        data(stream + 2, &req_version, true),
    ]
    .concat();
    let mut conn = Connection::default();
    let mut ev = Vec::new();
    for (side, ts, b) in &t.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    let before = starts(&ev).len();
    conn.feed(CLIENT, 20, &lost_call[..4], &mut ev);
    conn.gap(CLIENT, 21, (lost_call.len() - 4 + 10) as u64, &mut ev);
    conn.feed(CLIENT, 22, &after[10..], &mut ev);
    assert!(conn.is_desynchronised(CLIENT));
    // Two more calls: framing resumes, the paths are dynamic-table indices into a table that is
    // unknown since the gap, so they are inferred from the bodies and from this connection's
    // history (the paths it used before the gap).
    let mut t2 = Trace::default();
    stream += 4;
    let (first_after, second_after) = (u64::from(stream), u64::from(stream) + 2);
    call(
        &mut stream,
        &mut t2,
        &mut c,
        &mut s,
        GET,
        &req_get,
        &resp_get,
    );
    call(
        &mut stream,
        &mut t2,
        &mut c,
        &mut s,
        VERSION,
        &req_version,
        &resp_version,
    );
    for (side, ts, b) in &t2.writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    assert!(!conn.is_desynchronised(CLIENT));
    assert_eq!(
        conn.sync_state(CLIENT),
        FrameSync::Resynchronised {
            hpack_complete: false
        }
    );
    let got = starts(&ev);
    let inferred = |name: &str| {
        Some(Method {
            name: name.into(),
            inferred: true,
        })
    };
    assert_eq!(
        got[before..],
        [
            (first_after, inferred(GET)),
            (second_after, inferred(VERSION))
        ],
        "{ev:#?}"
    );
    let notices: Vec<_> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Notice { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[0].starts_with("client→server desynchronised: capture lost"));
    assert!(notices[1].starts_with("client→server resynchronised"));
}
