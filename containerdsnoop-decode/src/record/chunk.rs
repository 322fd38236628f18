//! Data records (`ChunkHeader` + payload, written by `containerdsnoop-ebpf/src/emit.rs`) ->
//! typed [`Chunk`]s: one span of one socket's outgoing byte stream. Parsed with length checks
//! and unaligned reads, never transmuted: a malformed record is a [`ChunkError`], counted and
//! skipped by the caller.

use containerdsnoop_common::{CHUNK_HEADER_LEN, COMM_LEN, PATH_LEN, flags};

use super::{mask_pointer, u16_at, u32_at, u64_at};

/// One ring-buffer record: a span of one socket's outgoing byte stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub ts_ns: u64,
    pub sock_ino: u64,
    pub peer_ino: u64,
    /// Opaque identities of the sending socket and its peer (kernel pointers masked with a
    /// per-run key): stable for a connection's life, known from its first byte.
    pub sock_id: u64,
    pub peer_id: u64,
    /// Position of the span's first byte in the sender's direction stream.
    pub stream_pos: u64,
    pub call_len: u32,
    pub chunk_off: u32,
    /// Stream bytes covered; `data.len()` of them are present.
    pub span_len: u32,
    pub flags: u32,
    pub tgid: u32,
    pub tid: u32,
    pub peer_tgid: u32,
    /// Records the ring buffer refused on this socket just before this one.
    pub lost_records: u32,
    pub pattern: u8,
    pub sock_type: u16,
    pub comm: String,
    pub process_comm: String,
    /// The matched socket path, as `/proc/net/unix` prints it (`@` for abstract names).
    pub path: String,
    pub data: Vec<u8>,
}

