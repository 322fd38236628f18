//! The default table: `TIMESTAMP COMM PID TID PEER TYPE STREAM METHOD MESSAGE`, one line per
//! row, MESSAGE cut to the terminal width when stdout is a terminal (`-l` never cuts).

use std::{
    fmt::Write as _,
    io::{self, Write},
};

use super::{
    rows::{Rendered, Row},
    sink::{Headers, Renderer, Sink},
    time::{Clock, HmsCache},
};
use crate::escape::{ellipsize, escape_str, push_escaped};

pub const HEADER: &str = "TIMESTAMP       COMM            PID     TID     PEER    TYPE STREAM METHOD                                               MESSAGE";
const METHOD_WIDTH: usize = 52;

pub struct TablePrinter<W: Write> {
    out: W,
    clock: Clock,
    /// Total line width to fit, or None to never cut.
    width: Option<usize>,
    header_done: bool,
    /// The line being built, and its MESSAGE (reused: no allocation per row once warm).
    line: String,
    message: String,
    hms: HmsCache,
    /// `-C`: `CONTAINER` and `PEER_CONTAINER` columns after `PEER`.
    containers: bool,
}

/// Width of each `-C` column.
const CONTAINER_WIDTH: usize = 24;

/// Pads what was written to `line` since `start` with spaces to `width` characters (as
/// `{:<width$}` would), then adds the column separator.
fn pad_column(line: &mut String, start: usize, width: usize) {
    let written = line[start..].chars().count();
    for _ in written..width {
        line.push(' ');
    }
    line.push(' ');
}

/// A pid column: 0 means unknown (no SO_PEERCRED on datagram sockets, no process in offline
/// captures).
fn push_pid(line: &mut String, pid: u32) {
    let start = line.len();
    if pid == 0 {
        line.push('-');
    } else {
        let _ = write!(line, "{pid}");
    }
    pad_column(line, start, 7);
}

impl<W: Write> TablePrinter<W> {
    pub fn new(out: W, clock: Clock, width: Option<usize>) -> Self {
        TablePrinter {
            out,
            clock,
            width,
            header_done: false,
            line: String::new(),
            message: String::new(),
            hms: HmsCache::default(),
            containers: false,
        }
    }

    /// `-C`: adds the `CONTAINER` and `PEER_CONTAINER` columns.
    pub fn with_containers(mut self) -> Self {
        self.containers = true;
        self
    }

    pub fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            if self.containers {
                let (left, right) = HEADER.split_at(HEADER.find("TYPE").unwrap_or(0));
                let w = CONTAINER_WIDTH;
                writeln!(
                    self.out,
                    "{left}{:<w$} {:<w$} {right}",
                    "CONTAINER", "PEER_CONTAINER"
                )?;
            } else {
                writeln!(self.out, "{HEADER}")?;
            }
        }
        Ok(())
    }

    /// Prints one row whose body is already rendered.
    pub fn print_row(&mut self, row: &Row, body: &Rendered) -> io::Result<()> {
        self.header()?;
        let line = &mut self.line;
        line.clear();
        let start = line.len();
        self.hms.push(&self.clock, row.ts_ns, line);
        pad_column(line, start, 15);
        let start = line.len();
        let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        if row.comm.len() <= 15 && row.comm.bytes().all(plain) {
            // Short printable ASCII (every comm but hostile ones): escaping would only copy it.
            line.push_str(&row.comm);
        } else {
            line.push_str(&ellipsize(&escape_str(&row.comm), 15));
        }
        pad_column(line, start, 15);
        push_pid(line, row.pid);
        push_pid(line, row.tid);
        push_pid(line, row.peer_pid);
        if self.containers {
            for c in [&row.container, &row.peer_container] {
                let start = line.len();
                match c {
                    Some(c) => line.push_str(&ellipsize(&escape_str(&c.label()), CONTAINER_WIDTH)),
                    None => line.push('-'),
                }
                pad_column(line, start, CONTAINER_WIDTH);
            }
        }
        let start = line.len();
        line.push_str(row.kind.as_str());
        pad_column(line, start, 4);
        let start = line.len();
        let _ = match row.index {
            Some(i) if i > 0 => write!(line, "{}#{}", row.stream, i),
            _ => write!(line, "{}", row.stream),
        };
        pad_column(line, start, 6);
        let start = line.len();
        match &row.method {
            Some(m) => {
                push_escaped(line, &m.name);
                if m.inferred {
                    line.push('?');
                }
            }
            None if row.kind == crate::output::rows::RowKind::Notice => line.push('-'),
            None => line.push('?'),
        }
        pad_column(line, start, METHOD_WIDTH);
        let message = &mut self.message;
        message.clear();
        if let Some(ns) = &row.namespace {
            message.push('[');
            push_escaped(message, ns);
            message.push_str("] ");
        }
        message.push_str(&body.text);
        match self.width {
            Some(w) => {
                let room = w.saturating_sub(line.chars().count()).max(10);
                line.push_str(&ellipsize(message, room));
            }
            None => line.push_str(message),
        }
        line.push('\n');
        self.out.write_all(line.as_bytes())
    }
}

impl<W: Write> Sink for TablePrinter<W> {
    fn row(&mut self, row: &Row, _headers: Option<&Headers>, render: &Renderer) -> io::Result<()> {
        let body = render.body(row, false);
        self.print_row(row, &body)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
