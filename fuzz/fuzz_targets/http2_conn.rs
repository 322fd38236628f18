//! The gRPC-over-HTTP/2 connection decoder (`grpc::Connection`): both directions, gaps, close;
//! with the default limits or with tiny ones that small inputs can reach. Memory held stays
//! within `CallLimits::max_buffered` plus one `resync::RESYNC_WINDOW` per direction (bytes kept
//! while searching for a frame boundary), calls within `CallLimits::max_streams`, and close ends
//! every call.
//!
//! Input: see `containerdsnoop_fuzz::conn_ops` (limits bit 0: tiny limits).
#![no_main]

use containerdsnoop_decode::protocol::grpc::{CallLimits, Connection, Limits};
use containerdsnoop_decode::protocol::http2::{self, hpack, resync::RESYNC_WINDOW};
use containerdsnoop_fuzz::{conn_ops, input::Input};
use libfuzzer_sys::fuzz_target;

fn limits(sel: u8) -> Limits {
    if sel & 1 == 0 {
        return Limits::default();
    }
    Limits {
        http2: http2::Limits {
            max_header_block: 512,
            hpack: hpack::Limits {
                table_hard_cap: 256,
                max_header_list: 512,
                max_string: 128,
            },
            max_unacked_settings: 2,
        },
        calls: CallLimits {
            max_streams: 4,
            max_buffered: 1024,
            max_message: 512,
            max_decompressed: 2048,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let limits = limits(input.u8());
    let bound = limits.calls.max_buffered + 2 * RESYNC_WINDOW;
    let mut conn = Connection::new(limits);
    conn_ops::run(&mut input, &mut conn, |d, _| {
        assert!(d.buffered() <= bound, "buffered {} > {bound}", d.buffered());
    });
    assert!(conn.open_calls() <= limits.calls.max_streams);
    assert_eq!(conn.open_calls(), 0, "calls left open after close");
});
