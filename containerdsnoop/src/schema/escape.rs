//! Terminal-safe escaping of everything a traced process controls (strings, bytes, map keys).
//!
//! A traced process can put `\x1b[2J`, a C1 CSI (`U+009B`) or a right-to-left override in a
//! container name; printed raw, that would clear or reorder the user's terminal. Every byte that
//! is not plainly printable is written as an escape instead: `\n \r \t \" \\`, `\xNN` for C0 and
//! DEL, and `\u{NNNN}` for C1 controls and invisible formatting characters.

use std::fmt::Write as _;

/// Characters other than C0/DEL that must not reach a terminal raw: C1 controls and
/// invisible or direction-changing formatting characters (bidi overrides, zero-width ones).
pub fn is_unsafe_nonascii(c: char) -> bool {
    matches!(c,
        '\u{80}'..='\u{9f}'          // C1 controls (CSI, OSC, ...)
        | '\u{ad}'                   // soft hyphen
        | '\u{34f}'                  // combining grapheme joiner
        | '\u{61c}'                  // arabic letter mark
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // hangul fillers (invisible)
        | '\u{180e}'                 // mongolian vowel separator
        | '\u{200b}'..='\u{200f}'    // zero-width space/joiners, LRM, RLM
        | '\u{2028}'..='\u{202e}'    // line/paragraph separators, bidi embeddings/overrides
        | '\u{2060}'..='\u{206f}'    // word joiner, invisible operators, bidi isolates
        | '\u{feff}'                 // BOM / zero-width no-break space
        | '\u{fff9}'..='\u{fffb}'    // interlinear annotation
        | '\u{e0000}'..='\u{e007f}'  // tag characters
    )
}

/// True for characters written as-is inside quotes.
fn is_plain(c: char) -> bool {
    !(c.is_ascii_control() || is_unsafe_nonascii(c))
}

/// True when `s` reads as text: no controls other than `\t \n \r`, nothing invisible.
/// Used to decide whether `bytes` are shown as a string.
pub fn is_printable_text(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r') || is_plain(c))
}

/// Append `s` escaped (without quotes).
pub fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe_nonascii(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Append `"s"` escaped.
pub fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Escape a string into a new `String` (no quotes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s);
    out
}

/// Append bytes as a quoted string: as text when they are printable UTF-8, else with `\xNN`
/// for every byte that is not printable ASCII. At most `max` bytes are shown; a longer value
/// ends in `…` and its total length.
pub fn push_quoted_bytes(out: &mut String, b: &[u8], max: usize) {
    let shown = &b[..b.len().min(max)];
    match std::str::from_utf8(b) {
        Ok(s) if is_printable_text(s) => {
            // Cut on a character boundary so the preview stays valid text.
            let mut end = shown.len();
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            push_quoted(out, &s[..end]);
        }
        _ => {
            out.push('"');
            for &byte in shown {
                match byte {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x20..=0x7e => out.push(byte as char),
                    _ => {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
            }
            out.push('"');
        }
    }
    if b.len() > shown.len() {
        let _ = write!(out, "…({} bytes)", b.len());
    }
}

/// `0a1b2c…(1234 bytes)`: the last resort when bytes are not even protobuf wire format.
pub fn hex_preview(b: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(2 * b.len().min(max) + 16);
    for byte in &b[..b.len().min(max)] {
        let _ = write!(out, "{byte:02x}");
    }
    if b.len() > max {
        out.push('…');
    }
    let _ = write!(out, "({} bytes)", b.len());
    out
}
