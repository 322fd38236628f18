//! Guest side: replays a recorded exchange (`tests/vm/ctr-version.h2trace`, a real grpc-go
//! HTTP/2 conversation) over a fresh unix stream connection inside the VM, one `write(2)` per
//! recorded chunk, and reports like the test peer does. Also the parser the host uses to know
//! what the replay must have sent.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Which end wrote a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

pub struct Trace {
    pub chunks: Vec<(Side, Vec<u8>)>,
}

impl Trace {
    pub fn read(path: &Path) -> anyhow::Result<Trace> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Trace::parse(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// `c <hex>` / `s <hex>` lines; `#` starts a comment line.
    pub fn parse(text: &str) -> anyhow::Result<Trace> {
        let mut chunks = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (side, hex) = line
                .split_once(' ')
                .with_context(|| format!("line {}: expected `c|s HEX`", n + 1))?;
            let side = match side {
                "c" => Side::Client,
                "s" => Side::Server,
                _ => bail!("line {}: side must be c or s", n + 1),
            };
            chunks.push((
                side,
                hex_decode(hex).with_context(|| format!("line {}", n + 1))?,
            ));
        }
        if chunks.is_empty() {
            bail!("no chunks");
        }
        Ok(Trace { chunks })
    }

    /// Everything one side sent, in order.
    pub fn stream(&self, side: Side) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|(s, _)| *s == side)
            .flat_map(|(_, d)| d.iter().copied())
            .collect()
    }
}

fn hex_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("bad hex digit"))
        .collect()
}

/// Runs in the VM: listen, connect, write the recorded chunks in order from their ends, read
/// both directions to EOF, then write `client_to_server.bin` / `server_to_client.bin` and a
/// JSON summary shaped like the test peer's.
pub fn replay(trace: &Path, socket: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let trace = Trace::read(trace)?;
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    let mut client = UnixStream::connect(socket).context("connect")?;
    let (mut server, _) = listener.accept().context("accept")?;
    drop(listener);
    // The whole recording is a few KiB: it fits the socket buffers, so one thread can write
    // every chunk before anyone reads.
    for (side, data) in &trace.chunks {
        let sock = match side {
            Side::Client => &mut client,
            Side::Server => &mut server,
        };
        sock.write_all(data).context("write")?;
    }
    client.shutdown(std::net::Shutdown::Write)?;
    server.shutdown(std::net::Shutdown::Write)?;
    let mut c2s = Vec::new();
    let mut s2c = Vec::new();
    server.read_to_end(&mut c2s).context("server read")?;
    client.read_to_end(&mut s2c).context("client read")?;
    if c2s != trace.stream(Side::Client) || s2c != trace.stream(Side::Server) {
        bail!("received bytes differ from the replayed ones");
    }
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("client_to_server.bin"), &c2s)?;
    std::fs::write(out_dir.join("server_to_client.bin"), &s2c)?;
    let pid = std::process::id();
    let summary = serde_json::json!({
        "client_pid": pid,
        "server_pid": pid,
        "client_ino": socket_inode(&client)?,
        "server_ino": socket_inode(&server)?,
        "c2s_len": c2s.len(),
        "s2c_len": s2c.len(),
        "chunks": trace.chunks.len(),
    });
    drop((client, server));
    let _ = std::fs::remove_file(socket);
    println!("{summary}");
    Ok(())
}

/// Runs in the VM: prints the tracer's JSON records with each `data` replaced by `data_len`,
/// then one `{"digest": {"sock_ino", "bytes", "sha256"}}` line per socket: the sha256 of its
/// records' payloads concatenated in `stream_pos` order. The host checks positions and lengths
/// from the records and compares the digest with what the receiver read.
pub fn digest(output: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(output).with_context(|| format!("read {}", output.display()))?;
    let mut streams: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: serde_json::Value = serde_json::from_str(line).context("tracer output")?;
        if let Some(obj) = v.as_object_mut()
            && let Some(data) = obj.remove("data")
        {
            let data = base64::engine::general_purpose::STANDARD
                .decode(data.as_str().unwrap_or(""))
                .context("base64 payload")?;
            obj.insert("data_len".into(), data.len().into());
            let ino = obj.get("sock_ino").and_then(|i| i.as_u64()).unwrap_or(0);
            let pos = obj.get("stream_pos").and_then(|p| p.as_u64()).unwrap_or(0);
            streams.entry(ino).or_default().push((pos, data));
        }
        writeln!(out, "{v}")?;
    }
    for (ino, mut pieces) in streams {
        pieces.sort_by_key(|(pos, _)| *pos);
        let mut h = Sha256::new();
        let mut bytes = 0;
        for (_, d) in &pieces {
            h.update(d);
            bytes += d.len();
        }
        let line = serde_json::json!({
            "digest": { "sock_ino": ino, "bytes": bytes, "sha256": hex(&h.finalize()) }
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The socket's inode number, as `/proc/self/fd/N` names it: `socket:[INO]`.
fn socket_inode(s: &UnixStream) -> anyhow::Result<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd()))?;
    let text = link.to_string_lossy();
    text.strip_prefix("socket:[")
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("unexpected fd link {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_recorded_exchange() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/ctr-version.h2trace");
        let t = Trace::read(&path).unwrap();
        let c2s = t.stream(Side::Client);
        assert!(c2s.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!t.stream(Side::Server).is_empty());
        assert!(Trace::parse("x 00").is_err());
        assert!(Trace::parse("c 0").is_err());
    }
}
