//! The one way to a logical unit's medium. Every read and write, from READ and WRITE
//! to WRITE SAME, UNMAP, COMPARE AND WRITE, ORWRITE, WRITE ATOMIC and the copy
//! engine (later ROD tokens and tapes), takes an [`Extent`]: a range lock over the
//! blocks it touches. The extent is where
//!
//! - the LBA range lock is held (shared to read, exclusive to write, FIFO among
//!   overlapping requests, see [`crate::locks`]);
//! - registered [`WriteObserver`]s hear of a write before any block changes, with the
//!   exclusive lock held (token invalidation, copy-on-write for point-in-time ROD
//!   tokens);
//! - the write cache is honoured: a write is durable before it returns when FUA asks
//!   or the caching page's WCE is off;
//! - per-LU statistics are counted (operations, bytes, time);
//! - backstore failures become typed [`IoError`]s carrying the operation and LBA.
//!
//! ```text
//!  command ──► lock_shared / lock_exclusive ──► Extent ──► read / write / discard /
//!              (observers told, exclusive)                 write_zeroes / copy_to
//!                                                            │ stats, WCE, IoError
//!                                                            ▼
//!                                                        Backstore
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use backstore::{copy_native, Backstore, CopyReport};

use super::LogicalUnit;
use crate::error::{IoError, IoOp};
use crate::locks::RangeGuard;

/// Told of every write before it happens, with the blocks locked exclusively.
pub trait WriteObserver: Send + Sync + std::fmt::Debug {
    /// `blocks` blocks from `lba` of `lu` are about to change.
    fn before_write(&self, lu: &LogicalUnit, lba: u64, blocks: u64);
}

/// Counters of one LU's I/O, kept on the I/O path. Copy-engine I/O is counted apart
/// from the initiator's own, so host-driven and offloaded traffic can be told apart.
#[derive(Debug, Default)]
pub struct IoStats {
    pub read_ops: AtomicU64,
    pub read_bytes: AtomicU64,
    pub read_nanos: AtomicU64,
    pub write_ops: AtomicU64,
    pub write_bytes: AtomicU64,
    pub write_nanos: AtomicU64,
    /// Deallocated or zeroed bytes (UNMAP, WRITE SAME).
    pub unmap_bytes: AtomicU64,
    pub flush_ops: AtomicU64,
    /// Bytes the copy manager read from this LU / wrote into it.
    pub copy_read_bytes: AtomicU64,
    pub copy_write_bytes: AtomicU64,
}

/// A snapshot of [`IoStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub read_nanos: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    pub write_nanos: u64,
    pub unmap_bytes: u64,
    pub flush_ops: u64,
    pub copy_read_bytes: u64,
    pub copy_write_bytes: u64,
}

impl IoStats {
    pub fn snapshot(&self) -> IoCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IoCounts {
            read_ops: l(&self.read_ops),
            read_bytes: l(&self.read_bytes),
            read_nanos: l(&self.read_nanos),
            write_ops: l(&self.write_ops),
            write_bytes: l(&self.write_bytes),
            write_nanos: l(&self.write_nanos),
            unmap_bytes: l(&self.unmap_bytes),
            flush_ops: l(&self.flush_ops),
            copy_read_bytes: l(&self.copy_read_bytes),
            copy_write_bytes: l(&self.copy_write_bytes),
        }
    }

    fn count(ops: &AtomicU64, bytes: &AtomicU64, nanos: &AtomicU64, n: usize, since: Instant) {
        ops.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        nanos.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Who is doing the I/O, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A command from the initiator.
    Command,
    /// The copy manager, on the initiator's behalf.
    Copy,
}

/// Locked blocks of one LU: the only handle that reads or writes its backstore.
/// Offsets are byte offsets in the LU and must lie inside the locked blocks.
#[derive(Debug)]
pub struct Extent<'a> {
    lu: &'a LogicalUnit,
    lba: u64,
    blocks: u64,
    exclusive: bool,
    origin: Origin,
    _guard: RangeGuard<'a>,
}

