//! Configuration: embedded defaults, then a TOML file, then `RINGO_*` environment
//! variables, then command-line flags; each layer overrides the one before.
//!
//! Environment variables name a key: `RINGO_LISTEN`, `RINGO_SHARDS`, … for the
//! `[server]` table and `RINGO_LIMITS_MAX_BODY_BYTES`, … for `[limits]`. Their values
//! are read as TOML values (numbers, booleans), or as strings when they are not one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access_log::{AccessLogFormat, LogOutput};
use crate::http::Limits;
use crate::server::{IoBackend, ServerConfig, ShardDeathPolicy};

/// `RINGO_*` variables that belong to ringo's scripts, not to the configuration.
const TOOL_VARS: [&str; 3] = ["SYSROOT", "BIN", "TUNING_STATE"];

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Data listener address.
    pub listen: String,
    /// Admin listener address (health, metrics); loopback by default; empty: none.
    pub admin: String,
    /// Number of shards; 0 means one per CPU in the affinity mask.
    pub shards: usize,
    /// Cores for the shards, e.g. `"0-3,6"`; empty means the affinity mask.
    pub cores: String,
    /// Pin each shard thread to its core.
    pub pin: bool,
    /// `auto`, `uring` or `epoll`.
    pub io_backend: IoBackend,
    /// Listen backlog per shard.
    pub backlog: u32,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub drain_timeout_ms: u64,
    /// On shutdown, how long `/readyz` answers 503 before listeners close, in milliseconds.
    pub drain_delay_ms: u64,
    /// A shard silent this long (milliseconds) fails `/healthz`.
    pub stall_threshold_ms: u64,
    /// Core for the control thread; -1 picks the first allowed core no shard uses.
    pub control_core: i64,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `ringo=debug`.
    pub log: String,
    /// The default app's middleware: `bare` (none) or `default` (request id + access log).
    pub stack: Stack,
    /// When a shard thread dies: `exit` (the process exits with status 70 for its
    /// supervisor) or `restart` (the shard starts again with a fresh listener).
    pub on_shard_death: ShardDeathPolicy,
}

/// Which middleware the default app runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// No middleware: the fastest path.
    #[default]
    Bare,
    /// `request_id()` and `logger()` around every route.
    Default,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "0.0.0.0:8080".into(),
            admin: "127.0.0.1:9090".into(),
            shards: 0,
            cores: String::new(),
            pin: true,
            io_backend: IoBackend::Auto,
            backlog: 4096,
            drain_timeout_ms: 10_000,
            drain_delay_ms: 0,
            stall_threshold_ms: 2_000,
            control_core: -1,
            log: "info".into(),
            stack: Stack::Bare,
            on_shard_death: ShardDeathPolicy::Exit,
        }
    }
}

/// The `[access_log]` table: what the `default` stack's access log writes, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogSection {
    /// `json` (one object per line) or `combined` (Apache/nginx combined plus ringo's fields).
    pub format: AccessLogFormat,
    /// A file to append to (reopened on SIGHUP, for logrotate); empty: stdout.
    pub path: String,
    /// Log one request in this many (5xx always); 1 logs every request.
    pub sample_every: u32,
}

impl Default for AccessLogSection {
    fn default() -> Self {
        AccessLogSection { format: AccessLogFormat::Json, path: String::new(), sample_every: 1 }
    }
}

impl AccessLogSection {
    /// Where the lines go.
    pub fn output(&self) -> LogOutput {
        if self.path.trim().is_empty() {
            LogOutput::Stdout
        } else {
            LogOutput::File(self.path.clone().into())
        }
    }
}

/// The `[rate_limit]` table: limits the default app applies to every route (0: off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests per second for the whole process (shared by the shards by demand).
    pub global_rate: f64,
    /// Burst of the global limit.
    pub global_burst: u32,
    /// Requests per second per client.
    pub client_rate: f64,
    /// Burst of the per-client limit.
    pub client_burst: u32,
    /// Header that names the client (an API key); empty: the client's IP address.
    pub client_key_header: String,
    /// Client keys kept per shard.
    pub max_keys: usize,
    /// Requests per second for the whole cluster (every instance sharing `[redis]`),
    /// leased from Redis in batches; 0: off.
    pub cluster_rate: f64,
    /// Burst of the cluster limit.
    pub cluster_burst: u32,
    /// While Redis cannot be reached: `open` (each shard admits up to `cluster_rate`
    /// itself) or `closed` (refuse everything).
    pub cluster_on_redis_down: RedisDownPolicy,
}

