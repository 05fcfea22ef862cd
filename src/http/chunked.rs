//! Incremental decoder for chunked request bodies (RFC 9112 section 7.1).
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size      = 1*HEXDIG
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name  = token
//! chunk-ext-val   = token / quoted-string
//! quoted-string   = DQUOTE *( qdtext / quoted-pair ) DQUOTE
//! quoted-pair     = "\" ( HTAB / SP / VCHAR / obs-text )
//! trailer-section = *( field-line CRLF )
//! field-line      = field-name ":" OWS field-value OWS
//! field-name      = token
//! BWS = OWS       = *( SP / HTAB )
//! ```
//!
//! Exactly this grammar is accepted; any other byte is [`HttpError::MalformedChunk`] (400,
//! and the connection closes). A lenient reading here is a smuggling vector: if `0x5` or
//! `5 junk` were read as a size followed by an "extension", the bytes after what this
//! decoder takes for the end of the body would be parsed as the next request, while a
//! front end framing the same bytes differently forwards them as body.
//!
//! Bounds: a chunk-size line (size, extensions, CR) is at most [`MAX_CHUNK_LINE`] bytes,
//! which also bounds quoted strings and their quoted-pairs; the trailer section is at most
//! `max_trailer` bytes (431). A chunk size is at most 16 hex digits, leading zeros
//! included ([`MAX_SIZE_DIGITS`]; fuzzing found that a reference counting digits and a
//! decoder counting value disagree on zero-padded sizes, and a front end may be either);
//! the decoded body is at most `max_body` (413).
//!
//! The decoder keeps its state between reads, so a body dribbled in byte by byte costs
//! linear time, and any split of the input decodes to the same result. Extensions are
//! checked and ignored; trailers are checked, bounded and dropped.

use super::chars::{FIELD_VALUE, QDTEXT, TCHAR, hex_value, is};
use super::error::HttpError;

/// Most hex digits in a chunk size: 16, the digits of a `u64`, leading zeros included.
const MAX_SIZE_DIGITS: usize = 16;

/// Longest chunk-size line accepted: the size, its extensions and the CR (4 KiB).
/// Extensions carry nothing ringo uses, so a longer line is refused, not skipped.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; how many so far (at most
    /// [`MAX_SIZE_DIGITS`]).
    Size { digits: u8 },
    /// Whitespace (BWS) after the size or an extension value: only `;` may follow.
    SemiBws,
    /// After `;`: optional whitespace, then the first byte of an extension name.
    NameBws,
    /// Inside an extension name (a token).
    Name,
    /// Whitespace (BWS) after an extension name: `=` or `;` must follow.
    NameEndBws,
    /// After `=`: optional whitespace, then a token or a quoted string.
    ValueBws,
    /// Inside a token extension value.
    Token,
    /// Inside a quoted-string extension value.
    Quoted,
    /// After a backslash inside a quoted string: one escaped byte.
    QuotedPair,
    /// Right after a quoted string's closing quote: `;`, whitespace or CR.
    QuotedEnd,
    /// Expecting LF after the CR of a size line.
    SizeLf,
    /// Copying chunk data; this many bytes remain.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line: a field name, or the CR of the final empty line.
    TrailerStart,
    /// Inside a trailer field name (a token), up to its colon.
    TrailerName,
    /// After a trailer field's colon: OWS and field-value bytes up to CR.
    TrailerValue,
    /// Expecting LF after a trailer line's CR.
    TrailerLf,
    /// Expecting LF of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
}

impl State {
    /// Whether this state reads the chunk-size line (before its CR is consumed).
    fn in_size_line(self) -> bool {
        matches!(
            self,
            State::Size { .. }
                | State::SemiBws
                | State::NameBws
                | State::Name
                | State::NameEndBws
                | State::ValueBws
                | State::Token
                | State::Quoted
                | State::QuotedPair
                | State::QuotedEnd
        )
    }
}

/// Progress reported by [`ChunkedDecoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// All input was consumed and more is needed.
    NeedMore,
    /// The body ended after this many input bytes; later bytes belong to the next request.
    Done(usize),
}

