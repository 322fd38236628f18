//! ttrpc framing per direction: cutting a byte stream into frames, skipping frames too long
//! to keep, and resynchronisation. After lost bytes or an impossible header a direction hunts
//! for a frame boundary and carries on from there, since unlike HTTP/2 no state (HPACK) is
//! lost with the skipped bytes. Owns [`Direction`]; complete frames go to the calls
//! ([`super::calls::Calls`]) it is handed, with the connection's [`Shared`] state.

use super::calls::Calls;
use super::frame::{self, Anchor, HEADER_LEN, Header, MAX_ANCHOR_FRAME};
use super::shared::Shared;
use crate::protocol::call::CallEvent;
use crate::protocol::kit::At;

#[derive(Debug)]
enum Phase {
    /// At or inside a frame; `buf` holds the incomplete frame.
    Framing,
    /// Lost the frame boundary; `buf` holds bytes not yet ruled out as one.
    Hunting,
    /// Inside a frame too long to keep: `left` bytes of it still to skip.
    Skipping { left: u64 },
}

/// One direction's framing state.
#[derive(Debug)]
pub(super) struct Direction {
    phase: Phase,
    buf: Vec<u8>,
    /// Bytes skipped in the current hunt, for the resync notice.
    hunted: u64,
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            phase: Phase::Framing,
            buf: Vec::new(),
            hunted: 0,
        }
    }

    /// Bytes held for an incomplete frame or a hunt.
    pub(super) fn held(&self) -> usize {
        self.buf.len()
    }

    /// Whether this direction lost its frame boundary and is looking for one.
    pub(super) fn is_hunting(&self) -> bool {
        matches!(self.phase, Phase::Hunting)
    }

    /// The capture lost bytes of this direction (`why`): what it held is dropped, and it hunts
    /// for the next frame boundary in the bytes that follow.
    pub(super) fn lost(&mut self, at: At, why: String, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        self.buf.clear();
        self.phase = Phase::Framing;
        self.lose_sync(at, why, sh, out);
    }

    /// Stops framing and starts hunting for a frame boundary. The caller decides which
    /// buffered bytes the hunt starts from.
    fn lose_sync(&mut self, at: At, why: String, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        sh.stats.desyncs += 1;
        let text = format!(
            "{} desynchronised: {why}; looking for the next frame",
            sh.roles.direction("ttrpc", at.side)
        );
        out.push(at.notice(0, text));
        self.phase = Phase::Hunting;
        self.hunted = 0;
    }

    /// Appends `input` (sent by `at.side`) to the buffer and hands every complete frame in it
    /// to `calls`. Iterative on purpose: input alternating frames and garbage must not recurse.
    pub(super) fn feed(
        &mut self,
        at: At,
        input: &[u8],
        calls: &mut Calls,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        let mut input = input;
        // A long skip consumes straight from the input, never buffering it.
        if let Phase::Skipping { left } = self.phase {
            let n = (input.len() as u64).min(left);
            input = &input[n as usize..];
            self.skip_done(left, n, sh);
        }
        if input.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(input);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.phase {
                Phase::Skipping { left } => {
                    let n = (rest.len() as u64).min(left);
                    pos += n as usize;
                    self.skip_done(left, n, sh);
                    if n < left {
                        break;
                    }
                }
                Phase::Hunting => match frame::anchor(rest) {
                    Anchor::Confirmed => self.resynchronised(at, sh, out),
                    Anchor::NeedMore
                        if rest.len() < HEADER_LEN || rest.len() <= sh.limits.resync_window =>
                    {
                        break;
                    }
                    Anchor::NeedMore | Anchor::Rejected => {
                        pos += 1;
                        self.hunted += 1;
                        sh.stats.bytes_skipped += 1;
                    }
                },
                Phase::Framing => {
                    let Some(head) = Header::parse(rest) else {
                        break;
                    };
                    if let Err(e) = head.plausible() {
                        // The header may be the middle of a frame (late join, or a resync
                        // that guessed wrong): the bytes after its first may still hold the
                        // real boundary.
                        self.lose_sync(at, e.to_string(), sh, out);
                        continue;
                    }
                    if head.frame_len() > sh.limits.max_frame {
                        pos += HEADER_LEN;
                        self.phase = Phase::Skipping {
                            left: u64::from(head.len),
                        };
                        sh.stats.oversize_frames += 1;
                        calls.oversize(at, &head, sh, out);
                        continue;
                    }
                    let Some(data) = rest.get(HEADER_LEN..head.frame_len()) else {
                        break;
                    };
                    pos += head.frame_len();
                    calls.on_frame(at, &head, data, sh, out);
                }
            }
        }
        buf.drain(..pos);
        if buf.is_empty() && buf.capacity() > MAX_ANCHOR_FRAME {
            // Do not keep a big frame's allocation around for the connection's lifetime.
            buf = Vec::new();
        }
        self.buf = buf;
    }

    fn resynchronised(&mut self, at: At, sh: &mut Shared, out: &mut Vec<CallEvent>) {
        let skipped = self.hunted;
        self.hunted = 0;
        self.phase = Phase::Framing;
        sh.stats.resyncs += 1;
        let text = format!(
            "{} resynchronised after skipping {skipped} bytes",
            sh.roles.direction("ttrpc", at.side)
        );
        out.push(at.notice(0, text));
    }

    fn skip_done(&mut self, left: u64, n: u64, sh: &mut Shared) {
        sh.stats.bytes_skipped += n;
        self.phase = if n >= left {
            Phase::Framing
        } else {
            Phase::Skipping { left: left - n }
        };
    }
}
