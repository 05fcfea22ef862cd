//! `ringo::redis` against a real `redis-server` (started per test on a free port, killed
//! on drop): every command in RESP3 and RESP2, auto-pipelining seen in the write
//! counters, pipelines and transactions, the script cache, AUTH, deadlines against a
//! paused server, a killed and restarted server, the breaker, backpressure, pub/sub,
//! dropped clients closing their connections, and a Redis-backed route on the real
//! server on both io backends (fast 503s while Redis is down, recovery once it is back).
//!
//! These tests need `redis-server` (scripts/test installs it) and fail without it.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{BACKENDS, Raw, free_port, start_with};
use ringo::breaker::{Settings, State};
use ringo::redis::{Bytes, Cmd, ErrorKind, RedisClient, RedisConfig, RedisError, Script, SetOptions, Value};
use ringo::{Context, Limits, Router};

/// Runs `f` on a runtime of the given driver (`uring`: io_uring, else epoll).
fn block_on<F: Future>(uring: bool, f: F) -> F::Output {
    let backend = if uring { ringo::IoBackend::Uring } else { ringo::IoBackend::Epoll };
    ringo::runtime::Runtime::with_backend(backend).expect("runtime").block_on(f)
}

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

async fn every_command(redis: &RedisClient) {
    redis.ping().await.expect("PING");
    redis.set("k", "v").await.expect("SET");
    assert_eq!(redis.get("k").await.expect("GET"), b("v"));
    assert_eq!(redis.get("missing").await.expect("GET miss"), None);

    assert!(!redis.set_with("k", "other", SetOptions::default().nx()).await.expect("SET NX"));
    assert!(redis.set_with("fresh", "1", SetOptions::default().nx()).await.expect("SET NX fresh"));
    assert!(!redis.set_with("nope", "1", SetOptions::default().xx()).await.expect("SET XX missing"));
    assert!(redis.set_with("k", "v2", SetOptions::default().xx()).await.expect("SET XX"));
    redis.set_with("ex", "1", SetOptions::default().ex(Duration::from_secs(100))).await.expect("SET EX");
    let ttl = redis.ttl("ex").await.expect("TTL");
    assert!((99..=100).contains(&ttl), "TTL after EX 100: {ttl}");
    redis.set_with("px", "1", SetOptions::default().px(Duration::from_millis(100))).await.expect("SET PX");
    ringo::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(redis.get("px").await.expect("GET expired"), None, "PX 100 expired");

    assert_eq!(redis.ttl("k").await.expect("TTL no expiry"), -1);
    assert_eq!(redis.ttl("missing").await.expect("TTL missing"), -2);
    assert!(redis.expire("k", Duration::from_secs(50)).await.expect("EXPIRE"));
    assert!(!redis.expire("missing", Duration::from_secs(50)).await.expect("EXPIRE missing"));
    assert!(redis.ttl("k").await.expect("TTL") > 0);

    redis.mset(&[("a", "1"), ("b", "2")]).await.expect("MSET");
    assert_eq!(redis.mget(&["a", "missing", "b"]).await.expect("MGET"), vec![b("1"), None, b("2")]);
    assert_eq!(redis.incr("a").await.expect("INCR"), 2);
    assert_eq!(redis.incr_by("a", 40).await.expect("INCRBY"), 42);
    assert_eq!(redis.incr_by("a", -2).await.expect("INCRBY negative"), 40);
    assert_eq!(redis.del(&["a", "b", "missing"]).await.expect("DEL"), 2);

    let n: i64 = redis.eval("return #KEYS + #ARGV", &["x"], &["1", "2"]).await.expect("EVAL");
    assert_eq!(n, 3);
    let echo: Option<Bytes> = redis.eval("return ARGV[1]", &[] as &[&str], &["hi"]).await.expect("EVAL echo");
    assert_eq!(echo, b("hi"));
    assert_eq!(redis.publish("nobody", "x").await.expect("PUBLISH"), 0);

    let n: i64 = redis.query(&Cmd::new("HSET").arg("h").arg("f").arg("v")).await.expect("HSET");
    assert_eq!(n, 1);
    let v: Value = redis.query(&Cmd::new("HGETALL").arg("h")).await.expect("HGETALL");
    assert!(matches!(v, Value::Map(_) | Value::Array(_)), "{v:?}");

    // A server error is an answer: typed, and the connection carries on.
    redis.set("s", "text").await.expect("SET");
    match redis.incr("s").await {
        Err(RedisError::Redis(m)) => assert!(m.starts_with("ERR"), "{m}"),
        other => panic!("INCR on text: {other:?}"),
    }
    assert_eq!(redis.get("s").await.expect("after an error"), b("text"));
    let stats = redis.stats();
    assert_eq!(stats.errors_of(ErrorKind::Server), 1, "{stats:?}");
}

