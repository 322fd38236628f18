//! Hostile traffic through the whole pipeline (and, where a counter lives only there, through
//! one decoder): every input here is something a traced process can send. The process must stay
//! healthy, memory must stay within a named budget derived from the limits in `http2::Limits`,
//! `grpc::CallLimits`, `conn::MAX_CONNECTIONS` and `reassembly::MAX_DIRECTIONS`, evictions must
//! be counted in `pipeline.stats`, and nothing printed may drive the user's terminal.
//!
//! Memory is measured from `/proc/self`: the peak resident set during the test (VmHWM, reset
//! through `clear_refs` first) and what is still resident while the pipeline is alive. Tests
//! take one lock so that they do not measure each other, and fix glibc's mmap threshold so the
//! RSS follows what is held. Each budget is a named limit plus [`SLACK`]. `--nocapture` prints
//! the figures.

use std::{
    cell::RefCell,
    io::Write,
    rc::Rc,
    sync::{Mutex, MutexGuard},
};

use containerdsnoop_common::flags;
use containerdsnoop_decode::{
    output::sink::{Renderer, Sink},
    output::{json::JsonPrinter, table::TablePrinter, time::Clock},
    pipeline::{Pipeline, Plan},
    protocol::grpc::{
        CallLimits,
        compress::{Encoding, decompress},
    },
    protocol::http2::{
        self, Limits,
        hpack::{self, Decoder},
    },
    record::Chunk,
    schema::{self, RenderOptions, Schema},
    stream::conn::MAX_CONNECTIONS,
    stream::reassembly::MAX_DIRECTIONS,
};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Measuring

static SERIAL: Mutex<()> = Mutex::new(());

/// Allowance on top of every named bound: the test's own records in flight (up to a few MiB)
/// and allocator rounding.
const SLACK: usize = 8 * MIB;

fn serial() -> MutexGuard<'static, ()> {
    static MALLOC: std::sync::Once = std::sync::Once::new();
    MALLOC.call_once(|| {
        // A fixed mmap threshold: large buffers are always mapped and unmapped when freed, so the
        // RSS follows what is held instead of glibc's growing heap cache.
        // SAFETY: mallopt only tunes the allocator; called before the tests allocate much.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
        warm_up();
    });
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_kib(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident and peak-resident bytes of this process, from the test's start.
struct Mem {
    name: &'static str,
    rss0: usize,
    peak_resettable: bool,
}

impl Mem {
    fn start(name: &'static str) -> Mem {
        // Hand memory freed by earlier tests back to the kernel, so that this test's growth
        // shows in the RSS instead of reusing their free heap.
        // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        // "5" resets VmHWM to the current RSS (Linux 4.0+), so the peak is this test's own.
        let peak_resettable = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        Mem {
            name,
            rss0: status_kib("VmRSS:").unwrap_or(0) * 1024,
            peak_resettable,
        }
    }

    fn rss_growth(&self) -> usize {
        (status_kib("VmRSS:").unwrap_or(0) * 1024).saturating_sub(self.rss0)
    }

    fn peak_growth(&self) -> usize {
        (status_kib("VmHWM:").unwrap_or(0) * 1024).saturating_sub(self.rss0)
    }

    /// Asserts both the peak and the still-resident growth stay within `budget` bytes.
    fn check(&self, budget: usize) {
        let (rss, peak) = (self.rss_growth(), self.peak_growth());
        eprintln!(
            "adversarial {}: peak +{:.1} MiB{}, resident +{:.1} MiB, budget {:.0} MiB",
            self.name,
            peak as f64 / MIB as f64,
            if self.peak_resettable {
                ""
            } else {
                " (peak not resettable: process-wide)"
            },
            rss as f64 / MIB as f64,
            budget as f64 / MIB as f64,
        );
        assert!(
            rss <= budget,
            "{}: resident memory grew by {rss} bytes, budget {budget}",
            self.name
        );
        if self.peak_resettable {
            assert!(
                peak <= budget,
                "{}: peak memory grew by {peak} bytes, budget {budget}",
                self.name
            );
        }
    }
}

/// One ordinary call through both printers, so that whatever the pipeline initialises once
/// per process is not charged to the first test that measures.
fn warm_up() {
    for json in [false, true] {
        let out = Output::default();
        let mut p = pipeline(json, &out);
        let (mut c, mut s, chunks) =
            started_call(b"/containerd.services.version.v1.Version/Version", &[]);
        for ch in &chunks {
            p.push(ch).unwrap();
        }
        p.push(&c.send(&h2::frame(
            h2::DATA,
            h2::END_STREAM,
            1,
            &grpc_message(false, &[]),
        )))
        .unwrap();
        let mut r = h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &hp::response());
        r.extend(h2::frame(
            h2::DATA,
            0,
            1,
            &grpc_message(false, b"\x0a\x031.7"),
        ));
        r.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            1,
            &hp::block(&[(b"grpc-status", b"0")]),
        ));
        p.push(&s.send(&r)).unwrap();
        p.finish(
            u64::MAX,
            containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
        )
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// A printer's output: kept whole, or only counted (for runs that print 100,000 rows).
#[derive(Clone, Default)]
struct Output {
    keep: bool,
    bytes: Rc<RefCell<Vec<u8>>>,
    lines: Rc<RefCell<u64>>,
    /// The first character that must not reach a terminal, with context.
    hazard: Rc<RefCell<Option<String>>>,
}

