//! Storage behind oxtgt's logical units.
//!
//! One [`Backstore`] trait with byte-addressed positional I/O, called from a blocking
//! I/O pool (never from a network task). What only some engines can do is a
//! capability trait an engine hands out ([`ThinProvisioning`], [`CopyOffload`],
//! [`Snapshot`]); [`copy_native`] pairs two stores' copy capabilities.
//!
//! Engines: [`FileBackstore`] (regular files, also used for block devices),
//! [`RamBackstore`] (sparse, allocate on write); Ceph RBD images live in the `rbd`
//! crate (behind the daemon's `rbd` feature) and meet these through the same traits.

#![deny(unsafe_code)]

mod file;
mod ram;
mod sys;
pub mod tape;

pub use file::FileBackstore;
pub use ram::RamBackstore;
pub use tape::Cartridge;

/// Bytes lent by a store ([`Backstore::read_shared`]): part of a page, or zeros.
#[derive(Debug, Clone)]
pub enum SharedBytes {
    Page(Arc<[u8]>, std::ops::Range<usize>),
    /// At most [`ZEROS_LEN`] zero bytes.
    Zeros(usize),
}

/// Longest [`SharedBytes::Zeros`].
pub const ZEROS_LEN: usize = 64 * 1024;
static ZEROS: [u8; ZEROS_LEN] = [0; ZEROS_LEN];

impl SharedBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SharedBytes::Page(p, r) => p.get(r.clone()).unwrap_or(&[]),
            SharedBytes::Zeros(n) => &ZEROS[..(*n).min(ZEROS_LEN)],
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

use std::io;
use std::sync::Arc;

/// Byte-addressed storage for one logical unit. Offsets and lengths are validated
/// against [`Backstore::size`] by the SCSI layer before they reach here; engines still
/// refuse out-of-range I/O ([`OutOfRange`]) rather than trusting it.
///
/// What only some engines can do is a capability trait the engine hands out:
/// [`ThinProvisioning`] (return space, say what is mapped) and [`CopyOffload`]
/// (copy between two stores of the engine without a user-space buffer).
pub trait Backstore: Send + Sync + std::fmt::Debug {
    /// Engine name for logs and metrics: "file", "block", "ram".
    fn kind(&self) -> &'static str;

    /// Capacity in bytes.
    fn size(&self) -> u64;

    /// Bytes of storage the data occupies now (thin use), when the engine knows.
    fn allocated(&self) -> Option<u64> {
        None
    }

