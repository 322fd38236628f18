//! `hold-server` / `hold-client`: an HTTP/1.1 call that stays open, for the tests of connection
//! ends (issue #12). The server answers late, never, or with an endless chunked stream; the
//! client sends one request and then closes, exits, or waits to be killed. Times are printed as
//! CLOCK_MONOTONIC nanoseconds, the tracer's clock, so tests can compare them with its rows.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::util::remove_stale;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Path of the listening socket (a stale one is removed first).
    #[arg(long)]
    path: PathBuf,
    /// Answer each request after this long; without it (and without --stream), never answer.
    #[arg(long)]
    reply_after_ms: Option<u64>,
    /// Answer with a chunked body that never ends: a chunk every 100 ms.
    #[arg(long)]
    stream: bool,
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[arg(long)]
    path: PathBuf,
    /// Request target.
    #[arg(long, default_value = "/v1.41/containers/hold/wait")]
    target: String,
    /// Close the connection this long after sending (else keep it until the process ends).
    #[arg(long)]
    close_after_ms: Option<u64>,
    /// Exit this long after sending (or after closing); without it, wait until killed.
    #[arg(long)]
    exit_after_ms: Option<u64>,
    /// SIGKILL itself this long after sending, mid-call (prints the time just before).
    #[arg(long)]
    abort_after_ms: Option<u64>,
}

/// CLOCK_MONOTONIC in nanoseconds (`bpf_ktime_get_ns`'s clock).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Prints one JSON line on stdout, flushed (tests read it while the process lives).
fn say(v: serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

pub fn run_server(args: ServerArgs) -> Result<()> {
    remove_stale(&args.path)?;
    let listener =
        UnixListener::bind(&args.path).with_context(|| format!("bind {}", args.path.display()))?;
    say(serde_json::json!({ "listening": args.path, "pid": std::process::id() }))?;
    for conn in listener.incoming() {
        let conn = conn.context("accept")?;
        let reply_after = args.reply_after_ms;
        let stream = args.stream;
        thread::spawn(move || serve(conn, reply_after, stream));
    }
    Ok(())
}

/// Reads requests (up to the blank line) and answers as told, until the client goes away.
fn serve(mut conn: UnixStream, reply_after_ms: Option<u64>, stream: bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                loop {
                    let body = "{\"status\":\"tick\"}\n";
                    let frame = format!("{:x}\r\n{body}\r\n", body.len());
                    if conn.write_all(frame.as_bytes()).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
            if let Some(ms) = reply_after_ms {
                thread::sleep(Duration::from_millis(ms));
                let body = "{\"StatusCode\":0}\n";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if conn.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

pub fn run_client(args: ClientArgs) -> Result<()> {
    let mut conn = UnixStream::connect(&args.path)
        .with_context(|| format!("connect {}", args.path.display()))?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: containerdsnoop-testpeer\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        args.target
    );
    // One write, with a body: the tracer shows a REQ row for requests with a body.
    conn.write_all(request.as_bytes())
        .context("send the request")?;
    say(serde_json::json!({ "pid": std::process::id(), "sent_ns": monotonic_ns() }))?;
    // No reader thread: a thread blocked in read(2) holds its own reference to the socket's file,
    // and the tracepoint backend reports a close only when it drops the last one (Go's and
    // grpcio's clients never block in read: they wait in epoll). The server's replies are small.
    if let Some(ms) = args.abort_after_ms {
        thread::sleep(Duration::from_millis(ms));
        say(serde_json::json!({ "abort_ns": monotonic_ns() }))?;
        // SAFETY: kill(2) on this process: it ends here, its sockets closed by the kernel.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    if let Some(ms) = args.close_after_ms {
        thread::sleep(Duration::from_millis(ms));
        let before = monotonic_ns();
        drop(conn);
        say(serde_json::json!({ "close_started_ns": before, "closed_ns": monotonic_ns() }))?;
    }
    match args.exit_after_ms {
        Some(ms) => thread::sleep(Duration::from_millis(ms)),
        None => loop {
            thread::sleep(Duration::from_secs(3600));
        },
    }
    Ok(())
}
