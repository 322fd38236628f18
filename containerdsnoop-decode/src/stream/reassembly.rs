//! Per-direction byte streams: orders a socket's records by stream position and reports what
//! is missing — gaps (records the ring buffer dropped), spans whose bytes were not captured
//! (truncated, unreadable), and overlaps — so that nothing is lost silently.

use crate::{lru::LruMap, record::Chunk};

/// Most directions tracked at once; the least recently active is forgotten beyond this.
pub const MAX_DIRECTIONS: usize = 65536;

/// What the reassembler says about one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The first record seen on this socket starts at `pos` > 0: the tracer joined a stream
    /// that was already flowing.
    Joined { pos: u64 },
    /// Bytes `[pos, pos + len)` were never delivered (lost records).
    Gap {
        pos: u64,
        len: u64,
        lost_records: u32,
    },
    /// Bytes of the record's span that are absent (`[pos, pos + len)`).
    Missing { pos: u64, len: u64 },
    /// The record repeats `len` bytes already seen; they are dropped.
    Overlap { pos: u64, len: u64 },
    /// In-order payload bytes starting at `pos`: the record's data (after trimming overlap).
    Data { pos: u64, start: usize },
}

struct Direction {
    next_pos: u64,
}

pub struct Reassembler {
    directions: LruMap<u64, Direction>,
    pub evicted: u64,
}

impl Piece {
    /// The pieces of a record taken as it is, without a reassembler: its bytes, then the span
    /// it did not capture (what the pcap export writes when told nothing more).
    pub fn of_record(chunk: &Chunk) -> Vec<Piece> {
        let mut v = Vec::new();
        if !chunk.data.is_empty() {
            v.push(Piece::Data {
                pos: chunk.stream_pos,
                start: 0,
            });
        }
        if chunk.missing() > 0 {
            v.push(Piece::Missing {
                pos: chunk.stream_pos + chunk.data.len() as u64,
                len: chunk.missing() as u64,
            });
        }
        v
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler {
            directions: LruMap::new(MAX_DIRECTIONS),
            evicted: 0,
        }
    }
}

impl Reassembler {
    /// Classifies `chunk` against its socket's expected position; `out` receives the pieces
    /// in stream order. Returns whether this is the first record of the socket.
    pub fn accept(&mut self, chunk: &Chunk, out: &mut Vec<Piece>) -> bool {
        let first = !self.directions.contains_key(&chunk.sock_ino);
        if first {
            let fresh = Direction {
                next_pos: chunk.stream_pos,
            };
            if self.directions.insert(chunk.sock_ino, fresh).is_some() {
                self.evicted += 1;
            }
        }
        let Some(dir) = self.directions.get_mut(&chunk.sock_ino) else {
            return first;
        };
        if first && chunk.stream_pos > 0 {
            out.push(Piece::Joined {
                pos: chunk.stream_pos,
            });
        }
        let span_end = chunk.stream_pos + chunk.span_len as u64;
        let data_end = chunk.stream_pos + chunk.data.len() as u64;
        if chunk.stream_pos > dir.next_pos {
            out.push(Piece::Gap {
                pos: dir.next_pos,
                len: chunk.stream_pos - dir.next_pos,
                lost_records: chunk.lost_records,
            });
            dir.next_pos = chunk.stream_pos;
        }
        if span_end <= dir.next_pos {
            if chunk.span_len > 0 {
                out.push(Piece::Overlap {
                    pos: chunk.stream_pos,
                    len: chunk.span_len as u64,
                });
            }
            return first;
        }
        if chunk.stream_pos < dir.next_pos {
            out.push(Piece::Overlap {
                pos: chunk.stream_pos,
                len: dir.next_pos - chunk.stream_pos,
            });
        }
        let from = dir.next_pos.max(chunk.stream_pos);
        if data_end > from {
            out.push(Piece::Data {
                pos: from,
                start: (from - chunk.stream_pos) as usize,
            });
        }
        let missing_from = data_end.max(from);
        if span_end > missing_from {
            out.push(Piece::Missing {
                pos: missing_from,
                len: span_end - missing_from,
            });
        }
        dir.next_pos = span_end;
        first
    }

