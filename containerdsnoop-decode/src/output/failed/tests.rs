//! `-x` through the whole pipeline, on real bytes: the `h2` crate's HTTP/2 (gRPC OK, NotFound,
//! a server's RST_STREAM), containerd's recorded answers to `ctr` (OK and NotFound), docker's
//! recorded HTTP/1.1 (200) beside a 404 exchange written after dockerd's, and the limits on
//! what is held. Each run is compared with the same bytes without `-x`: the failed calls must
//! come out whole, and nothing else.

use serde_json::Value;

use super::*;
use crate::{
    output::{
        json::JsonPrinter,
        sink::{Renderer, Sink},
        time::Clock,
    },
    pipeline::{Pipeline, Plan},
    protocol::{
        call::{ConnEnd, Side},
        detect::testing::parse_recording,
        grpc::tests::real_traffic,
    },
    record::{Chunk, chunks_from_raw_jsonl},
    schema::{RenderOptions, Schema},
    stats::Stats,
    testutil::conn_chunks as chunks,
};

const GET: &str = "/containerd.services.containers.v1.Containers/Get";
const KILL: &str = "/containerd.services.tasks.v1.Tasks/Kill";
const SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";

use crate::testutil::Shared;

/// How a run ends.
#[derive(Clone, Copy)]
enum End {
    /// The capture ends with every connection still open.
    Capture,
    /// The connection is closed (both sockets, as a FIN in a capture file), then the capture
    /// ends.
    Close,
}

/// Options of one run.
#[derive(Clone, Copy, Default)]
struct Run {
    failed_only: bool,
    limit: Option<u64>,
    hold: Option<HoldLimits>,
}

/// The JSON rows a pipeline printed for `chunks`, and its counters.
fn run(chunks: &[Chunk], opts: Run, end: End) -> (Vec<Value>, Stats) {
    let out = Shared::default();
    let printer: Box<dyn Sink> =
        Box::new(JsonPrinter::new(Box::new(out.clone()), Clock::identity()));
    let plan = Plan {
        failed_only: opts.failed_only,
        limit: opts.limit,
        ..Plan::default()
    };
    let schema = Schema::embedded().expect("schema");
    let mut p = Pipeline::new(
        Renderer::new(schema, RenderOptions::default()),
        plan,
        vec![printer],
    );
    if let Some(limits) = opts.hold {
        p.set_failed_calls(FailedCalls::new(limits));
    }
    for c in chunks {
        if !p.push(c).expect("push") {
            break;
        }
    }
    let last = chunks.last().map_or(0, |c| c.ts_ns) + 1;
    if let End::Close = end {
        let mut pairs: Vec<(u64, u64)> = chunks.iter().map(|c| (c.sock_id, c.peer_id)).collect();
        pairs.dedup();
        for (a, b) in pairs {
            p.close_connection(last, a, b).expect("close");
        }
    }
    p.finish(last + 1, ConnEnd::CaptureEnded).expect("finish");
    let text = String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    let rows = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect();
    (rows, p.stats.clone())
}

fn with_x() -> Run {
    Run {
        failed_only: true,
        ..Run::default()
    }
}

/// A call's identity in a run's rows.
fn call_of(row: &Value) -> (u64, u64) {
    (
        row["connection"].as_u64().expect("connection"),
        row["stream"].as_u64().expect("stream"),
    )
}

/// The rows of `all` that belong to calls whose END is in `ends`, in their order.
fn rows_of_calls(all: &[Value], ends: &[&Value]) -> Vec<Value> {
    let calls: Vec<(u64, u64)> = ends.iter().map(|e| call_of(e)).collect();
    all.iter()
        .filter(|r| r["type"] != "NOTE" && calls.contains(&call_of(r)))
        .cloned()
        .collect()
}

/// The END rows of `rows` whose method is `method`.
fn ends_of<'a>(rows: &'a [Value], method: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["type"] == "END" && r["method"] == method)
        .collect()
}

