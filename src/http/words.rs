//! Word-at-a-time byte helpers: eight bytes (or sixteen, with SSE2) compared or searched
//! at once.
//!
//! The per-request paths compare and search short byte strings (a method, a field name,
//! a `Host` value, a content type, the `Date` value) and the lines of every head. A call
//! into libc's `memcmp` costs more than the comparison itself at these lengths
//! (measured: about 55 instructions a request went to it), and a byte loop costs one
//! branch a byte; these read eight bytes at a time with plain integer operations, and
//! [`find`] sixteen with SSE2 where the target has it. Every helper is held to its
//! byte-loop equivalent by the tests below.

use super::chars::{self, TCHAR};

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

/// A byte class the head scanner searches for ([`find`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A control byte: below SP, or DEL (a line's end, or a byte no field value holds
    /// except HTAB).
    Control,
    /// Outside `%x21-7E`: the end of a request target, or a byte no target holds.
    OutsideTarget,
    /// `?` or `%`: where a path ends or an escape starts.
    QueryOrEscape,
    /// A byte outside `tchar` (RFC 9110 section 5.6.2): the end of a field name.
    NotToken,
}

impl Stop {
    /// Whether `b` is in the class.
    #[inline(always)]
    fn byte(self, b: u8) -> bool {
        match self {
            Stop::Control => b < 0x20 || b == 0x7f,
            Stop::OutsideTarget => !(0x21..=0x7e).contains(&b),
            Stop::QueryOrEscape => b == b'?' || b == b'%',
            Stop::NotToken => !chars::is(&TCHAR, b),
        }
    }

    /// The high bit of each byte of `word` in the class, exact up to the first.
    #[inline(always)]
    fn word(self, word: u64) -> u64 {
        match self {
            Stop::Control => below(word, 0x20) | equal(word, 0x7f),
            Stop::OutsideTarget => below(word, 0x21) | equal(word, 0x7f) | (word & HIGHS),
            Stop::QueryOrEscape => equal(word, b'?') | equal(word, b'%'),
            // No arithmetic test for the class: a table lookup a byte, without a branch
            // (the search reads whole words only in rests shorter than sixteen bytes,
            // or where SSE2 is missing).
            Stop::NotToken => word
                .to_le_bytes()
                .iter()
                .enumerate()
                .fold(0, |hits, (i, &b)| hits | (u64::from(!chars::is(&TCHAR, b)) << (8 * i + 7))),
        }
    }

    /// One bit for each of the sixteen bytes of `block` in the class (exact: no carry
    /// between bytes), the first byte lowest.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn block(self, block: &[u8; 16]) -> u32 {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8, _mm_sub_epi8,
        };
        // SAFETY: `block` is sixteen readable bytes and `_mm_loadu_si128` reads sixteen
        // bytes with no alignment requirement; the other intrinsics only need SSE2,
        // which every x86_64 target has (the build enables it: no run-time check needed).
        unsafe {
            let x = _mm_loadu_si128(block.as_ptr().cast());
            let splat = |b: u8| _mm_set1_epi8(b as i8);
            let is = |b: u8| _mm_cmpeq_epi8(x, splat(b));
            // min(x, n) == x, max(x, n) == x: the unsigned comparisons SSE2 has.
            let at_most = |n: u8| _mm_cmpeq_epi8(_mm_min_epu8(x, splat(n)), x);
            let at_least = |n: u8| _mm_cmpeq_epi8(_mm_max_epu8(x, splat(n)), x);
            // lo <= x <= hi: x - lo wraps above hi - lo for every x outside.
            let within = |lo: u8, hi: u8| {
                let offset = _mm_sub_epi8(x, splat(lo));
                _mm_cmpeq_epi8(_mm_min_epu8(offset, splat(hi - lo)), offset)
            };
            let hits = match self {
                Stop::Control => _mm_or_si128(at_most(0x1f), is(0x7f)),
                Stop::OutsideTarget => _mm_or_si128(at_most(0x20), at_least(0x7f)),
                Stop::QueryOrEscape => _mm_or_si128(is(b'?'), is(b'%')),
                // Not tchar: b <= SP, b >= DEL, or a delimiter: `"(),/`, the run
                // `:;<=>?@`, the run `[\]`, `{` and `}`.
                Stop::NotToken => {
                    let edges = _mm_or_si128(at_most(0x20), at_least(0x7f));
                    let runs = _mm_or_si128(within(b':', b'@'), within(b'[', b']'));
                    let singles = _mm_or_si128(
                        _mm_or_si128(_mm_or_si128(is(b'"'), is(b'(')), _mm_or_si128(is(b')'), is(b','))),
                        _mm_or_si128(_mm_or_si128(is(b'/'), is(b'{')), is(b'}')),
                    );
                    _mm_or_si128(edges, _mm_or_si128(runs, singles))
                }
            };
            _mm_movemask_epi8(hits) as u32
        }
    }
}

