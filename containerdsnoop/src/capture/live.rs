//! The live capture as a [`Source`]: a current-thread tokio runtime owned here waits on the
//! ring buffer, Ctrl-C, SIGTERM, `--duration` and the timers, and each call hands back one
//! drained batch of parsed records. The library's pipeline stays synchronous and tokio-free.

use std::time::Duration;

use anyhow::Context as _;
use containerdsnoop_decode::{
    escape::escape_str,
    protocol::call::ConnEnd,
    record::{self, Chunk, Parsed},
    source::{Event, Source, Status},
    stats::Stats,
};
use tokio::{
    runtime::Runtime,
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, Interval, MissedTickBehavior},
};

use super::{Capture, CaptureConfig};
use crate::selection::{RESCAN_INTERVAL, Selection};

/// Output is flushed at least this often when nothing else flushes it (stdout into a pipe).
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// The programs wake the reader only when the ring fills up (see emit.rs WAKEUP_BACKLOG), so
/// that a busy traced workload is not slowed by a wakeup per record; it is drained this often.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// Records from the kernel until a signal or the deadline.
pub struct LiveSource {
    runtime: Runtime,
    capture: Capture,
    sigint: Signal,
    sigterm: Signal,
    deadline: Option<Instant>,
    flush_tick: Interval,
    drain_tick: Interval,
    /// The selected socket files, re-read every [`RESCAN_INTERVAL`] so that a re-created
    /// socket is followed; what changed is said on stderr.
    selection: Selection,
    rescan_tick: Interval,
    /// Turns ring records into events, reusing the chunks of earlier batches.
    records: RecordParser,
    /// The ring buffer's size, for the summary (its memory is reported apart).
    ring_bytes: u32,
    ended: bool,
}

/// Spare chunks kept for reuse: at most this many bytes of chunks and their buffers (a burst
/// of large records leaves no large pool behind; memory stays bounded).
const SPARE_BYTES: usize = 4 << 20;

/// Memory a spare chunk holds.
fn chunk_bytes(c: &Chunk) -> usize {
    std::mem::size_of::<Chunk>()
        + c.data.capacity()
        + c.comm.capacity()
        + c.process_comm.capacity()
        + c.path.capacity()
}

/// Ring records -> [`Event`]s, parsed straight from the ring into recycled [`Chunk`]s: no
/// allocation per record once the pool is warm.
struct RecordParser {
    /// A per-run key for masking kernel pointers (see `record::mask_pointer`).
    pointer_key: u64,
    /// The tracer's own pid: what runtimes send it is not traced.
    own_tgid: u32,
    malformed: u64,
    spare: Vec<Chunk>,
    spare_bytes: usize,
}

impl RecordParser {
    fn parse(&mut self, raw: &[u8], out: &mut Vec<Event>) {
        let mut chunk = match self.spare.pop() {
            Some(c) => {
                self.spare_bytes -= chunk_bytes(&c);
                c
            }
            None => Chunk::default(),
        };
        match record::parse_into(raw, self.pointer_key, &mut chunk) {
            // A connection end (close, shutdown, exit): its open calls end now.
            Ok(Parsed::Closed(closed)) => {
                if closed.ends_connection() {
                    out.push(Event::Closed {
                        ts_ns: closed.ts_ns,
                        sock_id: closed.sock_id,
                        peer_id: closed.peer_id,
                    });
                }
                self.keep(chunk);
            }
            // Runtimes answering the tracer's own container lookups (the kernel skips only
            // what the tracer sends).
            Ok(Parsed::Chunk) if chunk.peer_tgid == self.own_tgid => self.keep(chunk),
            Ok(Parsed::Chunk) => out.push(Event::Chunk(chunk)),
            // One bad record is counted and skipped.
            Err(_) => {
                self.malformed += 1;
                self.keep(chunk);
            }
        }
    }

    fn keep(&mut self, chunk: Chunk) {
        let size = chunk_bytes(&chunk);
        if self.spare_bytes + size <= SPARE_BYTES {
            self.spare_bytes += size;
            self.spare.push(chunk);
        }
    }
}

