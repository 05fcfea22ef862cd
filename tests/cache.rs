//! `ringo::cache` on a shard runtime (TTLs, absences, the byte bound, dogpile
//! protection through loads that succeed, fail and are cancelled), and the default
//! app's `/items/:id` data path over a real redis-server on both io backends: cache-aside
//! with `X-Cache`, writes that drop the key on every shard, 503s while Redis is down.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::redis_server::RedisServer;
use common::{BACKENDS, Raw, Resp};
use ringo::cache::{CacheConfig, LocalCache, Lookup, Source};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut rt = ringo::runtime::Runtime::with_backend(ringo::IoBackend::Epoll).expect("runtime");
    rt.block_on(f)
}

fn cache(config: CacheConfig) -> LocalCache<Bytes> {
    LocalCache::new("test", config, |v: &Bytes| v.len())
}

#[test]
fn entries_expire_absences_are_cached_and_bytes_are_bounded() {
    block_on(async {
        let c = cache(CacheConfig { negative_ttl: Duration::from_millis(50), ..CacheConfig::default() });
        c.insert_with_ttl("a", Bytes::from_static(b"1"), Duration::from_millis(50));
        c.insert_absent("gone");
        assert_eq!(c.get("a"), Lookup::Hit(Bytes::from_static(b"1")));
        assert_eq!(c.get("gone"), Lookup::Absent);
        ringo::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.get("a"), Lookup::Miss, "expired on read");
        assert_eq!(c.get("gone"), Lookup::Miss, "absences expire too");
        let s = c.stats();
        assert_eq!((s.hits, s.negative_hits, s.misses, s.expired), (1, 1, 2, 2));

        // The sweep drops what nobody reads again.
        c.insert_with_ttl("b", Bytes::from_static(b"2"), Duration::from_millis(10));
        ringo::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(c.sweep(), 1);
        assert_eq!(c.stats().entries, 0);

        // 64 KiB of room: 100 values of 4 KiB cannot all stay.
        let small = cache(CacheConfig { max_bytes: 64 << 10, ..CacheConfig::default() });
        for i in 0..100 {
            small.insert(&format!("k{i}"), Bytes::from(vec![0u8; 4096]));
        }
        let s = small.stats();
        assert!(s.bytes <= 64 << 10 && s.entries < 100 && s.entries > 0, "{s:?}");
    });
}

#[test]
fn concurrent_misses_of_one_key_run_one_load() {
    block_on(async {
        let c = cache(CacheConfig::default());
        let loads = Rc::new(Cell::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (c, loads) = (c.clone(), Rc::clone(&loads));
                ringo::runtime::spawn(async move {
                    c.get_or_load("hot", || async {
                        loads.set(loads.get() + 1);
                        ringo::time::sleep(Duration::from_millis(30)).await;
                        Ok::<_, String>(Some(Bytes::from_static(b"v")))
                    })
                    .await
                })
            })
            .collect();
        let mut sources = Vec::new();
        for t in tasks {
            let (value, source) = t.await;
            assert_eq!(value, Ok(Some(Bytes::from_static(b"v"))));
            sources.push(source);
        }
        assert_eq!(loads.get(), 1, "one load for fifty misses");
        assert_eq!(sources.iter().filter(|s| **s == Source::Loaded).count(), 1);
        assert_eq!(sources.iter().filter(|s| **s == Source::Coalesced).count(), 49);
        assert_eq!(
            c.get_or_load("hot", || async { Err::<Option<Bytes>, String>("unused".into()) }).await.1,
            Source::Cache
        );
        let s = c.stats();
        assert_eq!((s.loads, s.coalesced), (1, 49));
    });
}

#[test]
fn a_hot_key_is_refreshed_before_it_expires() {
    block_on(async {
        let c = cache(CacheConfig { ttl: Duration::from_millis(200), ..CacheConfig::default() });
        let loads = Rc::new(Cell::new(0));
        let until = std::time::Instant::now() + Duration::from_millis(700);
        while std::time::Instant::now() < until {
            let loads = Rc::clone(&loads);
            let (v, _) = c
                .get_or_load("hot", || async move {
                    loads.set(loads.get() + 1);
                    ringo::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, String>(Some(Bytes::from_static(b"v")))
                })
                .await;
            assert_eq!(v, Ok(Some(Bytes::from_static(b"v"))));
            ringo::time::sleep(Duration::from_millis(1)).await;
        }
        let s = c.stats();
        // Read every millisecond, the key is reloaded ahead of its expiry each time:
        // it never expires, so no reader ever finds it gone.
        assert!(s.early_refreshes >= 2, "{s:?}");
        assert_eq!(s.expired, 0, "{s:?}");
        assert_eq!(s.loads, 1 + s.early_refreshes);
    });
}