/// Chunked decoder state for one body.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    size: u64,
    line_len: usize,
    trailer_bytes: usize,
    decoded: u64,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_bytes: 0,
            decoded: 0,
        }
    }

    /// Decodes as much of `input` as possible, appending chunk data to `out`.
    ///
    /// `max_body` bounds the decoded size (413); `max_trailer` bounds the trailer
    /// section (431). On `NeedMore` every byte of `input` has been consumed.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<Progress, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Data(remaining) => {
                    let avail = (input.len() - i) as u64;
                    let take = remaining.min(avail) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                    continue;
                }
                State::Done => return Ok(Progress::Done(i)),
                State::SizeLf => {
                    expect(b, b'\n')?;
                    self.line_len = 0;
                    self.end_size_line(max_body)?
                }
                State::DataCr => {
                    expect(b, b'\r')?;
                    State::DataLf
                }
                State::DataLf => {
                    expect(b, b'\n')?;
                    State::Size { digits: 0 }
                }
                State::FinalLf => {
                    expect(b, b'\n')?;
                    self.state = State::Done;
                    return Ok(Progress::Done(i + 1));
                }
                s if s.in_size_line() => {
                    self.line_len += 1;
                    if self.line_len > MAX_CHUNK_LINE {
                        return Err(HttpError::MalformedChunk);
                    }
                    size_line(s, b, &mut self.size)?
                }
                s => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > max_trailer {
                        return Err(HttpError::HeadersTooLarge);
                    }
                    trailer_line(s, b)?
                }
            };
            i += 1;
        }
        Ok(if self.state == State::Done { Progress::Done(i) } else { Progress::NeedMore })
    }

    /// After a size line's LF: the chunk's data, or the trailer section after the last chunk.
    fn end_size_line(&mut self, max_body: usize) -> Result<State, HttpError> {
        if self.size == 0 {
            return Ok(State::TrailerStart);
        }
        self.decoded = self.decoded.saturating_add(self.size);
        if self.decoded > max_body as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        let size = std::mem::take(&mut self.size);
        Ok(State::Data(size))
    }
}

fn expect(b: u8, want: u8) -> Result<(), HttpError> {
    if b == want { Ok(()) } else { Err(HttpError::MalformedChunk) }
}

/// One byte of a chunk-size line: `chunk-size [ chunk-ext ] CR`.
fn size_line(state: State, b: u8, size: &mut u64) -> Result<State, HttpError> {
    let ws = b == b' ' || b == b'\t';
    let next = match state {
        State::Size { digits } => match hex_value(b) {
            Some(v) => {
                // A digit limit, not only a value limit: zero-padded sizes are where
                // parsers that count digits and parsers that count value disagree.
                if usize::from(digits) >= MAX_SIZE_DIGITS {
                    return Err(HttpError::MalformedChunk);
                }
                *size = (*size << 4) | u64::from(v);
                State::Size { digits: digits + 1 }
            }
            None if digits == 0 => return Err(HttpError::MalformedChunk),
            None => after_value(b)?,
        },
        State::SemiBws if ws => State::SemiBws,
        State::SemiBws if b == b';' => State::NameBws,
        State::NameBws if ws => State::NameBws,
        State::NameBws | State::Name if is(&TCHAR, b) => State::Name,
        State::Name | State::NameEndBws if ws => State::NameEndBws,
        State::Name | State::NameEndBws if b == b'=' => State::ValueBws,
        State::Name | State::NameEndBws if b == b';' => State::NameBws,
        State::Name if b == b'\r' => State::SizeLf,
        State::ValueBws if ws => State::ValueBws,
        State::ValueBws if b == b'"' => State::Quoted,
        State::ValueBws | State::Token if is(&TCHAR, b) => State::Token,
        State::Token | State::QuotedEnd => after_value(b)?,
        State::Quoted if b == b'"' => State::QuotedEnd,
        State::Quoted if b == b'\\' => State::QuotedPair,
        State::Quoted if is(&QDTEXT, b) => State::Quoted,
        State::QuotedPair if is(&FIELD_VALUE, b) => State::Quoted,
        _ => return Err(HttpError::MalformedChunk),
    };
    Ok(next)
}

/// The byte after a complete chunk-size or extension value: BWS, `;` or CR.
fn after_value(b: u8) -> Result<State, HttpError> {
    match b {
        b' ' | b'\t' => Ok(State::SemiBws),
        b';' => Ok(State::NameBws),
        b'\r' => Ok(State::SizeLf),
        _ => Err(HttpError::MalformedChunk),
    }
}