/// `rate_limit.cluster_on_redis_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisDownPolicy {
    /// Admit by a local per-shard limit.
    #[default]
    Open,
    /// Refuse every request.
    Closed,
}

/// The `[cache]` table: the default app's `items` cache (with `[redis] url`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Most entries per shard.
    pub max_entries: usize,
    /// Most bytes per shard.
    pub max_bytes: u64,
    /// How long a value is kept, in milliseconds.
    pub ttl_ms: u64,
    /// How long an absence is kept, in milliseconds.
    pub negative_ttl_ms: u64,
    /// Preheat: a file of item ids (one per line) every shard loads before it is ready.
    pub preheat_file: String,
    /// Preheat: a Redis `SCAN` pattern (e.g. `item:*`) every shard loads before ready.
    pub preheat_pattern: String,
    /// When the preheat fails: `fail` (the server does not start) or `cold` (it starts
    /// with what it has).
    pub preheat_on_failure: crate::startup::OnFailure,
    /// Rebuild the key filter (the penetration guard: ids that cannot exist never
    /// reach Redis) from a `SCAN` of `item:*` this often, in seconds; 0: no filter.
    pub filter_rebuild_s: u64,
    /// Estimated lookups per 10 s on a shard at which an item is hot (kept in the
    /// protected segment, read from `[redis] hot_url`); 0: only `hot_keys` are.
    pub hot_threshold: u64,
    /// Item ids hot from the start (a flash sale known in advance).
    pub hot_keys: Vec<String>,
}

impl Default for CacheSection {
    fn default() -> Self {
        let d = crate::cache::CacheConfig::default();
        CacheSection {
            max_entries: d.max_entries,
            max_bytes: d.max_bytes,
            ttl_ms: d.ttl.as_millis() as u64,
            negative_ttl_ms: d.negative_ttl.as_millis() as u64,
            preheat_file: String::new(),
            preheat_pattern: String::new(),
            preheat_on_failure: crate::startup::OnFailure::FailStart,
            filter_rebuild_s: 0,
            hot_threshold: d.hot_threshold,
            hot_keys: Vec::new(),
        }
    }
}

impl CacheSection {
    /// The cache's sizes and lifetimes.
    pub fn cache_config(&self) -> crate::cache::CacheConfig {
        crate::cache::CacheConfig {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            ttl: Duration::from_millis(self.ttl_ms),
            negative_ttl: Duration::from_millis(self.negative_ttl_ms),
            hot_threshold: self.hot_threshold,
            ..crate::cache::CacheConfig::default()
        }
    }
}

/// The `[redis]` table: the Redis the default app's cluster features use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://[user:password@]host:port[/db]`; empty: no Redis.
    pub url: String,
    /// Deadline of one command, in milliseconds.
    pub command_timeout_ms: u64,
    /// `/readyz` answers 503 until every shard's Redis client is connected (and again
    /// while one is not).
    pub ready_required: bool,
    /// A separate Redis for hot items (the `hot:` namespace), so a flash-sale key's
    /// traffic stays off the main tier; empty: none.
    pub hot_url: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: String::new(),
            command_timeout_ms: 250,
            ready_required: false,
            hot_url: String::new(),
        }
    }
}

impl RedisSection {
    /// The client configuration, when a URL is set.
    pub fn client_config(&self) -> Result<Option<crate::redis::RedisConfig>, ConfigError> {
        if self.url.trim().is_empty() {
            return Ok(None);
        }
        let mut config = crate::redis::RedisConfig::from_url(self.url.trim())
            .map_err(|e| ConfigError::Value { key: "redis.url", message: e.to_string() })?;
        config.command_timeout = Duration::from_millis(self.command_timeout_ms);
        Ok(Some(config))
    }

    /// The hot-data Redis's client configuration, when `hot_url` is set.
    pub fn hot_client_config(&self) -> Result<Option<crate::redis::RedisConfig>, ConfigError> {
        if self.hot_url.trim().is_empty() {
            return Ok(None);
        }
        let mut config = crate::redis::RedisConfig::from_url(self.hot_url.trim())
            .map_err(|e| ConfigError::Value { key: "redis.hot_url", message: e.to_string() })?;
        config.command_timeout = Duration::from_millis(self.command_timeout_ms);
        config.breaker_name = "redis-hot".to_owned();
        Ok(Some(config))
    }
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection {
            global_rate: 0.0,
            global_burst: 100,
            client_rate: 0.0,
            client_burst: 20,
            client_key_header: String::new(),
            max_keys: 10_000,
            cluster_rate: 0.0,
            cluster_burst: 100,
            cluster_on_redis_down: RedisDownPolicy::Open,
        }
    }
}

