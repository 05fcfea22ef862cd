//! Entry points and oracles for the fuzz targets in `fuzz/` and for their corpus replay
//! in `tests/fuzz_corpus.rs`: hidden from the docs, not a supported API, and free to
//! change with the internals they wrap.
//!
//! One module per target, each holding everything the target checks, so a corpus file
//! means the same thing to libFuzzer (`cargo fuzz run TARGET`) and to the plain
//! `cargo test` replay on stable:
//!
//! | target | module | oracle |
//! |---|---|---|
//! | `conn` | [`conn`] | a real server fed split byte streams; responses well formed, nothing after `Connection: close`, the server still answers |
//! | `router` | [`router`] | registration never panics; a found route's pattern matches the path, its parameters are pieces of it; a route that matches is found |
//! | `decode` | [`decode`] | query and parameter decoding through a `Context` agree with a reference decoder; percent-encoded bytes decode back |
//! | `chunked` | [`chunked`] | the chunked decoder agrees with a strict RFC 9112 reference, and any split of the input gives the same result |
//! | `head` | [`head`] | the head parser's fast path and its general path (httparse) give the same outcome and head, for the input and its prefixes |
//!
//! Nothing here touches the internals it drives beyond their crate-visible functions;
//! the `conn` target uses the public API only.

pub mod chunked;
pub mod conn;
pub mod decode;
pub mod head;
pub mod router;

use std::sync::atomic::{AtomicUsize, Ordering};

/// Makes every panic abort the process, after printing it: the connection engine and
/// the shards catch panics to keep serving, and a fuzzer must see them as crashes.
pub fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        std::process::abort();
    }));
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic (then reports it as usual), so a test can see a panic the engine
/// caught and turned into a 500 or a dropped connection. See [`panics_seen`].
pub fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

/// Panics counted since [`count_panics`] was installed.
pub fn panics_seen() -> usize {
    PANICS.load(Ordering::SeqCst)
}
