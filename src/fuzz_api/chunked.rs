//! The `chunked` target: the chunked-body decoder against a strict reference decoder
//! written from RFC 9112 section 7.1, and against itself fed the same bytes in pieces.
//!
//! The reference reads the whole input at once and follows the grammar exactly:
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size      = 1*HEXDIG                          ; at most 16 digits here
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext       = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
//! trailer-section = *( field-name ":" OWS field-value OWS CRLF )
//! field-value     = *( VCHAR / obs-text / SP / HTAB )
//! quoted-string   = DQUOTE *( qdtext / "\" ( HTAB / SP / VCHAR / obs-text ) ) DQUOTE
//! ```
//!
//! and the decoder's bounds: a size line (size and extensions) of at most
//! [`MAX_LINE`] bytes, at most `max_body` bytes declared in all, at most `max_trailer`
//! trailer bytes (each line with its CR). The outcome is the body and the bytes it
//! used, "need more", or invalid. With `strict`, the decoder must agree exactly; without,
//! only where the reference accepts or needs more (today's decoder is more lenient).

use crate::http::chunked::{ChunkedDecoder, Progress};

/// Longest size line, as the decoder bounds it.
pub const MAX_LINE: usize = 4096;
/// The decoded-size bound used by [`run`].
pub const MAX_BODY: usize = 1 << 20;
/// The trailer-size bound used by [`run`].
pub const MAX_TRAILER: usize = 1024;
/// Inputs up to this long are also tried cut in two at every position.
const ALL_CUTS_UP_TO: usize = 64;

/// What decoding an input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A complete body that used this many input bytes.
    Done {
        /// The decoded body.
        body: Vec<u8>,
        /// Input bytes the chunked body took (later bytes are the next request's).
        used: usize,
    },
    /// A valid prefix of a chunked body.
    NeedMore,
    /// Not a chunked body (or past a bound).
    Invalid,
}

/// Runs one input; `Err` says which property broke.
pub fn run(data: &[u8], strict: bool) -> Result<(), String> {
    let whole = decode(data, &[]);
    let want = reference(data, MAX_BODY, MAX_TRAILER);
    let agree = match (&want, &whole) {
        (Outcome::Invalid, Outcome::Invalid) => true,
        (Outcome::Invalid, _) => !strict,
        (w, g) => w == g,
    };
    if !agree {
        return Err(format!("{:?}: decoder {whole:?}, reference {want:?}", String::from_utf8_lossy(data)));
    }
    let mut cut_sets: Vec<Vec<usize>> = vec![(1..data.len()).collect()];
    if data.len() <= ALL_CUTS_UP_TO {
        cut_sets.extend((1..data.len()).map(|i| vec![i]));
    } else {
        let h = data.iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        cut_sets.push(vec![h % data.len(), (h / 7) % data.len()]);
        cut_sets.push(vec![data.len() / 2]);
    }
    for mut cuts in cut_sets {
        cuts.sort_unstable();
        cuts.dedup();
        let split = decode(data, &cuts);
        if split != whole {
            return Err(format!(
                "{:?} cut at {cuts:?}: {split:?}, in one piece {whole:?}",
                String::from_utf8_lossy(data)
            ));
        }
    }
    Ok(())
}

/// Feeds `data` to the decoder in pieces cut at `cuts` (sorted), each piece alone, as
/// the connection engine does after dropping decoded bytes.
pub fn decode(data: &[u8], cuts: &[usize]) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().filter(|&&c| c > 0 && c < data.len()).chain(std::iter::once(&data.len())) {
        if to < from {
            continue;
        }
        match d.decode(&data[from..to], &mut body, MAX_BODY, MAX_TRAILER) {
            Err(_) => return Outcome::Invalid,
            Ok(Progress::Done(n)) => return Outcome::Done { body, used: from + n },
            Ok(Progress::NeedMore) => from = to,
        }
    }
    Outcome::NeedMore
}

/// Why the reference stopped: the input ended (need more) or broke the grammar.
enum Stop {
    End,
    Bad,
}

