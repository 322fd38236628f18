//! ttrpc framing per direction: cutting a byte stream into frames, skipping frames too long
//! to keep, and resynchronisation. After lost bytes or an impossible header a direction hunts
//! for a frame boundary and carries on from there, since unlike HTTP/2 no state (HPACK) is
//! lost with the skipped bytes. Complete frames go to [`super::calls`].

use super::conn::Connection;
use super::frame::{self, Anchor, HEADER_LEN, Header, MAX_ANCHOR_FRAME};
use crate::protocol::call::CallEvent;
use crate::protocol::kit::At;

#[derive(Debug)]
pub(super) enum Phase {
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
    pub(super) phase: Phase,
    pub(super) buf: Vec<u8>,
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
}

impl Connection {
    /// Stops framing `at.side` and starts hunting for a frame boundary. The caller decides
    /// which buffered bytes the hunt starts from.
    pub(super) fn lose_sync(&mut self, at: At, why: String, out: &mut Vec<CallEvent>) {
        self.stats.desyncs += 1;
        let text = format!(
            "{} desynchronised: {why}; looking for the next frame",
            self.roles.direction("ttrpc", at.side)
        );
        out.push(at.notice(0, text));
        let d = &mut self.dirs[at.side.index()];
        d.phase = Phase::Hunting;
        d.hunted = 0;
    }

    /// Appends `input` to the direction's buffer and consumes every complete frame in it.
    /// Iterative on purpose: input alternating frames and garbage must not recurse.
    pub(super) fn feed_bytes(&mut self, at: At, input: &[u8], out: &mut Vec<CallEvent>) {
        let i = at.side.index();
        let mut input = input;
        // A long skip consumes straight from the input, never buffering it.
        if let Phase::Skipping { left } = self.dirs[i].phase {
            let n = (input.len() as u64).min(left);
            input = &input[n as usize..];
            self.skip_done(i, left, n);
        }
        if input.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut self.dirs[i].buf);
        buf.extend_from_slice(input);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.dirs[i].phase {
                Phase::Skipping { left } => {
                    let n = (rest.len() as u64).min(left);
                    pos += n as usize;
                    self.skip_done(i, left, n);
                    if n < left {
                        break;
                    }
                }
                Phase::Hunting => match frame::anchor(rest) {
                    Anchor::Confirmed => self.resynchronised(at, out),
                    Anchor::NeedMore
                        if rest.len() < HEADER_LEN || rest.len() <= self.limits.resync_window =>
                    {
                        break;
                    }
                    Anchor::NeedMore | Anchor::Rejected => {
                        pos += 1;
                        self.dirs[i].hunted += 1;
                        self.stats.bytes_skipped += 1;
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
                        self.lose_sync(at, e.to_string(), out);
                        continue;
                    }
                    if head.frame_len() > self.limits.max_frame {
                        pos += HEADER_LEN;
                        self.dirs[i].phase = Phase::Skipping {
                            left: u64::from(head.len),
                        };
                        self.stats.oversize_frames += 1;
                        self.oversize(at, &head, out);
                        continue;
                    }
                    let Some(data) = rest.get(HEADER_LEN..head.frame_len()) else {
                        break;
                    };
                    pos += head.frame_len();
                    self.on_frame(at, &head, data, out);
                }
            }
        }
        buf.drain(..pos);
        if buf.is_empty() && buf.capacity() > MAX_ANCHOR_FRAME {
            // Do not keep a big frame's allocation around for the connection's lifetime.
            buf = Vec::new();
        }
        self.dirs[i].buf = buf;
    }

    fn resynchronised(&mut self, at: At, out: &mut Vec<CallEvent>) {
        let d = &mut self.dirs[at.side.index()];
        let skipped = d.hunted;
        d.hunted = 0;
        d.phase = Phase::Framing;
        self.stats.resyncs += 1;
        let text = format!(
            "{} resynchronised after skipping {skipped} bytes",
            self.roles.direction("ttrpc", at.side)
        );
        out.push(at.notice(0, text));
    }

    fn skip_done(&mut self, i: usize, left: u64, n: u64) {
        self.stats.bytes_skipped += n;
        self.dirs[i].phase = if n >= left {
            Phase::Framing
        } else {
            Phase::Skipping { left: left - n }
        };
    }
}