/// Terminal hazards: C0 controls other than the newline between rows (ESC, BEL, ...), DEL, C1
/// controls and bidi overrides; checked on the output bytes, independently of the escapers.
fn hazard(s: &str) -> Option<String> {
    s.char_indices().find_map(|(i, c)| {
        let bad = matches!(c, '\0'..='\u{9}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        bad.then(|| {
            let from = s[..i].char_indices().rev().nth(30).map_or(0, |(j, _)| j);
            format!("U+{:04X} after {:?}", c as u32, &s[from..i])
        })
    })
}

impl Write for Output {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        *self.lines.borrow_mut() += b.iter().filter(|&&c| c == b'\n').count() as u64;
        if self.hazard.borrow().is_none() {
            let text = String::from_utf8_lossy(b);
            if let Some(h) = hazard(&text) {
                *self.hazard.borrow_mut() = Some(h);
            }
            if b.iter().any(|&c| c >= 0x80) && std::str::from_utf8(b).is_err() {
                *self.hazard.borrow_mut() = Some("invalid UTF-8 written".to_string());
            }
        }
        if self.keep {
            self.bytes.borrow_mut().extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.borrow()).into_owned()
    }

    fn assert_safe(&self, what: &str) {
        if let Some(h) = self.hazard.borrow().as_ref() {
            panic!("{what}: output would drive the terminal: {h}");
        }
    }
}

fn pipeline(json: bool, out: &Output) -> Pipeline {
    let printer: Box<dyn Sink> = if json {
        Box::new(JsonPrinter::new(Box::new(out.clone()), Clock::identity()))
    } else {
        Box::new(TablePrinter::new(
            Box::new(out.clone()),
            Clock::identity(),
            None,
        ))
    };
    Pipeline::new(
        Renderer::new(
            Schema::embedded().expect("embedded schema"),
            RenderOptions::default(),
        ),
        Plan::default(),
        vec![printer],
    )
}

// ---------------------------------------------------------------------------------------------
// Wire builders: sockets, HTTP/2 frames, HPACK, gRPC

/// One socket of a traced pair, producing the records the kernel side would.
struct Sock {
    ino: u64,
    peer_ino: u64,
    id: u64,
    peer_id: u64,
    pid: u32,
    peer_pid: u32,
    comm: String,
    /// The client's peer address is the matched path (`PATH_IS_PEER`).
    client: bool,
    pos: u64,
    ts: u64,
}

/// A connected pair for connection number `n`: (client, server).
fn pair(n: u64) -> (Sock, Sock) {
    let sock = |i: u64, client: bool| Sock {
        ino: 1_000_000 + 2 * n + i,
        peer_ino: 1_000_000 + 2 * n + 1 - i,
        id: 0x10_0000 + 2 * n + i,
        peer_id: 0x10_0000 + 2 * n + 1 - i,
        pid: if client { 4000 } else { 300 },
        peer_pid: if client { 300 } else { 4000 },
        comm: if client { "ctr" } else { "containerd" }.to_string(),
        client,
        pos: 0,
        ts: 1_000,
    };
    (sock(0, true), sock(1, false))
}

impl Sock {
    fn send(&mut self, data: &[u8]) -> Chunk {
        self.ts += 1_000;
        let mut f = flags::BACKEND_TRACEPOINT | flags::CALL_END;
        if self.client {
            f |= flags::PATH_IS_PEER;
        }
        let c = Chunk {
            ts_ns: self.ts,
            sock_ino: self.ino,
            peer_ino: self.peer_ino,
            sock_id: self.id,
            peer_id: self.peer_id,
            stream_pos: self.pos,
            call_len: data.len() as u32,
            chunk_off: 0,
            span_len: data.len() as u32,
            flags: f,
            tgid: self.pid,
            tid: self.pid,
            peer_tgid: self.peer_pid,
            lost_records: 0,
            pattern: 0,
            sock_type: 1,
            comm: self.comm.clone(),
            process_comm: self.comm.clone(),
            path: "/run/containerd/containerd.sock".to_string(),
            data: data.to_vec(),
        };
        self.pos += data.len() as u64;
        c
    }
}

mod h2 {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        frame_claiming(payload.len() as u32, kind, flags, stream, payload)
    }

    /// A frame whose length field says `len`, whatever follows.
    pub fn frame_claiming(len: u32, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in values {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &p)
    }

    /// Client preface + empty SETTINGS; server SETTINGS + ACK of the client's.
    pub fn handshake() -> (Vec<u8>, Vec<u8>) {
        let mut client = super::http2::PREFACE.to_vec();
        client.extend(settings(&[]));
        let mut server = settings(&[]);
        server.extend(frame(SETTINGS, ACK, 0, &[]));
        (client, server)
    }
}

mod hp {
    /// RFC 7541 §5.1 integer with an `n`-bit prefix, `first` holding the representation bits.
    pub fn int(mut v: u64, n: u8, first: u8, out: &mut Vec<u8>) {
        let max = (1u64 << n) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    pub fn string(s: &[u8], out: &mut Vec<u8>) {
        int(s.len() as u64, 7, 0, out);
        out.extend_from_slice(s);
    }

    /// Literal without indexing, new name (§6.2.2).
    pub fn literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        out.push(0x00);
        string(name, out);
        string(value, out);
    }

