//! The traffic half of the host-side verdicts: the tracer's `--raw -o json` records of one
//! guest session reassembled per socket inode by stream position, and each case's streams
//! compared with what its receiver read and what its peer reported.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::check::*;
use super::guest::{Side, Trace, hex};

/// One captured record of the tracer's `--raw -o json` output.
pub(super) struct Record {
    pub(super) event: String,
    pub(super) sock_ino: u64,
    pub(super) pos: u64,
    pub(super) len: u64,
    pub(super) call_len: u64,
    pub(super) chunk_off: u64,
    pub(super) pid: u64,
    pub(super) peer_pid: u64,
    pub(super) path: String,
    pub(super) backend: String,
    pub(super) flags: Vec<String>,
    /// The payload, when the guest shipped it (`--full-payload`).
    pub(super) data: Option<Vec<u8>>,
    /// Payload bytes present in the record.
    pub(super) data_len: u64,
}

/// A socket's payload bytes in stream order, as the guest's `--guest-digest` summed them.
pub(super) struct Digest {
    pub(super) bytes: u64,
    pub(super) sha256: String,
}

/// The tracer's records, whole or digested by the guest (then with per-socket digests).
pub(super) fn parse_records(out: &str) -> Result<(Vec<Record>, HashMap<u64, Digest>), String> {
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
pub(super) struct Stream {
    pub(super) len: u64,
    pub(super) sha256: String,
}

pub(super) struct Session<'a> {
    pub(super) ch: &'a Channel,
    pub(super) name: &'static str,
    /// The backend the records and the stderr line must name.
    pub(super) backend: &'static str,
    pub(super) h2: &'a Trace,
}

/// The name a case's server binds, which records carry: the selected path `{dir}/{case}.sock`
/// spelled differently by the `spelled` and `relative` cases (tests/vm/init.sh), which are
/// selected by the socket file's identity all the same.
pub(super) fn bound_path(dir: &str, case: &str) -> String {
    match case {
        "spelled" => format!("//{dir}/{case}.sock"),
        "relative" => format!("{case}.sock"),
        _ => format!("{dir}/{case}.sock"),
    }
}

/// What a peer reported about its connection.
pub(super) struct PeerSummary {
    pub(super) json: Value,
    pub(super) client_ino: u64,
    pub(super) server_ino: u64,
    pub(super) client_pid: u64,
    pub(super) server_pid: u64,
}

impl Session<'_> {
    pub(super) fn file(&self, name: &str) -> String {
        text(self.ch, &format!("{}/{name}", self.name))
    }

    pub(super) fn kv(&self, key: &str) -> Option<&str> {
        self.ch
            .kv
            .get(&format!("{}{key}", self.name))
            .map(String::as_str)
    }

    pub(super) fn check_all(&self, report: &mut Report) {
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
                // Programs the kernel skipped (7.x: preemptible tracepoints), named by the tracer.
                let skips = err
                    .lines()
                    .find(|l| l.contains("kernel skipped tracer programs"))
                    .map(|l| format!("; {}", l.trim()))
                    .unwrap_or_default();
                Ok(format!(
                    "{} ({secs}s for the session, {}s to ship its results){skips}",
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

    pub(super) fn peer_summary(&self, case: &str) -> Result<PeerSummary, String> {
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
    pub(super) fn sums(&self, case: &str) -> Result<(String, String), String> {
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

    pub(super) fn check_case(
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
    pub(super) fn direction(
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
