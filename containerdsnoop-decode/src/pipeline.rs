//! The pure pipeline from captured records to sinks: reassembly, the connection table,
//! protocol decoders, rows, the filter and the `-n` limit, each applied once, for every sink.
//! The live capture, capture files and tests all push [`Chunk`]s through the same code.

use std::io;

use crate::{
    output::filter::Filter,
    output::rows::RowBuilder,
    output::sink::{Record, Renderer, Sink},
    protocol::{
        Protocol,
        call::{CallEvent, CallEventKind, ConnEnd},
    },
    record::Chunk,
    stats::Stats,
    stream::conn::{ConnInfo, ConnTable},
    stream::reassembly::{Piece, Reassembler},
};

/// What the pipeline hands its sinks, and what `-n` counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unit {
    /// Decode: sinks get decoded rows, and records with their connection (`-n` counts rows).
    #[default]
    Rows,
    /// `--raw`: nothing is decoded; sinks get records only (`-n` counts records).
    Records,
}

/// Which records and rows reach the sinks, and when to stop.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub unit: Unit,
    pub filter: Filter,
    /// Stop after this many units (`-n`).
    pub limit: Option<u64>,
}

pub struct Pipeline {
    reassembler: Reassembler,
    conns: ConnTable,
    rows: RowBuilder,
    render: Renderer,
    plan: Plan,
    sinks: Vec<Box<dyn Sink>>,
    pub stats: Stats,
    pieces: Vec<Piece>,
    events: Vec<(ConnInfo, CallEvent)>,
}

impl Pipeline {
    pub fn new(render: Renderer, plan: Plan, sinks: Vec<Box<dyn Sink>>) -> Self {
        Pipeline {
            reassembler: Reassembler::default(),
            conns: ConnTable::default(),
            rows: RowBuilder::new(sinks.iter().any(|s| s.wants_headers())),
            render,
            plan,
            sinks,
            stats: Stats::default(),
            pieces: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Socket inodes of connections open before the tracer started (decoded as late joins).
    pub fn set_preexisting(&mut self, inodes: impl IntoIterator<Item = u64>) {
        self.conns.set_preexisting(inodes);
    }

    /// The connection of these socket identities ended (capture files see FIN/RST).
    pub fn close_connection(&mut self, ts_ns: u64, a: u64, b: u64) -> io::Result<()> {
        self.conns.close(ts_ns, a, b, &mut self.events);
        for sink in &mut self.sinks {
            sink.connection_closed(ts_ns, a, b)?;
        }
        self.emit()
    }

    /// Whether `-n` has been reached.
    pub fn done(&self) -> bool {
        self.plan.limit.is_some_and(|n| self.stats.rows >= n)
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
        if self.plan.unit == Unit::Records {
            if self.plan.filter.accepts_record(chunk, None) {
                let record = Record {
                    chunk,
                    pieces: &self.pieces,
                    conn: None,
                };
                deliver(&mut self.sinks, &record)?;
                self.stats.rows += 1;
            }
            return Ok(!self.done());
        }
        for piece in &self.pieces {
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
        // After decoding, so that the record goes out with its connection's protocol.
        let conn = self.conns.info_of(chunk);
        if self.plan.filter.accepts_record(chunk, conn) {
            let record = Record {
                chunk,
                pieces: &self.pieces,
                conn,
            };
            deliver(&mut self.sinks, &record)?;
        }
        self.stats.evicted_connections = self.conns.stats.evicted;
        self.emit()?;
        Ok(!self.done())
    }

    /// Bytes held by decoders and detection buffers (for memory limits and tests).
    pub fn buffered(&self) -> usize {
        self.conns.buffered()
    }

    /// Ends every open call (`end`: the tracer stops, or the capture file ended) and finishes
    /// every sink. Each sink is finished even when printing failed (a closed pipe), so that
    /// the pcap export is a valid file after any exit; the first error is returned.
    pub fn finish(&mut self, ts_ns: u64, end: ConnEnd) -> io::Result<()> {
        self.stats.desynchronised = self.conns.desynchronised() as u64;
        self.conns.close_all(ts_ns, end, &mut self.events);
        let mut result = self.emit();
        for sink in &mut self.sinks {
            let finished = sink.finish();
            result = result.and(finished);
        }
        result
    }

    pub fn flush(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.flush()?;
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
                    info.protocol == Some(Protocol::Http1),
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
            if !self.plan.filter.accepts(&row) {
                continue;
            }
            let headers = self.rows.take_headers(&row);
            for sink in &mut self.sinks {
                sink.row(&row, headers.as_deref(), &self.render)?;
            }
            self.stats.rows += 1;
        }
        Ok(())
    }
}

/// Hands one record to every sink.
fn deliver(sinks: &mut [Box<dyn Sink>], record: &Record<'_>) -> io::Result<()> {
    for sink in sinks {
        sink.record(record)?;
    }
    Ok(())
}
