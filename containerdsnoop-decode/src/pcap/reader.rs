//! `-r`: reads a pcap or pcapng capture of TCP traffic (or our own `-w` export) and yields the
//! [`Chunk`]s the live capture would have produced, so everything downstream (reassembler,
//! decoders, renderers) runs unchanged. Frames that are not TCP are counted and skipped; a
//! broken file yields everything before the break, then the error.

use std::io::{self, BufReader, Read};

use super::Error;
use super::file::CaptureFile;
use super::packet::{Skip, parse_frame};
use super::tcp::{TcpStats, TcpTracker};
use crate::record::Chunk;

pub use super::tcp::Event;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub frames: u64,
    /// IP but not TCP, or not IP at all.
    pub not_tcp: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// Frames whose headers are cut short or inconsistent.
    pub malformed: u64,
    /// Frames of link types this reader does not decode.
    pub unsupported_linktype: u64,
    /// pcapng blocks of types not read (statistics, name resolution, ...).
    pub skipped_blocks: u64,
    pub tcp: TcpStats,
}

pub struct PcapReader<R: Read> {
    file: CaptureFile<R>,
    tcp: TcpTracker,
    stats: ReaderStats,
    done: bool,
    error: Option<Error>,
}

/// The file or stdin `-r` names.
pub type Input = Box<dyn Read + Send>;

impl PcapReader<Input> {
    /// Opens `path`, or stdin for `-` (e.g. `tshark -w - | containerdsnoop -r -`).
    pub fn open(path: &str) -> Result<Self, Error> {
        let input: Input = if path == "-" {
            Box::new(BufReader::with_capacity(1 << 16, io::stdin()))
        } else {
            Box::new(BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(path)?,
            ))
        };
        PcapReader::new(input)
    }
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header; fails if `r` is not pcap or pcapng.
    pub fn new(r: R) -> Result<Self, Error> {
        Ok(PcapReader {
            file: CaptureFile::new(r)?,
            tcp: TcpTracker::default(),
            stats: ReaderStats::default(),
            done: false,
            error: None,
        })
    }

    pub fn stats(&self) -> ReaderStats {
        let mut s = self.stats;
        s.tcp = self.tcp.stats;
        s.skipped_blocks = self.file.skipped_blocks;
        s
    }

    /// Connections currently tracked (at most [`super::tcp::MAX_CONNECTIONS`]).
    pub fn tracked_connections(&self) -> usize {
        self.tcp.tracked()
    }

    /// Bytes held in reorder buffers (at most [`super::tcp::MAX_TOTAL_REORDER_BYTES`]).
    pub fn buffered_bytes(&self) -> usize {
        self.tcp.buffered()
    }

    /// The next chunk or connection end; `None` after the last (and after an error).
    pub fn next_event(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(ev) = self.tcp.pop() {
                return Some(Ok(ev));
            }
            if self.done {
                return self.error.take().map(Err);
            }
            match self.file.next_frame() {
                Ok(Some(frame)) => {
                    self.stats.frames += 1;
                    match parse_frame(frame.linktype, &frame.data) {
                        Ok(seg) => self.tcp.segment(&seg, frame.ts_ns, &frame.comments),
                        Err(Skip::NotTcp) => self.stats.not_tcp += 1,
                        Err(Skip::Fragment) => self.stats.fragments += 1,
                        Err(Skip::Malformed(_)) => self.stats.malformed += 1,
                        Err(Skip::Linktype(_)) => self.stats.unsupported_linktype += 1,
                    }
                }
                Ok(None) => {
                    self.tcp.finish();
                    self.done = true;
                }
                Err(e) => {
                    // Deliver what the intact part held, then the error.
                    self.tcp.finish();
                    self.done = true;
                    self.error = Some(e);
                }
            }
        }
    }

    /// The next chunk, skipping connection ends.
    pub fn next_chunk(&mut self) -> Option<Result<Chunk, Error>> {
        loop {
            match self.next_event()? {
                Ok(Event::Chunk(c)) => return Some(Ok(c)),
                Ok(Event::Closed { .. }) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<Chunk, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk()
    }
}