/// The `[proxy]` table: which peers may tell the client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// CIDRs (or addresses) of proxies whose `X-Forwarded-For` / `Forwarded` are
    /// believed, e.g. `["10.0.0.0/8", "::1/128"]`; empty: the peer is the client.
    pub trusted: Vec<String>,
}

/// The `[cors]` table: CORS on every default-app route when `enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSection {
    /// Answer preflights and add the CORS fields.
    pub enabled: bool,
    /// Allowed origins; empty: any.
    pub origins: Vec<String>,
    /// Methods a preflight may ask for.
    pub methods: Vec<String>,
    /// Request headers a preflight may ask for (`"*"`: any).
    pub headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose: Vec<String>,
    /// Allow credentials (the origin is then echoed, never `*`).
    pub credentials: bool,
    /// Seconds a browser may cache a preflight; 0: not sent.
    pub max_age_s: u64,
}

impl Default for CorsSection {
    fn default() -> Self {
        let d = crate::middleware::CorsConfig::default();
        CorsSection {
            enabled: false,
            origins: Vec::new(),
            methods: d.allowed_methods,
            headers: d.allowed_headers,
            expose: d.exposed_headers,
            credentials: d.allow_credentials,
            max_age_s: 0,
        }
    }
}

impl CorsSection {
    /// The middleware's configuration.
    pub fn to_cors_config(&self) -> crate::middleware::CorsConfig {
        crate::middleware::CorsConfig {
            allowed_origins: if self.origins.is_empty() {
                crate::middleware::AllowedOrigins::Any
            } else {
                crate::middleware::AllowedOrigins::List(self.origins.clone())
            },
            allowed_methods: self.methods.clone(),
            allowed_headers: self.headers.clone(),
            exposed_headers: self.expose.clone(),
            allow_credentials: self.credentials,
            max_age: (self.max_age_s > 0).then(|| Duration::from_secs(self.max_age_s)),
        }
    }
}