/// One byte of the trailer section: `*( field-name ":" OWS field-value OWS CRLF ) CR`.
fn trailer_line(state: State, b: u8) -> Result<State, HttpError> {
    let next = match state {
        State::TrailerStart if b == b'\r' => State::FinalLf,
        State::TrailerStart | State::TrailerName if is(&TCHAR, b) => State::TrailerName,
        State::TrailerName if b == b':' => State::TrailerValue,
        State::TrailerValue if b == b'\r' => State::TrailerLf,
        State::TrailerValue if is(&FIELD_VALUE, b) => State::TrailerValue,
        State::TrailerLf if b == b'\n' => State::TrailerStart,
        _ => return Err(HttpError::MalformedChunk),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        match d.decode(input, &mut out, 1 << 20, 1024)? {
            Progress::Done(n) => Ok((out, n)),
            Progress::NeedMore => Err(HttpError::Timeout),
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let raw = b"4;name=val\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (body, used) = decode_all(raw).expect("valid");
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&raw[used..], b"NEXT");
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let raw = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for (i, b) in raw.iter().enumerate() {
            let p = d.decode(std::slice::from_ref(b), &mut out, 1 << 20, 1024).expect("valid");
            if i + 1 < raw.len() {
                assert_eq!(p, Progress::NeedMore, "byte {i}");
            } else {
                assert_eq!(p, Progress::Done(1));
            }
        }
        assert_eq!(out, b"abc0123456789abcdef");
    }

    #[test]
    fn refuses_bad_framing() {
        // (input, expected error): one line per smuggling or limit case.
        let cases: &[(&[u8], HttpError)] = &[
            (b"x\r\n", HttpError::MalformedChunk),
            (b"3\nabc\r\n0\r\n\r\n", HttpError::MalformedChunk), // bare LF after size
            (b"3\r\nabcX\r\n", HttpError::MalformedChunk),       // data longer than size
            (b"3\r\nabc\n0\r\n\r\n", HttpError::MalformedChunk), // bare LF after data
            (b"11111111111111111\r\n", HttpError::MalformedChunk), // 17 hex digits
            (b"-1\r\n", HttpError::MalformedChunk),
            (b" 3\r\nabc\r\n0\r\n\r\n", HttpError::MalformedChunk),
            (b"3;\x01\r\n", HttpError::MalformedChunk), // control byte in extension
            (b"100001\r\n", HttpError::BodyTooLarge),
            (b"0\r\nX: 1\n\r\n", HttpError::MalformedChunk),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_all(raw).unwrap_err(), *want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// Decodes `raw` whole; on success the body and the bytes left for the next request.
    fn outcome(raw: &[u8]) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
        decode_all(raw).map(|(body, used)| (body, raw[used..].to_vec()))
    }

    #[test]
    fn size_line_and_trailer_smuggling_table() {
        // (input, accepted): the whole size-line and trailer grammar, one case per line.
        // Each input is a whole body: an accepted case consumes all of it, a refused one
        // fails on the byte under test, before what a lenient decoder would take as its end.
        let cases: &[(&[u8], bool)] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", true),                  // plain
            (b"0x5\r\nhello\r\n0\r\n\r\n", false),               // "0" then junk: not a last chunk
            (b"5 junk\r\nhello\r\n0\r\n\r\n", false),            // junk after BWS without ";"
            (b"5junk\r\nhello\r\n0\r\n\r\n", false),             // junk glued to the size
            (b"5;\r\nhello\r\n0\r\n\r\n", false),                // ";" without a name
            (b"5;=x\r\nhello\r\n0\r\n\r\n", false),              // "=" without a name
            (b"5;a=\r\nhello\r\n0\r\n\r\n", false),              // "=" without a value
            (b"5;a\r\nhello\r\n0\r\n\r\n", true),                // name without value
            (b"5;a=b;c;d=\"\"\r\nhello\r\n0\r\n\r\n", true),     // several, empty quoted value
            (b"5 ; a = b\r\nhello\r\n0\r\n\r\n", true),          // BWS around ";" and "="
            (b"5\t;\ta\r\nhello\r\n0\r\n\r\n", true),            // BWS may be HTAB
            (b"5 \r\nhello\r\n0\r\n\r\n", false),                // BWS not followed by ";"
            (b"5;a \r\nhello\r\n0\r\n\r\n", false),              // BWS after a name, then CR
            (b"5;a=b \r\nhello\r\n0\r\n\r\n", false),            // BWS after a value, then CR
            (b"5;a=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n", true),     // quoted-pair inside quotes
            (b"5;a=\"q\"x\r\nhello\r\n0\r\n\r\n", false),        // bytes after the closing quote
            (b"5;a=\"q\r\nhello\r\n0\r\n\r\n", false),           // unterminated quoted string
            (b"5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n", false),    // quoted-pair of a control byte
            (b"5;a=b c\r\nhello\r\n0\r\n\r\n", false),           // two tokens as a value
            (b"5;a@b\r\nhello\r\n0\r\n\r\n", false),             // "@" is not a tchar
            (b"5;a=\x80\r\nhello\r\n0\r\n\r\n", false),          // obs-text only inside quotes
            (b"5;a=\"\x80\"\r\nhello\r\n0\r\n\r\n", true),       // obs-text inside quotes
            (b"5\rhello\r\n0\r\n\r\n", false),                   // bare CR after size
            (b"5\nhello\r\n0\r\n\r\n", false),                   // bare LF after size
            (b"5;a\nhello\r\n0\r\n\r\n", false),                 // bare LF after an extension
            (b"+5\r\nhello\r\n0\r\n\r\n", false),                // sign before the size
            (b"0000000000000005\r\nhello\r\n0\r\n\r\n", true),   // 16 digits, zero-padded
            (b"00000000000000005\r\nhello\r\n0\r\n\r\n", false), // 17 digits, even as zeros
            (b"10000000000000000\r\n", false),                   // 2^64 overflows u64
            (b"00\r\n\r\n", true),                               // last-chunk = 1*("0")
            (b"0;last=\"yes\"\r\n\r\n", true),                   // last chunk with an extension
            (b"0\r\nX-T: 1\r\nY:\r\n\r\n", true),                // trailers, one empty
            (b"0\r\nX-T:  a b \t\r\n\r\n", true),                // OWS around the value
            (b"0\r\nX-T 1\r\n\r\n", false),                      // trailer without a colon
            (b"0\r\nX-T : 1\r\n\r\n", false),                    // space before the colon
            (b"0\r\n: 1\r\n\r\n", false),                        // empty field name
            (b"0\r\n X: 1\r\n\r\n", false),                      // obs-fold / leading space
            (b"0\r\nX: a\x00b\r\n\r\n", false),                  // NUL in a trailer value
            (b"0\r\nX: 1\r\n\n", false),                         // bare LF ending the trailers
            (b"0\r\n\n", false),                                 // bare LF as the final line
            (b"0\r\n\r\r\n", false),                             // CR CR LF as the final line
            (b"5\r\nhello\n0\r\n\r\n", false),                   // bare LF after data
        ];
        for (raw, ok) in cases {
            let got = outcome(raw);
            let shown = String::from_utf8_lossy(raw);
            if *ok {
                let (_, rest) = got.unwrap_or_else(|e| panic!("{shown:?} refused: {e}"));
                assert!(rest.is_empty(), "{shown:?} left {rest:?}");
            } else {
                assert_eq!(got.map(|_| ()), Err(HttpError::MalformedChunk), "{shown:?}");
            }
        }
    }

    #[test]
    fn a_size_line_is_bounded() {
        let mut raw = b"5;a=\"".to_vec();
        raw.extend(std::iter::repeat_n(b'q', MAX_CHUNK_LINE));
        assert_eq!(decode_all(&raw).unwrap_err(), HttpError::MalformedChunk);
        // Just under the bound is fine.
        let mut raw = b"5;a=\"".to_vec();
        raw.extend(std::iter::repeat_n(b'q', MAX_CHUNK_LINE - 7));
        raw.extend_from_slice(b"\"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode_all(&raw).expect("at the bound").0, b"hello");
    }

    #[test]
    fn every_split_gives_the_same_result() {
        // Valid and invalid bodies alike: feeding any two pieces equals feeding it whole.
        let inputs: &[&[u8]] = &[
            b"4;n=v\r\nWiki\r\n5 ; q=\"a\\\"b\"\r\npedia\r\n0;x\r\nT: 1\r\nU:\t2 \r\n\r\nNEXT",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"q\"x\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX-T : 1\r\n\r\n",
            b"3\r\nabc\r\n0\r\n\n",
        ];
        for raw in inputs {
            let whole = outcome(raw);
            for cut in 0..=raw.len() {
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                let split = (|| {
                    let first = d.decode(&raw[..cut], &mut out, 1 << 20, 1024)?;
                    let used = match first {
                        Progress::Done(n) => n,
                        Progress::NeedMore => match d.decode(&raw[cut..], &mut out, 1 << 20, 1024)? {
                            Progress::Done(n) => cut + n,
                            Progress::NeedMore => return Err(HttpError::Timeout),
                        },
                    };
                    Ok((out.clone(), raw[used..].to_vec()))
                })();
                assert_eq!(split, whole, "{:?} cut at {cut}", String::from_utf8_lossy(raw));
            }
        }
    }

    #[test]
    fn trailer_section_is_bounded() {
        let mut raw = b"0\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(decode_all(&raw).unwrap_err(), HttpError::HeadersTooLarge);
    }
}
