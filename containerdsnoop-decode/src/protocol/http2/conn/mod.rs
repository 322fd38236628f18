//! One HTTP/2 connection seen from outside, as a transport: both directions' bytes in, stream
//! events out (to a [`StreamSink`]). Owns the connection preface and who is the client, SETTINGS
//! (applied to the side they bind, once acknowledged), header block assembly across
//! CONTINUATION frames (`frames`), one HPACK decoder per direction, and synchronisation: a
//! direction whose bytes start mid-connection (late join) or break (lost or malformed bytes)
//! searches for frame boundaries (`http2::resync`), then decodes on with a header table that is
//! partly unknown until it turns over. Losses are counted and reported once each, while the
//! other direction and the rest of the process carry on. What runs on the streams (gRPC) is the
//! sink's business.

mod desync;
mod direction;
mod frames;
#[cfg(test)]
mod tests;

use super::Stats;
use super::limits::Limits;
use super::resync::Found;
use super::sink::{Origin, StreamSink};
use crate::protocol::call::{Role, Side};
use crate::protocol::kit::Roles;

pub use desync::{Desync, FrameSync};
use direction::{Direction, Phase, Start, refresh_hpack_bound, search_frame_limit};
use frames::{Receiver, direction_name, resume_roles};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The transport of one HTTP/2 connection.
#[derive(Debug)]
pub struct Connection {
    /// Indexed by `Side::index`.
    dirs: [Direction; 2],
    roles: Roles,
    stats: Stats,
    limits: Limits,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection::new(Limits::default())
    }
}

impl Connection {
    pub fn new(limits: Limits) -> Connection {
        Connection {
            dirs: [Direction::new(&limits), Direction::new(&limits)],
            roles: Roles::default(),
            stats: Stats::default(),
            limits,
        }
    }

    /// The first bytes the capture has of `side` start at `stream_pos` > 0: the connection was
    /// open before. Call it before feeding them. Frame boundaries are searched for and the
    /// header table is partly unknown; the sink is told (`StreamSink::resume`, not lost) for the
    /// role `side` plays, or for both while that is unknown. No notice is emitted (the state
    /// shows in `sync_state`). Calling it later (after bytes of `side` were fed) restarts that
    /// side the same way.
    pub fn joined(&mut self, side: Side, stream_pos: u64, sink: &mut dyn StreamSink) {
        let _ = stream_pos;
        self.dirs[side.index()].search(Start::LateJoin);
        refresh_hpack_bound(&mut self.dirs, side.other());
        refresh_hpack_bound(&mut self.dirs, side);
        resume_roles(self.roles, side, 0, sink);
    }

    /// Tells which side is the client when the capture knows it (e.g. the side that connected
    /// to the runtime's listening socket). Useful after a late join, where no preface is seen;
    /// otherwise the role is learnt from the first header block (`:method` / `:status`).
    pub fn set_client(&mut self, client: Side) {
        self.roles.learn(client, Role::Request);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The side that sent the connection preface (or was found to be the client), once known.
    pub fn client(&self) -> Option<Side> {
        self.roles.client()
    }

    /// Who the client is, once known.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// True while `side` is searching for frame boundaries (its bytes are being skipped).
    pub fn is_desynchronised(&self, side: Side) -> bool {
        self.dirs[side.index()].phase == Phase::Search
    }

    /// How well `side`'s bytes are being decoded.
    pub fn sync_state(&self, side: Side) -> FrameSync {
        let dir = &self.dirs[side.index()];
        let hpack_complete = !dir.hpack.is_late();
        match (dir.phase, dir.start) {
            (Phase::Search, _) => FrameSync::Desynchronised,
            (_, Start::Beginning) => FrameSync::Synced,
            (_, Start::LateJoin) => FrameSync::LateJoin { hpack_complete },
            (_, Start::AfterLoss) => FrameSync::Resynchronised { hpack_complete },
        }
    }

    /// Bytes held by the two directions' resync searches (each bounded by its search window).
    pub fn buffered(&self) -> usize {
        self.dirs[0].searcher.buffered() + self.dirs[1].searcher.buffered()
    }

    /// Bytes `side` sent, in order, stamped `ts_ns`. What they complete goes to `sink`.
    pub fn feed(&mut self, side: Side, ts_ns: u64, mut bytes: &[u8], sink: &mut dyn StreamSink) {
        self.stats.bytes += bytes.len() as u64;
        let i = side.index();
        if let Phase::Preface { matched } = self.dirs[i].phase {
            match self.preface(side, matched, bytes) {
                Ok(Some(rest)) => bytes = rest,
                Ok(None) => return,
                Err(reason) => return self.desync(side, ts_ns, reason, &bytes[1..], sink),
            }
        }
        let searching = self.dirs[i].phase == Phase::Search;
        self.drive(side, ts_ns, bytes, searching, sink);
    }

    /// Alternates decoding and searching over one chunk: a failure hands the bytes after the
    /// failing frame's first byte to the search, a found boundary hands the rest to decoding.
    /// A loop, not recursion, so hostile bytes that resync and fail over and over cost time
    /// proportional to their length and no stack.
    fn drive(
        &mut self,
        side: Side,
        ts_ns: u64,
        bytes: &[u8],
        searching: bool,
        sink: &mut dyn StreamSink,
    ) {
        let mut owned;
        let mut next = if searching {
            self.search(side, ts_ns, bytes, sink)
                .map(|rest| (false, rest))
        } else {
            self.frames(side, ts_ns, bytes, sink)
                .map(|rest| (true, rest))
        };
        while let Some((search, rest)) = next {
            owned = rest;
            next = if search {
                self.search(side, ts_ns, &owned, sink)
                    .map(|rest| (false, rest))
            } else {
                self.frames(side, ts_ns, &owned, sink)
                    .map(|rest| (true, rest))
            };
        }
    }

    /// Decodes frames. On an error the direction is desynchronised, and the bytes from just after
    /// the failing frame's start are returned for the search.
    fn frames(
        &mut self,
        side: Side,
        ts_ns: u64,
        bytes: &[u8],
        sink: &mut dyn StreamSink,
    ) -> Option<Vec<u8>> {
        let i = side.index();
        // The reader is moved out so the receiver can borrow both directions.
        let mut reader = std::mem::take(&mut self.dirs[i].reader);
        let result = reader.feed_resumable(
            bytes,
            &mut Receiver {
                dirs: &mut self.dirs,
                roles: &mut self.roles,
                stats: &mut self.stats,
                limits: &self.limits,
                side,
                ts_ns,
                sink,
            },
        );
        self.dirs[i].reader = reader;
        let failed = result.err()?;
        self.lose(side, ts_ns, failed.error, sink);
        Some(failed.rest)
    }

    /// Feeds bytes to the frame boundary search; returns the bytes from where frames chain.
    fn search(
        &mut self,
        side: Side,
        ts_ns: u64,
        bytes: &[u8],
        sink: &mut dyn StreamSink,
    ) -> Option<Vec<u8>> {
        let i = side.index();
        self.stats.bytes_skipped += bytes.len() as u64;
        let max_frame = search_frame_limit(&self.dirs, side);
        let Found::At { rest, .. } = self.dirs[i].searcher.feed(bytes, max_frame) else {
            return None;
        };
        // `rest` was counted as skipped when it was fed; it is decoded after all.
        self.stats.bytes_skipped = self.stats.bytes_skipped.saturating_sub(rest.len() as u64);
        self.stats.resyncs += 1;
        let dir = &mut self.dirs[i];
        dir.phase = Phase::Frames { first: false };
        dir.resumed = true;
        if dir.start == Start::AfterLoss {
            let what = direction_name(self.roles, side);
            sink.notice(
                ts_ns,
                side,
                format!(
                    "{what} resynchronised: decoding again, header fields from before are \
                     unknown until the header table turns over"
                ),
            );
        }
        Some(rest)
    }

    /// The capture lost `missing_bytes` that `side` sent: that direction searches for frame
    /// boundaries in the bytes that follow, and its header table is partly unknown after.
    pub fn gap(&mut self, side: Side, ts_ns: u64, missing_bytes: u64, sink: &mut dyn StreamSink) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing_bytes;
        self.desync(side, ts_ns, Desync::Lost(missing_bytes), &[], sink);
    }

