//! `bench gen`: records real tonic gRPC traffic (CRI ImageService calls, small ones and some of
//! 1 MiB, over several connections at once) and writes it twice: as the tracer's
//! `--raw -o json` capture, and as a pcap for tshark. Both hold exactly the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use anyhow::{Context as _, Result};
use base64::Engine as _;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tokio_stream::StreamExt as _;

use super::pcap::{MAX_SEGMENT, PcapWriter};
use super::record::{Log, Recorded, Write};
use crate::util::remove_stale;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write capture.jsonl, capture.pcap and the socket.
    #[arg(long)]
    out_dir: PathBuf,
    /// Calls in all.
    #[arg(long, default_value_t = 40_000)]
    calls: u64,
    /// Connections the calls are spread over (all busy at once).
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Every this many calls, one ListImages answers with a big message.
    #[arg(long, default_value_t = 1000)]
    big_every: u64,
    /// Size of the big messages.
    #[arg(long, default_value_t = 1 << 20)]
    big_bytes: usize,
}

/// Messages that went each way, counted by the client.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    requests: AtomicU64,
    responses: AtomicU64,
    errors: AtomicU64,
    big: AtomicU64,
}

pub fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("create {}", args.out_dir.display()))?;
    let log = Log::new();
    let counts = Arc::new(Counts::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(traffic(&args, &log, &counts))?;
    drop(rt);
    let writes = log.take();
    let (records, bytes) = write_raw_json(&args.out_dir.join("capture.jsonl"), &writes)?;
    write_pcap(&args.out_dir.join("capture.pcap"), &writes)?;
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "calls": c(&counts.calls),
            "requests": c(&counts.requests),
            "responses": c(&counts.responses),
            "messages": c(&counts.requests) + c(&counts.responses),
            "errors": c(&counts.errors),
            "big_messages": c(&counts.big),
            "writes": writes.len(),
            "records": records,
            "bytes": bytes,
        })
    );
    Ok(())
}

