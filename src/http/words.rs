//! Word-at-a-time byte helpers: eight bytes compared or searched at once.
//!
//! The per-request paths compare and search short byte strings (a method, a field name,
//! a `Host` value, a content type, the `Date` value). A call into libc's `memcmp` costs
//! more than the comparison itself at these lengths (measured: about 55 instructions a
//! request went to it), and a byte loop costs one branch a byte; these read eight bytes
//! at a time with plain integer operations. Every helper is held to its byte-loop
//! equivalent by the tests below.

pub(crate) const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
pub(crate) const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The eight bytes at `at` as a little-endian word (the first byte lowest).
#[inline]
pub(crate) fn word_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The high bit of each byte of `word` equal to `b`. Exact up to the first such byte;
/// bytes after it may be flagged too (a borrow runs upwards), so read only the first.
#[inline]
pub(crate) fn equal(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The high bit of each byte of `word` below `n` (`n` at most 0x80), exact up to the
/// first such byte, like [`equal`].
#[inline]
pub(crate) fn below(word: u64, n: u8) -> u64 {
    debug_assert!(n <= 0x80);
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// The index of the first byte flagged in `flags` (non-zero).
#[inline]
pub(crate) fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// The first control byte (below SP, or DEL) from `from`; `None` if `buf` has none.
pub(crate) fn first_control(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = word_at(buf, at) {
        let controls = below(word, 0x20) | equal(word, 0x7f);
        if controls != 0 {
            return Some(at + first_flagged(controls));
        }
        at += 8;
    }
    (at..buf.len()).find(|&i| buf[i] < 0x20 || buf[i] == 0x7f)
}

/// Whether `s` holds a byte a JSON string must escape: `"`, `\` or a control byte below
/// SP (what serde_json escapes; everything else it copies as it is).
pub(crate) fn needs_json_escape(s: &[u8]) -> bool {
    // A flag after a true one may be false, but one is only there after a true one.
    let specials = |word: u64| below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') != 0;
    let mut at = 0;
    while let Some(word) = word_at(s, at) {
        if specials(word) {
            return true;
        }
        at += 8;
    }
    match s.len().checked_sub(8) {
        // The last eight bytes, overlapping the words already read.
        Some(last) => word_at(s, last).is_some_and(specials),
        None => s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\'),
    }
}

/// `bytes` as text: ASCII (checked a word at a time by `is_ascii`) without UTF-8
/// validation, which costs a branch a byte on short strings; anything else through
/// `std::str::from_utf8`. Paths, ids and header values are nearly always ASCII, and
/// some are read several times a request.
#[inline]
pub(crate) fn str_of(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every byte is below 0x80 (just checked), and a sequence of ASCII
        // bytes is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// `a == b`, a word at a time: slices of 8 bytes or more are compared in words, the
/// last one overlapping the one before; shorter ones in up to three smaller loads.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    folded_eq(a, b, 0)
}

/// Whether the token `name` equals `lower` ignoring ASCII case, where `lower` is
/// lowercase letters and `-` only: then OR-ing `0x20` into every byte of `name` is a
/// case fold (the only other byte it maps onto `-` is CR, which no token holds), so the
/// comparison runs a word at a time like [`same_bytes`].
#[inline]
pub(crate) fn token_eq_lower(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'), "{lower:?}");
    debug_assert!(!name.contains(&b'\r'), "a token holds no CR");
    if name.len() != lower.len() {
        return false;
    }
    folded_eq(name, lower, 0x20)
}

/// `a` (each byte OR `fold`) equals `b`; equal lengths.
#[inline]
fn folded_eq(a: &[u8], b: &[u8], fold: u8) -> bool {
    let len = a.len();
    if len >= 8 {
        let fold = ONES * u64::from(fold);
        let word = |s: &[u8], at: usize| word_at(s, at).unwrap_or(0);
        let mut at = 0;
        while at + 8 < len {
            if word(a, at) | fold != word(b, at) {
                return false;
            }
            at += 8;
        }
        return word(a, len - 8) | fold == word(b, len - 8);
    }
    // Under eight bytes: two overlapping four-byte loads, or bytes.
    if len >= 4 {
        let fold = u32::from_ne_bytes([fold; 4]);
        let word = |s: &[u8], at: usize| {
            s.get(at..at + 4).and_then(|w| w.try_into().ok()).map_or(0, u32::from_le_bytes)
        };
        return word(a, 0) | fold == word(b, 0) && word(a, len - 4) | fold == word(b, len - 4);
    }
    a.iter().zip(b).all(|(&x, &y)| x | fold == y)
}

/// Calls `check` with every run of `a`s under 40 bytes long with one byte replaced by
/// each of the 256 values (`check` may change it further), and a description of the
/// case: the word-at-a-time helpers' tests compare them with byte loops on these.
#[cfg(test)]
pub(crate) fn each_one_byte_change(mut check: impl FnMut(&mut Vec<u8>, &str)) {
    for len in 0..40 {
        for at in 0..len {
            for b in 0..=255u8 {
                let mut s = vec![b'a'; len];
                s[at] = b;
                check(&mut s, &format!("len {len}, {b:#04x} at {at}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_match_byte_loops() {
        for len in 0..40 {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&base, &base.clone()));
            assert!(token_eq_lower(&base.to_ascii_uppercase(), &base));
            assert!(!same_bytes(&base, &[base.as_slice(), b"x"].concat()), "lengths differ");
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut other = base.clone();
                    other[at] = b;
                    assert_eq!(same_bytes(&other, &base), other == base, "len {len}, {b:#04x} at {at}");
                    if b != b'\r' {
                        let want = other.eq_ignore_ascii_case(&base);
                        assert_eq!(token_eq_lower(&other, &base), want, "len {len}, {b:#04x} at {at}");
                    }
                }
            }
        }
        for lower in [&b"content-length"[..], b"transfer-encoding", b"x-a"] {
            for at in 0..lower.len() {
                for b in (0..=255u8).filter(|&b| b != b'\r') {
                    let mut name = lower.to_vec();
                    name[at] = b;
                    let want = name.eq_ignore_ascii_case(lower);
                    assert_eq!(token_eq_lower(&name, lower), want, "{lower:?}, {b:#04x} at {at}");
                }
            }
        }
        assert!(token_eq_lower(b"Content-Length", b"content-length"));
    }

    #[test]
    fn searches_match_byte_loops() {
        each_one_byte_change(|s, case| {
            let plain = s.iter().position(|&c| c < 0x20 || c == 0x7f);
            assert_eq!(first_control(s, 0), plain, "{case}");
            let plain = s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
            assert_eq!(needs_json_escape(s), plain, "{case}");
            assert_eq!(str_of(s), std::str::from_utf8(s).ok(), "{case}");
        });
        assert_eq!(str_of("café".as_bytes()), Some("café"));
    }
}
