//! `--raw`: one header line per captured record — time, comm, pid → peer pid, socket path,
//! length — then a hexdump (`-o hex`) or an escaped string (`-o string`); or one JSON object per
//! record (`-o json`) with the payload base64-encoded in `data` and every metadata field.
//! Gaps, missing spans and late joins are printed as their own lines/objects.

use std::io::{self, Write};

use base64::Engine as _;
use serde_json::json;

use super::time::Clock;
use crate::escape::escape_bytes;
use crate::output::sink::{Record, Sink};
use crate::{record::Chunk, stream::reassembly::Piece};
use containerdsnoop_common::flags;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    Hex,
    String,
    Json,
}

pub struct RawPrinter<W: Write> {
    out: W,
    format: RawFormat,
    clock: Clock,
}

fn flag_names(f: u32) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (bit, name) in [
        (flags::TRUNCATED, "truncated"),
        (flags::NO_PAYLOAD, "no_payload"),
        (flags::READ_FAULT, "read_fault"),
        (flags::UNSUPPORTED_ITER, "unsupported_iter"),
        (flags::CALL_END, "call_end"),
        (flags::PATH_IS_PEER, "path_is_peer"),
    ] {
        if f & bit != 0 {
            v.push(name);
        }
    }
    v
}

impl<W: Write> RawPrinter<W> {
    pub fn new(out: W, format: RawFormat, clock: Clock) -> Self {
        RawPrinter { out, format, clock }
    }

    /// Prints one record and what the reassembler said about it.
    pub fn print_record(&mut self, chunk: &Chunk, pieces: &[Piece]) -> io::Result<()> {
        for piece in pieces {
            match *piece {
                Piece::Data { pos, start } => self.data(chunk, pos, &chunk.data[start..])?,
                Piece::Joined { pos } => self.note(
                    chunk,
                    "joined",
                    pos,
                    0,
                    "stream already flowing: attached mid-stream",
                )?,
                Piece::Gap {
                    pos,
                    len,
                    lost_records,
                } => self.note(
                    chunk,
                    "lost",
                    pos,
                    len,
                    &format!(
                        "{len} bytes lost ({lost_records} records dropped by a full ring buffer)"
                    ),
                )?,
                Piece::Missing { pos, len } => {
                    self.note(chunk, "missing", pos, len, chunk.missing_reason())?
                }
                Piece::Overlap { pos, len } => self.note(
                    chunk,
                    "overlap",
                    pos,
                    len,
                    "bytes repeated by concurrent writers; dropped",
                )?,
            }
        }
        Ok(())
    }

    fn header(&self, chunk: &Chunk, len: usize) -> String {
        format!(
            "{} {} {}/{} -> {} {} ino {}->{} pos {} len {}",
            self.clock.hms(chunk.ts_ns),
            escape_bytes(chunk.process_comm.as_bytes()),
            chunk.tgid,
            chunk.tid,
            chunk.peer_tgid,
            escape_bytes(chunk.path.as_bytes()),
            chunk.sock_ino,
            chunk.peer_ino,
            chunk.stream_pos,
            len,
        )
    }

    fn data(&mut self, chunk: &Chunk, pos: u64, data: &[u8]) -> io::Result<()> {
        match self.format {
            RawFormat::Json => {
                let v = self.json(chunk, "data", pos, data.len() as u64, Some(data), None);
                writeln!(self.out, "{v}")
            }
            RawFormat::String => {
                let h = self.header(chunk, data.len());
                writeln!(self.out, "{h}")?;
                writeln!(self.out, "{}", escape_bytes(data))
            }
            RawFormat::Hex => {
                let h = self.header(chunk, data.len());
                writeln!(self.out, "{h}")?;
                hexdump(&mut self.out, data)
            }
        }
    }

    fn note(
        &mut self,
        chunk: &Chunk,
        event: &str,
        pos: u64,
        len: u64,
        text: &str,
    ) -> io::Result<()> {
        match self.format {
            RawFormat::Json => {
                let v = self.json(chunk, event, pos, len, None, Some(text));
                writeln!(self.out, "{v}")
            }
            _ => {
                let h = self.header(chunk, len as usize);
                writeln!(self.out, "{h} [{event}: {text}]")
            }
        }
    }

