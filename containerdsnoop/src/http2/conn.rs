//! One HTTP/2 connection seen from outside: both directions' bytes in, `CallEvent`s out. Owns
//! the connection preface and who is the client, SETTINGS (applied to the side they bind, once
//! acknowledged), header block assembly across CONTINUATION frames, one HPACK decoder per
//! direction, and desynchronisation: a direction that breaks is stopped, counted and reported
//! once, while the other direction and the rest of the process carry on.

use std::collections::VecDeque;
use std::fmt;

use super::Stats;
use super::codec::{FrameReader, FrameSink};
use super::frame::{
    self, Frame, FrameError, Head, Kind, MAX_FRAME_LEN, Settings, error_code_name, settings,
};
use super::hpack::{Decoder, HpackError};
use super::limits::Limits;
use crate::call::{CallEvent, CallEventKind, Role, Side};
use crate::grpc::{CallLimits, Calls, Origin};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte, or inside the preface (`matched` bytes of it so far).
    Preface {
        matched: usize,
    },
    /// Framing; `first` until the initial SETTINGS frame has been seen.
    Frames {
        first: bool,
    },
    Desync,
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
    match side {
        Side::A => 0,
        Side::B => 1,
    }
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

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The side that sent the connection preface, once known.
    pub fn client(&self) -> Option<Side> {
        self.client
    }

    pub fn is_desynchronised(&self, side: Side) -> bool {
        self.dirs[side_index(side)].phase == Phase::Desync
    }

    /// Bytes held for incomplete gRPC messages and bodies (bounded by `Limits::max_buffered`).
    pub fn buffered(&self) -> usize {
        self.calls.buffered()
    }

    /// Calls started and not yet ended.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Bytes `side` sent, in order, stamped `ts_ns`. Events completed by them go to `out`.
    pub fn feed(&mut self, side: Side, ts_ns: u64, mut bytes: &[u8], out: &mut Vec<CallEvent>) {
        self.stats.bytes += bytes.len() as u64;
        let i = side_index(side);
        if let Phase::Preface { matched } = self.dirs[i].phase {
            match self.preface(side, matched, bytes) {
                Ok(Some(rest)) => bytes = rest,
                Ok(None) => return,
                Err(reason) => return self.desync(side, ts_ns, reason, out),
            }
        }
        if self.dirs[i].phase == Phase::Desync {
            self.stats.bytes_skipped += bytes.len() as u64;
            return;
        }
        // The reader is moved out so the sink can borrow the whole connection.
        let mut reader = std::mem::take(&mut self.dirs[i].reader);
        let result = reader.feed(
            bytes,
            &mut Sink {
                conn: self,
                side,
                ts_ns,
                out,
            },
        );
        self.dirs[i].reader = reader;
        if let Err(reason) = result {
            self.desync(side, ts_ns, reason, out);
        }
    }

    /// The capture lost `missing_bytes` that `side` sent: that direction is desynchronised.
    pub fn gap(&mut self, side: Side, ts_ns: u64, missing_bytes: u64, out: &mut Vec<CallEvent>) {
        self.stats.gaps += 1;
        self.stats.lost_bytes += missing_bytes;
        self.desync(side, ts_ns, Desync::Lost(missing_bytes), out);
    }

    /// The connection is gone: every open call ends abnormally.
    pub fn close(&mut self, ts_ns: u64, out: &mut Vec<CallEvent>) {
        let side = self.client.map_or(Side::B, Side::other);
        let at = Origin {
            ts_ns,
            side,
            role: Role::Response,
        };
        self.calls
            .close(at, "connection closed", out, &mut self.stats);
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
            // limit), so this side is the server, whose first bytes are its SETTINGS frame.
            self.assign(side, false)?;
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

    fn desync(&mut self, side: Side, ts_ns: u64, reason: Desync, out: &mut Vec<CallEvent>) {
        let i = side_index(side);
        if self.dirs[i].phase == Phase::Desync {
            return;
        }
        let dir = &mut self.dirs[i];
        dir.phase = Phase::Desync;
        dir.reader = FrameReader::new();
        dir.block = None;
        self.stats.desyncs += 1;
        let (what, abandoned) = match self.client {
            Some(c) if c == side => ("client→server", self.calls.direction_lost(Role::Request)),
            Some(_) => ("server→client", self.calls.direction_lost(Role::Response)),
            None => ("connection", 0),
        };
        // Its SETTINGS can no longer be seen, so the other side's limits are unknown.
        self.refresh_hpack_bound(side.other());
        let mut text =
            format!("{what} desynchronised: {reason}; decoding of this direction stopped");
        if abandoned > 0 {
            text.push_str(&format!(" ({abandoned} open calls abandoned)"));
        }
        out.push(CallEvent {
            ts_ns,
            side,
            stream: 0,
            kind: CallEventKind::Notice { text },
        });
    }

    /// The frame size `sender`'s frames must respect: what the receiver announced, the larger of
    /// acknowledged and pending values, or the protocol maximum when the receiver is unseen.
    fn frame_limit(&self, sender: Side) -> u32 {
        let recv = &self.dirs[side_index(sender.other())];
        if recv.phase == Phase::Desync {
            return MAX_FRAME_LEN;
        }
        recv.unacked
            .iter()
            .filter_map(|s| s.max_frame_size)
            .fold(recv.acked.max_frame_size, u32::max)
    }

    /// Re-derives the bound on `sender`'s HPACK table size updates from the receiver's SETTINGS.
    fn refresh_hpack_bound(&mut self, sender: Side) {
        let recv = &self.dirs[side_index(sender.other())];
        let bound = (recv.phase != Phase::Desync).then(|| {
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
            if !matches!(frame, Frame::Settings { ack: false, .. }) {
                return Err(Desync::NoInitialSettings(head.kind));
            }
            self.dirs[i].phase = Phase::Frames { first: false };
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
        if !push {
            let at = self.origin(side, ts_ns);
            self.calls
                .headers(at, stream, &list, end_stream, out, &mut self.stats);
        }
        Ok(())
    }
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
