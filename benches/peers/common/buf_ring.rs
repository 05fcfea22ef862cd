//! A provided-buffer ring (Linux 5.19) for multishot recv: `count` buffers of `size` bytes in
//! one allocation, handed to the kernel through a registered ring of descriptors. The kernel
//! picks a buffer per completion (its id is in the CQE's flags); the server gives it back with
//! `give_back` once the bytes are used. uring-raw and monoio-sidering share it.
//!
//! Included with `#[path = "../../common/buf_ring.rs"] mod buf_ring;`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

pub struct BufRing {
    entries: *mut BufRingEntry,
    mem: Vec<u8>,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    /// Registers `count` (a power of two) buffers of `size` bytes as group `group`; `None`
    /// where the kernel refuses provided-buffer rings.
    pub fn register(ring: &IoUring, group: u16, count: u16, size: usize) -> Option<BufRing> {
        assert!(count.is_power_of_two());
        let layout = Layout::from_size_align(count as usize * size_of::<BufRingEntry>(), 4096).ok()?;
        // SAFETY: the layout has a non-zero size (count >= 1).
        let entries = unsafe { alloc_zeroed(layout) } as *mut BufRingEntry;
        if entries.is_null() {
            return None;
        }
        // SAFETY: `entries` is a page-aligned, zeroed array of `count` descriptors that lives as
        // long as the ring (it is never freed once registered).
        let ok = unsafe { ring.submitter().register_buf_ring_with_flags(entries as u64, count, group, 0) };
        if ok.is_err() {
            // SAFETY: allocated above with this layout, not registered.
            unsafe { dealloc(entries as *mut u8, layout) };
            return None;
        }
        let mut br = BufRing { entries, mem: vec![0u8; count as usize * size], count, size, tail: 0 };
        for bid in 0..count {
            br.give_back(bid);
        }
        Some(br)
    }

    /// The first `len` bytes of buffer `bid`.
    pub fn buf(&self, bid: u16, len: usize) -> &[u8] {
        &self.mem[bid as usize * self.size..][..len]
    }

    /// Returns buffer `bid` to the kernel.
    pub fn give_back(&mut self, bid: u16) {
        let addr = self.mem.as_ptr() as u64 + bid as u64 * self.size as u64;
        // SAFETY: the slot index is masked into the ring; the tail is the ring's shared tail
        // word, published with release ordering after the descriptor is written.
        unsafe {
            let entry = &mut *self.entries.add((self.tail & (self.count - 1)) as usize);
            entry.set_addr(addr);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = &*(BufRingEntry::tail(self.entries) as *const AtomicU16);
            tail.store(self.tail, Ordering::Release);
        }
    }
}
