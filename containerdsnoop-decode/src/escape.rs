//! Terminal-safe text: the one escaping policy for everything a traced process wrote
//! (payloads, strings and bytes inside messages, map keys, process names), so that no control
//! character or escape sequence can drive the user's terminal.
//!
//! A traced process can put `\x1b[2J`, a C1 CSI (`U+009B`) or a right-to-left override in a
//! container name; printed raw, that would clear or reorder the user's terminal. Every character
//! that [`is_shown_as_is`] refuses is written as an escape instead: `\n \r \t \" \\`, `\xNN` for
//! C0 controls and DEL, `\u{NNNN}` for every other character, and `\xNN` for a byte that is not
//! UTF-8 at all.

use std::fmt::Write as _;

/// Characters that are neither controls nor whitespace but must not reach a terminal raw:
/// invisible or direction-changing formatting characters used for spoofing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}'                   // soft hyphen
        | '\u{34f}'                // combining grapheme joiner
        | '\u{61c}'                // arabic letter mark
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // hangul fillers (invisible)
        | '\u{180e}'               // mongolian vowel separator
        | '\u{200b}'..='\u{200f}'  // zero-width space/joiners, LRM, RLM
        | '\u{2028}'..='\u{202e}'  // line/paragraph separators, bidi embeddings/overrides
        | '\u{2060}'..='\u{206f}'  // word joiner, invisible operators, bidi isolates
        | '\u{feff}'               // BOM / zero-width no-break space
        | '\u{fff9}'..='\u{fffb}'  // interlinear annotation
        | '\u{e0000}'..='\u{e007f}' // tag characters
    )
}

/// Whether `c` may be printed as itself: graphic characters and the plain space. C0/C1
/// controls, DEL, every other whitespace and the invisible formatting characters are escaped.
pub fn is_shown_as_is(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace() || is_invisible(c))
}

/// True when `s` reads as text: nothing escaped but `\t \n \r`. Decides whether `bytes`
/// fields are shown as a string.
pub fn is_printable_text(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r') || is_shown_as_is(c))
}

/// Escapes bytes for display: valid UTF-8 printable characters as themselves, `\n`, `\t`, `\r`,
/// `\\`, `\"` as such, anything else as `\xNN` (bytes) or `\u{...}` (characters).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                escape_str_into(s, &mut out);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `good` is valid UTF-8 by construction of `valid_up_to`.
                if let Ok(s) = std::str::from_utf8(good) {
                    escape_str_into(s, &mut out);
                }
                let bad_len = e.error_len().unwrap_or(bad.len()).max(1).min(bad.len());
                for &b in &bad[..bad_len] {
                    push_hex_byte(b, &mut out);
                }
                rest = &bad[bad_len..];
            }
        }
    }
    out
}

/// Escapes a string for display (see [`escape_bytes`]).
pub fn escape_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_str_into(s, &mut out);
    out
}

/// Appends `s` escaped (without quotes).
pub fn push_escaped(out: &mut String, s: &str) {
    escape_str_into(s, out)
}

/// Appends `"s"` escaped.
pub fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    escape_str_into(s, out);
    out.push('"');
}

fn escape_str_into(s: &str, out: &mut String) {
    // Fast path: runs of printable ASCII (most of any text) are copied in one go.
    let mut rest = s;
    while !rest.is_empty() {
        let run = rest
            .bytes()
            .position(|b| !(0x20..0x7f).contains(&b) || b == b'\\' || b == b'"')
            .unwrap_or(rest.len());
        out.push_str(&rest[..run]);
        rest = &rest[run..];
        let Some(c) = rest.chars().next() else { break };
        escape_char(c, out);
        rest = &rest[c.len_utf8()..];
    }
}

fn escape_char(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        c if is_shown_as_is(c) => out.push(c),
        c if c.is_ascii_control() => push_hex_byte(c as u8, out),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `\xNN` without going through `fmt` (binary payloads are mostly this).
fn push_hex_byte(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Appends bytes as a quoted string: as text when they are printable UTF-8, else with `\xNN`
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
                    _ => push_hex_byte(byte, out),
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

/// Cuts `s` to at most `max` characters, ending with `...` when cut.
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_control() {
        let s = escape_bytes(b"\x1b[2J\x1b]0;pwned\x07ok\r\n");
        assert_eq!(s, "\\x1b[2J\\x1b]0;pwned\\x07ok\\r\\n");
        assert!(!s.chars().any(|c| c.is_control()));
    }

    #[test]
    fn escapes_c1_and_bidi() {
        let s = escape_str("a\u{9b}31mb\u{202e}c\u{200b}");
        assert_eq!(s, "a\\u{9b}31mb\\u{202e}c\\u{200b}");
    }

    /// Regression (issue 10): the table's escaping and the schema's let different characters
    /// through (the table passed U+00AD and tag characters, the schema passed U+00A0 and other
    /// whitespace). Every printer now asks [`is_shown_as_is`], so each character is either shown
    /// by all of them or by none.
    #[test]
    fn regression_one_escape_policy_for_every_printer() {
        for cp in (0..0x3_0000).chain(0xe_0000..0xe_0100) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let s = c.to_string();
            let mut quoted = String::new();
            push_quoted(&mut quoted, &s);
            let mut quoted_bytes = String::new();
            push_quoted_bytes(&mut quoted_bytes, s.as_bytes(), 16);
            let shown = [
                escape_str(&s) == s,
                escape_bytes(s.as_bytes()) == s,
                quoted == format!("\"{s}\""),
                is_printable_text(&s) || matches!(c, '\t' | '\n' | '\r'),
            ];
            let expected = is_shown_as_is(c) && c != '"' && c != '\\';
            assert!(
                shown.iter().take(3).all(|&x| x == expected),
                "U+{cp:04X}: shown {shown:?}, policy {expected}"
            );
            assert_eq!(
                shown[3],
                is_shown_as_is(c) || matches!(c, '\t' | '\n' | '\r')
            );
            if !expected {
                assert!(
                    !escape_str(&s).chars().any(|e| !is_shown_as_is(e)),
                    "U+{cp:04X}"
                );
            }
        }
        for c in [
            '\u{ad}',
            '\u{a0}',
            '\u{2028}',
            '\u{e0041}',
            '\u{9b}',
            '\u{1b}',
        ] {
            assert!(!is_shown_as_is(c), "{c:?}");
        }
    }

    #[test]
    fn keeps_printable_unicode_and_marks_invalid_utf8() {
        assert_eq!(escape_bytes("héllo wörld".as_bytes()), "héllo wörld");
        assert_eq!(escape_bytes(b"a\xffb\xc3"), "a\\xffb\\xc3");
    }

    #[test]
    fn ellipsize_cuts_on_chars() {
        assert_eq!(ellipsize("abcdef", 10), "abcdef");
        assert_eq!(ellipsize("abcdefghij", 6), "abc...");
        assert_eq!(ellipsize("ééééééé", 5), "éé...");
    }
}
