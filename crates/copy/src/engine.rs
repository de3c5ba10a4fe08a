//! Moves one segment's bytes from a source LU to a destination LU through the LUs'
//! own I/O path (range locks, write observers, statistics), never through SCSI or
//! iSCSI. Durability is the segment's: the manager flushes a destination whose write
//! cache is off once the segment's data is in place.
//!
//! Work goes in windows of [`WINDOW`] bytes. Before each window the abort flag is
//! checked (TMF, LU reset, session loss stop a copy within one window) and the
//! window's blocks are range-locked like a write: source shared, destination
//! exclusive, always in one global order so two copies cannot deadlock. Inside a
//! window the fastest path wins: reflink / copy_file_range between files, page
//! copies between RAM stores, otherwise a pipeline of bounce buffers with a reader
//! thread running ahead of the writer ([`PIPELINE_DEPTH`] × [`BOUNCE_CHUNK`] of
//! memory at most).
//!
//! Overlapping ranges on one LU behave like memmove: windows run backwards when the
//! destination is above the source, and each window is read whole before it is
//! written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;

use backstore::CopyReport;
use scsi::error::{Error, IoError, IoOp};
use scsi::lu::{Extent, Origin};
use scsi::LogicalUnit;

/// Bytes per lock/abort window.
pub const WINDOW: u64 = 32 << 20;
/// Window for overlapping copies on one LU (read whole, then written).
const OVERLAP_WINDOW: u64 = 4 << 20;
/// Bounce buffer size and how many may be in flight.
pub const BOUNCE_CHUNK: usize = 2 << 20;
pub const PIPELINE_DEPTH: usize = 4;

/// Bytes moved per path, for the per-LU counters.
#[derive(Debug, Default)]
pub struct PathCounters {
    pub reflink: AtomicU64,
    pub copy_file_range: AtomicU64,
    pub memcpy: AtomicU64,
    /// RAM pages shared rather than copied.
    pub shared: AtomicU64,
    /// Whole objects copied inside the storage cluster (RADOS copy-from).
    pub copy_from: AtomicU64,
    pub bounce: AtomicU64,
}

impl PathCounters {
    pub(crate) fn add(&self, r: CopyReport) {
        self.reflink.fetch_add(r.reflink, Ordering::Relaxed);
        self.copy_file_range
            .fetch_add(r.copy_file_range, Ordering::Relaxed);
        self.memcpy.fetch_add(r.memcpy, Ordering::Relaxed);
        self.shared.fetch_add(r.shared, Ordering::Relaxed);
        self.copy_from.fetch_add(r.copy_from, Ordering::Relaxed);
        self.bounce.fetch_add(r.bounced, Ordering::Relaxed);
    }
}

/// Why a segment stopped.
#[derive(Debug)]
pub enum Stop {
    Aborted,
    /// The per-window access check refused (a reservation taken, write protection
    /// turned on, the LU stopped while the copy ran): which side, and why.
    Denied {
        write: bool,
        why: Error,
    },
    /// Backstore I/O error: which side, and the error.
    Io {
        write: bool,
        error: IoError,
    },
}

/// One byte range to copy.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub src_off: u64,
    pub dst_off: u64,
    pub len: u64,
}

fn block_span(lu: &LogicalUnit, off: u64, len: u64) -> (u64, u64) {
    let bs = u64::from(lu.block_size());
    let first = off / bs;
    let last = (off + len).div_ceil(bs);
    (first, last - first)
}

/// A window's locks: one exclusive extent over both ranges when they overlap on one
/// LU, else the source shared and the destination exclusive, taken in the global
/// order of [`LogicalUnit::lock_pair`].
enum Window<'a> {
    Overlap(Extent<'a>),
    Pair(Extent<'a>, Extent<'a>),
}

fn lock_window<'a>(src: &'a LogicalUnit, dst: &'a LogicalUnit, r: Range) -> Window<'a> {
    let (s_lba, s_n) = block_span(src, r.src_off, r.len);
    let (d_lba, d_n) = block_span(dst, r.dst_off, r.len);
    if std::ptr::eq(src, dst) && s_lba < d_lba + d_n && d_lba < s_lba + s_n {
        let start = s_lba.min(d_lba);
        let end = (s_lba + s_n).max(d_lba + d_n);
        return Window::Overlap(dst.lock_exclusive(start, end - start, Origin::Copy));
    }
    let (s, d) = LogicalUnit::lock_pair(src, (s_lba, s_n), dst, (d_lba, d_n));
    Window::Pair(s, d)
}

