//! `bench bulk`: one unix stream connection inside this process; the client sends fixed-size
//! writes at a steady rate (or as fast as it can) while a thread drains the server end. The
//! lossless-ceiling benchmark compares what was sent with what the tracer captured and
//! reported lost.

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::util::remove_stale;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path of the listening socket (a stale one is removed first).
    #[arg(long)]
    path: PathBuf,
    /// Send rate in MB/s (10^6 bytes); 0 sends as fast as the socket takes it.
    #[arg(long, default_value_t = 0.0)]
    rate_mb: f64,
    /// Bytes per write(2).
    #[arg(long, default_value_t = 64 * 1024)]
    chunk: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
}

pub fn run(args: Args) -> Result<()> {
    remove_stale(&args.path)?;
    let listener =
        UnixListener::bind(&args.path).with_context(|| format!("bind {}", args.path.display()))?;
    let mut client = UnixStream::connect(&args.path).context("connect")?;
    let (mut server, _) = listener.accept().context("accept")?;
    let drain = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            match server.read(&mut buf)? {
                0 => return Ok(got),
                n => got += n as u64,
            }
        }
    });
    let data: Vec<u8> = (0..args.chunk).map(|i| (i * 7 + i / 251) as u8).collect();
    let limit = Duration::from_secs_f64(args.secs);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < limit {
        if args.rate_mb > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / (args.rate_mb * 1e6));
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        client.write_all(&data).context("write")?;
        sent += data.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(client);
    let received = drain
        .join()
        .map_err(|_| anyhow::anyhow!("drain thread panicked"))?
        .context("read")?;
    let _ = std::fs::remove_file(&args.path);
    println!(
        "{}",
        serde_json::json!({
            "sent_bytes": sent,
            "received_bytes": received,
            "secs": secs,
            "rate_mb_s": sent as f64 / secs / 1e6,
            "writes": sent / args.chunk as u64,
        })
    );
    Ok(())
}