impl LogicalUnit {
    /// Locks `blocks` blocks from `lba` for reading.
    pub fn lock_shared(&self, lba: u64, blocks: u64, origin: Origin) -> Extent<'_> {
        let g = self.locks.lock(lba, blocks, false);
        self.extent(lba, blocks, false, origin, g)
    }

    /// Locks `blocks` blocks from `lba` for writing; observers hear of it first.
    pub fn lock_exclusive(&self, lba: u64, blocks: u64, origin: Origin) -> Extent<'_> {
        let g = self.locks.lock(lba, blocks, true);
        self.extent(lba, blocks, true, origin, g)
    }

    /// [`LogicalUnit::lock_shared`] only if no writer holds or waits for the blocks.
    pub fn try_lock_shared(&self, lba: u64, blocks: u64) -> Option<Extent<'_>> {
        let g = self.locks.try_lock(lba, blocks, false)?;
        Some(self.extent(lba, blocks, false, Origin::Command, g))
    }

    /// [`LogicalUnit::lock_exclusive`] only if nothing holds or waits for the blocks.
    pub fn try_lock_exclusive(&self, lba: u64, blocks: u64) -> Option<Extent<'_>> {
        let g = self.locks.try_lock(lba, blocks, true)?;
        Some(self.extent(lba, blocks, true, Origin::Command, g))
    }

    fn extent<'a>(
        &'a self,
        lba: u64,
        blocks: u64,
        exclusive: bool,
        origin: Origin,
        guard: RangeGuard<'a>,
    ) -> Extent<'a> {
        // The flag spares writes the shared lock while nobody observes (the usual case).
        if exclusive && blocks > 0 && self.observed.load(Ordering::Acquire) {
            let observers = self.observers.read().unwrap_or_else(|e| e.into_inner());
            for o in observers.iter() {
                o.before_write(self, lba, blocks);
            }
        }
        Extent {
            lu: self,
            lba,
            blocks,
            exclusive,
            origin,
            _guard: guard,
        }
    }

    /// Registers an observer of every later write to this LU.
    pub fn add_write_observer(&self, o: Arc<dyn WriteObserver>) {
        self.observers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(o);
        self.observed.store(true, Ordering::Release);
    }

    pub fn io_stats(&self) -> &IoStats {
        &self.stats
    }

    /// Makes every completed write durable (SYNCHRONIZE CACHE, a copy segment into
    /// an LU whose write cache is off).
    pub fn flush(&self) -> Result<(), IoError> {
        self.stats.flush_ops.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = self.tape() {
            return t.sync().map_err(|e| IoError::new(IoOp::Flush, 0, e));
        }
        self.store
            .flush()
            .map_err(|e| IoError::new(IoOp::Flush, 0, e))
    }

    /// Locks a source range shared and a destination range exclusive, in one global
    /// order (LU address, then LBA), so two copies in opposite directions cannot
    /// deadlock. The two ranges must not overlap on one LU (lock the union
    /// exclusively instead).
    pub fn lock_pair<'a>(
        src: &'a LogicalUnit,
        (s_lba, s_n): (u64, u64),
        dst: &'a LogicalUnit,
        (d_lba, d_n): (u64, u64),
    ) -> (Extent<'a>, Extent<'a>) {
        let src_first = (src as *const LogicalUnit as usize, s_lba)
            <= (dst as *const LogicalUnit as usize, d_lba);
        if src_first {
            let s = src.lock_shared(s_lba, s_n, Origin::Copy);
            let d = dst.lock_exclusive(d_lba, d_n, Origin::Copy);
            (s, d)
        } else {
            let d = dst.lock_exclusive(d_lba, d_n, Origin::Copy);
            let s = src.lock_shared(s_lba, s_n, Origin::Copy);
            (s, d)
        }
    }
}

