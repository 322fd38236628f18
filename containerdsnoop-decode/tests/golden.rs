//! Golden files: recorded real traffic replayed through the whole decoding pipeline and
//! rendered to the table and to JSON: `--raw -o json` captures of containerd and its clients
//! (`tests/fixtures/containerd/`), docker CLI ↔ dockerd HTTP/1.1 (`tests/fixtures/http1/`) and
//! containerd ↔ shim ttrpc (`tests/fixtures/ttrpc/`) recordings. `UPDATE_GOLDEN=1 cargo test
//! --test golden` rewrites the expected files after a deliberate change; review the diff.

use std::{io::Write, path::PathBuf};

use containerdsnoop_common::flags;
use containerdsnoop_decode::{
    output::sink::{Renderer, Sink},
    output::{json::JsonPrinter, table::TablePrinter, time::Clock},
    pipeline::{Pipeline, Plan},
    record::{Chunk, chunks_from_raw_jsonl},
    schema::{RenderOptions, Schema},
};

/// A `Write` that the test can read back after the pipeline is done with it.
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn replay(capture: &str, json: bool) -> String {
    let chunks = chunks_from_raw_jsonl(capture);
    replay_chunks(&chunks, json)
}

/// Every chunk through a fresh pipeline, then the end of the capture: the printed rows.
fn replay_chunks(chunks: &[Chunk], json: bool) -> String {
    let out = Shared::default();
    let printer: Box<dyn Sink> = if json {
        Box::new(JsonPrinter::new(Box::new(out.clone()), Clock::identity()))
    } else {
        Box::new(TablePrinter::new(
            Box::new(out.clone()),
            Clock::identity(),
            None,
        ))
    };
    let schema = Schema::embedded().expect("embedded schema");
    let mut p = Pipeline::new(
        Renderer::new(schema, RenderOptions::default()),
        Plan::default(),
        vec![printer],
    );
    assert!(!chunks.is_empty(), "fixture has records");
    for c in chunks {
        p.push(c).expect("push");
    }
    p.finish(
        chunks.last().map_or(0, |c| c.ts_ns),
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .expect("finish");
    String::from_utf8(out.0.borrow().clone()).expect("utf-8")
}

fn check(name: &str, json: bool) {
    let capture = std::fs::read_to_string(fixtures().join(format!("containerd/{name}.jsonl")))
        .expect("fixture");
    compare("containerd", name, json, &replay(&capture, json));
}

/// Compares `got` with `fixtures/{dir}/{name}.{table,json}.golden` (or rewrites it).
fn compare(dir: &str, name: &str, json: bool, got: &str) {
    let dir = fixtures().join(dir);
    let expected_path = dir.join(format!(
        "{name}.{}",
        if json { "json.golden" } else { "table.golden" }
    ));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, got).expect("write golden");
        return;
    }
    let expected =
        std::fs::read_to_string(&expected_path).expect("golden file (UPDATE_GOLDEN=1 to create)");
    if got != expected {
        for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            if g != e {
                panic!("{name}: line {} differs\n got: {g}\nwant: {e}", i + 1);
            }
        }
        panic!(
            "{name}: output has {} lines, golden {}",
            got.lines().count(),
            expected.lines().count()
        );
    }
}

