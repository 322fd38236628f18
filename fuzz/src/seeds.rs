//! Seed corpora, generated from the recorded fixtures (`containerdsnoop-decode/tests/fixtures/**`) so
//! that nothing is committed in bulk: `cargo xtask fuzz` runs `examples/seeds.rs` before it
//! fuzzes. Each target gets the real traffic cut to the shape it reads: kernel records, one
//! direction's HTTP/2 bytes, header blocks, gRPC DATA bytes, messages with their method, and
//! whole captures as chunk sequences.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use containerdsnoop_common::{CHUNK_HEADER_LEN, ChunkHeader};
use containerdsnoop_decode::{
    pcap::PcapReader,
    protocol::call::{Body, CallEventKind, ConnEnd, Role, Side},
    protocol::grpc,
    protocol::http2::{
        PREFACE,
        frame::{self, Frame, HEADER_LEN, Head},
    },
    record::{Chunk, chunks_from_raw_jsonl},
};

use crate::{chunks, conn_ops};

/// Seeds per target, by target name.
pub type Seeds = BTreeMap<&'static str, Vec<(String, Vec<u8>)>>;

/// Every fixture file under `dir`, recursively, sorted.
fn files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Builds every target's seeds from the fixtures under `fixtures`.
pub fn from_fixtures(fixtures: &Path) -> io::Result<Seeds> {
    let mut seeds = Seeds::new();
    let mut paths = Vec::new();
    files(fixtures, &mut paths)?;
    for path in paths {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => {
                let text = fs::read_to_string(&path)?;
                capture_seeds(&stem, &chunks_from_raw_jsonl(&text), &mut seeds);
            }
            Some("pcap" | "pcapng") => {
                let bytes = fs::read(&path)?;
                let chunks: Vec<Chunk> = PcapReader::new(io::Cursor::new(&bytes[..]))
                    .map(|r| r.filter_map(Result::ok).collect())
                    .unwrap_or_default();
                push(&mut seeds, "pcap_read", stem.clone(), bytes);
                if !chunks.is_empty() {
                    capture_seeds(&format!("{stem}-pcap"), &chunks, &mut seeds);
                }
            }
            Some("rec") => {
                let protocol = path
                    .parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str());
                let target = match protocol {
                    Some("ttrpc") => "ttrpc_conn",
                    Some("http1") => "http1_conn",
                    _ => continue,
                };
                recording_seeds(&stem, target, &fs::read(&path)?, &mut seeds);
            }
            _ => {}
        }
    }
    Ok(seeds)
}

/// Writes seeds as `DIR/<target>/seed-<name>`, for the targets in `targets` only.
pub fn write(seeds: &Seeds, dir: &Path, targets: &[String]) -> io::Result<usize> {
    let mut n = 0;
    for (target, list) in seeds {
        if !targets.iter().any(|t| t == target) {
            continue;
        }
        let d = dir.join(target);
        fs::create_dir_all(&d)?;
        for (name, bytes) in list {
            let mut f = fs::File::create(d.join(format!("seed-{name}")))?;
            f.write_all(bytes)?;
            n += 1;
        }
    }
    Ok(n)
}

fn push(seeds: &mut Seeds, target: &'static str, name: String, bytes: Vec<u8>) {
    seeds.entry(target).or_default().push((name, bytes));
}

/// A `.rec` recording (`> LEN\n` client write, `< LEN\n` server write, each followed by LEN
/// bytes and a newline; see the fixtures' README), for its protocol's connection target and the
/// pipeline. `None` when the file does not follow the format.
fn parse_recording(mut data: &[u8]) -> Option<Vec<(bool, Vec<u8>)>> {
    let mut writes = Vec::new();
    while !data.is_empty() {
        let nl = data.iter().position(|&c| c == b'\n')?;
        let head = std::str::from_utf8(&data[..nl]).ok()?;
        let (mark, len) = head.split_once(' ')?;
        let len: usize = len.parse().ok()?;
        let bytes = data.get(nl + 1..nl + 1 + len)?;
        writes.push((mark == ">", bytes.to_vec()));
        data = data.get(nl + 2 + len..).unwrap_or_default();
    }
    Some(writes)
}

