//! Response frames that arrive before their call's request headers, held until those come.
//!
//! The tracer records each send when the sender's kernel call returns, so two processes'
//! records reach the decoder in the order their sends *finished*. A client whose CPU is taken
//! away (another task, a busy hypervisor) right after it wrote a request can be recorded after
//! the server's answer: most often a trailers-only `Unimplemented` or `NotFound`, which needs no
//! work from the server. On a connection decoded from its start, a response on a client stream
//! id above every one opened so far can only be that; it is held (bounded) and replayed right
//! after the request headers open the call, instead of being dropped as an orphan frame.

use std::collections::BTreeMap;

use crate::protocol::http2::Origin;
use crate::protocol::http2::hpack::HeaderList;

/// Most streams with response frames held at once per connection.
pub const MAX_EARLY_STREAMS: usize = 8;
/// Most DATA bytes held across those streams.
pub const MAX_EARLY_BYTES: usize = 64 * 1024;

/// One held response frame, replayed as it came.
#[derive(Debug)]
pub enum EarlyFrame {
    Headers {
        at: Origin,
        list: HeaderList,
        end_stream: bool,
    },
    Data {
        at: Origin,
        bytes: Vec<u8>,
        end_stream: bool,
    },
}

/// The held frames of one connection, by stream.
#[derive(Debug, Default)]
pub struct EarlyResponses {
    streams: BTreeMap<u32, Vec<EarlyFrame>>,
    bytes: usize,
}

impl EarlyResponses {
    /// Holds `frame` for `stream`. Returns how many frames were given up to stay in bounds
    /// (the oldest stream's, or this one when it alone is over): the caller counts them as
    /// orphans.
    pub fn hold(&mut self, stream: u32, frame: EarlyFrame) -> u64 {
        let len = match &frame {
            EarlyFrame::Data { bytes, .. } => bytes.len(),
            EarlyFrame::Headers { .. } => 0,
        };
        let mut dropped = 0;
        if !self.streams.contains_key(&stream) && self.streams.len() >= MAX_EARLY_STREAMS {
            dropped += self.drop_oldest();
        }
        while self.bytes + len > MAX_EARLY_BYTES && !self.streams.is_empty() {
            dropped += self.drop_oldest();
        }
        if self.bytes + len > MAX_EARLY_BYTES {
            return dropped + 1;
        }
        self.bytes += len;
        self.streams.entry(stream).or_default().push(frame);
        dropped
    }

    /// Whether frames of `stream` are held (later frames of it must be held too, in order).
    pub fn holds(&self, stream: u32) -> bool {
        self.streams.contains_key(&stream)
    }

    /// The held frames of `stream`, in arrival order, no longer held.
    pub fn take(&mut self, stream: u32) -> Vec<EarlyFrame> {
        let frames = self.streams.remove(&stream).unwrap_or_default();
        self.bytes -= frames
            .iter()
            .map(|f| match f {
                EarlyFrame::Data { bytes, .. } => bytes.len(),
                EarlyFrame::Headers { .. } => 0,
            })
            .sum::<usize>();
        frames
    }

    /// Gives up everything (the connection ended, or its request direction lost sync).
    /// Returns the number of frames dropped.
    pub fn clear(&mut self) -> u64 {
        let n = self.streams.values().map(Vec::len).sum::<usize>() as u64;
        self.streams.clear();
        self.bytes = 0;
        n
    }

    fn drop_oldest(&mut self) -> u64 {
        match self.streams.keys().next().copied() {
            Some(oldest) => self.take(oldest).len() as u64,
            None => 0,
        }
    }
}
