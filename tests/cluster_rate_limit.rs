//! The cluster-wide rate limit over a real redis-server: two ringo instances (separate
//! processes, two shards each) sharing one Redis admit the configured cluster rate
//! within 10 % under load; with Redis gone the limit fails open to its local limit or
//! fails closed, by policy, without holding requests, and leases resume once Redis is
//! back. Fails loudly without redis-server (scripts/test installs it).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{Raw, free_port, wait_listening};
use ringo::middleware::{OnRedisDown, RateLimit};
use ringo::redis::RedisClient;
use ringo::{Context, IoBackend, RouteError, Router, RunningServer};

const BIN: &str = env!("CARGO_BIN_EXE_ringo");

/// `ringo serve` with the default app limited to `rate`/s across the cluster.
struct Instance {
    child: Child,
    port: u16,
    admin: u16,
}

impl Instance {
    fn start(redis: &RedisServer, rate: u32, burst: u32) -> Instance {
        let (port, admin) = (free_port(), free_port());
        let child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            .args(["--shards", "2", "--log", "warn"])
            .env("RINGO_REDIS_URL", format!("redis://{}", redis.addr()))
            .env("RINGO_RATE_LIMIT_CLUSTER_RATE", rate.to_string())
            .env("RINGO_RATE_LIMIT_CLUSTER_BURST", burst.to_string())
            .env("RINGO_PIN", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringo");
        wait_listening(format!("127.0.0.1:{port}").parse().expect("addr"));
        Instance { child, port, admin }
    }

    /// A series' value summed over shards (and labels), from the admin listener.
    fn metric_sum(&self, prefix: &str) -> u64 {
        let mut c = Raw::connect(format!("127.0.0.1:{}", self.admin).parse().expect("addr"));
        c.send(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        c.response()
            .text()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_instances_sharing_one_redis_admit_the_cluster_rate_within_ten_percent() {
    let redis = RedisServer::start(&[]);
    let (rate, burst) = (200u32, 20u32);
    let instances = [Instance::start(&redis, rate, burst), Instance::start(&redis, rate, burst)];
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Four keep-alive clients, two per instance, as fast as they are answered.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let port = instances[i % 2].port;
            let (stop, ok, refused) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&refused));
            std::thread::spawn(move || {
                let mut c = Raw::connect(format!("127.0.0.1:{port}").parse().expect("addr"));
                while !stop.load(Ordering::Relaxed) {
                    match c.get("/plaintext").status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                }
            })
        })
        .collect();
    let run = Duration::from_secs(4);
    let begun = Instant::now();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let elapsed = begun.elapsed().as_secs_f64();
    let (ok, refused) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    // The allowance starts full (the burst), then refills at the rate.
    let admitted_rate = (ok as f64 - f64::from(burst)) / elapsed;
    assert!(refused > ok, "the load must exceed the limit to test it: {ok} admitted, {refused} refused");
    assert!(
        (admitted_rate - f64::from(rate)).abs() <= 0.1 * f64::from(rate),
        "combined admitted rate {admitted_rate:.1}/s, configured {rate}/s ({ok} admitted, {refused} refused in {elapsed:.2} s)"
    );
    eprintln!(
        "cluster rate {rate}/s: {ok} admitted, {refused} refused in {elapsed:.2} s: {admitted_rate:.1}/s"
    );
    for (i, instance) in instances.iter().enumerate() {
        let leased = instance.metric_sum("ringo_cluster_rate_limit_leased_total");
        let via_lease = instance
            .metric_sum("ringo_cluster_rate_limit_admitted_total{shard=\"0\",via=\"lease\"}")
            + instance.metric_sum("ringo_cluster_rate_limit_admitted_total{shard=\"1\",via=\"lease\"}");
        assert!(
            leased > 0 && via_lease > 0,
            "instance {i} admitted through leases: {leased} leased, {via_lease} admitted"
        );
        assert_eq!(instance.metric_sum("ringo_cluster_rate_limit_redis_errors_total"), 0);
    }
}

