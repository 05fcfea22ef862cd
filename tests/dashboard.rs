//! The admin dashboard in a real browser: headless Chromium loads `/debug/dashboard`,
//! which polls `/debug/shards`, and must render one row per shard; a screenshot of it is
//! taken and checked to be a real, non-blank picture.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Raw;
use ringo::{IoBackend, Server, ServerConfig};

fn chromium() -> &'static str {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("chromium is not installed: scripts/test installs it (apt-get install chromium)");
}

/// Runs headless Chromium on `url` with extra args; returns stdout.
fn headless(url: &str, extra: &[&str], profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Let the page's script fetch /debug/shards and draw before the snapshot.
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dashboard_renders_a_row_per_shard_in_chromium() {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        shards: Some(2),
        io_backend: IoBackend::Auto,
        ..ServerConfig::default()
    };
    let server = Server::new(ringo::default_app).config(cfg).start().expect("starts");
    for _ in 0..20 {
        assert_eq!(Raw::connect(server.local_addr()).get("/json").status, 200);
    }
    std::thread::sleep(Duration::from_millis(300)); // one snapshot round
    let url = format!("http://{}/debug/dashboard", server.admin_addr().expect("admin"));
    let dir = std::env::temp_dir().join(format!("ringo-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    let dom = headless(&url, &["--dump-dom"], &dir.join("profile"));
    assert!(dom.contains("data-shard=\"0\"") && dom.contains("data-shard=\"1\""), "rows: {dom}");
    assert!(dom.contains("2 shards"), "summary line: {dom}");
    assert!(dom.contains("<div id=\"error\"></div>"), "the page reached /debug/shards: {dom}");

    let shot = dir.join("dashboard.png");
    headless(
        &url,
        &["--window-size=1100,400", &format!("--screenshot={}", shot.display())],
        &dir.join("profile"),
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // A blank 1100x400 page compresses to a few KB; rows, text and charts do not.
    assert!(png.len() > 10_000, "screenshot looks blank ({} bytes)", png.len());
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
