//! Asking dockerd about its containers: `GET /containers/json?all=1` and
//! `GET /containers/<id>/json` (name, `Config.Image`) over HTTP/1.1 on dockerd's unix socket.
//!
//! Hand-written: one GET per container with `Connection: close`, answered with a JSON body
//! (by `Content-Length`, chunked, or up to the close), is all the tracer asks; a client crate
//! (hyper with its HTTP/1 client, connectors and body utilities) is far more than that.

use std::path::Path;

use anyhow::{Context as _, bail};
use containerdsnoop_decode::attribution::{Container, RuntimeKind};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixStream,
};

/// Longest answer accepted.
const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Every container dockerd has (running or not).
pub async fn containers(socket: &Path) -> anyhow::Result<Vec<Container>> {
    let body = get(socket, "/containers/json?all=1")
        .await?
        .context("listing containers")?;
    let list = body
        .as_array()
        .context("the container list is not a JSON array")?;
    Ok(list
        .iter()
        .filter_map(|c| {
            let id = c.get("Id")?.as_str()?;
            let name = c.get("Names")?.as_array()?.first()?.as_str();
            Some(container(id, name, c.get("Image").and_then(Value::as_str)))
        })
        .collect())
}

/// The container `id`; None when dockerd does not know it (404).
pub async fn container_by_id(socket: &Path, id: &str) -> anyhow::Result<Option<Container>> {
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Ok(None);
    }
    let Some(body) = get(socket, &format!("/containers/{id}/json")).await? else {
        return Ok(None);
    };
    let id = body.get("Id").and_then(Value::as_str).unwrap_or(id);
    let name = body.get("Name").and_then(Value::as_str);
    let image = body.pointer("/Config/Image").and_then(Value::as_str);
    Ok(Some(container(id, name, image)))
}

/// Whether `socket` is a dockerd (`GET /_ping` answers `OK`).
pub async fn ping(socket: &Path) -> anyhow::Result<()> {
    let (status, body) = request(socket, "/_ping").await?;
    if status != 200 || body != b"OK" {
        bail!("/_ping answered {status}");
    }
    Ok(())
}

/// Follows dockerd's container `create` events (`GET /events`, a chunked stream of JSON
/// objects, one per line): calls `created` with each new container, named and with its image
/// as the event says, until the stream ends or fails.
pub async fn watch_creations(
    socket: &Path,
    mut created: impl FnMut(Container),
) -> anyhow::Result<()> {
    let filters = r#"{"type":["container"],"event":["create"]}"#;
    let path = format!("/events?filters={}", percent_encode(filters));
    let mut stream = UnixStream::connect(socket).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut body = ChunkedBody::default();
    let mut read = [0u8; 16 * 1024];
    let mut in_body = false;
    loop {
        let n = stream.read(&mut read).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&read[..n]);
        if !in_body {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if buf.len() > 64 * 1024 {
                    bail!("a response head larger than 64 KiB");
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") || !head.contains("transfer-encoding: chunked") {
                bail!("GET /events: {}", head.lines().next().unwrap_or_default());
            }
            buf.drain(..end + 4);
            in_body = true;
        }
        for line in body.feed(&mut buf)? {
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let Some(id) = event.pointer("/Actor/ID").and_then(Value::as_str) else {
                continue;
            };
            let attribute = |k: &str| event.pointer(&format!("/Actor/Attributes/{k}"))?.as_str();
            created(container(id, attribute("name"), attribute("image")));
        }
    }
}

/// An incremental chunked-encoding decoder that hands back complete lines.
#[derive(Default)]
struct ChunkedBody {
    /// Bytes of the current chunk still to come.
    remaining: usize,
    /// The CRLF that ends a chunk's data is still to come.
    chunk_end: bool,
    line: Vec<u8>,
}

