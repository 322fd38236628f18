//! End-to-end tests of `-w` and `-r`: real HTTP/2 bytes from `h2` exported and read back
//! (`round_trip`), tshark as an independent decoder of our exports (`oracle`), a real grpcio
//! capture and hand-built TCP misbehaviour (`offline`), and hostile files (`hostile`). This file
//! holds the builders they share.

mod hostile;
mod offline;
mod oracle;
mod round_trip;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use containerdsnoop_common::flags;

use super::packet::{Tcp4, build_ipv4_frame, linktype, tcp_flags};
use super::{ConnMeta, Error, Event, PcapReader, PcapWriter, ReaderStats, ng, tcp};
use crate::protocol::Protocol;
use crate::record::Chunk;
use crate::stream::reassembly::{Piece, Reassembler};

const SOCK_PATH: &str = "/run/containerd/containerd.sock";
const VERSION: &str = "/containerd.services.version.v1.Version/Version";
const CLIENT_INO: u64 = 31337;
const SERVER_INO: u64 = 31338;
/// Socket identities as the capture masks kernel pointers: unrelated to the inodes.
const CLIENT_ID: u64 = 0x9e37_0000_0000_1001;
const SERVER_ID: u64 = 0x1234_0000_0000_2001;
const T0: u64 = 1_760_000_000_000_000_000;

// ---- real HTTP/2 from h2 ----------------------------------------------------------------

use crate::testutil::{Recorder, WriteLog as Log};

fn grpc_msg(body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A gRPC `Version` call, then one with a large response (to exercise segment splitting),
/// as h2's client and server wrote them: (is_client, bytes) per write.
fn h2_grpc_writes(big_response: usize) -> Vec<(bool, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log: Log = Arc::default();
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 20);
        let client_io = Recorder {
            inner: a,
            side: crate::protocol::call::Side::A,
            log: log.clone(),
        };
        let server_io = Recorder {
            inner: b,
            side: crate::protocol::call::Side::B,
            log: log.clone(),
        };
        let server = tokio::spawn(async move {
            let mut builder = h2::server::Builder::new();
            builder.initial_window_size(1 << 20).max_frame_size(1 << 20);
            let mut conn = builder.handshake(server_io).await.unwrap();
            while let Some(accepted) = conn.accept().await {
                let (req, mut respond) = accepted.unwrap();
                tokio::spawn(async move {
                    let path = req.uri().path().to_string();
                    let mut body = req.into_body();
                    while let Some(c) = body.data().await {
                        let c = c.unwrap();
                        let _ = body.flow_control().release_capacity(c.len());
                    }
                    let resp = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut send = respond.send_response(resp, false).unwrap();
                    let msg = if path == VERSION {
                        grpc_msg(b"\x0a\x052.1.0")
                    } else {
                        grpc_msg(&vec![b'z'; big_response])
                    };
                    send.reserve_capacity(msg.len());
                    send.send_data(Bytes::from(msg), false).unwrap();
                    let mut t = http::HeaderMap::new();
                    t.insert("grpc-status", "0".parse().unwrap());
                    send.send_trailers(t).unwrap();
                });
            }
        });
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake::<_, Bytes>(client_io)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        for path in [VERSION, "/containerd.services.content.v1.Content/Read"] {
            let req = http::Request::builder()
                .method("POST")
                .uri(format!("http://localhost{path}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let mut ready = client.clone().ready().await.unwrap();
            let (resp, mut send) = ready.send_request(req, false).unwrap();
            send.send_data(Bytes::from(grpc_msg(b"")), true).unwrap();
            let mut body = resp.await.unwrap().into_body();
            while let Some(c) = body.data().await {
                let c = c.unwrap();
                let _ = body.flow_control().release_capacity(c.len());
            }
            let _ = body.trailers().await;
        }
        drop(client);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    });
    log.lock()
        .map(|l| {
            l.iter()
                .map(|(side, _, data)| (*side == crate::protocol::call::Side::A, data.clone()))
                .collect()
        })
        .unwrap_or_default()
}

// ---- chunks as the live capture makes them --------------------------------------------

fn chunk(client: bool, pos: u64, data: &[u8], ts_ns: u64) -> Chunk {
    let (sock_ino, peer_ino, sock_id, peer_id, comm, tgid) = if client {
        (CLIENT_INO, SERVER_INO, CLIENT_ID, SERVER_ID, "ctr", 4242)
    } else {
        (
            SERVER_INO,
            CLIENT_INO,
            SERVER_ID,
            CLIENT_ID,
            "containerd",
            77,
        )
    };
    Chunk {
        ts_ns,
        sock_ino,
        peer_ino,
        sock_id,
        peer_id,
        stream_pos: pos,
        call_len: data.len() as u32,
        chunk_off: 0,
        span_len: data.len() as u32,
        flags: flags::BACKEND_TRACEPOINT
            | flags::CALL_END
            | if client { flags::PATH_IS_PEER } else { 0 },
        tgid,
        tid: tgid + 1,
        peer_tgid: if client { 77 } else { 4242 },
        lost_records: 0,
        pattern: 0,
        sock_type: 1,
        comm: comm.to_string(),
        process_comm: comm.to_string(),
        path: SOCK_PATH.to_string(),
        data: data.to_vec(),
    }
}

