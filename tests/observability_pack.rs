//! The observability pack in `deploy/`: the Prometheus alert rules pass `promtool check
//! rules` and their own `promtool test rules` cases; the Grafana dashboard is well-formed
//! Grafana JSON and its queries are valid PromQL; and every ringo series the pack names
//! (with the labels it selects on) is one a real server exports on `/metrics`.
//!
//! promtool is required, never skipped: scripts/test installs it (Debian `prometheus`).
//! The dashboard is checked by hand-written rules rather than a JSON Schema: Grafana
//! publishes no JSON Schema for dashboards (its schema lives in its own CUE/TypeScript
//! kinds), so one would have to be written here anyway, and the `jsonschema` crate would add
//! a large dependency tree for a dozen field checks.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Raw, one_shot};
use ringo::{IoBackend, Server, ServerConfig};
use serde_json::Value;

const ALERTS: &str = "deploy/prometheus/ringo-alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/ringo-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/ringo-dashboard.json";

/// Series the pack shows before ringo exports them: other issues add them (the breaker
/// and rate-limit middleware), under these names and with these labels. Until then their
/// panels say "no data" and their alerts cannot fire. Remove an entry once its series is
/// exported; from then on the real `/metrics` check covers it.
const ADDED_BY_OTHER_ISSUES: &[(&str, &[&str])] = &[];

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Grafana's own variables, usable in any query.
const GRAFANA_BUILTINS: [&str; 5] = ["__rate_interval", "__interval", "__range", "__all", "__auto"];

/// Panel types a Grafana 10/11 install has without plugins.
const PANEL_TYPES: [&str; 9] =
    ["row", "timeseries", "stat", "gauge", "bargauge", "state-timeline", "status-history", "table", "text"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Runs promtool from the repository root; a missing promtool fails the test.
fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(args).current_dir(root());
    let run = match stdin {
        None => cmd.output(),
        Some(input) => {
            use std::io::Write;
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().and_then(|mut child| {
                if let Some(mut sink) = child.stdin.take() {
                    sink.write_all(input.as_bytes())?;
                }
                child.wait_with_output()
            })
        }
    };
    run.unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({e}). It comes with the Debian `prometheus` package, which \
             scripts/test installs: apt-get install prometheus"
        )
    })
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- alert rules -------------------------------------------------------------------------

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let check = promtool(&["check", "rules", "--lint=all", "--lint-fatal", ALERTS], None);
    assert_success(&check, "promtool check rules");
    let test = promtool(&["test", "rules", ALERT_TESTS], None);
    assert_success(&test, "promtool test rules");
    assert!(String::from_utf8_lossy(&test.stdout).contains("SUCCESS"));
}

#[test]
fn every_alert_has_severity_annotations_and_a_firing_and_a_quiet_test() {
    let rules = read(ALERTS);
    let tests = read(ALERT_TESTS);
    let alerts: Vec<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    for required in [
        "RingoDown",
        "RingoShardStalled",
        "RingoHigh5xxRatio",
        "RingoP99OverTarget",
        "RingoBreakerOpen",
        "RingoAccessLogDropping",
        "RingoShardRestarted",
        "RingoPanics",
    ] {
        assert!(alerts.contains(&required), "{required} missing from {ALERTS}");
    }
    // Each rule's block runs from its `- alert:` line to the next one.
    for (i, block) in rules.split("- alert: ").skip(1).enumerate() {
        let name = alerts[i];
        let severity = block.lines().find_map(|l| l.trim().strip_prefix("severity: "));
        assert!(matches!(severity, Some("critical" | "warning")), "{name}: severity {severity:?}");
        for key in ["summary: ", "description: ", "runbook: "] {
            let value = block.lines().find_map(|l| l.trim().strip_prefix(key));
            assert!(value.is_some_and(|v| v.len() > 10), "{name}: annotation {key}missing or empty");
        }
        // An evaluation that expects it and one that expects silence.
        let evals: Vec<&str> = tests
            .lines()
            .zip(tests.lines().skip(1))
            .filter(|(l, _)| l.trim() == format!("alertname: {name}"))
            .map(|(_, next)| next.trim())
            .collect();
        assert!(evals.contains(&"exp_alerts:"), "{name}: no test where it fires");
        assert!(evals.contains(&"exp_alerts: []"), "{name}: no test where it stays quiet");
    }
}