impl Chunk {
    /// Bytes of the span that are missing (truncated, unreadable or unavailable).
    pub fn missing(&self) -> u32 {
        self.span_len.saturating_sub(self.data.len() as u32)
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Why bytes are missing, for display.
    pub fn missing_reason(&self) -> &'static str {
        if self.has(flags::UNSUPPORTED_ITER) {
            "payload unavailable (kernel iterator without user pointer)"
        } else if self.has(flags::NO_PAYLOAD) {
            "payload unavailable (no user buffer for this send)"
        } else if self.has(flags::READ_FAULT) {
            "payload unreadable (page fault)"
        } else if self.has(flags::TRUNCATED) {
            "truncated (over --max-call-bytes)"
        } else {
            ""
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.has(flags::BACKEND_KPROBE) {
            "kprobe"
        } else if self.has(flags::BACKEND_TRACEPOINT) {
            "tracepoint"
        } else {
            "unknown"
        }
    }
}

/// Why a data record was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The record is shorter than its header says.
    Short { have: usize, need: usize },
    /// `cap_len` exceeds `span_len`.
    Inconsistent,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::Short { have, need } => {
                write!(f, "short record: {have} bytes, need {need}")
            }
            ChunkError::Inconsistent => write!(f, "record payload longer than its span"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// A NUL-terminated kernel string, lossily decoded into `out` (reusing its allocation).
fn c_string_into(out: &mut String, b: &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    // Consecutive records mostly come from the same process and socket: nothing to redo.
    if out.as_bytes() == &b[..end] {
        return;
    }
    out.clear();
    out.push_str(&String::from_utf8_lossy(&b[..end]));
}

/// Renders `sun_path` bytes the way `/proc/net/unix` does: abstract names get a leading `@`,
/// pathname sockets lose their terminating NUL.
pub fn display_path(sun_path: &[u8]) -> String {
    let mut s = String::new();
    display_path_into(&mut s, sun_path);
    s
}

/// [`display_path`] into `out`, reusing its allocation.
fn display_path_into(out: &mut String, sun_path: &[u8]) {
    match sun_path.split_first() {
        None => out.clear(),
        Some((0, rest)) => {
            out.clear();
            out.push('@');
            out.push_str(&String::from_utf8_lossy(rest));
        }
        Some(_) => c_string_into(out, sun_path),
    }
}

/// Parses one data record, masking socket pointers with `key`. Offsets follow
/// `containerdsnoop_common::ChunkHeader` (checked by the `header_offsets_match_common` test).
/// Ring records come through [`super::parse_into`], which tells data records from connection
/// ends first.
pub fn parse(record: &[u8], key: u64) -> Result<Chunk, ChunkError> {
    let mut chunk = Chunk::default();
    parse_into(record, key, &mut chunk)?;
    Ok(chunk)
}

/// [`parse`] into `chunk`, reusing its buffers (the live capture recycles its chunks, so that
/// a record costs no allocation). On error `chunk` is left unspecified.
pub fn parse_into(record: &[u8], key: u64, chunk: &mut Chunk) -> Result<(), ChunkError> {
    if record.len() < CHUNK_HEADER_LEN {
        return Err(ChunkError::Short {
            have: record.len(),
            need: CHUNK_HEADER_LEN,
        });
    }
    let span_len = u32_at(record, 40);
    let cap_len = u32_at(record, 44);
    if cap_len > span_len {
        return Err(ChunkError::Inconsistent);
    }
    let need = CHUNK_HEADER_LEN + cap_len as usize;
    if record.len() < need {
        return Err(ChunkError::Short {
            have: record.len(),
            need,
        });
    }
    let path_len = (u16_at(record, 68) as usize).min(PATH_LEN);
    let path_start = 80 + 2 * COMM_LEN;
    chunk.ts_ns = u64_at(record, 0);
    chunk.sock_ino = u64_at(record, 8);
    chunk.peer_ino = u64_at(record, 16);
    chunk.sock_id = mask_pointer(u64_at(record, 224), key);
    chunk.peer_id = mask_pointer(u64_at(record, 232), key);
    chunk.stream_pos = u64_at(record, 24);
    chunk.call_len = u32_at(record, 32);
    chunk.chunk_off = u32_at(record, 36);
    chunk.span_len = span_len;
    chunk.flags = u32_at(record, 48);
    chunk.tgid = u32_at(record, 52);
    chunk.tid = u32_at(record, 56);
    chunk.peer_tgid = u32_at(record, 60);
    chunk.lost_records = u32_at(record, 64);
    chunk.pattern = record[70];
    chunk.sock_type = u16_at(record, 72);
    c_string_into(&mut chunk.comm, &record[80..80 + COMM_LEN]);
    c_string_into(
        &mut chunk.process_comm,
        &record[80 + COMM_LEN..80 + 2 * COMM_LEN],
    );
    display_path_into(&mut chunk.path, &record[path_start..path_start + path_len]);
    chunk.data.clear();
    chunk
        .data
        .extend_from_slice(&record[CHUNK_HEADER_LEN..need]);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use containerdsnoop_common::ChunkHeader;
    use std::mem::offset_of;

    #[test]
    fn header_offsets_match_common() {
        assert_eq!(offset_of!(ChunkHeader, ts_ns), 0);
        assert_eq!(offset_of!(ChunkHeader, sock_ino), 8);
        assert_eq!(offset_of!(ChunkHeader, peer_ino), 16);
        assert_eq!(offset_of!(ChunkHeader, stream_pos), 24);
        assert_eq!(offset_of!(ChunkHeader, call_len), 32);
        assert_eq!(offset_of!(ChunkHeader, chunk_off), 36);
        assert_eq!(offset_of!(ChunkHeader, span_len), 40);
        assert_eq!(offset_of!(ChunkHeader, cap_len), 44);
        assert_eq!(offset_of!(ChunkHeader, flags), 48);
        assert_eq!(offset_of!(ChunkHeader, tgid), 52);
        assert_eq!(offset_of!(ChunkHeader, tid), 56);
        assert_eq!(offset_of!(ChunkHeader, peer_tgid), 60);
        assert_eq!(offset_of!(ChunkHeader, lost_records), 64);
        assert_eq!(offset_of!(ChunkHeader, path_len), 68);
        assert_eq!(offset_of!(ChunkHeader, pattern), 70);
        assert_eq!(offset_of!(ChunkHeader, sock_type), 72);
        assert_eq!(offset_of!(ChunkHeader, comm), 80);
        assert_eq!(offset_of!(ChunkHeader, process_comm), 96);
        assert_eq!(offset_of!(ChunkHeader, path), 112);
        assert_eq!(offset_of!(ChunkHeader, sk), 224);
        assert_eq!(offset_of!(ChunkHeader, peer_sk), 232);
    }

    pub fn parse_test(r: &[u8]) -> Result<Chunk, ChunkError> {
        parse(r, 0)
    }

    /// Builds record bytes the way the kernel side lays them out (tests and fuzzing).
    pub fn record(h: &ChunkHeader, data: &[u8]) -> Vec<u8> {
        // SAFETY: ChunkHeader is repr(C) plain data with explicit padding fields.
        let head = unsafe {
            std::slice::from_raw_parts(h as *const ChunkHeader as *const u8, CHUNK_HEADER_LEN)
        };
        let mut v = head.to_vec();
        v.extend_from_slice(data);
        v
    }

    pub fn header(path: &[u8], data_len: u32) -> ChunkHeader {
        // SAFETY: all-zero is a valid ChunkHeader.
        let mut h: ChunkHeader = unsafe { std::mem::zeroed() };
        h.ts_ns = 7;
        h.sock_ino = 100;
        h.peer_ino = 101;
        h.stream_pos = 24;
        h.call_len = data_len;
        h.span_len = data_len;
        h.cap_len = data_len;
        h.flags = flags::BACKEND_TRACEPOINT | flags::CALL_END;
        h.tgid = 10;
        h.tid = 11;
        h.peer_tgid = 12;
        h.comm[..3].copy_from_slice(b"ctr");
        h.process_comm[..3].copy_from_slice(b"ctr");
        h.path[..path.len()].copy_from_slice(path);
        h.path_len = path.len() as u16;
        h.sk = 0xffff_8880_0000_1000;
        h.peer_sk = 0xffff_8880_0000_2000;
        h
    }

    /// The live capture parses every record into a recycled chunk: what the previous record
    /// left in it (longer data, another comm or path, an abstract name) must not show through.
    #[test]
    fn parse_into_a_used_chunk_is_parse() {
        let mut first = header(b"/run/containerd/containerd.sock\0", 11);
        first.comm[..6].copy_from_slice(b"kubele");
        let mut second = header(b"\0abstract", 2);
        second.process_comm[3] = 0xff;
        second.tgid = 99;
        let third = header(b"\0abstract", 0);
        let mut chunk = Chunk::default();
        for (h, data) in [
            (first, &b"hello world"[..]),
            (second, b"hi"),
            (second, b"hi"),
            (third, b""),
        ] {
            let r = record(&h, data);
            parse_into(&r, 5, &mut chunk).expect("parse_into");
            assert_eq!(chunk, parse(&r, 5).expect("parse"));
        }
        assert_eq!(chunk.path, "@abstract");
        assert!(parse_into(&[0u8; 10], 5, &mut chunk).is_err());
    }

    #[test]
    fn parses_a_record() {
        let h = header(b"/run/containerd/containerd.sock\0", 5);
        let c = parse_test(&record(&h, b"hello")).expect("parse");
        assert_eq!(c.path, "/run/containerd/containerd.sock");
        assert_eq!(c.comm, "ctr");
        assert_eq!((c.tgid, c.tid, c.peer_tgid), (10, 11, 12));
        assert_eq!((c.sock_ino, c.peer_ino, c.stream_pos), (100, 101, 24));
        assert_eq!(c.data, b"hello");
        assert_eq!(c.missing(), 0);
        assert_eq!(c.backend(), "tracepoint");
    }

    #[test]
    fn abstract_path_gets_at_sign() {
        let h = header(b"\0containerd-shim", 0);
        assert_eq!(
            parse_test(&record(&h, b"")).expect("parse").path,
            "@containerd-shim"
        );
    }

    #[test]
    fn rejects_short_and_inconsistent_records() {
        let h = header(b"/x\0", 5);
        let full = record(&h, b"hello");
        assert!(matches!(
            parse_test(&full[..10]),
            Err(ChunkError::Short { .. })
        ));
        assert!(matches!(
            parse_test(&full[..full.len() - 1]),
            Err(ChunkError::Short { .. })
        ));
        let mut bad = h;
        bad.cap_len = 9;
        bad.span_len = 5;
        assert_eq!(
            parse_test(&record(&bad, b"hellohell")),
            Err(ChunkError::Inconsistent)
        );
    }

    #[test]
    fn truncated_span_reports_missing_bytes() {
        let mut h = header(b"/x\0", 5);
        h.span_len = 100;
        h.flags |= flags::TRUNCATED;
        let c = parse_test(&record(&h, b"hello")).expect("parse");
        assert_eq!(c.missing(), 95);
        assert!(c.missing_reason().starts_with("truncated"));
    }

    #[test]
    fn oversized_path_len_is_clamped() {
        let mut h = header(b"/x\0", 0);
        h.path_len = 60000;
        let c = parse_test(&record(&h, b"")).expect("parse");
        assert!(c.path.len() <= PATH_LEN);
    }
}
