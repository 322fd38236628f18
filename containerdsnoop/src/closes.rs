//! Connection-end records (`CloseRecord`, see `containerdsnoop-ebpf/src/close.rs`) -> which
//! connection ended and when. They share the ring buffer with the data records and are told
//! apart by length; their socket identities are masked exactly as data records' are
//! (`record::mask_pointer`), so they name the same connection.

use containerdsnoop_common::{
    CLOSE_CLOSE, CLOSE_EXIT, CLOSE_RECORD_LEN, CLOSE_RELEASE, CLOSE_SHUTDOWN, CloseRecord,
};
use containerdsnoop_decode::record::mask_pointer;

/// `shutdown(2)`'s `how` that stops both directions.
const SHUT_RDWR: u32 = 2;

/// A traced connection ended (or was shut down) at `ts_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnClosed {
    pub ts_ns: u64,
    /// Masked socket identities, as `Chunk::sock_id` / `Chunk::peer_id`.
    pub sock_id: u64,
    pub peer_id: u64,
    pub kind: u32,
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

/// `Some` when `record` is a connection-end record (by its length), parsed with `key`.
pub fn parse(record: &[u8], key: u64) -> Option<ConnClosed> {
    if record.len() != CLOSE_RECORD_LEN {
        return None;
    }
    let u64_at = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&record[off..off + 8]);
        u64::from_ne_bytes(b)
    };
    let u32_at = |off: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&record[off..off + 4]);
        u32::from_ne_bytes(b)
    };
    Some(ConnClosed {
        ts_ns: u64_at(std::mem::offset_of!(CloseRecord, ts_ns)),
        sock_id: mask_pointer(u64_at(std::mem::offset_of!(CloseRecord, sk)), key),
        peer_id: mask_pointer(u64_at(std::mem::offset_of!(CloseRecord, peer_sk)), key),
        kind: u32_at(std::mem::offset_of!(CloseRecord, kind)),
        how: u32_at(std::mem::offset_of!(CloseRecord, how)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerdsnoop_common::{CHUNK_HEADER_LEN, ChunkHeader, flags};

    fn bytes(r: &CloseRecord) -> Vec<u8> {
        // SAFETY: CloseRecord is repr(C) plain data with explicit padding.
        unsafe {
            std::slice::from_raw_parts(r as *const CloseRecord as *const u8, CLOSE_RECORD_LEN)
        }
        .to_vec()
    }

    fn record(kind: u32, how: u32) -> CloseRecord {
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
        let c = parse(&bytes(&record(CLOSE_CLOSE, 0)), key).expect("close record");
        // The same pointers in a data record give the same ids, so the close names its
        // connection.
        // SAFETY: all-zero is a valid ChunkHeader.
        let mut h: ChunkHeader = unsafe { std::mem::zeroed() };
        h.sk = 0xffff_8880_0000_1000;
        h.peer_sk = 0xffff_8880_0000_2000;
        // SAFETY: as `bytes`.
        let head = unsafe {
            std::slice::from_raw_parts(&h as *const ChunkHeader as *const u8, CHUNK_HEADER_LEN)
        };
        let chunk = containerdsnoop_decode::record::parse(head, key).expect("data record");
        assert_eq!((c.sock_id, c.peer_id), (chunk.sock_id, chunk.peer_id));
        assert_eq!(c.ts_ns, 123_456);
        assert_ne!(c.sock_id, 0xffff_8880_0000_1000);
    }

    #[test]
    fn unconnected_peer_stays_zero() {
        let mut r = record(CLOSE_RELEASE, 0);
        r.peer_sk = 0;
        assert_eq!(parse(&bytes(&r), 99).expect("close").peer_id, 0);
    }

    #[test]
    fn data_records_are_not_close_records() {
        assert_eq!(parse(&[0u8; CHUNK_HEADER_LEN], 1), None);
        assert_eq!(parse(&[0u8; CHUNK_HEADER_LEN + 5], 1), None);
        assert_eq!(parse(&[0u8; CLOSE_RECORD_LEN - 1], 1), None);
        assert_eq!(parse(&[], 1), None);
    }

    #[test]
    fn closes_releases_and_exits_end_the_connection_half_closes_do_not() {
        for kind in [CLOSE_RELEASE, CLOSE_CLOSE, CLOSE_EXIT] {
            assert!(
                parse(&bytes(&record(kind, 0)), 1)
                    .unwrap()
                    .ends_connection()
            );
        }
        let shut = |how| {
            parse(&bytes(&record(CLOSE_SHUTDOWN, how)), 1)
                .unwrap()
                .ends_connection()
        };
        assert!(!shut(0), "SHUT_RD");
        assert!(!shut(1), "SHUT_WR");
        assert!(shut(2), "SHUT_RDWR");
        assert!(!parse(&bytes(&record(77, 0)), 1).unwrap().ends_connection());
    }
}
