//! The end of HTTP on a connection: docker's attach and exec ask to upgrade (`101 Switching
//! Protocols`) or are hijacked with a raw-stream content type, CONNECT tunnels. From then on
//! both directions carry raw bytes, one message per captured write (nothing else marks a
//! boundary), as messages of the call that switched. Owns [`Raw`], a direction's state after
//! the switch.

use super::head::Head;
use super::message::Owner;
use super::shared::Shared;
use crate::protocol::call::{Body, CallEvent};
use crate::protocol::kit::{At, CallTag};

/// A direction after the switch: its bytes are messages of `call`, numbered on from `index`.
#[derive(Debug)]
pub(super) struct Raw {
    pub(super) call: CallTag,
    /// The index of the next message.
    index: u64,
}

impl Raw {
    /// Raw messages of `call` from `index` on: 0 for the server's, and for the client's the
    /// request messages the call sent before the switch (they keep counting).
    pub(super) fn new(call: CallTag, index: u64) -> Raw {
        Raw { call, index }
    }

    /// The server (`at.side`) accepted the switch that `h` answers: the call ends, with a
    /// notice that no HTTP follows. Returns the server direction's raw state.
    pub(super) fn switched(
        at: At,
        owner: &Owner,
        h: &Head,
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) -> Raw {
        sh.stats.upgrades += 1;
        out.push(at.end(&owner.call, owner.status(), owner.start_ts));
        let what = h
            .get("upgrade")
            .map_or_else(|| "a raw stream".to_string(), |u| format!("{u:?}"));
        let text = format!("connection switched to {what}: no more HTTP on it");
        out.push(at.notice(owner.call.stream, text));
        Raw::new(owner.call.clone(), 0)
    }

    /// Raw bytes after the switch: all of `bytes` (not empty) is one message.
    pub(super) fn message(
        &mut self,
        at: At,
        bytes: &[u8],
        sh: &mut Shared,
        out: &mut Vec<CallEvent>,
    ) {
        sh.stats.raw_bytes += bytes.len() as u64;
        let role = sh.roles.of_or_request(at.side);
        let body = Body::Raw(bytes.to_vec());
        sh.emit_message(at, &self.call, role, self.index, body, out);
        self.index += 1;
    }
}
