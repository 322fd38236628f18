//! Times the table's message text on a capture's protobuf bodies: the schema decode into a
//! `DynamicMessage` plus `to_text` (the slow path) against `wire_text` (the fast path), then the
//! whole table replay (which takes the fast path); then the same for JSON output: decode,
//! `to_text` and `json_message` written against `wire_json_ok`, `wire_text` and `wire_json`
//! written, and the whole `-o json` replay. By hand, not in tests:
//! `cargo run --release -p containerdsnoop-decode --example text_speed -- [FILE] [ROUNDS]`: a
//! `--raw -o json` capture (`.jsonl`) or a client/server `.rec` recording (default: the recorded
//! `ctr` session in `tests/fixtures/containerd/`).
use std::{cell::RefCell, io, rc::Rc, time::Instant};

use containerdsnoop_decode::{
    output::{
        json::JsonPrinter,
        rows::Row,
        sink::{Headers, Renderer, Sink},
        table::TablePrinter,
        time::Clock,
    },
    pipeline::{Pipeline, Plan},
    protocol::{
        Protocol,
        call::{Body, CallEventKind, ConnEnd, Role},
    },
    record::{Chunk, chunks_from_raw_jsonl},
    schema::{
        RenderOptions, Schema, decode, json_message, to_text, wire_json, wire_json_ok, wire_text,
        write_json,
    },
};
use prost_reflect::MessageDescriptor;

type Bodies = Rc<RefCell<Vec<(MessageDescriptor, Vec<u8>)>>>;

/// Keeps every protobuf body whose type the schema knows, as the table would decode it.
struct Collect {
    schema: Schema,
    bodies: Bodies,
}

impl Sink for Collect {
    fn row(&mut self, row: &Row, _: Option<&Headers>, _: &Renderer) -> io::Result<()> {
        if let CallEventKind::Message {
            role,
            body: Body::Protobuf(bytes),
            ..
        } = &row.event
            && let Some(m) = &row.method
        {
            let request = *role == Role::Request;
            let desc = match row.conn.protocol {
                Some(Protocol::Ttrpc) => m
                    .name
                    .strip_prefix('/')
                    .and_then(|p| p.split_once('/'))
                    .and_then(|(s, n)| self.schema.service_message_type(s, n, request)),
                _ => self.schema.message_type(&m.name, request),
            };
            if let Some(desc) = desc {
                self.bodies.borrow_mut().push((desc, bytes.to_vec()));
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn replay(schema: &Schema, chunks: &[Chunk], sink: Box<dyn Sink>) -> anyhow::Result<()> {
    let mut p = Pipeline::new(
        Renderer::new(schema.clone(), RenderOptions::default()),
        Plan::default(),
        vec![sink],
    );
    for c in chunks {
        p.push(c)?;
    }
    p.finish(chunks.last().map_or(0, |c| c.ts_ns), ConnEnd::CaptureEnded)?;
    Ok(())
}

/// A `.rec` recording (`> LEN` client write, `< LEN` server write, the bytes, a newline; see
/// `tests/fixtures/http1/README.md`) as one connection's records, client on socket 11.
fn chunks_from_rec(rec: &[u8]) -> anyhow::Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    let mut sent = [0u64; 2];
    let mut rest = rec;
    while let Some(nl) = rest.iter().position(|&c| c == b'\n') {
        let head = std::str::from_utf8(&rest[..nl])?;
        let (mark, len) = head
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("bad record header {head:?}"))?;
        let len: usize = len.parse()?;
        let data = rest
            .get(nl + 1..nl + 1 + len)
            .ok_or_else(|| anyhow::anyhow!("record cut short"))?
            .to_vec();
        rest = rest.get(nl + 2 + len..).unwrap_or_default();
        let client = mark == ">";
        let side = usize::from(!client);
        let (id, peer_id, pid, peer_pid) = if client {
            (11, 12, 100, 200)
        } else {
            (12, 11, 200, 100)
        };
        let mut flags = containerdsnoop_common::flags::BACKEND_TRACEPOINT
            | containerdsnoop_common::flags::CALL_END;
        if client {
            flags |= containerdsnoop_common::flags::PATH_IS_PEER;
        }
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
            tgid: pid,
            tid: pid,
            peer_tgid: peer_pid,
            lost_records: 0,
            pattern: 0,
            sock_type: 1,
            comm: if client { "client" } else { "server" }.to_string(),
            process_comm: String::new(),
            path: "/run/recorded.sock".to_string(),
            data,
        });
        sent[side] += len as u64;
    }
    Ok(chunks)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/containerd/ctr-basic.jsonl"
        )
        .into()
    });
    let rounds: usize = args.next().map_or(Ok(2000), |r| r.parse())?;
    let chunks = if path.ends_with(".rec") {
        chunks_from_rec(&std::fs::read(&path)?)?
    } else {
        chunks_from_raw_jsonl(&std::fs::read_to_string(&path)?)
    };
    let schema = Schema::embedded()?;
    let bodies: Bodies = Rc::default();
    replay(
        &schema,
        &chunks,
        Box::new(Collect {
            schema: schema.clone(),
            bodies: bodies.clone(),
        }),
    )?;
    let bodies = bodies.take();
    let opts = RenderOptions::default();
    let bytes: usize = bodies.iter().map(|(_, b)| b.len()).sum();

    let mut fast_taken = 0;
    let mut out = String::new();
    for (desc, b) in &bodies {
        if wire_text(desc, b, &opts, &mut out) {
            fast_taken += 1;
            assert_eq!(out, to_text(&decode(Some(desc), b), &opts), "differs");
        }
    }
    println!(
        "{path}: {} typed bodies ({bytes} bytes), fast path for {fast_taken}",
        bodies.len()
    );

    // Alternate the two so that the shared machine's load falls on both alike.
    let (mut slow_ns, mut fast_ns, mut sink) = (0u128, 0u128, 0usize);
    for _ in 0..rounds {
        let t = Instant::now();
        for (desc, b) in &bodies {
            sink += to_text(&decode(Some(desc), b), &opts).len();
        }
        slow_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        for (desc, b) in &bodies {
            let mut s = String::new();
            if !wire_text(desc, b, &opts, &mut s) {
                s = to_text(&decode(Some(desc), b), &opts);
            }
            sink += s.len();
        }
        fast_ns += t.elapsed().as_nanos();
    }
    let per = |ns: u128| ns as f64 / (rounds * bodies.len().max(1)) as f64;
    println!(
        "per message: decode+to_text {:.0} ns, wire_text (with fallback) {:.0} ns, {:.1}x ({sink} bytes rendered)",
        per(slow_ns),
        per(fast_ns),
        slow_ns as f64 / fast_ns.max(1) as f64
    );

    let table_rounds = (rounds / 10).max(1);
    let t = Instant::now();
    for _ in 0..table_rounds {
        replay(
            &schema,
            &chunks,
            Box::new(TablePrinter::new(
                Box::new(io::sink()),
                Clock::identity(),
                None,
            )),
        )?;
    }
    println!(
        "whole table replay (fast path on): {:.1} us per replay of {} records",
        t.elapsed().as_nanos() as f64 / table_rounds as f64 / 1e3,
        chunks.len()
    );

    json_speed(&bodies, &opts, rounds)?;
    let t = Instant::now();
    for _ in 0..table_rounds {
        replay(
            &schema,
            &chunks,
            Box::new(JsonPrinter::new(Box::new(io::sink()), Clock::identity())),
        )?;
    }
    println!(
        "whole -o json replay: {:.1} us per replay of {} records",
        t.elapsed().as_nanos() as f64 / table_rounds as f64 / 1e3,
        chunks.len()
    );
    Ok(())
}

