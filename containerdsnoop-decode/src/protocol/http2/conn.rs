//! One HTTP/2 connection seen from outside: both directions' bytes in, `CallEvent`s out. Owns
//! the connection preface and who is the client, SETTINGS (applied to the side they bind, once
//! acknowledged), header block assembly across CONTINUATION frames, one HPACK decoder per
//! direction, and synchronisation: a direction whose bytes start mid-connection (late join) or
//! break (lost or malformed bytes) searches for frame boundaries (`http2::resync`), then decodes
//! on with a header table that is partly unknown until it turns over. Losses are counted and
//! reported once each, while the other direction and the rest of the process carry on.

use std::collections::VecDeque;
use std::fmt;

use std::sync::Arc;

use super::Stats;
use super::codec::{FrameReader, FrameSink};
use super::frame::{
    self, Frame, FrameError, Head, Kind, MAX_FRAME_LEN, Settings, error_code_name, settings,
};
use super::hpack::{Decoder, HeaderList, HpackError};
use super::limits::Limits;
use super::resync::{Found, Searcher};
use crate::protocol::call::{CallEvent, CallEventKind, ConnEnd, Role, Side};
use crate::protocol::grpc::infer::Catalog;
use crate::protocol::grpc::{CallLimits, Calls, Origin};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a direction stopped being decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desync {
    /// The capture lost this many bytes.
    Lost(u64),
    Frame(FrameError),
    Hpack(HpackError),
    /// Starts like the preface but is not.
    BadPreface,
    /// The first frame was not SETTINGS: the capture probably joined mid-connection.
    NoInitialSettings(Kind),
    /// Both directions claimed the same role.
    RoleConflict(&'static str),
    /// A frame other than CONTINUATION on the same stream inside a header block.
    InterleavedHeaderBlock {
        stream: u32,
        got: Kind,
        got_stream: u32,
    },
    ContinuationWithoutHeaders(u32),
    HeaderBlockTooLarge {
        limit: usize,
    },
}

impl fmt::Display for Desync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Desync::Lost(n) => write!(f, "capture lost {n} bytes"),
            Desync::Frame(e) => write!(f, "{e}"),
            Desync::Hpack(e) => write!(f, "{e}"),
            Desync::BadPreface => write!(f, "invalid connection preface"),
            Desync::NoInitialSettings(k) => {
                write!(
                    f,
                    "first frame is {k:?}, not SETTINGS (capture joined mid-connection?)"
                )
            }
            Desync::RoleConflict(why) => write!(f, "{why}"),
            Desync::InterleavedHeaderBlock {
                stream,
                got,
                got_stream,
            } => {
                write!(
                    f,
                    "{got:?} on stream {got_stream} inside the header block of stream {stream}"
                )
            }
            Desync::ContinuationWithoutHeaders(s) => {
                write!(f, "CONTINUATION on stream {s} without HEADERS")
            }
            Desync::HeaderBlockTooLarge { limit } => {
                write!(f, "header block larger than {limit} bytes")
            }
        }
    }
}

impl From<FrameError> for Desync {
    fn from(e: FrameError) -> Desync {
        Desync::Frame(e)
    }
}

/// How well one direction of a connection is being decoded (for display and JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Decoded from the connection's first byte, nothing lost.
    Synced,
    /// Attached mid-connection and frames found. Until `hpack_complete`, header fields whose
    /// table entries predate the join are unknown (and methods may be inferred).
    LateJoin { hpack_complete: bool },
    /// Searching for frame boundaries (after a late join, lost or malformed bytes): bytes are
    /// skipped until frames chain again.
    Desynchronised,
    /// Frames found again after lost or malformed bytes; `hpack_complete` as for `LateJoin`.
    Resynchronised { hpack_complete: bool },
}

