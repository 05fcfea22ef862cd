//! `conn`: the connection engine of one real server, fed byte streams cut at arbitrary
//! points over loopback. Input layout and oracle: `ringo::fuzz_api::conn`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringo::fuzz_api::{self, conn};

fuzz_target!(
    init: {
        // The engine catches panics to keep serving; here each one must be a crash.
        fuzz_api::abort_on_panic();
        // SAFETY: setting SIGPIPE's disposition to "ignore" touches no memory of ours; a
        // write to a connection the server closed must fail, not kill the fuzzer.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        conn::target();
    },
    |data: &[u8]| {
        if let Err(e) = conn::target().run(data) {
            panic!("{e}");
        }
    }
);
