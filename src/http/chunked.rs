//! Incremental decoder for chunked request bodies (RFC 9112 section 7.1).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! The decoder keeps its state between reads, so a body dribbled in byte by byte costs
//! linear time. Line endings must be CRLF (bare LF is a smuggling vector); chunk
//! extensions are checked and ignored; trailers are checked, bounded and dropped.

use super::error::HttpError;

/// Longest chunk-size line (size plus extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { digits: u8 },
    /// After the size: extensions until CR.
    Extension,
    /// Expecting LF after the CR of a size line.
    SizeLf,
    /// Copying chunk data; this many bytes remain.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Expecting LF after a trailer line's CR.
    TrailerLf,
    /// Expecting LF of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
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
            match self.state {
                State::Size { digits } => {
                    if let Some(v) = hex_value(b) {
                        if digits >= 16 {
                            return Err(HttpError::MalformedChunk);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                        self.line_len += 1;
                    } else if digits == 0 {
                        return Err(HttpError::MalformedChunk);
                    } else {
                        self.state = State::Extension;
                        continue; // re-examine this byte as an extension byte
                    }
                }
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.line_len += 1;
                        if self.line_len > MAX_CHUNK_LINE {
                            return Err(HttpError::MalformedChunk);
                        }
                    }
                    _ => return Err(HttpError::MalformedChunk),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::MalformedChunk);
                    }
                    self.line_len = 0;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.decoded = self.decoded.saturating_add(self.size);
                        if self.decoded > max_body as u64 {
                            return Err(HttpError::BodyTooLarge);
                        }
                        self.state = State::Data(self.size);
                        self.size = 0;
                    }
                }
                State::Data(remaining) => {
                    let avail = (input.len() - i) as u64;
                    let take = remaining.min(avail) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(HttpError::MalformedChunk);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(HttpError::MalformedChunk);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::FinalLf;
                    } else {
                        self.state = State::TrailerLine;
                        continue;
                    }
                }
                State::TrailerLine => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > max_trailer {
                        return Err(HttpError::HeadersTooLarge);
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                        _ => return Err(HttpError::MalformedChunk),
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(HttpError::MalformedChunk);
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(HttpError::MalformedChunk);
                    }
                    self.state = State::Done;
                    return Ok(Progress::Done(i + 1));
                }
                State::Done => return Ok(Progress::Done(i)),
            }
            i += 1;
        }
        Ok(if self.state == State::Done { Progress::Done(i) } else { Progress::NeedMore })
    }
}

fn hex_value(b: u8) -> Option<u8> {
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

    #[test]
    fn trailer_section_is_bounded() {
        let mut raw = b"0\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(decode_all(&raw).unwrap_err(), HttpError::HeadersTooLarge);
    }
}