impl SyncState {
    /// `synced`, `late-join`, `desynchronised`, `resynchronised`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::LateJoin { .. } => "late-join",
            SyncState::Desynchronised => "desynchronised",
            SyncState::Resynchronised { .. } => "resynchronised",
        }
    }

    /// Whether every header field can be decoded (false while the HPACK table is partly
    /// unknown, or while searching).
    pub fn hpack_complete(&self) -> bool {
        match self {
            SyncState::Synced => true,
            SyncState::LateJoin { hpack_complete }
            | SyncState::Resynchronised { hpack_complete } => *hpack_complete,
            SyncState::Desynchronised => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte, or inside the preface (`matched` bytes of it so far).
    Preface { matched: usize },
    /// Framing; `first` until the initial SETTINGS frame has been seen.
    Frames { first: bool },
    /// Looking for frame boundaries (`Direction::searcher`).
    Search,
}

/// How a direction's current decoding began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At the connection's first byte.
    Beginning,
    LateJoin,
    AfterLoss,
}

#[derive(Debug)]
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    /// PUSH_PROMISE blocks are decoded only to keep the HPACK table in step.
    push: bool,
    buf: Vec<u8>,
}

/// The values from a side's SETTINGS that bind what the *other* side sends.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    header_table_size: u32,
    max_frame_size: u32,
}

impl Bounds {
    fn apply(&mut self, s: &Settings) {
        if let Some(v) = s.header_table_size {
            self.header_table_size = v;
        }
        if let Some(v) = s.max_frame_size {
            self.max_frame_size = v;
        }
    }
}

#[derive(Debug)]
struct Direction {
    phase: Phase,
    reader: FrameReader,
    /// Decodes the header blocks this side sends.
    hpack: Decoder,
    block: Option<PendingBlock>,
    /// What this side announced and the other acknowledged.
    acked: Bounds,
    /// What this side announced that is not acknowledged yet: until the ACK the other side may
    /// still use the old values, so the larger of both is allowed.
    unacked: VecDeque<Settings>,
    searcher: Searcher,
    start: Start,
    /// This side's SETTINGS are known (seen from the start, or a SETTINGS frame since).
    settings_known: bool,
    /// Right after a resync, frames may begin with the rest of a header block whose HEADERS
    /// was not seen: CONTINUATIONs are skipped until the first other frame.
    resumed: bool,
}

impl Direction {
    fn new(limits: &Limits) -> Direction {
        Direction {
            phase: Phase::Preface { matched: 0 },
            reader: FrameReader::new(),
            hpack: Decoder::new(limits.hpack),
            block: None,
            acked: Bounds {
                header_table_size: settings::DEFAULT_HEADER_TABLE_SIZE,
                max_frame_size: settings::DEFAULT_MAX_FRAME_SIZE,
            },
            unacked: VecDeque::new(),
            searcher: Searcher::new(),
            start: Start::Beginning,
            settings_known: true,
            resumed: false,
        }
    }

    /// Forgets everything that depends on having seen this direction continuously, and starts
    /// searching for frame boundaries.
    fn search(&mut self, start: Start) {
        self.phase = Phase::Search;
        self.reader = FrameReader::new();
        self.block = None;
        self.searcher = Searcher::new();
        self.hpack.rejoin();
        self.start = start;
        self.resumed = false;
        if start == Start::LateJoin {
            // Its SETTINGS were sent before we joined: assume the RFC defaults until it sends
            // new ones.
            self.settings_known = false;
        }
    }
}

/// The decoder of one HTTP/2 connection.
#[derive(Debug)]
pub struct Connection {
    /// Indexed by `side_index`.
    dirs: [Direction; 2],
    client: Option<Side>,
    calls: Calls,
    stats: Stats,
    limits: Limits,
}