/// The `h2` crate's client and server: Version ×3, Subscribe, Get (NotFound), Read, Kill (the
/// server resets the stream), Version.
fn h2_traffic() -> Vec<Chunk> {
    chunks(
        &real_traffic::record(),
        1,
        "/run/containerd/containerd.sock",
        ("ctr", 100),
        ("containerd", 50),
    )
}

#[test]
fn grpc_not_found_and_reset_calls_are_shown_whole_ok_calls_are_not() {
    let chunks = h2_traffic();
    let (all, _) = run(&chunks, Run::default(), End::Close);
    let (failed, stats) = run(&chunks, with_x(), End::Close);
    let get = ends_of(&all, GET);
    let kill = ends_of(&all, KILL);
    assert_eq!((get.len(), kill.len()), (1, 1), "{all:#?}");
    assert_eq!(get[0]["status_code"], 5);
    assert!(
        kill[0]["abnormal"]
            .as_str()
            .is_some_and(|a| a.starts_with("RST_STREAM CANCEL")),
        "{}",
        kill[0]
    );
    let expected = rows_of_calls(&all, &[get[0], kill[0]]);
    assert_eq!(
        expected
            .iter()
            .map(|r| r["type"].as_str())
            .collect::<Vec<_>>(),
        [Some("REQ"), Some("END"), Some("REQ"), Some("END")],
        "both calls have their request and their end"
    );
    assert_eq!(
        failed, expected,
        "exactly the failed calls, every row of them"
    );
    let f = stats.failed.expect("-x counts");
    assert_eq!(
        (f.shown, f.incomplete, f.overflowed, f.unfinished),
        (2, 0, 0, 0)
    );
    assert_eq!(stats.rows, 4, "the rows printed");
    // The summary still counts every call.
    assert_eq!(stats.methods[GET].errors, 1);
    assert_eq!(stats.methods[KILL].errors, 1);
    assert_eq!(
        stats.methods["/containerd.services.version.v1.Version/Version"].errors,
        0
    );
}

/// The capture `ctr` made against containerd 1.6: its Containers/Get of a missing container
/// is the only call that failed.
#[test]
fn ctr_recording_shows_only_the_not_found_call() {
    let capture = include_str!("../../../tests/fixtures/containerd/ctr-basic.jsonl");
    let chunks = chunks_from_raw_jsonl(capture);
    let (all, _) = run(&chunks, Run::default(), End::Capture);
    let (failed, stats) = run(&chunks, with_x(), End::Capture);
    let get = ends_of(&all, GET);
    assert_eq!(get.len(), 1);
    assert_eq!(get[0]["status_code"], 5);
    let failing: Vec<&Value> = all
        .iter()
        .filter(|r| r["type"] == "END" && r["status_code"] != 0)
        .collect();
    assert_eq!(failing.len(), 1, "one call failed: {failing:?}");
    assert_eq!(failed, rows_of_calls(&all, &get));
    assert_eq!(failed.len(), 2, "REQ and END: {failed:#?}");
    assert_eq!(stats.failed.map(|f| f.shown), Some(1));
}

/// What dockerd answers `GET /containers/missing/json`: its 404 layout (the headers of the
/// recorded 200s, a JSON error body), after the `_ping` docker sends first. Client writes are
/// `true`.
const INSPECT_MISSING: &[(bool, &str)] = &[
    (
        true,
        "HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\
         User-Agent: Docker-Client/20.10.24+dfsg1 (linux)\r\n\r\n",
    ),
    (
        false,
        "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\n\
         Cache-Control: no-cache, no-store, must-revalidate\r\nContent-Length: 0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nDocker-Experimental: false\r\n\
         Ostype: linux\r\nPragma: no-cache\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\n\
         Date: Sun, 22 Nov 2026 23:50:37 GMT\r\n\r\n",
    ),
    (
        true,
        "GET /v1.41/containers/missing/json HTTP/1.1\r\nHost: docker\r\n\
         User-Agent: Docker-Client/20.10.24+dfsg1 (linux)\r\n\r\n",
    ),
    (
        false,
        "HTTP/1.1 404 Not Found\r\nApi-Version: 1.41\r\n\
         Content-Type: application/json\r\nDocker-Experimental: false\r\n\
         Ostype: linux\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\n\
         Date: Sun, 22 Nov 2026 23:50:38 GMT\r\nContent-Length: 41\r\n\r\n\
         {\"message\":\"No such container: missing\"}\n",
    ),
];