#[test]
fn a_failed_load_reaches_every_waiter_and_caches_nothing() {
    block_on(async {
        let c = cache(CacheConfig::default());
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let c = c.clone();
                ringo::runtime::spawn(async move {
                    c.get_or_load("k", || async {
                        ringo::time::sleep(Duration::from_millis(20)).await;
                        Err::<Option<Bytes>, String>("store down".into())
                    })
                    .await
                    .0
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await, Err("store down".to_owned()));
        }
        assert_eq!(c.get("k"), Lookup::Miss, "errors are not cached");
        // Absent is cached (negatively).
        let (v, _) = c.get_or_load("none", || async { Ok::<Option<Bytes>, String>(None) }).await;
        assert_eq!(v, Ok(None));
        assert_eq!(c.get("none"), Lookup::Absent);
    });
}

#[test]
fn a_cancelled_load_lets_a_waiter_load_instead_of_waiting_forever() {
    block_on(async {
        let c = cache(CacheConfig::default());
        let first = {
            let c = c.clone();
            ringo::runtime::spawn(async move {
                // Cancelled at 10 ms, long before its load finishes.
                ringo::time::timeout(Duration::from_millis(10), async {
                    c.get_or_load("k", || async {
                        ringo::time::sleep(Duration::from_secs(5)).await;
                        Ok::<_, String>(Some(Bytes::from_static(b"late")))
                    })
                    .await
                })
                .await
                .is_err()
            })
        };
        ringo::time::sleep(Duration::from_millis(2)).await;
        let waiter = c.get_or_load("k", || async { Ok::<_, String>(Some(Bytes::from_static(b"fresh"))) });
        let (value, source) = ringo::time::timeout(Duration::from_secs(1), waiter).await.expect("not stuck");
        assert!(first.await, "the first call was cancelled");
        assert_eq!((value, source), (Ok(Some(Bytes::from_static(b"fresh"))), Source::Loaded));
    });
}

/// The default app with `[redis] url`, two shards, and an admin listener.
fn data_path(redis: &RedisServer, backend: ringo::IoBackend) -> ringo::RunningServer {
    let mut config = ringo::config::Config::default();
    config.redis.url = format!("redis://{}", redis.addr());
    common::start_with_admin_and(
        move || ringo::default_app_from(&config, None),
        backend,
        |cfg| {
            cfg.shards = Some(2);
            cfg.pin = false;
        },
    )
}

fn send(c: &mut Raw, method: &str, path: &str, body: &str) -> Resp {
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .as_bytes(),
    );
    c.response()
}

/// A series summed over both shards.
fn both_shards(server: &ringo::RunningServer, name: &str) -> [u64; 2] {
    [0, 1].map(|shard| {
        common::series(server, &format!("{name}{{shard=\"{shard}\",cache=\"items\"}} ")).unwrap_or(0)
    })
}