impl ChunkedBody {
    /// Consumes what it can of `buf`; returns the lines completed.
    fn feed(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if self.remaining > 0 {
                let take = self.remaining.min(rest.len());
                if take == 0 {
                    break;
                }
                for &b in &rest[..take] {
                    if b == b'\n' {
                        lines.push(std::mem::take(&mut self.line));
                    } else if self.line.len() < MAX_EVENT_BYTES {
                        self.line.push(b);
                    }
                }
                at += take;
                self.remaining -= take;
                self.chunk_end = self.remaining == 0;
                continue;
            }
            if self.chunk_end {
                if rest.len() < 2 {
                    break;
                }
                if &rest[..2] != b"\r\n" {
                    bail!("a chunk without its CRLF");
                }
                at += 2;
                self.chunk_end = false;
                continue;
            }
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                if rest.len() > 1024 {
                    bail!("a chunk size line longer than 1 KiB");
                }
                break;
            };
            let text = std::str::from_utf8(&rest[..end])?;
            let size = text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).context("a bad chunk size")?;
            if size == 0 {
                bail!("the event stream ended");
            }
            at += end + 2;
            self.remaining = size;
        }
        buf.drain(..at);
        Ok(lines)
    }
}

/// Longest event line kept (the rest of a longer one is dropped, and it fails to parse).
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Percent-encodes a query value.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn container(id: &str, name: Option<&str>, image: Option<&str>) -> Container {
    Container {
        id: id.to_string(),
        name: name.map(|n| n.trim_start_matches('/').to_string()),
        image: image.filter(|i| !i.is_empty()).map(str::to_string),
        runtime: Some(RuntimeKind::Docker),
        ..Container::default()
    }
}

/// GETs `path`: its JSON body, None on 404.
async fn get(socket: &Path, path: &str) -> anyhow::Result<Option<Value>> {
    let (status, body) = request(socket, path).await?;
    match status {
        404 => Ok(None),
        200 => Ok(Some(
            serde_json::from_slice(&body).context("a body that is not JSON")?,
        )),
        other => bail!("GET {path}: HTTP {other}"),
    }
}

/// One request on a fresh connection: the status and the body.
async fn request(socket: &Path, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = UnixStream::connect(socket).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .await?;
    parse_response(&response)
}

/// Parses a whole `Connection: close` response.
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    let head = std::str::from_utf8(&response[..end]).context("a response head that is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => {
            code.parse().context("a status that is not a number")?
        }
        _ => bail!("not an HTTP/1.x response"),
    };
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("a bad Content-Length")?);
        }
    }
    let rest = &response[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .context("a body shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk size line without its end")?;
        let size_text = std::str::from_utf8(&rest[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("a bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).context("a chunk cut short")?);
        rest = rest.get(size + 2..).context("a chunk without its end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_by_length_chunked_and_close() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKextra";
        assert_eq!(parse_response(sized).expect("ok"), (200, b"OK".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=1\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).expect("ok").1,
            b"{\"a\":1}".to_vec()
        );
        let closed = b"HTTP/1.0 404 Not Found\r\n\r\nno such container";
        assert_eq!(parse_response(closed).expect("ok").0, 404);
        assert!(parse_response(b"\x00\x00\x12\x04garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn event_lines_come_out_of_chunks_split_anywhere() {
        let event = b"{\"Actor\":{\"ID\":\"abc\",\"Attributes\":{\"name\":\"web\"}}}\n";
        let mut stream = format!("{:x}\r\n", event.len()).into_bytes();
        stream.extend_from_slice(event);
        stream.extend_from_slice(b"\r\n5\r\n{\"a\":\r\n3;ext=1\r\n1}\n\r\n");
        for split in 1..stream.len() {
            let mut body = ChunkedBody::default();
            let mut buf = stream[..split].to_vec();
            let mut lines = body.feed(&mut buf).expect("first part");
            buf.extend_from_slice(&stream[split..]);
            lines.extend(body.feed(&mut buf).expect("second part"));
            assert_eq!(lines.len(), 2, "split at {split}");
            assert!(lines[0].starts_with(b"{\"Actor\"") && lines[0].ends_with(b"}"));
            assert_eq!(lines[1], b"{\"a\":1}");
        }
        let mut bad = b"zz\r\n".to_vec();
        assert!(ChunkedBody::default().feed(&mut bad).is_err());
        assert_eq!(percent_encode("{\"a\":[1]}"), "%7B%22a%22%3A%5B1%5D%7D");
    }

    #[test]
    fn docker_names_lose_their_slash() {
        let c = container("0123456789abcdef", Some("/web"), Some("busybox:test"));
        assert_eq!(c.label(), "web");
        assert_eq!(c.runtime, Some(RuntimeKind::Docker));
    }
}