/// A `.rec` recording as writes, the client on side A.
fn rec_writes(rec: &[u8]) -> Vec<(Side, u64, Vec<u8>)> {
    parse_recording(rec)
        .into_iter()
        .map(|w| (if w.client { Side::A } else { Side::B }, 0, w.bytes))
        .collect()
}

#[test]
fn http_404_is_shown_200_is_not() {
    let docker = ("docker", 4001);
    let dockerd = ("dockerd", 3001);
    let ps = include_bytes!("../../../tests/fixtures/http1/ps.rec");
    let mut chunks = chunks(&rec_writes(ps), 1, "/run/docker.sock", docker, dockerd);
    let inspect: Vec<(Side, u64, Vec<u8>)> = INSPECT_MISSING
        .iter()
        .map(|(client, text)| {
            let side = if *client { Side::A } else { Side::B };
            (side, 0, text.as_bytes().to_vec())
        })
        .collect();
    chunks.extend(self::chunks(
        &inspect,
        2,
        "/run/docker.sock",
        docker,
        dockerd,
    ));
    let (all, _) = run(&chunks, Run::default(), End::Close);
    let (failed, stats) = run(&chunks, with_x(), End::Close);
    let statuses: Vec<u64> = all
        .iter()
        .filter(|r| r["type"] == "END")
        .filter_map(|r| r["status_code"].as_u64())
        .collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&404),
        "{statuses:?}"
    );
    let missing = ends_of(&all, "GET /v1.41/containers/missing/json");
    assert_eq!(missing.len(), 1);
    assert_eq!(failed, rows_of_calls(&all, &missing));
    assert_eq!(
        failed
            .iter()
            .map(|r| r["type"].as_str())
            .collect::<Vec<_>>(),
        [Some("REQ"), Some("RESP"), Some("END")]
    );
    assert_eq!(
        failed[1]["message"]["message"], "No such container: missing",
        "the error body is shown: {}",
        failed[1]
    );
    assert!(
        failed[0]["headers"].is_array(),
        "the request keeps its headers while held: {}",
        failed[0]
    );
    assert_eq!(stats.failed.map(|f| f.shown), Some(1));
}

/// The `h2` exchange up to the Subscribe request: the call is open, its answer not yet sent.
fn h2_until_subscribe_is_open() -> Vec<Chunk> {
    let chunks = h2_traffic();
    let (all, _) = run(&chunks, Run::default(), End::Close);
    let request = all
        .iter()
        .find(|r| r["type"] == "REQ" && r["method"] == SUBSCRIBE)
        .and_then(|r| r["ts_ns"].as_u64())
        .expect("the exchange has a Subscribe request");
    chunks.into_iter().filter(|c| c.ts_ns <= request).collect()
}