fn recording_seeds(stem: &str, target: &'static str, data: &[u8], seeds: &mut Seeds) {
    let Some(writes) = parse_recording(data) else {
        return;
    };
    // The client is side A, as the connection table would order a client that connected first.
    let mut conn = vec![0u8];
    let mut ops = Vec::new();
    for (client, bytes) in &writes {
        let side = if *client { Side::A } else { Side::B };
        conn_ops::encode_write(side, bytes, &mut conn);
        for piece in bytes.chunks(usize::from(u16::MAX)) {
            ops.push(chunks::Op {
                conn: 0,
                side: u8::from(!client),
                path_is_peer: *client,
                mode: chunks::Mode::Plain,
                data: piece.to_vec(),
            });
        }
    }
    push(seeds, target, stem.to_string(), conn);
    push(
        seeds,
        "pipeline",
        format!("{target}-{stem}"),
        chunks::encode(&ops),
    );
}

/// One recorded capture, cut for every target.
fn capture_seeds(stem: &str, chunks: &[Chunk], seeds: &mut Seeds) {
    // Kernel records, as the ring buffer would have delivered them.
    for (i, c) in chunks.iter().enumerate().take(64) {
        push(seeds, "wire_parse", format!("{stem}-{i}"), record(c));
    }

    // The whole capture, and each connection alone, through the pipeline.
    let ops = chunks::from_chunks(chunks);
    push(
        seeds,
        "pipeline",
        format!("{stem}-all"),
        chunks::encode(&ops),
    );
    let mut by_conn: BTreeMap<u8, Vec<chunks::Op>> = BTreeMap::new();
    for op in ops {
        by_conn.entry(op.conn).or_default().push(op);
    }
    for (conn, ops) in &by_conn {
        push(
            seeds,
            "pipeline",
            format!("{stem}-conn{conn}"),
            chunks::encode(ops),
        );
        // The HTTP/2 connection decoder: feed operations (see fuzz_targets/http2_conn.rs).
        let mut writes = vec![0u8];
        for op in ops {
            let side = if op.side == 0 { Side::A } else { Side::B };
            conn_ops::encode_write(side, &op.data, &mut writes);
        }
        push(seeds, "http2_conn", format!("{stem}-conn{conn}"), writes);
        messages(stem, *conn, ops, seeds);
    }

    // Each direction's byte stream, and what is inside its frames.
    let mut streams: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for c in chunks {
        streams
            .entry(c.sock_ino)
            .or_default()
            .extend_from_slice(&c.data);
    }
    for (ino, bytes) in &streams {
        let mut split_seed = vec![0x5a];
        split_seed.extend_from_slice(bytes);
        push(seeds, "http2_frame", format!("{stem}-{ino}"), split_seed);
        frame_contents(&format!("{stem}-{ino}"), bytes, seeds);
    }
}

/// Header blocks (for `hpack`) and per-stream DATA bytes (for `grpc_framing`) of one direction.
fn frame_contents(name: &str, mut bytes: &[u8], seeds: &mut Seeds) {
    if let Some(rest) = bytes.strip_prefix(PREFACE.as_slice()) {
        bytes = rest;
    }
    // hpack input: a limits selector, then `len:u16le block` per header block, in order, so
    // the dynamic table carries over between blocks as it does on the wire.
    let mut hpack = vec![0u8];
    let mut block = Vec::new();
    let mut data: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    while let Some(head) = Head::parse(bytes) {
        let total = HEADER_LEN + head.len as usize;
        let Some(payload) = bytes.get(HEADER_LEN..total) else {
            break;
        };
        bytes = &bytes[total..];
        let end_headers = match frame::parse(&head, payload) {
            Ok(Frame::Headers {
                fragment,
                end_headers,
                ..
            })
            | Ok(Frame::Continuation {
                fragment,
                end_headers,
                ..
            }) => {
                block.extend_from_slice(fragment);
                end_headers
            }
            Ok(Frame::Data {
                stream, data: d, ..
            }) => {
                data.entry(stream).or_default().extend_from_slice(d);
                false
            }
            _ => false,
        };
        if end_headers {
            let len = block.len().min(usize::from(u16::MAX));
            hpack.extend_from_slice(&(len as u16).to_le_bytes());
            hpack.extend_from_slice(&block[..len]);
            block.clear();
        }
    }
    if hpack.len() > 1 {
        push(seeds, "hpack", name.to_string(), hpack);
    }
    for (stream, bytes) in data {
        // grpc_framing input: max_message (u16le, here 16 KiB), a split seed, the DATA bytes.
        let mut seed = vec![0x00, 0x40, 0x33];
        seed.extend_from_slice(&bytes);
        push(seeds, "grpc_framing", format!("{name}-s{stream}"), seed);
    }
}

