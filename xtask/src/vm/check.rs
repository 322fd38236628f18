//! Host-side verdicts on what a guest shipped over its data channel: the tracer's JSON records
//! are reassembled per socket inode by stream position and compared with what each receiver
//! read (sha256 from the guest, exact bytes for the replayed HTTP/2 recording), and every
//! record's pid, peer pid, path and backend are checked against the peer's own report.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::time::Duration;

use super::guest::Trace;
use super::qemu::Run;
use super::traffic::*;

/// The sock:sock_send_length tracepoint the tracepoint backend needs appeared in 6.3.
pub(super) const TRACEPOINT_SINCE: (u32, u32) = (6, 3);
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct Report {
    pub(super) label: String,
    pub(super) package: String,
    pub(super) release: String,
    pub(super) boot: Option<Duration>,
    pub(super) elapsed: Duration,
    pub(super) rows: Vec<Row>,
}

pub(super) struct Row {
    pub(super) backend: String,
    pub(super) test: String,
    pub(super) ok: bool,
    pub(super) detail: String,
}

impl Report {
    pub(super) fn push(&mut self, backend: &str, test: &str, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.rows.push(Row {
            backend: backend.to_string(),
            test: test.to_string(),
            ok,
            detail,
        });
    }

    /// The guest never reported its end (it crashed or hung before or while running the tests).
    pub fn guest_did_not_finish(&self) -> bool {
        self.rows.iter().any(|r| !r.ok && r.backend == "vm")
    }

    pub fn checks(&self) -> usize {
        self.rows.len()
    }

    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| !r.ok).count()
    }

    pub fn print(&self) {
        eprintln!(
            "vm-test [{}] {} ({}): boot {}, VM {:.1}s",
            self.label,
            self.release,
            self.package,
            self.boot
                .map(|b| format!("{:.1}s", b.as_secs_f64()))
                .unwrap_or_else(|| "?".into()),
            self.elapsed.as_secs_f64()
        );
        for r in &self.rows {
            eprintln!(
                "  {} {:<10} {:<14} {}",
                if r.ok { "PASS" } else { "FAIL" },
                r.backend,
                r.test,
                r.detail
            );
        }
    }

    pub fn print_summary(&self) {
        let mut by_backend: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for r in &self.rows {
            let e = by_backend.entry(&r.backend).or_default();
            if r.ok { e.0 += 1 } else { e.1 += 1 }
        }
        let parts: Vec<String> = by_backend
            .iter()
            .map(|(b, (ok, bad))| {
                if *bad == 0 {
                    format!("{b} PASS ({ok})")
                } else {
                    format!("{b} FAIL ({bad} of {})", ok + bad)
                }
            })
            .collect();
        eprintln!(
            "  {:<5} {:<28} {:>6.1}s  {}",
            self.label,
            self.release,
            self.elapsed.as_secs_f64(),
            parts.join(", ")
        );
    }
}

/// What the guest sent on its data channel.
#[derive(Default)]
pub(super) struct Channel {
    pub(super) kv: HashMap<String, String>,
    pub(super) files: HashMap<String, Vec<u8>>,
    pub(super) ended: bool,
}

pub(super) fn parse_channel(data: &[u8]) -> Result<Channel, String> {
    let mut ch = Channel::default();
    let mut at = 0;
    while at < data.len() {
        let Some(nl) = data[at..].iter().position(|&b| b == b'\n') else {
            return Err(format!("truncated line at byte {at}"));
        };
        let line = String::from_utf8_lossy(&data[at..at + nl]).into_owned();
        at += nl + 1;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line == "@@END" {
            ch.ended = true;
        } else if let Some(rest) = line.strip_prefix("@@KV ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            ch.kv.insert(k.to_string(), v.to_string());
        } else if let Some(rest) = line.strip_prefix("@@FILE ") {
            let (name, size) = rest
                .rsplit_once(' ')
                .ok_or_else(|| format!("bad file header {line:?}"))?;
            let size: usize = size
                .parse()
                .map_err(|_| format!("bad file size in {line:?}"))?;
            if at + size > data.len() {
                return Err(format!("file {name} truncated ({size} bytes announced)"));
            }
            ch.files
                .insert(name.to_string(), data[at..at + size].to_vec());
            at += size;
        } else {
            return Err(format!("unexpected line {line:?} at byte {at}"));
        }
    }
    Ok(ch)
}

