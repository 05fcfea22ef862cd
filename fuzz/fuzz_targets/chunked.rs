//! `chunked`: the chunked-body decoder against a strict RFC 9112 reference and against
//! itself fed in pieces. Oracle: `ringo::fuzz_api::chunked`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ringo::fuzz_api::chunked::run(data, true) {
        panic!("{e}");
    }
});
