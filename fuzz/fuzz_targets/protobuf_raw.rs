//! Schema-less protobuf: `schema::parse_raw` at any depth limit, and `decode(None, ..)` rendered
//! to text and JSON. Output is terminal-safe and the JSON parses.
//!
//! Input: `depth:u8` (depth limit for parse_raw and rendering), message bytes.
#![no_main]

use containerdsnoop_decode::schema::{
    RenderOptions, decode, json_to_string, parse_raw, to_json, to_text,
};
use containerdsnoop_fuzz::{input::Input, safe::assert_terminal_safe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let depth = usize::from(input.u8() % 128);
    let bytes = input.rest();
    let _ = parse_raw(bytes, depth);
    let decoded = decode(None, bytes);
    let opts = RenderOptions {
        max_depth: depth,
        max_text_len: 4096,
        ..RenderOptions::default()
    };
    let text = to_text(&decoded, &opts);
    assert_terminal_safe("to_text", &text);
    assert!(
        text.len() <= opts.max_text_len + 3,
        "text of {} bytes",
        text.len()
    );
    let json = json_to_string(&to_json(&decoded, &opts));
    assert_terminal_safe("to_json", &json);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
        panic!("to_json wrote invalid JSON ({e}): {json}");
    }
});
