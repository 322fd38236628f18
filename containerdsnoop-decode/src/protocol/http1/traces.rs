//! HTTP/1.1 exchanges as traces (`kit::trace`): one line per event, so each test states the
//! whole conversation the decoder saw. Regression tests are named after the bug they fix.

use super::Connection;
use crate::protocol::call::{CallEventKind, ConnEnd, Role, Side};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::detect::testing::{parse_recording, run, writes};
use crate::protocol::kit::trace;

use super::recordings::*;

/// Feeds `(side, bytes)` writes stamped 1000, 2000, …; the trace of what came out.
fn exchange(writes: &[(Side, &[u8])]) -> Vec<String> {
    let mut c = Connection::default();
    let mut out = Vec::new();
    for (i, (side, bytes)) in writes.iter().enumerate() {
        c.feed(*side, 1000 * (i as u64 + 1), bytes, &mut out);
    }
    c.close(99_000, ConnEnd::Closed, &mut out);
    trace(&out)
}

/// Replays a recording with the client on side A, plus `more` writes after it.
fn replay(rec: &[u8], more: &[(Side, &[u8])]) -> Vec<String> {
    let mut w = writes(&parse_recording(rec), Side::A);
    let next = w.len() as u64 + 1;
    for (i, (side, bytes)) in more.iter().enumerate() {
        w.push((*side, 1000 * (next + i as u64), bytes.to_vec()));
    }
    let mut c = Connection::default();
    trace(&run(&mut c, &w))
}

/// The lines of `trace` whose text contains `what`.
fn only<'a>(trace: &'a [String], what: &str) -> Vec<&'a str> {
    trace
        .iter()
        .filter(|l| l.contains(what))
        .map(String::as_str)
        .collect()
}

