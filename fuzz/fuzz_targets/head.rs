//! `head`: the request-head parser's fast path against its general path (httparse), on
//! the same bytes and limits. Oracle: `ringo::fuzz_api::head`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ringo::fuzz_api::head::run(data) {
        panic!("{e}");
    }
});