/// Why the wait ended.
enum Wake {
    Records,
    Rescan,
    Flush,
    Stop,
}

impl LiveSource {
    /// Loads and attaches the programs; records flow from here on.
    pub fn start(
        config: &CaptureConfig,
        duration: Option<Duration>,
        selection: Selection,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        // The ring buffer's AsyncFd, the signals and the timers register with this runtime.
        let _guard = runtime.enter();
        let capture = Capture::start(config)?;
        let sigint = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let sigterm = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let mut flush_tick = tokio::time::interval(FLUSH_EVERY);
        flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut rescan_tick = tokio::time::interval(RESCAN_INTERVAL);
        rescan_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(LiveSource {
            selection,
            rescan_tick,
            deadline: duration.map(|d| Instant::now() + d),
            runtime,
            capture,
            sigint,
            sigterm,
            flush_tick,
            drain_tick,
            records: RecordParser {
                pointer_key: random_key(),
                own_tgid: std::process::id(),
                malformed: 0,
                spare: Vec::new(),
                spare_bytes: 0,
            },
            ring_bytes: config.ring_bytes,
            ended: false,
        })
    }

    /// The backend that was attached.
    pub fn capture(&self) -> &Capture {
        &self.capture
    }
}

impl Source for LiveSource {
    type Error = anyhow::Error;

    fn next_batch(&mut self, out: &mut Vec<Event>) -> anyhow::Result<Status> {
        if self.ended {
            return Ok(Status::Ended);
        }
        let LiveSource {
            runtime,
            capture,
            sigint,
            sigterm,
            deadline,
            flush_tick,
            drain_tick,
            rescan_tick,
            records,
            ..
        } = self;
        let wake = runtime.block_on(async {
            let deadline = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(*at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = capture.ring.read(|raw| records.parse(raw, out)) => r.map(|()| Wake::Records),
                _ = sigint.recv() => Ok(Wake::Stop),
                _ = sigterm.recv() => Ok(Wake::Stop),
                _ = deadline => Ok(Wake::Stop),
                _ = flush_tick.tick() => Ok(Wake::Flush),
                _ = drain_tick.tick() => {
                    capture.ring.read_now(|raw| records.parse(raw, out));
                    Ok(Wake::Records)
                }
                _ = rescan_tick.tick() => Ok(Wake::Rescan),
            }
        })?;
        if matches!(wake, Wake::Rescan) {
            for line in self.selection.rescan(&mut self.capture) {
                eprintln!("containerdsnoop: {}", escape_str(&line));
            }
        }
        if matches!(wake, Wake::Stop) {
            // What the kernel wrote before the signal still counts.
            let records = &mut self.records;
            self.capture.ring.read_now(|raw| records.parse(raw, out));
            self.ended = true;
        }
        Ok(match wake {
            Wake::Stop => Status::Ended,
            Wake::Flush => Status::Quiet,
            Wake::Records | Wake::Rescan => Status::More,
        })
    }

    fn end(&self) -> (u64, ConnEnd) {
        (monotonic_now_ns(), ConnEnd::TracerStopped)
    }

    fn recycle(&mut self, done: &mut Vec<Event>) {
        for event in done.drain(..) {
            if let Event::Chunk(chunk) = event {
                self.records.keep(chunk);
            }
        }
    }

    fn account(&self, stats: &mut Stats) {
        stats.malformed_records += self.records.malformed;
        stats.ring_bytes = u64::from(self.ring_bytes);
        if let Ok(drops) = self.capture.drop_counters() {
            stats.lost_records = drops.lost_records;
            stats.lost_bytes = drops.lost_bytes;
            stats.missed_entries = drops.missed_entries;
            stats.connection_ends = drops.closes;
            stats.lost_connection_ends = drops.lost_closes;
            stats.exit_scans_cut = drops.exit_scans_cut;
        }
    }
}

/// A per-run key for masking kernel pointers (see `record::mask_pointer`).
fn random_key() -> u64 {
    let mut key = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the array we own.
    let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(key)
    } else {
        monotonic_now_ns().rotate_left(17)
    }
}

/// CLOCK_MONOTONIC in ns: the clock of the kernel's record timestamps.
fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