    /// Literal with incremental indexing, new name (§6.2.1): enters the dynamic table.
    pub fn indexed_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        out.push(0x40);
        string(name, out);
        string(value, out);
    }

    /// Dynamic table size update (§6.3).
    pub fn size_update(size: u64, out: &mut Vec<u8>) {
        int(size, 5, 0x20, out);
    }

    pub fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in fields {
            literal(n, v, &mut out);
        }
        out
    }

    pub fn request(path: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ];
        fields.extend_from_slice(extra);
        block(&fields)
    }

    pub fn response() -> Vec<u8> {
        block(&[(b":status", b"200"), (b"content-type", b"application/grpc")])
    }
}

/// A gRPC Length-Prefixed-Message.
fn grpc_message(compressed: bool, body: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::from(compressed)];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn pb_len(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    hp_varint(u64::from(field << 3 | 2), out);
    hp_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn hp_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A connection that finished its handshake, with the client at stream `1` about to call `path`.
fn started_call(path: &[u8], extra: &[(&[u8], &[u8])]) -> (Sock, Sock, Vec<Chunk>) {
    let (mut c, mut s) = pair(0);
    let (ch, sh) = h2::handshake();
    let mut chunks = vec![c.send(&ch), s.send(&sh)];
    chunks.push(c.send(&h2::frame(
        h2::HEADERS,
        h2::END_HEADERS,
        1,
        &hp::request(path, extra),
    )));
    (c, s, chunks)
}

// ---------------------------------------------------------------------------------------------
// The hostile inputs

/// A frame header claiming 16 MiB (over SETTINGS_MAX_FRAME_SIZE) followed by 32 MiB: the
/// direction desynchronises at the header and nothing of the claim is buffered.
#[test]
fn frame_header_claiming_16_mib() {
    let _serial = serial();
    let out = Output {
        keep: true,
        ..Output::default()
    };
    let mut p = pipeline(false, &out);
    let (mut c, mut s) = pair(0);
    let (ch, sh) = h2::handshake();
    let head = h2::frame_claiming((1 << 24) - 1, h2::DATA, 0, 1, &[]);
    let filler = vec![0u8; MIB];
    let mem = Mem::start("frame_header_claiming_16_mib");
    p.push(&c.send(&ch)).unwrap();
    p.push(&s.send(&sh)).unwrap();
    p.push(&c.send(&head)).unwrap();
    for _ in 0..32 {
        p.push(&c.send(&filler)).unwrap();
    }
    // Budget: no frame buffer at all, only the 1 MiB record in flight. Far below the claim.
    mem.check(SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    assert!(
        out.text().contains("exceeds SETTINGS_MAX_FRAME_SIZE"),
        "the frame is reported:\n{}",
        out.text()
    );
    out.assert_safe("table");
}

/// A header block that never ends: HEADERS without END_HEADERS, then 64 MiB of CONTINUATION.
/// `Limits::max_header_block` (256 KiB) bounds what is held; the direction desynchronises
/// (and may resynchronise later, within `http2::resync::RESYNC_WINDOW`).
#[test]
fn header_block_that_never_ends() {
    let _serial = serial();
    let out = Output {
        keep: true,
        ..Output::default()
    };
    let mut p = pipeline(false, &out);
    let (mut c, mut s) = pair(0);
    let (ch, sh) = h2::handshake();
    let fragment = vec![0x82u8; 16_000];
    let mut continuations = Vec::new();
    for _ in 0..64 {
        continuations.extend(h2::frame(h2::CONTINUATION, 0, 1, &fragment));
    }
    let limit = Limits::default().max_header_block;
    let mem = Mem::start("header_block_that_never_ends");
    p.push(&c.send(&ch)).unwrap();
    p.push(&s.send(&sh)).unwrap();
    p.push(&c.send(&h2::frame(h2::HEADERS, 0, 1, &fragment)))
        .unwrap();
    for _ in 0..64 {
        p.push(&c.send(&continuations)).unwrap();
    }
    // Budget: the header block limit, the frame buffer, and slack for the allocator.
    mem.check(limit + http2::resync::RESYNC_WINDOW + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    // The direction may resynchronise on later frames; the overflow itself is a notice row.
    assert!(
        out.text()
            .contains(&format!("header block larger than {limit} bytes")),
        "the overflow is reported:\n{}",
        out.text()
    );
}

/// A header list that expands: one 4 KiB entry in the dynamic table, then blocks of 16,000
/// one-byte references to it (64 MiB decoded each). `hpack::Limits::max_header_list` cuts each
/// list at 64 KiB and marks it truncated; through the pipeline, memory stays flat.
#[test]
fn header_list_that_expands_without_end() {
    let _serial = serial();
    let limits = hpack::Limits::default();
    let mut first = Vec::new();
    hp::indexed_literal(b"x-big", &[b'a'; 4000], &mut first);
    let amplifier = vec![0xbeu8; 16_000]; // 0x80 | 62: the newest dynamic entry

    let mut d = Decoder::new(limits);
    d.decode(&first).expect("insert");
    let list = d.decode(&amplifier).expect("references decode");
    assert!(list.truncated, "the list is cut at max_header_list");
    let kept: usize = list
        .fields
        .iter()
        .map(|f| {
            f.name.as_ref().map_or(0, |n| n.len()) + f.value.as_ref().map_or(0, |v| v.len()) + 32
        })
        .sum();
    assert!(
        kept <= limits.max_header_list,
        "{kept} bytes of fields kept"
    );

    let out = Output::default();
    let mut p = pipeline(false, &out);
    let (mut c, mut s) = pair(0);
    let (ch, sh) = h2::handshake();
    let mut block = hp::request(b"/containerd.services.tasks.v1.Tasks/List", &[]);
    block.extend_from_slice(&first);
    let mem = Mem::start("header_list_that_expands_without_end");
    p.push(&c.send(&ch)).unwrap();
    p.push(&s.send(&sh)).unwrap();
    p.push(&c.send(&h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &block)))
        .unwrap();
    for i in 0..256u32 {
        let mut b = hp::request(b"/containerd.services.tasks.v1.Tasks/List", &[]);
        b.extend_from_slice(&amplifier);
        let f = h2::frame(h2::HEADERS, h2::END_HEADERS | h2::END_STREAM, 3 + 2 * i, &b);
        p.push(&c.send(&f)).unwrap();
    }
    // Budget: 256 calls' metadata, each cut at max_header_list (64 KiB): 16 MiB if all were
    // kept, though ended-by-eviction ones are not; 256 x 64 MiB (16 GiB) is what expansion
    // would cost.
    mem.check(256 * limits.max_header_list + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    out.assert_safe("table");
}

/// A dynamic table size update to 4 GiB. Against the protocol maximum (4096) it is an error
/// that desynchronises the direction; when the maximum is unknown (late join) it is accepted
/// but the table keeps at most `table_hard_cap` bytes, however many entries follow.
#[test]
fn hpack_table_size_update_to_4_gib() {
    let _serial = serial();
    let limits = hpack::Limits::default();
    let mut update = Vec::new();
    hp::size_update(u64::from(u32::MAX), &mut update);

    let mut strict = Decoder::new(limits);
    assert!(
        strict.decode(&update).is_err(),
        "over SETTINGS_HEADER_TABLE_SIZE"
    );

    let mem = Mem::start("hpack_table_size_update_to_4_gib");
    let mut lenient = Decoder::late_join(limits);
    lenient
        .decode(&update)
        .expect("accepted with no known maximum");
    for i in 0..4096u32 {
        let mut b = Vec::new();
        hp::indexed_literal(format!("x-{i}").as_bytes(), &[b'v'; 4000], &mut b);
        lenient.decode(&b).expect("insert");
        assert!(lenient.table().size() <= limits.table_hard_cap);
    }
    // Budget: the hard cap, twice over for allocator slack (16 MiB was inserted).
    mem.check(2 * limits.table_hard_cap + SLACK);

    // And through the pipeline: the server allows 4 GiB tables, the client asks for one.
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let (mut c, mut s) = pair(0);
    let mut ch = http2::PREFACE.to_vec();
    ch.extend(h2::settings(&[]));
    let mut sh = h2::settings(&[(0x1, u32::MAX)]);
    sh.extend(h2::frame(h2::SETTINGS, h2::ACK, 0, &[]));
    let mem = Mem::start("hpack_table_size_update_to_4_gib/pipeline");
    p.push(&c.send(&ch)).unwrap();
    p.push(&s.send(&sh)).unwrap();
    p.push(&c.send(&h2::frame(h2::SETTINGS, h2::ACK, 0, &[])))
        .unwrap();
    let mut first = update.clone();
    first.extend(hp::request(b"/x.Y/Z", &[]));
    p.push(&c.send(&h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        1,
        &first,
    )))
    .unwrap();
    p.push(&s.send(&h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        1,
        &hp::response(),
    )))
    .unwrap();
    let trailers = hp::block(&[(b"grpc-status", b"0")]);
    for i in 0..4096u32 {
        let stream = 3 + 2 * i;
        let mut b = hp::request(b"/x.Y/Z", &[]);
        hp::indexed_literal(format!("x-{i}").as_bytes(), &[b'v'; 4000], &mut b);
        let f = h2::frame(h2::HEADERS, h2::END_HEADERS | h2::END_STREAM, stream, &b);
        p.push(&c.send(&f)).unwrap();
        // The server ends each call, so no call's headers outlive it.
        let mut r = h2::frame(h2::HEADERS, h2::END_HEADERS, stream, &hp::response());
        r.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &trailers,
        ));
        p.push(&s.send(&r)).unwrap();
    }
    // Budget: each side's table at its hard cap, and slack; 4096 x 4 KiB entries (16 MiB) went
    // through the client's table.
    mem.check(2 * limits.table_hard_cap + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    assert_eq!(
        p.stats.desynchronised, 0,
        "a permitted size update is not an error"
    );
}

