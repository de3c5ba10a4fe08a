//! Reusable I/O buffers, so the data path does not allocate per command.
//!
//! Buffers come in power-of-two size classes from 4 KiB to 16 MiB. A buffer keeps its
//! length (its whole class size) while pooled, so reuse never re-zeroes it. What the
//! pool retains is capped; past the cap buffers are freed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MIN_CLASS: usize = 12; // 4 KiB
const MAX_CLASS: usize = 24; // 16 MiB
const RETAIN_BYTES: usize = 48 << 20;

pub struct BufPool {
    classes: Mutex<(Vec<Vec<Vec<u8>>>, usize)>,
    /// Requests served from the pool, and those that allocated (metrics).
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl Default for BufPool {
    fn default() -> Self {
        Self {
            classes: Mutex::new(((MIN_CLASS..=MAX_CLASS).map(|_| Vec::new()).collect(), 0)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

fn class_of(len: usize) -> usize {
    let bits = (usize::BITS - len.saturating_sub(1).leading_zeros()) as usize;
    bits.clamp(MIN_CLASS, MAX_CLASS + 1)
}

impl BufPool {
    /// A buffer of at least `len` bytes (contents unspecified).
    pub fn get(&self, len: usize) -> Vec<u8> {
        let c = class_of(len);
        if c > MAX_CLASS {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return vec![0u8; len];
        }
        let mut g = self.classes.lock().unwrap_or_else(|e| e.into_inner());
        let (lists, retained) = &mut *g;
        if let Some(b) = lists[c - MIN_CLASS].pop() {
            *retained -= b.len();
            drop(g);
            self.hits.fetch_add(1, Ordering::Relaxed);
            return b;
        }
        drop(g);
        self.misses.fetch_add(1, Ordering::Relaxed);
        vec![0u8; 1 << c]
    }

    /// Bytes of buffers kept for reuse now.
    pub fn retained_bytes(&self) -> usize {
        self.classes.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Returns a buffer obtained from [`Self::get`].
    pub fn put(&self, buf: Vec<u8>) {
        let len = buf.len();
        if len < (1 << MIN_CLASS) || !len.is_power_of_two() || len > (1 << MAX_CLASS) {
            return;
        }
        let mut g = self.classes.lock().unwrap_or_else(|e| e.into_inner());
        let (lists, retained) = &mut *g;
        if *retained + len <= RETAIN_BYTES {
            *retained += len;
            lists[len.trailing_zeros() as usize - MIN_CLASS].push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_reuse() {
        let p = BufPool::default();
        let b = p.get(5000);
        assert_eq!(b.len(), 8192);
        let ptr = b.as_ptr();
        p.put(b);
        let again = p.get(4097);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(p.get(1).len(), 4096);
        assert_eq!(p.get(20 << 20).len(), 20 << 20);
    }
}
