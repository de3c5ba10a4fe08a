//! Stream segments of EXTENDED COPY (SPC-4 5.17.7.2, 6.4.6): disk→tape (00h),
//! tape→disk (01h), inline and embedded data→tape (04h, 05h), tape→discard (06h)
//! and filemarks (10h), with the residue rules of Table 116 (CAT, PAD) carried from
//! one segment to the next.
//!
//! A segment holds the tape's drive from its first command to its last, so nothing
//! else moves the tape in between; stream sources are read one transfer at a time
//! (SILI 0, no read-ahead), each transfer exactly what the CSCD's FIXED and block
//! length and the segment's STREAM DEVICE TRANSFER LENGTH say, never the drive's
//! mode. A filemark, a block of another length or end of data on the source, and
//! any CHECK CONDITION from the destination, end the copy with COPY ABORTED, THIRD
//! PARTY DEVICE FAILURE, the tape's sense forwarded and the residue in INFORMATION.

use std::sync::atomic::Ordering;

use scsi::error::{copy_aborted, Error};
use scsi::sense::{status, Asc, Sense, SenseKey};
use scsi::ssc::{TapeFault, TapeIo};
use scsi::tpc::lid1::SegmentKind;
use scsi::{LogicalUnit, Nexus};

use crate::manager::Record;

/// Bytes a disk side moves per lock and I/O.
const CHUNK: usize = 8 << 20;

/// FIXED, block length and PAD of one side, from its CSCD (FFFFh: variable blocks,
/// no PAD).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Side {
    pub(crate) pad: bool,
    pub(crate) fixed: bool,
    pub(crate) block_len: u32,
}

impl Side {
    /// Bytes of one stream transfer of `stdl`.
    fn transfer(&self, stdl: u32) -> u64 {
        if self.fixed {
            u64::from(stdl) * u64::from(self.block_len)
        } else {
            u64::from(stdl)
        }
    }
}

/// Residual source and destination data (SPC-4 5.17.7.2), kept across segments.
#[derive(Debug, Default)]
pub(crate) struct Residue {
    src: Vec<u8>,
    dst: Vec<u8>,
}

/// One stream segment, ready to run.
pub(crate) struct Seg<'a> {
    pub(crate) index: usize,
    pub(crate) offset: usize,
    pub(crate) kind: &'a SegmentKind,
    pub(crate) src: &'a LogicalUnit,
    pub(crate) dst: &'a LogicalUnit,
    pub(crate) src_side: Side,
    pub(crate) dst_side: Side,
    pub(crate) nexus: &'a Nexus,
    pub(crate) rec: &'a Record,
    /// 0Bh, 0Ch, 0Fh: keep what is processed for RECEIVE COPY DATA.
    pub(crate) hold: bool,
}

/// How far a segment got when it stopped: the residue INFORMATION reports.
struct Progress {
    /// What the segment was to write, and what it wrote, in the destination's
    /// units: bytes for a variable-length stream destination, blocks otherwise.
    planned: u64,
    done: u64,
}