fn side_index(side: Side) -> usize {
    side.index()
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
            client: None,
            calls: Calls::new(CallLimits {
                max_streams: limits.max_streams,
                max_buffered: limits.max_buffered,
                max_message: limits.max_message,
                max_decompressed: limits.max_decompressed,
            }),
            stats: Stats::default(),
            limits,
        }
    }

    /// A connection that was open before the capture started: both directions search for frame
    /// boundaries before decoding (same as calling `joined` for both sides).
    pub fn late_join(limits: Limits) -> Connection {
        let mut c = Connection::new(limits);
        c.joined(Side::A, 0);
        c.joined(Side::B, 0);
        c
    }

    /// The first bytes the capture has of `side` start at `stream_pos` > 0: the connection was
    /// open before. Call it before feeding them. Frame boundaries are searched for, the header
    /// table is partly unknown, calls already under way are taken up at their next message, and
    /// methods whose `:path` is unknown are inferred. No Notice row is emitted (the state shows
    /// in `sync_state`). Calling it later (after bytes of `side` were fed) restarts that side
    /// the same way.
    pub fn joined(&mut self, side: Side, stream_pos: u64) {
        let _ = stream_pos;
        let i = side_index(side);
        self.dirs[i].search(Start::LateJoin);
        self.refresh_hpack_bound(side.other());
        self.refresh_hpack_bound(side);
        let role = match self.client {
            Some(c) if c == side => Some(Role::Request),
            Some(_) => Some(Role::Response),
            None => None,
        };
        let mut sink = Vec::new();
        for role in role.map_or(vec![Role::Request, Role::Response], |r| vec![r]) {
            let at = Origin {
                ts_ns: 0,
                side,
                role,
            };
            self.calls.resume(at, false, &mut sink, &mut self.stats);
        }
        // Nothing can be cut at a join (no message of this side was under way for us).
        debug_assert!(sink.is_empty());
    }

    /// Tells which side is the client when the capture knows it (e.g. the side that connected
    /// to the runtime's listening socket). Useful after a late join, where no preface is seen;
    /// otherwise the role is learnt from the first header block (`:method` / `:status`).
    pub fn set_client(&mut self, client: Side) {
        if self.client.is_none() {
            self.client = Some(client);
        }
    }

    /// Infers methods against `catalog` (e.g. `Catalog::new(&schema)` with the user's protos)
    /// instead of the embedded one; `None` turns inference off.
    pub fn set_catalog(&mut self, catalog: Option<Arc<Catalog>>) {
        self.calls.set_catalog(catalog);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The side that sent the connection preface (or was found to be the client), once known.
    pub fn client(&self) -> Option<Side> {
        self.client
    }

    /// True while `side` is searching for frame boundaries (its bytes are being skipped).
    pub fn is_desynchronised(&self, side: Side) -> bool {
        self.dirs[side_index(side)].phase == Phase::Search
    }

    /// How well `side`'s bytes are being decoded.
    pub fn sync_state(&self, side: Side) -> SyncState {
        let dir = &self.dirs[side_index(side)];
        let hpack_complete = !dir.hpack.is_late();
        match (dir.phase, dir.start) {
            (Phase::Search, _) => SyncState::Desynchronised,
            (_, Start::Beginning) => SyncState::Synced,
            (_, Start::LateJoin) => SyncState::LateJoin { hpack_complete },
            (_, Start::AfterLoss) => SyncState::Resynchronised { hpack_complete },
        }
    }

    /// Bytes held for incomplete gRPC messages and bodies (bounded by `Limits::max_buffered`)
    /// plus the two directions' resync search buffers (each bounded by its search window).
    pub fn buffered(&self) -> usize {
        self.calls.buffered() + self.dirs[0].searcher.buffered() + self.dirs[1].searcher.buffered()
    }

    /// Calls started and not yet ended.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Bytes `side` sent, in order, stamped `ts_ns`. Events completed by them go to `out`.
    pub fn feed(&mut self, side: Side, ts_ns: u64, mut bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.stats.bytes += bytes.len() as u64;
        self.calls.tick(ts_ns, out, &mut self.stats);
        let i = side_index(side);
        if let Phase::Preface { matched } = self.dirs[i].phase {
            match self.preface(side, matched, bytes) {
                Ok(Some(rest)) => bytes = rest,
                Ok(None) => return,
                Err(reason) => return self.desync(side, ts_ns, reason, &bytes[1..], out),
            }
        }
        let searching = self.dirs[i].phase == Phase::Search;
        self.drive(side, ts_ns, bytes, searching, out);
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
        out: &mut Vec<CallEvent>,
    ) {
        let mut owned;
        let mut next = if searching {
            self.search(side, ts_ns, bytes, out)
                .map(|rest| (false, rest))
        } else {
            self.frames(side, ts_ns, bytes, out)
                .map(|rest| (true, rest))
        };
        while let Some((search, rest)) = next {
            owned = rest;
            next = if search {
                self.search(side, ts_ns, &owned, out)
                    .map(|rest| (false, rest))
            } else {
                self.frames(side, ts_ns, &owned, out)
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
        out: &mut Vec<CallEvent>,
    ) -> Option<Vec<u8>> {
        let i = side_index(side);
        // The reader is moved out so the sink can borrow the whole connection.
        let mut reader = std::mem::take(&mut self.dirs[i].reader);
        let result = reader.feed_resumable(
            bytes,
            &mut Sink {
                conn: self,
                side,
                ts_ns,
                out,
            },
        );
        self.dirs[i].reader = reader;
        let failed = result.err()?;
        self.lose(side, ts_ns, failed.error, out);
        Some(failed.rest)
    }

    /// Feeds bytes to the frame boundary search; returns the bytes from where frames chain.
    fn search(
        &mut self,
        side: Side,
        ts_ns: u64,
        bytes: &[u8],
        out: &mut Vec<CallEvent>,
    ) -> Option<Vec<u8>> {
        let i = side_index(side);
        self.stats.bytes_skipped += bytes.len() as u64;
        let max_frame = self.search_frame_limit(side);
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
            let what = self.direction_name(side);
            out.push(CallEvent {
                ts_ns,
                side,
                stream: 0,
                kind: CallEventKind::Notice {
                    text: format!(
                        "{what} resynchronised: decoding again, header fields from before are \
                         unknown until the header table turns over"
                    ),
                },
            });
        }
        Some(rest)
    }

    /// The capture lost `missing_bytes` that `side` sent: that direction searches for frame
    /// boundaries in the bytes that follow, and its header table is partly unknown after.
    pub fn gap(&mut self, side: Side, ts_ns: u64, missing_bytes: u64, out: &mut Vec<CallEvent>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing_bytes;
        self.desync(side, ts_ns, Desync::Lost(missing_bytes), &[], out);
    }

    /// The connection is gone: every open call ends abnormally.
    pub fn close(&mut self, ts_ns: u64, end: ConnEnd, out: &mut Vec<CallEvent>) {
        let side = self.client.map_or(Side::B, Side::other);
        let at = Origin {
            ts_ns,
            side,
            role: Role::Response,
        };
        self.calls.close(at, end.reason(), out, &mut self.stats);
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
        let i = side_index(side);
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
        self.assign(side, true)?;
        self.dirs[i].phase = Phase::Frames { first: true };
        Ok(Some(&bytes[n..]))
    }

    fn assign(&mut self, side: Side, is_client: bool) -> Result<(), Desync> {
        let client = if is_client { side } else { side.other() };
        match self.client {
            None => {
                self.client = Some(client);
                Ok(())
            }
            Some(c) if c == client => Ok(()),
            Some(_) if is_client => Err(Desync::RoleConflict(
                "both sides sent the connection preface",
            )),
            Some(_) => Err(Desync::RoleConflict(
                "neither side sent the connection preface",
            )),
        }
    }

    fn origin(&self, side: Side, ts_ns: u64) -> Origin {
        let role = if self.client == Some(side) {
            Role::Request
        } else {
            Role::Response
        };
        Origin { ts_ns, side, role }
    }

    fn direction_name(&self, side: Side) -> &'static str {
        match self.client {
            Some(c) if c == side => "client→server",
            Some(_) => "server→client",
            None if side == Side::A => "A→B",
            None => "B→A",
        }
    }

    /// `side` broke (lost bytes, or bytes that are not HTTP/2 where they should be): it
    /// searches for frame boundaries from `rest` on.
    fn desync(
        &mut self,
        side: Side,
        ts_ns: u64,
        reason: Desync,
        rest: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        self.lose(side, ts_ns, reason, out);
        if !rest.is_empty() {
            self.drive(side, ts_ns, rest, true, out);
        }
    }

    /// Puts `side` in search mode, forgetting what depended on continuity. Reported once per
    /// loss.
    fn lose(&mut self, side: Side, ts_ns: u64, reason: Desync, out: &mut Vec<CallEvent>) {
        let i = side_index(side);
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
            let cut = match self.client {
                Some(c) => {
                    let role = if c == side {
                        Role::Request
                    } else {
                        Role::Response
                    };
                    let at = Origin { ts_ns, side, role };
                    self.calls.resume(at, true, out, &mut self.stats)
                }
                None => 0,
            };
            // Its SETTINGS can no longer be followed, so the other side's limits are unknown.
            self.refresh_hpack_bound(side.other());
            self.refresh_hpack_bound(side);
            let what = self.direction_name(side);
            let mut text =
                format!("{what} desynchronised: {reason}; searching for the next frame boundary");
            if cut > 0 {
                text.push_str(&format!(" ({cut} messages cut)"));
            }
            out.push(CallEvent {
                ts_ns,
                side,
                stream: 0,
                kind: CallEventKind::Notice { text },
            });
        }
    }

    /// The frame length a candidate header may claim while searching: what the receiver
    /// announced if its SETTINGS are known, else the default 16384 (gRPC's frame size).
    fn search_frame_limit(&self, sender: Side) -> u32 {
        let recv = &self.dirs[side_index(sender.other())];
        if recv.settings_known && recv.phase != Phase::Search {
            self.frame_limit(sender)
        } else {
            settings::DEFAULT_MAX_FRAME_SIZE
        }
    }

    /// The frame size `sender`'s frames must respect: what the receiver announced, the larger of
    /// acknowledged and pending values, or the protocol maximum when the receiver is unseen.
    fn frame_limit(&self, sender: Side) -> u32 {
        let recv = &self.dirs[side_index(sender.other())];
        if recv.phase == Phase::Search && recv.start == Start::AfterLoss {
            // Its SETTINGS may have changed in the bytes lost.
            return MAX_FRAME_LEN;
        }
        if !recv.settings_known {
            // Announced before we joined: the RFC default, which gRPC keeps.
            return settings::DEFAULT_MAX_FRAME_SIZE;
        }
        recv.unacked
            .iter()
            .filter_map(|s| s.max_frame_size)
            .fold(recv.acked.max_frame_size, u32::max)
    }

    /// Re-derives the bound on `sender`'s HPACK table size updates from the receiver's SETTINGS.
    fn refresh_hpack_bound(&mut self, sender: Side) {
        let recv = &self.dirs[side_index(sender.other())];
        let bound = (recv.phase != Phase::Search && recv.settings_known).then(|| {
            recv.unacked
                .iter()
                .filter_map(|s| s.header_table_size)
                .fold(recv.acked.header_table_size, u32::max) as usize
        });
        self.dirs[side_index(sender)].hpack.set_protocol_max(bound);
    }

    fn on_frame(
        &mut self,
        side: Side,
        ts_ns: u64,
        head: &Head,
        payload: &[u8],
        out: &mut Vec<CallEvent>,
    ) -> Result<(), Desync> {
        self.stats.frames += 1;
        let frame = frame::parse(head, payload)?;
        let i = side_index(side);
        if let Phase::Frames { first: true } = self.dirs[i].phase {
            self.dirs[i].phase = Phase::Frames { first: false };
            if matches!(frame, Frame::Settings { ack: false, .. }) {
                if self.client != Some(side) {
                    self.assign(side, false)?;
                }
            } else if self.client == Some(side) {
                // After the preface, SETTINGS must come first.
                return Err(Desync::NoInitialSettings(head.kind));
            } else {
                // Neither the preface nor SETTINGS: the capture joined mid-connection without
                // being told (`joined`). Decode on from this frame as after a late join.
                let dir = &mut self.dirs[i];
                dir.hpack.rejoin();
                dir.start = Start::LateJoin;
                dir.settings_known = false;
                dir.resumed = true;
                self.refresh_hpack_bound(side);
                if let Some(c) = self.client {
                    let role = if c == side {
                        Role::Request
                    } else {
                        Role::Response
                    };
                    self.calls
                        .resume(Origin { ts_ns, side, role }, false, out, &mut self.stats);
                } else {
                    for role in [Role::Request, Role::Response] {
                        self.calls.resume(
                            Origin { ts_ns, side, role },
                            false,
                            out,
                            &mut self.stats,
                        );
                    }
                }
            }
        }
        if self.dirs[i].resumed {
            if let Frame::Continuation { .. } = frame {
                // The rest of a header block that began before decoding did.
                self.stats.skipped_continuations += 1;
                return Ok(());
            }
            self.dirs[i].resumed = false;
        }
        if self.client.is_none() && matches!(frame, Frame::Data { .. } | Frame::RstStream { .. }) {
            // Which side is the client is not known yet (late join): the first header block
            // will tell; until then stream frames cannot be attributed.
            self.stats.orphan_frames += 1;
            return Ok(());
        }
        if let Some(block) = &mut self.dirs[i].block {
            return match frame {
                Frame::Continuation {
                    stream,
                    end_headers,
                    fragment,
                } if stream == block.stream => {
                    if block.buf.len() + fragment.len() > self.limits.max_header_block {
                        return Err(Desync::HeaderBlockTooLarge {
                            limit: self.limits.max_header_block,
                        });
                    }
                    block.buf.extend_from_slice(fragment);
                    if end_headers && let Some(b) = self.dirs[i].block.take() {
                        self.header_block(
                            side,
                            ts_ns,
                            b.stream,
                            b.end_stream,
                            b.push,
                            &b.buf,
                            out,
                        )?;
                    }
                    Ok(())
                }
                _ => Err(Desync::InterleavedHeaderBlock {
                    stream: block.stream,
                    got: head.kind,
                    got_stream: head.stream,
                }),
            };
        }
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
            } => {
                let at = self.origin(side, ts_ns);
                self.calls
                    .data(at, stream, data, end_stream, out, &mut self.stats);
            }
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                self.start_block(
                    side,
                    ts_ns,
                    stream,
                    end_stream,
                    false,
                    end_headers,
                    fragment,
                    out,
                )?;
            }
            Frame::PushPromise {
                stream,
                end_headers,
                fragment,
                ..
            } => {
                self.start_block(side, ts_ns, stream, false, true, end_headers, fragment, out)?;
            }
            Frame::Continuation { stream, .. } => {
                return Err(Desync::ContinuationWithoutHeaders(stream));
            }
            Frame::RstStream { stream, code } => {
                let at = self.origin(side, ts_ns);
                self.calls.reset(at, stream, code, out, &mut self.stats);
            }
            Frame::Settings {
                ack: false,
                settings,
            } => {
                let dir = &mut self.dirs[i];
                dir.settings_known = true;
                if dir.unacked.len() >= self.limits.max_unacked_settings
                    && let Some(oldest) = dir.unacked.pop_front()
                {
                    // A peer that never acknowledges: treat the oldest as acknowledged rather
                    // than queue without bound.
                    dir.acked.apply(&oldest);
                }
                dir.unacked.push_back(settings);
                self.refresh_hpack_bound(side.other());
            }
            Frame::Settings { ack: true, .. } => {
                // This side acknowledges the other side's oldest SETTINGS: from here on this
                // side's frames and header blocks obey them exactly.
                let other = &mut self.dirs[side_index(side.other())];
                if let Some(s) = other.unacked.pop_front() {
                    other.acked.apply(&s);
                }
                self.refresh_hpack_bound(side);
            }
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => {
                let at = self.origin(side, ts_ns);
                let mut text = format!(
                    "GOAWAY from {}: {}, last stream {last_stream}",
                    if at.role == Role::Request {
                        "client"
                    } else {
                        "server"
                    },
                    error_code_name(code)
                );
                if !debug.is_empty() {
                    let shown = &debug[..debug.len().min(256)];
                    text.push_str(&format!(", debug {:?}", String::from_utf8_lossy(shown)));
                }
                out.push(CallEvent {
                    ts_ns,
                    side,
                    stream: 0,
                    kind: CallEventKind::Notice { text },
                });
                self.calls
                    .goaway(at, last_stream, code, out, &mut self.stats);
            }
            Frame::Unknown { .. } => self.stats.unknown_frames += 1,
            Frame::Ping { .. } | Frame::Priority { .. } | Frame::WindowUpdate { .. } => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start_block(
        &mut self,
        side: Side,
        ts_ns: u64,
        stream: u32,
        end_stream: bool,
        push: bool,
        end_headers: bool,
        fragment: &[u8],
        out: &mut Vec<CallEvent>,
    ) -> Result<(), Desync> {
        if fragment.len() > self.limits.max_header_block {
            return Err(Desync::HeaderBlockTooLarge {
                limit: self.limits.max_header_block,
            });
        }
        if end_headers {
            return self.header_block(side, ts_ns, stream, end_stream, push, fragment, out);
        }
        self.dirs[side_index(side)].block = Some(PendingBlock {
            stream,
            end_stream,
            push,
            buf: fragment.to_vec(),
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn header_block(
        &mut self,
        side: Side,
        ts_ns: u64,
        stream: u32,
        end_stream: bool,
        push: bool,
        block: &[u8],
        out: &mut Vec<CallEvent>,
    ) -> Result<(), Desync> {
        self.stats.header_blocks += 1;
        let list = match self.dirs[side_index(side)].hpack.decode(block) {
            Ok(list) => list,
            Err(e) => {
                self.stats.hpack_errors += 1;
                return Err(Desync::Hpack(e));
            }
        };
        if list.truncated {
            self.stats.truncated_header_lists += 1;
        }
        if self.client.is_none() {
            // Late join: the first header block whose role shows says who the client is.
            match classify(&list) {
                Some(Role::Request) => self.client = Some(side),
                Some(Role::Response) => self.client = Some(side.other()),
                None => {
                    self.stats.orphan_frames += 1;
                    return Ok(());
                }
            }
        }
        if !push {
            let at = self.origin(side, ts_ns);
            self.calls
                .headers(at, stream, &list, end_stream, out, &mut self.stats);
        }
        Ok(())
    }
}

/// Whether a header block is a request's (`:method`, `:path`, ...) or a response's (`:status`,
/// `grpc-status`), from the fields whose names are known.
fn classify(list: &HeaderList) -> Option<Role> {
    list.fields.iter().find_map(|f| match f.name_str()? {
        ":method" | ":path" | ":scheme" | ":authority" => Some(Role::Request),
        ":status" | "grpc-status" => Some(Role::Response),
        _ => None,
    })
}

/// Hands one direction's frames to the connection.
struct Sink<'a> {
    conn: &'a mut Connection,
    side: Side,
    ts_ns: u64,
    out: &'a mut Vec<CallEvent>,
}

impl FrameSink for Sink<'_> {
    type Error = Desync;

    fn max_frame_size(&self) -> u32 {
        self.conn.frame_limit(self.side)
    }

    fn frame(&mut self, head: &Head, payload: &[u8]) -> Result<(), Desync> {
        self.conn
            .on_frame(self.side, self.ts_ns, head, payload, self.out)
    }
}
