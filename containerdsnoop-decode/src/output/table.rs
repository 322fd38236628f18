//! The default table: `TIMESTAMP COMM PID TID PEER TYPE STREAM METHOD MESSAGE`, one line per
//! row, MESSAGE cut to the terminal width when stdout is a terminal (`-l` never cuts).

use std::io::{self, Write};

use super::{
    rows::{Rendered, Row},
    sink::{Headers, Renderer, Sink},
    time::Clock,
};
use crate::escape::{ellipsize, escape_str};

pub const HEADER: &str = "TIMESTAMP       COMM            PID     TID     PEER    TYPE STREAM METHOD                                               MESSAGE";
const METHOD_WIDTH: usize = 52;

pub struct TablePrinter<W: Write> {
    out: W,
    clock: Clock,
    /// Total line width to fit, or None to never cut.
    width: Option<usize>,
    header_done: bool,
    /// `-C`: `CONTAINER` and `PEER_CONTAINER` columns after `PEER`.
    containers: bool,
}

/// Width of each `-C` column.
const CONTAINER_WIDTH: usize = 24;

impl<W: Write> TablePrinter<W> {
    pub fn new(out: W, clock: Clock, width: Option<usize>) -> Self {
        TablePrinter {
            out,
            clock,
            width,
            header_done: false,
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
        let method = match &row.method {
            Some(m) if m.inferred => format!("{}?", escape_str(&m.name)),
            Some(m) => escape_str(&m.name),
            None if row.kind == crate::output::rows::RowKind::Notice => "-".to_string(),
            None => "?".to_string(),
        };
        let stream = match row.index {
            Some(i) if i > 0 => format!("{}#{}", row.stream, i),
            _ => row.stream.to_string(),
        };
        let mut message = String::new();
        if let Some(ns) = &row.namespace {
            message.push_str(&format!("[{}] ", escape_str(ns)));
        }
        message.push_str(&body.text);
        // 0 means unknown: no SO_PEERCRED on datagram sockets, no process in offline captures.
        let pid_or_dash = |p: u32| {
            if p == 0 {
                "-".to_string()
            } else {
                p.to_string()
            }
        };
        let containers = if self.containers {
            let cell = |c: &crate::container::Attribution| {
                let text = c.as_ref().map_or_else(|| "-".to_string(), |c| c.label());
                format!(
                    "{:<w$} ",
                    ellipsize(&escape_str(&text), CONTAINER_WIDTH),
                    w = CONTAINER_WIDTH
                )
            };
            cell(&row.container) + &cell(&row.peer_container)
        } else {
            String::new()
        };
        let prefix = format!(
            "{:<15} {:<15} {:<7} {:<7} {:<7} {containers}{:<4} {:<6} {:<mw$} ",
            self.clock.hms(row.ts_ns),
            ellipsize(&escape_str(&row.comm), 15),
            pid_or_dash(row.pid),
            pid_or_dash(row.tid),
            pid_or_dash(row.peer_pid),
            row.kind.as_str(),
            stream,
            method,
            mw = METHOD_WIDTH,
        );
        let message = match self.width {
            Some(w) => {
                let room = w.saturating_sub(prefix.chars().count()).max(10);
                ellipsize(&message, room)
            }
            None => message,
        };
        writeln!(self.out, "{prefix}{message}")
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