#[test]
fn a_call_cut_by_its_connection_closing_fails_one_open_at_the_end_does_not() {
    let chunks = h2_until_subscribe_is_open();
    let (closed, stats) = run(&chunks, with_x(), End::Close);
    let ends = ends_of(&closed, SUBSCRIBE);
    assert_eq!(ends.len(), 1, "{closed:#?}");
    assert!(
        ends[0]["abnormal"]
            .as_str()
            .is_some_and(|a| a.contains("connection closed")),
        "{}",
        ends[0]
    );
    assert_eq!(
        closed.first().map(|r| &r["type"]),
        Some(&Value::from("REQ"))
    );
    assert_eq!(closed.len(), 2, "the request and the end: {closed:#?}");
    assert_eq!(stats.failed.map(|f| (f.shown, f.unfinished)), Some((1, 0)));
    assert_eq!(stats.clients["ctr"].errors, 1);

    // The same call still open when the capture ends has not failed: dropped, and counted.
    let (open, stats) = run(&chunks, with_x(), End::Capture);
    assert!(open.is_empty(), "{open:#?}");
    assert_eq!(stats.failed.map(|f| (f.shown, f.unfinished)), Some((0, 1)));
    assert_eq!(stats.clients["ctr"].errors, 0, "not an error either");
    // Without -x it shows, ended by the end of the capture.
    let (all, _) = run(&chunks, Run::default(), End::Capture);
    assert_eq!(ends_of(&all, SUBSCRIBE).len(), 1);
}

#[test]
fn calls_that_do_not_fit_are_counted_and_their_failed_end_still_shows() {
    let chunks = h2_traffic();
    let (all, _) = run(&chunks, Run::default(), End::Close);
    // No row fits: every call with a request row overflows as soon as it is held.
    let tiny = HoldLimits {
        calls: MAX_HELD_CALLS,
        bytes: 1,
    };
    let (failed, stats) = run(
        &chunks,
        Run {
            hold: Some(tiny),
            ..with_x()
        },
        End::Close,
    );
    let calls_with_rows = {
        let mut calls: Vec<(u64, u64)> = all
            .iter()
            .filter(|r| r["type"] == "REQ" || r["type"] == "RESP")
            .map(call_of)
            .collect();
        calls.sort_unstable();
        calls.dedup();
        calls.len() as u64
    };
    assert_eq!(calls_with_rows, 8);
    let f = stats.failed.expect("-x counts");
    assert_eq!(
        (f.shown, f.incomplete, f.overflowed),
        (2, 2, calls_with_rows)
    );
    let expected: Vec<Value> = [GET, KILL]
        .iter()
        .flat_map(|m| ends_of(&all, m))
        .cloned()
        .collect();
    assert_eq!(failed, expected, "the ENDs of the failed calls, alone");
    assert!(
        stats
            .summary()
            .contains("-x: 2 failed calls shown (2 of them without rows")
    );
}