#[test]
fn every_command_in_resp3_and_resp2_on_both_drivers() {
    let server = RedisServer::start(&[]);
    for uring in [true, false] {
        for resp3 in [true, false] {
            block_on(uring, async {
                let config = RedisConfig { resp3, db: 2, ..server.config() };
                let redis = RedisClient::connect(config).await.expect("connect");
                redis.query::<()>(&Cmd::new("FLUSHDB")).await.expect("FLUSHDB");
                every_command(&redis).await;
                // The keys went to database 2.
                let db0 = RedisClient::connect(server.config()).await.expect("db 0");
                assert_eq!(db0.get("s").await.expect("GET db 0"), None);
            });
        }
    }
}

#[test]
fn connect_reports_a_refused_connection() {
    let port = free_port(); // nobody listens there
    block_on(false, async {
        let config = RedisConfig { addr: format!("127.0.0.1:{port}"), ..RedisConfig::default() };
        match RedisClient::connect(config).await {
            Err(RedisError::Io { context, source }) => {
                assert_eq!((context, source.kind()), ("connecting", std::io::ErrorKind::ConnectionRefused));
            }
            other => panic!("connect to a closed port: {other:?}"),
        }
    });
}

/// `connected_clients` from `INFO clients` (the asking connection included).
async fn connected_clients(observer: &RedisClient) -> usize {
    let info: String = observer.query(&Cmd::new("INFO").arg("clients")).await.expect("INFO");
    let line = info.lines().find_map(|l| l.strip_prefix("connected_clients:")).expect("connected_clients");
    line.trim().parse().expect("a count")
}

#[test]
fn a_dropped_client_closes_its_connections_even_after_its_runtime() {
    let server = RedisServer::start(&[]);
    for uring in [true, false] {
        block_on(uring, async {
            let observer = RedisClient::connect(server.config()).await.expect("connect");
            let redis = RedisClient::connect(RedisConfig { connections: 2, ..server.config() })
                .await
                .expect("connect");
            redis.pipeline().get("a").get("b").query().await.expect("pipeline");
            redis.ping().await.expect("PING");
            assert_eq!(connected_clients(&observer).await, 3);
            drop(redis);
            let deadline = Instant::now() + Duration::from_secs(2);
            while connected_clients(&observer).await > 1 {
                assert!(Instant::now() < deadline, "the dropped client's connections stay open");
                ringo::time::sleep(Duration::from_millis(10)).await;
            }
        });
        // Kept past its runtime: dropping it then must not touch the runtime's tasks.
        let redis = block_on(uring, async {
            let redis = RedisClient::connect(server.config()).await.expect("connect");
            redis.ping().await.expect("PING");
            redis
        });
        drop(redis);
    }
}

#[test]
fn urls_configure_the_client() {
    let server = RedisServer::start(&["--requirepass", "p@ss"]);
    block_on(false, async {
        let url = format!("redis://:p%40ss@{}/3?protocol=resp2", server.addr());
        let redis = RedisClient::connect(RedisConfig::from_url(&url).expect("url")).await.expect("connect");
        redis.set("k", "v").await.expect("SET");
        assert_eq!(redis.query::<i64>(&Cmd::new("DBSIZE")).await.expect("DBSIZE"), 1);
    });
}

