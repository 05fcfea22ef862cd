//! `RedisConfig`: where Redis is, how to log in, and the client's limits, with the
//! `redis://` URL parser.
//!
//! Owns the settings and their defaults only; never opens a socket.

use std::time::Duration;

use crate::breaker::Settings;

/// How a [`RedisClient`](super::RedisClient) reaches Redis and how it behaves.
///
/// Build one outside the app factory (it is `Clone + Send`) and give each shard its
/// own client made from a clone. Its `Debug` output hides the password.
#[derive(Clone)]
pub struct RedisConfig {
    /// `host:port` of the server. A host name is resolved at each connect, with the
    /// system resolver (blocking: prefer an address).
    pub addr: String,
    /// ACL user name (`None`: the `default` user).
    pub username: Option<String>,
    /// Password (`None`: no authentication).
    pub password: Option<String>,
    /// Database index selected on every connection.
    pub db: u32,
    /// Speak RESP3 (`HELLO 3`); a server without `HELLO` is spoken to in RESP2.
    pub resp3: bool,
    /// Connections per client (per shard); commands are spread over them.
    pub connections: usize,
    /// Deadline of each command, from the call to its reply.
    pub command_timeout: Duration,
    /// Deadline for connecting and the set-up commands (`HELLO`/`AUTH`/`SELECT`).
    pub connect_timeout: Duration,
    /// Commands waiting for a reply per connection before calls fail with
    /// [`QueueFull`](super::RedisError::QueueFull).
    pub max_queue: usize,
    /// First wait before reconnecting; doubled after each failed attempt…
    pub reconnect_min: Duration,
    /// …up to this. Each wait is drawn uniformly from its upper half (jitter).
    pub reconnect_max: Duration,
    /// The client's circuit breaker (counts timeouts, disconnections, socket and
    /// protocol errors; server error replies are answers).
    pub breaker: Settings,
    /// The breaker's name (in `/metrics` and `/debug/shards`).
    pub breaker_name: String,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            addr: "127.0.0.1:6379".to_owned(),
            username: None,
            password: None,
            db: 0,
            resp3: true,
            connections: 1,
            command_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(1),
            max_queue: 4096,
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_secs(2),
            breaker: Settings {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                ..Settings::default()
            }
            .trip_when(|c| c.consecutive_failures >= 5),
            breaker_name: "redis".to_owned(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("db", &self.db)
            .field("resp3", &self.resp3)
            .field("connections", &self.connections)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_queue", &self.max_queue)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("breaker", &self.breaker)
            .field("breaker_name", &self.breaker_name)
            .finish()
    }
}

/// `url` with the user info's password replaced, for error messages.
fn redacted(url: &str) -> String {
    let Some(rest) = url.strip_prefix("redis://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("redis://{}:<hidden>{}", &rest[..colon], &rest[at..]),
            None => format!("redis://<hidden>{}", &rest[at..]),
        },
        None => url.to_owned(),
    }
}

/// A `redis://` URL the parser refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid redis URL {url:?}: {reason}")]
pub struct UrlError {
    /// The URL as given, its password hidden.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl RedisConfig {
    /// The configuration for `redis://[user[:password]@]host[:port][/db][?protocol=resp2]`
    /// (`resp3`, the default, also accepted), other settings at their defaults. User
    /// and password may be percent-encoded.
    ///
    /// ```
    /// use ringo::redis::RedisConfig;
    ///
    /// let c = RedisConfig::from_url("redis://app:s%40cret@10.0.0.5:6380/2").unwrap();
    /// assert_eq!((c.addr.as_str(), c.db), ("10.0.0.5:6380", 2));
    /// assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("app"), Some("s@cret")));
    /// ```
    pub fn from_url(url: &str) -> Result<RedisConfig, UrlError> {
        let err = |reason| UrlError { url: redacted(url), reason };
        let rest = url.strip_prefix("redis://").ok_or_else(|| err("the scheme must be redis://"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let mut config = RedisConfig::default();
        let host = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| err("user and password must be UTF-8"))
                };
                match pass {
                    Some(p) => {
                        config.username = Some(decode(user)?).filter(|u| !u.is_empty());
                        config.password = Some(decode(p)?);
                    }
                    // `redis://secret@host`: a lone user info is the password.
                    None => config.password = Some(decode(user)?),
                }
                host
            }
            None => authority,
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        let has_port = match host.rfind(']') {
            Some(close) => host[close..].contains(':'),
            None => host.contains(':'),
        };
        config.addr = if has_port { host.to_owned() } else { format!("{host}:6379") };
        if !path.is_empty() {
            config.db = path.parse().map_err(|_| err("the path must be a database number"))?;
        }
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair {
                "protocol=resp2" => config.resp3 = false,
                "protocol=resp3" => config.resp3 = true,
                _ => return Err(err("unknown query parameter (only protocol=resp2|resp3)")),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_configs() {
        // (url, addr, user, password, db, resp3)
        type Want = (&'static str, Option<&'static str>, Option<&'static str>, u32, bool);
        let cases: &[(&str, Want)] = &[
            ("redis://127.0.0.1", ("127.0.0.1:6379", None, None, 0, true)),
            ("redis://127.0.0.1:7000/3", ("127.0.0.1:7000", None, None, 3, true)),
            ("redis://user:pass@h:1/0", ("h:1", Some("user"), Some("pass"), 0, true)),
            ("redis://:pass@h", ("h:6379", None, Some("pass"), 0, true)),
            ("redis://pass@h", ("h:6379", None, Some("pass"), 0, true)),
            ("redis://u:p%3Aq@h?protocol=resp2", ("h:6379", Some("u"), Some("p:q"), 0, false)),
            ("redis://[::1]:6380/1", ("[::1]:6380", None, None, 1, true)),
            ("redis://[::1]", ("[::1]:6379", None, None, 0, true)),
        ];
        for (url, (addr, user, pass, db, resp3)) in cases {
            let c = RedisConfig::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (c.addr.as_str(), c.username.as_deref(), c.password.as_deref(), c.db, c.resp3),
                (*addr, *user, *pass, *db, *resp3),
                "{url}"
            );
        }
        for bad in ["http://h", "redis://", "redis://h/x", "redis://h?tls=1", "redis://u:%ff@h"] {
            assert!(RedisConfig::from_url(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn passwords_stay_out_of_errors_and_debug_output() {
        let e = RedisConfig::from_url("redis://app:s3cret@h/x").expect_err("bad db");
        assert_eq!(e.url, "redis://app:<hidden>@h/x");
        let e = RedisConfig::from_url("redis://s3cret@h?tls=1").expect_err("bad query");
        assert_eq!(e.url, "redis://<hidden>@h?tls=1");
        let c = RedisConfig::from_url("redis://app:s3cret@h").expect("valid");
        let shown = format!("{c:?} {}", e);
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
