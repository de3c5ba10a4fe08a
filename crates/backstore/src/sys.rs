//! The only unsafe code in oxtgt: thin wrappers over the Linux calls std does not
//! expose (fallocate modes, SEEK_DATA/SEEK_HOLE, block-device ioctls). Each wrapper
//! takes a borrowed file, so the descriptor is valid for the duration of the call, and
//! turns the C return convention into `io::Result`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn off(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Deallocates `[offset, offset+len)` of a regular file, keeping its size; the range
/// reads back as zeros.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: fallocate only reads its scalar arguments; the fd is borrowed from `file`.
    cvt(unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    })
}

/// Zeroes `[offset, offset+len)` of a regular file, leaving it allocated.
pub fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: as in `punch_hole`.
    cvt(unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    })
}

/// `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)`: the next offset ≥ `from` that starts data
/// (or a hole). `None` when there is no more data past `from` (ENXIO).
pub fn seek(file: &File, from: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    // SAFETY: lseek takes scalars; the fd is borrowed from `file`. Callers use
    // positional I/O only, so moving the shared file offset disturbs nothing.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off(from)?, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

// From <linux/fs.h>: _IO(0x12, 127). (BLKDISCARD is not used: a discarded range of
// a device need not read back as zeros, and oxtgt advertises LBPRZ.)
const BLKZEROOUT: libc::c_ulong = 0x127f;

fn block_range_ioctl(file: &File, req: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: the ioctl reads a `uint64_t[2]` {start, length}; `range` lives across
    // the call and the fd is borrowed from `file`.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), req as _, range.as_ptr()) })
}

/// Zeroes a byte range of a block device (BLKZEROOUT), offloaded where it can be.
pub fn block_zero_out(file: &File, offset: u64, len: u64) -> io::Result<()> {
    block_range_ioctl(file, BLKZEROOUT, offset, len)
}