pub fn check_run(label: &str, package: &str, run: &Run, h2: &Trace) -> Report {
    let mut report = Report {
        label: label.to_string(),
        package: package.to_string(),
        release: "?".to_string(),
        boot: run.boot,
        elapsed: run.elapsed,
        rows: Vec::new(),
    };
    if run.timed_out {
        report.push(
            "vm",
            "boot",
            Err(format!("timed out; see {}", run.console_path.display())),
        );
    }
    let ch = match parse_channel(&run.data) {
        Ok(ch) => ch,
        Err(e) => {
            report.push("vm", "data channel", Err(e));
            return report;
        }
    };
    if !ch.ended {
        let tail: Vec<&str> = run.console.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        report.push(
            "vm",
            "data channel",
            Err(format!(
                "the guest did not finish (no @@END); console tail:\n{}",
                tail.join("\n")
            )),
        );
    }
    report.release = ch.kv.get("kernel").cloned().unwrap_or_else(|| "?".into());
    let version = parse_release(&report.release);

    report.push(
        "kprobe",
        "kprobe PMU",
        match ch.kv.get("kprobe_pmu").map(String::as_str) {
            Some("none") | None => Err("no /sys/bus/event_source/devices/kprobe/type".into()),
            Some(t) => Ok(format!("perf type {t}")),
        },
    );
    report.push("all", "load-only", check_load_only(&ch));

    let ctx = |session: &'static str, backend: &'static str| Session {
        ch: &ch,
        name: session,
        backend,
        h2,
    };
    ctx("kprobe", "kprobe").check_all(&mut report);
    ctx("auto", "kprobe").check_all(&mut report);
    match version {
        Some(v) if v >= TRACEPOINT_SINCE => ctx("tracepoint", "tracepoint").check_all(&mut report),
        Some(_) => report.push("tracepoint", "refusal", check_tracepoint_refusal(&ch)),
        None => report.push(
            "tracepoint",
            "kernel version",
            Err(format!("cannot parse kernel release {:?}", report.release)),
        ),
    }
    // Issue #12: connection ends seen as they happen (close_session in tests/vm/init.sh).
    let tracepoint_runs = version.is_some_and(|v| v >= TRACEPOINT_SINCE);
    for (session, runs) in [
        ("close-kprobe", true),
        ("close-tracepoint", tracepoint_runs),
    ] {
        if !runs {
            continue;
        }
        let file = |name: &str| text(&ch, &format!("{session}/{name}"));
        let rc = ch
            .kv
            .get(&format!("{session}/tracer.rc"))
            .map(String::as_str);
        let verdicts =
            super::close_check::verdicts(rc, &file("tracer.out"), &file("tracer.err"), |case| {
                file(&format!("{case}.out"))
            });
        for (test, result) in verdicts {
            report.push(session, test, result);
        }
    }
    // Issue #19: exact selection while inode numbers are reused (churn_session).
    for (session, runs) in [
        ("churn-kprobe", true),
        ("churn-tracepoint", tracepoint_runs),
    ] {
        if runs {
            let shipped = super::churn_check::Shipped::from_channel(&ch, session);
            report.push(session, "churn", super::churn_check::verdict(&shipped));
        }
    }
    report
}

pub(super) fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(['.', '-', '+']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A shipped file as text (`NAME`, or `NAME.gz` which the guest compressed); empty if absent.
pub(super) fn text(ch: &Channel, name: &str) -> String {
    if let Some(b) = ch.files.get(name) {
        return String::from_utf8_lossy(b).into_owned();
    }
    let Some(gz) = ch.files.get(&format!("{name}.gz")) else {
        return String::new();
    };
    let mut out = String::new();
    match flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out) {
        Ok(_) => out,
        // Checks that parse the text report what is wrong with it.
        Err(e) => format!("(corrupt {name}.gz: {e})"),
    }
}

pub(super) fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().rev().take(lines).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

pub(super) fn check_load_only(ch: &Channel) -> Result<String, String> {
    let err = text(ch, "load.err");
    let secs = ch.kv.get("load.seconds").cloned().unwrap_or_default();
    match ch.kv.get("load.rc").map(String::as_str) {
        Some("0") if err.contains("verified") => Ok(format!("{} ({secs}s)", err.trim())),
        rc => Err(format!("exit {rc:?}: {}", tail(&err, 30))),
    }
}