#[test]
fn the_call_limit_evicts_the_least_recently_active_call() {
    use crate::protocol::grpc::tests::builders::{
        CLIENT, Peer, RESPONSE, SERVER, Trace, data, grpc, request_fields,
    };
    // Three calls open at once; with room for two, the first one loses its rows.
    let mut client = Peer::new();
    let mut server = Peer::new();
    let mut t = Trace::handshake();
    for (i, stream) in [1u32, 3, 5].into_iter().enumerate() {
        let ts = 10 + i as u64;
        t.push(
            CLIENT,
            ts,
            [
                client.headers(stream, &request_fields(GET), false),
                data(stream, &grpc(b"\x0a\x01x"), true),
            ]
            .concat(),
        );
    }
    for stream in [1u32, 3, 5] {
        let trailers = [RESPONSE, &[("grpc-status", "5")]].concat();
        t.push(
            SERVER,
            20 + u64::from(stream),
            server.headers(stream, &trailers, true),
        );
    }
    let chunks = chunks(
        &t.writes,
        1,
        "/run/x.sock",
        ("ctr", 100),
        ("containerd", 50),
    );
    let two = HoldLimits {
        calls: 2,
        bytes: MAX_HELD_BYTES,
    };
    let (failed, stats) = run(
        &chunks,
        Run {
            hold: Some(two),
            ..with_x()
        },
        End::Capture,
    );
    let f = stats.failed.expect("-x counts");
    assert_eq!((f.shown, f.incomplete, f.overflowed), (3, 1, 1));
    let shape: Vec<(u64, &str)> = failed
        .iter()
        .map(|r| {
            (
                r["stream"].as_u64().unwrap_or(0),
                r["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [(1, "END"), (3, "REQ"), (3, "END"), (5, "REQ"), (5, "END")],
        "stream 1's request did not fit; its end still shows"
    );
}

#[test]
fn the_count_limit_counts_failed_calls() {
    let chunks = h2_traffic();
    let (failed, stats) = run(
        &chunks,
        Run {
            limit: Some(1),
            ..with_x()
        },
        End::Close,
    );
    assert_eq!(
        failed
            .iter()
            .map(|r| r["method"].as_str())
            .collect::<Vec<_>>(),
        [Some(GET), Some(GET)],
        "-n 1: the first failed call, whole"
    );
    assert_eq!(stats.failed.map(|f| f.shown), Some(1));
}

/// `docker attach`: the upgraded connection's raw stream comes after its call's END (101, a
/// success). It is not shown, and not held, not even until the connection ends.
#[test]
fn an_upgraded_raw_stream_follows_its_successful_call() {
    let attach = include_bytes!("../../../tests/fixtures/http1/attach.rec");
    let chunks = chunks(
        &rec_writes(attach),
        1,
        "/run/docker.sock",
        ("docker", 4001),
        ("dockerd", 3001),
    );
    let (all, _) = run(&chunks, Run::default(), End::Close);
    let upgraded = all
        .iter()
        .find(|r| r["type"] == "END")
        .and_then(|r| r["ts_ns"].as_u64())
        .expect("the attach call ends (101)");
    assert!(
        all.iter()
            .any(|r| r["type"] == "RESP" && r["ts_ns"].as_u64() > Some(upgraded)),
        "the raw stream has rows after the call's end: {all:#?}"
    );
    let out = Shared::default();
    let printer: Box<dyn Sink> =
        Box::new(JsonPrinter::new(Box::new(out.clone()), Clock::identity()));
    let plan = Plan {
        failed_only: true,
        ..Plan::default()
    };
    let mut p = Pipeline::new(
        Renderer::new(
            Schema::embedded().expect("schema"),
            RenderOptions::default(),
        ),
        plan,
        vec![printer],
    );
    for c in &chunks {
        p.push(c).expect("push");
    }
    assert_eq!(p.failed_held(), Some((0, 0)), "the raw stream is not held");
    let (a, b) = (chunks[0].sock_id, chunks[0].peer_id);
    p.close_connection(u64::MAX / 2, a, b).expect("close");
    assert!(out.0.borrow().is_empty(), "attach succeeded: nothing shown");
    let f = p.stats.failed.expect("-x counts");
    assert_eq!((f.shown, f.overflowed, f.unfinished), (0, 0, 0));
}

/// A server that answers before the request's DATA is written (trailers-only
/// `Unimplemented`, as containerd 2.x does for CRI v1alpha2): the failed call's request row
/// comes after its END, and is shown with it.
#[test]
fn a_request_after_its_failed_calls_end_is_shown() {
    use crate::protocol::grpc::tests::builders::{
        CLIENT, Peer, SERVER, Trace, data, grpc, request_fields,
    };
    const V1ALPHA2: &str = "/runtime.v1alpha2.RuntimeService/Version";
    let mut t = Trace::handshake();
    let (mut c, mut s) = (Peer::new(), Peer::new());
    t.push(CLIENT, 10, c.headers(1, &request_fields(V1ALPHA2), false));
    let unimplemented = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "12"),
    ];
    t.push(SERVER, 20, s.headers(1, &unimplemented, true));
    t.push(CLIENT, 30, data(1, &grpc(b""), true));
    // A call that succeeds the same way is not shown, its late request neither.
    t.push(CLIENT, 40, c.headers(3, &request_fields(V1ALPHA2), false));
    let ok = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "0"),
    ];
    t.push(SERVER, 50, s.headers(3, &ok, true));
    t.push(CLIENT, 60, data(3, &grpc(b""), true));
    let chunks = chunks(
        &t.writes,
        1,
        "/run/x.sock",
        ("crictl", 100),
        ("containerd", 50),
    );
    let (all, _) = run(&chunks, Run::default(), End::Capture);
    let (failed, stats) = run(&chunks, with_x(), End::Capture);
    let shape = |rows: &[Value]| -> Vec<(u64, String)> {
        rows.iter()
            .map(|r| {
                let kind = r["type"].as_str().unwrap_or("").to_string();
                (r["stream"].as_u64().unwrap_or(0), kind)
            })
            .collect()
    };
    assert_eq!(
        shape(&all)[..2],
        [(1, "END".to_string()), (1, "REQ".to_string())],
        "the request comes after the end: {all:#?}"
    );
    assert_eq!(shape(&failed), shape(&all)[..2], "{failed:#?}");
    assert_eq!(failed[0]["status_code"], 12);
    let f = stats.failed.expect("-x counts");
    assert_eq!((f.shown, f.unfinished), (1, 0));
}

