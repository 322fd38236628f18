//! Host-side verdicts on what a guest shipped over its data channel: the tracer's JSON records
//! are reassembled per socket inode by stream position and compared with what each receiver
//! read (sha256 from the guest, exact bytes for the replayed HTTP/2 recording), and every
//! record's pid, peer pid, path and backend are checked against the peer's own report.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::guest::{Side, Trace, hex};
use super::qemu::Run;

/// The sock:sock_send_length tracepoint the tracepoint backend needs appeared in 6.3.
const TRACEPOINT_SINCE: (u32, u32) = (6, 3);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct Report {
    label: String,
    package: String,
    release: String,
    boot: Option<Duration>,
    elapsed: Duration,
    rows: Vec<Row>,
}

struct Row {
    backend: String,
    test: String,
    ok: bool,
    detail: String,
}

impl Report {
    fn push(&mut self, backend: &str, test: &str, result: Result<String, String>) {
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
struct Channel {
    kv: HashMap<String, String>,
    files: HashMap<String, Vec<u8>>,
    ended: bool,
}

fn parse_channel(data: &[u8]) -> Result<Channel, String> {
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
    report
}

fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(['.', '-', '+']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A shipped file as text (`NAME`, or `NAME.gz` which the guest compressed); empty if absent.
fn text(ch: &Channel, name: &str) -> String {
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

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().rev().take(lines).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn check_load_only(ch: &Channel) -> Result<String, String> {
    let err = text(ch, "load.err");
    let secs = ch.kv.get("load.seconds").cloned().unwrap_or_default();
    match ch.kv.get("load.rc").map(String::as_str) {
        Some("0") if err.contains("verified") => Ok(format!("{} ({secs}s)", err.trim())),
        rc => Err(format!("exit {rc:?}: {}", tail(&err, 30))),
    }
}

/// Before 6.3 the tracepoint backend must refuse to start, and say why.
fn check_tracepoint_refusal(ch: &Channel) -> Result<String, String> {
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

/// One captured record of the tracer's `--raw -o json` output.
struct Record {
    event: String,
    sock_ino: u64,
    pos: u64,
    len: u64,
    call_len: u64,
    chunk_off: u64,
    pid: u64,
    peer_pid: u64,
    path: String,
    backend: String,
    flags: Vec<String>,
    /// The payload, when the guest shipped it (`--full-payload`).
    data: Option<Vec<u8>>,
    /// Payload bytes present in the record.
    data_len: u64,
}

/// A socket's payload bytes in stream order, as the guest's `--guest-digest` summed them.
struct Digest {
    bytes: u64,
    sha256: String,
}

/// The tracer's records, whole or digested by the guest (then with per-socket digests).
fn parse_records(out: &str) -> Result<(Vec<Record>, HashMap<u64, Digest>), String> {
    let mut v = Vec::new();
    let mut digests = HashMap::new();
    for (n, line) in out.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let j: Value =
            serde_json::from_str(line).map_err(|e| format!("tracer line {}: {e}", n + 1))?;
        if let Some(d) = j.get("digest") {
            digests.insert(
                d["sock_ino"].as_u64().unwrap_or(0),
                Digest {
                    bytes: d["bytes"].as_u64().unwrap_or(0),
                    sha256: d["sha256"].as_str().unwrap_or("").to_string(),
                },
            );
            continue;
        }
        let num = |k: &str| j[k].as_u64().unwrap_or(u64::MAX);
        let data = match j["data"].as_str() {
            Some(b) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("tracer line {}: base64: {e}", n + 1))?,
            ),
            None => None,
        };
        let data_len = match &data {
            Some(d) => d.len() as u64,
            None => j["data_len"].as_u64().unwrap_or(0),
        };
        v.push(Record {
            event: j["event"].as_str().unwrap_or("?").to_string(),
            sock_ino: num("sock_ino"),
            pos: num("stream_pos"),
            len: num("len"),
            call_len: num("call_len"),
            chunk_off: num("chunk_off"),
            pid: num("pid"),
            peer_pid: num("peer_pid"),
            path: j["path"].as_str().unwrap_or("").to_string(),
            backend: j["backend"].as_str().unwrap_or("").to_string(),
            flags: j["flags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            data,
            data_len,
        });
    }
    Ok((v, digests))
}

/// One direction of a connection as captured.
struct Stream {
    len: u64,
    sha256: String,
}

struct Session<'a> {
    ch: &'a Channel,
    name: &'static str,
    /// The backend the records and the stderr line must name.
    backend: &'static str,
    h2: &'a Trace,
}

/// The name a case's server binds, which records carry: the selected path `{dir}/{case}.sock`
/// spelled differently by the `spelled` and `relative` cases (tests/vm/init.sh), which are
/// selected by the socket file's identity all the same.
fn bound_path(dir: &str, case: &str) -> String {
    match case {
        "spelled" => format!("//{dir}/{case}.sock"),
        "relative" => format!("{case}.sock"),
        _ => format!("{dir}/{case}.sock"),
    }
}

/// What a peer reported about its connection.
struct PeerSummary {
    json: Value,
    client_ino: u64,
    server_ino: u64,
    client_pid: u64,
    server_pid: u64,
}

impl Session<'_> {
    fn file(&self, name: &str) -> String {
        text(self.ch, &format!("{}/{name}", self.name))
    }

    fn kv(&self, key: &str) -> Option<&str> {
        self.ch
            .kv
            .get(&format!("{}{key}", self.name))
            .map(String::as_str)
    }

    fn check_all(&self, report: &mut Report) {
        let cases: Vec<String> = self
            .kv(".cases")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let dir = self.kv(".dir").unwrap_or("").to_string();
        let err = self.file("tracer.err");
        let rc = self.kv("/tracer.rc").unwrap_or("?").to_string();
        let started = err.lines().find(|l| l.starts_with("Tracing "));
        let want = format!("with {} backend", self.backend);
        let secs = self.kv(".seconds").unwrap_or("?").to_string();
        match started {
            Some(line) if line.contains(&want) && !err.contains("backend unavailable") => {
                report.push(
                    self.name,
                    "attach",
                    Ok(format!("stderr: `{want}`, no fallback")),
                );
            }
            Some(_) => {
                report.push(
                    self.name,
                    "attach",
                    Err(format!(
                        "wanted `{want}`, stderr: {}",
                        tail(&err, 10).replace('\n', " | ")
                    )),
                );
            }
            None => {
                report.push(
                    self.name,
                    "attach",
                    Err(format!(
                        "tracer did not start (exit {rc}):\n{}",
                        tail(&err, 40)
                    )),
                );
                return;
            }
        }
        // The exit summary: "... lost 0 records (0 bytes) in the kernel, ... 0 malformed records"
        // (older tracers: "N records, 0 lost records (0 bytes) in the kernel, 0 malformed").
        let summary = err
            .lines()
            .rev()
            .find(|l| l.contains("malformed"))
            .unwrap_or("")
            .to_string();
        let clean = (summary.contains("lost 0 records") || summary.contains(" 0 lost records"))
            && summary.contains(" 0 malformed");
        report.push(
            self.name,
            "tracer exit",
            if rc == "0" && clean {
                Ok(format!(
                    "{} ({secs}s for the session, {}s to ship its results)",
                    summary.trim(),
                    self.kv(".ship_seconds").unwrap_or("?")
                ))
            } else {
                Err(format!("exit {rc}: {}", tail(&err, 10)))
            },
        );
        let mut output = self.file("tracer.out");
        if output.is_empty() {
            output = self.file("tracer.digest");
        }
        if let Some(rc) = self.kv("/digest.rc").filter(|rc| *rc != "0") {
            report.push(
                self.name,
                "guest digest",
                Err(format!("exit {rc}: {}", tail(&self.file("digest.err"), 10))),
            );
            return;
        }
        let (records, digests) = match parse_records(&output) {
            Ok(r) => r,
            Err(e) => {
                report.push(self.name, "tracer output", Err(e));
                return;
            }
        };
        let mut by_ino: HashMap<u64, Vec<&Record>> = HashMap::new();
        for r in &records {
            by_ino.entry(r.sock_ino).or_default().push(r);
        }
        let mut claimed = 0;
        for case in &cases {
            let path = bound_path(&dir, case);
            let result = self.check_case(case, &path, &by_ino, &digests, &mut claimed);
            report.push(self.name, case, result);
        }
        if claimed != records.len() {
            report.push(
                self.name,
                "stray records",
                Err(format!(
                    "{} of {} records belong to no test connection",
                    records.len() - claimed,
                    records.len()
                )),
            );
        }
    }

    fn peer_summary(&self, case: &str) -> Result<PeerSummary, String> {
        let out = self.file(&format!("{case}/peer.out"));
        let rc = self.kv(&format!("/{case}.rc")).unwrap_or("?");
        if rc != "0" {
            return Err(format!(
                "peer exit {rc}: {}",
                tail(&self.file(&format!("{case}/peer.err")), 10)
            ));
        }
        let json: Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("peer summary {out:?}: {e}"))?;
        let num = |k: &str| {
            json[k]
                .as_u64()
                .ok_or_else(|| format!("peer summary lacks {k}: {out}"))
        };
        Ok(PeerSummary {
            client_ino: num("client_ino")?,
            server_ino: num("server_ino")?,
            client_pid: num("client_pid")?,
            server_pid: num("server_pid")?,
            json,
        })
    }