    /// Forgets a socket (its connection closed or was evicted upstream).
    pub fn forget(&mut self, sock_ino: u64) {
        self.directions.remove(&sock_ino);
    }

    pub fn tracked(&self) -> usize {
        self.directions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ino: u64, pos: u64, span: u32, data: &[u8]) -> Chunk {
        Chunk {
            ts_ns: 0,
            sock_ino: ino,
            peer_ino: 0,
            sock_id: ino,
            peer_id: 0,
            stream_pos: pos,
            call_len: span,
            chunk_off: 0,
            span_len: span,
            flags: 0,
            tgid: 1,
            tid: 1,
            peer_tgid: 2,
            lost_records: 0,
            pattern: 0,
            sock_type: 1,
            comm: String::new(),
            process_comm: String::new(),
            path: String::new(),
            data: data.to_vec(),
        }
    }

    fn run(r: &mut Reassembler, c: &Chunk) -> Vec<Piece> {
        let mut out = Vec::new();
        r.accept(c, &mut out);
        out
    }

    #[test]
    fn in_order_stream() {
        let mut r = Reassembler::default();
        assert_eq!(
            run(&mut r, &chunk(1, 0, 3, b"abc")),
            vec![Piece::Data { pos: 0, start: 0 }]
        );
        assert_eq!(
            run(&mut r, &chunk(1, 3, 2, b"de")),
            vec![Piece::Data { pos: 3, start: 0 }]
        );
    }

    #[test]
    fn late_join_is_not_a_gap() {
        let mut r = Reassembler::default();
        assert_eq!(
            run(&mut r, &chunk(1, 500, 2, b"xy")),
            vec![
                Piece::Joined { pos: 500 },
                Piece::Data { pos: 500, start: 0 }
            ]
        );
    }

    #[test]
    fn gap_from_lost_records() {
        let mut r = Reassembler::default();
        run(&mut r, &chunk(1, 0, 3, b"abc"));
        let mut c = chunk(1, 10, 2, b"kl");
        c.lost_records = 2;
        assert_eq!(
            run(&mut r, &c),
            vec![
                Piece::Gap {
                    pos: 3,
                    len: 7,
                    lost_records: 2
                },
                Piece::Data { pos: 10, start: 0 }
            ]
        );
    }

    #[test]
    fn truncated_span_reports_missing_tail() {
        let mut r = Reassembler::default();
        assert_eq!(
            run(&mut r, &chunk(1, 0, 10, b"abcd")),
            vec![
                Piece::Data { pos: 0, start: 0 },
                Piece::Missing { pos: 4, len: 6 }
            ]
        );
        assert_eq!(
            run(&mut r, &chunk(1, 10, 1, b"z")),
            vec![Piece::Data { pos: 10, start: 0 }]
        );
    }

    #[test]
    fn overlap_is_trimmed() {
        let mut r = Reassembler::default();
        run(&mut r, &chunk(1, 0, 4, b"abcd"));
        assert_eq!(
            run(&mut r, &chunk(1, 2, 4, b"cdef")),
            vec![
                Piece::Overlap { pos: 2, len: 2 },
                Piece::Data { pos: 4, start: 2 }
            ]
        );
        assert_eq!(
            run(&mut r, &chunk(1, 0, 2, b"ab")),
            vec![Piece::Overlap { pos: 0, len: 2 }]
        );
    }

    #[test]
    fn directions_are_independent_and_bounded() {
        let mut r = Reassembler::default();
        for ino in 0..(MAX_DIRECTIONS as u64 + 10) {
            run(&mut r, &chunk(ino, 0, 1, b"a"));
        }
        assert_eq!(r.tracked(), MAX_DIRECTIONS);
        assert_eq!(r.evicted, 10);
    }
}
