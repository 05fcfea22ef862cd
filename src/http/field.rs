//! Header field names and values that may reach the wire (RFC 9110 §5.1, §5.5).
//!
//! ```text
//! field-name  = token
//! token       = 1*tchar
//! tchar       = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//!               "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
//! field-value = *field-content      ; VCHAR, obs-text, SP and HTAB
//! ```
//!
//! Every header ringo writes from a handler's strings (names, values, content types)
//! passes these checks first: a CR or LF in a value would start a new header line
//! (response splitting), so nothing with a control byte other than HTAB is ever sent.
//! The byte classes are `chars`' tables, shared with the request parsers.

use super::chars::{self, FIELD_VALUE, TCHAR};
use super::words;

/// Whether `name` is a valid field name (a non-empty token).
pub(crate) fn is_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| chars::is(&TCHAR, b))
}

/// Whether `value` may be sent as a field value (no CR, LF, NUL or other control byte
/// except HTAB).
pub(crate) fn is_value(value: &[u8]) -> bool {
    // The field-value bytes are all but the controls other than HTAB: found a word at
    // a time (this runs on every response header a handler or middleware sets).
    let mut at = 0;
    while let Some(control) = words::first_control(value, at) {
        if value[control] != b'\t' {
            debug_assert!(!chars::is(&FIELD_VALUE, value[control]));
            return false;
        }
        at = control + 1;
    }
    debug_assert!(value.iter().all(|&b| chars::is(&FIELD_VALUE, b)));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tokens() {
        for ok in ["Set-Cookie", "x", "X-Request-Id", "a!#$%&'*+-.^_`|~9"] {
            assert!(is_name(ok.as_bytes()), "{ok}");
        }
        // Empty, separators, whitespace and controls are not tokens.
        for bad in ["", "a b", "a:b", "a\r\nb", "a\0", "(x)", "a/b", "ä"] {
            assert!(!is_name(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn values_refuse_line_breaks_and_controls() {
        for ok in ["text/plain; charset=utf-8", "a\tb", "", "caf\u{e9}", "\"quoted\""] {
            assert!(is_value(ok.as_bytes()), "{ok:?}");
        }
        // CR/LF split the head (injection); NUL and other controls are refused too.
        for bad in ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\0b", "a\x7fb", "a\x1bb"] {
            assert!(!is_value(bad.as_bytes()), "{bad:?}");
        }
        // The word-at-a-time check agrees with the byte class everywhere.
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'v'; len];
                    value[at] = b;
                    let want = value.iter().all(|&c| chars::is(&FIELD_VALUE, c));
                    assert_eq!(is_value(&value), want, "len {len}, {b:#04x} at {at}");
                }
            }
        }
    }
}
