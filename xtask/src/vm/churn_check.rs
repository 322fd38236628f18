//! Host-side verdict on a guest's `churn_session` (tests/vm/init.sh, issue #19), the checks of
//! `containerdsnoop/tests/e2e_selection.rs` on the guest's kernel and backend: two tracers with
//! disjoint selections ran while the test peer's `churn` removed and re-created their sockets
//! and directory among at least `MIN_UNSELECTED` unselected ones. Each tracer must show every
//! byte of its own sockets, exactly, and no record and no `UNSELECTED` byte of any other; on
//! ext4 the peer must have seen selected inode numbers given to other files, or the run proved
//! nothing; and tracer A must have said that the identities that went away were dropped.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use super::check::{Channel, tail, text};

/// The guest runs 10 rounds of 100 (`CHURN_ROUNDS`, `CHURN_UNSELECTED` in tests/vm/init.sh).
const MIN_UNSELECTED: u64 = 1000;

/// What one churn session shipped.
pub struct Shipped {
    /// `/proc/mounts`' line of the churn directory's file system.
    pub mount: String,
    /// Exit codes of tracer A, tracer B and the peer, as the guest reported them.
    pub a_rc: Option<String>,
    pub b_rc: Option<String>,
    pub peer_rc: Option<String>,
    pub a_out: String,
    pub a_err: String,
    pub b_out: String,
    pub b_err: String,
    pub peer_out: String,
    pub peer_err: String,
}

impl Shipped {
    pub(super) fn from_channel(ch: &Channel, session: &str) -> Shipped {
        let kv = |k: &str| ch.kv.get(&format!("{session}/{k}")).cloned();
        let file = |f: &str| text(ch, &format!("{session}/{f}"));
        Shipped {
            mount: ch.kv.get("churn.mount").cloned().unwrap_or_default(),
            a_rc: kv("a.rc"),
            b_rc: kv("b.rc"),
            peer_rc: kv("peer.rc"),
            a_out: file("a.out"),
            a_err: file("a.err"),
            b_out: file("b.out"),
            b_err: file("b.err"),
            peer_out: file("peer.out"),
            peer_err: file("peer.err"),
        }
    }
}

/// Per sending socket inode, exactly the bytes a tracer must show.
type Expected = BTreeMap<u64, Vec<u8>>;

fn expected_for(summary: &Value, who: &str) -> Result<Expected, String> {
    let mut out = Expected::new();
    let selected = summary["selected"]
        .as_array()
        .ok_or("the peer's summary has no `selected`")?;
    for e in selected.iter().filter(|e| e["who"] == who) {
        for (ino, bytes) in [("client_ino", "c2s"), ("server_ino", "s2c")] {
            let ino = e[ino].as_u64().ok_or(format!("no {ino} in {e}"))?;
            let bytes = e[bytes].as_str().ok_or(format!("no {bytes} in {e}"))?;
            out.entry(ino).or_default().extend(bytes.as_bytes());
        }
    }
    if out.is_empty() {
        return Err(format!("the peer reported no socket of tracer {who}"));
    }
    Ok(out)
}

/// Every record of `out` (a tracer's `--raw -o json`) belongs to a socket of `expected`, no
/// socket's stream holds `UNSELECTED`, and each expected socket's bytes are exactly the
/// expected ones. Returns the number of bytes checked.
pub fn check_exact(out: &str, expected: &Expected, who: &str) -> Result<usize, String> {
    let mut spans: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line)
            .map_err(|e| format!("tracer {who}: not JSON ({e}): {line}"))?;
        let Some(ino) = r["sock_ino"].as_u64() else {
            continue;
        };
        if !expected.contains_key(&ino) {
            return Err(format!(
                "tracer {who}: a record of an unselected socket (inode {ino}): {}",
                short(line)
            ));
        }
        if r["event"] == "data" {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["data"].as_str().unwrap_or(""))
                .map_err(|e| format!("tracer {who}: bad base64 ({e})"))?;
            let pos = r["stream_pos"]
                .as_u64()
                .ok_or(format!("tracer {who}: a record without stream_pos"))?;
            spans.entry(ino).or_default().push((pos, data));
        }
    }
    let mut streams = BTreeMap::new();
    for (ino, mut pieces) in spans {
        pieces.sort_by_key(|(pos, _)| *pos);
        let mut bytes = Vec::new();
        for (pos, data) in pieces {
            if pos != bytes.len() as u64 {
                return Err(format!(
                    "tracer {who}: socket {ino}: a record at {pos}, the stream so far is {}",
                    bytes.len()
                ));
            }
            bytes.extend_from_slice(&data);
        }
        if bytes.windows(10).any(|w| w == b"UNSELECTED") {
            return Err(format!(
                "tracer {who}: unselected bytes captured on socket {ino}"
            ));
        }
        streams.insert(ino, bytes);
    }
    let mut total = 0;
    for (ino, want) in expected {
        let got = streams.get(ino).map(Vec::as_slice).unwrap_or_default();
        if got != want.as_slice() {
            return Err(format!(
                "tracer {who}: socket {ino}: captured {} bytes, {} sent ({:?}...)",
                got.len(),
                want.len(),
                String::from_utf8_lossy(&got[..got.len().min(40)])
            ));
        }
        total += got.len();
    }
    Ok(total)
}