/// 100,000 calls opened on one connection and never ended: `CallLimits::max_streams` (1024) are
/// tracked, older ones are evicted; memory is that of 1024 calls.
#[test]
fn hundred_thousand_concurrent_streams() {
    let _serial = serial();
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let (mut c, mut s) = pair(0);
    let (ch, sh) = h2::handshake();
    let block = hp::request(
        b"/containerd.services.tasks.v1.Tasks/List",
        &[(b"containerd-namespace", b"default")],
    );
    let mem = Mem::start("hundred_thousand_concurrent_streams");
    p.push(&c.send(&ch)).unwrap();
    p.push(&s.send(&sh)).unwrap();
    // 1,000 HEADERS frames per record, as a client writing quickly would.
    for batch in 0..100u32 {
        let mut bytes = Vec::new();
        for i in 0..1000u32 {
            let stream = 1 + 2 * (batch * 1000 + i);
            bytes.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, stream, &block));
        }
        p.push(&c.send(&bytes)).unwrap();
    }
    // Budget: 1024 open calls and 4096 remembered request headers (a few hundred bytes each);
    // holding all 100,000 calls would take several times this.
    mem.check(8 * MIB + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    assert_eq!(p.stats.desynchronised, 0);
    assert_eq!(p.connections(), 0, "finish closes everything");
    out.assert_safe("table");
}