/// The processes at both ends of a recorded connection and the socket path the server bound.
struct RecConn {
    path: &'static str,
    client: (&'static str, u32),
    server: (&'static str, u32),
}

const DOCKER: RecConn = RecConn {
    path: "/run/docker.sock",
    client: ("docker", 4001),
    server: ("dockerd", 3001),
};

/// Parses a `.rec` recording (`> LEN` for a client write, `< LEN` for a server write, then the
/// bytes and a newline; see `tests/fixtures/http1/README.md`) into the records the kernel side
/// would have produced for it: the client's socket is identity 11, the server's 12 (so the
/// client is side A), one record per write, 1 ms apart, stream positions counted per side.
fn chunks_from_rec(rec: &[u8], conn: &RecConn) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut sent = [0u64; 2];
    let mut rest = rec;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&c| c == b'\n').expect("header line");
        let head = std::str::from_utf8(&rest[..nl]).expect("ascii header");
        let (mark, len) = head.split_once(' ').expect("mark and length");
        let len: usize = len.parse().expect("length");
        let client = match mark {
            ">" => true,
            "<" => false,
            other => panic!("bad mark {other:?}"),
        };
        let data = rest[nl + 1..nl + 1 + len].to_vec();
        assert_eq!(rest[nl + 1 + len], b'\n', "record terminator");
        rest = &rest[nl + 2 + len..];
        let (me, peer) = if client {
            (conn.client, conn.server)
        } else {
            (conn.server, conn.client)
        };
        let (id, peer_id) = if client { (11, 12) } else { (12, 11) };
        let mut flags = flags::BACKEND_TRACEPOINT | flags::CALL_END;
        if client {
            // The client only connected: the path it matched is its peer's.
            flags |= flags::PATH_IS_PEER;
        }
        let side = usize::from(!client);
        chunks.push(Chunk {
            ts_ns: 1_000_000 * (chunks.len() as u64 + 1),
            sock_ino: 1000 + id,
            peer_ino: 1000 + peer_id,
            sock_id: id,
            peer_id,
            stream_pos: sent[side],
            call_len: len as u32,
            chunk_off: 0,
            span_len: len as u32,
            flags,
            tgid: me.1,
            tid: me.1,
            peer_tgid: peer.1,
            lost_records: 0,
            pattern: 0,
            sock_type: 1,
            comm: me.0.to_string(),
            process_comm: me.0.to_string(),
            path: conn.path.to_string(),
            data,
        });
        sent[side] += len as u64;
    }
    chunks
}

fn rec_chunks(dir: &str, name: &str, conn: &RecConn) -> Vec<Chunk> {
    let rec = std::fs::read(fixtures().join(format!("{dir}/{name}.rec"))).expect("fixture");
    chunks_from_rec(&rec, conn)
}

const HTTP1_RECORDINGS: [&str; 8] = [
    "version",
    "ps",
    "info",
    "events",
    "logs-follow",
    "run-create-wait",
    "attach",
    "exec-start",
];

#[test]
fn http1_recordings_table_and_json() {
    for name in HTTP1_RECORDINGS {
        let chunks = rec_chunks("http1", name, &DOCKER);
        for json in [false, true] {
            compare("http1", name, json, &replay_chunks(&chunks, json));
        }
    }
}

#[test]
fn ttrpc_recordings_table_and_json() {
    let shim = RecConn {
        path: "/run/containerd/s/4f1a9c2e",
        client: ("containerd", 3437),
        server: ("containerd-shim", 5120),
    };
    let events = RecConn {
        path: "/run/containerd/containerd.sock.ttrpc",
        client: ("containerd-shim", 5120),
        server: ("containerd", 3437),
    };
    for (name, conn) in [("shim-task", &shim), ("shim-events", &events)] {
        let chunks = rec_chunks("ttrpc", name, conn);
        for json in [false, true] {
            compare("ttrpc", name, json, &replay_chunks(&chunks, json));
        }
    }
}

/// HTTP/1.1 END rows printed the gRPC form `Status(200)`: they read `200 OK latency=…`.
#[test]
fn regression_http1_end_row_reads_status_text() {
    let table = replay_chunks(&rec_chunks("http1", "version", &DOCKER), false);
    let ends: Vec<&str> = table.lines().filter(|l| l.contains(" END ")).collect();
    assert_eq!(ends.len(), 2, "{table}");
    for end in ends {
        assert!(end.ends_with("200 OK latency=1.000ms"), "{end}");
        assert!(!end.contains("Status("), "{end}");
    }
    // gRPC and ttrpc keep their status names.
    let ttrpc = replay_chunks(
        &rec_chunks(
            "ttrpc",
            "shim-task",
            &RecConn {
                path: "/run/containerd/s/4f1a9c2e",
                client: ("containerd", 3437),
                server: ("containerd-shim", 5120),
            },
        ),
        false,
    );
    assert!(
        ttrpc
            .lines()
            .any(|l| l.contains(" END ") && l.contains("OK(0) latency="))
    );
}

/// Every HTTP/1.1 recording decodes fully: no notice but the switch to raw bytes (attach,
/// exec), and every call ends with the status dockerd sent.
#[test]
fn http1_recordings_decode_fully() {
    for name in HTTP1_RECORDINGS {
        let rows = json_rows(&replay_chunks(&rec_chunks("http1", name, &DOCKER), true));
        assert!(
            rows.iter().all(|r| r["type"] != "NOTE"
                || r["notice"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("connection switched to"))),
            "{name}"
        );
        assert!(rows.iter().all(|r| r["protocol"] == "http1"), "{name}");
        assert!(
            rows.iter()
                .filter(|r| r["type"] == "END")
                .all(|r| r["status_code"]
                    .as_u64()
                    .is_some_and(|c| (100..600).contains(&c))),
            "{name}"
        );
    }
}

