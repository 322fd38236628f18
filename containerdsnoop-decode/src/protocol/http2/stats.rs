//! Counters the HTTP/2 transport keeps: bytes and frames decoded, what could not be, and how
//! often a direction lost and found its frame boundaries. Call-level counters belong to the
//! protocol above (gRPC: `grpc::CallStats`).

/// Per-connection counters; `add` folds connections into a process-wide total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes fed, per direction summed.
    pub bytes: u64,
    /// Bytes ignored because their direction was desynchronised.
    pub bytes_skipped: u64,
    pub frames: u64,
    /// Extension frames skipped.
    pub unknown_frames: u64,
    pub header_blocks: u64,
    /// Directions marked desynchronised (protocol error, HPACK error or lost bytes).
    pub desyncs: u64,
    /// `gap` calls and the bytes they reported lost.
    pub gaps: u64,
    pub lost_bytes: u64,
    pub hpack_errors: u64,
    /// Header lists cut at the header-list limit.
    pub truncated_header_lists: u64,
    /// Stream frames and header blocks dropped because which side is the client was not known
    /// yet (late join before the first header block that shows it).
    pub orphan_frames: u64,
    /// Directions whose frame boundaries were found again (late join or after a desync).
    pub resyncs: u64,
    /// CONTINUATION frames skipped after a resync because their HEADERS was not seen.
    pub skipped_continuations: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.bytes += o.bytes;
        self.bytes_skipped += o.bytes_skipped;
        self.frames += o.frames;
        self.unknown_frames += o.unknown_frames;
        self.header_blocks += o.header_blocks;
        self.desyncs += o.desyncs;
        self.gaps += o.gaps;
        self.lost_bytes += o.lost_bytes;
        self.hpack_errors += o.hpack_errors;
        self.truncated_header_lists += o.truncated_header_lists;
        self.orphan_frames += o.orphan_frames;
        self.resyncs += o.resyncs;
        self.skipped_continuations += o.skipped_continuations;
    }
}