    /// Grows the store to `new_size` bytes (live: I/O may run meanwhile); returns
    /// the size now served. Engines that cannot change size refuse.
    fn resize(&self, new_size: u64) -> io::Result<u64> {
        let _ = new_size;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} stores cannot be resized", self.kind()),
        ))
    }

    /// Fills `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Fills `buf` from `offset` only if that cannot block (the data is in memory):
    /// `Ok(true)` when filled, `Ok(false)` when the caller must use
    /// [`Backstore::read_at`] on a thread that may block. Lets the daemon answer
    /// cached reads without a thread handoff.
    fn read_at_nowait(&self, _buf: &mut [u8], _offset: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// The bytes at `[offset, offset + len)` without copying them, for engines that
    /// hold data in memory (RAM): the pages themselves, shared (a write after this
    /// copies the page first, so the caller keeps what was there), and zeros for
    /// what was never written. `None` when the engine cannot (the caller reads
    /// into a buffer) or the range is outside the store. Never blocks.
    fn read_shared(&self, _offset: u64, _len: usize) -> Option<Vec<SharedBytes>> {
        None
    }

    /// Writes `buf` at `offset` (no FUA) only if that cannot block: `Ok(true)` when
    /// written, `Ok(false)` when the caller must use [`Backstore::write_at`] on a
    /// thread that may block (part of the range may have been written already).
    fn write_at_nowait(&self, _buf: &[u8], _offset: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether [`Backstore::write_at_nowait`] can succeed at all: `false` lets the
    /// caller skip the attempt (and the checks and lock around it). A file on a
    /// filesystem without non-blocking buffered writes (ext4) says `false` after
    /// its first refusal.
    fn writes_nowait(&self) -> bool {
        false
    }

    /// Writes `buf` at `offset`; with `fua`, returns only once the data is on stable
    /// storage (SBC-3 FUA).
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()>;

    /// Whether this store's small writes are best run one at a time from one
    /// thread: the kernel takes a regular file's inode lock across each buffered
    /// write anyway, so writers on several threads only contend for it.
    fn serial_writes(&self) -> bool {
        false
    }

    /// Makes every completed write durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> io::Result<()>;

    /// Writes zeros over a byte range, deallocating where the engine can.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let chunk = vec![0u8; (len.min(1 << 20)) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            self.write_at(&chunk[..n], offset + done, false)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Thin provisioning, when the engine really returns space.
    fn thin_provisioning(&self) -> Option<&dyn ThinProvisioning> {
        None
    }

    /// Native copies with other stores of the same engine.
    fn copy_offload(&self) -> Option<&dyn CopyOffload> {
        None
    }

    /// Point-in-time images of ranges, when the engine can take them cheaply.
    fn snapshot(&self) -> Option<&dyn Snapshot> {
        None
    }
}

/// Point-in-time images of byte ranges of a store, cheap enough to take inside a
/// command: shared extents on a reflink filesystem, shared pages in RAM. This is
/// what a point-in-time ROD token (POPULATE TOKEN) holds on to.
pub trait Snapshot {
    /// Captures `ranges` (byte offset, length; in any order, possibly overlapping)
    /// as they are now. The image is a store of this store's size, at the same
    /// offsets, whose `ranges` read as they did at the call whatever is written to
    /// this store later; bytes outside them are unspecified. The image is the
    /// caller's to read (and to copy from natively): nothing writes to it.
    ///
    /// The caller holds the ranges' locks, so no write races the capture. `Ok(None)`:
    /// this store cannot take the image cheaply (a filesystem without reflink);
    /// nothing was kept.
    fn snapshot_ranges(&self, ranges: &[(u64, u64)]) -> io::Result<Option<Arc<dyn Backstore>>>;
}

/// Deallocation and mapping status (SBC-4 4.7: UNMAP, WRITE SAME with UNMAP, GET LBA
/// STATUS).
pub trait ThinProvisioning {
    /// The unit, in bytes, in which [`ThinProvisioning::discard`] returns space;
    /// smaller or unaligned ranges are zeroed but stay allocated.
    fn discard_granularity(&self) -> u64 {
        4096
    }

    /// Deallocates a byte range; later reads return zeros.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Whether `offset` is mapped (allocated), and for how many bytes from `offset`
    /// (at most `len`) that stays so. Engines that cannot tell report it mapped.
    fn mapped(&self, offset: u64, len: u64) -> io::Result<(bool, u64)>;
}

/// A store's data as another store of the same engine can copy it natively: the
/// engines that understand each other's handles, without `Any` downcasts.
#[derive(Debug, Clone, Copy)]
pub enum CopySource<'a> {
    File(&'a FileBackstore),
    Ram(&'a RamBackstore),
    /// An engine outside this crate (the `rbd` crate's images), which recognises its
    /// own stores by downcasting; every other engine has no native path from it.
    External(&'a (dyn std::any::Any + Send + Sync)),
}

/// Copies between two stores of one engine without a user-space bounce buffer.
pub trait CopyOffload {
    /// This store as the source of a native copy.
    fn as_source(&self) -> CopySource<'_>;

    /// Copies `len` bytes from `src` at `src_off` into this store at `dst_off`:
    /// `Ok(None)` when the engine has no native path from that source.
    fn copy_from(
        &self,
        src: CopySource<'_>,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> io::Result<Option<CopyReport>>;
}

/// Bytes a [`copy_native`] call moved, by the path each part took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Shared extents (FICLONERANGE): no data moved.
    pub reflink: u64,
    /// In-kernel copies (copy_file_range).
    pub copy_file_range: u64,
    /// Page-to-page copies between RAM stores.
    pub memcpy: u64,
    /// Whole RAM pages shared between stores (copied on a later write): no data moved.
    pub shared: u64,
    /// Whole objects copied by the storage cluster itself (RADOS copy-from): the data
    /// never passed through this process.
    pub copy_from: u64,
    /// Bytes an engine's native copy had to read and write itself (the unaligned
    /// edges around a copy-from).
    pub bounced: u64,
}

/// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off` without a
/// user-space bounce buffer, when the two engines allow it: regular files through
/// FICLONERANGE for the filesystem-block-aligned middle and copy_file_range for the
/// edges (or all of it where reflink is refused); two distinct RAM stores page to page
/// (a source page never written leaves the destination page unallocated). `Ok(None)`
/// means no native path applies (different engines, block devices, the same RAM
/// store, filesystems that refuse both calls): the caller copies through memory.
/// Overlapping ranges of one file are the caller's to avoid.
pub fn copy_native(
    src: &dyn Backstore,
    src_off: u64,
    dst: &dyn Backstore,
    dst_off: u64,
    len: u64,
) -> io::Result<Option<CopyReport>> {
    check_range(src_off, len as usize, src.size())?;
    check_range(dst_off, len as usize, dst.size())?;
    match (src.copy_offload(), dst.copy_offload()) {
        (Some(s), Some(d)) => d.copy_from(s.as_source(), src_off, dst_off, len),
        _ => Ok(None),
    }
}

/// The engine's own refusal of I/O past the end of the store, carried inside an
/// [`io::Error`] so callers can tell it from a kernel's EINVAL ([`is_out_of_range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub offset: u64,
    pub len: u64,
    pub size: u64,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "I/O of {} bytes at {} is beyond the end ({})",
            self.len, self.offset, self.size
        )
    }
}

impl std::error::Error for OutOfRange {}

/// Whether `e` is an engine's [`OutOfRange`] refusal.
pub fn is_out_of_range(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OutOfRange>())
}

/// Checks `[offset, offset+len)` lies inside a store of `size` bytes ([`OutOfRange`]
/// inside the error when not).
pub fn check_range(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            OutOfRange {
                offset,
                len: len as u64,
                size,
            },
        )),
    }
}
