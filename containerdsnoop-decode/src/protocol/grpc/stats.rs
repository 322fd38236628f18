//! Counters the gRPC layer keeps per connection: calls and messages decoded, what could not be,
//! and what was dropped to stay within its limits. Frame-level counters are the transport's
//! (`http2::Stats`).

/// Per-connection call counters; `add` folds connections into a process-wide total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
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
    /// DATA frames skipped because they continue a message whose start was not seen.
    pub skipped_data_frames: u64,
    /// Calls taken up mid-call because they started before decoding did.
    pub adopted_calls: u64,
    /// Calls whose method was not seen but inferred (shown marked as inferred).
    pub inferred_calls: u64,
    /// Calls whose method was neither seen nor inferred.
    pub uninferred_calls: u64,
}

impl CallStats {
    pub fn add(&mut self, o: &CallStats) {
        self.evicted_streams += o.evicted_streams;
        self.decompress_failures += o.decompress_failures;
        self.oversize_messages += o.oversize_messages;
        self.messages += o.messages;
        self.calls_started += o.calls_started;
        self.calls_ended += o.calls_ended;
        self.orphan_frames += o.orphan_frames;
        self.skipped_data_frames += o.skipped_data_frames;
        self.adopted_calls += o.adopted_calls;
        self.inferred_calls += o.inferred_calls;
        self.uninferred_calls += o.uninferred_calls;
    }
}

/// Both layers' counters of one gRPC-over-HTTP/2 connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub http2: crate::protocol::http2::Stats,
    pub calls: CallStats,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.http2.add(&o.http2);
        self.calls.add(&o.calls);
    }
}