#[test]
fn items_are_read_through_the_cache_and_writes_drop_them_on_every_shard() {
    for backend in BACKENDS {
        let redis = RedisServer::start(&[]);
        let server = data_path(&redis, backend);
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(send(&mut c, "PUT", "/items/1", r#"{"v":1}"#).status, 204);
        let r = c.get("/items/1");
        assert_eq!((r.status, r.text().as_str(), r.header("x-cache")), (200, r#"{"v":1}"#, Some("miss")));
        let r = c.get("/items/1");
        assert_eq!((r.status, r.header("x-cache")), (200, Some("hit")), "{backend:?}");
        let r = c.get("/items/404");
        assert_eq!((r.status, r.header("x-cache")), (404, Some("miss")));
        assert_eq!(c.get("/items/404").header("x-cache"), Some("negative"));

        // Warm the key on both shards: connections spread over them by SO_REUSEPORT.
        let mut conns: Vec<Raw> = (0..16).map(|_| Raw::connect(server.local_addr())).collect();
        assert!(
            common::eventually(Duration::from_secs(5), || {
                for conn in conns.iter_mut() {
                    assert_eq!(conn.get("/items/1").status, 200);
                }
                both_shards(&server, "ringo_cache_entries").iter().all(|n| *n >= 1)
            }),
            "{backend:?}: both shards cache the item"
        );
        let invalidated_before = both_shards(&server, "ringo_cache_invalidated_total");
        // A write through any shard drops the key on every shard.
        assert_eq!(send(&mut c, "PUT", "/items/1", r#"{"v":2}"#).status, 204);
        std::thread::sleep(Duration::from_millis(50));
        for conn in conns.iter_mut() {
            assert_eq!(
                conn.get("/items/1").text(),
                r#"{"v":2}"#,
                "{backend:?}: no shard serves the old value"
            );
        }
        // The counters arrive with the next snapshots (every 200 ms).
        assert!(
            common::eventually(Duration::from_secs(2), || {
                let now = both_shards(&server, "ringo_cache_invalidated_total");
                now[0] > invalidated_before[0] && now[1] > invalidated_before[1]
            }),
            "{backend:?}: both shards dropped it ({invalidated_before:?} before)"
        );
        assert_eq!(send(&mut c, "DELETE", "/items/1", "").status, 204);
        std::thread::sleep(Duration::from_millis(50));
        for conn in conns.iter_mut() {
            assert_eq!(conn.get("/items/1").status, 404, "{backend:?}: deleted everywhere");
        }
        server.shutdown();
    }
}

#[test]
fn with_redis_down_the_data_path_answers_503_at_once() {
    let mut redis = RedisServer::start(&[]);
    let server = data_path(&redis, ringo::IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    assert_eq!(send(&mut c, "PUT", "/items/7", "seven").status, 204);
    assert_eq!(c.get("/items/7").status, 200);
    redis.kill();
    let begun = std::time::Instant::now();
    // A cached item is still served; an uncached one is a clear 503.
    assert_eq!(c.get("/items/7").header("x-cache"), Some("hit"));
    let r = c.get("/items/8");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().starts_with("redis: "), "{}", r.text());
    assert_eq!(send(&mut c, "PUT", "/items/7", "new").status, 503);
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "no call waited past its deadline: {:?}",
        begun.elapsed()
    );
    server.shutdown();
}

#[test]
fn without_redis_the_items_routes_are_absent() {
    let server = common::start_default(1, ringo::IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    assert_eq!(c.get("/items/1").status, 404);
    server.shutdown();
}

/// `ringo serve --redis URL`, one shard, on a free port.
struct Instance {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Instance {
    fn start(redis: &RedisServer) -> Instance {
        let port = common::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringo"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--admin", "", "--shards", "1"])
            .args(["--redis", &format!("redis://{}", redis.addr()), "--log", "warn"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ringo");
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        common::wait_listening(addr);
        Instance { child, addr }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_write_on_one_instance_drops_the_key_on_the_other() {
    let redis = RedisServer::start(&[]);
    let (a, b) = (Instance::start(&redis), Instance::start(&redis));
    let (mut ca, mut cb) = (Raw::connect(a.addr), Raw::connect(b.addr));
    assert_eq!(send(&mut ca, "PUT", "/items/9", "one").status, 204);
    // B caches the first value.
    assert_eq!(cb.get("/items/9").text(), "one");
    assert_eq!(cb.get("/items/9").header("x-cache"), Some("hit"));
    // A writes: B hears it over Redis pub/sub and drops its copy.
    assert!(
        common::eventually(Duration::from_secs(5), || {
            // The subscriber may still be connecting: write until B sees the change.
            assert_eq!(send(&mut ca, "PUT", "/items/9", "two").status, 204);
            std::thread::sleep(Duration::from_millis(50));
            cb.get("/items/9").text() == "two"
        }),
        "instance B serves A's write"
    );
    assert_eq!(send(&mut ca, "DELETE", "/items/9", "").status, 204);
    assert!(common::eventually(Duration::from_secs(2), || cb.get("/items/9").status == 404));
}

/// The default app with `[redis] url` and a `[cache]` tweak, two shards.
fn data_path_with(
    redis_addr: String,
    tweak: impl FnOnce(&mut ringo::config::CacheSection),
) -> Result<ringo::RunningServer, ringo::ServerError> {
    let mut config = ringo::config::Config::default();
    config.redis.url = format!("redis://{redis_addr}");
    config.redis.command_timeout_ms = 200;
    tweak(&mut config.cache);
    let cfg = ringo::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        shards: Some(2),
        pin: false,
        ..ringo::ServerConfig::default()
    };
    ringo::Server::new(move || ringo::default_app_from(&config, None)).config(cfg).start()
}

fn seed_items(redis: &RedisServer, n: usize) {
    block_on(async {
        let client = ringo::redis::RedisClient::connect(redis.config()).await.expect("connect");
        let pairs: Vec<(String, String)> =
            (0..n).map(|i| (format!("item:{i}"), format!("value {i}"))).collect();
        client.mset(&pairs).await.expect("MSET");
    });
}

#[test]
fn a_preheated_cache_answers_its_first_requests_from_memory() {
    let redis = RedisServer::start(&[]);
    seed_items(&redis, 300);
    let server = data_path_with(redis.addr(), |c| c.preheat_pattern = "item:*".into()).expect("starts");
    // Every shard loaded the 300 items before it reported ready: no first request misses.
    for i in [0, 150, 299] {
        let mut c = Raw::connect(server.local_addr());
        let r = c.get(&format!("/items/{i}"));
        assert_eq!((r.text(), r.header("x-cache")), (format!("value {i}"), Some("hit")));
    }
    assert!(common::eventually(Duration::from_secs(2), || {
        both_shards(&server, "ringo_cache_entries").iter().all(|n| *n == 300)
    }));
    server.shutdown();

    // From a file of ids: those and only those.
    let file = std::env::temp_dir().join(format!("ringo-preheat-{}.txt", std::process::id()));
    std::fs::write(&file, "# hot items\n1\n2\n\n3\n").expect("write");
    let server =
        data_path_with(redis.addr(), |c| c.preheat_file = file.display().to_string()).expect("starts");
    let mut c = Raw::connect(server.local_addr());
    assert_eq!(c.get("/items/2").header("x-cache"), Some("hit"));
    assert_eq!(c.get("/items/4").header("x-cache"), Some("miss"));
    server.shutdown();
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_failed_preheat_stops_the_start_or_starts_cold_by_policy() {
    let mut redis = RedisServer::start(&[]);
    let addr = redis.addr();
    redis.kill();
    let err = match data_path_with(addr.clone(), |c| c.preheat_pattern = "item:*".into()) {
        Ok(_) => panic!("started although the preheat failed"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("preheat items"), "{err}");
    let server = data_path_with(addr, |c| {
        c.preheat_pattern = "item:*".into();
        c.preheat_on_failure = ringo::startup::OnFailure::StartCold;
    })
    .expect("starts cold");
    let mut c = Raw::connect(server.local_addr());
    assert_eq!(c.get("/items/1").status, 503, "cold, and Redis is down");
    server.shutdown();
}

#[test]
fn ids_that_cannot_exist_never_reach_redis_once_the_filter_is_in() {
    for backend in BACKENDS {
        let redis = RedisServer::start(&[]);
        seed_items(&redis, 1000);
        let mut config = ringo::config::Config::default();
        config.redis.url = format!("redis://{}", redis.addr());
        config.cache.filter_rebuild_s = 1;
        let server = common::start_with_admin_and(
            move || ringo::default_app_from(&config, None),
            backend,
            |cfg| {
                cfg.shards = Some(2);
                cfg.pin = false;
            },
        );
        assert!(
            common::eventually(Duration::from_secs(5), || {
                both_shards(&server, "ringo_cache_filter_keys").iter().all(|n| *n == 1000)
            }),
            "{backend:?}: every shard installed the filter over the 1000 items"
        );
        let fpr = common::admin_get(&server, "/metrics")
            .text()
            .lines()
            .find(|l| l.starts_with("ringo_cache_filter_false_positive_ratio{shard=\"0\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .expect("the measured false-positive rate is exported");
        assert!(fpr < 0.01, "{fpr}");
        let commands = |s: &ringo::RunningServer| {
            [0, 1]
                .map(|shard| {
                    common::series(
                        s,
                        &format!("ringo_redis_commands_total{{shard=\"{shard}\",client=\"redis\"}} "),
                    )
                    .unwrap_or(0)
                })
                .iter()
                .sum::<u64>()
        };
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/items/500").header("x-cache"), Some("miss"), "an item that exists is loaded");
        std::thread::sleep(Duration::from_millis(300));
        let before = commands(&server);
        let mut filtered = 0;
        for id in 5000..5200 {
            let r = c.get(&format!("/items/{id}"));
            assert_eq!(r.status, 404);
            filtered += usize::from(r.header("x-cache") == Some("filtered"));
        }
        assert!(
            filtered >= 195,
            "{backend:?}: {filtered} of 200 impossible ids filtered (the rest are false positives)"
        );
        std::thread::sleep(Duration::from_millis(300));
        let asked = commands(&server) - before;
        assert!(asked <= 5, "{backend:?}: Redis saw {asked} commands for 200 impossible ids");
        // A key written after the build is known at once, on every shard.
        assert_eq!(send(&mut c, "PUT", "/items/7777", "new").status, 204);
        std::thread::sleep(Duration::from_millis(50));
        let mut conns: Vec<Raw> = (0..8).map(|_| Raw::connect(server.local_addr())).collect();
        for conn in conns.iter_mut() {
            assert_eq!(conn.get("/items/7777").text(), "new", "{backend:?}");
        }
        server.shutdown();
    }
}

#[test]
fn hot_items_are_reported_protected_and_served_from_the_hot_redis() {
    let (mut main, hot) = (RedisServer::start(&[]), RedisServer::start(&[]));
    seed_items(&main, 3);
    let mut config = ringo::config::Config::default();
    config.redis.url = format!("redis://{}", main.addr());
    config.redis.hot_url = format!("redis://{}", hot.addr());
    config.redis.command_timeout_ms = 200;
    config.cache.hot_threshold = 40;
    config.cache.ttl_ms = 400;
    let server = common::start_with_admin_and(
        move || ringo::default_app_from(&config, None),
        ringo::IoBackend::Auto,
        |_| {},
    );
    let mut c = Raw::connect(server.local_addr());
    for _ in 0..200 {
        assert_eq!(c.get("/items/1").status, 200);
    }
    assert_eq!(c.get("/items/2").status, 200, "a cold item, read once");
    // Reported by the shard and by the instance.
    assert!(
        common::eventually(Duration::from_secs(2), || {
            let report: serde_json::Value =
                serde_json::from_slice(&common::admin_get(&server, "/debug/shards").body).expect("JSON");
            report["hot_keys"]
                .as_array()
                .and_then(|h| h.first())
                .is_some_and(|h| h["key"] == "1" && h["cache"] == "items")
        }),
        "{}",
        common::admin_get(&server, "/debug/shards").text()
    );
    assert!(
        common::series(&server, "ringo_cache_hot_key_lookups{shard=\"0\",cache=\"items\",key=\"1\"} ")
            .is_some_and(|n| n >= 40)
    );
    assert!(
        common::series(&server, "ringo_cache_protected{shard=\"0\",cache=\"items\"} ")
            .is_some_and(|n| n >= 1)
    );
    // Once the local copy expires, the hot item is read through the hot-data Redis.
    std::thread::sleep(Duration::from_millis(500));
    let r = c.get("/items/1");
    assert_eq!((r.status, r.header("x-cache-tier")), (200, Some("hot")), "{}", r.text());
    let copied = block_on(async {
        let client = ringo::redis::RedisClient::connect(hot.config()).await.expect("connect");
        client.get("hot:item:1").await.expect("GET")
    });
    assert_eq!(copied.as_deref(), Some(&b"value 1"[..]), "the hot tier holds the item");
    // With the main Redis gone, the hot item is still served; a cold one is a 503.
    main.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.get("/items/1").status, 200, "hot items do not depend on the main tier");
    assert_eq!(c.get("/items/2").status, 503);
    server.shutdown();
}
