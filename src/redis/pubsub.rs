//! `Subscriber`: a dedicated connection in subscribe mode, yielding published
//! messages.
//!
//! Owns its own socket (a subscribed connection can carry no other command), read by
//! the task that awaits [`Subscriber::next_message`]; no background task, no queue. It
//! does not reconnect: when the connection fails, `next_message` says so and the caller
//! subscribes again (messages published meanwhile are lost, as with any Redis
//! subscriber).

use crate::rt::net::TcpStream;
use bytes::{Bytes, BytesMut};

use super::command::encode;
use super::config::RedisConfig;
use super::connection::{read_frame, write};
use super::error::{RedisError, Result};
use super::reply::{Frame, Value};

/// A message published on a channel this subscriber listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published on.
    pub channel: Bytes,
    /// What was published.
    pub payload: Bytes,
}

/// A connection subscribed to channels (from
/// [`RedisClient::subscribe`](super::RedisClient::subscribe)).
pub struct Subscriber {
    stream: TcpStream,
    buf: BytesMut,
    resp3: bool,
    /// Subscription confirmations still to come (read past by `next_message`).
    unconfirmed: usize,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").field("resp3", &self.resp3).finish_non_exhaustive()
    }
}

/// What a frame on a subscribed connection is.
enum Event {
    Message(Message),
    /// `subscribe` / `unsubscribe` confirmations and anything else.
    Other,
}

fn classify(v: Value) -> Result<Event> {
    let Value::Array(items) = v else {
        return Err(RedisError::Protocol("a subscribed connection got a non-array frame".to_owned()));
    };
    let mut items = items.into_iter();
    let kind = items.next();
    match (kind.as_ref().and_then(Value::as_bytes), items.next(), items.next()) {
        (Some(b"message"), Some(Value::Data(channel)), Some(Value::Data(payload))) => {
            Ok(Event::Message(Message { channel, payload }))
        }
        _ => Ok(Event::Other),
    }
}

impl Subscriber {
    /// Connects with `config`'s set-up and subscribes to `channels`, returning once
    /// the server confirmed each.
    pub(crate) async fn connect(config: &RedisConfig, channels: &[&[u8]]) -> Result<Subscriber> {
        let up = crate::time::timeout(config.connect_timeout, super::connection::set_up_stream(config))
            .await
            .map_err(|_| RedisError::Timeout)??;
        let mut s = Subscriber { stream: up.0, buf: up.1, resp3: up.2, unconfirmed: 0 };
        s.subscribe(channels).await?;
        while s.unconfirmed > 0 {
            s.next_event().await?;
        }
        Ok(s)
    }

    /// Subscribes to more channels. Messages on them may come before the confirmation;
    /// none is lost.
    pub async fn subscribe(&mut self, channels: &[&[u8]]) -> Result<()> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(channels.len() + 1);
        args.push(b"SUBSCRIBE");
        args.extend_from_slice(channels);
        let mut out = Vec::new();
        encode(&mut out, &args);
        write(&mut self.stream, out).await?;
        self.unconfirmed += channels.len();
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Event> {
        let v = match read_frame(&mut self.stream, &mut self.buf, self.resp3).await? {
            Frame::Push(v) => v,
            Frame::Reply(r) => r?,
        };
        let e = classify(v)?;
        if matches!(e, Event::Other) {
            self.unconfirmed = self.unconfirmed.saturating_sub(1);
        }
        Ok(e)
    }

    /// Waits for the next message (wrap it in [`crate::time::timeout`] to bound the
    /// wait). An error means the connection is unusable: subscribe again.
    pub async fn next_message(&mut self) -> Result<Message> {
        loop {
            if let Event::Message(m) = self.next_event().await? {
                return Ok(m);
            }
        }
    }
}