async fn traffic(args: &Args, log: &Log, counts: &Arc<Counts>) -> Result<()> {
    let sock = args.out_dir.join("gen.sock");
    remove_stale(&sock)?;
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("bind {}", sock.display()))?;
    let accepted = Arc::new(AtomicU32::new(0));
    let server_log = log.clone();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener).map(move |r| {
        r.map(|s| {
            let conn = accepted.fetch_add(1, Ordering::Relaxed);
            Recorded::new(s, server_log.clone(), conn, true)
        })
    });
    let server = tokio::spawn(super::service::serve(incoming));

    // Connections are opened one after the other, each finishing a call before the next opens,
    // so the server's accept order numbers them as the client does.
    let mut clients = Vec::new();
    for conn in 0..args.connections {
        let log = log.clone();
        let path = sock.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let (path, log) = (path.clone(), log.clone());
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(Recorded::new(
                        s, log, conn, false,
                    )))
                }
            }))
            .await
            .context("connect")?;
        let mut client = ImageServiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        call(&mut client, counts, 1, args).await?;
        clients.push(client);
    }
    let mut tasks = Vec::new();
    let per = args.calls.saturating_sub(args.connections as u64) / args.connections as u64;
    for (k, mut client) in clients.into_iter().enumerate() {
        let counts = counts.clone();
        let big_every = args.big_every;
        let big_bytes = args.big_bytes;
        tasks.push(tokio::spawn(async move {
            let a = Args {
                out_dir: PathBuf::new(),
                calls: 0,
                connections: 0,
                big_every,
                big_bytes,
            };
            for j in 0..per {
                // Offsets keep the connections' big calls apart in time.
                let i = 2 + j + k as u64 * (big_every / 4 + 1);
                call(&mut client, &counts, i, &a).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("client task")??;
    }
    server.abort();
    Ok(())
}

async fn call(
    client: &mut ImageServiceClient<tonic::transport::Channel>,
    counts: &Counts,
    i: u64,
    args: &Args,
) -> Result<()> {
    counts.calls.fetch_add(1, Ordering::Relaxed);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let spec = |image: String| {
        Some(cri::ImageSpec {
            image,
            ..Default::default()
        })
    };
    let list = |bytes: usize| cri::ListImagesRequest {
        filter: Some(cri::ImageFilter {
            image: spec(format!("bytes={bytes}")),
        }),
    };
    let ok = if args.big_every > 0 && i.is_multiple_of(args.big_every) {
        counts.big.fetch_add(1, Ordering::Relaxed);
        client.list_images(list(args.big_bytes)).await.map(drop)
    } else {
        match i % 8 {
            0 | 4 => client.list_images(list(2000)).await.map(drop),
            1 => client
                .pull_image(cri::PullImageRequest {
                    image: spec(format!("registry.example.com/team/app-{i}:v1")),
                    ..Default::default()
                })
                .await
                .map(drop),
            7 => client
                .remove_image(cri::RemoveImageRequest {
                    image: spec(format!("sha256:{i:064x}")),
                })
                .await
                .map(drop),
            _ => client
                .image_status(cri::ImageStatusRequest {
                    image: spec(format!("registry.example.com/team/app-{}:v1", i % 500)),
                    verbose: true,
                })
                .await
                .map(drop),
        }
    };
    match ok {
        Ok(()) => counts.responses.fetch_add(1, Ordering::Relaxed),
        Err(s) if s.code() == tonic::Code::NotFound => {
            counts.errors.fetch_add(1, Ordering::Relaxed)
        }
        Err(s) => return Err(s).context("call"),
    };
    Ok(())
}

const PID_CLIENT: u32 = 4100;
const PID_SERVER: u32 = 4200;
const PATH: &str = "/run/containerd/containerd.sock";

/// Writes each write as the tracer records it: split into records of up to 32 KiB, with the
/// stream position of its first byte. Returns (records, payload bytes).
fn write_raw_json(path: &std::path::Path, writes: &[Write]) -> Result<(u64, u64)> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut pos: std::collections::HashMap<(u32, bool), u64> = Default::default();
    let (mut records, mut bytes) = (0u64, 0u64);
    let b64 = base64::engine::general_purpose::STANDARD;
    for w in writes {
        let ino = 500_000 + 2 * w.conn as u64 + w.server as u64;
        let peer_ino = 500_000 + 2 * w.conn as u64 + !w.server as u64;
        let id = |ino: u64| ino.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (pid, peer_pid, comm) = if w.server {
            (PID_SERVER, PID_CLIENT, "containerd")
        } else {
            (PID_CLIENT, PID_SERVER, "kubelet")
        };
        let p = pos.entry((w.conn, w.server)).or_default();
        let mut off = 0usize;
        for piece in w.data.chunks(MAX_SEGMENT) {
            let mut flags = Vec::new();
            if off + piece.len() == w.data.len() {
                flags.push("call_end");
            }
            if !w.server {
                flags.push("path_is_peer");
            }
            let v = serde_json::json!({
                "backend": "tracepoint",
                "call_len": w.data.len(),
                "chunk_off": off,
                "comm": comm,
                "data": b64.encode(piece),
                "event": "data",
                "flags": flags,
                "len": piece.len(),
                "path": PATH,
                "peer_ino": peer_ino,
                "peer_pid": peer_pid,
                "peer_sock_id": id(peer_ino),
                "pid": pid,
                "process_comm": comm,
                "sock_id": id(ino),
                "sock_ino": ino,
                "sock_type": 1,
                "stream_pos": *p,
                "tid": pid + 1 + w.conn,
                "ts_ns": 1_000_000_000 + w.ts_ns,
            });
            writeln!(out, "{v}")?;
            *p += piece.len() as u64;
            off += piece.len();
            records += 1;
            bytes += piece.len() as u64;
        }
    }
    out.flush()?;
    Ok((records, bytes))
}

fn write_pcap(path: &std::path::Path, writes: &[Write]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = PcapWriter::new(BufWriter::with_capacity(1 << 20, file))?;
    for x in writes {
        w.write(1_000_000_000 + x.ts_ns, x.conn, x.server, &x.data)?;
    }
    w.finish()?;
    Ok(())
}