/// gRPC messages with their method, decoded by the library's own HTTP/2 decoder: seeds for the
/// protobuf renderers and, compressed, for decompression.
fn messages(stem: &str, conn: u8, ops: &[chunks::Op], seeds: &mut Seeds) {
    let mut decoder = grpc::Connection::default();
    let mut events = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let side = if op.side == 0 { Side::A } else { Side::B };
        decoder.feed(side, i as u64, &op.data, &mut events);
    }
    decoder.close(u64::MAX, ConnEnd::CaptureEnded, &mut events);
    for (i, e) in events.iter().enumerate() {
        let CallEventKind::Message {
            role,
            method,
            body: Body::Protobuf(bytes),
            ..
        } = &e.kind
        else {
            continue;
        };
        let name = format!("{stem}-conn{conn}-{i}");
        if let Some(m) = method {
            let role = match role {
                Role::Request => "req",
                Role::Response => "resp",
            };
            let mut seed = format!("{} {role}\n", m.name).into_bytes();
            seed.extend_from_slice(bytes);
            push(seeds, "protobuf_schema", name.clone(), seed);
        }
        let mut raw = vec![64];
        raw.extend_from_slice(bytes);
        push(seeds, "protobuf_raw", name.clone(), raw);
        for (enc, tag) in [(0u8, "gzip"), (1u8, "deflate")] {
            let compressed = compress(enc, bytes);
            // grpc_decompress input: encoding, cap (u16le, in 16-byte units), compressed bytes.
            let mut seed = vec![enc, 0x00, 0x10];
            seed.extend_from_slice(&compressed);
            push(seeds, "grpc_decompress", format!("{name}-{tag}"), seed);
        }
    }
}

fn compress(encoding: u8, bytes: &[u8]) -> Vec<u8> {
    use flate2::{
        Compression,
        write::{GzEncoder, ZlibEncoder},
    };
    let result = if encoding == 0 {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).and_then(|()| e.finish())
    } else {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).and_then(|()| e.finish())
    };
    // Writing into a Vec cannot fail.
    result.unwrap_or_default()
}

/// The ring-buffer record a chunk came from (the layout of `containerdsnoop_common::ChunkHeader`).
pub fn record(c: &Chunk) -> Vec<u8> {
    // SAFETY: ChunkHeader is repr(C) plain integers and byte arrays (padding is explicit), so
    // all-zero is a valid value.
    let mut h: ChunkHeader = unsafe { std::mem::zeroed() };
    h.ts_ns = c.ts_ns;
    h.sock_ino = c.sock_ino;
    h.peer_ino = c.peer_ino;
    h.stream_pos = c.stream_pos;
    h.call_len = c.call_len;
    h.chunk_off = c.chunk_off;
    h.span_len = c.span_len;
    h.cap_len = c.data.len() as u32;
    h.flags = c.flags;
    h.tgid = c.tgid;
    h.tid = c.tid;
    h.peer_tgid = c.peer_tgid;
    h.sock_type = c.sock_type;
    let copy = |dst: &mut [u8], src: &str| {
        let n = src.len().min(dst.len().saturating_sub(1));
        dst[..n].copy_from_slice(&src.as_bytes()[..n]);
        n
    };
    copy(&mut h.comm, &c.comm);
    copy(&mut h.process_comm, &c.process_comm);
    h.path_len = copy(&mut h.path, &c.path) as u16;
    h.sk = c.sock_id;
    h.peer_sk = c.peer_id;
    // SAFETY: reading the bytes of a repr(C) Copy value of exactly CHUNK_HEADER_LEN bytes.
    let head = unsafe {
        std::slice::from_raw_parts((&h as *const ChunkHeader).cast::<u8>(), CHUNK_HEADER_LEN)
    };
    let mut v = head.to_vec();
    v.extend_from_slice(&c.data);
    v
}