    /// Consumes preface bytes. `Ok(Some(rest))`: framing starts with `rest`; `Ok(None)`: need
    /// more bytes.
    fn preface<'b>(
        &mut self,
        side: Side,
        matched: usize,
        bytes: &'b [u8],
    ) -> Result<Option<&'b [u8]>, Desync> {
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let i = side.index();
        if matched == 0 && first != PREFACE[0] {
            // No frame header can start with 'P' (that length would exceed any frame size
            // limit), so this side is the server, whose first bytes are its SETTINGS frame; if
            // they are not, the capture joined mid-connection (see `on_frame`).
            self.dirs[i].phase = Phase::Frames { first: true };
            return Ok(Some(bytes));
        }
        let n = (PREFACE.len() - matched).min(bytes.len());
        if bytes[..n] != PREFACE[matched..matched + n] {
            return Err(Desync::BadPreface);
        }
        if matched + n < PREFACE.len() {
            self.dirs[i].phase = Phase::Preface {
                matched: matched + n,
            };
            return Ok(None);
        }
        if !self.roles.agree(side, Role::Request) {
            return Err(Desync::RoleConflict(
                "both sides sent the connection preface",
            ));
        }
        self.dirs[i].phase = Phase::Frames { first: true };
        Ok(Some(&bytes[n..]))
    }

    /// `side` broke (lost bytes, or bytes that are not HTTP/2 where they should be): it
    /// searches for frame boundaries from `rest` on.
    fn desync(
        &mut self,
        side: Side,
        ts_ns: u64,
        reason: Desync,
        rest: &[u8],
        sink: &mut dyn StreamSink,
    ) {
        self.lose(side, ts_ns, reason, sink);
        if !rest.is_empty() {
            self.drive(side, ts_ns, rest, true, sink);
        }
    }

    /// Puts `side` in search mode, forgetting what depended on continuity. Reported once per
    /// loss.
    fn lose(&mut self, side: Side, ts_ns: u64, reason: Desync, sink: &mut dyn StreamSink) {
        let i = side.index();
        if self.dirs[i].phase != Phase::Search || self.dirs[i].start != Start::AfterLoss {
            self.stats.desyncs += 1;
            let start =
                if self.dirs[i].start == Start::LateJoin && self.dirs[i].phase == Phase::Search {
                    // Still looking after a late join: stays a late join.
                    Start::LateJoin
                } else {
                    Start::AfterLoss
                };
            self.dirs[i].search(start);
            let cut = match self.roles.client() {
                Some(_) => sink.resume(Origin::of(self.roles, side, ts_ns), true),
                None => 0,
            };
            // Its SETTINGS can no longer be followed, so the other side's limits are unknown.
            refresh_hpack_bound(&mut self.dirs, side.other());
            refresh_hpack_bound(&mut self.dirs, side);
            let what = direction_name(self.roles, side);
            let mut text =
                format!("{what} desynchronised: {reason}; searching for the next frame boundary");
            if cut > 0 {
                text.push_str(&format!(" ({cut} messages cut)"));
            }
            sink.notice(ts_ns, side, text);
        }
    }
}