/// The strict reference decoder (see the module doc).
pub fn reference(data: &[u8], max_body: usize, max_trailer: usize) -> Outcome {
    let mut r = Reader { data, at: 0 };
    match r.body(max_body, max_trailer) {
        Ok(body) => Outcome::Done { body, used: r.at },
        Err(Stop::End) => Outcome::NeedMore,
        Err(Stop::Bad) => Outcome::Invalid,
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.data.get(self.at).copied().ok_or(Stop::End)
    }

    fn expect(&mut self, b: u8) -> Result<(), Stop> {
        if self.peek()? != b {
            return Err(Stop::Bad);
        }
        self.at += 1;
        Ok(())
    }

    fn crlf(&mut self) -> Result<(), Stop> {
        self.expect(b'\r')?;
        self.expect(b'\n')
    }

    fn skip_ws(&mut self) -> Result<(), Stop> {
        while matches!(self.peek()?, b' ' | b'\t') {
            self.at += 1;
        }
        Ok(())
    }

    fn token(&mut self) -> Result<(), Stop> {
        let start = self.at;
        while is_tchar(self.peek()?) {
            self.at += 1;
        }
        if self.at == start { Err(Stop::Bad) } else { Ok(()) }
    }

    fn quoted_string(&mut self) -> Result<(), Stop> {
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    let b = self.peek()?;
                    if !(b == b'\t' || b == b' ' || is_vchar_or_obs(b)) {
                        return Err(Stop::Bad);
                    }
                    self.at += 1;
                }
                b if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => self.at += 1,
                _ => return Err(Stop::Bad),
            }
        }
    }

    /// `chunk-size [ chunk-ext ] CRLF`, the size line bounded by [`MAX_LINE`].
    fn size_line(&mut self) -> Result<u64, Stop> {
        let start = self.at;
        let r = self.size_line_unbounded();
        let line = self.at - start;
        // The bound holds for a line still being read too.
        let over = match r {
            Ok(_) => line - 2 > MAX_LINE,
            Err(Stop::End) => self.data[start..].iter().take_while(|&&b| b != b'\r').count() > MAX_LINE,
            Err(Stop::Bad) => false,
        };
        if over { Err(Stop::Bad) } else { r }
    }

    fn size_line_unbounded(&mut self) -> Result<u64, Stop> {
        let mut size = 0u64;
        let mut digits = 0;
        while let Some(v) = (self.peek()? as char).to_digit(16) {
            digits += 1;
            if digits > 16 {
                return Err(Stop::Bad);
            }
            size = size << 4 | u64::from(v);
            self.at += 1;
        }
        if digits == 0 {
            return Err(Stop::Bad);
        }
        loop {
            let before = self.at;
            self.skip_ws()?;
            if self.peek()? != b';' {
                self.at = before; // whitespace is only allowed before `;` or `=`
                break;
            }
            self.at += 1;
            self.skip_ws()?;
            self.token()?;
            let before = self.at;
            self.skip_ws()?;
            if self.peek()? == b'=' {
                self.at += 1;
                self.skip_ws()?;
                if self.peek()? == b'"' { self.quoted_string()? } else { self.token()? }
            } else {
                self.at = before; // whitespace not followed by `=` belongs to the next `;`
            }
        }
        self.crlf()?;
        Ok(size)
    }

    /// `field-name ":" OWS field-value OWS CRLF`; returns the line's bytes with its CR.
    fn trailer_line(&mut self) -> Result<usize, Stop> {
        let start = self.at;
        self.token()?;
        self.expect(b':')?;
        loop {
            match self.peek()? {
                b'\r' => break,
                b if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => self.at += 1,
                _ => return Err(Stop::Bad),
            }
        }
        let counted = self.at - start + 1;
        self.crlf()?;
        Ok(counted)
    }

    fn body(&mut self, max_body: usize, max_trailer: usize) -> Result<Vec<u8>, Stop> {
        let mut body = Vec::new();
        let mut declared = 0u64;
        loop {
            let size = self.size_line()?;
            if size == 0 {
                break;
            }
            declared = declared.saturating_add(size);
            if declared > max_body as u64 {
                return Err(Stop::Bad);
            }
            let size = size as usize;
            let end = self.at.saturating_add(size);
            if end > self.data.len() {
                return Err(Stop::End);
            }
            body.extend_from_slice(&self.data[self.at..end]);
            self.at = end;
            self.crlf()?;
        }
        let mut trailer = 0;
        loop {
            if self.peek()? == b'\r' {
                self.crlf()?;
                return Ok(body);
            }
            let start = self.at;
            match self.trailer_line() {
                Ok(n) => trailer += n,
                Err(stop) => {
                    // A line still arriving counts against the bound too.
                    let seen = self.data[start..].iter().take_while(|&&b| b != b'\n').count();
                    if trailer + seen > max_trailer {
                        return Err(Stop::Bad);
                    }
                    return Err(stop);
                }
            }
            if trailer > max_trailer {
                return Err(Stop::Bad);
            }
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_vchar_or_obs(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_of(s: &[u8]) -> Outcome {
        reference(s, MAX_BODY, MAX_TRAILER)
    }

    #[test]
    fn reference_follows_the_grammar() {
        // (input, outcome): one line per rule of the grammar.
        let done = |body: &[u8], used: usize| Outcome::Done { body: body.to_vec(), used };
        let cases: &[(&[u8], Outcome)] = &[
            (b"3\r\nabc\r\n0\r\n\r\nNEXT", done(b"abc", 13)),
            (b"3 ; a = \"q\\\"x\" ;b=c\r\nabc\r\n000\r\nX-T: 1 \r\n\r\n", done(b"abc", 42)),
            (b"3;a=\"unterminated", Outcome::NeedMore),
            (b"3 ", Outcome::NeedMore),        // whitespace may lead to `;`
            (b"3 \r\n", Outcome::Invalid),     // whitespace that leads nowhere
            (b"3;\r\n", Outcome::Invalid),     // an extension needs a name
            (b"3;a=\r\n", Outcome::Invalid),   // and a value after `=`
            (b"3\nabc\r\n", Outcome::Invalid), // bare LF
            (b"0\r\nNoColon\r\n\r\n", Outcome::Invalid),
            (b"0\r\nX: \x01\r\n\r\n", Outcome::Invalid),
            (b"11111111111111111\r\n", Outcome::Invalid), // 17 digits
            (b"100001\r\n", Outcome::Invalid),            // over max_body
            (b"3\r\nab", Outcome::NeedMore),
        ];
        for (input, want) in cases {
            assert_eq!(&reference_of(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn reference_bounds_the_trailer() {
        let mut raw = b"0\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', MAX_TRAILER + 1));
        assert_eq!(reference_of(&raw), Outcome::Invalid);
    }
}
