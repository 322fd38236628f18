//! Counters a connection decoder keeps: what it decoded, what it could not, and what it dropped
//! to stay within its limits.

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
    /// Calls dropped from the stream table because it was full.
    pub evicted_streams: u64,
    pub decompress_failures: u64,
    /// Messages over the message size limit (reported as unavailable and skipped).
    pub oversize_messages: u64,
    pub messages: u64,
    pub calls_started: u64,
    pub calls_ended: u64,
    /// Frames for streams no call is tracked for (already ended, evicted, or never seen).
    pub orphan_frames: u64,
    /// Directions whose frame boundaries were found again (late join or after a desync).
    pub resyncs: u64,
    /// CONTINUATION frames skipped after a resync because their HEADERS was not seen.
    pub skipped_continuations: u64,
    /// DATA frames skipped because they continue a message whose start was not seen.
    pub skipped_data_frames: u64,
    /// Calls taken up mid-call because they started before decoding did.
    pub adopted_calls: u64,
    /// Calls whose method was not seen but inferred (shown marked as inferred).
    pub inferred_calls: u64,
    /// Calls whose method was neither seen nor inferred.
    pub uninferred_calls: u64,
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
        self.evicted_streams += o.evicted_streams;
        self.decompress_failures += o.decompress_failures;
        self.oversize_messages += o.oversize_messages;
        self.messages += o.messages;
        self.calls_started += o.calls_started;
        self.calls_ended += o.calls_ended;
        self.orphan_frames += o.orphan_frames;
        self.resyncs += o.resyncs;
        self.skipped_continuations += o.skipped_continuations;
        self.skipped_data_frames += o.skipped_data_frames;
        self.adopted_calls += o.adopted_calls;
        self.inferred_calls += o.inferred_calls;
        self.uninferred_calls += o.uninferred_calls;
    }
}
