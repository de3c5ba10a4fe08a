//! SBC-4 commands beyond plain READ/WRITE: COMPARE AND WRITE, ORWRITE, WRITE ATOMIC,
//! WRITE SAME, UNMAP and GET LBA STATUS. Every command that modifies blocks holds an
//! exclusive range lock over them for its whole read-modify-write, so each is atomic
//! against every other write to overlapping blocks from any session.

use crate::lu::{first_difference, grow, io_sense, miscompare, LogicalUnit, MAX_TRANSFER_BYTES};
use crate::params::UnmapList;
use crate::sense::Sense;

/// Largest COMPARE AND WRITE, in blocks (VPD B0 MAXIMUM COMPARE AND WRITE LENGTH).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u32 = 255;
/// Largest WRITE SAME, in blocks (VPD B0 MAXIMUM WRITE SAME LENGTH): what WRITE
/// SAME(10)'s 16-bit field can name, which bounds one command's work to 32 MiB on
/// 512-byte blocks and 256 MiB on 4096-byte blocks.
pub const MAX_WRITE_SAME_BLOCKS: u64 = 0xffff;
/// Most block descriptors in one UNMAP (VPD B0 MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT).
pub const MAX_UNMAP_DESCRIPTORS: u32 = 1024;
/// MAXIMUM UNMAP LBA COUNT: FFFFFFFFh, no limit beyond each descriptor's 32-bit count;
/// deallocation is a metadata operation on every backstore.
pub const MAX_UNMAP_LBA_COUNT: u32 = u32::MAX;
/// WRITE ATOMIC alignment and granularity, in bytes: one page of the host's page cache
/// and of the RAM store, so an atomic write never shares a page with another write.
pub const ATOMIC_UNIT_BYTES: u64 = 4096;
/// Largest WRITE ATOMIC, in bytes: the general transfer limit.
pub const MAX_ATOMIC_BYTES: u64 = MAX_TRANSFER_BYTES;
/// Bytes written per backstore call when WRITE SAME replicates a pattern.
const WRITE_SAME_CHUNK: usize = 1 << 20;
/// Most LBA status descriptors one GET LBA STATUS returns.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 512;

/// Provisioning status codes of an LBA status descriptor (SBC-4 Table 70).
const MAPPED: u8 = 0;
const DEALLOCATED: u8 = 1;

impl LogicalUnit {
    pub fn max_write_same_blocks(&self) -> u64 {
        MAX_WRITE_SAME_BLOCKS
    }

    pub fn atomic_unit_blocks(&self) -> u64 {
        (ATOMIC_UNIT_BYTES / u64::from(self.block_size())).max(1)
    }

    /// SBC-4 5.3. The Data-Out length must be exactly twice the blocks: a partial
    /// compare or write has no meaning, so a mismatch is refused before any I/O.
    pub(crate) fn compare_and_write(
        &self,
        lba: u64,
        blocks: u32,
        fua: bool,
        edtl: u32,
        data_out: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), Sense> {
        let bs = self.block_size() as usize;
        let len = blocks as usize * bs;
        if edtl as usize != 2 * len || data_out.len() != 2 * len {
            return Err(Sense::invalid_cdb_field(13, None));
        }
        if blocks == 0 {
            return Ok(());
        }
        let (verify, write) = data_out.split_at(len);
        let off = lba * bs as u64;
        let _g = self.locks().lock(lba, blocks.into(), true);
        grow(scratch, len);
        self.backstore()
            .read_at(&mut scratch[..len], off)
            .map_err(|e| io_sense(&e, false))?;
        if let Some(at) = first_difference(&scratch[..len], verify) {
            return Err(miscompare(at));
        }
        self.backstore()
            .write_at(write, off, fua)
            .map_err(|e| io_sense(&e, true))
    }

