//! The tracer's `--raw -o json` output, reassembled per sending socket.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use base64::Engine as _;

/// Data records reassembled per sending socket inode, and every record as parsed.
pub struct Captured {
    pub streams: BTreeMap<u64, Vec<u8>>,
    pub records: Vec<serde_json::Value>,
}

/// Parses JSON lines; fails on a record that is not JSON or on records of a socket that do
/// not tile its stream (a gap or an overlap).
pub fn parse_raw_json(stdout: &str) -> Result<Captured> {
    let mut by_ino: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    let mut records = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        if v["event"] == "data" {
            let data = base64::engine::general_purpose::STANDARD
                .decode(v["data"].as_str().context("data")?)
                .context("base64")?;
            by_ino
                .entry(v["sock_ino"].as_u64().context("sock_ino")?)
                .or_default()
                .push((v["stream_pos"].as_u64().context("stream_pos")?, data));
        }
        records.push(v);
    }
    let mut streams = BTreeMap::new();
    for (ino, mut spans) in by_ino {
        spans.sort_by_key(|(pos, _)| *pos);
        let mut bytes = Vec::new();
        for (pos, data) in spans {
            if pos != bytes.len() as u64 {
                bail!(
                    "records of socket {ino} do not tile its stream: {pos} != {}",
                    bytes.len()
                );
            }
            bytes.extend_from_slice(&data);
        }
        streams.insert(ino, bytes);
    }
    Ok(Captured { streams, records })
}
