//! Who called: the one place that names a call's client (the side that sends its requests) for
//! the exit summary's clients table. Today that is the client process's name (comm, without the
//! pid: every `ctr` run is a new process, and `ctr` is who the user asks about); knowing more
//! about a process (its container or pod) means extending this function, not its callers.

use crate::{
    output::rows::{Row, RowKind},
    protocol::call::Side,
};

/// The client of `row`'s call: the process at the connection's non-listening end, else (roles
/// unknown) the sender of a request or the receiver of anything else; `?` when not known.
pub fn client_label(row: &Row) -> String {
    let client = row
        .conn
        .server
        .map(Side::other)
        .and_then(|side| row.conn.end(side));
    match client {
        Some(end) => end.comm.clone(),
        None if row.kind == RowKind::Req => row.comm.clone(),
        None => row.peer_comm.clone().unwrap_or_else(|| "?".to_string()),
    }
}