/// Before 6.3 the tracepoint backend must refuse to start, and say why.
pub(super) fn check_tracepoint_refusal(ch: &Channel) -> Result<String, String> {
    let err = text(ch, "tracepoint/tracer.err");
    let rc = ch
        .kv
        .get("tracepoint/tracer.rc")
        .cloned()
        .unwrap_or_default();
    if rc == "0" || rc.is_empty() || err.contains("Tracing ") {
        return Err(format!(
            "the tracer started (exit {rc:?}): {}",
            tail(&err, 5)
        ));
    }
    if err.contains("sock_send_length") && err.contains("6.3") {
        Ok(format!("exit {rc}: {}", err.trim()))
    } else {
        Err(format!(
            "exit {rc} without naming sock_send_length / 6.3: {}",
            err.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};

    use super::super::guest::hex;
    use super::*;

    #[test]
    fn parses_the_data_channel() {
        let mut d = b"@@KV kernel 6.12.117+deb12-amd64\n@@FILE a/b 3\n\n\x00x\n".to_vec();
        d.extend_from_slice(b"@@FILE empty 0\n\n@@END\n");
        let ch = parse_channel(&d).unwrap();
        assert_eq!(ch.kv["kernel"], "6.12.117+deb12-amd64");
        assert_eq!(ch.files["a/b"], b"\n\x00x");
        assert!(ch.files["empty"].is_empty());
        assert!(ch.ended);
        assert!(parse_channel(b"@@FILE x 10\nabc\n").is_err());
    }

    /// A guest result with one `write` case whose client sent `c2s` in the given records
    /// (`(stream_pos, bytes, path)`), and whose server sent nothing.
    fn channel(c2s: &[u8], records: &[(u64, &[u8], &str)]) -> Channel {
        let mut ch = Channel::default();
        for (k, v) in [
            ("kprobe.cases", "write"),
            ("kprobe.dir", "/tmp/vt/kprobe"),
            ("kprobe/tracer.rc", "0"),
            ("kprobe/write.rc", "0"),
        ] {
            ch.kv.insert(k.into(), v.into());
        }
        let err = "Tracing /tmp/vt/kprobe/write.sock with kprobe backend... Ctrl-C to end.\n\
                   containerdsnoop: 2 rows; lost 0 records (0 bytes) in the kernel; 0 malformed records\n";
        let out: String = records
            .iter()
            .map(|(pos, data, path)| {
                let line = serde_json::json!({
                    "event": "data", "sock_ino": 10, "stream_pos": pos, "len": data.len(),
                    "call_len": data.len(), "chunk_off": 0, "pid": 7, "peer_pid": 7,
                    "path": path, "backend": "kprobe", "flags": ["call_end"],
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                });
                format!("{line}\n")
            })
            .collect();
        let peer = serde_json::json!({
            "client_pid": 7, "server_pid": 7, "client_ino": 10, "server_ino": 11,
            "c2s_len": c2s.len(), "s2c_len": 0,
        });
        let sums = format!(
            "{}  client_to_server.bin\n{}  server_to_client.bin\n",
            hex(&Sha256::digest(c2s)),
            hex(&Sha256::digest(b""))
        );
        for (k, v) in [
            ("kprobe/tracer.err", err.to_string()),
            ("kprobe/tracer.out", out),
            ("kprobe/write/peer.out", peer.to_string()),
            ("kprobe/write/sums", sums),
        ] {
            ch.files.insert(k.into(), v.into_bytes());
        }
        ch
    }

    fn verdict(ch: &Channel) -> Result<String, String> {
        let h2 = Trace::parse("c 00").unwrap();
        let mut report = Report {
            label: "t".into(),
            package: "p".into(),
            release: "r".into(),
            boot: None,
            elapsed: Duration::ZERO,
            rows: Vec::new(),
        };
        let session = Session {
            ch,
            name: "kprobe",
            backend: "kprobe",
            h2: &h2,
        };
        session.check_all(&mut report);
        let bad: Vec<String> = report
            .rows
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {}", r.test, r.detail))
            .collect();
        if bad.is_empty() {
            Ok(report.rows.len().to_string())
        } else {
            Err(bad.join("; "))
        }
    }

    #[test]
    fn reassembles_records_in_stream_order() {
        let p = "/tmp/vt/kprobe/write.sock";
        // Out of order in the output: the checker sorts by stream_pos.
        let ch = channel(b"hello world", &[(5, b" world", p), (0, b"hello", p)]);
        assert_eq!(verdict(&ch), Ok("3".into()));
    }

    #[test]
    fn catches_gaps_wrong_bytes_and_wrong_paths() {
        let p = "/tmp/vt/kprobe/write.sock";
        let gap = verdict(&channel(
            b"hello world",
            &[(0, b"hello", p), (6, b"world", p)],
        ));
        assert!(gap.unwrap_err().contains("1 bytes missing"));
        let wrong = verdict(&channel(
            b"hello world",
            &[(0, b"hello", p), (5, b" World", p)],
        ));
        assert!(wrong.unwrap_err().contains("sha256"));
        let path = verdict(&channel(b"hi", &[(0, b"hi", "/elsewhere")]));
        assert!(path.unwrap_err().contains("path"));
    }

    #[test]
    fn spelled_cases_bind_other_names() {
        assert_eq!(bound_path("/tmp/vt/k", "write"), "/tmp/vt/k/write.sock");
        assert_eq!(
            bound_path("/tmp/vt/k", "spelled"),
            "///tmp/vt/k/spelled.sock"
        );
        assert_eq!(bound_path("/tmp/vt/k", "relative"), "relative.sock");
    }

    #[test]
    fn parses_releases() {
        assert_eq!(parse_release("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(parse_release("6.12.117+deb12-amd64"), Some((6, 12)));
        assert!(parse_release("6.1.0-56-amd64").unwrap() < TRACEPOINT_SINCE);
    }
}