/// Chunks for a sequence of writes, positions counted per side.
fn chunks_of(writes: &[(bool, Vec<u8>)]) -> Vec<Chunk> {
    let mut pos = [0u64; 2];
    writes
        .iter()
        .enumerate()
        .map(|(i, (client, data))| {
            let p = &mut pos[usize::from(*client)];
            let c = chunk(*client, *p, data, T0 + i as u64 * 1_000_123);
            *p += data.len() as u64;
            c
        })
        .collect()
}

/// What the reader can reproduce of a chunk: a record is one call of its own span.
fn as_read_back(c: &Chunk) -> Chunk {
    let mut c = c.clone();
    c.call_len = c.span_len;
    c.chunk_off = 0;
    c
}

fn export(chunks: &[Chunk], protocol: Protocol) -> Vec<u8> {
    let mut r = Reassembler::default();
    let mut w = PcapWriter::new(Vec::new()).expect("header");
    for c in chunks {
        let mut pieces = Vec::new();
        r.accept(c, &mut pieces);
        w.record(c, &pieces, &ConnMeta::from_chunk(c, protocol))
            .expect("record");
    }
    w.finish().expect("finish")
}

fn read_events(bytes: &[u8]) -> (Vec<Event>, Option<Error>, ReaderStats) {
    let mut r = PcapReader::new(bytes).expect("capture header");
    let mut ev = Vec::new();
    let mut err = None;
    while let Some(e) = r.next_event() {
        match e {
            Ok(e) => ev.push(e),
            Err(e) => err = Some(e),
        }
    }
    (ev, err, r.stats())
}

fn read_chunks(bytes: &[u8]) -> Vec<Chunk> {
    let (ev, err, _) = read_events(bytes);
    assert!(err.is_none(), "{err:?}");
    ev.into_iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c),
            Event::Closed { .. } => None,
        })
        .collect()
}

fn pieces_of(chunks: &[Chunk]) -> Vec<(u64, Vec<Piece>)> {
    let mut r = Reassembler::default();
    chunks
        .iter()
        .map(|c| {
            let mut p = Vec::new();
            r.accept(c, &mut p);
            (c.sock_ino, p)
        })
        .collect()
}

/// Each socket's bytes by position, contiguous runs merged.
fn streams(chunks: &[Chunk]) -> BTreeMap<u64, Vec<(u64, Vec<u8>)>> {
    let mut m: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    for c in chunks {
        let runs = m.entry(c.sock_ino).or_default();
        match runs.last_mut() {
            Some((p, d)) if *p + d.len() as u64 == c.stream_pos => d.extend_from_slice(&c.data),
            _ => runs.push((c.stream_pos, c.data.clone())),
        }
    }
    m
}

// ---- hand-built TCP (classic pcap files) ---------------------------------------------

/// A classic pcap file (for the byte-order and resolution variants).
fn pcap_file(big: bool, nanos: bool, lt: u32, snaplen: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let mut v = Vec::new();
    w32(&mut v, if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 });
    let ver = if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] };
    v.extend_from_slice(&ver);
    w32(&mut v, 0);
    w32(&mut v, 0);
    w32(&mut v, snaplen);
    w32(&mut v, lt);
    for (ts, f) in frames {
        w32(&mut v, (ts / 1_000_000_000) as u32);
        let frac = ts % 1_000_000_000;
        w32(
            &mut v,
            if nanos {
                frac as u32
            } else {
                (frac / 1000) as u32
            },
        );
        w32(&mut v, f.len() as u32);
        w32(&mut v, f.len() as u32);
        v.extend_from_slice(f);
    }
    v
}

const C: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
const S: ([u8; 4], u16) = ([10, 0, 0, 2], 8080);

/// A raw-IP TCP segment from `from` to the other end.
fn seg(from_client: bool, seq: u32, ack: u32, fl: u8, payload: &[u8]) -> Vec<u8> {
    let (a, b) = if from_client { (C, S) } else { (S, C) };
    let mut f = Vec::new();
    build_ipv4_frame(
        &mut f,
        &Tcp4 {
            src: a.0,
            dst: b.0,
            sport: a.1,
            dport: b.1,
            seq,
            ack,
            flags: fl,
            window: 1000,
            options: &[],
        },
        payload,
        ([0; 6], [0; 6]),
    );
    f.split_off(super::packet::ETH_LEN)
}

fn timed(frames: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (T0 + i as u64 * 1000, f))
        .collect()
}

// ---- files and tshark ----------------------------------------------------------------

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("containerdsnoop-pcap-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs tshark; `None` (with a note) when it is not installed.
fn tshark(args: &[&str]) -> Option<String> {
    match std::process::Command::new("tshark").args(args).output() {
        Ok(o) => {
            assert!(
                o.status.success(),
                "tshark {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Err(e) => {
            eprintln!("skipping the tshark oracle: cannot run tshark ({e})");
            None
        }
    }
}