    fn json(
        &self,
        chunk: &Chunk,
        event: &str,
        pos: u64,
        len: u64,
        data: Option<&[u8]>,
        text: Option<&str>,
    ) -> serde_json::Value {
        let mut v = json!({
            "event": event,
            "time": self.clock.rfc3339(chunk.ts_ns),
            "ts_ns": chunk.ts_ns,
            "comm": chunk.comm,
            "process_comm": chunk.process_comm,
            "pid": chunk.tgid,
            "tid": chunk.tid,
            "peer_pid": chunk.peer_tgid,
            "path": chunk.path,
            "sock_ino": chunk.sock_ino,
            "peer_ino": chunk.peer_ino,
            "sock_id": chunk.sock_id,
            "peer_sock_id": chunk.peer_id,
            "sock_type": chunk.sock_type,
            "backend": chunk.backend(),
            "stream_pos": pos,
            "len": len,
            "call_len": chunk.call_len,
            "chunk_off": chunk.chunk_off,
            "flags": flag_names(chunk.flags),
        });
        if let Some(d) = data {
            v["data"] = json!(base64::engine::general_purpose::STANDARD.encode(d));
        }
        if let Some(t) = text {
            v["detail"] = json!(t);
        }
        v
    }
}

impl<W: Write> Sink for RawPrinter<W> {
    fn record(&mut self, record: &Record<'_>) -> io::Result<()> {
        self.print_record(record.chunk, record.pieces)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `offset  hex bytes  |ascii|`, 16 bytes a line, non-printables as `.`.
pub fn hexdump<W: Write>(out: &mut W, data: &[u8]) -> io::Result<()> {
    for (i, line) in data.chunks(16).enumerate() {
        let mut hex = String::with_capacity(48);
        for (j, b) in line.iter().enumerate() {
            if j == 8 {
                hex.push(' ');
            }
            hex.push_str(&format!("{b:02x} "));
        }
        let ascii: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "  {:08x}  {:<49} |{}|", i * 16, hex, ascii)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::chunk::tests::{header, parse_test as parse, record};

    fn chunk(data: &[u8]) -> Chunk {
        parse(&record(&header(b"/run/x.sock\0", data.len() as u32), data)).expect("parse")
    }

    #[test]
    fn hexdump_escapes_everything() {
        let mut out = Vec::new();
        hexdump(&mut out, b"PRI * HTTP/2.0\r\n\x1b[2J").expect("write");
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.contains("50 52 49 20"));
        assert!(s.contains("|PRI * HTTP/2.0..|"));
        assert!(!s.contains('\x1b'));
    }

    #[test]
    fn json_record_carries_base64_and_metadata() {
        let c = chunk(b"\x00\x01hello");
        let mut p = RawPrinter::new(Vec::new(), RawFormat::Json, Clock::identity());
        p.print_record(&c, &[Piece::Data { pos: 24, start: 2 }])
            .expect("write");
        let line = String::from_utf8(p.out).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("json");
        assert_eq!(v["data"], "aGVsbG8=");
        assert_eq!(v["stream_pos"], 24);
        assert_eq!(v["pid"], 10);
        assert_eq!(v["peer_pid"], 12);
        assert_eq!(v["path"], "/run/x.sock");
        assert_eq!(v["backend"], "tracepoint");
    }

    #[test]
    fn string_output_is_escaped_and_gaps_are_shown() {
        let c = chunk(b"\x1b]0;x\x07");
        let mut p = RawPrinter::new(Vec::new(), RawFormat::String, Clock::identity());
        p.print_record(
            &c,
            &[
                Piece::Gap {
                    pos: 0,
                    len: 24,
                    lost_records: 1,
                },
                Piece::Data { pos: 24, start: 0 },
            ],
        )
        .expect("write");
        let s = String::from_utf8(p.out).expect("utf8");
        assert!(s.contains("[lost: 24 bytes lost (1 records dropped"));
        assert!(s.contains("\\x1b]0;x\\x07"));
        assert!(!s.contains('\x1b'));
    }
}
