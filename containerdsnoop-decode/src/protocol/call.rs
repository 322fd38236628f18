//! The protocol-independent model of what flows on one connection: calls made of request and
//! response messages, as the gRPC, ttrpc and HTTP/1.1 decoders emit them and the renderers
//! consume them. Decoders never see the kernel or the terminal; renderers never see frames.

use std::sync::Arc;

/// Which socket of a connection's pair sent something. The connection table names the socket
/// with the lower inode number `A`; decoders work out for themselves which side is the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// 0 for A, 1 for B: an index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// The role of what this side sends, once the client side is known.
    pub fn role(self, client: Option<Side>) -> Option<Role> {
        client.map(|c| {
            if c == self {
                Role::Request
            } else {
                Role::Response
            }
        })
    }
}

/// The name of a call's method, e.g. `/containerd.services.version.v1.Version/Version`, or
/// `GET /v1.41/containers/json` for HTTP/1.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    pub name: Arc<str>,
    /// The name was not seen on the wire but inferred (late join): never show it as certain.
    pub inferred: bool,
}

/// Whether a message travels from the client (request) or from the server (response).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Request,
    Response,
}

/// A message body as the protocol delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A protobuf message (gRPC, ttrpc), already decompressed.
    Protobuf(Vec<u8>),
    /// A text body (HTTP/1.1), already de-chunked; `content_type` as sent.
    Text {
        content_type: Option<String>,
        text: String,
    },
    /// Bytes of no known structure.
    Raw(Vec<u8>),
    /// The body could not be recovered (lost bytes, decompression failed or exceeded its cap,
    /// over a size limit); `reason` says which and `len` how big it claimed to be.
    Unavailable { reason: String, len: u64 },
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// gRPC/ttrpc status code (0 OK), or the HTTP status for HTTP/1.1.
    pub code: Option<u32>,
    pub message: Option<String>,
    /// Why it ended when it was not a normal end (RST_STREAM code, GOAWAY, connection closed).
    pub abnormal: Option<String>,
}

impl Status {
    /// A call's own end: its status `code` and message (an empty message is none).
    pub fn ended(code: u32, message: impl Into<String>) -> Status {
        let message = message.into();
        Status {
            code: Some(code),
            message: (!message.is_empty()).then_some(message),
            abnormal: None,
        }
    }

    /// An end the call did not send itself (lost bytes, a closed connection): no code.
    pub fn abnormal(why: impl Into<String>) -> Status {
        Status::default().cut_short(why)
    }

    /// The same end, reached abnormally: `why` it was not the call's own.
    pub fn cut_short(mut self, why: impl Into<String>) -> Status {
        self.abnormal = Some(why.into());
        self
    }
}

/// How a call turned out, as `-x/--errors` and the error counts of the exit summary see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Ended with its own OK status (gRPC/ttrpc 0, HTTP below 400).
    Succeeded,
    /// A failure status (gRPC/ttrpc not 0, HTTP 400 and up), or cut short: reset, GOAWAY,
    /// its connection closed or evicted, its end lost by the capture.
    Failed,
    /// Still open when the tracer stopped or the capture file ended: not known to have failed.
    Unfinished,
    /// Its status was not seen: bytes lost by the capture, or a status that only a header
    /// table entry from before decoding started could say. Not known to have failed.
    Unseen,
}

/// What every reason for an end whose status the capture could not see says: the HTTP/1.1
/// decoder's `capture lost N bytes` and `response lost by the capture`, and gRPC's
/// `grpc::UNKNOWN_STATUS` (a late join's header table).
const UNSEEN_MARKS: [&str; 3] = [
    "capture lost",
    "lost by the capture",
    "from before decoding started",
];

impl Status {
    /// How the call that ended with this status turned out. `http`: the code is an HTTP
    /// status, else a gRPC/ttrpc one. `stopping`: the end comes from the tracer stopping or the
    /// capture file ending, so an end without the call's own status means it was still open.
    pub fn outcome(&self, http: bool, stopping: bool) -> Outcome {
        let failure_code = match self.code {
            Some(code) if http => code >= 400,
            Some(code) => code != 0,
            None => false,
        };
        match (failure_code, &self.abnormal) {
            (true, _) => Outcome::Failed,
            (false, Some(why)) if UNSEEN_MARKS.iter().any(|m| why.contains(m)) => Outcome::Unseen,
            (false, Some(_)) if stopping => Outcome::Unfinished,
            (false, Some(_)) => Outcome::Failed,
            (false, None) => Outcome::Succeeded,
        }
    }
}

