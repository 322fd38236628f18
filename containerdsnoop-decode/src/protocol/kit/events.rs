//! Building call events: a decoder says where an event comes from ([`At`]: side and
//! timestamp) and which call it belongs to ([`CallTag`]); the builders fill in the rest, so no
//! decoder writes `CallEvent { ts_ns, side, stream, kind: CallEventKind::… }` by hand. Also
//! the per-call message counter that gives each message its `index`.

use std::sync::Arc;

use crate::protocol::call::{Body, CallEvent, CallEventKind, Method, Role, Side, Status};

/// Where an event comes from: the socket that sent the bytes and the kernel timestamp of the
/// bytes that completed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub side: Side,
    pub ts_ns: u64,
}

/// The call an event belongs to, as its rows name it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallTag {
    /// Stream id (HTTP/2, ttrpc) or request sequence number (HTTP/1.1).
    pub stream: u64,
    pub method: Option<Method>,
    /// The call's `containerd-namespace` request header, as captured at its start.
    pub namespace: Option<Arc<str>>,
}

impl CallTag {
    pub fn new(stream: u64, method: Option<Method>) -> CallTag {
        CallTag {
            stream,
            method,
            namespace: None,
        }
    }

    pub fn with_namespace(mut self, namespace: Option<Arc<str>>) -> CallTag {
        self.namespace = namespace;
        self
    }
}

impl At {
    pub fn new(side: Side, ts_ns: u64) -> At {
        At { side, ts_ns }
    }

    fn event(self, stream: u64, kind: CallEventKind) -> CallEvent {
        CallEvent {
            ts_ns: self.ts_ns,
            side: self.side,
            stream,
            kind,
        }
    }

    /// A call starts: its method and request headers (metadata) in wire order.
    pub fn start(
        self,
        stream: u64,
        method: Option<Method>,
        metadata: Vec<(String, Option<String>)>,
    ) -> CallEvent {
        self.event(stream, CallEventKind::Start { method, metadata })
    }

    /// Message `index` of `role` on `call`.
    pub fn message(self, call: &CallTag, role: Role, index: u64, body: Body) -> CallEvent {
        self.event(
            call.stream,
            CallEventKind::Message {
                role,
                index,
                method: call.method.clone(),
                namespace: call.namespace.clone(),
                body,
            },
        )
    }

    /// `call` ended with `status`; its latency runs from `started_ns` (unknown after a late
    /// join or for a call nothing was tracked of).
    pub fn end(self, call: &CallTag, status: Status, started_ns: Option<u64>) -> CallEvent {
        self.event(
            call.stream,
            CallEventKind::End {
                method: call.method.clone(),
                namespace: call.namespace.clone(),
                status,
                latency_ns: started_ns.map(|s| self.ts_ns.saturating_sub(s)),
            },
        )
    }

    /// A connection-level notice worth a row (desynchronisation, lost bytes, an upgrade).
    pub fn notice(self, stream: u64, text: String) -> CallEvent {
        self.event(stream, CallEventKind::Notice { text })
    }
}

/// Messages a call has carried in each direction, so each message gets its `index`: its
/// number within the call and direction, from 0, whatever framing carried it (an HTTP/1.1
/// body, then the raw bytes after an upgrade, keep counting on the same call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCount {
    requests: u64,
    responses: u64,
}

impl MessageCount {
    /// The index of the next message of `role`, which is counted.
    pub fn next(&mut self, role: Role) -> u64 {
        let n = match role {
            Role::Request => &mut self.requests,
            Role::Response => &mut self.responses,
        };
        let index = *n;
        *n += 1;
        index
    }

    /// Messages of `role` so far.
    pub fn sent(self, role: Role) -> u64 {
        match role {
            Role::Request => self.requests,
            Role::Response => self.responses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::kit::trace_line;

    fn get() -> Method {
        Method {
            name: Arc::from("GET /_ping"),
            inferred: false,
        }
    }

    #[test]
    fn builders_fill_in_the_call() {
        let call = CallTag::new(3, Some(get())).with_namespace(Some(Arc::from("ns")));
        let at = At::new(Side::B, 5_000);
        let m = at.message(&call, Role::Response, 2, Body::Raw(b"x".to_vec()));
        assert_eq!((m.ts_ns, m.side, m.stream), (5_000, Side::B, 3));
        assert!(matches!(
            &m.kind,
            CallEventKind::Message { namespace: Some(ns), method: Some(_), index: 2, .. } if &**ns == "ns"
        ));
        let e = at.end(&call, Status::ended(200, "OK"), Some(1_000));
        assert_eq!(trace_line(&e), "B#3 END 200 OK latency=4000ns");
        // A start after the end (clock skew between CPUs) is no negative latency.
        let e = At::new(Side::B, 10).end(&call, Status::default(), Some(20));
        assert_eq!(trace_line(&e), "B#3 END ? latency=0ns");
        let n = At::new(Side::A, 1).notice(0, "lost".into());
        assert_eq!(trace_line(&n), "A#0 NOTE lost");
    }

    #[test]
    fn messages_count_per_direction() {
        let mut c = MessageCount::default();
        assert_eq!(c.next(Role::Request), 0);
        assert_eq!(c.next(Role::Request), 1);
        assert_eq!(c.next(Role::Response), 0);
        assert_eq!((c.sent(Role::Request), c.sent(Role::Response)), (2, 1));
    }
}
