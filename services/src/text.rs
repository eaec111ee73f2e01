//! Text from clients, made safe to keep and to show.
//!
//! Postgres `text` cannot hold a NUL; a name with control or bidirectional-override characters
//! can pretend to be another in a log or an admin's table. Names are refused when they carry
//! such characters ([`has_deceptive_characters`]); free text that is kept (a block reason, the
//! name given in a failed login) is stored with those characters escaped as `\u{…}`
//! ([`escape_free_text`]), so that nothing is lost and nothing is hidden. [`hex`] writes bytes
//! (digests, MACs) as text.

/// Whether `c` may not appear in a name: a control character (NUL included), or one that
/// changes how the text around it is displayed (bidirectional overrides and isolates, zero-width
/// joiners and marks, the byte-order mark).
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Whether `text` has a character [`is_deceptive`] refuses.
pub fn has_deceptive_characters(text: &str) -> bool {
    text.chars().any(is_deceptive)
}

/// `text` with each deceptive character written as `\u{…}` (and `\` as `\\`, so that the
/// escape cannot be forged), at most `max_chars` characters of the original.
pub fn escape_free_text(text: &str, max_chars: usize) -> String {
    let mut escaped = String::with_capacity(text.len().min(max_chars * 4));
    for c in text.chars().take(max_chars) {
        if c == '\\' {
            escaped.push_str("\\\\");
        } else if is_deceptive(c) && c != '\n' && c != '\t' {
            escaped.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deceptive_characters_are_escaped_and_the_escape_cannot_be_forged() {
        assert_eq!(escape_free_text("ok", 10), "ok");
        assert_eq!(escape_free_text("a\u{0}b", 10), "a\\u{0}b");
        assert_eq!(escape_free_text("evil\u{202E}txt", 20), "evil\\u{202e}txt");
        assert_eq!(escape_free_text("line\nnext", 20), "line\nnext");
        assert_eq!(escape_free_text("\\u{0}", 20), "\\\\u{0}");
        assert_eq!(escape_free_text("abcdef", 3), "abc");
        assert!(has_deceptive_characters("zero\u{200B}width"));
        assert!(has_deceptive_characters("bell\u{7}"));
        assert!(!has_deceptive_characters("Grüße, 東京"));
    }
}