/// Why a connection ended for the decoder, and so why its open calls end without an end of
/// their own. Every way a connection leaves the table goes through one of these, so no call is
/// ever dropped without an END row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// The sockets were closed (seen as a close, a reused socket identity or a FIN in a file).
    Closed,
    /// The connection table was full and this was its least recently active connection.
    Evicted,
    /// The tracer is stopping while the connection is still open.
    TracerStopped,
    /// A capture file (`-r`) ended while the connection was still open.
    CaptureEnded,
}

impl ConnEnd {
    /// The status text of a call ended this way.
    pub fn reason(self) -> &'static str {
        match self {
            ConnEnd::Closed => "connection closed",
            ConnEnd::TracerStopped => "tracer stopped",
            ConnEnd::CaptureEnded => "end of capture",
            ConnEnd::Evicted => "connection evicted (too many connections)",
        }
    }
}

/// One thing that happened on a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEvent {
    /// Kernel timestamp (ns, CLOCK_MONOTONIC) of the bytes that completed this event.
    pub ts_ns: u64,
    /// The socket that sent the bytes.
    pub side: Side,
    /// Stream id (HTTP/2, ttrpc) or request sequence number on the connection (HTTP/1.1).
    pub stream: u64,
    pub kind: CallEventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CallEventKind {
    /// Request headers / metadata: a call starts.
    Start {
        method: Option<Method>,
        /// Header or metadata fields in wire order; values unknown after a late join are `None`.
        metadata: Vec<(String, Option<String>)>,
    },
    /// One message of a call. `index` counts messages of this role on this stream from 0.
    Message {
        role: Role,
        index: u64,
        method: Option<Method>,
        /// The call's `containerd-namespace` request header, as captured at Start.
        namespace: Option<Arc<str>>,
        body: Body,
    },
    /// The call ended (trailers, RST_STREAM, connection end); latency from its Start.
    End {
        method: Option<Method>,
        /// The call's `containerd-namespace` request header, as captured at Start.
        namespace: Option<Arc<str>>,
        status: Status,
        latency_ns: Option<u64>,
    },
    /// A connection-level notice worth a row: GOAWAY, desynchronisation, resynchronisation.
    Notice { text: String },
}

#[cfg(test)]
mod conn_end_tests {
    use super::{ConnEnd, Outcome, Status};

    #[test]
    fn outcome_of_each_kind_of_end() {
        let ok = Status::ended(0, "");
        assert_eq!(ok.outcome(false, false), Outcome::Succeeded);
        assert_eq!(ok.outcome(false, true), Outcome::Succeeded);
        let not_found = Status::ended(5, "not found");
        assert_eq!(not_found.outcome(false, false), Outcome::Failed);
        assert_eq!(not_found.outcome(false, true), Outcome::Failed);
        assert_eq!(
            Status::ended(200, "OK").outcome(true, false),
            Outcome::Succeeded
        );
        assert_eq!(
            Status::ended(399, "").outcome(true, false),
            Outcome::Succeeded
        );
        assert_eq!(Status::ended(404, "").outcome(true, false), Outcome::Failed);
        let reset = Status::abnormal("RST_STREAM CANCEL from client");
        assert_eq!(reset.outcome(false, false), Outcome::Failed);
        // The same kind of end while the capture stops: the call was merely still open.
        let stopped = Status::abnormal(ConnEnd::TracerStopped.reason());
        assert_eq!(stopped.outcome(false, true), Outcome::Unfinished);
        // A 200 whose body was cut by a closed connection did not get its answer.
        let cut = Status::ended(200, "OK").cut_short("body cut short: connection closed");
        assert_eq!(cut.outcome(true, false), Outcome::Failed);
        // Ends the capture could not see are no failure, whatever else they say.
        for (unseen, http) in [
            (
                Status::abnormal(crate::protocol::grpc::UNKNOWN_STATUS),
                false,
            ),
            (Status::abnormal("response lost by the capture"), true),
            (
                Status::ended(200, "OK").cut_short("body cut short: capture lost 512 bytes"),
                true,
            ),
        ] {
            for stopping in [false, true] {
                let outcome = unseen.outcome(http, stopping);
                assert_eq!(outcome, Outcome::Unseen, "{unseen:?}");
            }
        }
        assert_eq!(
            Status::ended(500, "")
                .cut_short("body cut short: capture lost 1 bytes")
                .outcome(true, false),
            Outcome::Failed,
            "a failure status was seen"
        );
    }

    /// Issue #12: a call still open when the tracer stops did not see its connection close.
    #[test]
    fn issue_12_each_end_says_what_happened() {
        assert_eq!(ConnEnd::Closed.reason(), "connection closed");
        assert_eq!(ConnEnd::TracerStopped.reason(), "tracer stopped");
        assert_eq!(ConnEnd::CaptureEnded.reason(), "end of capture");
        assert_ne!(ConnEnd::Evicted.reason(), ConnEnd::Closed.reason());
    }
}
