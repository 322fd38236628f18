//! The pure pipeline from captured records to printed rows: reassembly, the connection table,
//! protocol decoders, rows, filters and the chosen printer. The live capture, offline files and
//! tests all push [`Chunk`]s through the same code.

use std::io::{self, Write};

use crate::{
    output::filter::Filter,
    output::rows::{RowBuilder, render_body},
    output::{json::JsonPrinter, raw::RawPrinter, table::TablePrinter, time::Clock},
    pcap::{self, ConnMeta, PcapWriter, Protocol},
    protocol::call::{CallEvent, CallEventKind, ConnEnd},
    record::Chunk,
    schema::{RenderOptions, Schema},
    stats::Stats,
    stream::conn::{ConnInfo, ConnTable},
    stream::reassembly::{Piece, Reassembler},
};

/// Where rows go.
pub enum Printer {
    Table(TablePrinter<Box<dyn Write>>),
    Json(JsonPrinter<Box<dyn Write>>),
    Raw(RawPrinter<Box<dyn Write>>),
    /// Rows are counted but not printed (`-w -`: stdout carries the pcap).
    Silent,
}

fn pcap_error(e: pcap::Error) -> io::Error {
    io::Error::other(format!("pcap export: {e}"))
}

pub struct Pipeline {
    reassembler: Reassembler,
    conns: ConnTable,
    rows: RowBuilder,
    filter: Filter,
    schema: Schema,
    opts: RenderOptions,
    printer: Printer,
    pub stats: Stats,
    /// Stop after this many rows (`-n`).
    limit: Option<u64>,
    pieces: Vec<Piece>,
    events: Vec<(ConnInfo, CallEvent)>,
    /// `-w`: the pcapng export, written alongside the rows, and the clock that turns kernel
    /// timestamps into the wall-clock times a capture file carries.
    pcap: Option<(PcapWriter<pcap::writer::Output>, Clock)>,
}

impl Pipeline {
    pub fn new(
        schema: Schema,
        opts: RenderOptions,
        filter: Filter,
        printer: Printer,
        limit: Option<u64>,
    ) -> Self {
        Pipeline {
            reassembler: Reassembler::default(),
            conns: ConnTable::default(),
            rows: RowBuilder::new(matches!(printer, Printer::Json(_))),
            filter,
            schema,
            opts,
            printer,
            stats: Stats::default(),
            limit,
            pieces: Vec::new(),
            events: Vec::new(),
            pcap: None,
        }
    }

    /// Socket inodes of connections open before the tracer started (decoded as late joins).
    pub fn set_preexisting(&mut self, inodes: impl IntoIterator<Item = u64>) {
        self.conns.set_preexisting(inodes);
    }

    /// Also writes every captured record to a pcapng export (`-w`).
    pub fn with_pcap(mut self, writer: PcapWriter<pcap::writer::Output>, clock: Clock) -> Self {
        self.pcap = Some((writer, clock));
        self
    }

    /// The connection of these socket identities ended (offline captures).
    pub fn close_connection(&mut self, ts_ns: u64, a: u64, b: u64) -> io::Result<()> {
        self.conns.close(ts_ns, a, b, &mut self.events);
        if let Some((w, clock)) = self.pcap.as_mut() {
            let ts = clock.wall_ns(ts_ns).max(0) as u64;
            w.close_conn(a, b, ts).map_err(pcap_error)?;
        }
        self.emit()
    }

    /// Writes `chunk` to the pcap export, if any, under `protocol`'s port.
    fn export(&mut self, chunk: &Chunk, protocol: &str) -> io::Result<()> {
        if let Some((w, clock)) = self.pcap.as_mut() {
            let mut wall = chunk.clone();
            wall.ts_ns = clock.wall_ns(chunk.ts_ns).max(0) as u64;
            let meta = ConnMeta::from_chunk(&wall, Protocol::from_name(protocol));
            w.record(&wall, &self.pieces, &meta).map_err(pcap_error)?;
        }
        Ok(())
    }

