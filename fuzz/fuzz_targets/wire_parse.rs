//! Kernel record bytes -> Chunk (`wire::parse`), and the `--raw -o json` replay reader.
#![no_main]

use containerdsnoop_decode::record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = record::chunk::parse(data, 0x5eed_f00d) {
        assert!(
            c.data.len() <= c.span_len as usize,
            "payload longer than its span"
        );
        assert!(c.missing() as usize + c.data.len() == c.span_len as usize);
        let _ = (c.missing_reason(), c.backend());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for c in record::chunks_from_raw_jsonl(text) {
            let _ = c.missing();
        }
    }
});
