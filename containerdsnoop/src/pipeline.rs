//! The pure pipeline from captured records to printed rows: reassembly, the connection table,
//! protocol decoders, rows, filters and the chosen printer. The live capture, offline files and
//! tests all push [`Chunk`]s through the same code.

use std::io::{self, Write};

use crate::{
    call::{CallEvent, CallEventKind},
    conn::{ConnInfo, ConnTable},
    filter::Filter,
    reassembly::{Piece, Reassembler},
    render::{json::JsonPrinter, raw::RawPrinter, table::TablePrinter},
    rows::{RowBuilder, render_body},
    schema::{RenderOptions, Schema},
    stats::Stats,
    wire::Chunk,
};

/// Where rows go.
pub enum Printer {
    Table(TablePrinter<Box<dyn Write>>),
    Json(JsonPrinter<Box<dyn Write>>),
    Raw(RawPrinter<Box<dyn Write>>),
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
            rows: RowBuilder::default(),
            filter,
            schema,
            opts,
            printer,
            stats: Stats::default(),
            limit,
            pieces: Vec::new(),
            events: Vec::new(),
        }
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
                Piece::Joined { .. } | Piece::Overlap { .. } => {}
            }
        }
        self.pieces = pieces;
        self.stats.evicted_connections = self.conns.stats.evicted;
        self.emit()?;
        Ok(!self.done())
    }

    /// Ends every open call (the tracer stops) and flushes.
    pub fn finish(&mut self, ts_ns: u64) -> io::Result<()> {
        self.stats.desynchronised = self.conns.desynchronised() as u64;
        self.conns.close_all(ts_ns, &mut self.events);
        self.emit()?;
        self.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.printer {
            Printer::Table(p) => p.flush(),
            Printer::Json(p) => p.flush(),
            Printer::Raw(p) => p.flush(),
        }
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
                self.stats
                    .call_ended(method.as_ref().map(|m| &*m.name), status.code, *latency_ns);
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
                Printer::Raw(_) => {}
            }
            self.stats.rows += 1;
        }
        Ok(())
    }
}