#[test]
fn calls_from_many_tasks_in_one_turn_go_out_in_few_writes() {
    let server = RedisServer::start(&[]);
    block_on(true, async {
        let redis = RedisClient::connect(server.config()).await.expect("connect");
        let before = redis.stats();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let redis = redis.clone();
                ringo::runtime::spawn(async move {
                    redis.set(format!("k{i}"), format!("v{i}")).await.expect("SET");
                    let got = redis.get(format!("k{i}")).await.expect("GET");
                    assert_eq!(got, b(&format!("v{i}")), "task {i} got its own reply");
                    redis.incr("counter").await.expect("INCR")
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=200).collect::<Vec<i64>>(), "every INCR answered once, in some order");
        let s = redis.stats();
        let commands = s.written_commands - before.written_commands;
        let writes = s.writes - before.writes;
        assert_eq!(commands, 600);
        assert!(writes <= 30, "600 commands from 200 tasks took {writes} writes: {s:?}");
        assert!(s.max_batch >= 100, "one turn's SETs in one write: max batch {}", s.max_batch);
    });
}

#[test]
fn calls_spread_over_several_connections() {
    let server = RedisServer::start(&[]);
    block_on(false, async {
        let redis =
            RedisClient::connect(RedisConfig { connections: 3, ..server.config() }).await.expect("connect");
        let tasks: Vec<_> = (0..90)
            .map(|i| {
                let redis = redis.clone();
                ringo::runtime::spawn(async move {
                    redis.set(format!("c{i}"), i.to_string()).await.expect("SET");
                    redis.get(format!("c{i}")).await.expect("GET")
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await, b(&i.to_string()));
        }
        let s = redis.stats();
        assert_eq!(s.connects, 3, "every connection was used: {s:?}");
        assert_eq!(s.in_flight, 0);
    });
}

#[test]
fn resp3_pushes_on_the_shared_connection_are_not_taken_for_replies() {
    let server = RedisServer::start(&[]);
    block_on(true, async {
        let redis = RedisClient::connect(server.config()).await.expect("connect");
        let other = RedisClient::connect(server.config()).await.expect("connect");
        redis.set("t", "1").await.expect("SET");
        // Client-side caching: the server pushes an invalidation when `t` changes.
        redis.query::<()>(&Cmd::new("CLIENT").arg("TRACKING").arg("ON")).await.expect("TRACKING ON");
        assert_eq!(redis.get("t").await.expect("GET"), b("1"));
        other.set("t", "2").await.expect("SET elsewhere");
        for i in 0..20 {
            assert_eq!(redis.incr("n").await.expect("INCR"), i + 1, "replies stay in step with the pushes");
            assert_eq!(redis.get("t").await.expect("GET"), b("2"));
            other.set("t", "2").await.expect("SET elsewhere");
        }
        let s = redis.stats();
        assert!(s.pushes >= 10, "invalidations were pushed and skipped: {s:?}");
    });
}

#[test]
fn explicit_pipelines_and_transactions() {
    let server = RedisServer::start(&[]);
    for resp3 in [true, false] {
        block_on(false, async {
            let redis =
                RedisClient::connect(RedisConfig { resp3, ..server.config() }).await.expect("connect");
            redis.del(&["p", "n"]).await.expect("DEL");
            let replies = redis.pipeline().set("p", "1").incr("p").get("p").incr_by("p", 10).query().await;
            let replies = replies.expect("pipeline");
            assert_eq!(replies.len(), 4);
            assert_eq!(replies[1], Value::Int(2));
            assert_eq!(replies[2], Value::Data(Bytes::from_static(b"2")));
            assert_eq!(replies[3], Value::Int(12));

            let tx =
                redis.pipeline().atomic().incr("n").incr("n").get("n").query().await.expect("MULTI/EXEC");
            assert_eq!(tx, vec![Value::Int(1), Value::Int(2), Value::Data(Bytes::from_static(b"2"))]);

            // A command refused while queueing aborts the transaction; nothing ran.
            let mut p = redis.pipeline();
            p.atomic().incr("n").cmd(&Cmd::new("NOSUCHCOMMAND"));
            match p.query().await {
                Err(RedisError::Redis(m)) => assert!(m.contains("unknown command"), "{m}"),
                other => panic!("aborted transaction: {other:?}"),
            }
            assert_eq!(redis.get("n").await.expect("GET"), b("2"), "the aborted INCR did not run");

            // An error reply inside a plain pipeline fails the call, and every reply was
            // still read: the next call gets its own.
            redis.set("text", "x").await.expect("SET");
            assert!(redis.pipeline().incr("text").get("n").query().await.is_err());
            assert_eq!(redis.get("n").await.expect("GET after"), b("2"));
            assert!(redis.pipeline().query().await.expect("empty").is_empty());
        });
    }
}

#[test]
fn scripts_run_by_sha_and_are_sent_again_after_a_script_flush() {
    let server = RedisServer::start(&[]);
    block_on(true, async {
        let redis = RedisClient::connect(server.config()).await.expect("connect");
        let add = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
        let n: i64 = add.invoke(&redis, &["c"], &["5"]).await.expect("first call");
        assert_eq!(n, 5);
        assert_eq!(redis.stats().script_reloads, 1, "unknown to a fresh server: EVAL after NOSCRIPT");
        let n: i64 = add.invoke(&redis, &["c"], &["5"]).await.expect("cached");
        assert_eq!(n, 10);
        assert_eq!(redis.stats().script_reloads, 1, "EVALSHA found it");
        redis.query::<()>(&Cmd::new("SCRIPT").arg("FLUSH")).await.expect("SCRIPT FLUSH");
        match redis.evalsha::<i64, _, _>(add.sha1(), &["c"], &["1"]).await {
            Err(RedisError::Redis(m)) => assert!(m.starts_with("NOSCRIPT"), "{m}"),
            other => panic!("EVALSHA after SCRIPT FLUSH: {other:?}"),
        }
        let n: i64 = add.invoke(&redis, &["c"], &["5"]).await.expect("after flush");
        assert_eq!(n, 15);
        assert_eq!(redis.stats().script_reloads, 2);
    });
}

#[test]
fn auth_with_the_right_password_and_a_clear_error_with_a_wrong_one() {
    let server = RedisServer::start(&["--requirepass", "sesame"]);
    for resp3 in [true, false] {
        block_on(false, async {
            let good = RedisConfig { resp3, password: Some("sesame".into()), ..server.config() };
            let redis = RedisClient::connect(good).await.expect("the right password");
            redis.set("k", "v").await.expect("SET after AUTH");

            let bad = RedisConfig { resp3, password: Some("wrong".into()), ..server.config() };
            match RedisClient::connect(bad).await {
                Err(RedisError::Redis(m)) => assert!(m.starts_with("WRONGPASS"), "resp3 {resp3}: {m}"),
                other => panic!("resp3 {resp3}: a wrong password connected: {other:?}"),
            }

            // Without a password: refused at HELLO (RESP3) or at the first command.
            let none = RedisClient::new(RedisConfig { resp3, ..server.config() });
            match none.get("k").await {
                Err(RedisError::Redis(m)) => assert!(m.starts_with("NOAUTH"), "{m}"),
                other => panic!("without a password: {other:?}"),
            }
        });
    }
}

fn never_trips() -> Settings {
    Settings::default().trip_when(|_| false)
}

#[test]
fn a_paused_server_times_calls_out_and_the_connection_recovers_in_step() {
    let server = RedisServer::start(&[]);
    block_on(true, async {
        let deadline = Duration::from_millis(200);
        let config = RedisConfig { command_timeout: deadline, breaker: never_trips(), ..server.config() };
        let redis = RedisClient::connect(config).await.expect("connect");
        redis.set("k", "before").await.expect("SET");

        server.pause();
        let start = Instant::now();
        let r = redis.get("k").await;
        let took = start.elapsed();
        assert!(matches!(r, Err(RedisError::Timeout)), "{r:?}");
        assert!(took >= deadline && took < deadline + Duration::from_millis(300), "timed out after {took:?}");
        let r = redis.incr("k").await;
        assert!(matches!(r, Err(RedisError::Timeout)), "{r:?}");
        server.resume();

        // The late replies (a GET's value, an INCR's error) are read and dropped: each
        // new call gets its own reply.
        redis.set("k", "after").await.expect("SET after SIGCONT");
        assert_eq!(redis.get("k").await.expect("GET after SIGCONT"), b("after"));
        let s = redis.stats();
        assert_eq!(s.late_replies, 2, "{s:?}");
        assert_eq!(s.errors_of(ErrorKind::Timeout), 2);
        assert_eq!(s.connects, 1, "the same connection all along");
    });
}

#[test]
fn a_killed_server_fails_calls_in_flight_and_the_client_reconnects() {
    for uring in [true, false] {
        let mut server = RedisServer::start(&[]);
        block_on(uring, async {
            let config = RedisConfig {
                command_timeout: Duration::from_secs(5),
                reconnect_min: Duration::from_millis(10),
                reconnect_max: Duration::from_millis(100),
                breaker: never_trips(),
                ..server.config()
            };
            let redis = RedisClient::connect(config).await.expect("connect");
            // Paused, the server holds the call without answering: it is in flight.
            server.pause();
            let in_flight = {
                let redis = redis.clone();
                ringo::runtime::spawn(async move { redis.get("k").await })
            };
            ringo::time::sleep(Duration::from_millis(100)).await;
            let start = Instant::now();
            server.kill();
            let r = in_flight.await;
            assert!(matches!(r, Err(RedisError::Disconnected)), "in flight at the kill: {r:?}");
            assert!(start.elapsed() < Duration::from_secs(2), "failed at once, not at its deadline");
            let r = redis.get("k").await;
            assert!(r.is_err(), "nothing to talk to: {r:?}");

            server.restart();
            let deadline = Instant::now() + Duration::from_secs(5);
            while redis.ping().await.is_err() {
                assert!(Instant::now() < deadline, "never reconnected: {:?}", redis.stats());
                ringo::time::sleep(Duration::from_millis(20)).await;
            }
            redis.set("k", "v").await.expect("SET after reconnecting");
            let s = redis.stats();
            assert!(s.reconnects >= 1 && s.disconnects >= 1, "{s:?}");
            assert!(s.errors_of(ErrorKind::Disconnected) >= 1, "{s:?}");
        });
    }
}

#[test]
fn the_breaker_fails_fast_while_redis_is_down_and_closes_once_it_is_back() {
    let mut server = RedisServer::start(&[]);
    block_on(false, async {
        let config = RedisConfig {
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(50),
            breaker: Settings { timeout: Duration::from_millis(200), ..Settings::default() }
                .trip_when(|c| c.consecutive_failures >= 3),
            ..server.config()
        };
        let redis = RedisClient::connect(config).await.expect("connect");
        server.kill();
        // Failures (the connection drops, then is refused) until the breaker opens.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match redis.get("k").await {
                Err(RedisError::BreakerOpen) => break,
                Err(e) => assert!(e.is_unavailable(), "{e:?}"),
                Ok(v) => panic!("an answer from a dead server: {v:?}"),
            }
            assert!(Instant::now() < deadline, "the breaker never opened: {:?}", redis.stats());
            ringo::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(redis.breaker().state(), State::Open);
        let start = Instant::now();
        for _ in 0..100 {
            assert!(matches!(redis.get("k").await, Err(RedisError::BreakerOpen)));
        }
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "refusals are immediate: {:?}",
            start.elapsed()
        );

        server.restart();
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis.get("k").await.is_err() {
            assert!(Instant::now() < deadline, "never recovered: {:?}", redis.stats());
            ringo::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(redis.breaker().state(), State::Closed);
        assert!(redis.stats().errors_of(ErrorKind::BreakerOpen) >= 100);
    });
}

#[test]
fn a_full_queue_refuses_calls_at_once() {
    let server = RedisServer::start(&[]);
    block_on(true, async {
        let config = RedisConfig {
            max_queue: 4,
            command_timeout: Duration::from_millis(300),
            breaker: never_trips(),
            ..server.config()
        };
        let redis = RedisClient::connect(config).await.expect("connect");
        server.pause();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let redis = redis.clone();
                ringo::runtime::spawn(async move { redis.get("k").await })
            })
            .collect();
        let mut full = 0;
        let mut timed_out = 0;
        for t in tasks {
            match t.await {
                Err(RedisError::QueueFull) => full += 1,
                Err(RedisError::Timeout) => timed_out += 1,
                other => panic!("{other:?}"),
            }
        }
        server.resume();
        assert_eq!((timed_out, full), (4, 6), "four waited for the paused server, six were refused");
        assert_eq!(redis.stats().in_flight, 4, "the timed-out four still hold their places");
        assert_eq!(redis.stats().errors_of(ErrorKind::QueueFull), 6);
        // The timed-out commands hold their places until their late replies come.
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Err(e) = redis.ping().await {
            assert!(matches!(e, RedisError::QueueFull), "{e:?}");
            assert!(Instant::now() < deadline, "the queue never drained");
            ringo::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(redis.stats().late_replies, 4);
        assert_eq!(redis.stats().in_flight, 0);
    });
}

