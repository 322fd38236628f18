//! One half (direction) of a call and its bytes becoming message bodies: gRPC messages out of
//! the deframer (decompressed, or reported unavailable with the reason), non-gRPC bodies
//! delivered whole at END_STREAM, and what a loss or the connection's buffer limit cuts. Owns
//! [`Half`]; the bounds and counters it obeys are handed in. Emitting the bodies as events (and
//! scoring them for method inference) is the caller's (`shared.rs`).

use super::compress::{self, Encoding};
use super::framing::{Deframed, Deframer};
use super::limits::CallLimits;
use super::stats::CallStats;
use crate::protocol::call::Body;

/// One direction of a call.
#[derive(Debug)]
pub(super) struct Half {
    pub(super) deframer: Deframer,
    pub(super) encoding: Encoding,
    pub(super) ended: bool,
    /// Non-gRPC body bytes, up to the message limit; `raw_len` counts them all.
    raw: Vec<u8>,
    raw_len: u64,
    /// The raw body was dropped to respect the connection's buffer limit.
    raw_dropped: bool,
    /// Bytes of this half were lost (or it started before decoding did): DATA frames are
    /// skipped until one starts a message (`framing::starts_messages`).
    pub(super) seek: bool,
}

impl Half {
    pub(super) fn new(max_message: usize) -> Half {
        Half {
            deframer: Deframer::new(max_message),
            encoding: Encoding::Identity,
            ended: false,
            raw: Vec::new(),
            raw_len: 0,
            raw_dropped: false,
            seek: false,
        }
    }

    /// Bytes held in an incomplete message or body.
    pub(super) fn held(&self) -> usize {
        self.deframer.held() + self.raw.len()
    }

    /// A DATA payload: the bodies of the gRPC messages it completes (`grpc`), or nothing while
    /// a non-gRPC body is collected.
    pub(super) fn deliver(
        &mut self,
        grpc: bool,
        data: &[u8],
        limits: &CallLimits,
        stats: &mut CallStats,
    ) -> Vec<Body> {
        if grpc {
            let mut pieces = Vec::new();
            self.deframer.push(data, &mut pieces);
            return pieces
                .into_iter()
                .map(|piece| self.body(piece, limits, stats))
                .collect();
        }
        self.raw_len += data.len() as u64;
        if self.raw_len <= limits.max_message as u64 {
            self.raw.extend_from_slice(data);
        } else {
            // Over the limit: stop keeping bytes, only count them.
            self.raw = Vec::new();
        }
        Vec::new()
    }

    /// END_STREAM on this half: a message cut short, or a non-gRPC body delivered whole.
    pub(super) fn finish(
        &mut self,
        grpc: bool,
        limits: &CallLimits,
        stats: &mut CallStats,
    ) -> Option<Body> {
        let max_message = limits.max_message;
        if grpc {
            self.deframer
                .partial()
                .map(|(claimed, seen)| Body::Unavailable {
                    reason: format!("stream ended inside a message ({seen} bytes seen)"),
                    len: claimed,
                })
        } else if self.raw_len == 0 {
            None
        } else if self.raw_len > max_message as u64 || self.raw_dropped {
            stats.oversize_messages += 1;
            Some(Body::Unavailable {
                reason: format!("body exceeds the {max_message}-byte limit"),
                len: self.raw_len,
            })
        } else {
            Some(Body::Raw(std::mem::take(&mut self.raw)))
        }
    }

    /// Too much is waiting for the rest of its message on this connection: gives up this
    /// half's message (the one that just grew) rather than grow without bound. Returns it, shown
    /// unavailable, if a gRPC message was under way.
    pub(super) fn abandon(&mut self, limits: &CallLimits, stats: &mut CallStats) -> Option<Body> {
        let max = limits.max_buffered;
        if let Some(len) = self.deframer.abandon() {
            stats.oversize_messages += 1;
            let reason = format!("connection buffer limit of {max} bytes exceeded");
            return Some(Body::Unavailable { reason, len });
        }
        if !self.raw.is_empty() {
            self.raw = Vec::new();
            self.raw_dropped = true;
        }
        None
    }

    /// This half's bytes stop being continuous (a loss, a late join): framing resumes at the
    /// next DATA frame that starts a message. Returns None if it was not being framed (ended,
    /// or seeking already), else the message cut (`(claimed, seen)` bytes), if any.
    pub(super) fn restart(&mut self, max_message: usize) -> Option<Option<(u64, u64)>> {
        if self.ended || self.seek {
            return None;
        }
        let partial = self.deframer.partial();
        self.deframer = Deframer::new(max_message);
        self.seek = true;
        if !self.raw.is_empty() {
            self.raw = Vec::new();
            self.raw_dropped = true;
        }
        Some(partial)
    }

    /// The body of one message the deframer cut.
    fn body(&self, piece: Deframed, limits: &CallLimits, stats: &mut CallStats) -> Body {
        match piece {
            Deframed::Message {
                compressed: false,
                data,
            } => Body::Protobuf(data),
            Deframed::Message {
                compressed: true,
                data,
            } => match compress::decompress(&self.encoding, &data, limits.max_decompressed) {
                Ok(plain) => Body::Protobuf(plain),
                Err(e) => {
                    stats.decompress_failures += 1;
                    Body::Unavailable {
                        reason: e.to_string(),
                        len: data.len() as u64,
                    }
                }
            },
            Deframed::Oversize { len, .. } => {
                stats.oversize_messages += 1;
                Body::Unavailable {
                    reason: format!("message exceeds the {}-byte limit", limits.max_message),
                    len,
                }
            }
            Deframed::Invalid { flag } => Body::Unavailable {
                reason: format!(
                    "invalid gRPC message prefix (flag 0x{flag:02x}); rest of stream skipped"
                ),
                len: 0,
            },
        }
    }
}
