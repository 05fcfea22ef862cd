//! The Redis client's hot path allocates nothing per call: after warm-up, a `GET` hit
//! of a 100-byte value, awaited on the shard, costs no heap allocation of its own (the
//! encoding goes into the connection's reused buffer, the waiting slot comes from a
//! pool, the value is a slice of the read buffer). What remains is per read-buffer
//! fill, a few for every ~150 calls, which the bound below allows for.
//!
//! A counting global allocator counts per thread (so the redis-server helper and other
//! threads never mix in), as in `tests/zero_alloc.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringo::redis::{RedisClient, RedisConfig};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
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

/// A `redis-server` on a free port, killed on drop.
struct RedisServer(Child, u16);

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server could not be started ({e}): install it (scripts/test does)")
            });
        // Owned from here, so a failed wait below still kills it.
        let server = RedisServer(child, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut b = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut b).is_ok_and(|n| b[..n].starts_with(b"+PONG"))
                {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "redis-server never answered PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_get_hit_allocates_nothing_per_call_in_steady_state() {
    let server = RedisServer::start();
    for uring in [true, false] {
        let run = async {
            let config = RedisConfig { addr: format!("127.0.0.1:{}", server.1), ..RedisConfig::default() };
            let redis = RedisClient::connect(config).await.expect("connect");
            redis.set("k", [b'x'; 100]).await.expect("SET");
            for _ in 0..2_000 {
                let v = redis.get("k").await.expect("GET").expect("hit");
                assert_eq!(v.len(), 100);
            }
            const CALLS: u64 = 10_000;
            let before = allocations();
            for _ in 0..CALLS {
                let v = redis.get("k").await.expect("GET").expect("hit");
                assert_eq!(v.len(), 100);
            }
            let per_1000 = (allocations() - before) * 1000 / CALLS;
            eprintln!("uring {uring}: {per_1000} allocations per 1000 GET hits");
            // Measured: 17 per 1000 on io_uring. A GET hit reply is 107 bytes, so a
            // 16 KiB read buffer holds ~150 of them; its refill (and the runtime's own
            // bookkeeping) costs a few allocations per fill, none per call. One per call
            // would be 1000.
            assert!(per_1000 < 50, "uring {uring}: {per_1000} allocations per 1000 GET hits");
        };
        if uring {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build()
                .expect("rt")
                .block_on(run);
        } else {
            monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("rt")
                .block_on(run);
        }
    }
}