/// A gRPC message whose prefix claims 4 GiB, followed by 64 MiB of it: reported unavailable at
/// once (over `CallLimits::max_message`) and skipped, never buffered.
#[test]
fn grpc_message_claiming_4_gib() {
    let _serial = serial();
    let out = Output {
        keep: true,
        ..Output::default()
    };
    let mut p = pipeline(true, &out);
    let (mut c, _s, chunks) = started_call(b"/containerd.services.content.v1.Content/Write", &[]);
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&u32::MAX.to_be_bytes());
    let filler = vec![0x41u8; 16_000];
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend(h2::frame(h2::DATA, 0, 1, &filler));
    }
    let mem = Mem::start("grpc_message_claiming_4_gib");
    for ch in &chunks {
        p.push(ch).unwrap();
    }
    p.push(&c.send(&h2::frame(h2::DATA, 0, 1, &prefix)))
        .unwrap();
    for _ in 0..64 {
        p.push(&c.send(&body)).unwrap();
    }
    mem.check(SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    let text = out.text();
    assert!(
        text.contains("\"@unavailable\"") && text.contains("4294967295"),
        "the message is reported unavailable with its claimed length:\n{text}"
    );
    out.assert_safe("json");
}

/// A raw deflate stream of `gib` GiB of zeros, about 1 KiB per MiB: one sync-flushed block of a
/// MiB of zeros repeated (every back-reference lands in zeros), then an empty final block.
fn deflate_bomb(mib: usize) -> Vec<u8> {
    use flate2::{Compression, write::DeflateEncoder};
    let mut e = DeflateEncoder::new(Vec::new(), Compression::best());
    e.write_all(&vec![0u8; MIB]).unwrap();
    e.flush().unwrap();
    let segment = e.get_ref().clone();
    let mut out = Vec::with_capacity(segment.len() * mib + 2);
    for _ in 0..mib {
        out.extend_from_slice(&segment);
    }
    out.extend_from_slice(&[0x03, 0x00]); // final, fixed Huffman, end of block
    out
}

/// A gzip bomb: 1 KiB of gzip per MiB of output, 4 GiB in all. Decompression stops at
/// `CallLimits::max_decompressed` (16 MiB): the message is reported unavailable.
#[test]
fn gzip_bomb() {
    let _serial = serial();
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend(deflate_bomb(4096));
    gz.extend_from_slice(&[0; 8]); // CRC and size: never reached
    assert!(gz.len() < 8 * MIB, "{} bytes of bomb", gz.len());
    let cap = CallLimits::default().max_decompressed;

    let mem = Mem::start("gzip_bomb/decompress");
    let r = decompress(&Encoding::Gzip, &gz, cap);
    assert!(r.is_err(), "over the cap");
    mem.check(2 * cap + SLACK);

    // Through the pipeline, as a compressed gRPC message (under max_message, 16 MiB).
    let out = Output {
        keep: true,
        ..Output::default()
    };
    let mut p = pipeline(true, &out);
    let (mut c, _s, chunks) = started_call(
        b"/containerd.services.tasks.v1.Tasks/Create",
        &[(b"grpc-encoding", b"gzip")],
    );
    let message = grpc_message(true, &gz);
    let mem = Mem::start("gzip_bomb/pipeline");
    for ch in &chunks {
        p.push(ch).unwrap();
    }
    for piece in message.chunks(16_000) {
        p.push(&c.send(&h2::frame(h2::DATA, 0, 1, piece))).unwrap();
    }
    p.push(&c.send(&h2::frame(h2::DATA, h2::END_STREAM, 1, &[])))
        .unwrap();
    // Budget: the compressed message (buffered until complete) and the decompression cap.
    mem.check(message.len() + 2 * cap + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    let text = out.text();
    assert!(
        text.contains("\"@unavailable\""),
        "the bomb is reported unavailable:\n{text}"
    );
}

/// Protobuf nested 10,000 deep: as a plain nested field (schema-less and with a schema) and
/// as `Any` inside `Any`. Depth limits (`RenderOptions::max_depth`, `max_any_depth`, prost's
/// recursion limit) stop the recursion on a test thread's 2 MiB stack.
#[test]
fn protobuf_nested_10000_deep() {
    let _serial = serial();
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        let mut outer = Vec::new();
        pb_len(1, &nested, &mut outer);
        nested = outer;
    }
    let mut any = Vec::new();
    for _ in 0..10_000 {
        let mut outer = Vec::new();
        pb_len(1, b"type.googleapis.com/google.protobuf.Any", &mut outer);
        pb_len(2, &any, &mut outer);
        any = outer;
    }
    let schema = Schema::embedded().expect("schema");
    let opts = RenderOptions::default();
    let any_desc = schema.message("google.protobuf.Any").expect("Any");
    for (what, desc, bytes) in [
        ("schema-less", None, &nested),
        ("as Any", Some(any_desc.clone()), &nested),
        ("Any in Any", Some(any_desc), &any),
    ] {
        let decoded = schema::decode(desc.as_ref(), bytes);
        let text = schema::to_text(&decoded, &opts);
        let json = schema::json_to_string(&schema::to_json(&decoded, &opts));
        let mut direct = Vec::new();
        schema::write_json(&mut direct, &schema::json_message(&decoded, &opts)).expect("writes");
        assert_eq!(String::from_utf8_lossy(&direct), json, "{what}: rows' JSON");
        assert!(
            text.len() <= opts.max_text_len + 3,
            "{what}: {} bytes",
            text.len()
        );
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap_or_else(|e| panic!("{what}: invalid JSON: {e}"));
    }

    // Through the pipeline, as the request of an RPC whose input type has an Any
    // (containerd's events Publish: `event` is an Any).
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let (mut c, _s, chunks) = started_call(b"/containerd.services.events.v1.Events/Publish", &[]);
    let mut publish = Vec::new();
    pb_len(1, b"/tasks/exit", &mut publish);
    pb_len(2, &any, &mut publish);
    for ch in &chunks {
        p.push(ch).unwrap();
    }
    let msg = grpc_message(false, &publish);
    p.push(&c.send(&h2::frame(h2::DATA, h2::END_STREAM, 1, &msg)))
        .unwrap();
    let block = hp::request(b"/x.Y/Nested", &[]);
    p.push(&c.send(&h2::frame(h2::HEADERS, h2::END_HEADERS, 3, &block)))
        .unwrap();
    p.push(&c.send(&h2::frame(
        h2::DATA,
        h2::END_STREAM,
        3,
        &grpc_message(false, &nested),
    )))
    .unwrap();
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    out.assert_safe("table");
}

