//! A virtual tape cartridge: one sparse file holding a header, the data of every
//! block, and an index of runs. The format (docs/TAPE-FORMAT.md has the table):
//!
//! ```text
//! 0                 4096                            4096+capacity
//! │ header (CRC32C) │ data region: each run starts   │ index region: 32-byte run
//! │                 │ 4 KiB aligned, blocks back to  │ records (CRC32C each),
//! │                 │ back inside a run              │ appended; the file ends here
//! ```
//!
//! A run is a sequence of equal-length blocks with contiguous data, or of
//! consecutive filemarks. Because every run's data starts on a 4 KiB boundary, a
//! block-device extent copied onto the tape can be cloned (FICLONERANGE) or moved
//! with copy_file_range, and the index gains one record.
//!
//! **Crash safety.** New records stay in memory until a sync point (WRITE
//! FILEMARKS, REWIND, LOCATE, UNLOAD, a read after writes, or 64 MiB / 4096
//! records pending): the data is made durable first (fdatasync), then the records
//! are written and made durable. So the index never names data that did not reach
//! the disk; a crash loses at most what was written since the last sync point (the
//! LU reports BUFFERED MODE 1, which says exactly that). A torn record (short or
//! failing its CRC) ends the index when the cartridge is opened: the tail is cut
//! off and the cartridge loads. Writing anywhere but at the end of data drops
//! everything after the write position; that truncation reaches the disk before
//! new data can overwrite the dropped runs' bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where the data region starts and how runs are aligned in it.
pub const ALIGN: u64 = 4096;
const HEADER_LEN: usize = 4096;
const MAGIC: &[u8; 8] = b"OXTAPE\0\x01";
const VERSION: u32 = 1;
const RECORD: usize = 32;
/// Pending data or records past these force a sync (bounds what a crash can lose).
const SYNC_BYTES: u64 = 64 << 20;
const SYNC_RECORDS: usize = 4096;

const KIND_BLOCKS: u8 = 1;
const KIND_FILEMARKS: u8 = 2;

/// One run of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Blocks (`Some(length)`) or filemarks (`None`).
    pub block_len: Option<u32>,
    pub count: u32,
    /// Absolute file offset of the first block's data (0 for filemarks).
    pub data_off: u64,
    /// Logical object number of the run's first object.
    pub first: u64,
    /// Filemarks before the run.
    pub files: u64,
}

impl Run {
    pub fn end(&self) -> u64 {
        self.first + u64::from(self.count)
    }
    fn data_end(&self) -> u64 {
        self.data_off + u64::from(self.count) * u64::from(self.block_len.unwrap_or(0))
    }
    fn encode(&self) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[0] = if self.block_len.is_some() {
            KIND_BLOCKS
        } else {
            KIND_FILEMARKS
        };
        r[4..8].copy_from_slice(&self.count.to_be_bytes());
        r[8..12].copy_from_slice(&self.block_len.unwrap_or(0).to_be_bytes());
        r[16..24].copy_from_slice(&self.data_off.to_be_bytes());
        let crc = crc32c::crc32c(&r[..28]);
        r[28..].copy_from_slice(&crc.to_be_bytes());
        r
    }
}

/// What opening a cartridge found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Bytes cut off the end of the index (a torn or invalid record and after).
    pub index_bytes_dropped: u64,
}

/// The logical object at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A block: its length and the file offset of its data.
    Block {
        len: u32,
        off: u64,
    },
    Filemark,
}

/// An open cartridge.
#[derive(Debug)]
pub struct Cartridge {
    file: File,
    path: PathBuf,
    name: String,
    capacity: u64,
    write_protected: bool,
    runs: Vec<Run>,
    /// Runs (from the front) whose records are on disk.
    persisted: usize,
    /// Where the next run's data goes (aligned).
    data_end: u64,
    /// Data written since the last sync.
    dirty: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(ALIGN) * ALIGN
}

