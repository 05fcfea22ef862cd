//! `router`: route registration and lookup against a naive matcher. Input layout and
//! oracle: `ringo::fuzz_api::router`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ringo::fuzz_api::router::run(data) {
        panic!("{e}");
    }
});
