//! Protobuf rendering with the embedded schema: `schema::decode` with a message type, then
//! `to_text` and `to_json`. Output is terminal-safe, JSON parses, text respects its cap.
//!
//! Input: a first line naming the type (`/pkg.Service/Method req|resp`, or a full message
//! name, or anything else: then the type is picked by hashing the line), then message bytes.
#![no_main]

use std::sync::OnceLock;

use containerdsnoop_decode::schema::{RenderOptions, decode, fits, json_to_string, to_json, to_text};
use containerdsnoop_fuzz::{safe::assert_terminal_safe, schema};
use libfuzzer_sys::fuzz_target;
use prost_reflect::MessageDescriptor;

fn all_messages() -> &'static [MessageDescriptor] {
    static ALL: OnceLock<Vec<MessageDescriptor>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v: Vec<_> = schema().pool().all_messages().collect();
        v.sort_by(|a, b| a.full_name().cmp(b.full_name()));
        v
    })
}

fn pick(head: &[u8]) -> MessageDescriptor {
    let line = String::from_utf8_lossy(head);
    if let Some((path, role)) = line.split_once(' ')
        && let Some(m) = schema().method(path)
    {
        return if role == "req" { m.input } else { m.output };
    }
    if let Some(d) = schema().message(&line) {
        return d;
    }
    let all = all_messages();
    let h = head.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    all[h % all.len()].clone()
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().take(256).position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (
            &data[..data.len().min(1)],
            data.get(1..).unwrap_or_default(),
        ),
    };
    let desc = pick(head);
    let _ = fits(&desc, body);
    let decoded = decode(Some(&desc), body);
    let opts = RenderOptions {
        redact: head.first().is_none_or(|b| b & 1 == 0),
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
