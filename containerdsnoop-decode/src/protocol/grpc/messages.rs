//! A call's bytes becoming `Message` events: gRPC messages out of the deframer (decompressed,
//! or reported unavailable with the reason), non-gRPC bodies delivered whole at END_STREAM, and
//! the evidence each message adds to the inference of an unknown method.

use super::call::Call;
use super::compress;
use super::framing::Deframed;
use super::shared::Shared;
use crate::protocol::call::{Body, CallEvent, Role};
use crate::protocol::http2::Origin;

impl Shared {
    /// END_STREAM on the half `at.role` names: report a message cut short, or deliver a
    /// non-gRPC body.
    pub(super) fn finish_half(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        out: &mut Vec<CallEvent>,
    ) {
        let grpc = call.grpc;
        let max_message = self.limits.max_message;
        let half = call.half(at.role);
        let body = if grpc {
            half.deframer
                .partial()
                .map(|(claimed, seen)| Body::Unavailable {
                    reason: format!("stream ended inside a message ({seen} bytes seen)"),
                    len: claimed,
                })
        } else if half.raw_len == 0 {
            None
        } else if half.raw_len > max_message as u64 || half.raw_dropped {
            self.stats.oversize_messages += 1;
            Some(Body::Unavailable {
                reason: format!("body exceeds the {max_message}-byte limit"),
                len: half.raw_len,
            })
        } else {
            Some(Body::Raw(std::mem::take(&mut half.raw)))
        };
        if let Some(body) = body {
            self.message(call, at, stream, body, out);
        }
    }

    /// The body of one piece the deframer cut from `role`'s half.
    pub(super) fn body(&mut self, call: &mut Call, role: Role, piece: Deframed) -> Body {
        match piece {
            Deframed::Message {
                compressed: false,
                data,
            } => Body::Protobuf(data),
            Deframed::Message {
                compressed: true,
                data,
            } => {
                let max = self.limits.max_decompressed;
                match compress::decompress(&call.half(role).encoding, &data, max) {
                    Ok(plain) => Body::Protobuf(plain),
                    Err(e) => {
                        self.stats.decompress_failures += 1;
                        Body::Unavailable {
                            reason: e.to_string(),
                            len: data.len() as u64,
                        }
                    }
                }
            }
            Deframed::Oversize { len, .. } => {
                self.stats.oversize_messages += 1;
                Body::Unavailable {
                    reason: format!("message exceeds the {}-byte limit", self.limits.max_message),
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

    /// Emits the next message of the half `at.role` names, scoring it for inference first.
    pub(super) fn message(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        body: Body,
        out: &mut Vec<CallEvent>,
    ) {
        let index = call.counts.next(at.role);
        self.stats.messages += 1;
        let (mut settle, mut retry) = (false, false);
        if let (Some(p), Some(cat)) = (call.pending.as_deref_mut(), self.infer.inference.catalog())
        {
            if let Body::Protobuf(bytes) = &body {
                p.evidence.observe(cat, at.role, index, bytes);
            }
            // The first response message usually settles it.
            settle = p.holding && at.role == Role::Response;
            // Released unnamed: each later message may still name it.
            retry = !p.holding && call.method.is_none();
        }
        if retry {
            self.try_name(call);
        }
        let bytes = match &body {
            Body::Protobuf(b) | Body::Raw(b) => b.len(),
            Body::Text { text, .. } => text.len(),
            Body::Unavailable { .. } => 0,
        };
        let ev = at.at().message(&call.tag(stream), at.role, index, body);
        self.emit(call, ev, bytes, out);
        self.settle(call, settle, out);
    }
}

impl Shared {
    /// A DATA payload for the half `at.role` names: the gRPC messages it completes, or more
    /// bytes of a non-gRPC body.
    pub(super) fn deliver(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        data: &[u8],
        out: &mut Vec<CallEvent>,
    ) {
        if call.grpc {
            let mut pieces = Vec::new();
            call.half(at.role).deframer.push(data, &mut pieces);
            for piece in pieces {
                let body = self.body(call, at.role, piece);
                self.message(call, at, stream, body, out);
            }
        } else {
            let max = self.limits.max_message;
            let half = call.half(at.role);
            half.raw_len += data.len() as u64;
            if half.raw_len <= max as u64 {
                half.raw.extend_from_slice(data);
            } else {
                // Over the limit: stop keeping bytes, only count them.
                half.raw = Vec::new();
            }
        }
    }

    /// Too much is waiting for the rest of its message on this connection: gives up the message
    /// of the half `at.role` names (the one that just grew) rather than grow without bound.
    pub(super) fn abandon(
        &mut self,
        call: &mut Call,
        at: Origin,
        stream: u32,
        out: &mut Vec<CallEvent>,
    ) {
        let max = self.limits.max_buffered;
        let reason = format!("connection buffer limit of {max} bytes exceeded");
        let half = call.half(at.role);
        if let Some(len) = half.deframer.abandon() {
            self.stats.oversize_messages += 1;
            self.message(call, at, stream, Body::Unavailable { reason, len }, out);
        } else if !half.raw.is_empty() {
            half.raw = Vec::new();
            half.raw_dropped = true;
        }
    }
}