/// The `[trace]` table: sampling of the traces the default stack starts, and OTLP
/// export of sampled request spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceSection {
    /// Share of the traces this server starts that are sampled (0 to 1); incoming
    /// trace headers keep their caller's decision.
    pub sample_ratio: f64,
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`;
    /// empty: no spans are kept or exported.
    pub otlp_endpoint: String,
    /// The `service.name` the spans carry.
    pub service_name: String,
    /// Deadline of one export request, in milliseconds.
    pub export_timeout_ms: u64,
    /// Spans each shard keeps between two snapshots (200 ms); more are dropped, counted.
    pub spans_per_shard: usize,
}

impl Default for TraceSection {
    fn default() -> Self {
        let d = crate::TraceExport::default();
        TraceSection {
            sample_ratio: 1.0,
            otlp_endpoint: String::new(),
            service_name: d.service_name,
            export_timeout_ms: d.timeout.as_millis() as u64,
            spans_per_shard: d.spans_per_shard,
        }
    }
}

impl TraceSection {
    /// The export settings, when an endpoint is configured.
    pub fn export(&self) -> Option<crate::TraceExport> {
        let endpoint = self.otlp_endpoint.trim();
        (!endpoint.is_empty()).then(|| crate::TraceExport {
            endpoint: endpoint.to_owned(),
            service_name: self.service_name.clone(),
            timeout: Duration::from_millis(self.export_timeout_ms),
            spans_per_shard: self.spans_per_shard,
        })
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener, shards and runtime.
    pub server: ServerSection,
    /// Request limits and timeouts.
    pub limits: Limits,
    /// The access log of the `default` stack.
    pub access_log: AccessLogSection,
    /// Rate limits on the default app's routes.
    pub rate_limit: RateLimitSection,
    /// Trusted proxies (client addresses behind load balancers).
    pub proxy: ProxySection,
    /// CORS on the default app's routes.
    pub cors: CorsSection,
    /// Trace sampling and span export.
    pub trace: TraceSection,
    /// The Redis the cluster-wide features use.
    pub redis: RedisSection,
    /// The default app's `items` cache.
    pub cache: CacheSection,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The system error.
        source: std::io::Error,
    },
    /// The file is not valid, or a key has the wrong type or is unknown.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment variable does not fit its key.
    #[error("invalid environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is well-typed but unusable.
    #[error("invalid value for {key}: {message}")]
    Value {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Defaults, overridden by `file` (if given), then by `RINGO_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Value { key: "defaults", message: e.to_string() })?;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
            // Parse into `Config` first so errors point at the file's own lines.
            let from_file: Config = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?;
            table = toml::Table::try_from(from_file)
                .map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })?;
        }
        for (var, value) in env {
            let Some(key) = var.strip_prefix("RINGO_") else { continue };
            let key = key.to_ascii_lowercase();
            let (section, field) = env_key(&key);
            let Some(toml::Value::Table(t)) = table.get_mut(section) else { continue };
            if !t.contains_key(&field) {
                // Not a setting (a tool's variable, or a typo): see `unknown_env_vars`.
                continue;
            }
            let parsed = value
                .parse::<toml::Value>()
                .ok()
                .or_else(|| {
                    format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"))
                })
                .unwrap_or(toml::Value::String(value.clone()));
            t.insert(field, parsed);
            let check: Result<Config, _> = toml::Value::Table(table.clone()).try_into();
            if let Err(e) = check {
                return Err(ConfigError::Env { var, message: e.to_string() });
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Env { var: "RINGO_*".into(), message: e.to_string() })
    }

    /// The `RINGO_*` variables in `env` that name no setting (the CLI warns about them),
    /// leaving out the ones ringo's own tools use (`RINGO_SYSROOT`, `RINGO_BIN`,
    /// `RINGO_TUNING_STATE`).
    pub fn unknown_env_vars(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let defaults = match toml::Table::try_from(Config::default()) {
            Ok(t) => t,
            Err(_) => return Vec::new(),
        };
        let mut unknown = Vec::new();
        for (var, _) in env {
            let Some(key) = var.strip_prefix("RINGO_") else { continue };
            if TOOL_VARS.contains(&key) {
                continue;
            }
            let key = key.to_ascii_lowercase();
            let (section, field) = env_key(&key);
            let known =
                matches!(defaults.get(section), Some(toml::Value::Table(t)) if t.contains_key(&field));
            if !known {
                unknown.push(var);
            }
        }
        unknown
    }

    /// The configuration as TOML text (what `ringo config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The server settings this configuration describes.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let s = &self.server;
        let listen: SocketAddr = s.listen.parse().map_err(|e| ConfigError::Value {
            key: "server.listen",
            message: format!("`{}`: {e}", s.listen),
        })?;
        let cores = if s.cores.trim().is_empty() {
            None
        } else {
            Some(
                parse_core_list(&s.cores)
                    .map_err(|message| ConfigError::Value { key: "server.cores", message })?,
            )
        };
        let admin = if s.admin.trim().is_empty() {
            None
        } else {
            Some(s.admin.parse::<SocketAddr>().map_err(|e| ConfigError::Value {
                key: "server.admin",
                message: format!("`{}`: {e}", s.admin),
            })?)
        };
        self.limits.validate().map_err(|e| ConfigError::Value { key: e.key, message: e.message })?;
        self.redis.hot_client_config()?;
        if self.rate_limit.cluster_rate > 0.0 && self.redis.client_config()?.is_none() {
            return Err(ConfigError::Value {
                key: "redis.url",
                message: "rate_limit.cluster_rate needs a Redis to share the limit through".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.trace.sample_ratio) {
            return Err(ConfigError::Value {
                key: "trace.sample_ratio",
                message: format!("{} is not between 0 and 1", self.trace.sample_ratio),
            });
        }
        Ok(ServerConfig {
            listen,
            shards: (s.shards > 0).then_some(s.shards),
            cores,
            pin: s.pin,
            io_backend: s.io_backend,
            backlog: s.backlog,
            limits: self.limits.clone(),
            drain_timeout: Duration::from_millis(s.drain_timeout_ms),
            admin,
            drain_delay: Duration::from_millis(s.drain_delay_ms),
            stall_threshold: Duration::from_millis(s.stall_threshold_ms),
            control_core: usize::try_from(s.control_core).ok(),
            on_shard_death: s.on_shard_death,
            trace_export: self.trace.export(),
            ready_requires_redis: self.redis.ready_required,
        })
    }
}

