//! The `--raw -o json` format read back (`output/raw.rs` writes it): one JSON object per line,
//! whose `"event": "data"` lines are the chunks a capture recorded. Recorded captures replay
//! through the same pipeline as live records (golden tests, fixtures, benchmarks, fuzz seeds).
//! Not a kernel record: nothing here is masked or length-checked, the values are taken as
//! written, and a line that is not a data event (or not one this reader understands) yields no
//! chunk.

use containerdsnoop_common::flags;

use super::Chunk;

/// Reads back one `--raw -o json` object (`"event": "data"`) as the chunk it came from: recorded
/// captures replay through the same pipeline (golden tests, fixtures). Other events (lost,
/// missing, joined) are derived again by the reassembler, so they return None.
pub fn chunk_from_raw_json(v: &serde_json::Value) -> Option<Chunk> {
    use base64::Engine as _;
    if v.get("event")?.as_str()? != "data" {
        return None;
    }
    let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let data = base64::engine::general_purpose::STANDARD
        .decode(v.get("data")?.as_str()?)
        .ok()?;
    let mut flags = match v.get("backend").and_then(|b| b.as_str()) {
        Some("kprobe") => flags::BACKEND_KPROBE,
        _ => flags::BACKEND_TRACEPOINT,
    };
    if v.get("flags")?
        .as_array()?
        .iter()
        .any(|f| f.as_str() == Some("path_is_peer"))
    {
        flags |= flags::PATH_IS_PEER;
    }
    Some(Chunk {
        ts_ns: u("ts_ns"),
        sock_ino: u("sock_ino"),
        peer_ino: u("peer_ino"),
        sock_id: u("sock_id"),
        peer_id: u("peer_sock_id"),
        stream_pos: u("stream_pos"),
        call_len: u("call_len") as u32,
        chunk_off: u("chunk_off") as u32,
        span_len: data.len() as u32,
        flags,
        tgid: u("pid") as u32,
        tid: u("tid") as u32,
        peer_tgid: u("peer_pid") as u32,
        lost_records: 0,
        pattern: 0,
        sock_type: u("sock_type") as u16,
        comm: s("comm"),
        process_comm: s("process_comm"),
        path: s("path"),
        data,
    })
}

/// Reads a `--raw -o json` capture (JSON Lines) into chunks, skipping non-data lines.
pub fn chunks_from_raw_jsonl(text: &str) -> Vec<Chunk> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| chunk_from_raw_json(&v))
        .collect()
}
