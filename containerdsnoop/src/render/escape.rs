//! Terminal-safe text: every byte a traced process wrote passes through here before it is
//! printed, so that no control character or escape sequence can drive the user's terminal.

use std::fmt::Write as _;

/// Whether `c` may be printed as itself: graphic characters and plain space only. C0/C1
/// controls, DEL and the invisible formatting characters used for spoofing (bidi overrides,
/// zero-width characters, BOM) are escaped.
fn printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2069 | 0xFEFF | 0xFFF9..=0xFFFB)
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
        c if printable(c) => out.push(c),
        c if (c as u32) < 0x100 => push_hex_byte(c as u8, out),
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
        assert_eq!(s, "a\\x9b31mb\\u{202e}c\\u{200b}");
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