/// 10,000 connections that each start a call and a message and never finish. The table keeps
/// `conn::MAX_CONNECTIONS` (4096) and counts the evictions; memory is bounded by that many
/// connections' partial frames and messages.
#[test]
fn ten_thousand_connections_that_never_finish() {
    let _serial = serial();
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let (ch, sh) = h2::handshake();
    let headers = h2::frame(
        h2::HEADERS,
        h2::END_HEADERS,
        1,
        &hp::request(b"/containerd.services.tasks.v1.Tasks/Wait", &[]),
    );
    // A DATA frame claiming 16 KiB of which 1 KiB arrives, carrying a message claiming 8 KiB.
    let mut partial = h2::frame_claiming(16_384, h2::DATA, 0, 1, &grpc_message(false, &[]));
    partial[9 + 1..9 + 5].copy_from_slice(&8192u32.to_be_bytes());
    partial.extend_from_slice(&[0x0a; 1024]);
    let mem = Mem::start("ten_thousand_connections_that_never_finish");
    for n in 0..10_000u64 {
        let (mut c, mut s) = pair(n);
        p.push(&c.send(&ch)).unwrap();
        p.push(&s.send(&sh)).unwrap();
        p.push(&c.send(&headers)).unwrap();
        p.push(&c.send(&partial)).unwrap();
        assert!(p.connections() <= MAX_CONNECTIONS);
    }
    assert_eq!(p.connections(), MAX_CONNECTIONS);
    assert_eq!(
        p.stats.evicted_connections,
        (10_000 - MAX_CONNECTIONS) as u64,
        "every eviction is counted"
    );
    // Budget per connection: two HTTP/2 directions with their HPACK tables (empty here), one
    // partial frame (~1 KiB held), one open call and its remembered headers; 16 KiB each.
    mem.check(MAX_CONNECTIONS * 16 * 1024 + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    out.assert_safe("table");
}

/// More sockets than `reassembly::MAX_DIRECTIONS`: the least recently active directions are
/// forgotten, and counted.
#[test]
fn more_directions_than_the_reassembler_tracks() {
    let _serial = serial();
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let n = MAX_DIRECTIONS as u64 + 1000;
    let mem = Mem::start("more_directions_than_the_reassembler_tracks");
    for i in 0..n {
        let (mut c, _s) = pair(i);
        p.push(&c.send(b"hello, raw world: not any protocol we know"))
            .unwrap();
    }
    assert_eq!(p.stats.evicted_directions, 1000);
    assert!(p.connections() <= MAX_CONNECTIONS);
    // Budget: a position per direction and MAX_CONNECTIONS raw connections.
    mem.check(32 * MIB + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    out.assert_safe("table");
}

/// Terminal escape sequences everywhere a traced process controls bytes: header values, the
/// method, percent-encoded grpc-message, message strings with and without a schema, GOAWAY
/// debug data, raw (undetected) connections, ttrpc method names and payloads, HTTP/1.1
/// targets, headers and bodies (JSON whose escapes decode to controls), and process names. Neither the
/// table nor the JSON output may contain a raw ESC, BEL, C1 control or bidi override, and every
/// JSON line parses.
#[test]
fn terminal_escape_sequences_never_reach_the_terminal() {
    let _serial = serial();
    const NASTY: &[u8] =
        b"\x1b[2J\x1b]52;c;ZXZpbA==\x07\xc2\x9b31m\x9b\x07\xe2\x80\xae\x1bP+q\x1b\\ok";
    for json in [false, true] {
        let out = Output {
            keep: true,
            ..Output::default()
        };
        let mut p = pipeline(json, &out);
        let mut path = b"/containerd.services.version.v1.Version/".to_vec();
        path.extend_from_slice(NASTY);
        let (mut c, mut s) = pair(0);
        c.comm = "c\x1b[31mtr".to_string();
        s.comm = "\u{9b}containerd".to_string();
        let (ch, sh) = h2::handshake();
        p.push(&c.send(&ch)).unwrap();
        p.push(&s.send(&sh)).unwrap();
        // Stream 1: an unknown method with a nasty header and a nasty schema-less message.
        let block = hp::request(&path, &[(b"x-evil", NASTY)]);
        p.push(&c.send(&h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &block)))
            .unwrap();
        let mut msg = Vec::new();
        pb_len(1, NASTY, &mut msg);
        pb_len(2, &[0x1b, 0x9b, 0x07, 0xff], &mut msg);
        p.push(&c.send(&h2::frame(
            h2::DATA,
            h2::END_STREAM,
            1,
            &grpc_message(false, &msg),
        )))
        .unwrap();
        p.push(&s.send(&h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &hp::response())))
            .unwrap();
        let trailers = hp::block(&[
            (b"grpc-status", b"2"),
            (b"grpc-message", b"%1B[2J%07%C2%9B%E2%80%AEboom"),
            (b"x-trailer", NASTY),
        ]);
        p.push(&s.send(&h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            1,
            &trailers,
        )))
        .unwrap();
        // Stream 3: a known method whose string field carries the sequences (schema decode).
        let block = hp::request(b"/containerd.services.containers.v1.Containers/Get", &[]);
        p.push(&c.send(&h2::frame(h2::HEADERS, h2::END_HEADERS, 3, &block)))
            .unwrap();
        let mut get = Vec::new();
        pb_len(1, NASTY, &mut get);
        p.push(&c.send(&h2::frame(
            h2::DATA,
            h2::END_STREAM,
            3,
            &grpc_message(false, &get),
        )))
        .unwrap();
        // Stream 5: a header name made of escape sequences.
        let block = hp::request(b"/x.Y/Z", &[(NASTY, b"v")]);
        p.push(&c.send(&h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            5,
            &block,
        )))
        .unwrap();
        // GOAWAY with nasty debug data.
        let mut goaway = vec![0, 0, 0, 3, 0, 0, 0, 2];
        goaway.extend_from_slice(NASTY);
        p.push(&s.send(&h2::frame(h2::GOAWAY, 0, 0, &goaway)))
            .unwrap();
        // A raw connection: not HTTP/2, the bytes are shown escaped.
        let (mut rc, mut rs) = pair(1);
        rc.comm = "\x07bell".to_string();
        let mut raw = NASTY.repeat(4);
        raw.extend_from_slice(b" padding to get past protocol detection ");
        p.push(&rc.send(&raw)).unwrap();
        p.push(&rs.send(NASTY)).unwrap();
        // ttrpc: a method name and a payload with the sequences.
        let (mut tc, _ts) = pair(2);
        p.push(&tc.send(&ttrpc_request(1, b"containerd.task.v2.Task", NASTY, NASTY)))
            .unwrap();
        p.push(&tc.send(&ttrpc_request(3, NASTY, b"Create", b"")))
            .unwrap();
        // HTTP/1.1: the target, a header and a JSON body with the sequences.
        let (mut hc, mut hs) = pair(3);
        let mut req = b"POST /v1.41/containers/".to_vec();
        req.extend_from_slice(NASTY);
        req.extend_from_slice(b"/start HTTP/1.1\r\nHost: docker\r\nX-Evil: ");
        req.extend_from_slice(NASTY);
        let body = b"{\"Name\":\"\\u001b[2J\\u009b\\u0007\"}";
        req.extend_from_slice(
            format!(
                "\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
        p.push(&hc.send(&req)).unwrap();
        let mut resp =
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: ".to_vec();
        resp.extend_from_slice(format!("{}\r\n\r\n", NASTY.len()).as_bytes());
        resp.extend_from_slice(NASTY);
        p.push(&hs.send(&resp)).unwrap();
        p.finish(
            u64::MAX,
            containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
        )
        .unwrap();

        let what = if json { "json" } else { "table" };
        out.assert_safe(what);
        let text = out.text();
        assert!(
            text.contains("2J"),
            "{what}: the escaped sequences are still visible:\n{text}"
        );
        if json {
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("invalid JSON line ({e}): {line}"));
            }
        }
    }
}

