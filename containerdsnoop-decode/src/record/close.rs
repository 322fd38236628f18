//! Connection-end records (`CloseRecord`, written by `containerdsnoop-ebpf/src/close.rs`) ->
//! which connection ended, how and when. Their socket identities are masked exactly as data
//! records' are ([`mask_pointer`]), so they name the same connection as its chunks.

use containerdsnoop_common::{
    CLOSE_CLOSE, CLOSE_EXIT, CLOSE_RECORD_LEN, CLOSE_RELEASE, CLOSE_SHUTDOWN, CloseRecord,
};

use super::{mask_pointer, u32_at, u64_at};

/// `shutdown(2)`'s `how` that stops both directions.
const SHUT_RDWR: u32 = 2;

/// A traced connection ended (or was shut down) at `ts_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnClosed {
    pub ts_ns: u64,
    /// Masked socket identities, as `Chunk::sock_id` / `Chunk::peer_id`.
    pub sock_id: u64,
    pub peer_id: u64,
    /// One of the `CLOSE_*` kinds of `containerdsnoop_common`.
    pub kind: u32,
    /// `shutdown(2)`'s `how` for `CLOSE_SHUTDOWN`, else 0.
    pub how: u32,
}

impl ConnClosed {
    /// Whether the connection is over. A half-close (`shutdown(SHUT_WR)`, as the docker CLI
    /// does on a hijacked attach stream) leaves the other direction, and the call, going.
    pub fn ends_connection(&self) -> bool {
        match self.kind {
            CLOSE_RELEASE | CLOSE_CLOSE | CLOSE_EXIT => true,
            CLOSE_SHUTDOWN => self.how == SHUT_RDWR,
            _ => false,
        }
    }
}

/// Parses a connection-end record, masking its socket pointers with `key`. Every
/// [`CLOSE_RECORD_LEN`] bytes are a valid record; which ring records are connection ends is
/// [`super::classify`]'s call.
pub fn parse(record: &[u8; CLOSE_RECORD_LEN], key: u64) -> ConnClosed {
    use std::mem::offset_of;
    ConnClosed {
        ts_ns: u64_at(record, offset_of!(CloseRecord, ts_ns)),
        sock_id: mask_pointer(u64_at(record, offset_of!(CloseRecord, sk)), key),
        peer_id: mask_pointer(u64_at(record, offset_of!(CloseRecord, peer_sk)), key),
        kind: u32_at(record, offset_of!(CloseRecord, kind)),
        how: u32_at(record, offset_of!(CloseRecord, how)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use containerdsnoop_common::{CHUNK_HEADER_LEN, ChunkHeader, flags};

    /// The bytes the kernel side writes for `r` (tests and fuzzing).
    pub fn bytes(r: &CloseRecord) -> [u8; CLOSE_RECORD_LEN] {
        let mut out = [0u8; CLOSE_RECORD_LEN];
        // SAFETY: CloseRecord is repr(C) plain data with explicit padding, CLOSE_RECORD_LEN
        // bytes long; `out` is that long and does not overlap `r`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                r as *const CloseRecord as *const u8,
                out.as_mut_ptr(),
                CLOSE_RECORD_LEN,
            )
        };
        out
    }

    pub fn record(kind: u32, how: u32) -> CloseRecord {
        CloseRecord {
            ts_ns: 123_456,
            sk: 0xffff_8880_0000_1000,
            peer_sk: 0xffff_8880_0000_2000,
            sock_ino: 100,
            peer_ino: 101,
            tgid: 10,
            tid: 11,
            kind,
            how,
            flags: flags::BACKEND_TRACEPOINT,
            _pad: 0,
        }
    }

    #[test]
    fn identities_are_masked_like_data_records() {
        let key = 0x1234_5678_9abc_def0;
        let c = parse(&bytes(&record(CLOSE_CLOSE, 0)), key);
        // The same pointers in a data record give the same ids, so the close names its
        // connection.
        // SAFETY: all-zero is a valid ChunkHeader.
        let mut h: ChunkHeader = unsafe { std::mem::zeroed() };
        h.sk = 0xffff_8880_0000_1000;
        h.peer_sk = 0xffff_8880_0000_2000;
        // SAFETY: ChunkHeader is repr(C) plain data with explicit padding fields.
        let head = unsafe {
            std::slice::from_raw_parts(&h as *const ChunkHeader as *const u8, CHUNK_HEADER_LEN)
        };
        let chunk = crate::record::chunk::parse(head, key).expect("data record");
        assert_eq!((c.sock_id, c.peer_id), (chunk.sock_id, chunk.peer_id));
        assert_eq!(c.ts_ns, 123_456);
        assert_ne!(c.sock_id, 0xffff_8880_0000_1000);
    }

    #[test]
    fn kind_and_how_are_read_from_their_fields() {
        let c = parse(&bytes(&record(CLOSE_SHUTDOWN, 1)), 7);
        assert_eq!((c.kind, c.how), (CLOSE_SHUTDOWN, 1));
    }

    #[test]
    fn unconnected_peer_stays_zero() {
        let mut r = record(CLOSE_RELEASE, 0);
        r.peer_sk = 0;
        assert_eq!(parse(&bytes(&r), 99).peer_id, 0);
    }

    #[test]
    fn closes_releases_and_exits_end_the_connection_half_closes_do_not() {
        for kind in [CLOSE_RELEASE, CLOSE_CLOSE, CLOSE_EXIT] {
            assert!(parse(&bytes(&record(kind, 0)), 1).ends_connection());
        }
        let shut = |how| parse(&bytes(&record(CLOSE_SHUTDOWN, how)), 1).ends_connection();
        assert!(!shut(0), "SHUT_RD");
        assert!(!shut(1), "SHUT_WR");
        assert!(shut(2), "SHUT_RDWR");
        assert!(!parse(&bytes(&record(77, 0)), 1).ends_connection());
    }
}
