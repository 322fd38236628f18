//! What a header block on a call says: request headers (method, namespace, metadata, encoding,
//! and where an unknown `:path` came from, for method inference), response headers (HTTP status,
//! encoding), and the status trailers (or a trailers-only response) end a call with. Owns
//! [`RequestHead`] and [`ResponseHead`]; what they do to the calls is `calls.rs`'.

use std::sync::Arc;

use super::compress::Encoding;
use super::status;
use crate::protocol::call::{Method, Status};
use crate::protocol::http2::hpack::HeaderList;

/// Name shown for a header field whose name is unknown (late join). `<` and `>` cannot occur in
/// a real header name, so it cannot be mistaken for one.
pub const UNKNOWN_NAME: &str = "<unknown>";

/// Why a call's status is not shown: its trailers refer to header table entries from before
/// decoding started (late join, lost bytes), so `grpc-status` cannot be read.
pub const UNKNOWN_STATUS: &str = "status unknown (header table entry from before decoding started)";

/// The header that carries the containerd namespace of a call.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// What a request header block says.
#[derive(Debug)]
pub(super) struct RequestHead {
    /// From `:path`, when its entry is known.
    pub(super) method: Option<Method>,
    pub(super) namespace: Option<Arc<str>>,
    /// `content-type: application/grpc[+proto…]`, or unknown: HTTP/2 on a runtime's socket.
    pub(super) grpc: bool,
    pub(super) encoding: Encoding,
    /// Every field in wire order, unknown names shown as [`UNKNOWN_NAME`].
    pub(super) metadata: Vec<(String, Option<String>)>,
    /// Some field's name comes from a table entry from before decoding started: a missing
    /// `:path` is then worth inferring (a block that simply lacks it is shown as it is).
    pub(super) unknown_names: bool,
    /// The unknown table entry `:path` came from, if that can be named.
    pub(super) path_slot: Option<usize>,
}

impl RequestHead {
    pub(super) fn read(list: &HeaderList) -> RequestHead {
        let method = list.get(":path").map(|p| Method {
            name: Arc::from(p),
            inferred: false,
        });
        let grpc = match list.get("content-type") {
            Some(ct) => ct.starts_with("application/grpc"),
            // Its entry predates decoding: HTTP/2 on a runtime's socket is gRPC.
            None => has_unknown(list),
        };
        let metadata = list
            .fields
            .iter()
            .map(|f| {
                let name = f
                    .name
                    .as_deref()
                    .map_or_else(|| UNKNOWN_NAME.to_string(), lossy);
                (name, f.value.as_deref().map(lossy))
            })
            .collect();
        RequestHead {
            method,
            namespace: list.get(NAMESPACE_HEADER).map(Arc::from),
            grpc,
            encoding: Encoding::from_header(list.get("grpc-encoding")),
            metadata,
            unknown_names: list.fields.iter().any(|f| f.name.is_none()),
            path_slot: path_slot(list),
        }
    }
}

/// What a response header block says before it ends the call (as trailers).
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) http_status: Option<u32>,
    pub(super) encoding: Encoding,
}

impl ResponseHead {
    pub(super) fn read(list: &HeaderList) -> ResponseHead {
        ResponseHead {
            http_status: list.get(":status").and_then(|s| s.parse::<u32>().ok()),
            encoding: Encoding::from_header(list.get("grpc-encoding")),
        }
    }

    /// Informational (1xx) headers: the real response headers follow.
    pub(super) fn is_interim(&self) -> bool {
        self.http_status.is_some_and(|s| (100..200).contains(&s))
    }
}

/// The status a call ends with when `list` (trailers, or a trailers-only response) ends its
/// response: gRPC's from `grpc-status` for a gRPC call, else the HTTP status.
pub(super) fn end_status(list: &HeaderList, grpc: bool, http_status: Option<u32>) -> Status {
    if grpc {
        trailer_status(list, http_status)
    } else {
        Status {
            code: http_status,
            message: None,
            abnormal: None,
        }
    }
}

/// The status gRPC trailers give, or why they give none.
fn trailer_status(list: &HeaderList, http_status: Option<u32>) -> Status {
    match list.get("grpc-status").and_then(status::parse_code) {
        Some(code) => Status {
            code: Some(code),
            message: list.get("grpc-message").map(status::percent_decode),
            abnormal: None,
        },
        None if has_unknown(list) => Status {
            code: None,
            message: None,
            abnormal: Some(UNKNOWN_STATUS.to_string()),
        },
        None => Status {
            code: None,
            message: None,
            abnormal: Some(match http_status {
                Some(s) => format!("HTTP status {s} without grpc-status"),
                None => "trailers without grpc-status".to_string(),
            }),
        },
    }
}

/// Whether some field's name or value comes from a table entry from before decoding started.
fn has_unknown(list: &HeaderList) -> bool {
    list.fields
        .iter()
        .any(|f| f.name.is_none() || f.value.is_none())
}

/// Which field of a request header block holds `:path` when its entry is unknown: the unknown
/// indexed field right after `:scheme` (grpc-go's order is `:method`, `:scheme`, `:path`,
/// `:authority`), else the first unknown one among the pseudo-headers. Its slot names it.
fn path_slot(list: &HeaderList) -> Option<usize> {
    let fields = &list.fields;
    let after_scheme = fields
        .iter()
        .position(|f| f.name_str() == Some(":scheme"))
        .and_then(|i| fields.get(i + 1))
        .filter(|f| f.name.is_none());
    let first_unknown = || {
        fields
            .iter()
            .take_while(|f| f.name.as_deref().is_none_or(|n| n.starts_with(b":")))
            .find(|f| f.name.is_none())
    };
    after_scheme.or_else(first_unknown)?.unknown_slot
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
