//! Decode throughput: one generated capture of real tonic gRPC traffic, written twice with the
//! same bytes (the tracer's `--raw -o json`, and a pcap), decoded by our offline pipeline
//! (`examples/replay`, table and JSON) and by tshark with protobuf decoding.

use std::process::Command;

use anyhow::Context as _;

use super::proc::{Measured, Summary, json_of, measure};
use super::{Env, Report, s};

/// Our messages/s must be at least this multiple of tshark's.
const TARGET_SPEEDUP: f64 = 50.0;

pub fn run(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    let calls: u64 = if env.quick { 4_000 } else { 40_000 };
    let reps = if env.quick { 1 } else { 3 };
    let dir = env.dir.join("decode");
    let generated = json_of(Command::new(&env.peer).args([
        "bench",
        "gen",
        "--out-dir",
        &s(&dir),
        "--calls",
        &calls.to_string(),
    ]))?;
    let num = |k: &str| generated[k].as_u64().unwrap_or(0);
    let (messages, bytes, errors) = (num("messages"), num("bytes"), num("errors"));
    let mb = bytes as f64 / 1e6;
    r.note(&format!(
        "capture: {} calls over 4 connections by a real tonic 0.14 client and server (CRI \
         ImageService: ListImages, ImageStatus, PullImage, RemoveImage; {} responses of \
         1 MiB; {errors} NOT_FOUND errors): {messages} gRPC messages, {mb:.1} MB of HTTP/2 in \
         {} records",
        num("calls"),
        num("big_messages"),
        num("records"),
    ));
    let jsonl = dir.join("capture.jsonl");
    let pcap = dir.join("capture.pcap");
    // Each OK call is REQ + RESP + END; an error is REQ + END (plus a NOTE per GOAWAY).
    let expected_rows = 3 * num("calls") - errors;

    let mut ours = Vec::new();
    for (label, extra) in [("table", None), ("JSON", Some("--json"))] {
        let mut best: Option<Measured> = None;
        for _ in 0..reps {
            let mut cmd = Command::new(&env.replay);
            cmd.arg(&jsonl).args(extra);
            let (m, _, err) = measure(&mut cmd, None)?;
            let sum = Summary::parse(&err).context("replay printed no summary")?;
            if sum.rows < expected_rows {
                r.note(&format!(
                    "replay ({label}) printed {} rows, expected at least {expected_rows}",
                    sum.rows
                ));
            }
            if best.is_none_or(|b| m.wall < b.wall) {
                best = Some(m);
            }
        }
        let m = best.context("no run")?;
        let secs = m.wall.as_secs_f64();
        r.figure(
            &format!("containerdsnoop pipeline → {label}"),
            format!(
                "{:.0} messages/s, {:.1} MB/s ({:.2} s wall, {:.2} s CPU, peak RSS {:.0} MB)",
                messages as f64 / secs,
                mb / secs,
                secs,
                m.cpu.as_secs_f64(),
                m.max_rss_kb as f64 / 1024.0
            ),
            "",
            None,
        );
        ours.push((label.to_string(), m));
    }
    // Once the tracer reads capture files (`-r`), it decodes the very pcap tshark reads,
    // streaming: no replay-sized buffers.
    let help = Command::new(&env.tracer)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if help.contains("-r, --read") {
        for (label, extra) in [("table", None), ("JSON", Some(["-o", "json"]))] {
            let mut cmd = Command::new(&env.tracer);
            cmd.args(["-r", &s(&pcap)]).args(extra.iter().flatten());
            let (m, _, err) = measure(&mut cmd, None)?;
            let rows = Summary::parse(&err).map_or(0, |sum| sum.rows);
            if rows < expected_rows {
                r.note(&format!(
                    "-r ({label}) printed {rows} rows, expected at least {expected_rows}"
                ));
            }
            let secs = m.wall.as_secs_f64();
            r.figure(
                &format!("containerdsnoop -r capture.pcap → {label}"),
                format!(
                    "{:.0} messages/s, {:.1} MB/s ({secs:.2} s wall, {:.2} s CPU, peak RSS \
                     {:.0} MB)",
                    messages as f64 / secs,
                    mb / secs,
                    m.cpu.as_secs_f64(),
                    m.max_rss_kb as f64 / 1024.0
                ),
                "",
                None,
            );
            ours.push((format!("-r, {label}"), m));
        }
    }
    r.note(
        "our figures are whole processes: `examples/replay` (best of the runs) reads the JSON \
         Lines capture and holds it and its chunks in memory, so its RSS grows with the \
         capture; `containerdsnoop -r` streams the pcap tshark reads",
    );

    // tshark printing the fields that make our rows (message length, message type, field names
    // and values), with protobuf decoding on. `-E aggregator=,`: a packet carrying several
    // gRPC messages lists their lengths comma-separated in the first column.
    let search = format!("uat:protobuf_search_paths:\"{}\",\"TRUE\"", s(&env.protos));
    let mut cmd = Command::new("tshark");
    cmd.args([
        "-n",
        "-r",
        &s(&pcap),
        "-d",
        "tcp.port==50051,http2",
        "-o",
        &search,
    ])
    .args([
        "-o",
        "protobuf.preload_protos:TRUE",
        "-Y",
        "grpc",
        "-T",
        "fields",
    ])
    .args(["-E", "aggregator=,", "-e", "grpc.message_length"])
    .args(["-e", "protobuf.message.name", "-e", "protobuf.field.name"])
    .args(["-e", "protobuf.field.value"]);
    let (m, seen, _) = match measure(&mut cmd, Some(grpc_messages_in_line)) {
        Ok(x) => x,
        Err(e) => {
            r.note(&format!("tshark could not run: {e:#}"));
            return Ok(());
        }
    };
    let secs = m.wall.as_secs_f64();
    let tshark_rate = seen.max(1) as f64 / secs;
    let tshark_cpu_rate = seen.max(1) as f64 / m.cpu.as_secs_f64().max(1e-3);
    r.figure(
        "tshark -T fields (HTTP/2 + gRPC + protobuf)",
        format!(
            "{:.0} messages/s, {:.2} MB/s ({:.1} s wall, {:.1} s CPU, peak RSS {:.0} MB; \
             decoded {seen} of {messages} messages)",
            tshark_rate,
            mb / secs,
            secs,
            m.cpu.as_secs_f64(),
            m.max_rss_kb as f64 / 1024.0
        ),
        "",
        None,
    );
    for (label, o) in &ours {
        let by_wall = messages as f64 / o.wall.as_secs_f64() / tshark_rate;
        // On a shared machine wall time depends on what else runs; CPU time much less, so the
        // verdict goes by messages per CPU-second.
        let by_cpu = messages as f64 / o.cpu.as_secs_f64().max(1e-3) / tshark_cpu_rate;
        r.figure(
            &format!("speed-up over tshark ({label})"),
            format!("{by_cpu:.1}× messages per CPU-second ({by_wall:.1}× by wall time)"),
            &format!("≥ {TARGET_SPEEDUP:.0}×"),
            Some(by_cpu >= TARGET_SPEEDUP),
        );
        let mem = o.max_rss_kb as f64 / m.max_rss_kb.max(1) as f64;
        r.figure(
            &format!("peak RSS vs tshark ({label})"),
            format!("{:.0}%", mem * 100.0),
            "a fraction (< 50%)",
            Some(mem < 0.5),
        );
    }
    Ok(())
}

/// gRPC messages in one line of tshark's `-T fields` output: the comma-separated lengths in the
/// first column.
fn grpc_messages_in_line(line: &[u8]) -> u64 {
    let first = line.split(|&b| b == b'\t').next().unwrap_or_default();
    let first = first.trim_ascii();
    if first.is_empty() {
        return 0;
    }
    1 + first.iter().filter(|&&b| b == b',').count() as u64
}