// ---- dashboard ---------------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels is an array") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// `(panel title, expr)` of every query.
fn exprs(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            out.push((title, t["expr"].as_str().unwrap_or("").to_owned()));
        }
    }
    out
}

/// Names of the variables referenced as `$name`, `${name}` or `${name:format}`.
fn variable_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let name: String = body.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed_grafana_json() {
    let d = dashboard();
    let title = d["title"].as_str().expect("title is a string");
    assert!(!title.trim().is_empty(), "empty title");
    let uid = d["uid"].as_str().expect("uid is a string");
    assert!(
        (1..=40).contains(&uid.len()) && uid.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
        "uid {uid:?}: 1 to 40 of [A-Za-z0-9-_]"
    );
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion is an integer");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}: datasource refs as objects need 36+");
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string(), "time range");

    // The data source is a variable, so one file works imported or provisioned.
    let vars = d["templating"]["list"].as_array().expect("templating.list is an array");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a datasource variable of query prometheus");
    let ds_name = ds["name"].as_str().expect("datasource variable name");
    let ds_ref = serde_json::json!({ "type": "prometheus", "uid": format!("${{{ds_name}}}") });
    let mut names = BTreeSet::new();
    for v in vars {
        let name = v["name"].as_str().expect("variable name");
        assert!(names.insert(name), "variable {name} defined twice");
        if v["type"] == "query" {
            assert_eq!(v["datasource"], ds_ref, "variable {name} must query through ${{{ds_name}}}");
        }
    }
    for want in ["instance", "shard"] {
        let v = vars.iter().find(|v| v["name"] == want).unwrap_or_else(|| panic!("no {want} variable"));
        assert_eq!(v["type"], "query", "{want} is a query variable");
        assert!(v["definition"].as_str().is_some_and(|q| q.starts_with("label_values(")), "{want} query");
    }
    let defined = |r: &str| names.contains(r) || GRAFANA_BUILTINS.contains(&r);
    for v in vars {
        for r in variable_refs(v["definition"].as_str().unwrap_or("")) {
            assert!(defined(&r), "variable {} uses undefined ${r}", v["name"]);
        }
    }

    let panels = all_panels(&d);
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut placed: Vec<(String, [u64; 4])> = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().expect("panel title is a string");
        assert!(!title.trim().is_empty(), "panel without a title: {p}");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: id is a positive integer"));
        assert!(id > 0 && ids.insert(id), "{title}: id {id} is zero or not unique");
        let kind = p["type"].as_str().unwrap_or_else(|| panic!("{title}: type"));
        assert!(PANEL_TYPES.contains(&kind), "{title}: unknown panel type {kind}");
        let g = &p["gridPos"];
        let dim = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("{title}: gridPos.{k} is an integer"));
        let (h, w, x, y) = (dim("h"), dim("w"), dim("x"), dim("y"));
        assert!(
            h >= 1 && (1..=24).contains(&w) && x + w <= 24,
            "{title}: gridPos {g} off the 24-column grid"
        );
        for (other, [oh, ow, ox, oy]) in &placed {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        placed.push((title.to_owned(), [h, w, x, y]));
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if kind == "row" {
            assert!(targets.is_empty(), "{title}: a row has no queries");
            continue;
        }
        assert!(!targets.is_empty(), "{title}: no targets");
        assert_eq!(p["datasource"], ds_ref, "{title}: panel datasource");
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"].as_str().unwrap_or_else(|| panic!("{title}: target without refId"));
            assert!(refs.insert(r), "{title}: refId {r} twice");
            assert_eq!(t["datasource"], ds_ref, "{title} {r}: target datasource");
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(!expr.trim().is_empty(), "{title} {r}: empty expr");
            for v in variable_refs(expr) {
                assert!(defined(&v), "{title} {r}: undefined variable ${v}");
            }
        }
    }

    // What the issue asks to see, by the series each panel must query.
    let all: Vec<String> = exprs(&d).into_iter().map(|(_, e)| e).collect();
    let queried = |needle: &str| all.iter().any(|e| e.contains(needle));
    for needle in [
        "rate(ringo_http_requests_total",
        "histogram_quantile(0.99, sum by (instance, shard, le) (rate(ringo_http_request_duration_seconds_bucket",
        "histogram_quantile(0.5, sum by (instance, shard, le) (rate(ringo_http_request_duration_seconds_bucket",
        "max by (instance) (",
        "status=\"5xx\"",
        "ringo_connections_open",
        "ringo_shard_heartbeat_age_seconds",
        "ringo_handler_panics_total",
        "ringo_access_log_dropped_total",
        "ringo_shard_restarts_total",
        "ringo_breaker_state",
        "ringo_rate_limited_total",
    ] {
        assert!(queried(needle), "no panel queries {needle}");
    }
    // Every series an alert watches has a panel to look at.
    let alerted = metric_names(&read(ALERTS));
    let shown: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    for m in alerted {
        assert!(shown.contains(&m), "{m} is alerted on but on no panel");
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // Each query becomes a recording rule (variables replaced by what Grafana sends), so
    // promtool parses every one. JSON is YAML.
    let d = dashboard();
    let rules: Vec<Value> = exprs(&d)
        .iter()
        .enumerate()
        .map(|(i, (title, e))| {
            let expr = e.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$shard", ".*");
            assert!(!expr.contains('$'), "{title}: variable left in {expr}");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr })
        })
        .collect();
    assert!(rules.len() >= 15, "{} queries", rules.len());
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ringo-dashboard-queries.yml");
    std::fs::write(&path, file.to_string()).expect("write the queries");
    let out = promtool(&["check", "rules", path.to_str().expect("utf-8 path")], None);
    assert_success(&out, "promtool check rules on the dashboard's queries");
}

