//! `chunked`: the chunked-body decoder against a strict RFC 9112 reference and against
//! itself fed in pieces. Oracle: `ringo::fuzz_api::chunked`.
//!
//! `RINGO_FUZZ_CHUNKED_LENIENT=1` only checks the inputs the reference accepts (or
//! needs more of), for a decoder that is still more lenient than the grammar.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static STRICT: OnceLock<bool> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let strict = *STRICT.get_or_init(|| std::env::var_os("RINGO_FUZZ_CHUNKED_LENIENT").is_none());
    if let Err(e) = ringo::fuzz_api::chunked::run(data, strict) {
        panic!("{e}");
    }
});
