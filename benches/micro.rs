//! Criterion micro-benchmarks: router lookup on the GitHub API route set (static, param,
//! catch-all), request-head parsing, chunked decoding, JSON parse and serialize
//! (simd-json against serde_json), arena against heap allocation of per-request data, and
//! the circuit breaker's check on the request path, and the Redis client's RESP encoding
//! of GET/SET/MGET and decoding of their replies, and the shard runtime's task spawn and
//! wake against monoio's.
//!
//! Run: `cargo bench --bench micro` (add `-- router` to run one group).

use std::hint::black_box;

use bumpalo::Bump;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringo::Method;
use ringo::bench_api::{HeadParser, RouteTable, decode_chunked, redis_decode_all, redis_encode};
use ringo::breaker::{Breaker, Settings};

fn github_routes() -> Vec<(Method, &'static str)> {
    include_str!("data/github-routes.txt")
        .lines()
        .filter_map(|line| {
            let (m, p) = line.split_once(' ')?;
            Some((Method::from_bytes(m.as_bytes())?, p))
        })
        .collect()
}

/// A concrete path for a pattern: `:name` becomes `v`, `*name` becomes `a/b`.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg.chars().next() {
            Some(':') => "v".to_owned(),
            Some('*') => "a/b".to_owned(),
            _ => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn router(c: &mut Criterion) {
    let mut routes = github_routes();
    routes.push((Method::Get, "/static/*filepath"));
    let mut table = RouteTable::new(&routes).expect("GitHub routes register");
    let requests: Vec<(Method, String)> = routes.iter().map(|(m, p)| (*m, concrete(p))).collect();
    let mut g = c.benchmark_group("router");
    g.bench_function("static /user/repos", |b| {
        b.iter(|| table.lookup(Method::Get, black_box("/user/repos")))
    });
    g.bench_function("param /repos/:owner/:repo/stargazers", |b| {
        b.iter(|| table.lookup(Method::Get, black_box("/repos/julienschmidt/httprouter/stargazers")))
    });
    g.bench_function("catch-all /static/*filepath", |b| {
        b.iter(|| table.lookup(Method::Get, black_box("/static/css/site/main.css")))
    });
    g.throughput(Throughput::Elements(requests.len() as u64));
    g.bench_function("all 204 routes", |b| {
        b.iter(|| {
            for (m, p) in &requests {
                black_box(table.lookup(*m, p));
            }
        })
    });
    g.finish();
}

const WRK_GET: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const BROWSER_GET: &[u8] = b"GET /repos/julienschmidt/httprouter/stargazers?page=2 HTTP/1.1\r\n\
Host: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\n\
Cache-Control: max-age=0\r\nX-Request-Id: 7d5c9c2e-4b1f-4b8e-9a51-0f4f5d2f8e11\r\n\r\n";

fn parsing(c: &mut Criterion) {
    let mut parser = HeadParser::default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(WRK_GET.len() as u64));
    g.bench_function("head: wrk GET (1 header)", |b| b.iter(|| parser.parse(black_box(WRK_GET))));
    g.throughput(Throughput::Bytes(BROWSER_GET.len() as u64));
    g.bench_function("head: browser GET (10 headers)", |b| b.iter(|| parser.parse(black_box(BROWSER_GET))));
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"400\r\n");
        body.extend(std::iter::repeat_n(b'x', 1024));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut out = Vec::with_capacity(1 << 15);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("chunked: 16 x 1 KiB", |b| b.iter(|| decode_chunked(black_box(&body), &mut out)));
    g.finish();
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Message<'a> {
    message: &'a str,
}