/// A message body's text and JSON as `render_message` wanting JSON produced them before the
/// JSON fast path (decode, `to_text`, `json_message` written by the JSON sink) and with it.
fn json_speed(
    bodies: &[(MessageDescriptor, Vec<u8>)],
    opts: &RenderOptions,
    rounds: usize,
) -> anyhow::Result<()> {
    let slow = |desc: &MessageDescriptor, b: &[u8], line: &mut Vec<u8>| -> anyhow::Result<usize> {
        let decoded = decode(Some(desc), b);
        let text = to_text(&decoded, opts);
        line.clear();
        write_json(&mut *line, &json_message(&decoded, opts))?;
        Ok(text.len() + line.len())
    };
    let fast = |desc: &MessageDescriptor,
                b: &[u8],
                text: &mut String,
                line: &mut Vec<u8>|
     -> anyhow::Result<usize> {
        if wire_json_ok(desc, b, opts) && wire_text(desc, b, opts, text) {
            line.clear();
            write_json(&mut *line, &wire_json(desc, b, opts))?;
            return Ok(text.len() + line.len());
        }
        slow(desc, b, line)
    };
    let (mut text, mut line, mut fast_line) = (String::new(), Vec::new(), Vec::new());
    let mut taken = 0;
    for (desc, b) in bodies {
        if wire_json_ok(desc, b, opts) {
            taken += 1;
        }
        slow(desc, b, &mut line)?;
        fast(desc, b, &mut text, &mut fast_line)?;
        anyhow::ensure!(line == fast_line, "JSON differs for {}", desc.full_name());
    }
    println!("JSON fast path for {taken} of {} bodies", bodies.len());
    let (mut slow_ns, mut fast_ns, mut sink) = (0u128, 0u128, 0usize);
    for _ in 0..rounds {
        let t = Instant::now();
        for (desc, b) in bodies {
            sink += slow(desc, b, &mut line)?;
        }
        slow_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        for (desc, b) in bodies {
            sink += fast(desc, b, &mut text, &mut line)?;
        }
        fast_ns += t.elapsed().as_nanos();
    }
    let per = |ns: u128| ns as f64 / (rounds * bodies.len().max(1)) as f64;
    // The fast path's three parts on their own: where its time goes.
    let (mut check_ns, mut text_ns, mut write_ns) = (0u128, 0u128, 0u128);
    for _ in 0..rounds {
        let t = Instant::now();
        for (desc, b) in bodies {
            sink += usize::from(wire_json_ok(desc, b, opts));
        }
        check_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        for (desc, b) in bodies {
            sink += usize::from(wire_text(desc, b, opts, &mut text));
        }
        text_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        for (desc, b) in bodies {
            line.clear();
            // Bodies the check refuses fail here too, which is fine for timing.
            let _ = write_json(&mut line, &wire_json(desc, b, opts));
            sink += line.len();
        }
        write_ns += t.elapsed().as_nanos();
    }
    println!(
        "fast path parts per message: wire_json_ok {:.0} ns, wire_text {:.0} ns, wire_json written {:.0} ns",
        per(check_ns),
        per(text_ns),
        per(write_ns)
    );
    println!(
        "per message, text and JSON: decode+to_text+json_message {:.0} ns, wire_json_ok+wire_text+wire_json (with fallback) {:.0} ns, {:.1}x ({sink} bytes)",
        per(slow_ns),
        per(fast_ns),
        slow_ns as f64 / fast_ns.max(1) as f64
    );
    Ok(())
}