impl Seg<'_> {
    fn aborted(&self, asc: Asc, at: usize) -> Sense {
        copy_aborted(asc, self.index, self.offset + at)
    }

    fn denied(&self, e: Error, at: usize) -> Sense {
        e.log("copy segment");
        e.copy_aborted(self.index, self.offset + at)
    }

    /// COPY ABORTED for a tape command that did not end GOOD.
    fn tape_failed(&self, f: TapeFault, source: bool, p: &Progress) -> Sense {
        let mut s = copy_aborted(
            Asc::THIRD_PARTY_DEVICE_FAILURE,
            self.index,
            self.offset + if source { 4 } else { 6 },
        );
        s.field = None;
        s.forwarded = Some((
            if source { 1 } else { 2 },
            status::CHECK_CONDITION,
            f.sense.encode(false),
        ));
        if p.done > 0 {
            s.information = Some(p.planned.saturating_sub(p.done));
        }
        s
    }

    fn tape<'l>(&self, lu: &'l LogicalUnit, at: usize) -> Result<TapeIo<'l>, Sense> {
        lu.tape_io()
            .ok_or_else(|| self.aborted(Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE, at))
    }

    /// What is left of a residue after a segment with `cat` ended (Table 116):
    /// `Ok(true)` keep it, `Ok(false)` drop it, padding the destination first
    /// when its PAD says so (the caller's job, `pad_dst`).
    fn settle(&self, cat: bool, src_pad: bool, dst_pad: bool, left: usize) -> Result<bool, Sense> {
        if left == 0 || cat {
            return Ok(true);
        }
        match (src_pad, dst_pad) {
            (true, _) => Ok(false),
            (false, true) => Ok(true),
            (false, false) => Err(self.aborted(Asc::UNEXPECTED_INEXACT_SEGMENT, 1)),
        }
    }

    pub(crate) fn run(&self, res: &mut Residue) -> Result<(), Sense> {
        match *self.kind {
            SegmentKind::BlockToStream {
                cat,
                stdl,
                blocks,
                lba,
            } => {
                let bs = self.disk_range(self.src, u64::from(blocks), lba)?;
                self.block_to_stream(res, cat, stdl, lba * bs, u64::from(blocks) * bs)
            }
            SegmentKind::BlockBytesToStream {
                cat,
                stdl,
                bytes,
                lba,
                offset,
            } => {
                let start = self.byte_range(self.src, bytes, lba, offset)?;
                self.block_to_stream(res, cat, stdl, start, u64::from(bytes))
            }
            SegmentKind::StreamToBlock {
                cat,
                stdl,
                blocks,
                lba,
            } => {
                let bs = self.disk_range(self.dst, u64::from(blocks), lba)?;
                self.stream_to_block(res, cat, stdl, lba * bs, u64::from(blocks) * bs)
            }
            SegmentKind::StreamToBlockBytes {
                cat,
                stdl,
                bytes,
                lba,
                offset,
            } => {
                let start = self.byte_range(self.dst, bytes, lba, offset)?;
                self.stream_to_block(res, cat, stdl, start, u64::from(bytes))
            }
            SegmentKind::DataToStream {
                cat,
                stdl,
                ref data,
            } => {
                self.check_access(false, true)?;
                let xfer = self.transfer(self.dst_side, stdl)?;
                let mut tape = self.tape(self.dst, 6)?;
                let mut p = self.progress_to_tape(data.len() as u64 + res.dst.len() as u64);
                res.dst.extend_from_slice(data);
                self.write_whole(&mut tape, res, xfer, &mut p)?;
                // Table 117: the source PAD of 04h/05h is taken as 0.
                self.finish_dst(&mut tape, res, cat, false, xfer, &mut p)
            }
            SegmentKind::StreamToDiscard { cat, stdl, bytes } => {
                self.check_access(true, false)?;
                let xfer = self.transfer(self.src_side, stdl)?;
                let mut tape = self.tape(self.src, 4)?;
                let p = Progress {
                    planned: 0,
                    done: 0,
                };
                let mut buf = std::mem::take(&mut res.src);
                while (buf.len() as u64) < u64::from(bytes) {
                    tape.read(self.src_side.fixed, self.src_side.block_len, stdl, &mut buf)
                        .map_err(|f| self.tape_failed(f, true, &p))?;
                    self.rec.bytes.fetch_add(xfer, Ordering::Relaxed);
                }
                let rest = buf.split_off(bytes as usize);
                self.keep(&buf);
                // Table 117: the destination PAD of 06h is taken as 0.
                if self.settle(cat, self.src_side.pad, false, rest.len())? {
                    res.src = rest;
                }
                Ok(())
            }
            SegmentKind::Filemarks { count } => {
                self.check_access(false, true)?;
                let mut tape = self.tape(self.dst, 6)?;
                let p = Progress {
                    planned: 0,
                    done: 0,
                };
                tape.filemarks(count)
                    .map_err(|f| self.tape_failed(f, false, &p))
            }
            _ => Err(self.aborted(Asc::NO_ADDITIONAL_SENSE, 0)),
        }
    }

    fn check_access(&self, read_src: bool, write_dst: bool) -> Result<(), Sense> {
        if read_src {
            self.src
                .check_copy_access(self.nexus, false)
                .map_err(|e| self.denied(e, 4))?;
        }
        if write_dst {
            self.dst
                .check_copy_access(self.nexus, true)
                .map_err(|e| self.denied(e, 6))?;
        }
        Ok(())
    }

    /// The bytes of one stream transfer: non-zero and within MAXIMUM STREAM DEVICE
    /// TRANSFER SIZE, or the STDL field is at fault.
    fn transfer(&self, side: Side, stdl: u32) -> Result<u64, Sense> {
        let x = side.transfer(stdl);
        if x == 0 || x > u64::from(scsi::tpc::MAX_STREAM_TRANSFER_BYTES) {
            return Err(self.aborted(Asc::INVALID_FIELD_IN_PARAMETER_LIST, 9));
        }
        Ok(x)
    }

    /// The disk side's block size, once `blocks` from `lba` are inside it (else
    /// COPY ABORTED pointing at BLOCK DEVICE LBA).
    fn disk_range(&self, disk: &LogicalUnit, blocks: u64, lba: u64) -> Result<u64, Sense> {
        if lba
            .checked_add(blocks)
            .is_none_or(|end| end > disk.num_blocks())
        {
            return Err(self.aborted(Asc::LBA_OUT_OF_RANGE, 16));
        }
        Ok(u64::from(disk.block_size()))
    }

    /// 08h/09h: the first byte of NUMBER OF BYTES from BLOCK DEVICE BYTE OFFSET
    /// into the block at LBA, all of it inside the disk.
    fn byte_range(
        &self,
        disk: &LogicalUnit,
        bytes: u32,
        lba: u64,
        offset: u16,
    ) -> Result<u64, Sense> {
        let bs = u64::from(disk.block_size());
        if u64::from(offset) >= bs {
            return Err(self.aborted(Asc::INVALID_FIELD_IN_PARAMETER_LIST, 26));
        }
        let start = lba
            .checked_mul(bs)
            .and_then(|s| s.checked_add(u64::from(offset)));
        match start {
            Some(s) if s + u64::from(bytes) <= disk.num_blocks() * bs => Ok(s),
            _ => Err(self.aborted(Asc::LBA_OUT_OF_RANGE, 16)),
        }
    }

    /// Keeps `bytes` for RECEIVE COPY DATA when the segment holds data: at most
    /// HELD DATA LIMIT, the most recent (SPC-4 5.17.4.5 lets the oldest go).
    fn keep(&self, bytes: &[u8]) {
        if !self.hold || bytes.is_empty() {
            return;
        }
        let limit = scsi::tpc::HELD_DATA_LIMIT as usize;
        let mut held = self.rec.held.lock().unwrap_or_else(|e| e.into_inner());
        let tail = &bytes[bytes.len().saturating_sub(limit)..];
        held.extend_from_slice(tail);
        let over = held.len().saturating_sub(limit);
        held.drain(..over);
    }

    /// Progress of writing `bytes` to a tape in transfers of `xfer`.
    fn progress_to_tape(&self, bytes: u64) -> Progress {
        let unit = if self.dst_side.fixed {
            u64::from(self.dst_side.block_len)
        } else {
            1
        };
        Progress {
            planned: bytes / unit,
            done: 0,
        }
    }

    /// Writes every whole transfer of the destination residue to the tape.
    fn write_whole(
        &self,
        tape: &mut TapeIo<'_>,
        res: &mut Residue,
        xfer: u64,
        p: &mut Progress,
    ) -> Result<(), Sense> {
        let x = xfer as usize;
        let whole = res.dst.len() / x * x;
        let unit = if self.dst_side.fixed {
            self.dst_side.block_len as usize
        } else {
            1
        };
        for t in res.dst[..whole].chunks(x) {
            match tape.write(self.dst_side.fixed, self.dst_side.block_len, t) {
                Ok(()) => {}
                Err(f) => {
                    if f.written {
                        p.done += (t.len() / unit) as u64;
                    }
                    return Err(self.tape_failed(f, false, p));
                }
            }
            p.done += (t.len() / unit) as u64;
            self.rec.bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
        }
        res.dst.drain(..whole);
        Ok(())
    }

    /// The end of a segment writing to a tape: the partial transfer left is kept
    /// (CAT), padded with zeros and written (destination PAD), dropped (source
    /// PAD) or an error.
    fn finish_dst(
        &self,
        tape: &mut TapeIo<'_>,
        res: &mut Residue,
        cat: bool,
        src_pad: bool,
        xfer: u64,
        p: &mut Progress,
    ) -> Result<(), Sense> {
        let left = res.dst.len();
        if left == 0 || cat {
            return Ok(());
        }
        if self.dst_side.pad {
            res.dst.resize(xfer as usize, 0);
            return self.write_whole(tape, res, xfer, p);
        }
        if src_pad {
            res.dst.clear();
            return Ok(());
        }
        Err(self.aborted(Asc::UNEXPECTED_INEXACT_SEGMENT, 1))
    }

    /// 00h, 08h, 0Bh: `bytes` of the disk from byte `start`, after any residual
    /// source data, to the tape in transfers.
    fn block_to_stream(
        &self,
        res: &mut Residue,
        cat: bool,
        stdl: u32,
        start: u64,
        bytes: u64,
    ) -> Result<(), Sense> {
        self.check_access(true, true)?;
        let xfer = self.transfer(self.dst_side, stdl)?;
        let bs = u64::from(self.src.block_size());
        let mut tape = self.tape(self.dst, 6)?;
        // Residual source data (from a stream source with CAT) is processed first.
        let pending_src = std::mem::take(&mut res.src);
        let mut p = self.progress_to_tape(res.dst.len() as u64 + pending_src.len() as u64 + bytes);
        self.keep(&pending_src);
        res.dst.extend_from_slice(&pending_src);
        let mut off = 0u64;
        while off < bytes {
            if self.rec.abort.load(Ordering::Acquire) {
                return Err(Sense::new(
                    SenseKey::ABORTED_COMMAND,
                    Asc::NO_ADDITIONAL_SENSE,
                ));
            }
            let n = (bytes - off).min(CHUNK as u64);
            let (from, to) = (start + off, start + off + n);
            let (first, last) = (from / bs, to.div_ceil(bs));
            let at = res.dst.len();
            res.dst.resize(at + n as usize, 0);
            {
                let x = self
                    .src
                    .lock_shared(first, last - first, scsi::lu::Origin::Copy);
                x.read(from, &mut res.dst[at..])
                    .map_err(|e| self.denied(Error::Io(e), 4))?;
            }
            self.keep(&res.dst[at..]);
            off += n;
            self.write_whole(&mut tape, res, xfer, &mut p)?;
        }
        self.finish_dst(&mut tape, res, cat, self.src_side.pad, xfer, &mut p)
    }

    /// 01h, 09h, 0Ch: `need` bytes to the disk from byte `start`, read from the
    /// tape (residual source data first) in transfers.
    fn stream_to_block(
        &self,
        res: &mut Residue,
        cat: bool,
        stdl: u32,
        start: u64,
        need: u64,
    ) -> Result<(), Sense> {
        self.check_access(true, true)?;
        self.transfer(self.src_side, stdl)?;
        let bs = u64::from(self.dst.block_size());
        let mut tape = self.tape(self.src, 4)?;
        let mut p = Progress {
            planned: need.div_ceil(bs),
            done: 0,
        };
        let mut buf = std::mem::take(&mut res.src);
        let mut written = 0u64;
        while written < need {
            if self.rec.abort.load(Ordering::Acquire) {
                return Err(Sense::new(
                    SenseKey::ABORTED_COMMAND,
                    Asc::NO_ADDITIONAL_SENSE,
                ));
            }
            let want = (need - written).min(CHUNK as u64);
            while (buf.len() as u64) < want {
                tape.read(self.src_side.fixed, self.src_side.block_len, stdl, &mut buf)
                    .map_err(|f| self.tape_failed(f, true, &p))?;
            }
            let (from, to) = (start + written, start + written + want);
            let (first, last) = (from / bs, to.div_ceil(bs));
            {
                // Only these bytes are written: a partial first or last block
                // keeps the rest of its contents.
                let x = self
                    .dst
                    .lock_exclusive(first, last - first, scsi::lu::Origin::Copy);
                x.write_cached(from, &buf[..want as usize])
                    .map_err(|e| self.denied(Error::Io(e), 6))?;
            }
            self.keep(&buf[..want as usize]);
            buf.drain(..want as usize);
            written += want;
            p.done = written / bs;
            self.rec.bytes.fetch_add(want, Ordering::Relaxed);
        }
        if !self.dst.write_cache_enabled() {
            self.dst.flush().map_err(|e| self.denied(Error::Io(e), 6))?;
        }
        if self.settle(cat, self.src_side.pad, self.dst_side.pad, buf.len())? {
            res.src = buf;
        }
        Ok(())
    }
}
