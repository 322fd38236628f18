//! Kernel record bytes -> typed [`Chunk`]s. Records are parsed with length checks and
//! unaligned reads, never transmuted: a malformed record is an error value, counted and skipped.

use containerdsnoop_common::{CHUNK_HEADER_LEN, COMM_LEN, PATH_LEN, flags};

/// One ring-buffer record: a span of one socket's outgoing byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub ts_ns: u64,
    pub sock_ino: u64,
    pub peer_ino: u64,
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

#[derive(Debug, PartialEq, Eq)]
pub enum WireError {
    /// The record is shorter than its header says.
    Short { have: usize, need: usize },
    /// `cap_len` exceeds `span_len`.
    Inconsistent,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Short { have, need } => {
                write!(f, "short record: {have} bytes, need {need}")
            }
            WireError::Inconsistent => write!(f, "record payload longer than its span"),
        }
    }
}

impl std::error::Error for WireError {}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

/// A NUL-terminated kernel string, lossily decoded.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Renders `sun_path` bytes the way `/proc/net/unix` does: abstract names get a leading `@`,
/// pathname sockets lose their terminating NUL.
pub fn display_path(sun_path: &[u8]) -> String {
    match sun_path.split_first() {
        None => String::new(),
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        Some(_) => c_string(sun_path),
    }
}

/// Parses one record. Offsets follow `containerdsnoop_common::ChunkHeader` (checked by the
/// `header_offsets_match_common` test).
pub fn parse(record: &[u8]) -> Result<Chunk, WireError> {
    if record.len() < CHUNK_HEADER_LEN {
        return Err(WireError::Short {
            have: record.len(),
            need: CHUNK_HEADER_LEN,
        });
    }
    let span_len = u32_at(record, 40);
    let cap_len = u32_at(record, 44);
    if cap_len > span_len {
        return Err(WireError::Inconsistent);
    }
    let need = CHUNK_HEADER_LEN + cap_len as usize;
    if record.len() < need {
        return Err(WireError::Short {
            have: record.len(),
            need,
        });
    }
    let path_len = (u16_at(record, 68) as usize).min(PATH_LEN);
    let path_start = 80 + 2 * COMM_LEN;
    Ok(Chunk {
        ts_ns: u64_at(record, 0),
        sock_ino: u64_at(record, 8),
        peer_ino: u64_at(record, 16),
        stream_pos: u64_at(record, 24),
        call_len: u32_at(record, 32),
        chunk_off: u32_at(record, 36),
        span_len,
        flags: u32_at(record, 48),
        tgid: u32_at(record, 52),
        tid: u32_at(record, 56),
        peer_tgid: u32_at(record, 60),
        lost_records: u32_at(record, 64),
        pattern: record[70],
        sock_type: u16_at(record, 72),
        comm: c_string(&record[80..80 + COMM_LEN]),
        process_comm: c_string(&record[80 + COMM_LEN..80 + 2 * COMM_LEN]),
        path: display_path(&record[path_start..path_start + path_len]),
        data: record[CHUNK_HEADER_LEN..need].to_vec(),
    })
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
        h
    }

    #[test]
    fn parses_a_record() {
        let h = header(b"/run/containerd/containerd.sock\0", 5);
        let c = parse(&record(&h, b"hello")).expect("parse");
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
            parse(&record(&h, b"")).expect("parse").path,
            "@containerd-shim"
        );
    }

    #[test]
    fn rejects_short_and_inconsistent_records() {
        let h = header(b"/x\0", 5);
        let full = record(&h, b"hello");
        assert!(matches!(parse(&full[..10]), Err(WireError::Short { .. })));
        assert!(matches!(
            parse(&full[..full.len() - 1]),
            Err(WireError::Short { .. })
        ));
        let mut bad = h;
        bad.cap_len = 9;
        bad.span_len = 5;
        assert_eq!(
            parse(&record(&bad, b"hellohell")),
            Err(WireError::Inconsistent)
        );
    }

    #[test]
    fn truncated_span_reports_missing_bytes() {
        let mut h = header(b"/x\0", 5);
        h.span_len = 100;
        h.flags |= flags::TRUNCATED;
        let c = parse(&record(&h, b"hello")).expect("parse");
        assert_eq!(c.missing(), 95);
        assert!(c.missing_reason().starts_with("truncated"));
    }

    #[test]
    fn oversized_path_len_is_clamped() {
        let mut h = header(b"/x\0", 0);
        h.path_len = 60000;
        let c = parse(&record(&h, b"")).expect("parse");
        assert!(c.path.len() <= PATH_LEN);
    }
}
