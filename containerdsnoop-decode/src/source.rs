//! Where records come from: the live ring buffer (implemented in the CLI crate, which owns
//! the kernel and tokio) or a capture file (`-r`, [`FileSource`]). Both yield the same
//! [`Event`]s in batches, so the one loop in `main` drives either into the pipeline.

use std::io::Read;

use crate::{
    pcap::{self, PcapReader},
    protocol::call::ConnEnd,
    record::Chunk,
    stats::Stats,
};

/// One thing a source saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A captured record.
    Chunk(Chunk),
    /// The connection of these socket identities (`Chunk::sock_id`/`peer_id`) ended.
    Closed {
        ts_ns: u64,
        sock_id: u64,
        peer_id: u64,
    },
}

/// What the caller should do after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// More may come: call again.
    More,
    /// A quiet moment (the live capture's half-second tick): flush buffered output, call again.
    Quiet,
    /// Nothing more will come; the batch just returned was the last.
    Ended,
}

/// A stream of records in batches.
pub trait Source {
    type Error;

    /// Appends the next events to `out` (possibly none). After an error the source is done:
    /// the events before it were delivered by earlier calls.
    fn next_batch(&mut self, out: &mut Vec<Event>) -> Result<Status, Self::Error>;

    /// When and why the calls still open at the end stop (the tracer stopped; the file ended).
    fn end(&self) -> (u64, ConnEnd);

    /// Adds what was lost before the pipeline saw it (ring-buffer drops, malformed records).
    fn account(&self, stats: &mut Stats);

    /// Takes back a batch the caller is done with (and leaves `done` empty), so that a
    /// source can reuse its chunks' buffers instead of allocating per record.
    fn recycle(&mut self, done: &mut Vec<Event>) {
        done.clear();
    }
}

/// Events per batch from a file: enough to amortise the loop, few enough to stay small.
const FILE_BATCH: usize = 1024;

/// `-r`: a pcap/pcapng file as a source.
pub struct FileSource<R: Read> {
    reader: PcapReader<R>,
    /// Timestamp of the last record, at which the calls still open when the file ends end.
    last_ts: u64,
    /// A read error met mid-batch, returned after the events before it.
    error: Option<pcap::Error>,
}

impl<R: Read> FileSource<R> {
    pub fn new(reader: PcapReader<R>) -> Self {
        FileSource {
            reader,
            last_ts: 0,
            error: None,
        }
    }
}

impl FileSource<pcap::reader::Input> {
    /// Opens `path`, or stdin for `-`.
    pub fn open(path: &str) -> Result<Self, pcap::Error> {
        Ok(FileSource::new(PcapReader::open(path)?))
    }
}

impl<R: Read> Source for FileSource<R> {
    type Error = pcap::Error;

    fn next_batch(&mut self, out: &mut Vec<Event>) -> Result<Status, pcap::Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for _ in 0..FILE_BATCH {
            match self.reader.next_event() {
                Some(Ok(pcap::Event::Chunk(chunk))) => {
                    self.last_ts = chunk.ts_ns;
                    out.push(Event::Chunk(chunk));
                }
                Some(Ok(pcap::Event::Closed {
                    ts_ns,
                    sock_id,
                    peer_id,
                    ..
                })) => out.push(Event::Closed {
                    ts_ns,
                    sock_id,
                    peer_id,
                }),
                Some(Err(e)) if out.is_empty() => return Err(e),
                Some(Err(e)) => {
                    self.error = Some(e);
                    return Ok(Status::More);
                }
                None => return Ok(Status::Ended),
            }
        }
        Ok(Status::More)
    }

    fn end(&self) -> (u64, ConnEnd) {
        (self.last_ts, ConnEnd::CaptureEnded)
    }

    /// A file loses nothing before the pipeline: what it lacks shows as gaps in its streams.
    fn account(&self, _stats: &mut Stats) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pcap/grpc_loopback.pcapng"
        );
        std::fs::read(path).expect("fixture")
    }

    fn drain<R: Read>(s: &mut FileSource<R>) -> (Vec<Event>, Option<pcap::Error>) {
        let mut all = Vec::new();
        loop {
            let mut batch = Vec::new();
            match s.next_batch(&mut batch) {
                Ok(status) => {
                    all.append(&mut batch);
                    if status == Status::Ended {
                        return (all, None);
                    }
                }
                Err(e) => return (all, Some(e)),
            }
        }
    }

    #[test]
    fn a_file_yields_its_records_and_ends_at_the_last_one() {
        let bytes = fixture();
        let mut s = FileSource::new(PcapReader::new(&bytes[..]).expect("pcapng"));
        let (events, err) = drain(&mut s);
        assert!(err.is_none());
        let last = events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Chunk(c) => Some(c.ts_ns),
                Event::Closed { .. } => None,
            })
            .expect("records");
        assert!(events.iter().any(|e| matches!(e, Event::Closed { .. })));
        assert_eq!(s.end(), (last, ConnEnd::CaptureEnded));
    }

    #[test]
    fn a_cut_file_yields_what_it_holds_then_the_error() {
        let bytes = fixture();
        let whole = drain(&mut FileSource::new(
            PcapReader::new(&bytes[..]).expect("pcapng"),
        ))
        .0;
        let cut = &bytes[..bytes.len() - 7];
        let (events, err) = drain(&mut FileSource::new(PcapReader::new(cut).expect("pcapng")));
        assert!(matches!(err, Some(pcap::Error::Truncated)), "{err:?}");
        let chunks = |v: &[Event]| v.iter().filter(|e| matches!(e, Event::Chunk(_))).count();
        assert!(chunks(&events) > 0 && chunks(&events) <= chunks(&whole));
    }
}
