//! Golden files: recorded real traffic (`--raw -o json` captures of containerd and its clients
//! under `tests/fixtures/`) replayed through the whole decoding pipeline and rendered to the
//! table and to JSON. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files
//! after a deliberate change; review the diff.

use std::{io::Write, path::PathBuf};

use containerdsnoop_decode::{
    output::sink::{Renderer, Sink},
    output::{json::JsonPrinter, table::TablePrinter, time::Clock},
    pipeline::{Pipeline, Plan},
    record::chunks_from_raw_jsonl,
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
    let chunks = chunks_from_raw_jsonl(capture);
    assert!(!chunks.is_empty(), "fixture has records");
    for c in &chunks {
        p.push(c).expect("push");
    }
    p.finish(
        chunks.last().map_or(0, |c| c.ts_ns),
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .expect("finish");
    let text = String::from_utf8(out.0.borrow().clone()).expect("utf-8");
    text
}

fn check(name: &str, json: bool) {
    let dir = fixtures().join("containerd");
    let capture = std::fs::read_to_string(dir.join(format!("{name}.jsonl"))).expect("fixture");
    let got = replay(&capture, json);
    let expected_path = dir.join(format!(
        "{name}.{}",
        if json { "json.golden" } else { "table.golden" }
    ));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &got).expect("write golden");
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
