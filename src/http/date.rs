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

/// A `Date` value and its stamp: the values one cache hands out with the same stamp
/// have the same text, so a comparison of stamps stands for one of 29 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateValue {
    pub(crate) text: [u8; DATE_LEN],
    /// Counts the cache's changes of text (from 1).
    pub(crate) stamp: u64,
}

/// A shard's current `Date` value. `!Sync`: each shard owns one.
#[derive(Debug)]
pub(crate) struct DateCache {
    value: Cell<DateValue>,
}

impl DateCache {
    pub(crate) fn new() -> DateCache {
        let cache = DateCache { value: Cell::new(DateValue { text: [b' '; DATE_LEN], stamp: 0 }) };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Re-formats the value for `now`; the stamp moves when the text changes.
    pub(crate) fn refresh(&self, now: SystemTime) {
        let mut text = [b' '; DATE_LEN];
        let date = httpdate::HttpDate::from(now);
        // An IMF-fixdate is always exactly DATE_LEN bytes, so the write cannot fail.
        let current = self.value.get();
        if write!(&mut text[..], "{date}").is_ok() && text != current.text {
            self.value.set(DateValue { text, stamp: current.stamp + 1 });
        }
    }

    /// The current value.
    pub(crate) fn get(&self) -> DateValue {
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
        let first = cache.get();
        assert_eq!(&first.text, b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(UNIX_EPOCH + Duration::from_millis(784_111_777_500));
        assert_eq!(cache.get(), first, "the same second: the same text and stamp");
        cache.refresh(UNIX_EPOCH + Duration::from_secs(784_111_778));
        assert_eq!(&cache.get().text, b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(cache.get().stamp, first.stamp + 1, "a new text: a new stamp");
    }
}