/// Copies `r` from `src` to `dst`, adding to `progress` as windows complete.
/// `permit(write)` is asked before every window whether the initiator may still read
/// the source (`false`) and write the destination (`true`), so a reservation taken
/// while a long copy runs stops it like any other command of that initiator. With
/// `hold` (segment 0Dh, `r.len` bytes) the bytes copied are also kept there, read
/// inside each window under its locks.
#[allow(clippy::too_many_arguments)]
pub fn copy_range(
    src: &LogicalUnit,
    dst: &LogicalUnit,
    r: Range,
    abort: &AtomicBool,
    permit: &dyn Fn(bool) -> Result<(), Error>,
    progress: &AtomicU64,
    paths: &PathCounters,
    mut hold: Option<&mut [u8]>,
) -> Result<(), Stop> {
    let same = std::ptr::eq(src, dst);
    let overlap = same && r.src_off < r.dst_off + r.len && r.dst_off < r.src_off + r.len;
    let window = if overlap { OVERLAP_WINDOW } else { WINDOW };
    let count = r.len.div_ceil(window);
    let backwards = overlap && r.dst_off > r.src_off;
    for i in 0..count {
        if abort.load(Ordering::Acquire) {
            return Err(Stop::Aborted);
        }
        let k = if backwards { count - 1 - i } else { i };
        let at = k * window;
        let w = Range {
            src_off: r.src_off + at,
            dst_off: r.dst_off + at,
            len: window.min(r.len - at),
        };
        let locked = lock_window(src, dst, w);
        for write in [false, true] {
            permit(write).map_err(|why| Stop::Denied { write, why })?;
        }
        let held = hold
            .as_deref_mut()
            .map(|h| &mut h[at as usize..(at + w.len) as usize]);
        match &locked {
            Window::Overlap(x) => {
                let data = copy_whole(x, x, w)?;
                if let Some(h) = held {
                    h.copy_from_slice(&data);
                }
                paths.bounce.fetch_add(w.len, Ordering::Relaxed);
            }
            Window::Pair(s, d) => {
                match s.copy_to(w.src_off, d, w.dst_off, w.len) {
                    Ok(Some(rep)) => paths.add(rep),
                    Ok(None) => {
                        bounce(s, d, w)?;
                        paths.bounce.fetch_add(w.len, Ordering::Relaxed);
                    }
                    Err(error) => return Err(Stop::Io { write: true, error }),
                }
                // The source is still locked shared: these are the bytes copied.
                if let Some(h) = held {
                    s.read(w.src_off, h).map_err(|error| Stop::Io {
                        write: false,
                        error,
                    })?;
                }
            }
        }
        progress.fetch_add(w.len, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads the window whole, then writes it (memmove semantics within a window);
/// returns what it copied.
fn copy_whole(src: &Extent<'_>, dst: &Extent<'_>, w: Range) -> Result<Vec<u8>, Stop> {
    let mut buf = vec![0u8; w.len as usize];
    src.read(w.src_off, &mut buf).map_err(|error| Stop::Io {
        write: false,
        error,
    })?;
    dst.write_cached(w.dst_off, &buf)
        .map_err(|error| Stop::Io { write: true, error })?;
    Ok(buf)
}

/// Reader thread fills bounce buffers ahead of the writer; buffers are recycled, so
/// memory stays at PIPELINE_DEPTH × BOUNCE_CHUNK whatever the window.
fn bounce(src: &Extent<'_>, dst: &Extent<'_>, w: Range) -> Result<(), Stop> {
    let (full_tx, full_rx) = sync_channel::<(u64, Vec<u8>)>(PIPELINE_DEPTH);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    for _ in 0..PIPELINE_DEPTH {
        let _ = free_tx.send(vec![0u8; BOUNCE_CHUNK]);
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<(), IoError> {
            let mut at = 0u64;
            while at < w.len {
                let Ok(mut buf) = free_rx.recv() else {
                    return Ok(()); // writer stopped
                };
                let n = (w.len - at).min(BOUNCE_CHUNK as u64) as usize;
                buf.resize(n, 0);
                src.read(w.src_off + at, &mut buf)?;
                if full_tx.send((at, buf)).is_err() {
                    return Ok(());
                }
                at += n as u64;
            }
            Ok(())
        });
        let mut result = Ok(());
        for (at, buf) in full_rx.iter() {
            if let Err(error) = dst.write_cached(w.dst_off + at, &buf) {
                result = Err(Stop::Io { write: true, error });
                break;
            }
            let _ = free_tx.send(buf);
        }
        drop(free_tx);
        drop(full_rx);
        match reader.join() {
            Ok(Ok(())) => result,
            Ok(Err(error)) => Err(Stop::Io {
                write: false,
                error,
            }),
            Err(_) => Err(Stop::Io {
                write: false,
                error: IoError::new(
                    IoOp::Read,
                    w.src_off,
                    std::io::Error::other("copy reader panicked"),
                ),
            }),
        }
    })
}
