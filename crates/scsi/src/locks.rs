//! LBA range locks: what makes COMPARE AND WRITE, ORWRITE, WRITE ATOMIC, WRITE SAME,
//! UNMAP and plain writes atomic with respect to each other on overlapping blocks,
//! from any session, while commands on unrelated blocks never wait.
//!
//! Requests are granted in arrival order among those that overlap (a waiting writer
//! blocks later overlapping requests, so nobody starves); requests on disjoint ranges
//! never interact. Callers run on the blocking I/O pool, so waiting parks a thread,
//! never a network task.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy)]
struct Entry {
    ticket: u64,
    start: u64,
    end: u64,
    exclusive: bool,
    granted: bool,
}

impl Entry {
    fn conflicts(&self, other: &Entry) -> bool {
        (self.exclusive || other.exclusive) && self.start < other.end && other.start < self.end
    }
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// Held and waiting requests, in arrival order.
    entries: Vec<Entry>,
    /// Threads parked in [`RangeLocks::lock`]. A release wakes them only when
    /// there are any: the condition variable's wake is a system call even with
    /// nobody waiting, and most releases have nobody waiting.
    parked: usize,
}

/// The range locks of one logical unit, in blocks.
#[derive(Debug, Default)]
pub struct RangeLocks {
    table: Mutex<Table>,
    released: Condvar,
}

/// A held range; released on drop.
#[derive(Debug)]
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    ticket: u64,
}

impl RangeLocks {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until `[start, start+len)` is held: exclusively (writers) or shared
    /// (readers that must not see a half-applied write). An empty range holds nothing.
    pub fn lock(&self, start: u64, len: u64, exclusive: bool) -> RangeGuard<'_> {
        let mut t = self.table();
        let ticket = t.next;
        t.next += 1;
        let me = Entry {
            ticket,
            start,
            end: start.saturating_add(len),
            exclusive,
            granted: false,
        };
        t.entries.push(me);
        loop {
            // Earlier entries (held or waiting) that overlap conflictingly come first.
            let blocked = t
                .entries
                .iter()
                .take_while(|e| e.ticket != ticket)
                .any(|e| e.conflicts(&me));
            if !blocked {
                if let Some(e) = t.entries.iter_mut().find(|e| e.ticket == ticket) {
                    e.granted = true;
                }
                return RangeGuard {
                    locks: self,
                    ticket,
                };
            }
            t.parked += 1;
            t = self.released.wait(t).unwrap_or_else(|e| e.into_inner());
            t.parked -= 1;
        }
    }

    /// Takes the range only if that needs no waiting (nothing earlier conflicts);
    /// otherwise leaves no trace and returns `None`.
    pub fn try_lock(&self, start: u64, len: u64, exclusive: bool) -> Option<RangeGuard<'_>> {
        let mut t = self.table();
        let me = Entry {
            ticket: t.next,
            start,
            end: start.saturating_add(len),
            exclusive,
            granted: true,
        };
        if t.entries.iter().any(|e| e.conflicts(&me)) {
            return None;
        }
        t.next += 1;
        t.entries.push(me);
        Some(RangeGuard {
            locks: self,
            ticket: me.ticket,
        })
    }

    /// Requests currently held (for tests and metrics).
    pub fn held(&self) -> usize {
        self.table().entries.iter().filter(|e| e.granted).count()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.locks.table();
        t.entries.retain(|e| e.ticket != self.ticket);
        // Checked under the table's lock, which a parking thread holds until the
        // wait releases it: no wake-up can be missed.
        let parked = t.parked > 0;
        drop(t);
        if parked {
            self.locks.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn disjoint_ranges_do_not_wait() {
        let l = RangeLocks::default();
        let _a = l.lock(0, 10, true);
        let _b = l.lock(10, 10, true);
        let _c = l.lock(100, 1, false);
        assert_eq!(l.held(), 3);
    }

    #[test]
    fn try_lock_never_waits() {
        let l = RangeLocks::default();
        let w = l.lock(10, 10, true);
        assert!(l.try_lock(15, 1, false).is_none());
        assert!(l.try_lock(20, 5, false).is_some());
        drop(w);
        let r = l.try_lock(15, 1, false).unwrap();
        assert!(l.try_lock(0, 100, false).is_some(), "shared with shared");
        assert!(l.try_lock(15, 1, true).is_none());
        drop(r);
        assert_eq!(l.held(), 0);
    }

    #[test]
    fn shared_locks_coexist_and_writers_wait() {
        let l = Arc::new(RangeLocks::default());
        let r1 = l.lock(0, 8, false);
        let _r2 = l.lock(4, 8, false);
        let flag = Arc::new(AtomicU32::new(0));
        let (l2, f2) = (l.clone(), flag.clone());
        let w = std::thread::spawn(move || {
            let _g = l2.lock(7, 1, true);
            f2.store(1, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(flag.load(Ordering::SeqCst), 0, "writer ran under readers");
        drop(r1);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            flag.load(Ordering::SeqCst),
            0,
            "writer ran under one reader"
        );
        drop(_r2);
        w.join().unwrap();
        assert_eq!(flag.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn overlapping_writers_are_serialised() {
        let l = Arc::new(RangeLocks::default());
        let inside = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (l, inside) = (l.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = l.lock(i, 10, true);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        // Every range overlaps every other (all contain block 9): one at a time.
                        assert_eq!(inside.load(Ordering::SeqCst), 1);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(l.held(), 0);
    }
}
