//! Request ids: reuse the client's `X-Request-Id` or mint one, and echo it back.

use std::cell::Cell;

use super::{Middleware, Next};
use crate::context::Context;

/// The id of the current request, stored in the context by [`request_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    /// The id's bytes (ASCII), `len` of them used.
    bytes: [u8; 64],
    len: u8,
}

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        crate::http::words::str_of(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    fn from_client(value: &str) -> Option<RequestId> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..value.len()].copy_from_slice(value.as_bytes());
        Some(RequestId { bytes, len: value.len() as u8 })
    }

    /// `<seed as 8 hex digits>-<shard>-<seq>` (the seed rendered once, by
    /// [`seed_hex`]), written by hand: this runs on every request of the default stack,
    /// and `fmt` cost more than the rest of the id.
    fn mint(shard: usize, seq: u64, seed_hex: &[u8; 8]) -> RequestId {
        let mut bytes = [0u8; 64];
        bytes[..8].copy_from_slice(seed_hex);
        let mut len = 8;
        let mut num = itoa::Buffer::new();
        bytes[len] = b'-';
        len += 1;
        let shard = num.format(shard);
        bytes[len..len + shard.len()].copy_from_slice(shard.as_bytes());
        len += shard.len();
        bytes[len] = b'-';
        len += 1;
        let seq = num.format(seq);
        bytes[len..len + seq.len()].copy_from_slice(seq.as_bytes());
        len += seq.len();
        RequestId { bytes, len: len as u8 }
    }
}

/// The low 32 bits of `seed` as 8 lowercase hex digits.
fn seed_hex(seed: u64) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((seed >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Sets `X-Request-Id` on every response: the client's (when it is short and plain)
/// or a new one `<process seed>-<shard>-<sequence>`; handlers read it with
/// `c.get::<RequestId>()`. No allocation, no cross-shard state.
pub fn request_id() -> RequestIdMiddleware {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 & 0xffff_ffff);
    RequestIdMiddleware { seq: Cell::new(0), seed_hex: seed_hex(seed) }
}

/// See [`request_id`].
#[derive(Debug)]
pub struct RequestIdMiddleware {
    seq: Cell<u64>,
    /// The process seed, rendered.
    seed_hex: [u8; 8],
}

impl Middleware for RequestIdMiddleware {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let id = match c.get_header("x-request-id").and_then(RequestId::from_client) {
            Some(id) => id,
            None => {
                let seq = self.seq.get() + 1;
                self.seq.set(seq);
                RequestId::mint(c.shard_id(), seq, &self.seed_hex)
            }
        };
        // Both kinds of id hold only `[A-Za-z0-9-_.:]`: a valid field value.
        c.header_prechecked("X-Request-Id", id.as_str());
        crate::logging::update(|l| l.set_request_id(id.as_str()));
        c.set(id);
        next.run(c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_read_like_the_format_they_replace() {
        for (shard, seq, seed) in
            [(0, 1, 0), (3, 42, 0xdead_beef), (15, u64::MAX, 0x0000_00ff), (1024, 7, 0xffff_ffff)]
        {
            let id = RequestId::mint(shard, seq, &seed_hex(seed));
            assert_eq!(id.as_str(), format!("{seed:08x}-{shard}-{seq}"));
        }
    }
}