/// A ttrpc frame: `length:u32 stream:u32 type:u8 flags:u8` then the payload.
fn ttrpc_frame(len: u32, stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(&[kind, 0]);
    v.extend_from_slice(payload);
    v
}

fn ttrpc_request(stream: u32, service: &[u8], method: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut env = Vec::new();
    pb_len(1, service, &mut env);
    pb_len(2, method, &mut env);
    pb_len(3, payload, &mut env);
    ttrpc_frame(env.len() as u32, stream, 1, &env)
}

/// ttrpc: after a real request, a frame header claiming 4 GiB (impossible: the direction hunts
/// for the next boundary within its resync window) and one claiming the 4 MiB maximum that never
/// completes. Memory: one frame and one resync window per direction.
#[test]
fn ttrpc_frames_claiming_4_gib_and_4_mib() {
    let _serial = serial();
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let limits = containerdsnoop_decode::protocol::ttrpc::Limits::default();
    let junk = vec![0x5au8; MIB];
    let mem = Mem::start("ttrpc_frames_claiming_4_gib_and_4_mib");
    let (mut c, _s) = pair(0);
    p.push(&c.send(&ttrpc_request(1, b"containerd.task.v2.Task", b"State", b"")))
        .unwrap();
    p.push(&c.send(&ttrpc_frame(u32::MAX, 3, 1, &[]))).unwrap();
    for _ in 0..32 {
        p.push(&c.send(&junk)).unwrap();
    }
    let (mut c, _s) = pair(1);
    p.push(&c.send(&ttrpc_request(1, b"containerd.task.v2.Task", b"State", b"")))
        .unwrap();
    p.push(&c.send(&ttrpc_frame(4 << 20, 3, 1, &[]))).unwrap();
    for _ in 0..3 {
        p.push(&c.send(&junk)).unwrap();
    }
    mem.check(2 * (limits.max_frame + limits.resync_window) + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    out.assert_safe("table");
}

/// HTTP/1.1: a head that never ends, a body claiming 4 GiB, and a chunk size of 2^64-1.
/// `http1::Limits` (64 KiB head, 1 MiB body kept) bound each; 32 MiB of each arrives.
#[test]
fn http1_head_without_end_and_bodies_claiming_4_gib() {
    let _serial = serial();
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let limits = containerdsnoop_decode::protocol::http1::Limits::default();
    let filler = vec![b'a'; MIB];
    let mem = Mem::start("http1_head_without_end_and_bodies_claiming_4_gib");
    let starts: [&[u8]; 3] = [
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nX-Long: ",
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 4294967296\r\n\r\n",
        b"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    ];
    for (n, start) in starts.iter().enumerate() {
        let (mut c, _s) = pair(n as u64);
        p.push(&c.send(start)).unwrap();
        for _ in 0..32 {
            p.push(&c.send(&filler)).unwrap();
        }
    }
    mem.check(3 * (limits.max_head + limits.max_body + limits.resync_window) + SLACK);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
    out.assert_safe("table");
}

/// Request headers remembered for calls that have not sent a message yet (for the JSON
/// `headers` field) are bounded in bytes (`rows::MAX_REMEMBERED_HEADER_BYTES`), and not kept at
/// all for the table: 4000 open calls with 60 KB of headers each (each within
/// `hpack::Limits::max_header_list`) once held ~240 MB.
#[test]
fn remembered_request_headers_are_bounded_in_bytes() {
    let _serial = serial();
    let out = Output::default();
    let mut p = pipeline(false, &out);
    let big = vec![b'h'; 60_000];
    let block = hp::request(
        b"/containerd.services.tasks.v1.Tasks/Wait",
        &[(b"x-big", &big)],
    );
    let (ch, sh) = h2::handshake();
    let mem = Mem::start("remembered_request_headers_are_bounded_in_bytes");
    for n in 0..4u64 {
        let (mut c, mut s) = pair(n);
        p.push(&c.send(&ch)).unwrap();
        p.push(&s.send(&sh)).unwrap();
        for i in 0..1000u32 {
            let stream = 1 + 2 * i;
            let mut frames = Vec::new();
            let mut pieces = block.chunks(16_000).peekable();
            let mut first = true;
            while let Some(piece) = pieces.next() {
                let end = if pieces.peek().is_none() {
                    h2::END_HEADERS
                } else {
                    0
                };
                let kind = if first { h2::HEADERS } else { h2::CONTINUATION };
                frames.extend(h2::frame(kind, end, stream, piece));
                first = false;
            }
            p.push(&c.send(&frames)).unwrap();
        }
    }
    mem.check(64 * MIB);
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Regressions, named after what they fixed

/// JSON said `late_join` in `sync` but `late-join` in `decoding` (and docs/json.md listed no
/// `decoding` values): one spelling of one fact.
#[test]
fn regression_json_decoding_spells_late_join_like_sync() {
    let out = Output {
        keep: true,
        ..Output::default()
    };
    let mut p = pipeline(true, &out);
    // The tracer attaches to a connection whose handshake it never saw.
    let (mut c, mut s) = pair(0);
    c.pos = 4096;
    s.pos = 2048;
    let path = b"/containerd.services.version.v1.Version/Version";
    let mut request = h2::frame(h2::HEADERS, h2::END_HEADERS, 7, &hp::request(path, &[]));
    request.extend(h2::frame(
        h2::DATA,
        h2::END_STREAM,
        7,
        &grpc_message(false, b""),
    ));
    let mut response = h2::frame(h2::HEADERS, h2::END_HEADERS, 7, &hp::response());
    response.extend(h2::frame(h2::DATA, 0, 7, &grpc_message(false, b"")));
    response.extend(h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        7,
        &hp::block(&[(b"grpc-status", b"0")]),
    ));
    p.push(&c.send(&request)).expect("push");
    p.push(&s.send(&response)).expect("push");
    p.finish(
        u64::MAX,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )
    .expect("finish");
    let text = out.text();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(
        rows.iter().any(|r| r["type"] == "END"),
        "the call is decoded: {text}"
    );
    for r in &rows {
        assert_eq!(r["sync"], "late_join", "{r}");
        assert_eq!(r["decoding"], "late_join", "{r}");
    }
}

/// docs/json.md is the interface: every value the `protocol`, `sync` and `decoding` fields can
/// print is listed in that field's row.
#[test]
fn regression_json_docs_list_every_protocol_sync_and_decoding_value() {
    use containerdsnoop_decode::{
        protocol::{Decoding, Protocol},
        stream::conn::SyncState,
    };
    let docs = include_str!("../../docs/json.md");
    let row = |field: &str| {
        let start = format!("| `{field}` |");
        docs.lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("docs/json.md has no row for `{field}`"))
            .to_string()
    };
    let check = |field: &str, values: &[&str]| {
        let line = row(field);
        for v in values {
            assert!(
                line.contains(&format!("`{v}`")),
                "docs/json.md's `{field}` row does not list `{v}`: {line}"
            );
        }
    };
    check("protocol", &Protocol::ALL.map(Protocol::name));
    check("sync", &SyncState::ALL.map(SyncState::as_str));
    check("decoding", &Decoding::ALL.map(Decoding::as_str));
}