    /// sha256 of what each receiver read, as `sha256sum` printed it in the guest.
    fn sums(&self, case: &str) -> Result<(String, String), String> {
        let text = self.file(&format!("{case}/sums"));
        let find = |name: &str| {
            text.lines()
                .find(|l| l.ends_with(name))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_string)
                .ok_or_else(|| format!("no sha256 of {name}: {text}"))
        };
        Ok((find("client_to_server.bin")?, find("server_to_client.bin")?))
    }

    fn check_case(
        &self,
        case: &str,
        path: &str,
        by_ino: &HashMap<u64, Vec<&Record>>,
        digests: &HashMap<u64, Digest>,
        claimed: &mut usize,
    ) -> Result<String, String> {
        let peer = self.peer_summary(case)?;
        let (c2s_sum, s2c_sum) = self.sums(case)?;
        let empty = Vec::new();
        let c_recs = by_ino.get(&peer.client_ino).unwrap_or(&empty);
        let s_recs = by_ino.get(&peer.server_ino).unwrap_or(&empty);
        *claimed += c_recs.len() + s_recs.len();
        // SO_PEERCRED (the tracer's peer pid) is set by stream connect/accept only: a connected
        // datagram socket has no peer credentials, so its records carry peer_pid 0.
        let dgram = case.starts_with("dgram");
        let peer_of = |pid: u64| if dgram { 0 } else { pid };
        let c2s = self.direction(
            "c2s",
            c_recs,
            digests.get(&peer.client_ino),
            path,
            peer.client_pid,
            peer_of(peer.server_pid),
        )?;
        let s2c = self.direction(
            "s2c",
            s_recs,
            digests.get(&peer.server_ino),
            path,
            peer.server_pid,
            peer_of(peer.client_pid),
        )?;
        for (what, got, want_sum, want_len) in [
            ("c2s", &c2s, &c2s_sum, peer.json["c2s_len"].as_u64()),
            ("s2c", &s2c, &s2c_sum, peer.json["s2c_len"].as_u64()),
        ] {
            if Some(got.len) != want_len {
                return Err(format!(
                    "{what}: captured {} bytes, the receiver read {want_len:?}",
                    got.len
                ));
            }
            if &got.sha256 != want_sum {
                return Err(format!(
                    "{what}: captured {} bytes whose sha256 {} differs from what the receiver read ({want_sum})",
                    got.len, got.sha256
                ));
            }
        }
        let mut notes = vec![format!(
            "c2s {} B in {} records, s2c {} B in {} records",
            c2s.len,
            c_recs.len(),
            s2c.len,
            s_recs.len()
        )];
        match case {
            "nonblock" => {
                let eagain = peer.json["eagain"].as_u64().unwrap_or(0);
                let partial = peer.json["partial_writes"].as_u64().unwrap_or(0);
                if eagain + partial == 0 {
                    return Err("no EAGAIN and no partial write happened: not exercised".into());
                }
                notes.push(format!("{partial} partial writes, {eagain} EAGAIN"));
            }
            "dgram-write" | "dgram-sendmsg" => {
                for (what, recs, key) in
                    [("c2s", c_recs, "c2s_sizes"), ("s2c", s_recs, "s2c_sizes")]
                {
                    let calls: Vec<u64> = recs
                        .iter()
                        .filter(|r| r.chunk_off == 0)
                        .map(|r| r.call_len)
                        .collect();
                    let sizes: Vec<u64> = peer.json[key]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_u64).collect())
                        .unwrap_or_default();
                    if calls != sizes {
                        return Err(format!(
                            "{what}: call lengths {calls:?} differ from the datagrams {sizes:?}"
                        ));
                    }
                }
                notes.push("one call per datagram, peer_pid 0 (no SO_PEERCRED)".into());
            }
            "http2" => {
                let client = self.h2.stream(Side::Client);
                if c2s.sha256 != hex(&Sha256::digest(&client))
                    || s2c.sha256 != hex(&Sha256::digest(self.h2.stream(Side::Server)))
                {
                    return Err("captured bytes differ from the recorded HTTP/2 exchange".into());
                }
                // The recording itself is checked too: the capture began with the preface.
                if !client.starts_with(H2_PREFACE) {
                    return Err(
                        "the recording does not start with the HTTP/2 client preface".into(),
                    );
                }
                notes.push(format!("= recording ({} chunks)", self.h2.chunks.len()));
                // TODO(decoded mode): once `containerdsnoop` without --raw prints rows, run a
                // second tracer in decoded mode (`-o json`) on this replay and check here that it
                // reports the calls of the recording: /containerd.services.version.v1.Version/Version
                // and /containerd.services.introspection.v1.Introspection/Server, both with
                // grpc-status 0.
            }
            _ => {}
        }
        if let Some(secs) = self.kv(&format!("/{case}.seconds")) {
            notes.push(format!("{secs}s"));
        }
        Ok(notes.join(", "))
    }

    /// Checks one direction's records: in order from position 0 without gap or overlap, each
    /// naming the right process, peer, path and backend. Returns the stream's length and sha256
    /// (reassembled here from the payloads, or the guest's digest when it shipped none).
    fn direction(
        &self,
        what: &str,
        recs: &[&Record],
        digest: Option<&Digest>,
        path: &str,
        pid: u64,
        peer_pid: u64,
    ) -> Result<Stream, String> {
        let mut recs: Vec<&Record> = recs.to_vec();
        recs.sort_by_key(|r| r.pos);
        let mut next = 0u64;
        let mut bytes = Vec::new();
        let mut have_payload = true;
        for r in &recs {
            let at = format!("{what} record at stream_pos {}", r.pos);
            if r.event != "data" {
                return Err(format!("{at}: event {:?} (len {})", r.event, r.len));
            }
            if r.backend != self.backend {
                return Err(format!(
                    "{at}: backend {:?}, wanted {:?}",
                    r.backend, self.backend
                ));
            }
            if r.pid != pid || r.peer_pid != peer_pid {
                return Err(format!(
                    "{at}: pid {} peer_pid {}, wanted {pid} and {peer_pid}",
                    r.pid, r.peer_pid
                ));
            }
            if r.path != path {
                return Err(format!("{at}: path {:?}, wanted {path:?}", r.path));
            }
            if let Some(f) = r.flags.iter().find(|f| {
                matches!(
                    f.as_str(),
                    "truncated" | "no_payload" | "read_fault" | "unsupported_iter"
                )
            }) {
                return Err(format!("{at}: flag {f}"));
            }
            if r.pos != next {
                return Err(format!(
                    "{at}: expected stream_pos {next} ({} bytes {})",
                    r.pos.abs_diff(next),
                    if r.pos > next { "missing" } else { "repeated" }
                ));
            }
            if r.data_len != r.len {
                return Err(format!("{at}: len {} but {} data bytes", r.len, r.data_len));
            }
            next += r.len;
            match &r.data {
                Some(d) => bytes.extend_from_slice(d),
                None => have_payload = false,
            }
        }
        if have_payload {
            return Ok(Stream {
                len: next,
                sha256: hex(&Sha256::digest(&bytes)),
            });
        }
        let d = digest.ok_or_else(|| format!("{what}: the guest sent no digest"))?;
        if d.bytes != next {
            return Err(format!(
                "{what}: digest covers {} bytes, the records {next}",
                d.bytes
            ));
        }
        Ok(Stream {
            len: next,
            sha256: d.sha256.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
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