/// Every HTTP/1.1 call shows its request: one REQ row with index 0 carrying the request
/// headers, before anything else of the call (requests without a body had none).
#[test]
fn regression_http1_every_request_has_a_req_row_with_headers() {
    for name in HTTP1_RECORDINGS {
        let rows = json_rows(&replay_chunks(&rec_chunks("http1", name, &DOCKER), true));
        let mut streams: Vec<u64> = rows.iter().filter_map(|r| r["stream"].as_u64()).collect();
        streams.sort_unstable();
        streams.dedup();
        for s in streams {
            let call: Vec<&serde_json::Value> = rows
                .iter()
                .filter(|r| r["stream"] == s && r["type"] != "NOTE")
                .collect();
            let first = call.first().expect("rows of the call");
            assert_eq!(
                (first["type"].as_str(), first["index"].as_u64()),
                (Some("REQ"), Some(0)),
                "{name} stream {s}"
            );
            let headers = first["headers"].as_array().expect("headers");
            assert!(
                headers.iter().any(|h| h[0] == "User-Agent"),
                "{name} stream {s}"
            );
            let req0 = call
                .iter()
                .filter(|r| r["type"] == "REQ" && r["index"] == 0)
                .count();
            assert_eq!(req0, 1, "{name} stream {s}");
        }
    }
}

/// The HTTP/1.1 and ttrpc recordings give the same rows however their records are cut (but
/// attach and exec, whose raw bytes after the upgrade are one message per captured write).
#[test]
fn recording_rows_do_not_depend_on_where_records_split() {
    let shim = RecConn {
        path: "/run/containerd/s/4f1a9c2e",
        client: ("containerd", 3437),
        server: ("containerd-shim", 5120),
    };
    let mut recordings: Vec<Vec<Chunk>> = HTTP1_RECORDINGS
        .iter()
        .filter(|n| !matches!(**n, "attach" | "exec-start"))
        .map(|n| rec_chunks("http1", n, &DOCKER))
        .collect();
    recordings.push(rec_chunks("ttrpc", "shim-task", &shim));
    for chunks in &recordings {
        let whole = replay_chunks(chunks, true);
        for seed in 1..=10 {
            let split = split_chunks(chunks, seed);
            assert!(split.len() > chunks.len());
            assert_eq!(replay_chunks(&split, true), whole, "seed {seed}");
        }
    }
}

/// Cuts every chunk into pieces at pseudo-random points, keeping stream positions and
/// timestamps (as `resplit` does for JSONL captures).
fn split_chunks(chunks: &[Chunk], seed: u64) -> Vec<Chunk> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut out = Vec::new();
    for c in chunks {
        let mut start = 0;
        while start < c.data.len() {
            let rest = c.data.len() - start;
            let len = (1 + next(rest.min(64))).min(rest);
            let mut piece = c.clone();
            piece.stream_pos = c.stream_pos + start as u64;
            piece.data = c.data[start..start + len].to_vec();
            piece.span_len = len as u32;
            piece.call_len = len as u32;
            out.push(piece);
            start += len;
        }
    }
    out
}