/// One shard, a cluster limit of 20/s (burst 5) with `policy` while Redis is down.
fn limited(
    addr: String,
    policy: OnRedisDown,
) -> impl Fn() -> Result<Router, RouteError> + Send + Sync + 'static {
    move || {
        let config = ringo::redis::RedisConfig {
            addr: addr.clone(),
            command_timeout: Duration::from_millis(200),
            ..ringo::redis::RedisConfig::default()
        };
        let redis = RedisClient::new(config);
        let mut r = Router::new();
        r.middleware(RateLimit::cluster("fallback-test", 20.0, 5, &redis).on_redis_down(policy));
        r.get("/x", |c: &mut Context| c.string(200, "x"))?;
        Ok(r)
    }
}

fn statuses(server: &RunningServer, n: usize) -> (usize, usize, Duration) {
    let mut c = Raw::connect(server.local_addr());
    let begun = Instant::now();
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..n {
        let r = c.get("/x");
        match r.status {
            200 => ok += 1,
            429 => {
                assert!(r.header("retry-after").is_some(), "a refusal says when to retry");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited, begun.elapsed())
}

#[test]
fn with_redis_down_the_limit_fails_open_to_its_local_limit_then_leases_again() {
    let mut redis = RedisServer::start(&[]);
    let policy = OnRedisDown::FailOpen { local_rate: 1000.0 };
    let server = common::start_with_admin_and(limited(redis.addr(), policy), IoBackend::Auto, |_| {});
    let (ok, limited_n, _) = statuses(&server, 30);
    assert!(
        (5..=7).contains(&ok) && ok + limited_n == 30,
        "with Redis up: the burst, then refusals ({ok} admitted)"
    );
    redis.kill();
    // Redis is gone: the local limit (1000/s, burst 5) admits, and nothing waits long.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, _, took) = statuses(&server, 20);
    assert!(ok >= 5, "fail open admits by the local limit ({ok} of 20)");
    assert!(took < Duration::from_secs(2), "requests are not held by a dead Redis: {took:?}");
    assert!(common::eventually(Duration::from_secs(2), || {
        common::series(&server, "ringo_cluster_rate_limit_admitted_total{shard=\"0\",via=\"fallback\"}")
            .is_some_and(|n| n >= 5)
    }));
    assert!(common::metric(&server, "ringo_cluster_rate_limit_redis_errors_total") >= 1);
    // Redis is back (empty: a fresh allowance): leases resume after the fallback second.
    redis.restart();
    std::thread::sleep(Duration::from_millis(1200));
    let before =
        common::series(&server, "ringo_cluster_rate_limit_admitted_total{shard=\"0\",via=\"lease\"}");
    let (ok, _, _) = statuses(&server, 20);
    assert!(ok >= 1, "admitted again once Redis is back");
    assert!(common::eventually(Duration::from_secs(2), || {
        common::series(&server, "ringo_cluster_rate_limit_admitted_total{shard=\"0\",via=\"lease\"}") > before
    }));
    server.shutdown();
}

#[test]
fn with_redis_down_a_fail_closed_limit_refuses_without_waiting() {
    let mut redis = RedisServer::start(&[]);
    let server =
        common::start_with_admin_and(limited(redis.addr(), OnRedisDown::FailClosed), IoBackend::Auto, |_| {});
    assert_eq!(statuses(&server, 3).0, 3);
    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, limited_n, took) = statuses(&server, 20);
    // A request leased before Redis went (one lease: at this rate, one request) may
    // still be spent; nothing else is admitted.
    assert!(ok <= 1 && ok + limited_n == 20, "fail closed refuses while Redis is down ({ok} admitted)");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(common::eventually(Duration::from_secs(2), || {
        common::series(&server, "ringo_cluster_rate_limit_refused_total{shard=\"0\",reason=\"redis_down\"}")
            .is_some_and(|n| n >= 19)
    }));
    server.shutdown();
}

#[test]
fn a_cluster_limit_without_a_redis_url_is_a_config_error() {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RINGO_RATE_LIMIT_CLUSTER_RATE", "100")
        .output()
        .expect("run ringo");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis.url"), "{err}");
}