#[test]
fn a_subscriber_receives_what_is_published() {
    let server = RedisServer::start(&[]);
    for resp3 in [true, false] {
        block_on(resp3, async {
            let redis =
                RedisClient::connect(RedisConfig { resp3, ..server.config() }).await.expect("connect");
            // Channels of this round only (the last round's subscriber may linger).
            let (news, sport) = (format!("news-{resp3}"), format!("sport-{resp3}"));
            let mut sub = redis.subscribe(&[&news, &sport]).await.expect("SUBSCRIBE");
            assert_eq!(redis.publish(&news, "hello").await.expect("PUBLISH"), 1);
            assert_eq!(redis.publish(&sport, "goal").await.expect("PUBLISH"), 1);
            for (channel, payload) in [(news.as_str(), "hello"), (sport.as_str(), "goal")] {
                let m = ringo::time::timeout(Duration::from_secs(2), sub.next_message())
                    .await
                    .expect("a message within 2 s")
                    .expect("message");
                assert_eq!((&m.channel[..], &m.payload[..]), (channel.as_bytes(), payload.as_bytes()));
            }
            let late = format!("late-{resp3}");
            sub.subscribe(&[late.as_bytes()]).await.expect("more channels");
            // The confirmation may still be in flight: publish until someone hears it.
            let deadline = Instant::now() + Duration::from_secs(2);
            while redis.publish(&late, "x").await.expect("PUBLISH") == 0 {
                assert!(Instant::now() < deadline, "the late subscription never took");
                ringo::time::sleep(Duration::from_millis(10)).await;
            }
            let m = sub.next_message().await.expect("late message");
            assert_eq!(&m.channel[..], late.as_bytes());
        });
    }
}

