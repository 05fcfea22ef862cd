//! `decode`: query and path-parameter percent-decoding through a `Context`, against a
//! reference decoder. Oracle: `ringo::fuzz_api::decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ringo::fuzz_api::decode::run(data) {
        panic!("{e}");
    }
});
