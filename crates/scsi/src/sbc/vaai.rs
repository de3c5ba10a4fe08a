//! The VAAI block primitives beyond plain writes: COMPARE AND WRITE (SBC-4 5.3),
//! ORWRITE (5.26), WRITE ATOMIC's alignment rules (5.48) and WRITE SAME (5.50, 5.51).
//! Each holds an exclusive extent over its blocks for the whole read-modify-write.

use super::{first_difference, MAX_ATOMIC_BYTES};
use crate::error::Error;
use crate::lu::{grow, LogicalUnit, Origin};
use crate::sense::Sense;

/// Bytes written per backstore call when WRITE SAME replicates a pattern.
const WRITE_SAME_CHUNK: usize = 1 << 20;

impl LogicalUnit {
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
    ) -> Result<(), Error> {
        let bs = self.block_size() as usize;
        let len = blocks as usize * bs;
        if edtl as usize != 2 * len || data_out.len() != 2 * len {
            return Err(Sense::invalid_cdb_field(13, None).into());
        }
        if blocks == 0 {
            return Ok(());
        }
        let (verify, write) = data_out.split_at(len);
        let off = lba * bs as u64;
        let x = self.lock_exclusive(lba, blocks.into(), Origin::Command);
        grow(scratch, len);
        x.read(off, &mut scratch[..len])?;
        if let Some(at) = first_difference(&scratch[..len], verify) {
            return Err(Error::Miscompare { offset: at as u64 });
        }
        x.write(off, write, fua)?;
        Ok(())
    }

    /// SBC-4 5.26: ORs the Data-Out into the blocks, atomically.
    pub(crate) fn or_write(
        &self,
        lba: u64,
        data: &[u8],
        fua: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let bs = u64::from(self.block_size());
        let off = lba * bs;
        let x = self.lock_exclusive(lba, data.len() as u64 / bs, Origin::Command);
        grow(scratch, data.len());
        let buf = &mut scratch[..data.len()];
        x.read(off, buf)?;
        for (b, d) in buf.iter_mut().zip(data) {
            *b |= d;
        }
        x.write(off, buf, fua)?;
        Ok(())
    }

    /// SBC-4 5.48: alignment and granularity as VPD B0 advertises them.
    pub(crate) fn check_atomic(&self, lba: u64, blocks: u32) -> Result<(), Error> {
        let unit = self.atomic_unit_blocks();
        if blocks == 0 {
            return Ok(());
        }
        if !lba.is_multiple_of(unit) {
            return Err(Sense::invalid_cdb_field(2, None).into());
        }
        if !u64::from(blocks).is_multiple_of(unit)
            || u64::from(blocks) * u64::from(self.block_size()) > MAX_ATOMIC_BYTES
        {
            return Err(Sense::invalid_cdb_field(12, None).into());
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
    ) -> Result<u64, Error> {
        let n = if blocks == 0 {
            match self.num_blocks().checked_sub(lba) {
                Some(n) => n,
                None => return Err(Error::LbaOutOfRange),
            }
        } else {
            u64::from(blocks)
        };
        if lba.checked_add(n).is_none_or(|end| end > self.num_blocks()) {
            return Err(Error::LbaOutOfRange);
        }
        if n > self.max_write_same_blocks() {
            return Err(Sense::invalid_cdb_field(len_byte, None).into());
        }
        Ok(n)
    }

    /// SBC-4 5.50 / 5.51. With UNMAP on a thin LU the blocks are deallocated and read
    /// back as zeros (LBPRZ) whatever the pattern, as LIO and CTL do and libiscsi's
    /// WriteSame*.UnmapUntilEnd requires; otherwise the pattern is written, zeros
    /// through the backstore's write-zeroes. With the write cache off the blocks are
    /// durable before the command completes.
    pub(crate) fn write_same(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
        pattern: Option<&[u8]>,
    ) -> Result<(), Error> {
        if blocks == 0 {
            return Ok(());
        }
        let bs = self.block_size() as usize;
        let zeros = pattern.is_none_or(|p| p.iter().all(|&b| b == 0));
        let off = lba * bs as u64;
        let len = blocks * bs as u64;
        let x = self.lock_exclusive(lba, blocks, Origin::Command);
        if unmap && self.thin() {
            x.discard(off, len)?;
        } else if zeros {
            x.write_zeroes(off, len)?;
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
            while done < len {
                let n = (len - done).min(chunk.len() as u64) as usize;
                // Durability comes from the one flush below.
                x.write_cached(off + done, &chunk[..n])?;
                done += n as u64;
            }
        }
        if !self.write_cache_enabled() {
            self.flush()?;
        }
        Ok(())
    }
}
