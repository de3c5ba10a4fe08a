//! What one small buffered overwrite costs the kernel on the filesystem the
//! benchmarks' images live on, so a result can be read against the machine's
//! kernel rather than against the targets.
//!
//! Since Linux 6.16 ext4 caches regular files in large folios, and its
//! buffer-head write path walks every block of the folio on each write
//! (`ext4_block_write_begin`): a 4 KiB write into a file that was written 1 MiB
//! at a time costs about as much as writing the whole megabyte's block list.
//! A fix that stops the walk after the written range for cached folios was
//! posted in June 2026 for stable kernels; the walk up to the range stays.
//! Writes at a folio's start and at its end tell the three kernels apart:
//! both slow (full walk), start fast and end slow (the fix), both as fast as
//! small folios (no large folios, or a filesystem without buffer heads).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

/// Bytes written per call when the file is first filled: what `dd bs=1M` or a
/// copied image does, and what makes the page cache use large folios.
const FILL: usize = 1 << 20;
const BLOCK: usize = 4096;

/// Mean microseconds per 4 KiB `pwrite` over cached data.
#[derive(Debug, Clone, Copy)]
pub struct Overwrite {
    /// At the start of a 1 MiB piece written in one call (a large folio's start).
    pub large_start_us: f64,
    /// At the last 4 KiB of such a piece.
    pub large_end_us: f64,
    /// The same offsets after the file left the page cache and the writes
    /// themselves brought their pages back (small folios).
    pub small_us: f64,
}

impl Overwrite {
    pub fn line(&self) -> String {
        format!(
            "overwrite_us large_start {:.2} large_end {:.2} small {:.2}",
            self.large_start_us, self.large_end_us, self.small_us
        )
    }
}

/// Removes the scratch file however the probe ends.
struct Scratch<'a>(&'a Path);

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Creates `path` (`file_bytes`, a multiple of 1 MiB), fills it 1 MiB at a
/// time, flushes it, and times `writes` 4 KiB overwrites at random 1 MiB
/// pieces' starts, then at their ends; then drops the file from the page cache,
/// rewrites the start offsets once (small folios) and times them again. The
/// file is removed afterwards.
pub fn overwrite_probe(path: &Path, file_bytes: u64, writes: usize) -> io::Result<Overwrite> {
    let pieces = file_bytes / FILL as u64;
    if pieces == 0 || !file_bytes.is_multiple_of(FILL as u64) || writes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the probe needs whole MiBs and at least one write",
        ));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let _scratch = Scratch(path);
    let fill: Vec<u8> = (0..FILL).map(|i| (i * 31 % 251) as u8).collect();
    for p in 0..pieces {
        f.write_all_at(&fill, p * FILL as u64)?;
    }
    // Clean, still cached: the overwrites below measure the write path, not a
    // writeback of the fill running beside them.
    f.sync_data()?;
    let offsets = |within: u64| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..writes).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % pieces) * FILL as u64 + within
        })
    };
    let block = [0x5au8; BLOCK];
    let time = |within: u64| -> io::Result<f64> {
        let t = Instant::now();
        for off in offsets(within) {
            f.write_all_at(&block, off)?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / writes as f64)
    };
    let large_start_us = time(0)?;
    let large_end_us = time((FILL - BLOCK) as u64)?;
    f.sync_data()?;
    drop_cache(&f)?;
    time(0)?;
    let small_us = time(0)?;
    Ok(Overwrite {
        large_start_us,
        large_end_us,
        small_us,
    })
}

/// Asks the kernel to drop `f`'s clean pages from the page cache.
fn drop_cache(f: &File) -> io::Result<()> {
    // SAFETY: a plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_removes_its_scratch_file() {
        let dir = std::env::temp_dir().join(format!("oxtgt-pagecache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("probe");
        let o = overwrite_probe(&path, 4 << 20, 64).unwrap();
        assert!(o.large_start_us > 0.0 && o.large_end_us > 0.0 && o.small_us > 0.0);
        assert!(!path.exists(), "the scratch file is removed");
        // Refuses sizes it cannot lay out, and does not leave a file behind.
        assert!(overwrite_probe(&path, 1000, 1).is_err());
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn does_not_overwrite_an_existing_file() {
        let dir = std::env::temp_dir().join(format!("oxtgt-pagecache-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keep");
        std::fs::write(&path, b"precious").unwrap();
        let e = overwrite_probe(&path, 1 << 20, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
