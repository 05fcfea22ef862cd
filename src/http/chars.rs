//! Byte classes of the HTTP and URI grammars, as const 256-entry tables.
//!
//! One table per ABNF rule that the wire parsers check byte by byte; each quotes its rule.
//! The tables are the single source: `request` and `chunked` look bytes up here and never
//! spell a class out again. No parsing logic lives in this file.

/// A 256-entry membership table for one byte class.
pub(crate) type Class = [bool; 256];

/// The table holding every byte in `ranges` (inclusive pairs) and in `singles`.
const fn class(ranges: &[(u8, u8)], singles: &[u8]) -> Class {
    let mut t = [false; 256];
    let mut r = 0;
    while r < ranges.len() {
        let (lo, hi) = ranges[r];
        let mut b = lo as usize;
        while b <= hi as usize {
            t[b] = true;
            b += 1;
        }
        r += 1;
    }
    let mut s = 0;
    while s < singles.len() {
        t[singles[s] as usize] = true;
        s += 1;
    }
    t
}

const ALNUM: [(u8, u8); 3] = [(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')];

/// `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" /
/// "|" / "~" / DIGIT / ALPHA` (RFC 9110 section 5.6.2); a `token` is `1*tchar`.
pub(crate) static TCHAR: Class = class(&ALNUM, b"!#$%&'*+-.^_`|~");

/// `field-vchar = VCHAR / obs-text`, plus `SP` and `HTAB` that may sit between them
/// (RFC 9110 section 5.5): every byte a field value may hold. The same set is what may
/// follow the backslash of a `quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )`.
pub(crate) static FIELD_VALUE: Class = class(&[(0x21, 0x7e), (0x80, 0xff)], b" \t");

/// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text` (RFC 9110 section 5.6.4).
pub(crate) static QDTEXT: Class = class(&[(0x23, 0x5b), (0x5d, 0x7e), (0x80, 0xff)], b"\t !");

/// The single bytes of `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986
/// section 3.2.2), with `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` and
/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`.
/// `%` is not in it: a `pct-encoded` triple is checked by the caller. An IPv4 address is
/// a reg-name.
pub(crate) static REG_NAME: Class = class(&ALNUM, b"-._~!$&'()*+,;=");

/// `IPvFuture`'s tail: `1*( unreserved / sub-delims / ":" )` (RFC 3986 section 3.2.2).
pub(crate) static IPV_FUTURE: Class = class(&ALNUM, b"-._~!$&'()*+,;=:");

/// Whether `b` is in `class`.
#[inline(always)]
pub(crate) fn is(class: &Class, b: u8) -> bool {
    class[usize::from(b)]
}

/// The value of a `HEXDIG` (either case, as RFC 9112's chunk-size and RFC 3986's
/// pct-encoded accept), or `None`.
#[inline]
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_their_rules() {
        let tchar: Vec<u8> = (0..=255u8).filter(|&b| is(&TCHAR, b)).collect();
        assert_eq!(tchar.len(), 62 + 15);
        for b in *b"()<>@,;:\\\"/[]?={} \t\x7f" {
            assert!(!is(&TCHAR, b), "{:?} is a delimiter", b as char);
        }
        assert!(is(&QDTEXT, b'!') && !is(&QDTEXT, b'"') && !is(&QDTEXT, b'\\') && is(&QDTEXT, b'#'));
        assert!(is(&FIELD_VALUE, b'\t') && !is(&FIELD_VALUE, b'\r') && !is(&FIELD_VALUE, 0x7f));
        assert!(!is(&REG_NAME, b'%') && !is(&REG_NAME, b':') && !is(&REG_NAME, b'@'));
        assert!(!is(&REG_NAME, b'/') && !is(&REG_NAME, b' ') && !is(&REG_NAME, b'['));
        assert!(is(&IPV_FUTURE, b':') && !is(&IPV_FUTURE, b'%'));
        assert_eq!(hex_value(b'F'), Some(15));
        assert_eq!(hex_value(b'g'), None);
    }
}
