//! Sparse RAM: memory is allocated a page at a time when first written; unwritten and
//! discarded pages read as zeros. Pages are reference counted so that a snapshot
//! shares them: a write to a shared page copies it first (copy on write), and the
//! snapshot keeps the old contents.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::{
    check_range, Backstore, CopyOffload, CopyReport, CopySource, SharedBytes, Snapshot,
    ThinProvisioning,
};

const PAGE: usize = 64 * 1024;

type Page = Option<Arc<[u8]>>;

/// A RAM-backed store.
#[derive(Debug)]
pub struct RamBackstore {
    size: u64,
    pages: Vec<RwLock<Page>>,
    /// Slots holding a page (shared or not).
    used: AtomicU64,
    /// Most slots that may hold a page (`memory_limit`); past it writes fail with
    /// ENOSPC, which the SCSI layer answers as a thin LU out of space.
    limit: Option<u64>,
}

/// The page's bytes for writing: allocated (zeroed) if absent, and copied first if
/// a snapshot shares it.
fn page_mut(slot: &mut Page) -> &mut [u8] {
    let page = slot.get_or_insert_with(|| Arc::from(vec![0u8; PAGE]));
    if Arc::get_mut(page).is_none() {
        *page = Arc::from(&page[..]);
    }
    Arc::get_mut(page).unwrap_or_else(|| unreachable!("a fresh copy has one owner"))
}

impl RamBackstore {
    pub fn new(size: u64) -> Self {
        let n = size.div_ceil(PAGE as u64) as usize;
        Self {
            size,
            pages: (0..n).map(|_| RwLock::new(None)).collect(),
            used: AtomicU64::new(0),
            limit: None,
        }
    }

    /// At most `bytes` of data pages (rounded down to whole 64 KiB pages): a write
    /// that needs more fails with ENOSPC until discards free some.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes / PAGE as u64);
        self
    }

    /// Accounts for `n` more pages, or refuses with ENOSPC past the limit.
    fn take_pages(&self, n: u64) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let grown = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                self.limit
                    .map_or(Some(u + n), |l| (u + n <= l).then_some(u + n))
            });
        grown
            .map(|_| ())
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOSPC))
    }

    fn give_pages(&self, n: u64) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Bytes of memory currently allocated for data.
    pub fn allocated_bytes(&self) -> u64 {
        self.pages
            .iter()
            .filter(|p| p.read().map(|g| g.is_some()).unwrap_or(false))
            .count() as u64
            * PAGE as u64
    }

    /// Visits `[offset, offset+len)` page by page: (page index, offset in page, range
    /// in the caller's buffer).
    fn spans(
        offset: u64,
        len: usize,
    ) -> impl Iterator<Item = (usize, usize, std::ops::Range<usize>)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let pos = offset + done as u64;
            let page = (pos / PAGE as u64) as usize;
            let in_page = (pos % PAGE as u64) as usize;
            let n = (PAGE - in_page).min(len - done);
            let r = done..done + n;
            done += n;
            Some((page, in_page, r))
        })
    }
}

fn poisoned() -> io::Error {
    io::Error::other("RAM page lock poisoned")
}