    /// Whether `-n` has been reached.
    pub fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.stats.rows >= n)
    }

    /// Pushes one captured record through; returns false once `-n` is reached.
    pub fn push(&mut self, chunk: &Chunk) -> io::Result<bool> {
        if self.done() {
            return Ok(false);
        }
        self.stats.records += 1;
        self.stats.captured_bytes += chunk.data.len() as u64;
        if chunk.missing() > 0 {
            self.stats.truncated_records += 1;
        }
        self.pieces.clear();
        self.reassembler.accept(chunk, &mut self.pieces);
        self.stats.evicted_directions = self.reassembler.evicted;
        for piece in &self.pieces {
            match *piece {
                Piece::Gap { len, .. } => self.stats.gap_bytes += len,
                Piece::Missing { len, .. } => self.stats.missing_bytes += len,
                Piece::Overlap { len, .. } => self.stats.overlap_bytes += len,
                _ => {}
            }
        }
        if matches!(self.printer, Printer::Raw(_)) {
            self.export(chunk, "raw")?;
        }
        if let Printer::Raw(p) = &mut self.printer {
            if !self.filter.pids.is_empty()
                && !self
                    .filter
                    .pids
                    .iter()
                    .any(|&x| x == chunk.tgid || x == chunk.peer_tgid)
            {
                return Ok(true);
            }
            if !self.filter.comms.is_empty() && !self.filter.comms.contains(&chunk.process_comm) {
                return Ok(true);
            }
            p.record(chunk, &self.pieces)?;
            self.stats.rows += 1;
            return Ok(!self.done());
        }
        let pieces = std::mem::take(&mut self.pieces);
        for piece in &pieces {
            match *piece {
                Piece::Data { start, .. } => {
                    self.conns
                        .data(chunk, &chunk.data[start..], &mut self.events)
                }
                Piece::Gap { len, .. } | Piece::Missing { len, .. } => {
                    self.conns.gap(chunk, len, &mut self.events)
                }
                Piece::Joined { .. } => self.conns.joined(chunk, &mut self.events),
                Piece::Overlap { .. } => {}
            }
        }
        self.pieces = pieces;
        // After decoding, so that the connection's protocol (its export port) is known.
        let protocol = self.conns.protocol_of(chunk);
        self.export(chunk, protocol)?;
        self.stats.evicted_connections = self.conns.stats.evicted;
        self.emit()?;
        Ok(!self.done())
    }

    /// Bytes held by decoders and detection buffers (for memory limits and tests).
    pub fn buffered(&self) -> usize {
        self.conns.buffered()
    }

    /// Ends every open call (`end`: the tracer stops, or the capture file ended) and flushes. The pcap export is completed even
    /// when printing rows fails (a closed pipe), so the file is valid after any exit.
    pub fn finish(&mut self, ts_ns: u64, end: ConnEnd) -> io::Result<()> {
        self.stats.desynchronised = self.conns.desynchronised() as u64;
        self.conns.close_all(ts_ns, end, &mut self.events);
        let emitted = self.emit();
        let exported = match self.pcap.take() {
            Some((w, _)) => w
                .finish()
                .map_err(pcap_error)
                .and_then(|mut out| out.flush()),
            None => Ok(()),
        };
        let flushed = self.flush();
        emitted.and(exported).and(flushed)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.printer {
            Printer::Table(p) => p.flush(),
            Printer::Json(p) => p.flush(),
            Printer::Raw(p) => p.flush(),
            Printer::Silent => Ok(()),
        }?;
        if let Some((w, _)) = self.pcap.as_mut() {
            w.flush().map_err(pcap_error)?;
        }
        Ok(())
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn emit(&mut self) -> io::Result<()> {
        let events = std::mem::take(&mut self.events);
        for (info, event) in events {
            if let CallEventKind::End {
                method,
                status,
                latency_ns,
                ..
            } = &event.kind
            {
                self.stats.call_ended(
                    method.as_ref().map(|m| &*m.name),
                    info.protocol == "http1",
                    status.code,
                    *latency_ns,
                );
            }
            if self.done() {
                continue;
            }
            let Some(row) = self.rows.row(&info, event) else {
                continue;
            };
            if !self.filter.accepts(&row) {
                continue;
            }
            match &mut self.printer {
                Printer::Table(p) => {
                    let body = render_body(&row, &self.schema, &self.opts, false);
                    p.row(&row, &body)?;
                }
                Printer::Json(p) => {
                    let body = render_body(&row, &self.schema, &self.opts, true);
                    let headers = self.rows.take_headers(&row);
                    p.row(&row, body, headers)?;
                }
                Printer::Raw(_) | Printer::Silent => {}
            }
            self.stats.rows += 1;
        }
        Ok(())
    }
}
