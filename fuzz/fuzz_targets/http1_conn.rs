//! The HTTP/1.1 connection decoder (`http1::Connection`): requests, responses, chunked bodies,
//! upgrades, gaps and close, with the client known or not, with default or tiny limits. Held
//! bytes stay within the head, body, resync and chunked-trailer limits of both directions.
//!
//! Input: see `containerdsnoop_fuzz::conn_ops` (limits bit 0: tiny limits; bits 1-2: client
//! unknown, A or B).
#![no_main]

use containerdsnoop_decode::{
    protocol::call::Side,
    protocol::http1::{
        Connection, Limits,
        chunked::{MAX_SIZE_LINE, MAX_TRAILERS},
    },
};
use containerdsnoop_fuzz::{conn_ops, input::Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.u8();
    let limits = if sel & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head: 256,
            max_body: 128,
            max_pending: 2,
            resync_window: 256,
        }
    };
    let client = match (sel >> 1) & 3 {
        1 => Some(Side::A),
        2 => Some(Side::B),
        _ => None,
    };
    let bound = 2
        * (limits.max_head + limits.max_body + limits.resync_window + MAX_SIZE_LINE + MAX_TRAILERS);
    let mut conn = Connection::new(limits).with_client(client);
    conn_ops::run(&mut input, &mut conn, |d, _| {
        assert!(d.buffered() <= bound, "buffered {} > {bound}", d.buffered());
    });
    assert!(conn.open_calls() <= limits.max_pending + 1);
});