#[test]
fn pipelined_requests_read_like_a_trace() {
    let t = exchange(&[
        (Side::A, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
        (
            Side::B,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb",
        ),
    ]);
    assert_eq!(
        t,
        [
            "A#1 START GET /a",
            "A#1 MSG req[0] text()",
            "A#2 START GET /b",
            "A#2 MSG req[0] text()",
            "B#1 MSG resp[0] text(a)",
            "B#1 END 200 OK latency=1000ns",
            "B#2 MSG resp[0] text(b)",
            "B#2 END 201 Created latency=1000ns",
        ]
    );
}

/// Requests without a body (`HEAD /_ping`, `GET …/json`, `DELETE`, `POST …/start`) had no
/// REQ row: only RESP and END, so their request line and headers were never shown.
#[test]
fn regression_bodiless_requests_get_a_req_row() {
    let t = exchange(&[
        (Side::A, b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"),
        (Side::B, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
        (Side::A, b"DELETE /v1.41/containers/x HTTP/1.1\r\n\r\n"),
        (Side::B, b"HTTP/1.1 204 No Content\r\n\r\n"),
        (
            Side::A,
            b"POST /v1.41/containers/x/start HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
        ),
        (Side::B, b"HTTP/1.1 204 No Content\r\n\r\n"),
        // One with a body still has exactly one REQ row: its body.
        (Side::A, b"POST /build HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
        (Side::B, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        // A request whose body never came is still a row when the connection ends.
        (Side::A, b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n"),
    ]);
    assert_eq!(
        t,
        [
            "A#1 START HEAD /_ping",
            "A#1 MSG req[0] text()",
            "B#1 END 200 OK latency=1000ns",
            "A#2 START DELETE /v1.41/containers/x",
            "A#2 MSG req[0] text()",
            "B#2 END 204 No Content latency=1000ns",
            "A#3 START POST /v1.41/containers/x/start",
            "A#3 MSG req[0] text()",
            "B#3 END 204 No Content latency=1000ns",
            "A#4 START POST /build",
            "A#4 MSG req[0] text(hi)",
            "B#4 END 200 OK latency=1000ns",
            "A#5 START PUT /x",
            "A#5 MSG req[0] unavailable(body cut short: connection closed; 0 bytes)",
            "B#5 END ? [connection closed before the response] latency=90000ns",
        ]
    );
}

/// A request whose body cannot be framed is still one REQ row, then the hunt.
#[test]
fn unframeable_request_is_one_unavailable_req_row() {
    let t = exchange(&[(
        Side::A,
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )]);
    assert_eq!(
        t,
        [
            "A#1 START POST /x",
            "A#1 MSG req[0] unavailable(body cannot be framed: conflicting Content-Length values 5 and 6; 0 bytes)",
            "A#0 NOTE HTTP client→server desynchronised: conflicting Content-Length values 5 and 6; looking for the next request",
            "B#1 END ? [connection closed before the response] latency=98000ns",
        ]
    );
}

/// Every request of docker's real traffic has exactly one REQ row with index 0, right after
/// its start and before its response.
#[test]
fn regression_recorded_requests_each_get_one_req_row() {
    for (name, rec) in [
        ("version", VERSION),
        ("ps", PS),
        ("info", INFO),
        ("events", EVENTS),
        ("logs", LOGS_FOLLOW),
        ("run", RUN_CREATE_WAIT),
        ("attach", ATTACH),
        ("exec", EXEC_START),
    ] {
        let mut c = Connection::default();
        let ev = run(&mut c, &writes(&parse_recording(rec), Side::A));
        let starts: Vec<u64> = ev
            .iter()
            .filter(|e| matches!(e.kind, CallEventKind::Start { .. }))
            .map(|e| e.stream)
            .collect();
        let first_reqs: Vec<u64> = ev
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    CallEventKind::Message {
                        role: Role::Request,
                        index: 0,
                        ..
                    }
                )
            })
            .map(|e| e.stream)
            .collect();
        assert!(!starts.is_empty(), "{name}");
        assert_eq!(first_reqs, starts, "{name}: {:#?}", trace(&ev));
        // Nothing from the server on a stream before its request row.
        for s in starts {
            let req = ev.iter().position(|e| {
                e.stream == s
                    && matches!(e.kind, CallEventKind::Message { .. })
                    && e.side == Side::A
            });
            let resp = ev.iter().position(|e| e.stream == s && e.side == Side::B);
            assert!(req < resp || resp.is_none(), "{name} stream {s}");
        }
    }
    // The version call's trace, whole but for the JSON body.
    let t = replay(VERSION, &[]);
    assert_eq!(
        only(&t, "#1 "),
        [
            "A#1 START HEAD /_ping",
            "A#1 MSG req[0] text()",
            "B#1 END 200 OK latency=1000ns",
        ]
    );
    assert_eq!(
        only(&t, "A#2 "),
        ["A#2 START GET /v1.41/version", "A#2 MSG req[0] text()"]
    );
}

/// After `101 Switching Protocols` the client's raw bytes restarted at index 0 on the same
/// stream, though docs/json.md counts messages within the call and direction.
#[test]
fn regression_index_keeps_counting_after_an_upgrade() {
    // exec start: the JSON body is request 0, the raw stdin after 101 is request 1.
    let t = replay(EXEC_START, &[(Side::A, b"echo hi\n"), (Side::A, b"exit\n")]);
    assert_eq!(
        only(&t, "req["),
        [
            r#"A#1 MSG req[0] text({"Detach":false,"Tty":false})"#,
            r"A#1 MSG req[1] raw(echo hi\n)",
            r"A#1 MSG req[2] raw(exit\n)",
        ]
    );
    assert_eq!(
        only(&t, "resp["),
        [r"B#1 MSG resp[0] raw(\x01\x00\x00\x00\x00\x00\x00\texec-out\n)"]
    );
    // attach: no body, so the head is request 0 and stdin starts at 1.
    let t = replay(ATTACH, &[(Side::A, b"ls\n")]);
    assert_eq!(
        only(&t, "req["),
        ["A#1 MSG req[0] text()", r"A#1 MSG req[1] raw(ls\n)"]
    );
    // Stdin sent before the answer (held while waiting) continues the count too.
    let t = exchange(&[
        (
            Side::A,
            b"POST /exec/x/start HTTP/1.1\r\nUpgrade: tcp\r\nConnection: Upgrade\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}early",
        ),
        (Side::B, b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n"),
        (Side::B, b"out"),
        (Side::A, b"late"),
    ]);
    assert_eq!(
        t,
        [
            "A#1 START POST /exec/x/start",
            "A#1 MSG req[0] text({})",
            "B#1 END 101 UPGRADED latency=1000ns",
            r#"B#1 NOTE connection switched to "tcp": no more HTTP on it"#,
            "A#1 MSG req[1] raw(early)",
            "B#1 MSG resp[0] raw(out)",
            "A#1 MSG req[2] raw(late)",
        ]
    );
}
