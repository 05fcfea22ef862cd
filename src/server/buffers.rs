//! Per-shard byte-buffer pool with size classes.
//!
//! A connection starts with small buffers. When a request needs more (a large body, a
//! long pipelined batch) it swaps its buffer for one of the next class from the pool,
//! and when the connection idles it hands the large one back and takes a small one, so
//! a thousand idle keep-alive connections hold a thousand small buffers, and large ones
//! are reused instead of allocated per big request. Shard-owned: no locks.

use std::cell::RefCell;

/// Capacity of each class, smallest first. The smallest is what an idle connection
/// reads into (a request head rarely needs more); the next is a write buffer's.
pub(crate) const CLASSES: [usize; 6] = [2 << 10, 8 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
/// Most free buffers kept per class.
const KEEP: [usize; 6] = [256, 256, 64, 16, 8, 2];

/// Free buffers by class.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: [RefCell<Vec<Vec<u8>>>; 6],
}

impl BufferPool {
    /// An empty buffer with capacity at least `min`.
    pub(crate) fn take(&self, min: usize) -> Vec<u8> {
        match CLASSES.iter().position(|&c| c >= min) {
            Some(class) => {
                self.free[class].borrow_mut().pop().unwrap_or_else(|| Vec::with_capacity(CLASSES[class]))
            }
            // Larger than every class: allocate exactly; it will not be pooled.
            None => Vec::with_capacity(min),
        }
    }

    /// Returns a buffer to the class it can serve (the largest class not above its
    /// capacity); dropped when that class is full or it is far larger than any class.
    /// An unallocated buffer (a connection's empty tail) costs nothing: this runs a few
    /// times per request on an unpipelined connection.
    #[inline]
    pub(crate) fn give(&self, buf: Vec<u8>) {
        if buf.capacity() != 0 {
            self.give_allocated(buf);
        }
    }

    fn give_allocated(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap > 2 * CLASSES[CLASSES.len() - 1] {
            return;
        }
        let class = match cap {
            // The two classes every connection uses, found without a search.
            c if c == CLASSES[0] => 0,
            c if c == CLASSES[1] => 1,
            _ => match CLASSES.iter().rposition(|&c| c <= cap) {
                Some(class) => class,
                None => return,
            },
        };
        let mut free = self.free[class].borrow_mut();
        if free.len() < KEEP[class] {
            buf.clear();
            free.push(buf);
        }
    }

    /// Replaces `buf` by a pooled buffer of at least `min` bytes, keeping its content.
    pub(crate) fn grow(&self, buf: &mut Vec<u8>, min: usize) {
        if buf.capacity() >= min {
            return;
        }
        let mut bigger = self.take(min);
        bigger.extend_from_slice(buf);
        let old = std::mem::replace(buf, bigger);
        self.give(old);
    }

    /// Swaps an empty buffer grown past the working class (`CLASSES[1]`) for one of
    /// that class (the connection is idle). Buffers of the working class or smaller are
    /// kept: a connection that needed one will likely need it again.
    #[inline]
    pub(crate) fn shrink(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() && buf.capacity() > CLASSES[1] {
            self.swap_for_working(buf);
        }
    }

    fn swap_for_working(&self, buf: &mut Vec<u8>) {
        let small = self.take(CLASSES[1]);
        let big = std::mem::replace(buf, small);
        self.give(big);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_move_between_classes_and_are_reused() {
        let pool = BufferPool::default();
        let mut buf = pool.take(5000);
        assert_eq!(buf.capacity(), CLASSES[1]);
        buf.extend_from_slice(b"head");
        pool.grow(&mut buf, 100_000);
        assert_eq!(buf, b"head", "content kept");
        assert!(buf.capacity() >= 100_000);
        let big_ptr = buf.as_ptr();
        buf.clear();
        pool.shrink(&mut buf);
        assert_eq!(buf.capacity(), CLASSES[1]);
        // The large buffer went back to the pool and is handed out again.
        let again = pool.take(200_000);
        assert_eq!(again.as_ptr(), big_ptr);
        // Huge buffers are not kept.
        pool.give(Vec::with_capacity(64 << 20));
        assert!(pool.free.iter().all(|f| f.borrow().iter().all(|b| b.capacity() < 64 << 20)));
    }
}