fn json(c: &mut Criterion) {
    let doc: String = {
        let items: Vec<String> = (0..12)
            .map(|i| format!(r#"{{"id":{i},"name":"item {i}","tags":["a","b"],"price":{i}.5}}"#))
            .collect();
        format!(r#"{{"items":[{}],"total":12}}"#, items.join(","))
    };
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    let mut scratch = Vec::with_capacity(doc.len());
    g.bench_function("parse 1 KiB: simd-json", |b| {
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(doc.as_bytes());
            simd_json::serde::from_slice::<simd_json::OwnedValue>(black_box(&mut scratch)).is_ok()
        })
    });
    // What `Context::bind_json` does: the shard's simd-json buffers kept between parses
    // (alone, this loop's allocations come back from malloc's thread cache at once; the
    // saving shows in a server's mixed traffic: `scripts/instructions --body`).
    let mut buffers = simd_json::Buffers::new(doc.len());
    g.bench_function("parse 1 KiB: simd-json, kept buffers", |b| {
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(doc.as_bytes());
            simd_json::serde::from_slice_with_buffers::<simd_json::OwnedValue>(
                black_box(&mut scratch),
                &mut buffers,
            )
            .is_ok()
        })
    });
    g.bench_function("parse 1 KiB: simd-json native value", |b| {
        b.iter(|| {
            scratch.clear();
            scratch.extend_from_slice(doc.as_bytes());
            simd_json::to_owned_value(black_box(&mut scratch)).is_ok()
        })
    });
    g.bench_function("parse 1 KiB: serde_json", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(doc.as_bytes())).is_ok())
    });
    let msg = Message { message: "Hello, World!" };
    // Documents: simd-json escapes long strings with SIMD but writes numbers slowly;
    // sonic-rs (what `Context::json` uses) escapes sixteen bytes at a time and writes
    // numbers as fast as serde_json.
    let echo: serde_json::Value = {
        let head = r#"{"id":42,"name":"Ada Lovelace","email":"ada@example.com","active":true,"roles":["admin","dev"],"score":98.5,"note":""#;
        let text = format!("{head}{}\"}}", "x".repeat(1024 - head.len() - 2));
        serde_json::from_str(&text).expect("the echo document parses")
    };
    let items: serde_json::Value = serde_json::from_str(&doc).expect("the items document parses");
    // A typical API answer: ten users, integers, booleans and short strings.
    let users: serde_json::Value = (0..10)
        .map(|i| {
            serde_json::json!({
                "id": 1000 + i, "name": format!("user {i}"), "email": format!("u{i}@example.com"),
                "active": i % 2 == 0, "roles": ["admin", "dev"], "age": 20 + i,
            })
        })
        .collect();
    g.throughput(Throughput::Elements(1));
    serializers(&mut g, "hello", &msg);
    for (name, value) in [("echo 1 KiB", &echo), ("items 1 KiB", &items), ("users 10", &users)] {
        serializers(&mut g, name, value);
    }
    g.finish();
}

/// `serialize {name}: …` benchmarks of `value` for the three JSON writers.
fn serializers<T: serde::Serialize + ?Sized>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    value: &T,
) {
    let mut out = Vec::with_capacity(2048);
    g.bench_function(format!("serialize {name}: simd-json"), |b| {
        b.iter(|| {
            out.clear();
            simd_json::serde::to_writer(&mut out, black_box(value)).is_ok()
        })
    });
    g.bench_function(format!("serialize {name}: serde_json"), |b| {
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(value)).is_ok()
        })
    });
    g.bench_function(format!("serialize {name}: sonic-rs"), |b| {
        b.iter(|| {
            out.clear();
            sonic_rs::to_writer(&mut out, black_box(value)).is_ok()
        })
    });
}

/// Per-request data of a middleware chain: a few small values of different sizes.
#[derive(Default)]
struct RequestData {
    id: [u8; 32],
    start: u64,
    user: Option<u64>,
}

fn arena(c: &mut Criterion) {
    let mut g = c.benchmark_group("per-request data");
    let mut bump = Bump::with_capacity(4096);
    g.bench_function("arena: 8 values, then reset", |b| {
        b.iter(|| {
            for i in 0..8u64 {
                let v = bump.alloc(RequestData { start: i, ..RequestData::default() });
                black_box(&v.id);
                black_box(v.user);
                black_box(v.start);
            }
            bump.reset();
        })
    });
    g.bench_function("heap: 8 boxed values, then drop", |b| {
        b.iter(|| {
            let boxes: [Box<RequestData>; 8] =
                std::array::from_fn(|i| Box::new(RequestData { start: i as u64, ..RequestData::default() }));
            black_box(&boxes);
        })
    });
    g.finish();
}