    /// SBC-4 5.26: ORs the Data-Out into the blocks, atomically.
    pub(crate) fn or_write(
        &self,
        lba: u64,
        data: &[u8],
        fua: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<(), Sense> {
        if data.is_empty() {
            return Ok(());
        }
        let bs = u64::from(self.block_size());
        let off = lba * bs;
        let _g = self.locks().lock(lba, data.len() as u64 / bs, true);
        grow(scratch, data.len());
        let buf = &mut scratch[..data.len()];
        self.backstore()
            .read_at(buf, off)
            .map_err(|e| io_sense(&e, false))?;
        for (b, d) in buf.iter_mut().zip(data) {
            *b |= d;
        }
        self.backstore()
            .write_at(buf, off, fua)
            .map_err(|e| io_sense(&e, true))
    }

    /// SBC-4 5.48: alignment and granularity as VPD B0 advertises them.
    pub(crate) fn check_atomic(&self, lba: u64, blocks: u32) -> Result<(), Sense> {
        let unit = self.atomic_unit_blocks();
        if blocks == 0 {
            return Ok(());
        }
        if !lba.is_multiple_of(unit) {
            return Err(Sense::invalid_cdb_field(2, None));
        }
        if !u64::from(blocks).is_multiple_of(unit)
            || u64::from(blocks) * u64::from(self.block_size()) > MAX_ATOMIC_BYTES
        {
            return Err(Sense::invalid_cdb_field(12, None));
        }
        Ok(())
    }

    /// Resolves WRITE SAME's block count (0 = to the end of the medium) and checks it
    /// against MAXIMUM WRITE SAME LENGTH and the capacity.
    pub(crate) fn write_same_extent(
        &self,
        lba: u64,
        blocks: u32,
        len_byte: u16,
    ) -> Result<u64, Sense> {
        let n = if blocks == 0 {
            match self.num_blocks().checked_sub(lba) {
                Some(n) => n,
                None => return Err(Sense::lba_out_of_range()),
            }
        } else {
            u64::from(blocks)
        };
        if lba.checked_add(n).is_none_or(|end| end > self.num_blocks()) {
            return Err(Sense::lba_out_of_range());
        }
        if n > self.max_write_same_blocks() {
            return Err(Sense::invalid_cdb_field(len_byte, None));
        }
        Ok(n)
    }

    /// SBC-4 5.50 / 5.51. With UNMAP on a thin LU the blocks are deallocated and read
    /// back as zeros (LBPRZ) whatever the pattern, as LIO and CTL do and libiscsi's
    /// WriteSame*.UnmapUntilEnd requires; otherwise the pattern is written, zeros
    /// through the backstore's write-zeroes.
    pub(crate) fn write_same(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
        pattern: Option<&[u8]>,
        fua: bool,
    ) -> Result<(), Sense> {
        if blocks == 0 {
            return Ok(());
        }
        let bs = self.block_size() as usize;
        let zeros = pattern.is_none_or(|p| p.iter().all(|&b| b == 0));
        let off = lba * bs as u64;
        let len = blocks * bs as u64;
        let _g = self.locks().lock(lba, blocks, true);
        let store = self.backstore();
        let r = if unmap && self.thin() {
            store.discard(off, len)
        } else if zeros {
            store.write_zeroes(off, len)
        } else {
            let pattern = pattern.unwrap_or_default();
            let per_chunk = (WRITE_SAME_CHUNK / bs).max(1).min(blocks as usize);
            let chunk: Vec<u8> = pattern
                .iter()
                .copied()
                .cycle()
                .take(per_chunk * bs)
                .collect();
            let mut done = 0u64;
            let mut r = Ok(());
            while done < len && r.is_ok() {
                let n = (len - done).min(chunk.len() as u64) as usize;
                r = store.write_at(&chunk[..n], off + done, false);
                done += n as u64;
            }
            r
        };
        r.map_err(|e| io_sense(&e, true))?;
        if fua {
            store.flush().map_err(|e| io_sense(&e, true))?;
        }
        Ok(())
    }

    /// SBC-4 5.31: the UNMAP parameter list, validated whole before any block is
    /// deallocated.
    pub(crate) fn unmap(&self, params: &[u8]) -> Result<(), Sense> {
        if params.is_empty() {
            return Ok(());
        }
        let list = UnmapList::parse(params, MAX_UNMAP_DESCRIPTORS as usize)?;
        let mut ranges = Vec::with_capacity(list.ranges.len());
        let mut total = 0u64;
        for r in list.ranges {
            let (lba, n) = (r.lba, u64::from(r.blocks));
            if lba.checked_add(n).is_none_or(|end| end > self.num_blocks())
                || (n == 0 && lba > self.num_blocks())
            {
                return Err(Sense::lba_out_of_range());
            }
            total += n;
            ranges.push((lba, n));
        }
        if total > u64::from(MAX_UNMAP_LBA_COUNT) {
            return Err(Sense::invalid_param_field(8, None));
        }
        let bs = u64::from(self.block_size());
        for (lba, n) in ranges.into_iter().filter(|r| r.1 > 0) {
            let _g = self.locks().lock(lba, n, true);
            self.backstore()
                .discard(lba * bs, n * bs)
                .map_err(|e| io_sense(&e, true))?;
        }
        Ok(())
    }

    /// SBC-4 5.8: LBA status descriptors from `lba`, one per run of blocks with the
    /// same provisioning status, as many as the allocation length holds.
    pub(crate) fn lba_status(&self, lba: u64, alloc: u32) -> Result<Vec<u8>, Sense> {
        if lba >= self.num_blocks() {
            return Err(Sense::lba_out_of_range());
        }
        let bs = u64::from(self.block_size());
        let room = (alloc as usize).saturating_sub(8) / 16;
        let want = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        let mut out = vec![0u8; 8];
        let mut at = lba;
        // Each query either adds a descriptor or extends the last one; bound both.
        let mut queries = 0;
        while at < self.num_blocks() && (out.len() - 8) / 16 < want && queries < 4 * want {
            queries += 1;
            let left = (self.num_blocks() - at) * bs;
            let (mapped, bytes) = if self.thin() {
                self.backstore()
                    .provisioning(at * bs, left)
                    .map_err(|e| io_sense(&e, false))?
            } else {
                (true, left)
            };
            // A block partly allocated counts as mapped: round a mapped run up and a
            // deallocated run down to whole blocks.
            let mut n = if mapped {
                bytes.div_ceil(bs)
            } else {
                bytes / bs
            };
            if n == 0 {
                n = 1;
            }
            n = n.min(self.num_blocks() - at).min(u64::from(u32::MAX));
            let status = if mapped || bytes < bs {
                MAPPED
            } else {
                DEALLOCATED
            };
            // Merge with the previous descriptor when the status did not change.
            let prev = out.len().checked_sub(16).filter(|&p| p >= 8);
            match prev {
                Some(p)
                    if out[p + 12] == status && {
                        let pn =
                            u32::from_be_bytes(out[p + 8..p + 12].try_into().unwrap_or_default());
                        u64::from(pn) + n <= u64::from(u32::MAX)
                    } =>
                {
                    let pn = u32::from_be_bytes(out[p + 8..p + 12].try_into().unwrap_or_default());
                    out[p + 8..p + 12].copy_from_slice(&(pn + n as u32).to_be_bytes());
                }
                _ => {
                    let mut d = [0u8; 16];
                    d[..8].copy_from_slice(&at.to_be_bytes());
                    d[8..12].copy_from_slice(&(n as u32).to_be_bytes());
                    d[12] = status;
                    out.extend_from_slice(&d);
                }
            }
            at += n;
        }
        let param_len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&param_len.to_be_bytes());
        Ok(out)
    }
}