impl RamBackstore {
    /// Copies from another RAM store into this one's pages: whole aligned pages are
    /// shared (copied on the next write to either side), partial ones copied; whole
    /// source pages never written stay unallocated here. Returns the bytes shared
    /// and the bytes copied.
    fn copy_pages_from(
        &self,
        src: &RamBackstore,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> io::Result<(u64, u64)> {
        let (mut shared, mut copied) = (0u64, 0u64);
        check_range(dst_off, len as usize, self.size)?;
        check_range(src_off, len as usize, src.size)?;
        for (page, at, r) in Self::spans(dst_off, len as usize) {
            let from = src_off + r.start as u64;
            let mut g = self.pages[page].write().map_err(|_| poisoned())?;
            if r.len() == PAGE && from.is_multiple_of(PAGE as u64) {
                let sp = src.pages[(from / PAGE as u64) as usize]
                    .read()
                    .map_err(|_| poisoned())?;
                match (g.is_some(), sp.is_some()) {
                    (false, true) => self.take_pages(1)?,
                    (true, false) => self.give_pages(1),
                    _ => {}
                }
                *g = sp.clone();
                shared += r.len() as u64;
                continue;
            }
            if g.is_none() {
                self.take_pages(1)?;
            }
            let p = page_mut(&mut g);
            src.read_at(&mut p[at..at + r.len()], from)?;
            copied += r.len() as u64;
        }
        Ok((shared, copied))
    }
}

impl Backstore for RamBackstore {
    fn kind(&self) -> &'static str {
        "ram"
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn allocated(&self) -> Option<u64> {
        Some(self.used.load(Ordering::Relaxed) * PAGE as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        for (page, at, r) in Self::spans(offset, buf.len()) {
            let g = self.pages[page].read().map_err(|_| poisoned())?;
            match g.as_deref() {
                Some(p) => buf[r.clone()].copy_from_slice(&p[at..at + r.len()]),
                None => buf[r].fill(0),
            }
        }
        Ok(())
    }

    /// RAM never waits on a device: page locks are held for one memcpy.
    fn read_at_nowait(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.read_at(buf, offset).map(|()| true)
    }

    fn write_at_nowait(&self, buf: &[u8], offset: u64) -> io::Result<bool> {
        self.write_at(buf, offset, false).map(|()| true)
    }

    fn writes_nowait(&self) -> bool {
        true
    }

    /// The pages themselves (their reference counts go up, so a later write
    /// copies them first), zeros where none was allocated.
    fn read_shared(&self, offset: u64, len: usize) -> Option<Vec<SharedBytes>> {
        check_range(offset, len, self.size).ok()?;
        let mut out = Vec::with_capacity(len / PAGE + 2);
        for (page, at, r) in Self::spans(offset, len) {
            let g = self.pages[page].read().ok()?;
            out.push(match g.as_ref() {
                Some(p) => SharedBytes::Page(p.clone(), at..at + r.len()),
                None => SharedBytes::Zeros(r.len()),
            });
        }
        Some(out)
    }

    fn write_at(&self, buf: &[u8], offset: u64, _fua: bool) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        // Reserve the pages the write will allocate before writing any, so that a
        // write past the memory limit changes nothing.
        let mut reserved = 0u64;
        for (page, _, _) in Self::spans(offset, buf.len()) {
            if self.pages[page].read().map_err(|_| poisoned())?.is_none() {
                reserved += 1;
            }
        }
        self.take_pages(reserved)?;
        for (page, at, r) in Self::spans(offset, buf.len()) {
            let mut g = self.pages[page].write().map_err(|_| poisoned())?;
            if g.is_none() {
                if reserved > 0 {
                    reserved -= 1;
                } else {
                    // Discarded since the count (overlapping commands are the SCSI
                    // layer's to order): on ENOSPC what is written so far stays.
                    self.take_pages(1)?;
                }
            }
            page_mut(&mut g)[at..at + r.len()].copy_from_slice(&buf[r]);
        }
        self.give_pages(reserved);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn thin_provisioning(&self) -> Option<&dyn ThinProvisioning> {
        Some(self)
    }

    fn copy_offload(&self) -> Option<&dyn CopyOffload> {
        Some(self)
    }

    fn snapshot(&self) -> Option<&dyn Snapshot> {
        Some(self)
    }
}

impl Snapshot for RamBackstore {
    /// A store that shares this one's pages under the ranges: no data is copied
    /// now; a later write to a shared page copies that page (64 KiB) once.
    fn snapshot_ranges(&self, ranges: &[(u64, u64)]) -> io::Result<Option<Arc<dyn Backstore>>> {
        let mut wanted = vec![false; self.pages.len()];
        for &(offset, len) in ranges {
            check_range(offset, len as usize, self.size)?;
            if len == 0 {
                continue;
            }
            let first = (offset / PAGE as u64) as usize;
            let last = ((offset + len - 1) / PAGE as u64) as usize;
            wanted[first..=last].iter_mut().for_each(|w| *w = true);
        }
        let mut pages = Vec::with_capacity(self.pages.len());
        let mut used = 0;
        for (slot, wanted) in self.pages.iter().zip(wanted) {
            let page = if wanted {
                slot.read().map_err(|_| poisoned())?.clone()
            } else {
                None
            };
            used += u64::from(page.is_some());
            pages.push(RwLock::new(page));
        }
        // Images are bounded by the token store's own limit, not the LU's.
        Ok(Some(Arc::new(RamBackstore {
            size: self.size,
            pages,
            used: AtomicU64::new(used),
            limit: None,
        })))
    }
}

impl ThinProvisioning for RamBackstore {
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(offset, len as usize, self.size)?;
        for (page, at, r) in Self::spans(offset, len as usize) {
            let mut g = self.pages[page].write().map_err(|_| poisoned())?;
            if r.len() == PAGE {
                if g.take().is_some() {
                    self.give_pages(1);
                }
            } else if g.is_some() {
                page_mut(&mut g)[at..at + r.len()].fill(0);
            }
        }
        Ok(())
    }

    fn discard_granularity(&self) -> u64 {
        PAGE as u64
    }

