//! The per-shard cached `Date` header value (RFC 9110 section 6.6.1, IMF-fixdate).
//!
//! Formatting a date per response costs more than the rest of a small response head, so
//! each shard keeps the current value and refreshes it from a once-a-second timer task.
//! Refreshing writes into a fixed array: no allocation, ever.

use std::cell::Cell;
use std::io::Write;
use std::time::SystemTime;

/// Length of an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const DATE_LEN: usize = 29;

/// A shard's current `Date` value. `!Sync`: each shard owns one.
#[derive(Debug)]
pub(crate) struct DateCache {
    value: Cell<[u8; DATE_LEN]>,
}

impl DateCache {
    pub(crate) fn new() -> DateCache {
        let cache = DateCache { value: Cell::new([b' '; DATE_LEN]) };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Re-formats the value for `now`.
    pub(crate) fn refresh(&self, now: SystemTime) {
        let mut buf = [b' '; DATE_LEN];
        let date = httpdate::HttpDate::from(now);
        // An IMF-fixdate is always exactly DATE_LEN bytes, so the write cannot fail.
        if write!(&mut buf[..], "{date}").is_ok() {
            self.value.set(buf);
        }
    }

    /// The current value.
    pub(crate) fn get(&self) -> [u8; DATE_LEN] {
        self.value.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_imf_fixdate() {
        let cache = DateCache::new();
        cache.refresh(UNIX_EPOCH + Duration::from_secs(784_111_777));
        assert_eq!(&cache.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