/// A route that reads Redis through the shard's own client.
fn redis_app(addr: String) -> impl Fn() -> Result<Router, ringo::RouteError> + Send + Sync + 'static {
    move || {
        let redis = RedisClient::new(RedisConfig {
            addr: addr.clone(),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(100),
            breaker: Settings { timeout: Duration::from_millis(200), ..Settings::default() }
                .trip_when(|c| c.consecutive_failures >= 3),
            ..RedisConfig::default()
        });
        let mut r = Router::new();
        r.get("/kv/:key", async move |c: &mut Context| {
            let key = c.param("key").to_owned();
            match redis.get(&key).await {
                Ok(Some(v)) => c.bytes(200, "application/octet-stream", &v),
                Ok(None) => c.string(404, "no such key"),
                Err(e) => c.string(503, &e.to_string()),
            }
        })?;
        Ok(r)
    }
}

fn set_greeting(server: &RedisServer) {
    block_on(false, async {
        let redis = RedisClient::connect(server.config()).await.expect("connect");
        redis.set("greeting", "hello from redis").await.expect("SET");
    });
}

#[test]
fn a_route_reads_redis_through_the_shard_client_on_both_backends() {
    let mut server = RedisServer::start(&[]);
    for backend in BACKENDS {
        set_greeting(&server);
        let http = start_with(redis_app(server.addr()), 2, backend, Limits::default());
        let mut c = Raw::connect(http.local_addr());
        for _ in 0..3 {
            let r = c.get("/kv/greeting");
            assert_eq!((r.status, r.text().as_str()), (200, "hello from redis"), "{backend:?}");
            let r = c.get("/kv/missing");
            assert_eq!(r.status, 404, "{backend:?}: {}", r.text());
        }
        // Many connections at once (spread over both shards): all answered.
        let mut conns: Vec<Raw> = (0..16).map(|_| Raw::connect(http.local_addr())).collect();
        for c in &mut conns {
            c.send(b"GET /kv/greeting HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        for c in &mut conns {
            assert_eq!(c.response().text(), "hello from redis", "{backend:?}");
        }

        // Redis dies: answers turn into quick 503s, the breaker's once it opens.
        server.kill();
        let mut last = String::new();
        for _ in 0..20 {
            let start = Instant::now();
            let r = c.get("/kv/greeting");
            assert_eq!(r.status, 503, "{backend:?}: {}", r.text());
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "{backend:?}: a 503 took {:?}",
                start.elapsed()
            );
            last = r.text();
        }
        assert!(last.contains("circuit breaker open"), "{backend:?}: {last}");

        // Back: the shard reconnects and the breaker closes on its own.
        server.restart();
        set_greeting(&server);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = c.get("/kv/greeting");
            if r.status == 200 {
                assert_eq!(r.text(), "hello from redis");
                break;
            }
            assert!(Instant::now() < deadline, "{backend:?}: never recovered: {}", r.text());
            std::thread::sleep(Duration::from_millis(20));
        }
        http.shutdown();
    }
}

