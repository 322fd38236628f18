//! The one interface between the pipeline and every output: the table, JSON Lines, raw records
//! and the pcapng export all implement [`Sink`], and the pipeline pushes into however many the
//! configuration chose (`-w FILE` is a sink beside the printer; `-w -` is the only sink).
//!
//! What a sink receives, and what it can rely on:
//!
//! - [`Sink::record`]: every captured record that passed the filter's process predicates
//!   (`-p`, `-c`), with what the reassembler said about it and, when the pipeline decodes, its
//!   connection (whose protocol picks the export port). With `--raw` nothing is decoded and
//!   `conn` is None.
//! - [`Sink::row`]: every decoded row that passed the whole filter (`-p`, `-c`, `-m`, `-t`),
//!   with a [`Renderer`] to decode its body on demand (the table never pays for JSON, the
//!   pcap export for neither) and the call's request headers on its first request row when
//!   some sink [`wants_headers`](Sink::wants_headers).
//! - [`Sink::connection_closed`]: a connection ended (capture files see FIN/RST).
//! - [`Sink::flush`] at quiet moments, and [`Sink::finish`] once at the end, called on every
//!   sink even when another failed, so that an export is complete after any exit.
//!
//! Filtering and the `-n` limit happen once, in the pipeline, for every sink: a sink never
//! sees the engine's internals and never decides what to drop.

use std::io;

use crate::{
    attribution::Attribution,
    output::rows::{Rendered, Row, render_body},
    record::Chunk,
    schema::{RenderOptions, Schema},
    stream::{conn::ConnInfo, reassembly::Piece},
};

/// One captured record as the pipeline hands it to sinks.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    pub chunk: &'a Chunk,
    /// What the reassembler said about the record: its new bytes, holes before them, joins.
    pub pieces: &'a [Piece],
    /// The record's connection after decoding it; None with `--raw` (nothing is decoded) or
    /// when the connection is already gone.
    pub conn: Option<&'a ConnInfo>,
    /// The sender's and the peer's containers, when the pipeline has an attributor.
    pub containers: Option<&'a [Attribution; 2]>,
}

/// Request headers of a call, name and value (None: unknown after a late join).
pub type Headers = [(String, Option<String>)];

/// Decodes message bodies for the sinks that show them: the schema and its options.
pub struct Renderer {
    schema: Schema,
    opts: RenderOptions,
}

impl Renderer {
    pub fn new(schema: Schema, opts: RenderOptions) -> Self {
        Renderer { schema, opts }
    }

    /// `row`'s body (or status, for END rows); the JSON value only when `json` is asked for.
    pub fn body(&self, row: &Row, json: bool) -> Rendered {
        render_body(row, &self.schema, &self.opts, json)
    }
}

/// An output. See the module documentation for what each call carries.
pub trait Sink {
    /// Whether the pipeline should keep each call's request headers for its first request
    /// row (JSON shows them; holding them costs memory, so by default nobody asks).
    fn wants_headers(&self) -> bool {
        false
    }

    /// Whether [`Record::containers`] is used: attributing each record's two ends costs two
    /// lookups a record, so the pipeline does it only for sinks (and filters) that need it.
    fn wants_record_containers(&self) -> bool {
        false
    }

    /// One captured record. Sinks that show only rows ignore records.
    fn record(&mut self, _record: &Record<'_>) -> io::Result<()> {
        Ok(())
    }

    /// One decoded row. Sinks that show only records ignore rows.
    fn row(
        &mut self,
        _row: &Row,
        _headers: Option<&Headers>,
        _render: &Renderer,
    ) -> io::Result<()> {
        Ok(())
    }

    /// The connection of socket identities `a` and `b` ended at `ts_ns` (either order).
    fn connection_closed(&mut self, _ts_ns: u64, _a: u64, _b: u64) -> io::Result<()> {
        Ok(())
    }

    /// Pushes buffered output out (a terminal wants every batch; a pipe every half second).
    fn flush(&mut self) -> io::Result<()>;

    /// The run is over: complete the output (the pcap export closes its connections) and
    /// flush. Called once; nothing is pushed after it.
    fn finish(&mut self) -> io::Result<()>;
}
