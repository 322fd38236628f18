//! ttrpc exchanges as traces (`kit::trace`): one line per event, so each test states the whole
//! conversation the decoder saw, including message indexes and how each call ended.

use super::Connection;
use super::frame::{FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, TYPE_DATA};
use super::tests::{TASK, frame, request, request_with, response};
use crate::protocol::call::{ConnEnd, Side};
use crate::protocol::decoder::ConnDecoder;
use crate::protocol::detect::testing::{parse_recording, run, writes};
use crate::protocol::kit::trace;

const SHIM_EVENTS: &[u8] = include_bytes!("../../../tests/fixtures/ttrpc/shim-events.rec");

/// Feeds the writes, then closes the connection; the trace of what came out.
fn exchange(w: &[(Side, u64, Vec<u8>)]) -> Vec<String> {
    let mut c = Connection::default();
    let mut out = run(&mut c, w);
    c.close(1_000, ConnEnd::Closed, &mut out);
    trace(&out)
}

#[test]
fn error_status_ends_the_call_without_a_message() {
    let t = exchange(&[
        (Side::A, 1, request(3, TASK, "Kill", b"")),
        (Side::B, 2, response(3, 5, "container \"x\" not found", b"")),
    ]);
    assert_eq!(
        t,
        [
            "A#3 START /containerd.task.v2.Task/Kill",
            "A#3 MSG req[0] pb(0 bytes)",
            r#"B#3 END 5 container "x" not found latency=1ns"#,
        ]
    );
}

#[test]
fn streaming_calls_count_messages_per_direction() {
    let streamer = "ttrpc.test.Streamer";
    let t = exchange(&[
        // Client streaming: request "remote open", data, close with no data, then response.
        (
            Side::A,
            1,
            request_with(1, streamer, "Sum", b"", 0, &[], FLAG_REMOTE_OPEN),
        ),
        (Side::A, 2, frame(1, TYPE_DATA, 0, b"\x08\x01")),
        (Side::A, 3, frame(1, TYPE_DATA, 0, b"\x08\x02")),
        (
            Side::A,
            4,
            frame(1, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, b""),
        ),
        (Side::B, 5, response(1, 0, "", b"\x08\x03")),
        // Server streaming: request "remote closed", data from the server, last one closes.
        (
            Side::A,
            6,
            request_with(
                3,
                streamer,
                "Echo",
                b"\x0a\x01x",
                0,
                &[],
                FLAG_REMOTE_CLOSED,
            ),
        ),
        (Side::B, 7, frame(3, TYPE_DATA, 0, b"\x0a\x01a")),
        (
            Side::B,
            8,
            frame(3, TYPE_DATA, FLAG_REMOTE_CLOSED, b"\x0a\x01b"),
        ),
        // A call still open when the connection closes ends there.
        (Side::A, 9, request(5, TASK, "Wait", b"")),
    ]);
    assert_eq!(
        t,
        [
            "A#1 START /ttrpc.test.Streamer/Sum",
            "A#1 MSG req[0] pb(0 bytes)",
            "A#1 MSG req[1] pb(2 bytes)",
            "A#1 MSG req[2] pb(2 bytes)",
            "B#1 MSG resp[0] pb(2 bytes)",
            "B#1 END 0 latency=4ns",
            "A#3 START /ttrpc.test.Streamer/Echo",
            "A#3 MSG req[0] pb(3 bytes)",
            "B#3 MSG resp[0] pb(3 bytes)",
            "B#3 MSG resp[1] pb(3 bytes)",
            "B#3 END 0 latency=2ns",
            "A#5 START /containerd.task.v2.Task/Wait",
            "A#5 MSG req[0] pb(0 bytes)",
            "B#5 END ? [connection closed] latency=991ns",
        ]
    );
}

/// The shim forwards events to containerd: four unary calls on odd stream ids, each answered
/// with `google.protobuf.Empty` 1 µs (one write) later.
#[test]
fn recorded_shim_events_read_like_a_trace() {
    let mut c = Connection::default();
    let t = trace(&run(
        &mut c,
        &writes(&parse_recording(SHIM_EVENTS), Side::B),
    ));
    let shape: Vec<String> = t
        .iter()
        .map(|l| match l.split_once(" pb(") {
            // Event payload sizes are the recording's; the shape is the point here.
            Some((head, _)) if head.starts_with('B') => format!("{head} pb(…)"),
            _ => l.clone(),
        })
        .collect();
    let mut want = Vec::new();
    for stream in [1, 3, 5, 7] {
        want.push(format!(
            "B#{stream} START /containerd.services.events.ttrpc.v1.Events/Forward"
        ));
        want.push(format!("B#{stream} MSG req[0] pb(…)"));
        want.push(format!("A#{stream} MSG resp[0] pb(0 bytes)"));
        want.push(format!("A#{stream} END 0 latency=1000ns"));
    }
    assert_eq!(shape, want);
}