/// The `(table, key)` a lower-cased `RINGO_` variable name (without the prefix) sets:
/// `limits_*`, `access_log_*`, `rate_limit_*`, `proxy_*`, `cors_*`, `trace_*`,
/// `redis_*` and `cache_*` name their tables, anything else `[server]`.
fn env_key(key: &str) -> (&'static str, String) {
    for table in ["limits", "access_log", "rate_limit", "proxy", "cors", "trace", "redis", "cache"] {
        if let Some(field) = key.strip_prefix(table).and_then(|k| k.strip_prefix('_')) {
            return (table, field.to_owned());
        }
    }
    ("server", key.to_owned())
}

/// Parses a core list such as `0-3,6` (ranges inclusive).
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("`{s}` is not a core number"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range `{part}` runs backwards"));
                }
                cores.extend(a..=b);
            }
            None => cores.push(num(part)?),
        }
    }
    if cores.is_empty() {
        return Err(format!("`{text}` names no core"));
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("ringo-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("ringo.toml");
        std::fs::write(
            &file,
            "[server]\nshards = 3\nlisten = \"127.0.0.1:1\"\n[limits]\nmax_body_bytes = 10\n",
        )
        .expect("write");
        let cfg = Config::load(
            Some(&file),
            env(&[("RINGO_SHARDS", "5"), ("RINGO_LIMITS_REQUIRE_LENGTH", "false")]),
        )
        .expect("loads");
        assert_eq!(cfg.server.shards, 5, "env beats file");
        assert_eq!(cfg.server.listen, "127.0.0.1:1", "file beats defaults");
        assert_eq!(cfg.limits.max_body_bytes, 10);
        assert!(!cfg.limits.require_length);
        assert_eq!(cfg.server.admin, "127.0.0.1:9090", "defaults stay");
        let cfg =
            Config::load(None, env(&[("RINGO_IO_BACKEND", "epoll"), ("RINGO_CORES", "0-1")])).expect("loads");
        assert_eq!(cfg.server.io_backend, IoBackend::Epoll);
        assert_eq!(cfg.server_config().expect("valid").cores, Some(vec![0, 1]));
    }

    #[test]
    fn bad_files_name_key_and_line() {
        let dir = std::env::temp_dir().join(format!("ringo-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[server]\nshards = 2\n\n[limits]\nmax_body_bytes = \"big\"\n").expect("write");
        let msg = Config::load(Some(&file), Vec::new()).expect_err("bad type").to_string();
        assert!(msg.contains("line 5"), "{msg}");
        assert!(msg.contains("max_body_bytes"), "{msg}");
        std::fs::write(&file, "[server]\nshardz = 2\n").expect("write");
        let msg = Config::load(Some(&file), Vec::new()).expect_err("unknown key").to_string();
        assert!(msg.contains("shardz") && msg.contains("line 2"), "{msg}");
        let msg = Config::load(None, env(&[("RINGO_SHARDS", "many")])).expect_err("bad env").to_string();
        assert!(msg.contains("RINGO_SHARDS"), "{msg}");
        // Unknown variables are not settings: ignored by `load`, listed for a warning.
        let vars = env(&[("RINGO_NOPE", "1"), ("RINGO_SYSROOT", "/tmp/x"), ("RINGO_SHARDS", "2")]);
        assert!(Config::load(None, vars.clone()).is_ok());
        assert_eq!(Config::unknown_env_vars(vars), vec!["RINGO_NOPE".to_string()]);
    }

    #[test]
    fn limits_past_32_bit_offsets_fail_with_their_key() {
        let cfg = Config::load(None, env(&[("RINGO_LIMITS_MAX_BODY_BYTES", "5000000000")])).expect("loads");
        let msg = cfg.server_config().expect_err("over 4 GiB").to_string();
        assert!(msg.contains("limits.max_body_bytes"), "{msg}");
        let cfg = Config::load(None, env(&[("RINGO_LIMITS_MAX_HEADER_BYTES", "4294967296")])).expect("loads");
        let msg = cfg.server_config().expect_err("over 4 GiB").to_string();
        assert!(msg.contains("limits.max_header_bytes"), "{msg}");
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0-3,6").expect("ok"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_core_list(" 2 ").expect("ok"), vec![2]);
        assert!(parse_core_list("3-1").is_err());
        assert!(parse_core_list("a").is_err());
        assert!(parse_core_list("").is_err());
    }
}
