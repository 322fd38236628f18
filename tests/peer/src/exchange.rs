//! `exchange`: one unix stream connection inside this process, both ends sending at once, each
//! receiver recording exactly what it read.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::prng;
use crate::shape::{self, Counters, Mode, RecvPlan, SendPlan};
use crate::util::{join, remove_stale, wait_for_file, write_outputs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path of the listening socket (a stale one is removed first); the client connects to it.
    #[arg(long)]
    path: PathBuf,
    /// The name passed to bind(2), when it is to be spelled differently from --path (e.g.
    /// `///tmp/x.sock`, or a relative name with --chdir), as servers sometimes do.
    #[arg(long)]
    bind_as: Option<PathBuf>,
    /// Change to this directory before binding (for a relative --bind-as).
    #[arg(long)]
    chdir: Option<PathBuf>,
    /// Syscall shape used by both senders.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Bytes the client sends to the server.
    #[arg(long)]
    bytes: usize,
    /// Seed of the client's stream; the server's stream uses `seed + 1`.
    #[arg(long)]
    seed: u64,
    /// Bytes the server sends back [default: bytes / 2].
    #[arg(long)]
    reply_bytes: Option<usize>,
    /// Iovecs per call for writev and sendmsg.
    #[arg(long, default_value_t = 8)]
    iovecs: usize,
    /// Bytes per call [default: depends on --mode].
    #[arg(long)]
    chunk: Option<usize>,
    /// Where to write client_to_server.bin and server_to_client.bin.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Do not send until this file exists (lets a test start a tracer first).
    #[arg(long)]
    wait_file: Option<PathBuf>,
    /// Keep both sockets open this long after the exchange.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
}

/// A wait-file that never shows up must fail the run rather than hang a test.
const WAIT_FILE_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(args: Args) -> Result<()> {
    remove_stale(&args.path)?;
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).with_context(|| format!("chdir {}", dir.display()))?;
    }
    let bind_as = args.bind_as.as_ref().unwrap_or(&args.path);
    let listener =
        UnixListener::bind(bind_as).with_context(|| format!("bind {}", bind_as.display()))?;
    let file_ino = fs::metadata(&args.path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .with_context(|| format!("stat {}", args.path.display()))?;
    let client = UnixStream::connect(&args.path)
        .with_context(|| format!("connect {}", args.path.display()))?;
    let (server, _) = listener.accept().context("accept")?;

    let client_ino = shape::inode(client.as_fd())?;
    let server_ino = shape::inode(server.as_fd())?;
    let pid = std::process::id();
    if args.mode == Mode::Nonblock {
        shape::set_nonblocking(client.as_fd())?;
        shape::set_nonblocking(server.as_fd())?;
    }
    // On stderr so that stdout stays one JSON line; tests may use it to learn the inodes early.
    eprintln!("testpeer: connected pid={pid} client_ino={client_ino} server_ino={server_ino}");
    if let Some(f) = &args.wait_file {
        wait_for_file(f, WAIT_FILE_TIMEOUT)?;
    }

    let c2s = prng::bytes(args.seed, args.bytes);
    let s2c = prng::bytes(
        args.seed.wrapping_add(1),
        args.reply_bytes.unwrap_or(args.bytes / 2),
    );
    let chunk = args.chunk.unwrap_or(args.mode.default_chunk());
    let plan = |split_seed| SendPlan {
        mode: args.mode,
        chunk,
        iovecs: args.iovecs,
        split_seed,
    };
    let recv = RecvPlan {
        mode: args.mode,
        slow: args.mode == Mode::Nonblock,
    };
    let counters = Arc::new(Counters::default());

    let (got_c2s, got_s2c) = thread::scope(|s| -> Result<(Vec<u8>, Vec<u8>)> {
        let c_send = s.spawn(|| send_then_shut(&client, &c2s, plan(args.seed ^ 0xC25), &counters));
        let s_send = s.spawn(|| send_then_shut(&server, &s2c, plan(args.seed ^ 0x52C), &counters));
        let s_recv = s.spawn(|| shape::recv_all(server.as_fd(), recv, &counters));
        let c_recv = s.spawn(|| shape::recv_all(client.as_fd(), recv, &counters));
        join(c_send, "client send")?;
        join(s_send, "server send")?;
        Ok((
            join(s_recv, "server receive")?,
            join(c_recv, "client receive")?,
        ))
    })?;

    if let Some(dir) = &args.out_dir {
        write_outputs(dir, &got_c2s, &got_s2c)?;
    }
    // A short read would be a peer bug, not something for the tracer test to discover later.
    if got_c2s != c2s || got_s2c != s2c {
        bail!(
            "received bytes differ from sent bytes (c2s {} of {}, s2c {} of {})",
            got_c2s.len(),
            c2s.len(),
            got_s2c.len(),
            s2c.len()
        );
    }
    thread::sleep(Duration::from_millis(args.linger_ms));
    // The listener lives as long as the connection, as a server's does (the tracer reports
    // who listens on a selected socket).
    drop((client, server, listener));
    // Best effort: the socket file is ours and a leftover one is harmless.
    let _ = fs::remove_file(&args.path);

    let summary = serde_json::json!({
        "client_pid": pid,
        "server_pid": pid,
        "client_ino": client_ino,
        "server_ino": server_ino,
        "socket_file_ino": file_ino,
        "c2s_len": got_c2s.len(),
        "s2c_len": got_s2c.len(),
        "eagain": counters.eagain.load(Ordering::Relaxed),
        "partial_writes": counters.partial_writes.load(Ordering::Relaxed),
        "mode": args.mode.name(),
    });
    println!("{summary}");
    Ok(())
}

/// Sends, then half-closes so the other end's reader sees EOF while this end can still read.
fn send_then_shut(
    sock: &UnixStream,
    data: &[u8],
    plan: SendPlan,
    counters: &Counters,
) -> io::Result<()> {
    shape::send_all(sock.as_fd(), data, plan, counters)?;
    sock.shutdown(std::net::Shutdown::Write)
}