/// The middleware chain per request, as a shard runs it (no sockets): the bare default
/// app against the `default` stack (request id, trace context, an access log that
/// writes every line, to /dev/null through the writer thread), and with a global rate
/// limit counting too; plus the GCRA check alone.
fn middleware(c: &mut Criterion) {
    use ringo::access_log::{AccessLogFormat, AccessLogSink, LogOutput};
    use ringo::bench_api::{ChainBench, GcraBench, with_runtime};
    let sink = AccessLogSink::start(LogOutput::File("/dev/null".into())).expect("access-log writer");
    let request = b"GET /json HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n";
    with_runtime(|| {
        let mut g = c.benchmark_group("middleware");
        let mut bare = ChainBench::new(ringo::default_app().expect("app"), request);
        g.bench_function("chain: bare /json", |b| b.iter(|| black_box(bare.run())));
        let stack = ringo::default_app_with_access_log(&sink, AccessLogFormat::Json, 1).expect("app");
        let mut default = ChainBench::new(stack, request);
        g.bench_function("chain: default stack /json (access log writing)", |b| {
            b.iter(|| black_box(default.run()))
        });
        let mut limited = ringo::default_app_with_access_log(&sink, AccessLogFormat::Json, 1).expect("app");
        limited.middleware(ringo::middleware::RateLimit::per_shard(1e9, 1_000_000));
        let mut limited = ChainBench::new(limited, request);
        g.bench_function("chain: default stack + rate limit /json", |b| b.iter(|| black_box(limited.run())));
        let mut gcra = GcraBench::new(1e6, 100);
        g.bench_function("gcra check", |b| b.iter(|| black_box(gcra.check())));
        g.finish();
    });
    sink.drain(std::time::Duration::from_secs(2));
}

/// ringo's shard runtime (src/rt) against monoio's, both on io_uring: spawning and
/// running a task that completes at once, and a task waking itself (one run-queue round
/// trip each). Figures per task and per wake.
fn tasks(c: &mut Criterion) {
    use ringo::bench_api::{ShardSpawner, TaskSpawner, spawn_and_run, wake_cycles};

    /// monoio's spawn, for the comparison.
    struct MonoioSpawner;
    impl TaskSpawner for MonoioSpawner {
        fn spawn_task<F: std::future::Future<Output = ()> + 'static>(&self, task: F) {
            drop(monoio::spawn(task));
        }
    }

    const N: usize = 1000;
    let mut g = c.benchmark_group("tasks");
    g.throughput(Throughput::Elements(N as u64));
    let mut ringo_rt =
        ringo::runtime::Runtime::with_backend(ringo::IoBackend::Uring).expect("io_uring runtime");
    g.bench_function("spawn + run, ringo rt", |b| {
        b.iter(|| ringo_rt.block_on(spawn_and_run(&ShardSpawner, N)))
    });
    g.bench_function("self-wake, ringo rt", |b| b.iter(|| ringo_rt.block_on(wake_cycles(&ShardSpawner, N))));
    let mut monoio_rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    g.bench_function("spawn + run, monoio", |b| {
        b.iter(|| monoio_rt.block_on(spawn_and_run(&MonoioSpawner, N)))
    });
    g.bench_function("self-wake, monoio", |b| b.iter(|| monoio_rt.block_on(wake_cycles(&MonoioSpawner, N))));
    g.finish();
}

/// What a call through a closed breaker costs: `allow()` (clock read, window bucket)
/// and `success()`.
fn breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    let b = Breaker::new("bench", Settings::default());
    g.bench_function("closed: allow + success", |bench| {
        bench.iter(|| match black_box(&b).allow() {
            Ok(permit) => permit.success(),
            Err(e) => panic!("a closed breaker refused: {e}"),
        })
    });
    g.finish();
}

