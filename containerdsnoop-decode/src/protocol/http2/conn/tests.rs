//! The transport on its own: wire bytes in, stream events out through a sink that records them,
//! with no gRPC above it. What the events mean for calls is tested in `grpc::tests`.

use super::{Connection, PREFACE};
use crate::protocol::call::{Role, Side};
use crate::protocol::http2::frame::flags;
use crate::protocol::http2::frame::tests::frame;
use crate::protocol::http2::hpack::HeaderList;
use crate::protocol::http2::sink::{Origin, StreamSink};

const CLIENT: Side = Side::A;
const SERVER: Side = Side::B;

/// Every event, rendered as a line, in the order the transport handed them over.
#[derive(Default)]
struct Recorder {
    lines: Vec<String>,
    /// What `resume` answers (messages cut).
    cut: usize,
}

fn who(at: Origin) -> String {
    let role = match at.role {
        Role::Request => "client",
        Role::Response => "server",
    };
    format!("{role}@{}", at.ts_ns)
}

impl StreamSink for Recorder {
    fn headers(&mut self, at: Origin, stream: u32, list: &HeaderList, end_stream: bool) {
        let fields: Vec<String> = list
            .fields
            .iter()
            .map(|f| {
                let name = f.name_str().unwrap_or("?");
                let value = f.value.as_deref().map(String::from_utf8_lossy);
                format!("{name}={}", value.unwrap_or_default())
            })
            .collect();
        let (at, end) = (who(at), end_stream);
        self.lines.push(format!(
            "{at} headers {stream} end={end} {}",
            fields.join(",")
        ));
    }
    fn data(&mut self, at: Origin, stream: u32, data: &[u8], end_stream: bool) {
        let (at, end, data) = (who(at), end_stream, String::from_utf8_lossy(data));
        self.lines
            .push(format!("{at} data {stream} end={end} {data}"));
    }
    fn reset(&mut self, at: Origin, stream: u32, code: u32) {
        self.lines
            .push(format!("{} reset {stream} {code}", who(at)));
    }
    fn goaway(&mut self, at: Origin, last_stream: u32, code: u32) {
        let at = who(at);
        self.lines.push(format!("{at} goaway {last_stream} {code}"));
    }
    fn resume(&mut self, at: Origin, lost: bool) -> usize {
        self.lines.push(format!("{} resume lost={lost}", who(at)));
        self.cut
    }
    fn notice(&mut self, ts_ns: u64, side: Side, text: String) {
        self.lines.push(format!("notice {ts_ns} {side:?} {text}"));
    }
}

fn headers(
    enc: &mut hpack::Encoder<'_>,
    stream: u32,
    fields: &[(&str, &str)],
    end: bool,
) -> Vec<u8> {
    let block = enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    let f = flags::END_HEADERS | if end { flags::END_STREAM } else { 0 };
    frame(0x1, f, stream, &block)
}

/// Preface, both SETTINGS and ACKs, then one exchange with a split header block, a reset and a
/// GOAWAY.
fn exchange() -> Vec<(Side, u64, Vec<u8>)> {
    let (mut c, mut s) = (hpack::Encoder::new(), hpack::Encoder::new());
    let request = headers(
        &mut c,
        1,
        &[(":method", "POST"), (":path", "/a.B/C")],
        false,
    );
    // The same block cut into HEADERS + CONTINUATION.
    let (first, rest) = request[9..].split_at(3);
    let split = [
        frame(0x1, 0, 1, first),
        frame(0x9, flags::END_HEADERS, 1, rest),
    ]
    .concat();
    vec![
        (
            CLIENT,
            1,
            [PREFACE.to_vec(), frame(0x4, 0, 0, &[])].concat(),
        ),
        (
            SERVER,
            2,
            [frame(0x4, 0, 0, &[]), frame(0x4, 1, 0, &[])].concat(),
        ),
        (CLIENT, 3, frame(0x4, 1, 0, &[])),
        (CLIENT, 10, split),
        (CLIENT, 11, frame(0x0, flags::END_STREAM, 1, b"ping")),
        (SERVER, 12, headers(&mut s, 1, &[(":status", "200")], false)),
        (SERVER, 13, frame(0x0, 0, 1, b"pong")),
        (CLIENT, 14, frame(0x3, 0, 1, &8u32.to_be_bytes())),
        (SERVER, 15, frame(0x7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0])),
    ]
}

#[test]
fn frames_become_stream_events_in_wire_order() {
    let mut conn = Connection::default();
    let mut rec = Recorder::default();
    for (side, ts, bytes) in exchange() {
        conn.feed(side, ts, &bytes, &mut rec);
    }
    assert_eq!(
        rec.lines,
        [
            "client@10 headers 1 end=false :method=POST,:path=/a.B/C",
            "client@11 data 1 end=true ping",
            "server@12 headers 1 end=false :status=200",
            "server@13 data 1 end=false pong",
            "client@14 reset 1 8",
            "notice 15 B GOAWAY from server: NO_ERROR, last stream 1",
            "server@15 goaway 1 0",
        ]
    );
    assert_eq!(conn.client(), Some(CLIENT));
    let st = conn.stats();
    assert_eq!((st.frames, st.header_blocks, st.desyncs), (11, 2, 0));
}

#[test]
fn a_loss_asks_the_sink_what_was_cut_and_says_so_once() {
    let mut conn = Connection::default();
    let mut rec = Recorder {
        cut: 2,
        ..Recorder::default()
    };
    for (side, ts, bytes) in exchange().into_iter().take(4) {
        conn.feed(side, ts, &bytes, &mut rec);
    }
    rec.lines.clear();
    conn.gap(SERVER, 20, 100, &mut rec);
    conn.gap(SERVER, 21, 100, &mut rec);
    assert_eq!(
        rec.lines,
        [
            "server@20 resume lost=true",
            "notice 20 B server→client desynchronised: capture lost 100 bytes; searching for the \
             next frame boundary (2 messages cut)",
        ]
    );
    assert!(conn.is_desynchronised(SERVER) && !conn.is_desynchronised(CLIENT));
    assert_eq!((conn.stats().gaps, conn.stats().desyncs), (2, 1));
}

#[test]
fn a_late_join_resumes_both_roles_until_the_client_is_known() {
    let mut conn = Connection::default();
    let mut rec = Recorder::default();
    conn.joined(SERVER, 1000, &mut rec);
    conn.set_client(CLIENT);
    conn.joined(CLIENT, 1000, &mut rec);
    assert_eq!(
        rec.lines,
        [
            "client@0 resume lost=false",
            "server@0 resume lost=false",
            "client@0 resume lost=false",
        ]
    );
}