// ---- the names against a real server ----------------------------------------------------

/// Metric names (`ringo_…`) mentioned in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    selectors(text).into_iter().map(|(name, _)| name).collect()
}

/// One label matcher of a selector: `label op "value"`.
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// Every `ringo_…` name in `text`, with the matchers of its `{…}` selector if one follows.
fn selectors(text: &str) -> Vec<(String, Vec<Matcher>)> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find("ringo_") {
        let start = at + i;
        let name: String = text[start..].chars().take_while(|c| ident(*c)).collect();
        at = start + name.len();
        if text[..start].chars().next_back().is_some_and(ident) {
            continue; // part of a longer word
        }
        let mut matchers = Vec::new();
        if let Some(body) = text[at..].strip_prefix('{') {
            let mut rest = body.trim_start();
            while !rest.starts_with('}') {
                let label: String = rest.chars().take_while(|c| ident(*c)).collect();
                rest = &rest[label.len()..];
                let op: String = rest.chars().take_while(|c| "=!~".contains(*c)).collect();
                rest = &rest[op.len()..];
                let value = rest.strip_prefix('"').and_then(|r| r.split_once('"'));
                let Some((value, after)) = value else {
                    panic!("cannot read the selector of {name} in {text}")
                };
                assert!(!label.is_empty() && !op.is_empty(), "bad matcher in {name}{{{body}");
                matchers.push(Matcher { label, op, value: value.to_owned() });
                rest = after.trim_start().trim_start_matches(',').trim_start();
            }
        }
        out.push((name, matchers));
    }
    out
}

/// A series' labels and the values seen for each.
type Labels = BTreeMap<String, BTreeSet<String>>;

/// What a scrape says: the labels of each name.
fn exported(metrics: &str) -> BTreeMap<String, Labels> {
    let mut out: BTreeMap<String, Labels> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.entry(name.to_owned()).or_default(); // histogram families by their base name
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if let Some(body) = line[end..].strip_prefix('{').and_then(|b| b.rsplit_once('}')).map(|(b, _)| b) {
            // Label values here hold no `",` (route patterns, numbers, status classes).
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) =
                    pair.split_once("=\"").unwrap_or_else(|| panic!("label pair {pair:?} in {line}"));
                labels.entry(k.to_owned()).or_default().insert(v.trim_end_matches('"').to_owned());
            }
        }
    }
    out
}