/// The first byte at or after `from` in the class `stop`, or `None` (also when `from`
/// is past the end).
///
/// Written by hand because the head scanner's searches measured worth it: sixteen bytes
/// a step with SSE2 on x86_64 (a browser's 600-byte head costs a few hundred
/// instructions of searching where a byte loop costs thousands), eight with word
/// arithmetic elsewhere and for short rests. Whole chunks are read without a bounds check
/// each, and the tail as one last chunk overlapping the bytes already searched.
#[inline(always)]
pub(crate) fn find(buf: &[u8], from: usize, stop: Stop) -> Option<usize> {
    let rest = buf.get(from..)?;
    #[cfg(target_arch = "x86_64")]
    if let Some(first) = rest.first_chunk::<16>() {
        // Most searches (a line, a name, a target) end in their first block.
        let hits = stop.block(first);
        if hits != 0 {
            return Some(from + hits.trailing_zeros() as usize);
        }
        let blocks = rest.chunks_exact(16);
        let read = rest.len() - blocks.remainder().len();
        for (i, block) in blocks.enumerate().skip(1) {
            // Always a whole block: the conversion costs nothing.
            let hits = block.first_chunk::<16>().map_or(0, |block| stop.block(block));
            if hits != 0 {
                return Some(from + i * 16 + hits.trailing_zeros() as usize);
            }
        }
        if read == rest.len() {
            return None;
        }
        let last = rest.len() - 16;
        let block = rest.last_chunk::<16>()?;
        // The block's first bytes were searched already.
        let hits = stop.block(block) & (!0u32 << (read - last));
        return (hits != 0).then(|| from + last + hits.trailing_zeros() as usize);
    }
    find_by_words(rest, stop).map(|i| from + i)
}

/// [`find`] within `from..end`, reading one whole block of `buf` past `end` where `buf`
/// has it: a short range inside a longer buffer (a request target inside its head) costs
/// one block instead of a word search with its tail.
#[inline(always)]
pub(crate) fn find_before(buf: &[u8], from: usize, end: usize, stop: Stop) -> Option<usize> {
    debug_assert!(from <= end && end <= buf.len());
    #[cfg(target_arch = "x86_64")]
    if end.checked_sub(from).is_some_and(|len| len <= 16) {
        if let Some(block) = buf.get(from..).and_then(|rest| rest.first_chunk::<16>()) {
            // Only the range's bytes count.
            let hits = stop.block(block) & ((1u32 << (end - from)) - 1);
            return (hits != 0).then(|| from + hits.trailing_zeros() as usize);
        }
    }
    find(buf.get(..end)?, from, stop)
}

/// [`find`] from the start of `rest`, eight bytes a step: the search where SSE2 is
/// missing, and for rests shorter than sixteen bytes.
#[inline(always)]
fn find_by_words(rest: &[u8], stop: Stop) -> Option<usize> {
    let words = rest.chunks_exact(8);
    let tail = words.remainder();
    let read = rest.len() - tail.len();
    for (i, word) in words.enumerate() {
        let hits = word.first_chunk::<8>().map_or(0, |word| stop.word(u64::from_le_bytes(*word)));
        if hits != 0 {
            return Some(i * 8 + first_flagged(hits));
        }
    }
    if tail.is_empty() {
        return None;
    }
    match rest.last_chunk::<8>() {
        Some(word) => {
            // The bytes before `read` were searched (none is in the class, so no false
            // flag follows from them): only the tail's flags count.
            let last = rest.len() - 8;
            let hits = stop.word(u64::from_le_bytes(*word)) & (!0u64 << (8 * (read - last)));
            (hits != 0).then(|| last + first_flagged(hits))
        }
        None => tail.iter().position(|&b| stop.byte(b)),
    }
}

/// The first control byte (below SP, or DEL) from `from`; `None` if `buf` has none.
#[inline]
pub(crate) fn first_control(buf: &[u8], from: usize) -> Option<usize> {
    find(buf, from, Stop::Control)
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
    if (8..=16).contains(&len) {
        // Two overlapping words, no loop: the common `Host` and content-type lengths.
        let fold = ONES * u64::from(fold);
        let word = |s: &[u8], at: usize| word_at(s, at).unwrap_or(0);
        return (word(a, 0) | fold) ^ word(b, 0) | (word(a, len - 8) | fold) ^ word(b, len - 8) == 0;
    }
    if len > 16 {
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

    /// A byte class as a plain predicate: what the searches are held to.
    type ByteTest = fn(u8) -> bool;

    #[test]
    fn searches_match_byte_loops() {
        each_one_byte_change(|s, case| {
            let plain = s.iter().position(|&c| c < 0x20 || c == 0x7f);
            assert_eq!(first_control(s, 0), plain, "{case}");
            let classes: [(Stop, ByteTest); 4] = [
                (Stop::Control, |c| c < 0x20 || c == 0x7f),
                (Stop::OutsideTarget, |c| !(0x21..=0x7e).contains(&c)),
                (Stop::QueryOrEscape, |c| c == b'?' || c == b'%'),
                (Stop::NotToken, |c| !chars::is(&TCHAR, c)),
            ];
            // Starts that put the changed byte in a first block, a later block, the
            // overlapping last block or word, and the byte loop of a short rest.
            for from in [0, 1, 7, 8, 9, 15, 16, 17, 23, 33, s.len(), s.len() + 1] {
                for (stop, in_class) in classes {
                    let plain = s.get(from..).and_then(|r| r.iter().position(|&c| in_class(c)));
                    assert_eq!(find(s, from, stop), plain.map(|i| from + i), "{case}, {stop:?} from {from}");
                    if let Some(rest) = s.get(from..) {
                        // The word search alone too, as targets without SSE2 run it.
                        assert_eq!(find_by_words(rest, stop), plain, "{case}, {stop:?} by words from {from}");
                        // Ranges that end before the buffer does.
                        for end in [from, from + 1, from + 9, from + 16, from + 17]
                            .into_iter()
                            .filter(|&e| e <= s.len())
                        {
                            let plain = s[from..end].iter().position(|&c| in_class(c)).map(|i| from + i);
                            assert_eq!(
                                find_before(s, from, end, stop),
                                plain,
                                "{case}, {stop:?} in {from}..{end}"
                            );
                        }
                    }
                }
            }
            let plain = s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
            assert_eq!(needs_json_escape(s), plain, "{case}");
            assert_eq!(str_of(s), std::str::from_utf8(s).ok(), "{case}");
        });
        assert_eq!(str_of("café".as_bytes()), Some("café"));
    }
}
