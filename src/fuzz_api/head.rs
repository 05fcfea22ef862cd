//! The `head` target: the request-head parser's fast path (`http::scan`) against the
//! general path (httparse and ringo's refusals), on the same bytes.
//!
//! For every input, and for every prefix of inputs up to [`ALL_CUTS_UP_TO`] bytes, both
//! paths parse into fresh heads under two sets of limits (the defaults, and tight ones
//! that make the line, field-count and size limits bite); the outcome (complete with a
//! length, partial, or the error) and, when complete, every field of the parsed head
//! must agree. The fast path may decline anything, never answer differently.

use crate::http::Limits;
use crate::http::request::paths_agree;

/// Inputs up to this long are also tried cut at every position.
const ALL_CUTS_UP_TO: usize = 256;

/// Checks `data` (and its prefixes, when short); the first disagreement as an error.
pub fn run(data: &[u8]) -> Result<(), String> {
    let tight = Limits { max_headers: 4, max_request_line: 64, max_header_bytes: 256, ..Limits::default() };
    for limits in [Limits::default(), tight] {
        paths_agree(data, &limits)?;
        if data.len() <= ALL_CUTS_UP_TO {
            for cut in 0..data.len() {
                paths_agree(&data[..cut], &limits)?;
            }
        }
    }
    Ok(())
}