fn scrape(admin: SocketAddr) -> String {
    one_shot(admin, b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n").text()
}

#[test]
fn every_series_the_pack_uses_is_exported_by_a_real_server() {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        shards: Some(2),
        io_backend: IoBackend::Auto,
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    // The default app plus what the pack watches beyond it: a breaker (its series exist
    // once one is built) and a global rate limit.
    let server = Server::new(|| {
        let mut r = ringo::default_app()?;
        let mut guarded = r.group("/guarded");
        guarded.middleware(ringo::middleware::breaker(ringo::breaker::Breaker::new(
            "upstream",
            ringo::breaker::Settings::default(),
        )));
        guarded.middleware(ringo::middleware::RateLimit::global("api", 1000.0, 100));
        guarded.get("/x", |c: &mut ringo::Context| c.string(200, "ok"))?;
        Ok(r)
    })
    .config(cfg)
    .start()
    .expect("server starts");
    let admin = server.admin_addr().expect("admin listener");
    for _ in 0..10 {
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/plaintext").status, 200);
        assert_eq!(c.get("/users/a").status, 200);
        assert_eq!(c.get("/nope").status, 404);
        assert_eq!(c.get("/guarded/x").status, 200);
    }
    // Snapshots arrive every 200 ms.
    let start = Instant::now();
    let metrics = loop {
        let m = scrape(admin);
        if m.contains("route=\"/plaintext\"") || start.elapsed() > Duration::from_secs(5) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    server.shutdown();
    let real = exported(&metrics);
    assert!(real.contains_key("ringo_http_requests_total"), "no traffic counted:\n{metrics}");

    // The exposition itself passes Prometheus' parser and linter.
    let lint = promtool(&["check", "metrics"], Some(&metrics));
    assert_success(&lint, "promtool check metrics on /metrics");

    let d = dashboard();
    let mut texts: Vec<(String, String)> =
        vec![(ALERTS.into(), read(ALERTS)), (ALERT_TESTS.into(), read(ALERT_TESTS))];
    texts.extend(exprs(&d).into_iter().map(|(t, e)| (format!("{DASHBOARD} panel {t:?}"), e)));
    for v in d["templating"]["list"].as_array().expect("templating") {
        texts.push((
            format!("{DASHBOARD} variable {}", v["name"]),
            v["definition"].as_str().unwrap_or("").into(),
        ));
    }
    for p in all_panels(&d) {
        texts.push((
            format!("{DASHBOARD} description of {}", p["title"]),
            p["description"].as_str().unwrap_or("").into(),
        ));
    }

    let mut used_pending = BTreeSet::new();
    let mut checked = 0;
    for (source, text) in &texts {
        for (name, matchers) in selectors(text) {
            let labels: BTreeSet<String> = match real.get(&name) {
                Some(l) => l.keys().cloned().collect(),
                None => {
                    let pending = ADDED_BY_OTHER_ISSUES.iter().find(|(n, _)| *n == name);
                    let Some((_, labels)) = pending else {
                        panic!("{source} uses {name}, which ringo does not export:\n{metrics}")
                    };
                    used_pending.insert(name.clone());
                    labels.iter().map(|l| (*l).to_owned()).collect()
                }
            };
            for Matcher { label, op, value } in matchers {
                if TARGET_LABELS.contains(&label.as_str()) {
                    continue;
                }
                assert!(
                    labels.contains(&label),
                    "{source}: {name} has no label {label:?} (it has {labels:?})"
                );
                if op != "=" {
                    continue;
                }
                let seen = real.get(&name).and_then(|l| l.get(&label));
                match label.as_str() {
                    // Status classes, as ringo writes them.
                    "status" => assert!(
                        value.len() == 3
                            && value.ends_with("xx")
                            && seen.is_some_and(|s| s.iter().all(|v| v.ends_with("xx"))),
                        "{source}: {name}{{status={value:?}}}; ringo exports {seen:?}"
                    ),
                    // Histogram buckets must be ringo's boundaries.
                    "le" => assert!(
                        seen.is_some_and(|s| s.contains(&value)),
                        "{source}: {name}{{le={value:?}}} is not one of ringo's buckets {seen:?}"
                    ),
                    _ => {}
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} references found: is the scan broken?");
    for (name, _) in ADDED_BY_OTHER_ISSUES {
        assert!(
            used_pending.contains(*name) || real.contains_key(*name),
            "{name} is allowed as pending but the pack does not use it: drop it from the list"
        );
    }
}
