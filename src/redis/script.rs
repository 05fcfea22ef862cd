//! `Script`: a Lua script called by its SHA1 (`EVALSHA`), sent whole (`EVAL`, which
//! also caches it on the server) when the server answers `NOSCRIPT`.
//!
//! Owns the script's text and digest; calls go through the client.

use super::RedisClient;
use super::error::{RedisError, Result};
use super::reply::FromValue;

/// A Lua script and its SHA1.
///
/// ```no_run
/// # async fn f(redis: ringo::redis::RedisClient) -> ringo::redis::Result<()> {
/// use ringo::redis::Script;
/// let add = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
/// let n: i64 = add.invoke(&redis, &["counter"], &["5"]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    source: String,
    sha1: String,
}

impl Script {
    /// A script from its Lua source.
    pub fn new(source: impl Into<String>) -> Script {
        let source = source.into();
        let sha1 = sha1_smol::Sha1::from(source.as_bytes()).digest().to_string();
        Script { source, sha1 }
    }

    /// The hex SHA1 Redis knows the script by.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    /// The Lua source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the script: `EVALSHA`, then `EVAL` once if the server does not have it
    /// (after a restart or `SCRIPT FLUSH`).
    pub async fn invoke<T: FromValue, K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        client: &RedisClient,
        keys: &[K],
        args: &[A],
    ) -> Result<T> {
        match client.evalsha(&self.sha1, keys, args).await {
            Err(RedisError::Redis(m)) if m.starts_with("NOSCRIPT") => {
                client.count_script_reload();
                client.eval(&self.source, keys, args).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_redis_script_sha1() {
        // `redis-cli SCRIPT LOAD "return 1"`.
        assert_eq!(Script::new("return 1").sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