#[test]
fn the_clients_counters_reach_metrics_and_readyz_can_wait_for_redis() {
    let mut server = RedisServer::start(&[]);
    set_greeting(&server);
    let app = common::start_with_admin_and(redis_app(server.addr()), ringo::IoBackend::Auto, |cfg| {
        cfg.ready_requires_redis = true;
    });
    // No request has used the client: the shard connects it because /readyz waits.
    let ready = || common::admin_get(&app, "/readyz");
    assert!(common::eventually(Duration::from_secs(5), || ready().status == 200), "{}", ready().text());
    let mut c = Raw::connect(app.local_addr());
    for _ in 0..10 {
        assert_eq!(c.get("/kv/greeting").status, 200);
    }
    let series = |name: &str| common::series(&app, &format!("{name}{{shard=\"0\",client=\"redis\"}} "));
    assert!(common::eventually(Duration::from_secs(2), || series("ringo_redis_commands_total") >= Some(10)));
    assert_eq!(series("ringo_redis_connected"), Some(1));
    assert!(series("ringo_redis_command_duration_seconds_count") >= Some(10));
    assert!(series("ringo_redis_writes_total") >= Some(1));

    server.kill();
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let r = ready();
            r.status == 503 && r.text().contains("redis unavailable")
        }),
        "{}",
        ready().text()
    );
    server.restart();
    assert!(common::eventually(Duration::from_secs(5), || ready().status == 200), "{}", ready().text());
    assert!(series("ringo_redis_reconnects_total") >= Some(1));
    app.shutdown();
}
