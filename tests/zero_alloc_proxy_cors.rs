//! Principle 3 for `Context::client_ip` and the CORS middleware: after warm-up, a
//! keep-alive request whose client address is read through a multi-hop
//! `X-Forwarded-For` or `Forwarded`, and CORS actual and preflight requests, make zero
//! heap allocations on the shard.
//!
//! The counting allocator is the one in `tests/zero_alloc.rs` (a global allocator is
//! per test binary, so it cannot live in `common`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{BACKENDS, Raw};
use ringo::middleware::{AllowedOrigins, CorsConfig, cors};
use ringo::{Context, Limits, RouteError, Router};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only a const-initialised thread-local cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.trusted_proxies(&["127.0.0.0/8", "::1/128"])?;
    r.middleware(cors(CorsConfig {
        allowed_origins: AllowedOrigins::List(vec!["https://app.example".into()]),
        allow_credentials: true,
        exposed_headers: vec!["X-Total".into()],
        max_age: Some(Duration::from_secs(600)),
        ..CorsConfig::default()
    })?);
    r.get("/__allocations", |c: &mut Context| {
        let n = ALLOCATIONS.with(|a| a.get());
        let mut buf = itoa::Buffer::new();
        c.string(200, buf.format(n));
    })?;
    // The client's address answered from a stack buffer.
    r.get("/ip", |c: &mut Context| {
        use std::io::Write;
        let mut buf = [0u8; 64];
        let mut out = &mut buf[..];
        if let Some(ip) = c.client_ip() {
            let _ = write!(out, "{ip}");
        }
        let left = out.len();
        c.string(200, std::str::from_utf8(&buf[..64 - left]).unwrap_or(""));
    })?;
    Ok(r)
}

fn allocations(c: &mut Raw) -> u64 {
    c.get("/__allocations").text().parse().expect("number")
}

#[test]
fn client_ip_and_cors_allocate_nothing_in_steady_state() {
    let requests: [(&str, &str, u16); 4] = [
        ("GET /ip", "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.2\r\n", 200),
        ("GET /ip", "Forwarded: for=\"[2001:db8::1]:4711\";proto=https, for=127.0.0.9\r\n", 200),
        ("GET /ip", "Origin: https://app.example\r\n", 200),
        (
            "OPTIONS /ip",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: content-type\r\n",
            204,
        ),
    ];
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let round = |c: &mut Raw| {
            for _ in 0..300 {
                for (line, headers, status) in requests {
                    c.send(format!("{line} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
                    let r = c.response();
                    assert_eq!(r.status, status, "{line} {headers}: {}", r.text());
                }
            }
        };
        round(&mut c); // warm-up
        let _ = allocations(&mut c);
        let before = allocations(&mut c);
        assert!(before > 0, "the counter sees the shard's start-up allocations");
        round(&mut c);
        let after = allocations(&mut c);
        assert_eq!(after - before, 0, "{backend}: {} allocations in steady state", after - before);
        // And the answers are right.
        c.send(b"GET /ip HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.2\r\n\r\n");
        assert_eq!(c.response().text(), "198.51.100.7");
        server.shutdown();
    }
}
