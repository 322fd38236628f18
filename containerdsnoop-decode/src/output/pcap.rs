//! `-w`: the pcapng export as a sink. Every record that passes the filter goes to the file
//! under its connection's protocol port, timestamped in wall-clock time; connections the
//! capture saw end are closed (FIN), and the rest when the run ends. Packet comments name the
//! containers at both ends when the live capture knows them.

use std::io::{self, Write};

use super::{
    sink::{Record, Sink},
    time::Clock,
};
use crate::{
    attribution::Attribution,
    pcap::{self, ConnMeta, PcapWriter},
    protocol::Protocol,
};

/// Writes the records it is given to a [`PcapWriter`].
pub struct PcapSink<W: Write> {
    /// None once finished: the writer hands its output back when it completes the file.
    writer: Option<PcapWriter<W>>,
    /// Kernel timestamps to the wall-clock times a capture file carries.
    clock: Clock,
}

impl<W: Write> PcapSink<W> {
    pub fn new(writer: PcapWriter<W>, clock: Clock) -> Self {
        PcapSink {
            writer: Some(writer),
            clock,
        }
    }

    fn wall(&self, ts_ns: u64) -> u64 {
        self.clock.wall_ns(ts_ns).max(0) as u64
    }
}

/// An export failure as an I/O error of the same kind, so that a closed pipe (`-w - | head`)
/// stays a `BrokenPipe` all the way to `main`, which exits 0 for it.
pub fn export_error(e: pcap::Error) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("pcap export: {e}"))
}

impl<W: Write> Sink for PcapSink<W> {
    fn wants_record_containers(&self) -> bool {
        true
    }

    fn record(&mut self, record: &Record<'_>) -> io::Result<()> {
        let ts_ns = self.wall(record.chunk.ts_ns);
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut wall = record.chunk.clone();
        wall.ts_ns = ts_ns;
        // The writer fixes a connection's port at its first record: a connection still being
        // detected (or not decoded at all, with --raw) goes on the raw port for good.
        let protocol = record
            .conn
            .and_then(|c| c.protocol)
            .unwrap_or(Protocol::Raw);
        let meta = ConnMeta::from_chunk(&wall, protocol);
        let comment = |c: &Attribution| c.as_ref().map(|c| format!("{} ({})", c.label(), c.id));
        let containers = match record.containers {
            Some([mine, peer]) => [comment(mine), comment(peer)],
            None => [None, None],
        };
        w.record_attributed(&wall, record.pieces, &meta, containers)
            .map_err(export_error)
    }

    fn connection_closed(&mut self, ts_ns: u64, a: u64, b: u64) -> io::Result<()> {
        let ts = self.wall(ts_ns);
        match self.writer.as_mut() {
            Some(w) => w.close_conn(a, b, ts).map_err(export_error),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush().map_err(export_error),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.writer.take() {
            Some(w) => w.finish().map_err(export_error)?.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn regression_pcap_to_closed_pipe_keeps_broken_pipe() {
        // The writer's first act is the file header, so creating it already fails.
        let err = match PcapWriter::new(ClosedPipe) {
            Ok(_) => panic!("a closed pipe accepted the pcapng header"),
            Err(e) => export_error(e),
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert!(err.to_string().contains("pcap export"), "{err}");
    }
}