fn json_rows(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn ctr_basic_table() {
    check("ctr-basic", false);
}

#[test]
fn ctr_basic_json() {
    check("ctr-basic", true);
}

#[test]
fn ctr_basic_rows_are_what_containerd_said() {
    let capture =
        std::fs::read_to_string(fixtures().join("containerd/ctr-basic.jsonl")).expect("fixture");
    let rows: Vec<serde_json::Value> = replay(&capture, true)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let version = rows
        .iter()
        .find(|r| {
            r["type"] == "RESP" && r["method"] == "/containerd.services.version.v1.Version/Version"
        })
        .expect("version response");
    assert_eq!(version["message"]["version"], "1.6.20~ds1");
    assert_eq!(version["comm"], "containerd");
    assert_eq!(version["peer_comm"], "ctr");
    let not_found = rows
        .iter()
        .find(|r| {
            r["type"] == "END" && r["method"] == "/containerd.services.containers.v1.Containers/Get"
        })
        .expect("Get end");
    assert_eq!(not_found["status_code"], 5);
    assert_eq!(not_found["namespace"], "testns");
    // Every connection decoded from its first byte, none desynchronised.
    assert!(rows.iter().all(|r| r["type"] != "NOTE"), "no notices");
    assert!(rows.iter().all(|r| r["sync"] == "from_start"));
}

/// Cuts every record into pieces at pseudo-random points (keeping each piece's stream
/// position and the record's timestamp), the way a different write pattern would.
fn resplit(capture: &str, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut out = String::new();
    for line in capture.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(chunk) = containerdsnoop_decode::record::chunk_from_raw_json(&v) else {
            continue;
        };
        let mut start = 0;
        while start < chunk.data.len() {
            let rest = chunk.data.len() - start;
            // Mostly small pieces, sometimes 1 byte, sometimes the rest.
            let len = match next(4) {
                0 => 1,
                1 => rest,
                _ => 1 + next(rest.min(40)),
            }
            .min(rest);
            let mut piece = v.clone();
            piece["stream_pos"] = serde_json::json!(chunk.stream_pos + start as u64);
            piece["len"] = serde_json::json!(len);
            use base64::Engine as _;
            piece["data"] = serde_json::json!(
                base64::engine::general_purpose::STANDARD.encode(&chunk.data[start..start + len])
            );
            out.push_str(&piece.to_string());
            out.push('\n');
            start += len;
        }
    }
    out
}

#[test]
fn rows_do_not_depend_on_where_records_split() {
    let capture =
        std::fs::read_to_string(fixtures().join("containerd/ctr-basic.jsonl")).expect("fixture");
    let whole = replay(&capture, false);
    for seed in 1..=40 {
        let split = resplit(&capture, seed);
        assert!(
            split.lines().count() > capture.lines().count(),
            "seed {seed} split something"
        );
        let got = replay(&split, false);
        assert_eq!(
            got, whole,
            "seed {seed}: rows changed when records were split differently"
        );
    }
}

/// A pcapng of real gRPC over TCP (Python grpcio server and client on loopback, captured by
/// dumpcap) decodes fully through the same pipeline as live capture: `-r`.
#[test]
fn grpcio_tcp_capture_decodes_fully() {
    use containerdsnoop_decode::pcap::{Event, PcapReader};
    let path = fixtures().join("pcap/grpc_loopback.pcapng");
    let mut reader = PcapReader::open(path.to_str().expect("utf-8")).expect("open capture");
    let out = Shared::default();
    let printer: Box<dyn Sink> =
        Box::new(JsonPrinter::new(Box::new(out.clone()), Clock::identity()));
    let mut p = Pipeline::new(
        Renderer::new(
            Schema::embedded().expect("schema"),
            RenderOptions::default(),
        ),
        Plan::default(),
        vec![printer],
    );
    let mut last = 0;
    while let Some(event) = reader.next_event() {
        match event.expect("well-formed capture") {
            Event::Chunk(c) => {
                last = c.ts_ns;
                p.push(&c).expect("push");
            }
            Event::Closed {
                ts_ns,
                sock_id,
                peer_id,
                ..
            } => p.close_connection(ts_ns, sock_id, peer_id).expect("close"),
        }
    }
    p.finish(
        last,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .expect("finish");
    let text = String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let summary: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or("").to_string(),
                r["method"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let health = "/grpc.health.v1.Health/Check".to_string();
    let version = "/containerd.services.version.v1.Version/Version".to_string();
    assert_eq!(
        summary,
        vec![
            ("REQ".into(), health.clone()),
            ("RESP".into(), health.clone()),
            ("END".into(), health),
            ("REQ".into(), version.clone()),
            ("RESP".into(), version.clone()),
            ("END".into(), version),
        ]
    );
    // The version response decodes with the embedded schema; the health check (not in the
    // pool) decodes schema-less rather than blank.
    assert_eq!(rows[4]["message"]["version"], "2.1.0");
    assert_eq!(rows[1]["message_text"], "1:1");
    assert!(
        rows.iter()
            .filter(|r| r["type"] == "END")
            .all(|r| r["status_code"] == 0)
    );
    assert!(
        rows.iter()
            .all(|r| r["protocol"] == "grpc" && r["sync"] == "from_start")
    );
}
