//! The one property every rendered line must have, whatever the traced bytes were: nothing in it
//! can drive a terminal. Checked independently of the renderers' own escaping predicates.

/// Why `c` must never reach the user's terminal raw, if it must not.
pub fn unsafe_char(c: char) -> Option<&'static str> {
    match c {
        '\u{1b}' => Some("ESC"),
        '\u{07}' => Some("BEL"),
        '\u{7f}' => Some("DEL"),
        '\u{0}'..='\u{1f}' => Some("C0 control"),
        '\u{80}'..='\u{9f}' => Some("C1 control"),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => Some("bidi override"),
        _ => None,
    }
}

/// Panics, naming the character and where it is, if `out` holds anything but printable text
/// and the line breaks between rows.
pub fn assert_terminal_safe(what: &str, out: &str) {
    for (i, c) in out.char_indices() {
        if c == '\n' {
            continue;
        }
        if let Some(why) = unsafe_char(c) {
            let from = out[..i].char_indices().rev().nth(40).map_or(0, |(j, _)| j);
            panic!(
                "{what}: raw {why} U+{:04X} at byte {i}, after {:?}",
                c as u32,
                &out[from..i]
            );
        }
    }
}

/// The same check over bytes that must be UTF-8 (a printer's whole output).
pub fn assert_terminal_safe_bytes(what: &str, out: &[u8]) {
    match std::str::from_utf8(out) {
        Ok(s) => assert_terminal_safe(what, s),
        Err(e) => panic!("{what}: output is not UTF-8: {e}"),
    }
}
