//! The ttrpc connection decoder (`ttrpc::Connection`): both directions, gaps, close, with the
//! client known or not, with default or tiny limits. Each direction holds at most one frame
//! (`max_frame`) or its resync window; calls stay within `max_streams`; close ends them all.
//!
//! Input: see `containerdsnoop_fuzz::conn_ops` (limits bit 0: tiny limits; bits 1-2: client
//! unknown, A or B).
#![no_main]

use containerdsnoop_decode::{
    protocol::call::Side,
    protocol::ttrpc::{Connection, Limits},
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
            max_streams: 4,
            max_frame: 256,
            resync_window: 512,
        }
    };
    let client = match (sel >> 1) & 3 {
        1 => Some(Side::A),
        2 => Some(Side::B),
        _ => None,
    };
    let bound = 2 * limits.max_frame.max(limits.resync_window);
    let mut conn = Connection::new(limits).with_client(client);
    conn_ops::run(&mut input, &mut conn, |d, _| {
        assert!(d.buffered() <= bound, "buffered {} > {bound}", d.buffered());
    });
    assert!(conn.open_calls() <= limits.max_streams);
    assert_eq!(conn.open_calls(), 0, "calls left open after close");
});
