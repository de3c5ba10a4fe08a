//! Thin provisioning (SBC-4 4.7): UNMAP (5.31) and GET LBA STATUS (5.8).

use super::MAX_UNMAP_DESCRIPTORS;
use super::MAX_UNMAP_LBA_COUNT;
use crate::error::Error;
use crate::lu::{LogicalUnit, Origin};
use crate::params::UnmapList;
use crate::sense::Sense;

/// Most LBA status descriptors one GET LBA STATUS returns.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 512;

/// Provisioning status codes of an LBA status descriptor (SBC-4 Table 70).
const MAPPED: u8 = 0;
const DEALLOCATED: u8 = 1;

impl LogicalUnit {
    /// SBC-4 5.31: the UNMAP parameter list, validated whole before any block is
    /// deallocated.
    pub(crate) fn unmap(&self, params: &[u8]) -> Result<(), Error> {
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
                return Err(Error::LbaOutOfRange);
            }
            total += n;
            ranges.push((lba, n));
        }
        if total > u64::from(MAX_UNMAP_LBA_COUNT) {
            return Err(Sense::invalid_param_field(8, None).into());
        }
        let bs = u64::from(self.block_size());
        for (lba, n) in ranges.into_iter().filter(|r| r.1 > 0) {
            self.lock_exclusive(lba, n, Origin::Command)
                .discard(lba * bs, n * bs)?;
        }
        Ok(())
    }

    /// SBC-4 5.8: LBA status descriptors from `lba`, one per run of blocks with the
    /// same provisioning status, as many as the allocation length holds.
    pub(crate) fn lba_status(&self, lba: u64, alloc: u32) -> Result<Vec<u8>, Error> {
        if lba >= self.num_blocks() {
            return Err(Error::LbaOutOfRange);
        }
        let bs = u64::from(self.block_size());
        let room = (alloc as usize).saturating_sub(8) / 16;
        let want = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        let mut out = vec![0u8; 8];
        let mut at = lba;
        // One consistent view: no write lands in the range while it is described.
        let x = self.lock_shared(lba, self.num_blocks() - lba, Origin::Command);
        // Each query either adds a descriptor or extends the last one; bound both.
        let mut queries = 0;
        while at < self.num_blocks() && (out.len() - 8) / 16 < want && queries < 4 * want {
            queries += 1;
            let left = (self.num_blocks() - at) * bs;
            let (mapped, bytes) = if self.thin() {
                x.mapped(at * bs, left)?
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