    fn mapped(&self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        check_range(offset, 0, self.size)?;
        let len = len.min(self.size - offset);
        let mut status = None;
        let mut run = 0u64;
        for (page, _, r) in Self::spans(offset, len as usize) {
            let mapped = self.pages[page].read().map_err(|_| poisoned())?.is_some();
            match status {
                None => status = Some(mapped),
                Some(s) if s != mapped => break,
                Some(_) => {}
            }
            run += r.len() as u64;
        }
        Ok((status.unwrap_or(false), run))
    }
}

impl CopyOffload for RamBackstore {
    fn as_source(&self) -> CopySource<'_> {
        CopySource::Ram(self)
    }

    /// Page to page between two distinct RAM stores; the same store (overlap rules
    /// are the caller's) and other engines get `None`.
    fn copy_from(
        &self,
        src: CopySource<'_>,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> io::Result<Option<CopyReport>> {
        match src {
            CopySource::Ram(s) if !std::ptr::eq(s, self) => {
                let (shared, memcpy) = self.copy_pages_from(s, src_off, dst_off, len)?;
                Ok(Some(CopyReport {
                    shared,
                    memcpy,
                    ..CopyReport::default()
                }))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_until_written() {
        let r = RamBackstore::new(1 << 30);
        assert_eq!(r.allocated_bytes(), 0);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        r.write_at(&data, PAGE as u64 - 7, false).unwrap();
        let mut back = vec![0u8; data.len()];
        r.read_at(&mut back, PAGE as u64 - 7).unwrap();
        assert_eq!(back, data);
        assert_eq!(r.allocated_bytes(), 5 * PAGE as u64);
        assert_eq!(r.mapped(0, 1 << 20).unwrap(), (true, 5 * PAGE as u64));
        assert_eq!(
            r.mapped(5 * PAGE as u64, 1 << 20).unwrap(),
            (false, 1 << 20)
        );
        r.discard(0, 1 << 30).unwrap();
        assert_eq!(r.allocated_bytes(), 0);
        r.read_at(&mut back, PAGE as u64 - 7).unwrap();
        assert!(back.iter().all(|&b| b == 0));
    }

    #[test]
    fn native_copy_between_stores_is_exact_and_sparse() {
        let a = RamBackstore::new(4 << 20);
        let b = RamBackstore::new(4 << 20);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        a.write_at(&data, 1000, false).unwrap();
        // Unaligned source and destination, crossing pages, plus an unwritten tail.
        let r = crate::copy_native(&a, 900, &b, 70_000, 500_000)
            .unwrap()
            .unwrap();
        assert_eq!(r.memcpy, 500_000, "unaligned: every byte copied");
        let mut back = vec![1u8; 500_000];
        b.read_at(&mut back, 70_000).unwrap();
        assert!(back[..100].iter().all(|&x| x == 0));
        assert_eq!(&back[100..300_100], &data[..]);
        assert!(back[300_100..].iter().all(|&x| x == 0));
        // Page-aligned copy of unwritten pages allocates nothing.
        let c = RamBackstore::new(4 << 20);
        crate::copy_native(&a, 2 << 20, &c, 0, 2 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(c.allocated_bytes(), 0);
        // Aligned whole pages are shared, and each side's later writes stay its own.
        let r = crate::copy_native(&a, 0, &c, 0, 4 * PAGE as u64)
            .unwrap()
            .unwrap();
        assert_eq!((r.shared, r.memcpy), (4 * PAGE as u64, 0));
        c.write_at(&[0xcc; 10], 1000, false).unwrap();
        a.write_at(&[0xaa; 10], 2000, false).unwrap();
        let mut x = vec![0u8; 4 * PAGE];
        c.read_at(&mut x, 0).unwrap();
        let mut want = vec![0u8; 4 * PAGE];
        want[1000..1000 + data.len().min(4 * PAGE - 1000)]
            .copy_from_slice(&data[..data.len().min(4 * PAGE - 1000)]);
        want[1000..1010].fill(0xcc);
        assert!(x == want, "c has the copied data with its own write only");
        let mut y = [0u8; 10];
        a.read_at(&mut y, 1000).unwrap();
        assert_eq!(y, data[..10], "a is untouched by c's write");
        // The same store is left to the caller.
        assert!(crate::copy_native(&a, 0, &a, 1 << 20, 4096)
            .unwrap()
            .is_none());
    }

    #[test]
    fn snapshot_keeps_the_data_of_its_ranges_while_the_store_changes() {
        let r = RamBackstore::new(4 << 20);
        let old: Vec<u8> = (0..300_000u32).map(|i| (i * 3) as u8).collect();
        r.write_at(&old, 10_000, false).unwrap();
        let snap = r
            .snapshot()
            .unwrap()
            .snapshot_ranges(&[(10_000, 100_000), (200_000, 110_000)])
            .unwrap()
            .unwrap();
        // Nothing is copied: the image shares the pages.
        assert_eq!(snap.size(), 4 << 20);
        // Overwrite, discard and partially zero the source under both ranges.
        r.write_at(&vec![0xee; 150_000], 0, false).unwrap();
        r.discard(4 * PAGE as u64, PAGE as u64).unwrap();
        r.discard(200_000, 1000).unwrap();
        let mut back = vec![0u8; 100_000];
        snap.read_at(&mut back, 10_000).unwrap();
        assert!(back == old[..100_000], "first range changed");
        let mut back = vec![0u8; 110_000];
        snap.read_at(&mut back, 200_000).unwrap();
        assert!(back == old[190_000..300_000], "second range changed");
        // And the source has its new contents.
        let mut now = vec![0u8; 150_000];
        r.read_at(&mut now, 0).unwrap();
        assert!(now.iter().all(|&b| b == 0xee));
        // An image can be a native copy source, like any RAM store.
        let dst = RamBackstore::new(4 << 20);
        crate::copy_native(snap.as_ref(), 10_000, &dst, 0, 100_000)
            .unwrap()
            .unwrap();
        let mut back = vec![0u8; 100_000];
        dst.read_at(&mut back, 0).unwrap();
        assert!(back == old[..100_000]);
        assert!(r
            .snapshot()
            .unwrap()
            .snapshot_ranges(&[(4 << 20, 1)])
            .is_err());
    }

    #[test]
    fn a_memory_limit_refuses_new_pages_with_enospc_until_discards_free_some() {
        let r = RamBackstore::new(16 * PAGE as u64).with_memory_limit(2 * PAGE as u64 + 100);
        r.write_at(&[1u8; PAGE], 0, false).unwrap();
        // Two pages' worth, of which one is new: fits.
        r.write_at(&[2u8; 2 * PAGE], 0, false).unwrap();
        // A third page: refused whole, nothing written.
        let e = r
            .write_at(&[3u8; 2 * PAGE], PAGE as u64, false)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        let mut b = vec![0u8; 3 * PAGE];
        r.read_at(&mut b, 0).unwrap();
        assert!(
            b[..2 * PAGE].iter().all(|&x| x == 2),
            "reads still served, data intact"
        );
        assert!(
            b[2 * PAGE..].iter().all(|&x| x == 0),
            "the refused write left nothing"
        );
        // Rewriting allocated pages needs no new memory.
        r.write_at(&[4u8; PAGE], PAGE as u64, false).unwrap();
        // A discard gives a page back; then the write fits.
        r.discard(0, PAGE as u64).unwrap();
        r.write_at(&[5u8; PAGE], 2 * PAGE as u64, false).unwrap();
        assert_eq!(r.allocated_bytes(), 2 * PAGE as u64);
    }

    #[test]
    fn shared_reads_lend_pages_and_keep_their_contents_across_later_writes() {
        let b = RamBackstore::new(4 * PAGE as u64);
        b.write_at(&[7u8; 1000], PAGE as u64 - 500, false).unwrap();
        // Across a page boundary, with an unwritten page after it.
        let lent = b.read_shared(PAGE as u64 - 600, PAGE + 700).unwrap();
        let flat: Vec<u8> = lent.iter().flat_map(|p| p.as_slice().to_vec()).collect();
        assert_eq!(flat.len(), PAGE + 700);
        assert_eq!(&flat[..100], &[0u8; 100][..]);
        assert_eq!(&flat[100..1100], &[7u8; 1000][..]);
        assert!(flat[1100..].iter().all(|&x| x == 0));
        assert!(matches!(lent.last(), Some(SharedBytes::Zeros(_))));
        // A write after the loan copies the page: the loan still reads 7s.
        b.write_at(&[9u8; 1000], PAGE as u64 - 500, false).unwrap();
        let again: Vec<u8> = lent.iter().flat_map(|p| p.as_slice().to_vec()).collect();
        assert_eq!(again, flat);
        let mut now = vec![0u8; 1000];
        b.read_at(&mut now, PAGE as u64 - 500).unwrap();
        assert_eq!(now, vec![9u8; 1000]);
        assert!(
            b.read_shared(4 * PAGE as u64 - 10, 11).is_none(),
            "past the end"
        );
    }

    #[test]
    fn out_of_range_refused() {
        let r = RamBackstore::new(4096);
        assert!(r.write_at(&[1], 4096, false).is_err());
        assert!(r.read_at(&mut [0; 2], 4095).is_err());
    }
}
