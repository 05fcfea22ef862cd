//! The raw peers' fixed HTTP answers (benches/peers/common/fixed_http.rs: httparse, fixed
//! `/plaintext` and `/json` bodies) served on ringo's own shard runtime (src/rt), one pinned
//! worker per `--workers`, each with its own SO_REUSEPORT listener, as the peers run.
//! Against `uring-tasks` (the same answers over a hand-driven ring and a minimal task
//! model) it shows what the runtime's general machinery costs; against ringo's bare stack,
//! what the engine would gain on it.
//!
//! Run: `cargo run --release --example shard_runtime -- --port 8080 [--workers N]`
//! (`scripts/bench --peers ringo-rt,uring-tasks`). With `SHARD_RUNTIME_LEAN_IDLE=1` a
//! connection waiting for its next request holds no buffer (see
//! `bench_api::serve_on_shard_runtime`; `scripts/conn-memory --peer-bin` measures it);
//! with `SHARD_RUNTIME_EPOLL=1` it runs on the runtime's epoll driver (`scripts/instructions
//! --peer-bin` counts its instructions under valgrind, which has no io_uring).

// The peers' shared modules, written for their own crates (all `pub`).
#[allow(unreachable_pub, dead_code)]
#[path = "../benches/peers/common/args.rs"]
mod args;
#[allow(unreachable_pub, dead_code)]
#[path = "../benches/peers/common/fixed_http.rs"]
mod fixed_http;
#[allow(unreachable_pub, dead_code)]
#[path = "../benches/peers/common/listener.rs"]
mod listener;
#[allow(unreachable_pub, dead_code)]
#[path = "../benches/peers/common/pin.rs"]
mod pin;

use std::cell::RefCell;

thread_local! {
    static RESPONSES: RefCell<fixed_http::Responses> = RefCell::new(fixed_http::Responses::new());
}

fn answer(input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
    RESPONSES.with(|r| fixed_http::process(input, out, &r.borrow()))
}

fn refresh() {
    RESPONSES.with(|r| r.borrow_mut().refresh());
}

fn main() {
    let args = args::parse();
    let flag = |name: &str| std::env::var_os(name).is_some_and(|v| v != "0");
    let (lean_idle, epoll) = (flag("SHARD_RUNTIME_LEAN_IDLE"), flag("SHARD_RUNTIME_EPOLL"));
    let addr = args.addr();
    let cpus = pin::allowed_cpus();
    let workers: Vec<_> = (0..args.workers)
        .map(|i| {
            let listener = listener::reuseport(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            // Accepted sockets inherit it: no system call per connection.
            socket2::SockRef::from(&listener).set_tcp_nodelay(true).expect("TCP_NODELAY");
            let cpus = cpus.clone();
            std::thread::Builder::new()
                .name(format!("rt-{i}"))
                .spawn(move || {
                    pin::pin_current(i, &cpus);
                    if let Err(e) =
                        ringo::bench_api::serve_on_shard_runtime(listener, answer, refresh, lean_idle, epoll)
                    {
                        eprintln!("shard runtime: {e}");
                        std::process::exit(1);
                    }
                })
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