fn short(line: &str) -> String {
    line.chars().take(200).collect()
}

/// The churn session's verdict; its text says on which file system it ran and how many of
/// the selected files' inode numbers the peer saw given to other files.
pub fn verdict(s: &Shipped) -> Result<String, String> {
    for (who, rc, err) in [("A", &s.a_rc, &s.a_err), ("B", &s.b_rc, &s.b_err)] {
        if rc.as_deref() != Some("0") {
            return Err(format!("tracer {who}: exit {rc:?}: {}", tail(err, 5)));
        }
    }
    if s.peer_rc.as_deref() != Some("0") {
        return Err(format!(
            "peer: exit {:?}: {}",
            s.peer_rc,
            tail(&s.peer_err, 5)
        ));
    }
    let summary: Value = s
        .peer_out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no summary from the peer: {}", tail(&s.peer_out, 3)))?;
    let reused = summary["reused_inode_numbers"]
        .as_u64()
        .ok_or("no reused_inode_numbers in the summary")?;
    let strangers = summary["unselected_sockets"]
        .as_u64()
        .ok_or("no unselected_sockets in the summary")?;
    if strangers < MIN_UNSELECTED {
        return Err(format!(
            "only {strangers} unselected sockets (want {MIN_UNSELECTED})"
        ));
    }
    let mut fields = s.mount.split_whitespace();
    let (source, fs) = (fields.next().unwrap_or("?"), fields.nth(1).unwrap_or("?"));
    if fs == "ext4" && reused == 0 {
        return Err(format!(
            "on ext4, no selected inode number was reused ({strangers} unselected sockets): \
             this run proves nothing"
        ));
    }
    let a = expected_for(&summary, "A")?;
    let b = expected_for(&summary, "B")?;
    let a_bytes = check_exact(&s.a_out, &a, "A")?;
    let b_bytes = check_exact(&s.b_out, &b, "B")?;
    if !s.a_err.contains("no longer selects directory inode") {
        return Err(format!(
            "tracer A never said it dropped a directory that went away: {}",
            tail(&s.a_err, 5)
        ));
    }
    Ok(format!(
        "{fs} ({source}): {strangers} unselected sockets, reused_inode_numbers {reused}; \
         A {} sockets {a_bytes} B exact, B {} sockets {b_bytes} B exact",
        a.len(),
        b.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(ino: u64, pos: usize, data: &[u8]) -> String {
        let line = json!({
            "event": "data", "sock_ino": ino, "stream_pos": pos, "len": data.len(),
            "backend": "kprobe",
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        format!("{line}\n")
    }

    /// A session in which A's sockets were 10 -> 11 and 20 -> 21, B's 30 -> 31, and each
    /// tracer showed exactly those.
    fn good() -> Shipped {
        let summary = json!({
            "selected": [
                {"who": "A", "client_ino": 10, "server_ino": 11, "c2s": "SELECTED-A-1|", "s2c": "SELECTED-A-2|"},
                {"who": "B", "client_ino": 30, "server_ino": 31, "c2s": "SELECTED-B-3|", "s2c": "SELECTED-B-4|"},
                {"who": "A", "client_ino": 20, "server_ino": 21, "c2s": "SELECTED-A-5|", "s2c": "SELECTED-A-6|"},
            ],
            "unselected_sockets": 1000,
            "reused_inode_numbers": 7,
        });
        let a_out = [
            record(10, 0, b"SELECTED-A-"),
            record(10, 11, b"1|"),
            record(11, 0, b"SELECTED-A-2|"),
            record(20, 0, b"SELECTED-A-5|"),
            record(21, 0, b"SELECTED-A-6|"),
        ]
        .concat();
        let b_out = [
            record(30, 0, b"SELECTED-B-3|"),
            record(31, 0, b"SELECTED-B-4|"),
        ]
        .concat();
        Shipped {
            mount: "/dev/ram0 /mnt/churn ext4 rw,relatime 0 0".into(),
            a_rc: Some("0".into()),
            b_rc: Some("0".into()),
            peer_rc: Some("0".into()),
            a_out,
            a_err: "containerdsnoop: /mnt/churn/churn-kprobe/a.d/*: no longer selects directory \
                    inode 12 on device 1048576 (gone or replaced)\n"
                .into(),
            b_out,
            b_err: String::new(),
            peer_out: format!("{summary}\n"),
            peer_err: String::new(),
        }
    }

    #[test]
    fn exact_captures_pass() {
        let v = verdict(&good()).unwrap();
        assert!(v.starts_with("ext4 (/dev/ram0)"), "{v}");
        assert!(v.contains("reused_inode_numbers 7"), "{v}");
        assert!(v.contains("A 4 sockets 52 B exact"), "{v}");
    }

    #[test]
    fn a_captured_unselected_byte_fails() {
        // An unselected socket's bytes on a selected socket's inode (a stale key matched).
        let mut s = good();
        s.b_out.push_str(&record(31, 13, b"UNSELECTED-000009|"));
        let e = verdict(&s).unwrap_err();
        assert!(e.contains("unselected bytes captured on socket 31"), "{e}");
        // A record of a socket nobody selected.
        let mut s = good();
        s.a_out.push_str(&record(99, 0, b"UNSELECTED-000009|"));
        let e = verdict(&s).unwrap_err();
        assert!(e.contains("unselected socket (inode 99)"), "{e}");
        // The other tracer's socket is a stranger too.
        let mut s = good();
        s.a_out.push_str(&record(30, 0, b"SELECTED-B-3|"));
        assert!(verdict(&s).unwrap_err().contains("inode 30"));
    }

    #[test]
    fn missing_or_changed_bytes_fail() {
        let mut s = good();
        s.a_out = s.a_out.replace(&record(10, 11, b"1|"), "");
        let e = verdict(&s).unwrap_err();
        assert!(e.contains("socket 10: captured 11 bytes, 13 sent"), "{e}");
        let mut s = good();
        s.b_out = s.b_out.replace(
            &record(30, 0, b"SELECTED-B-3|"),
            &record(30, 0, b"SELECTED-B-X|"),
        );
        assert!(verdict(&s).unwrap_err().contains("socket 30"));
        // A gap in a stream.
        let mut s = good();
        s.a_out = s
            .a_out
            .replace(&record(10, 11, b"1|"), &record(10, 12, b"|"));
        assert!(verdict(&s).unwrap_err().contains("a record at 12"));
    }

    #[test]
    fn ext4_without_reuse_and_failed_runs_fail() {
        let mut s = good();
        s.peer_out = s
            .peer_out
            .replace("\"reused_inode_numbers\":7", "\"reused_inode_numbers\":0");
        assert!(verdict(&s).unwrap_err().contains("proves nothing"));
        // On tmpfs no reuse is expected.
        s.mount = "tmpfs /tmp tmpfs rw 0 0".into();
        assert!(verdict(&s).unwrap().starts_with("tmpfs"));
        let mut s = good();
        s.peer_out = s
            .peer_out
            .replace("\"unselected_sockets\":1000", "\"unselected_sockets\":10");
        assert!(verdict(&s).unwrap_err().contains("only 10 unselected"));
        let mut s = good();
        s.a_rc = Some("1".into());
        s.a_err = "Error: boom".into();
        assert!(verdict(&s).unwrap_err().contains("boom"));
        let mut s = good();
        s.a_err.clear();
        assert!(verdict(&s).unwrap_err().contains("dropped a directory"));
    }
}
