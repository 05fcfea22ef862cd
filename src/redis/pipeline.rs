//! `Pipeline`: a batch of commands sent together, optionally as one `MULTI`/`EXEC`
//! transaction.
//!
//! Owns the builder and the reading of its replies; the commands travel through the
//! client's queue like any call (one deadline, one breaker permit for the batch).

use super::RedisClient;
use super::command::{Cmd, SetOptions, encode};
use super::error::{RedisError, Result};
use super::reply::Value;

/// Commands queued to go out together.
///
/// ```no_run
/// # async fn f(redis: ringo::redis::RedisClient) -> ringo::redis::Result<()> {
/// let replies = redis.pipeline().set("a", "1").incr("a").get("a").query().await?;
/// assert_eq!(replies.len(), 3);
/// let tx = redis.pipeline().atomic().incr("n").incr("n").query().await?; // MULTI … EXEC
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pipeline {
    client: RedisClient,
    encoded: Vec<u8>,
    commands: usize,
    atomic: bool,
}

impl Pipeline {
    pub(crate) fn new(client: RedisClient) -> Pipeline {
        Pipeline { client, encoded: Vec::new(), commands: 0, atomic: false }
    }

    /// Wraps the commands in `MULTI`/`EXEC`: they run as one transaction, and the
    /// replies are `EXEC`'s.
    pub fn atomic(&mut self) -> &mut Pipeline {
        self.atomic = true;
        self
    }

    fn push(&mut self, args: &[&[u8]]) -> &mut Pipeline {
        encode(&mut self.encoded, args);
        self.commands += 1;
        self
    }

    /// Adds any command.
    pub fn cmd(&mut self, cmd: &Cmd) -> &mut Pipeline {
        cmd.encode_into(&mut self.encoded);
        self.commands += 1;
        self
    }

    /// Adds `GET key`.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> &mut Pipeline {
        self.push(&[b"GET", key.as_ref()])
    }

    /// Adds `SET key value`.
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Pipeline {
        self.push(&[b"SET", key.as_ref(), value.as_ref()])
    }

    /// Adds `SET key value` with options.
    pub fn set_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> &mut Pipeline {
        options.encode(&mut self.encoded, key.as_ref(), value.as_ref());
        self.commands += 1;
        self
    }

    /// Adds `DEL key`.
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> &mut Pipeline {
        self.push(&[b"DEL", key.as_ref()])
    }

    /// Adds `INCR key`.
    pub fn incr(&mut self, key: impl AsRef<[u8]>) -> &mut Pipeline {
        self.push(&[b"INCR", key.as_ref()])
    }

    /// Adds `INCRBY key by`.
    pub fn incr_by(&mut self, key: impl AsRef<[u8]>, by: i64) -> &mut Pipeline {
        let mut n = itoa::Buffer::new();
        let by = n.format(by).as_bytes().to_vec();
        self.push(&[b"INCRBY", key.as_ref(), &by])
    }

    /// Commands queued so far.
    pub fn len(&self) -> usize {
        self.commands
    }

    /// Whether no command is queued.
    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    /// Sends the commands and returns their replies in order. The first error reply
    /// makes the whole result that error (every reply is still read off the wire). For
    /// an atomic pipeline the replies are `EXEC`'s; a command refused while queueing
    /// aborts the transaction with that command's error.
    pub async fn query(&self) -> Result<Vec<Value>> {
        if self.commands == 0 {
            return Ok(Vec::new());
        }
        let replies = if self.atomic {
            let mut framed = Vec::with_capacity(self.encoded.len() + 32);
            encode(&mut framed, &[b"MULTI"]);
            framed.extend_from_slice(&self.encoded);
            encode(&mut framed, &[b"EXEC"]);
            let all = self.client.call_many(self.commands as u64 + 2, self.commands + 2, &framed).await?;
            self.exec_result(all)
        } else {
            let all = self.client.call_many(self.commands as u64, self.commands, &self.encoded).await?;
            all.into_iter().collect()
        };
        if let Err(e) = &replies {
            self.client.count_error(e);
        }
        replies
    }

    /// `EXEC`'s array from `OK, QUEUED…, EXEC` (or the first refusal).
    fn exec_result(&self, all: Vec<Result<Value>>) -> Result<Vec<Value>> {
        let mut last = None;
        for r in all {
            match r {
                Err(e) => return Err(e),
                Ok(v) => last = Some(v),
            }
        }
        match last {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Nil) => Err(RedisError::Redis("EXECABORT transaction aborted".to_owned())),
            Some(other) => Err(RedisError::Type(format!("EXEC answered {other:?}"))),
            None => Err(RedisError::Protocol("no reply to EXEC".to_owned())),
        }
    }
}
