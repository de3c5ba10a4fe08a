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

/// `struct file_clone_range` from <linux/fs.h>.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

// _IOW(0x94, 13, struct file_clone_range)
const FICLONERANGE: libc::c_ulong = 0x4020_940d;

/// Shares `len` bytes of `src` at `src_off` into `dst` at `dst_off` (reflink). The
/// filesystem requires block-aligned offsets and length; it refuses with EINVAL,
/// EXDEV or EOPNOTSUPP otherwise.
pub fn clone_range(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> io::Result<()> {
    let arg = FileCloneRange {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset: src_off,
        src_length: len,
        dest_offset: dst_off,
    };
    // SAFETY: the ioctl reads one `struct file_clone_range` that lives across the
    // call; both fds are borrowed from live `File`s.
    cvt(unsafe {
        libc::ioctl(
            dst.as_raw_fd(),
            FICLONERANGE as _,
            &arg as *const FileCloneRange,
        )
    })
}

/// copy_file_range(2) of exactly `len` bytes (looping over short copies).
pub fn copy_file_range(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> io::Result<()> {
    let (mut so, mut d_o) = (off(src_off)?, off(dst_off)?);
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: the offsets are locals passed by pointer and updated by the kernel;
        // both fds are borrowed from live `File`s.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut so,
                dst.as_raw_fd(),
                &mut d_o,
                chunk,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "copy_file_range: end of source",
            ));
        }
        left -= n as u64;
    }
    Ok(())
}

/// preadv2(RWF_NOWAIT): reads only what the page cache already holds. `Ok(n)` bytes
/// were read (possibly fewer than asked); `Err` with EAGAIN when reading would block.
pub fn pread_nowait(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, which is live and exclusively borrowed for the
    // call; the fd is borrowed from `file`.
    let r = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, off(offset)?, libc::RWF_NOWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// pwritev2(RWF_NOWAIT): writes only if that needs no waiting (page cache space,
/// no block allocation wait). `Ok(n)` bytes written; EAGAIN when it would block.
pub fn pwrite_nowait(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, live for the call and only read by the kernel;
    // the fd is borrowed from `file`.
    let r = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, off(offset)?, libc::RWF_NOWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
