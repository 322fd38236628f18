//! Frame by frame: what each decoded frame of one direction does to the connection (SETTINGS
//! bookkeeping, header blocks assembled across CONTINUATION frames and decoded with the sender's
//! HPACK table, a late join recognised from a first frame that is not SETTINGS) and which stream
//! events it hands to the sink. Owns [`Receiver`], which the frame reader drives and which is
//! handed the connection's state it works on.

use super::desync::Desync;
use super::direction::{
    BlockStart, Direction, PendingBlock, Phase, Start, frame_limit, refresh_hpack_bound,
};
use crate::protocol::call::{Role, Side};
use crate::protocol::http2::codec::FrameSink;
use crate::protocol::http2::frame::{self, Frame, Head, error_code_name};
use crate::protocol::http2::hpack::HeaderList;
use crate::protocol::http2::limits::Limits;
use crate::protocol::http2::sink::{Origin, StreamSink};
use crate::protocol::http2::stats::Stats;
use crate::protocol::kit::Roles;

/// Receives the frames `side` sent, stamped `ts_ns`: the connection's state they change, lent
/// for one chunk of bytes.
pub(super) struct Receiver<'a> {
    /// Both directions, indexed by `Side::index`: a frame of one binds the other (SETTINGS).
    pub(super) dirs: &'a mut [Direction; 2],
    pub(super) roles: &'a mut Roles,
    pub(super) stats: &'a mut Stats,
    pub(super) limits: &'a Limits,
    pub(super) side: Side,
    pub(super) ts_ns: u64,
    pub(super) sink: &'a mut dyn StreamSink,
}

impl FrameSink for Receiver<'_> {
    type Error = Desync;

    fn max_frame_size(&self) -> u32 {
        frame_limit(self.dirs, self.side)
    }

    fn frame(&mut self, head: &Head, payload: &[u8]) -> Result<(), Desync> {
        self.on_frame(head, payload)
    }
}

/// Tells the sink that `side` restarts without continuity (not a loss): for its role if known,
/// else for both roles it may play.
pub(super) fn resume_roles(roles: Roles, side: Side, ts_ns: u64, sink: &mut dyn StreamSink) {
    for &role in roles.possible(side) {
        sink.resume(Origin { ts_ns, side, role }, false);
    }
}

/// `side`'s direction in notices: by role once the client is known, else by side.
pub(super) fn direction_name(roles: Roles, side: Side) -> &'static str {
    match roles.arrow(side) {
        Some(arrow) => arrow,
        None if side == Side::A => "A→B",
        None => "B→A",
    }
}

impl Receiver<'_> {
    fn origin(&self) -> Origin {
        Origin::of(*self.roles, self.side, self.ts_ns)
    }

    fn on_frame(&mut self, head: &Head, payload: &[u8]) -> Result<(), Desync> {
        let (side, ts_ns) = (self.side, self.ts_ns);
        self.stats.frames += 1;
        let frame = frame::parse(head, payload)?;
        let i = side.index();
        if let Phase::Frames { first: true } = self.dirs[i].phase {
            self.dirs[i].phase = Phase::Frames { first: false };
            if matches!(frame, Frame::Settings { ack: false, .. }) {
                // The server's first frame; a side known to be the client sent the preface.
                if self.roles.client() != Some(side) {
                    self.roles.learn(side, Role::Response);
                }
            } else if self.roles.client() == Some(side) {
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
                refresh_hpack_bound(self.dirs, side);
                resume_roles(*self.roles, side, ts_ns, self.sink);
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
        if self.roles.client().is_none()
            && matches!(frame, Frame::Data { .. } | Frame::RstStream { .. })
        {
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
                } if stream == block.start.stream => {
                    if block.buf.len() + fragment.len() > self.limits.max_header_block {
                        return Err(Desync::HeaderBlockTooLarge {
                            limit: self.limits.max_header_block,
                        });
                    }
                    block.buf.extend_from_slice(fragment);
                    if end_headers && let Some(b) = self.dirs[i].block.take() {
                        self.header_block(b.start, &b.buf)?;
                    }
                    Ok(())
                }
                _ => Err(Desync::InterleavedHeaderBlock {
                    stream: block.start.stream,
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
                let at = self.origin();
                self.sink.data(at, stream, data, end_stream);
            }
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                let start = BlockStart {
                    stream,
                    end_stream,
                    push: false,
                };
                self.start_block(start, end_headers, fragment)?;
            }
            Frame::PushPromise {
                stream,
                end_headers,
                fragment,
                ..
            } => {
                let start = BlockStart {
                    stream,
                    end_stream: false,
                    push: true,
                };
                self.start_block(start, end_headers, fragment)?;
            }
            Frame::Continuation { stream, .. } => {
                return Err(Desync::ContinuationWithoutHeaders(stream));
            }
            Frame::RstStream { stream, code } => {
                let at = self.origin();
                self.sink.reset(at, stream, code);
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
                refresh_hpack_bound(self.dirs, side.other());
            }
            Frame::Settings { ack: true, .. } => {
                // This side acknowledges the other side's oldest SETTINGS: from here on this
                // side's frames and header blocks obey them exactly.
                let other = &mut self.dirs[side.other().index()];
                if let Some(s) = other.unacked.pop_front() {
                    other.acked.apply(&s);
                }
                refresh_hpack_bound(self.dirs, side);
            }
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => {
                let at = self.origin();
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
                self.sink.notice(ts_ns, side, text);
                self.sink.goaway(at, last_stream, code);
            }
            Frame::Unknown { .. } => self.stats.unknown_frames += 1,
            Frame::Ping { .. } | Frame::Priority { .. } | Frame::WindowUpdate { .. } => {}
        }
        Ok(())
    }

    fn start_block(
        &mut self,
        start: BlockStart,
        end_headers: bool,
        fragment: &[u8],
    ) -> Result<(), Desync> {
        if fragment.len() > self.limits.max_header_block {
            return Err(Desync::HeaderBlockTooLarge {
                limit: self.limits.max_header_block,
            });
        }
        if end_headers {
            return self.header_block(start, fragment);
        }
        self.dirs[self.side.index()].block = Some(PendingBlock {
            start,
            buf: fragment.to_vec(),
        });
        Ok(())
    }

    fn header_block(&mut self, start: BlockStart, block: &[u8]) -> Result<(), Desync> {
        let side = self.side;
        self.stats.header_blocks += 1;
        let list = match self.dirs[side.index()].hpack.decode(block) {
            Ok(list) => list,
            Err(e) => {
                self.stats.hpack_errors += 1;
                return Err(Desync::Hpack(e));
            }
        };
        if list.truncated {
            self.stats.truncated_header_lists += 1;
        }
        if self.roles.client().is_none() {
            // Late join: the first header block whose role shows says who the client is.
            let Some(role) = classify(&list) else {
                self.stats.orphan_frames += 1;
                return Ok(());
            };
            self.roles.learn(side, role);
        }
        if !start.push {
            let at = self.origin();
            self.sink.headers(at, start.stream, &list, start.end_stream);
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
