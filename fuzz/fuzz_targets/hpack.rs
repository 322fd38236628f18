//! HPACK (`hpack::Decoder`): a sequence of header blocks through one decoder, so the dynamic
//! table carries over between blocks (and past errors). The table never exceeds its hard cap,
//! a decoded list never exceeds `max_header_list`, a string never exceeds `max_string`.
//!
//! Input: `sel:u8` (bit 0 tiny limits, bit 1 late join, bit 2 unknown protocol maximum), then
//! `len:u16le block[len]` per block.
#![no_main]

use containerdsnoop_decode::protocol::http2::hpack::{Decoder, Limits};
use containerdsnoop_fuzz::input::Input;
use libfuzzer_sys::fuzz_target;

const ENTRY_OVERHEAD: usize = 32;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.u8();
    let limits = if sel & 1 != 0 {
        Limits {
            table_hard_cap: 128,
            max_header_list: 256,
            max_string: 64,
        }
    } else {
        Limits::default()
    };
    let mut decoder = if sel & 2 != 0 {
        Decoder::late_join(limits)
    } else {
        Decoder::new(limits)
    };
    if sel & 4 != 0 {
        decoder.set_protocol_max(None);
    }
    while !input.is_empty() {
        let len = usize::from(input.u16());
        let block = input.bytes(len);
        if let Ok(list) = decoder.decode(block) {
            let mut size = 0;
            for f in &list.fields {
                let n = f.name.as_ref().map_or(0, |b| b.len());
                let v = f.value.as_ref().map_or(0, |b| b.len());
                assert!(n <= limits.max_string && v <= limits.max_string);
                size += n + v + ENTRY_OVERHEAD;
            }
            assert!(
                size <= limits.max_header_list,
                "header list of {size} bytes kept"
            );
        }
        assert!(decoder.table().size() <= limits.table_hard_cap);
    }
});