/// A server's GOAWAY that leaves a call unprocessed fails that call; the call it had answered
/// did not fail, and the GOAWAY's own notice belongs to no call.
#[test]
fn a_call_a_goaway_left_unprocessed_is_shown() {
    use crate::protocol::grpc::tests::builders::{
        CLIENT, Peer, RESPONSE, SERVER, Trace, data, goaway, grpc, request_fields,
    };
    let mut client = Peer::new();
    let mut server = Peer::new();
    let mut t = Trace::handshake();
    for stream in [1u32, 3] {
        let request = [
            client.headers(stream, &request_fields(GET), false),
            data(stream, &grpc(b"\x0a\x01x"), true),
        ]
        .concat();
        t.push(CLIENT, 10 + u64::from(stream), request);
    }
    let ok = [RESPONSE, &[("grpc-status", "0")]].concat();
    t.push(SERVER, 20, server.headers(1, &ok, true));
    t.push(SERVER, 21, goaway(1, 0, b"shutting down"));
    let chunks = chunks(
        &t.writes,
        1,
        "/run/x.sock",
        ("ctr", 100),
        ("containerd", 50),
    );
    let (all, _) = run(&chunks, Run::default(), End::Capture);
    assert!(
        all.iter().any(|r| r["type"] == "NOTE"
            && r["notice"]
                .as_str()
                .is_some_and(|n| n.starts_with("GOAWAY"))),
        "{all:#?}"
    );
    let (failed, stats) = run(&chunks, with_x(), End::Capture);
    let shape: Vec<(u64, &str)> = failed
        .iter()
        .map(|r| {
            (
                r["stream"].as_u64().unwrap_or(0),
                r["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(shape, [(3, "REQ"), (3, "END")], "{failed:#?}");
    assert!(
        failed[1]["abnormal"]
            .as_str()
            .is_some_and(|a| a.starts_with("not processed: GOAWAY from server")),
        "{}",
        failed[1]
    );
    assert_eq!(stats.failed.map(|f| f.shown), Some(1));
}

#[test]
fn recent_ends_forget_the_oldest_first() {
    let mut ends = RecentEnds::new(2);
    ends.push((1, 1), true);
    ends.push((1, 3), false);
    ends.push((1, 3), true);
    assert_eq!(
        ends.failed(&(1, 3)),
        Some(true),
        "the latest word on a call"
    );
    ends.push((2, 1), false);
    assert_eq!(ends.failed(&(1, 1)), None, "the oldest made room");
    assert_eq!(
        (ends.failed(&(1, 3)), ends.failed(&(2, 1))),
        (Some(true), Some(false))
    );
    assert_eq!((ends.failed.len(), ends.order.len()), (2, 2));
}
