//! Regular files and block devices through positional I/O (pread/pwrite).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::{
    check_range, sys, Backstore, CopyOffload, CopyReport, CopySource, Snapshot, ThinProvisioning,
};

/// A file or block device.
#[derive(Debug)]
pub struct FileBackstore {
    file: File,
    path: PathBuf,
    /// Bytes served: grows on [`Backstore::resize`].
    size: AtomicU64,
    block_device: bool,
    /// Cleared when the kernel refuses RWF_NOWAIT writes on this file (EOPNOTSUPP:
    /// ext4 has no non-blocking buffered writes), so they are not tried again.
    nowait_writes: AtomicBool,
}

impl FileBackstore {
    /// Opens an existing file or block device. With `create_size`, a missing regular
    /// file is created sparse at that size. The size is the file's (or device's) size.
    pub fn open(path: &Path, read_only: bool, create_size: Option<u64>) -> io::Result<Self> {
        let exists = path.exists();
        if !exists && create_size.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "backing file {} does not exist and no size was given",
                    path.display()
                ),
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(!exists && !read_only)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let meta = file.metadata()?;
        let block_device = {
            use std::os::unix::fs::FileTypeExt;
            meta.file_type().is_block_device()
        };
        if !exists {
            if let Some(size) = create_size {
                file.set_len(size)?;
            }
        }
        // For block devices metadata().len() is 0; seeking to the end gives the size.
        let size = if block_device {
            file.seek(SeekFrom::End(0))?
        } else {
            file.metadata()?.len()
        };
        if let Some(want) = create_size {
            if exists && !block_device && size < want && !read_only {
                file.set_len(want)?;
                return Ok(Self {
                    file,
                    path: path.to_owned(),
                    size: AtomicU64::new(want),
                    block_device,
                    nowait_writes: AtomicBool::new(true),
                });
            }
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            size: AtomicU64::new(size),
            block_device,
            nowait_writes: AtomicBool::new(true),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Backstore for FileBackstore {
    fn kind(&self) -> &'static str {
        if self.block_device {
            "block"
        } else {
            "file"
        }
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// A regular file whose writes cannot be done without blocking (ext4 refuses
    /// RWF_NOWAIT buffered writes; XFS's run inline on the network thread instead).
    fn serial_writes(&self) -> bool {
        !self.block_device && !self.writes_nowait()
    }

    /// A regular file's allocated blocks; a block device is all allocated.
    fn allocated(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        if self.block_device {
            return Some(self.size());
        }
        self.file.metadata().ok().map(|m| m.blocks() * 512)
    }

    /// A regular file grows to `new_size` (sparse); a block device takes the size
    /// the device has now (`new_size` is then only checked against it). Never
    /// shrinks: data past the new end would be lost to initiators that still
    /// address it.
    fn resize(&self, new_size: u64) -> io::Result<u64> {
        let now = self.size();
        let target = if self.block_device {
            let mut f = &self.file;
            f.seek(SeekFrom::End(0))?
        } else {
            new_size
        };
        if target < now {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} cannot shrink ({now} → {target} bytes)",
                    self.path.display()
                ),
            ));
        }
        if !self.block_device && target > now {
            self.file.set_len(target)?;
        }
        self.size.store(target, Ordering::Release);
        Ok(target)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size())?;
        self.file.read_exact_at(buf, offset)
    }

    fn read_at_nowait(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        check_range(offset, buf.len(), self.size())?;
        let mut done = 0;
        while done < buf.len() {
            match sys::pread_nowait(&self.file, &mut buf[done..], offset + done as u64) {
                Ok(0) => return Ok(false),
                Ok(n) => done += n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn write_at_nowait(&self, buf: &[u8], offset: u64) -> io::Result<bool> {
        check_range(offset, buf.len(), self.size())?;
        if !self.writes_nowait() {
            return Ok(false);
        }
        let mut done = 0;
        while done < buf.len() {
            match sys::pwrite_nowait(&self.file, &buf[done..], offset + done as u64) {
                Ok(0) => return Ok(false),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                    self.nowait_writes.store(false, Ordering::Relaxed);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn writes_nowait(&self) -> bool {
        self.nowait_writes.load(Ordering::Relaxed)
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        check_range(offset, buf.len(), self.size())?;
        self.file.write_all_at(buf, offset)?;
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Zeros that stay allocated: FALLOC_FL_ZERO_RANGE on files, BLKZEROOUT on devices,
    /// written zeros where neither is supported.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero_natively(offset, len, sys::zero_range)
    }

    fn thin_provisioning(&self) -> Option<&dyn ThinProvisioning> {
        Some(self)
    }

    fn copy_offload(&self) -> Option<&dyn CopyOffload> {
        Some(self)
    }

    fn snapshot(&self) -> Option<&dyn Snapshot> {
        (!self.block_device).then_some(self as &dyn Snapshot)
    }
}

impl Snapshot for FileBackstore {
    /// An unnamed file (O_TMPFILE) next to the backing file, so on the same
    /// filesystem, with the ranges' filesystem-block-aligned middles cloned
    /// (FICLONERANGE: shared extents, no data moved) and their unaligned edges, at
    /// most two blocks per range, copied. A filesystem that cannot clone gives
    /// `None`: a full copy is not cheap, and the caller has a cheaper fallback. The
    /// image's space is freed when its last handle closes, crash included.
    fn snapshot_ranges(&self, ranges: &[(u64, u64)]) -> io::Result<Option<Arc<dyn Backstore>>> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        for &(offset, len) in ranges {
            check_range(offset, len as usize, self.size())?;
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let image = match OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
        {
            Ok(f) => f,
            Err(e) if unsupported(&e) || e.raw_os_error() == Some(libc::EISDIR) => return Ok(None),
            Err(e) => return Err(e),
        };
        image.set_len(self.size())?;
        let blk = self.file.metadata()?.blksize().max(512);
        let mut edge = vec![0u8; blk as usize];
        for &(offset, len) in ranges {
            let end = offset + len;
            let mid_start = offset.div_ceil(blk) * blk;
            let mid_end = end / blk * blk;
            let (head, mid, tail) = if mid_start < mid_end {
                ((offset, mid_start), (mid_start, mid_end), (mid_end, end))
            } else {
                ((offset, end), (end, end), (end, end))
            };
            for (from, to) in [head, tail] {
                let mut at = from;
                while at < to {
                    let n = ((to - at) as usize).min(edge.len());
                    self.file.read_exact_at(&mut edge[..n], at)?;
                    image.write_all_at(&edge[..n], at)?;
                    at += n as u64;
                }
            }
            if mid.1 > mid.0 {
                match sys::clone_range(&self.file, mid.0, &image, mid.0, mid.1 - mid.0) {
                    Ok(()) => {}
                    Err(e) if unsupported(&e) || e.raw_os_error() == Some(libc::EXDEV) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Some(Arc::new(FileBackstore {
            file: image,
            path: dir.join(format!(
                "(snapshot of {})",
                self.path.file_name().unwrap_or_default().to_string_lossy()
            )),
            size: AtomicU64::new(self.size()),
            block_device: false,
            nowait_writes: AtomicBool::new(self.writes_nowait()),
        })))
    }
}

impl ThinProvisioning for FileBackstore {
    /// Regular files: punch a hole. Block devices: BLKZEROOUT, which deallocates where
    /// the device can and always reads back zeros (BLKDISCARD does not promise that).
    /// A filesystem without hole punching gets zeros written.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero_natively(offset, len, sys::punch_hole)
    }

    /// SEEK_DATA / SEEK_HOLE on regular files; a block device reports all mapped.
    fn mapped(&self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        if self.block_device {
            return Ok((true, len));
        }
        let end = offset.saturating_add(len);
        let next_data = match sys::seek(&self.file, offset, true) {
            Ok(d) => d,
            Err(e) if unsupported(&e) => return Ok((true, len)),
            Err(e) => return Err(e),
        };
        match next_data {
            None => Ok((false, len)),
            Some(d) if d > offset => Ok((false, d.min(end) - offset)),
            Some(_) => {
                let hole = sys::seek(&self.file, offset, false)?.unwrap_or(self.size());
                Ok((true, hole.min(end).max(offset + 1).min(end) - offset))
            }
        }
    }
}

impl CopyOffload for FileBackstore {
    fn as_source(&self) -> CopySource<'_> {
        CopySource::File(self)
    }

    fn copy_from(
        &self,
        src: CopySource<'_>,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> io::Result<Option<CopyReport>> {
        match src {
            CopySource::File(s) => copy_between(s, src_off, self, dst_off, len),
            CopySource::Ram(_) | CopySource::External(_) => Ok(None),
        }
    }
}

impl FileBackstore {
    /// Zeroes a range with `file_op` on regular files and BLKZEROOUT on block
    /// devices, falling back to writing zeros where the call is not supported.
    fn zero_natively(
        &self,
        offset: u64,
        len: u64,
        file_op: fn(&File, u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        check_range(offset, len as usize, self.size())?;
        if len == 0 {
            return Ok(());
        }
        let r = if self.block_device {
            sys::block_zero_out(&self.file, offset, len)
        } else {
            file_op(&self.file, offset, len)
        };
        match r {
            Err(e) if unsupported(&e) => self.write_zeroes_by_writing(offset, len),
            r => r,
        }
    }

    fn write_zeroes_by_writing(&self, offset: u64, len: u64) -> io::Result<()> {
        let chunk = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            self.file.write_all_at(&chunk[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// File-to-file copy for [`CopyOffload::copy_from`]: reflink the block-aligned middle
/// when source and destination offsets share an alignment, copy_file_range the rest.
fn copy_between(
    src: &FileBackstore,
    src_off: u64,
    dst: &FileBackstore,
    dst_off: u64,
    len: u64,
) -> io::Result<Option<CopyReport>> {
    if src.block_device || dst.block_device || len == 0 {
        return Ok(if len == 0 {
            Some(CopyReport::default())
        } else {
            None
        });
    }
    use std::os::unix::fs::MetadataExt;
    let blk = dst.file.metadata()?.blksize().max(512);
    let mut report = CopyReport::default();
    let (head, middle) = if src_off % blk == dst_off % blk {
        let head = ((blk - src_off % blk) % blk).min(len);
        (head, (len - head) / blk * blk)
    } else {
        (len, 0)
    };
    let cfr = |so: u64, d_o: u64, n: u64, report: &mut CopyReport| -> io::Result<bool> {
        if n == 0 {
            return Ok(true);
        }
        match sys::copy_file_range(&src.file, so, &dst.file, d_o, n) {
            Ok(()) => {
                report.copy_file_range += n;
                Ok(true)
            }
            Err(e) if unsupported(&e) || e.raw_os_error() == Some(libc::EXDEV) => Ok(false),
            Err(e) => Err(e),
        }
    };
    if !cfr(src_off, dst_off, head, &mut report)? {
        return Ok(None);
    }
    if middle > 0 {
        let (so, d_o) = (src_off + head, dst_off + head);
        match sys::clone_range(&src.file, so, &dst.file, d_o, middle) {
            Ok(()) => report.reflink += middle,
            Err(e) if unsupported(&e) || e.raw_os_error() == Some(libc::EXDEV) => {
                if !cfr(so, d_o, middle, &mut report)? {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let done = head + middle;
    if !cfr(src_off + done, dst_off + done, len - done, &mut report)? {
        return Ok(None);
    }
    Ok(Some(report))
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::ENOSYS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("oxtgt-bs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn creates_sparse_and_round_trips() {
        let p = tmp("rt");
        let b = FileBackstore::open(&p, false, Some(1 << 20)).unwrap();
        assert_eq!(b.size(), 1 << 20);
        b.write_at(b"abc", 4096, true).unwrap();
        let mut out = [0u8; 5];
        b.read_at(&mut out, 4095).unwrap();
        assert_eq!(&out, b"\0abc\0");
        assert!(b.write_at(b"x", 1 << 20, false).is_err());
        drop(b);
        assert_eq!(std::fs::read(&p).unwrap()[4096..4099], *b"abc");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn discard_returns_space_and_reads_zero() {
        use std::os::unix::fs::MetadataExt;
        let p = tmp("discard");
        let b = FileBackstore::open(&p, false, Some(8 << 20)).unwrap();
        b.write_at(&vec![0xa5; 8 << 20], 0, true).unwrap();
        let allocated = || std::fs::metadata(&p).unwrap().blocks() * 512;
        assert!(allocated() >= 8 << 20);
        assert_eq!(b.mapped(0, 8 << 20).unwrap(), (true, 8 << 20));
        b.discard(1 << 20, 4 << 20).unwrap();
        assert!(
            allocated() <= 4 << 20,
            "{} bytes still allocated",
            allocated()
        );
        assert_eq!(b.mapped(0, 8 << 20).unwrap(), (true, 1 << 20));
        assert_eq!(b.mapped(1 << 20, 7 << 20).unwrap(), (false, 4 << 20));
        assert_eq!(b.mapped(5 << 20, 3 << 20).unwrap(), (true, 3 << 20));
        let mut back = vec![1u8; 6 << 20];
        b.read_at(&mut back, 0).unwrap();
        assert!(back[..1 << 20].iter().all(|&x| x == 0xa5));
        assert!(back[1 << 20..5 << 20].iter().all(|&x| x == 0));
        assert!(back[5 << 20..].iter().all(|&x| x == 0xa5));
        b.write_zeroes(0, 4096).unwrap();
        b.read_at(&mut back[..8192], 0).unwrap();
        assert!(back[..4096].iter().all(|&x| x == 0) && back[4096] == 0xa5);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn native_copy_between_files_handles_unaligned_edges() {
        let (p1, p2) = (tmp("cp-src"), tmp("cp-dst"));
        let a = FileBackstore::open(&p1, false, Some(4 << 20)).unwrap();
        let b = FileBackstore::open(&p2, false, Some(4 << 20)).unwrap();
        let data: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 251) as u8).collect();
        a.write_at(&data, 0, false).unwrap();
        // Same alignment: head and tail by copy_file_range, middle reflinked where the
        // filesystem can (else copy_file_range); different alignment: all cfr.
        for (so, d_o, n) in [(512u64, 512u64, 2 << 20), (100, 4096, 1 << 20)] {
            let r = crate::copy_native(&a, so, &b, d_o, n)
                .unwrap()
                .expect("native path");
            assert_eq!(r.reflink + r.copy_file_range, n);
            let mut back = vec![0u8; n as usize];
            b.read_at(&mut back, d_o).unwrap();
            assert!(
                back == data[so as usize..(so + n) as usize],
                "copy at {so}->{d_o}"
            );
        }
        std::fs::remove_file(&p1).unwrap();
        std::fs::remove_file(&p2).unwrap();
    }

    #[test]
    fn nowait_reads_cached_data() {
        let p = tmp("nowait");
        let b = FileBackstore::open(&p, false, Some(1 << 20)).unwrap();
        b.write_at(&[9u8; 8192], 4096, false).unwrap();
        let mut buf = [0u8; 8192];
        // Just written: in the page cache, so the read does not need to block.
        assert!(b.read_at_nowait(&mut buf, 4096).unwrap());
        assert_eq!(buf, [9u8; 8192]);
        // A non-blocking overwrite of cached pages either happens or declines.
        if b.write_at_nowait(&[3u8; 4096], 4096).unwrap() {
            b.read_at(&mut buf, 4096).unwrap();
            assert_eq!(&buf[..4096], &[3u8; 4096][..]);
            assert_eq!(&buf[4096..], &[9u8; 4096][..]);
        }
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn missing_without_size_names_path() {
        let p = tmp("missing");
        let e = FileBackstore::open(&p, false, None).unwrap_err();
        assert!(e.to_string().contains(p.to_str().unwrap()));
    }
}