impl Extent<'_> {
    pub fn lu(&self) -> &LogicalUnit {
        self.lu
    }

    /// The first locked LBA, and how many blocks.
    pub fn blocks(&self) -> (u64, u64) {
        (self.lba, self.blocks)
    }

    fn lba_of(&self, offset: u64) -> u64 {
        offset / u64::from(self.lu.block_size)
    }

    fn check(&self, offset: u64, len: u64) {
        let bs = u64::from(self.lu.block_size);
        debug_assert!(
            offset >= self.lba * bs && offset + len <= (self.lba + self.blocks) * bs,
            "I/O at {offset}+{len} outside locked blocks {}+{}",
            self.lba,
            self.blocks
        );
    }

    fn store(&self) -> &dyn Backstore {
        self.lu.store.as_ref()
    }

    fn fail(&self, op: IoOp, offset: u64, e: std::io::Error) -> IoError {
        IoError::new(op, offset, e).at_lba(self.lba_of(offset))
    }

    /// Fills `buf` from byte `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check(offset, buf.len() as u64);
        let t = Instant::now();
        self.store()
            .read_at(buf, offset)
            .map_err(|e| self.fail(IoOp::Read, offset, e))?;
        self.count_read(buf.len(), t);
        Ok(())
    }

    /// Fills `buf` only if that cannot block: `Ok(false)` sends the caller to a
    /// thread that may.
    pub fn read_nowait(&self, offset: u64, buf: &mut [u8]) -> Result<bool, IoError> {
        self.check(offset, buf.len() as u64);
        let t = Instant::now();
        let done = self
            .store()
            .read_at_nowait(buf, offset)
            .map_err(|e| self.fail(IoOp::Read, offset, e))?;
        if done {
            self.count_read(buf.len(), t);
        }
        Ok(done)
    }

    /// The bytes at `offset` lent by the store without a copy
    /// ([`backstore::Backstore::read_shared`]); `None` when the store cannot.
    pub fn read_shared(&self, offset: u64, len: usize) -> Option<Vec<backstore::SharedBytes>> {
        self.check(offset, len as u64);
        let t = Instant::now();
        let v = self.store().read_shared(offset, len)?;
        self.count_read(len, t);
        Some(v)
    }

    /// Writes `data` at byte `offset`; durable before it returns when `fua` asks or
    /// the LU's write cache is off.
    pub fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), IoError> {
        debug_assert!(self.exclusive, "writes need an exclusive extent");
        self.check(offset, data.len() as u64);
        let t = Instant::now();
        let fua = fua || !self.lu.wce.load(Ordering::Relaxed);
        self.store()
            .write_at(data, offset, fua)
            .map_err(|e| self.fail(IoOp::Write, offset, e))?;
        self.count_write(data.len(), t);
        Ok(())
    }

    /// Writes `data` into the write cache whatever WCE says, for a command that writes
    /// in pieces and then makes the whole durable with one [`LogicalUnit::flush`].
    pub fn write_cached(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        debug_assert!(self.exclusive, "writes need an exclusive extent");
        self.check(offset, data.len() as u64);
        let t = Instant::now();
        self.store()
            .write_at(data, offset, false)
            .map_err(|e| self.fail(IoOp::Write, offset, e))?;
        self.count_write(data.len(), t);
        Ok(())
    }

    /// Writes `data` only if that cannot block (never with the write cache off).
    pub fn write_nowait(&self, offset: u64, data: &[u8]) -> Result<bool, IoError> {
        debug_assert!(self.exclusive, "writes need an exclusive extent");
        self.check(offset, data.len() as u64);
        if !self.lu.wce.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let t = Instant::now();
        let done = self
            .store()
            .write_at_nowait(data, offset)
            .map_err(|e| self.fail(IoOp::Write, offset, e))?;
        if done {
            self.count_write(data.len(), t);
        }
        Ok(done)
    }

    /// Deallocates a byte range; it reads back as zeros.
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), IoError> {
        debug_assert!(self.exclusive, "writes need an exclusive extent");
        self.check(offset, len);
        let unsupported = || std::io::Error::from(std::io::ErrorKind::Unsupported);
        self.store()
            .thin_provisioning()
            .ok_or_else(unsupported)
            .and_then(|t| t.discard(offset, len))
            .map_err(|e| self.fail(IoOp::Discard, offset, e))?;
        self.lu.stats.unmap_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Writes zeros over a byte range, deallocating where the engine can.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), IoError> {
        debug_assert!(self.exclusive, "writes need an exclusive extent");
        self.check(offset, len);
        self.store()
            .write_zeroes(offset, len)
            .map_err(|e| self.fail(IoOp::WriteZeroes, offset, e))?;
        self.lu.stats.unmap_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `len` bytes from `src_off` of this extent's LU into `dst` at
    /// `dst_off` by the backstores' native path (reflink, copy_file_range, RAM
    /// pages); `Ok(None)` when there is none and the caller must bounce.
    pub fn copy_to(
        &self,
        src_off: u64,
        dst: &Extent<'_>,
        dst_off: u64,
        len: u64,
    ) -> Result<Option<CopyReport>, IoError> {
        debug_assert!(dst.exclusive, "writes need an exclusive extent");
        self.check(src_off, len);
        dst.check(dst_off, len);
        let r = copy_native(self.store(), src_off, dst.store(), dst_off, len)
            .map_err(|e| dst.fail(IoOp::Copy, dst_off, e))?;
        if r.is_some() {
            self.lu
                .stats
                .copy_read_bytes
                .fetch_add(len, Ordering::Relaxed);
            dst.lu
                .stats
                .copy_write_bytes
                .fetch_add(len, Ordering::Relaxed);
        }
        Ok(r)
    }

    /// Writes `len` bytes read from `src` at `src_off` (a store outside any LU: a
    /// point-in-time image that nothing writes) into this exclusive extent at
    /// `dst_off`: natively where the two engines can (reflink from a reflinked
    /// image, RAM pages), else through a bounce buffer of at most `chunk` bytes.
    /// Returns the native report, or `None` when it bounced.
    pub fn write_from_store(
        &self,
        src: &dyn Backstore,
        src_off: u64,
        dst_off: u64,
        len: u64,
        chunk: usize,
    ) -> Result<Option<CopyReport>, IoError> {
        debug_assert!(self.exclusive, "writes need an exclusive extent");
        self.check(dst_off, len);
        if let Some(r) = copy_native(src, src_off, self.store(), dst_off, len)
            .map_err(|e| self.fail(IoOp::Copy, dst_off, e))?
        {
            self.lu
                .stats
                .copy_write_bytes
                .fetch_add(len, Ordering::Relaxed);
            return Ok(Some(r));
        }
        let mut buf = vec![0u8; (len as usize).min(chunk.max(1))];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(buf.len());
            src.read_at(&mut buf[..n], src_off + done)
                .map_err(|e| IoError::new(IoOp::Read, src_off + done, e))?;
            self.write_cached(dst_off + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(None)
    }

    /// Whether `offset` is mapped and for how many bytes (at most `len`) that stays
    /// so; a store without thin provisioning is mapped everywhere.
    pub fn mapped(&self, offset: u64, len: u64) -> Result<(bool, u64), IoError> {
        self.check(offset, 0);
        match self.store().thin_provisioning() {
            Some(t) => t
                .mapped(offset, len)
                .map_err(|e| self.fail(IoOp::Provisioning, offset, e)),
            None => Ok((true, len)),
        }
    }

    fn count_read(&self, n: usize, t: Instant) {
        let s = &self.lu.stats;
        match self.origin {
            Origin::Command => IoStats::count(&s.read_ops, &s.read_bytes, &s.read_nanos, n, t),
            Origin::Copy => {
                s.copy_read_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    fn count_write(&self, n: usize, t: Instant) {
        let s = &self.lu.stats;
        match self.origin {
            Origin::Command => IoStats::count(&s.write_ops, &s.write_bytes, &s.write_nanos, n, t),
            Origin::Copy => {
                s.copy_write_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}
