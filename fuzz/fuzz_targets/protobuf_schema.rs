//! Protobuf rendering with the embedded schema: `schema::decode` with a message type, then
//! `to_text` and `to_json`. Output is terminal-safe, JSON parses, text respects its cap, and
//! wherever the table's fast path (`wire_text`) renders, its text is the slow path's exactly,
//! and wherever the JSON fast path (`wire_json`) accepts, its JSON is the slow path's exactly.
//!
//! Input: a first line naming the type (`/pkg.Service/Method req|resp`, or a full message
//! name, or anything else: then the type is picked by hashing the line), then message bytes.
#![no_main]

use std::sync::OnceLock;

use containerdsnoop_decode::schema::{
    Decoded, RenderOptions, decode, fits, json_message, json_to_string, to_json, to_text,
    wire_json, wire_json_ok, wire_text, write_json,
};
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
    same_as_slow_path(&desc, body, &decoded, &text, &opts);
    // Tight caps too: the fast path cuts and gives up on depth where the slow path does.
    let tight = RenderOptions {
        max_text_len: usize::from(head.get(1).copied().unwrap_or(0)),
        max_depth: 2 + usize::from(head.get(2).copied().unwrap_or(0) % 8),
        max_any_depth: usize::from(head.get(3).copied().unwrap_or(0) % 3),
        max_bytes_preview: 8,
        ..opts.clone()
    };
    same_as_slow_path(&desc, body, &decoded, &to_text(&decoded, &tight), &tight);
    let json = json_to_string(&to_json(&decoded, &opts));
    assert_terminal_safe("to_json", &json);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
        panic!("to_json wrote invalid JSON ({e}): {json}");
    }
    same_json_as_slow_path(&desc, body, &decoded, &json, &opts);
    same_json_as_slow_path(
        &desc,
        body,
        &decoded,
        &json_to_string(&to_json(&decoded, &tight)),
        &tight,
    );
});

/// Where `wire_json_ok` accepts, the schema decode succeeded and `wire_json` writes the slow
/// path's JSON (`json_message`, and the `to_json` tree `slow`) byte for byte.
fn same_json_as_slow_path(
    desc: &MessageDescriptor,
    body: &[u8],
    decoded: &Decoded,
    slow: &str,
    opts: &RenderOptions,
) {
    if !wire_json_ok(desc, body, opts) {
        return;
    }
    assert!(
        !decoded.is_schema_less(),
        "JSON fast path taken for bytes the schema rejects"
    );
    let (mut fast, mut direct) = (Vec::new(), Vec::new());
    write_json(&mut fast, &wire_json(desc, body, opts)).expect("writes to a Vec");
    write_json(&mut direct, &json_message(decoded, opts)).expect("writes to a Vec");
    let fast = String::from_utf8(fast).expect("UTF-8");
    assert_eq!(
        fast,
        String::from_utf8_lossy(&direct),
        "fast and slow JSON differ for {}",
        desc.full_name()
    );
    assert_eq!(
        fast,
        slow,
        "fast JSON and to_json differ for {}",
        desc.full_name()
    );
}

/// Where `wire_text` takes the fast path, the schema decode succeeded and the text is the same.
fn same_as_slow_path(
    desc: &MessageDescriptor,
    body: &[u8],
    decoded: &containerdsnoop_decode::schema::Decoded,
    slow: &str,
    opts: &RenderOptions,
) {
    let mut fast = String::new();
    if wire_text(desc, body, opts, &mut fast) {
        assert!(
            !decoded.is_schema_less(),
            "fast path taken for bytes the schema rejects"
        );
        assert_eq!(
            fast,
            slow,
            "fast and slow text differ for {}",
            desc.full_name()
        );
    } else {
        assert!(fast.is_empty(), "declined but left {fast:?}");
    }
}