/// The Redis client's wire work per command: encoding GET, SET (100-byte value) and
/// MGET of 10 keys into a reused buffer, and decoding their replies (RESP2 and RESP3)
/// from a read buffer, each value a slice of it.
fn redis(c: &mut Criterion) {
    let mut g = c.benchmark_group("redis");
    let value = [b'x'; 100];
    let keys: Vec<String> = (0..10).map(|i| format!("user:{i:04}")).collect();
    let mget: Vec<&[u8]> = std::iter::once(&b"MGET"[..]).chain(keys.iter().map(|k| k.as_bytes())).collect();
    let mut out = Vec::with_capacity(4096);
    let encodes: [(&str, Vec<&[u8]>); 3] = [
        ("encode GET", vec![b"GET", b"user:1234"]),
        ("encode SET 100 B", vec![b"SET", b"user:1234", &value]),
        ("encode MGET 10", mget),
    ];
    for (name, args) in &encodes {
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                redis_encode(&mut out, black_box(args));
                black_box(out.len())
            })
        });
    }
    let bulk = format!("$100\r\n{}\r\n", "x".repeat(100));
    let replies = [
        ("decode GET hit", bulk.clone()),
        ("decode GET miss", "$-1\r\n".to_owned()),
        ("decode SET +OK", "+OK\r\n".to_owned()),
        ("decode MGET 10", format!("*10\r\n{}", bulk.repeat(10))),
    ];
    for (name, wire) in &replies {
        for resp3 in [false, true] {
            if resp3 && wire.starts_with("$-1") {
                continue; // RESP3 says nil with `_`
            }
            let label = format!("{name} ({})", if resp3 { "resp3" } else { "resp2" });
            g.bench_function(label, |b| {
                b.iter_batched_ref(
                    || bytes::BytesMut::from(wire.as_bytes()),
                    |buf| assert_eq!(redis_decode_all(buf, resp3), Some(1)),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

/// The per-shard local cache: a hit, a miss, an insert (with eviction once full), and
/// the key filter's lookups.
fn cache(c: &mut Criterion) {
    use bytes::Bytes;
    use ringo::cache::{CacheConfig, LocalCache, Lookup};
    let mut g = c.benchmark_group("cache");
    let config = CacheConfig { max_entries: 10_000, ..CacheConfig::default() };
    let cache: LocalCache<Bytes> = LocalCache::new("bench", config, |v: &Bytes| v.len());
    let keys: Vec<String> = (0..20_000).map(|i| format!("item:{i}")).collect();
    let value = Bytes::from_static(b"{\"message\":\"Hello, World!\"}");
    for k in &keys[..5_000] {
        cache.insert(k, value.clone());
    }
    g.bench_function("get hit", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 5_000;
            black_box(matches!(cache.get(&keys[i]), Lookup::Hit(_)))
        })
    });
    g.bench_function("get miss", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 5_000;
            black_box(matches!(cache.get(&keys[15_000 + i]), Lookup::Miss))
        })
    });
    let filter = ringo::cache::KeyFilter::build(keys[..10_000].iter().map(String::as_str)).expect("filter");
    g.bench_function("filter lookup (member)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 10_000;
            black_box(filter.may_contain(&keys[i]))
        })
    });
    g.bench_function("filter lookup (absent)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 10_000;
            black_box(filter.may_contain(&keys[10_000 + i]))
        })
    });
    g.bench_function("insert (evicting once full)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            cache.insert(&keys[i], value.clone());
        })
    });
    g.finish();
}

/// What one monotonic clock read costs on this machine: the engine reads it once a loop
/// turn (and once a flush on epoll) instead of once a read and once a request;
/// `scripts/clock-reads` counts the reads a request.
fn clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock");
    g.bench_function("Instant::now", |b| b.iter(|| black_box(std::time::Instant::now())));
    g.finish();
}

criterion_group!(benches, router, parsing, json, arena, middleware, tasks, breaker, redis, cache, clock);
criterion_main!(benches);
