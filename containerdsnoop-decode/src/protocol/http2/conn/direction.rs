//! The decoding state of one direction of a connection: where it is (preface, frames, search),
//! how its current decoding began, the header block it is assembling, its HPACK decoder, and the
//! SETTINGS it announced, which bind what the other direction sends (the frame size and HPACK
//! table bounds read from a connection's two directions, `dirs`, indexed by `Side::index`).

use std::collections::VecDeque;

use crate::protocol::call::Side;
use crate::protocol::http2::codec::FrameReader;
use crate::protocol::http2::frame::{MAX_FRAME_LEN, Settings, settings};
use crate::protocol::http2::hpack::Decoder;
use crate::protocol::http2::limits::Limits;
use crate::protocol::http2::resync::Searcher;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Before the first byte, or inside the preface (`matched` bytes of it so far).
    Preface { matched: usize },
    /// Framing; `first` until the initial SETTINGS frame has been seen.
    Frames { first: bool },
    /// Looking for frame boundaries (`Direction::searcher`).
    Search,
}

/// How a direction's current decoding began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// At the connection's first byte.
    Beginning,
    LateJoin,
    AfterLoss,
}

/// What the frame that opened a header block says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockStart {
    pub(super) stream: u32,
    pub(super) end_stream: bool,
    /// PUSH_PROMISE blocks are decoded only to keep the HPACK table in step.
    pub(super) push: bool,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
pub(super) struct PendingBlock {
    pub(super) start: BlockStart,
    pub(super) buf: Vec<u8>,
}

/// The values from a side's SETTINGS that bind what the *other* side sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) header_table_size: u32,
    pub(super) max_frame_size: u32,
}

impl Bounds {
    pub(super) fn apply(&mut self, s: &Settings) {
        if let Some(v) = s.header_table_size {
            self.header_table_size = v;
        }
        if let Some(v) = s.max_frame_size {
            self.max_frame_size = v;
        }
    }
}

#[derive(Debug)]
pub(super) struct Direction {
    pub(super) phase: Phase,
    pub(super) reader: FrameReader,
    /// Decodes the header blocks this side sends.
    pub(super) hpack: Decoder,
    pub(super) block: Option<PendingBlock>,
    /// What this side announced and the other acknowledged.
    pub(super) acked: Bounds,
    /// What this side announced that is not acknowledged yet: until the ACK the other side may
    /// still use the old values, so the larger of both is allowed.
    pub(super) unacked: VecDeque<Settings>,
    pub(super) searcher: Searcher,
    pub(super) start: Start,
    /// This side's SETTINGS are known (seen from the start, or a SETTINGS frame since).
    pub(super) settings_known: bool,
    /// Right after a resync, frames may begin with the rest of a header block whose HEADERS
    /// was not seen: CONTINUATIONs are skipped until the first other frame.
    pub(super) resumed: bool,
}

impl Direction {
    pub(super) fn new(limits: &Limits) -> Direction {
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
    pub(super) fn search(&mut self, start: Start) {
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

/// The frame length a candidate header from `sender` may claim while searching: what the
/// receiver announced if its SETTINGS are known, else the default 16384 (gRPC's frame size).
pub(super) fn search_frame_limit(dirs: &[Direction; 2], sender: Side) -> u32 {
    let recv = &dirs[sender.other().index()];
    if recv.settings_known && recv.phase != Phase::Search {
        frame_limit(dirs, sender)
    } else {
        settings::DEFAULT_MAX_FRAME_SIZE
    }
}

/// The frame size `sender`'s frames must respect: what the receiver announced, the larger of
/// acknowledged and pending values, or the protocol maximum when the receiver is unseen.
pub(super) fn frame_limit(dirs: &[Direction; 2], sender: Side) -> u32 {
    let recv = &dirs[sender.other().index()];
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
pub(super) fn refresh_hpack_bound(dirs: &mut [Direction; 2], sender: Side) {
    let recv = &dirs[sender.other().index()];
    let bound = (recv.phase != Phase::Search && recv.settings_known).then(|| {
        recv.unacked
            .iter()
            .filter_map(|s| s.header_table_size)
            .fold(recv.acked.header_table_size, u32::max) as usize
    });
    dirs[sender.index()].hpack.set_protocol_max(bound);
}
