//! The end of HTTP on a connection: docker's attach and exec ask to upgrade (`101 Switching
//! Protocols`) or are hijacked with a raw-stream content type, CONNECT tunnels. From then on
//! both directions carry raw bytes, one message per captured write (nothing else marks a
//! boundary), as messages of the call that switched.

use super::conn::Connection;
use super::direction::{Phase, Step};
use super::exchange::Owner;
use super::head::Head;
use crate::protocol::call::{Body, CallEvent};
use crate::protocol::kit::{At, CallTag};

impl Connection {
    /// The server (`at.side`) accepted the switch: the call ends, and both directions carry
    /// raw bytes from now on.
    /// `requests_sent`: request messages of the call so far; the client's raw bytes are the
    /// call's next request messages, so their index keeps counting from there.
    pub(super) fn upgraded(
        &mut self,
        at: At,
        owner: Owner,
        requests_sent: u64,
        h: &Head,
        out: &mut Vec<CallEvent>,
    ) {
        self.stats.upgrades += 1;
        out.push(at.end(&owner.call, owner.status(), owner.start_ts));
        let what = h
            .get("upgrade")
            .map_or_else(|| "a raw stream".to_string(), |u| format!("{u:?}"));
        let text = format!("connection switched to {what}: no more HTTP on it");
        out.push(at.notice(owner.call.stream, text));
        let client = At::new(at.side.other(), at.ts_ns);
        self.dirs[at.side.index()].phase = Phase::Raw {
            call: owner.call.clone(),
            index: 0,
        };
        let was_waiting = matches!(
            self.dirs[client.side.index()].phase,
            Phase::AwaitUpgrade { .. } | Phase::Head
        );
        if was_waiting {
            self.dirs[client.side.index()].phase = Phase::Raw {
                call: owner.call,
                index: requests_sent,
            };
            // Bytes the client sent while waiting for the answer are the first raw message.
            self.process(client, &[], out);
        }
    }

    /// Raw bytes after the switch: all of `rest` is one message.
    pub(super) fn step_raw(
        &mut self,
        at: At,
        rest: &[u8],
        used: &mut usize,
        (call, index): (CallTag, u64),
        out: &mut Vec<CallEvent>,
    ) -> Step {
        let i = at.side.index();
        if rest.is_empty() {
            self.dirs[i].phase = Phase::Raw { call, index };
            return Step::Wait;
        }
        self.stats.raw_bytes += rest.len() as u64;
        *used += rest.len();
        let role = self.roles.of_or_request(at.side);
        self.emit_message(at, &call, role, index, Body::Raw(rest.to_vec()), out);
        self.dirs[i].phase = Phase::Raw {
            call,
            index: index + 1,
        };
        Step::Wait
    }

    /// The client's bytes after a request that asked to upgrade, before the server answered:
    /// held, bounded by the head limit.
    pub(super) fn step_await_upgrade(
        &mut self,
        at: At,
        rest: &[u8],
        owner: Owner,
        sent: u64,
    ) -> Step {
        let i = at.side.index();
        if rest.len() > self.limits.max_head {
            // A client streaming that much without an answer has been upgraded in all but
            // name (the answer was lost).
            self.dirs[i].phase = Phase::Raw {
                call: owner.call,
                index: sent,
            };
            return Step::Go;
        }
        self.dirs[i].phase = Phase::AwaitUpgrade { owner, sent };
        Step::Wait
    }
}