impl Cartridge {
    /// Opens the cartridge at `path`, creating an empty one of `capacity` bytes
    /// (rounded up to 4 KiB) named `name` when the file does not exist.
    pub fn open(path: &Path, name: &str, capacity: u64) -> io::Result<(Self, Repair)> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Self::create(path, name, capacity)?;
                OpenOptions::new().read(true).write(true).open(path)?
            }
            Err(e) => return Err(e),
        };
        let mut h = vec![0u8; HEADER_LEN];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| bad(format!("{}: no cartridge header: {e}", path.display())))?;
        if &h[..8] != MAGIC {
            return Err(bad(format!("{}: not an oxtgt cartridge", path.display())));
        }
        let crc = u32::from_be_bytes(h[HEADER_LEN - 4..].try_into().unwrap_or_default());
        if crc32c::crc32c(&h[..HEADER_LEN - 4]) != crc {
            return Err(bad(format!(
                "{}: cartridge header CRC mismatch",
                path.display()
            )));
        }
        let be32 = |o: usize| u32::from_be_bytes(h[o..o + 4].try_into().unwrap_or_default());
        if be32(8) != VERSION {
            return Err(bad(format!(
                "{}: cartridge format version {} (this oxtgt reads {VERSION})",
                path.display(),
                be32(8)
            )));
        }
        let flags = be32(12);
        let capacity = u64::from_be_bytes(h[16..24].try_into().unwrap_or_default());
        let name = String::from_utf8_lossy(&h[32..64]).trim_end().to_owned();
        let mut c = Self {
            file,
            path: path.to_owned(),
            name,
            capacity,
            write_protected: flags & 1 != 0,
            runs: Vec::new(),
            persisted: 0,
            data_end: ALIGN,
            dirty: 0,
        };
        let repair = c.load_index()?;
        Ok((c, repair))
    }

    fn create(path: &Path, name: &str, capacity: u64) -> io::Result<()> {
        let capacity = align_up(capacity.max(ALIGN));
        let mut h = vec![0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_be_bytes());
        h[16..24].copy_from_slice(&capacity.to_be_bytes());
        h[24..28].copy_from_slice(&(RECORD as u32).to_be_bytes());
        h[28..32].copy_from_slice(&(ALIGN as u32).to_be_bytes());
        h[32..64].fill(b' ');
        for (d, s) in h[32..64].iter_mut().zip(name.bytes()) {
            *d = s;
        }
        let crc = crc32c::crc32c(&h[..HEADER_LEN - 4]);
        h[HEADER_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
        // Written under a temporary name and renamed: a crash leaves no half header.
        let tmp = path.with_extension("new");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all_at(&h, 0)?;
        f.set_len(ALIGN + capacity)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn index_start(&self) -> u64 {
        ALIGN + self.capacity
    }

    /// Reads the index, keeping every record up to the first that is torn or does
    /// not fit; cuts the rest off the file.
    fn load_index(&mut self) -> io::Result<Repair> {
        let start = self.index_start();
        let len = self.file.metadata()?.len();
        if len < start {
            return Err(bad(format!(
                "{}: shorter than its data region",
                self.path.display()
            )));
        }
        let mut raw = vec![0u8; (len - start) as usize];
        self.file.read_exact_at(&mut raw, start)?;
        let (mut first, mut files, mut data_end) = (0u64, 0u64, ALIGN);
        let mut good = 0usize;
        for r in raw.chunks(RECORD) {
            let Some(run) = Self::decode(r, first, files, data_end, start) else {
                break;
            };
            first = run.end();
            if run.block_len.is_none() {
                files += u64::from(run.count);
            } else {
                data_end = align_up(run.data_end());
            }
            self.runs.push(run);
            good += RECORD;
        }
        let dropped = raw.len() - good;
        if dropped > 0 {
            self.file.set_len(start + good as u64)?;
            self.file.sync_all()?;
        }
        self.persisted = self.runs.len();
        self.data_end = data_end;
        Ok(Repair {
            index_bytes_dropped: dropped as u64,
        })
    }

    fn decode(r: &[u8], first: u64, files: u64, data_end: u64, limit: u64) -> Option<Run> {
        if r.len() < RECORD {
            return None;
        }
        let crc = u32::from_be_bytes(r[28..32].try_into().ok()?);
        if crc32c::crc32c(&r[..28]) != crc {
            return None;
        }
        let count = u32::from_be_bytes(r[4..8].try_into().ok()?);
        let block_len = u32::from_be_bytes(r[8..12].try_into().ok()?);
        let data_off = u64::from_be_bytes(r[16..24].try_into().ok()?);
        if count == 0 {
            return None;
        }
        let run = match r[0] {
            KIND_FILEMARKS => Run {
                block_len: None,
                count,
                data_off: 0,
                first,
                files,
            },
            KIND_BLOCKS if block_len > 0 => Run {
                block_len: Some(block_len),
                count,
                data_off,
                first,
                files,
            },
            _ => return None,
        };
        // Data must follow the previous run's, aligned, inside the data region.
        if run.block_len.is_some()
            && (data_off < data_end || data_off % ALIGN != 0 || run.data_end() > limit)
        {
            return None;
        }
        Some(run)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    pub fn write_protected(&self) -> bool {
        self.write_protected
    }
    /// Bytes of the data region used, alignment padding included.
    pub fn used(&self) -> u64 {
        self.data_end - ALIGN
    }
    /// Where the next run's data will start.
    pub fn next_data_offset(&self) -> u64 {
        self.data_end
    }
    /// Logical objects on the tape: the end-of-data position.
    pub fn eod(&self) -> u64 {
        self.runs.last().map_or(0, Run::end)
    }
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The index of the run holding object `pos`, if `pos` is before EOD.
    pub fn run_at(&self, pos: u64) -> Option<usize> {
        let i = self.runs.partition_point(|r| r.end() <= pos);
        (i < self.runs.len()).then_some(i)
    }

    /// Filemarks before position `pos`.
    pub fn files_before(&self, pos: u64) -> u64 {
        match self.run_at(pos) {
            Some(i) => {
                let r = &self.runs[i];
                r.files
                    + if r.block_len.is_none() {
                        pos - r.first
                    } else {
                        0
                    }
            }
            None => self.runs.last().map_or(0, |r| {
                r.files
                    + if r.block_len.is_none() {
                        u64::from(r.count)
                    } else {
                        0
                    }
            }),
        }
    }

    /// The object at `pos`, or `None` at or past EOD.
    pub fn object(&self, pos: u64) -> Option<Object> {
        let r = &self.runs[self.run_at(pos)?];
        Some(match r.block_len {
            None => Object::Filemark,
            Some(len) => Object::Block {
                len,
                off: r.data_off + (pos - r.first) * u64::from(len),
            },
        })
    }

    pub fn read(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }

    /// Drops every object at and after `pos` (writing anywhere but at EOD, ERASE).
    /// If that removes records already on disk, the shorter index is made durable
    /// before this returns, so new data cannot land under a record that survives a
    /// crash.
    pub fn truncate(&mut self, pos: u64) -> io::Result<()> {
        if pos >= self.eod() {
            return Ok(());
        }
        let keep = self.runs.partition_point(|r| r.end() <= pos);
        let mut split = None;
        if let Some(r) = self.runs.get(keep) {
            if r.first < pos {
                let mut r = *r;
                r.count = (pos - r.first) as u32;
                split = Some(r);
            }
        }
        self.runs.truncate(keep);
        let touched_disk = keep < self.persisted;
        self.persisted = self.persisted.min(keep);
        if let Some(r) = split {
            self.runs.push(r);
        }
        self.data_end = self
            .runs
            .iter()
            .rev()
            .find(|r| r.block_len.is_some())
            .map_or(ALIGN, |r| align_up(r.data_end()));
        if touched_disk {
            let start = self.index_start();
            self.file
                .set_len(start + (self.persisted * RECORD) as u64)?;
            self.sync()?;
        }
        Ok(())
    }

    /// Whether `bytes` more of data (from the next aligned offset) fit.
    pub fn fits(&self, bytes: u64) -> bool {
        self.data_end + bytes <= self.index_start()
    }

    /// Appends `data.len() / block_len` blocks at EOD (the caller truncates first).
    pub fn append_blocks(&mut self, block_len: u32, data: &[u8]) -> io::Result<()> {
        let count = (data.len() / block_len as usize) as u32;
        if count == 0 {
            return Ok(());
        }
        if !self.fits(data.len() as u64) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let off = self.data_end;
        self.file.write_all_at(data, off)?;
        self.note_blocks(block_len, count, off);
        Ok(())
    }

    /// Records `count` blocks of `block_len` whose data the caller already put at
    /// `off` (the next data offset): the copy manager's native copies.
    pub fn note_blocks(&mut self, block_len: u32, count: u32, off: u64) {
        let bytes = u64::from(count) * u64::from(block_len);
        self.dirty += bytes;
        let (first, files) = (self.eod(), self.files_before(self.eod()));
        // Merge with the last run when it is pending, of the same block length and
        // its data ends exactly here.
        if self.runs.len() > self.persisted {
            if let Some(last) = self.runs.last_mut() {
                if last.block_len == Some(block_len) && last.data_end() == off {
                    if let Some(n) = last.count.checked_add(count) {
                        last.count = n;
                        self.data_end = align_up(off + bytes);
                        return;
                    }
                }
            }
        }
        self.runs.push(Run {
            block_len: Some(block_len),
            count,
            data_off: off,
            first,
            files,
        });
        self.data_end = align_up(off + bytes);
    }

    pub fn append_filemarks(&mut self, count: u32) {
        if count == 0 {
            return;
        }
        let (first, files) = (self.eod(), self.files_before(self.eod()));
        if self.runs.len() > self.persisted {
            if let Some(last) = self.runs.last_mut() {
                if last.block_len.is_none() {
                    if let Some(n) = last.count.checked_add(count) {
                        last.count = n;
                        return;
                    }
                }
            }
        }
        self.runs.push(Run {
            block_len: None,
            count,
            data_off: 0,
            first,
            files,
        });
    }

    /// Whether enough is pending that the next command should sync.
    pub fn sync_due(&self) -> bool {
        self.dirty >= SYNC_BYTES || self.runs.len() - self.persisted >= SYNC_RECORDS
    }

    pub fn has_pending(&self) -> bool {
        self.dirty > 0 || self.runs.len() > self.persisted
    }

    /// Makes everything written durable: data first, then the records that name it.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty > 0 {
            self.file.sync_data()?;
        }
        if self.runs.len() > self.persisted {
            let mut b = Vec::with_capacity((self.runs.len() - self.persisted) * RECORD);
            for r in &self.runs[self.persisted..] {
                b.extend_from_slice(&r.encode());
            }
            let at = self.index_start() + (self.persisted * RECORD) as u64;
            self.file.write_all_at(&b, at)?;
            self.file.set_len(at + b.len() as u64)?;
            self.file.sync_data()?;
            self.persisted = self.runs.len();
        }
        self.dirty = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oxtgt-tape-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("T1.tape")
    }

    #[test]
    fn runs_survive_reopen_and_pending_ones_do_not_until_synced() {
        let p = tmp("reopen");
        let (mut c, r) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        assert_eq!(r, Repair::default());
        c.append_blocks(512, &[7u8; 2048]).unwrap();
        c.append_blocks(512, &[8u8; 512]).unwrap(); // not contiguous: 4 KiB aligned
        c.append_filemarks(1);
        c.append_blocks(10240, &[9u8; 10240]).unwrap();
        assert_eq!(c.eod(), 7);
        assert_eq!(c.files_before(7), 1);
        assert_eq!(c.object(5), Some(Object::Filemark));
        assert_eq!(c.files_before(5), 0);
        assert_eq!(c.files_before(6), 1);
        assert_eq!(
            c.object(1),
            Some(Object::Block {
                len: 512,
                off: ALIGN + 512
            })
        );
        drop(c);
        let (c, _) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        assert_eq!(c.eod(), 0, "nothing was synced");
        let (mut c, _) = (c, ());
        c.append_blocks(512, &[7u8; 2048]).unwrap();
        c.append_filemarks(2);
        c.sync().unwrap();
        drop(c);
        let (c, _) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        assert_eq!((c.eod(), c.files_before(6)), (6, 2));
        assert_eq!(c.name(), "T1");
        assert_eq!(c.capacity(), 1 << 20);
    }

    #[test]
    fn a_torn_record_is_cut_off_and_the_cartridge_loads() {
        let p = tmp("torn");
        let (mut c, _) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        c.append_blocks(4096, &[1u8; 8192]).unwrap();
        c.append_filemarks(1);
        c.sync().unwrap();
        let start = c.index_start();
        drop(c);
        // A third record torn halfway, then a second whose CRC fails.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[KIND_BLOCKS, 0, 0, 0, 0, 0], start + 64)
            .unwrap();
        drop(f);
        let (c, r) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        assert_eq!(r.index_bytes_dropped, 6);
        assert_eq!(c.eod(), 3);
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xff], start + 32 + 5).unwrap(); // corrupt the filemark record
        drop(f);
        let (c, r) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        assert_eq!((r.index_bytes_dropped, c.eod()), (32, 2));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), start + 32);
    }

    #[test]
    fn truncation_in_the_middle_of_a_run_keeps_its_front_durably() {
        let p = tmp("trunc");
        let (mut c, _) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        c.append_blocks(512, &[3u8; 512 * 16]).unwrap();
        c.append_filemarks(1);
        c.sync().unwrap();
        c.truncate(5).unwrap();
        assert_eq!(c.eod(), 5);
        assert_eq!(c.next_data_offset(), ALIGN + 4096);
        c.append_blocks(512, &[4u8; 512]).unwrap();
        drop(c); // the new block was never synced; the truncation was
        let (c, _) = Cartridge::open(&p, "T1", 1 << 20).unwrap();
        assert_eq!(c.eod(), 5);
        assert_eq!(c.files_before(5), 0);
    }

    #[test]
    fn capacity_is_enforced_and_not_a_header_is_refused() {
        let p = tmp("full");
        let (mut c, _) = Cartridge::open(&p, "T1", 16384).unwrap();
        c.append_blocks(8192, &[0u8; 8192]).unwrap();
        assert!(c.fits(8192) && !c.fits(8193));
        let e = c.append_blocks(16384, &[0u8; 16384]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        let other = p.with_file_name("junk");
        std::fs::write(&other, vec![0u8; 8192]).unwrap();
        assert!(Cartridge::open(&other, "X", 4096).is_err());
    }
}
