//! One ring-buffer record, from the kernel's bytes: which kind it is ([`classify`]), a data
//! record as a [`Chunk`] ([`chunk`]), a connection end as a [`ConnClosed`] ([`close`]); and the
//! `--raw -o json` lines that recorded captures replay as chunks ([`raw_json`]). Kernel records
//! are parsed with length checks and unaligned reads, never transmuted, and their kernel
//! pointers are masked ([`mask_pointer`]): a malformed record is an error value, counted and
//! skipped.
//!
//! [`parse_into`] is the one entry point for ring records: the live capture hands it every
//! record it drains.

pub mod chunk;
pub mod close;
pub mod raw_json;

use containerdsnoop_common::{CHUNK_HEADER_LEN, CLOSE_RECORD_LEN};

pub use chunk::{Chunk, ChunkError};
pub use close::ConnClosed;
pub use raw_json::{chunk_from_raw_json, chunks_from_raw_jsonl};

// `classify` tells the two kinds apart by length: no data record can be a close record's size.
const _: () = assert!(CLOSE_RECORD_LEN < CHUNK_HEADER_LEN);

/// One ring record, by kind, still as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingRecord<'a> {
    /// A data record (`ChunkHeader` + payload), or bytes that can only be a malformed one.
    Chunk(&'a [u8]),
    /// A connection end (`CloseRecord`).
    Close(&'a [u8; CLOSE_RECORD_LEN]),
}

/// Which kind of record `record` is.
///
/// By length, because that is all the two kinds carry to tell them apart: `ChunkHeader` and
/// `CloseRecord` (`containerdsnoop-common`) share only their leading `ts_ns`, neither has a
/// record-kind field, and the kernel programs (`containerdsnoop-ebpf/src/emit.rs`, `close.rs`)
/// write none. Length is unambiguous as long as a data record is at least `CHUNK_HEADER_LEN`
/// (240) bytes and a close record exactly `CLOSE_RECORD_LEN` (64), which the assertion above
/// and `containerdsnoop-common` both check at compile time; any other length is a data record
/// (and, if shorter than its header, refused by [`chunk::parse_into`]). A tag shared by both
/// headers would need a change to those headers and to both kernel programs.
pub fn classify(record: &[u8]) -> RingRecord<'_> {
    match <&[u8; CLOSE_RECORD_LEN]>::try_from(record) {
        Ok(close) => RingRecord::Close(close),
        Err(_) => RingRecord::Chunk(record),
    }
}

/// What [`parse_into`] found in a ring record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A data record: the chunk handed in now holds it.
    Chunk,
    /// A connection end; the chunk handed in is untouched.
    Closed(ConnClosed),
}

/// Parses one ring record, masking kernel pointers with `key`: a data record into `chunk`
/// (reusing its buffers; on error `chunk` is left unspecified), a connection end into the
/// returned [`Parsed::Closed`].
pub fn parse_into(record: &[u8], key: u64, chunk: &mut Chunk) -> Result<Parsed, ChunkError> {
    match classify(record) {
        RingRecord::Close(bytes) => Ok(Parsed::Closed(close::parse(bytes, key))),
        RingRecord::Chunk(bytes) => chunk::parse_into(bytes, key, chunk).map(|()| Parsed::Chunk),
    }
}

/// Masks kernel pointers so that identities are comparable within a run but never reveal
/// kernel addresses (output can end up in logs and bug reports). Data records and connection
/// ends are masked alike, so both name the same connection.
pub fn mask_pointer(ptr: u64, key: u64) -> u64 {
    if ptr == 0 {
        0
    } else {
        (ptr ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    }
}

/// The native-endian integers of a kernel record; callers check the length first.
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

#[cfg(test)]
mod tests {
    use super::*;
    use containerdsnoop_common::{CLOSE_CLOSE, CLOSE_SHUTDOWN};

    #[test]
    fn a_close_record_is_classified_and_parsed_as_a_connection_end() {
        let bytes = close::tests::bytes(&close::tests::record(CLOSE_SHUTDOWN, 2));
        assert_eq!(classify(&bytes), RingRecord::Close(&bytes));
        let mut chunk = Chunk::default();
        chunk.comm.push_str("kept");
        let parsed = parse_into(&bytes, 5, &mut chunk).expect("close record");
        assert_eq!(parsed, Parsed::Closed(close::parse(&bytes, 5)));
        assert_eq!(chunk.comm, "kept", "a close record leaves the chunk alone");
    }

    #[test]
    fn data_records_are_parsed_into_the_chunk() {
        let h = chunk::tests::header(b"/run/x.sock\0", 5);
        let r = chunk::tests::record(&h, b"hello");
        assert_eq!(classify(&r), RingRecord::Chunk(&r));
        let mut c = Chunk::default();
        assert_eq!(parse_into(&r, 5, &mut c), Ok(Parsed::Chunk));
        assert_eq!(c, chunk::parse(&r, 5).expect("parse"));
        // A header-only data record (an empty send) is a data record too.
        let empty = chunk::tests::record(&chunk::tests::header(b"/x\0", 0), b"");
        assert_eq!(parse_into(&empty, 5, &mut c), Ok(Parsed::Chunk));
    }

    #[test]
    fn only_the_exact_close_length_is_a_close_record() {
        for len in [
            0,
            1,
            CLOSE_RECORD_LEN - 1,
            CLOSE_RECORD_LEN + 1,
            CHUNK_HEADER_LEN - 1,
        ] {
            let bytes = vec![0u8; len];
            assert_eq!(classify(&bytes), RingRecord::Chunk(&bytes), "{len} bytes");
            let mut c = Chunk::default();
            assert!(
                matches!(
                    parse_into(&bytes, 1, &mut c),
                    Err(ChunkError::Short { have, .. }) if have == len
                ),
                "{len} bytes: a short data record"
            );
        }
        let close = close::tests::bytes(&close::tests::record(CLOSE_CLOSE, 0));
        assert!(matches!(classify(&close), RingRecord::Close(_)));
    }
}
