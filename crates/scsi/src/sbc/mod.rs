//! The direct-access block device type (SBC-3, SBC-4): geometry, READ/WRITE/VERIFY,
//! capacity, medium state, and ([`vaai`], [`provisioning`]) COMPARE AND WRITE,
//! ORWRITE, WRITE ATOMIC, WRITE SAME, UNMAP and GET LBA STATUS. Every access to the
//! medium goes through an [`Extent`] of the LU's one I/O path, so each command that
//! modifies blocks holds an exclusive range lock over them for its whole
//! read-modify-write and is atomic against every other write to those blocks.

use crate::cdb::Command;
use crate::error::Error;
use crate::lu::{fill, grow, Ctx, LogicalUnit, Nexus, Origin, Outcome, Snapshot};
use crate::sense::{Asc, Sense};

mod provisioning;
mod sanitize;
mod vaai;

pub(crate) use sanitize::SanitizeState;

/// Largest data transfer one command may ask for, in bytes. VPD B0 advertises it (in
/// blocks) and READ/WRITE/VERIFY enforce it.
pub const MAX_TRANSFER_BYTES: u64 = 8 * 1024 * 1024;
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

impl LogicalUnit {
    pub fn max_write_same_blocks(&self) -> u64 {
        MAX_WRITE_SAME_BLOCKS
    }

    pub fn atomic_unit_blocks(&self) -> u64 {
        (ATOMIC_UNIT_BYTES / u64::from(self.block_size())).max(1)
    }

    /// Block commands, after the gate and the SPC commands.
    pub(crate) fn dispatch_block(
        &self,
        nexus: &Nexus,
        snap: &Snapshot,
        cmd: Command,
        ctx: Ctx<'_>,
        data_out: &[u8],
        data_in: &mut Vec<u8>,
    ) -> Result<Outcome, Error> {
        let bs = self.block_size();
        let edtl = ctx.edtl;
        match cmd {
            Command::StartStopUnit {
                power_condition,
                loej,
                start,
                ..
            } => {
                // Power conditions other than START_VALID (0) change no medium state.
                if power_condition != 0 {
                    return Ok(Outcome::good(0));
                }
                if loej && self.medium_removal_prevented() {
                    return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED).into());
                }
                if self.removable() {
                    // LOEJ ejects (START 0) or loads (START 1) the medium. Without
                    // LOEJ there is nothing to spin: the medium stays accessible,
                    // as a removable drive spins up on access (what libiscsi's
                    // StartStopUnit.NoLoej expects).
                    if loej {
                        if !start {
                            self.flush().map_err(Error::from)?;
                        }
                        self.set_ejected(nexus.id, !start);
                    }
                    return Ok(Outcome::good(0));
                }
                if !start {
                    self.flush().map_err(Error::from)?;
                }
                self.set_stopped(!start);
                Ok(Outcome::good(0))
            }
            Command::Sanitize {
                immed,
                ause,
                action,
                len,
            } => self.sanitize(snap, immed, ause, action, len, ctx, data_out),
            Command::PreventAllow { prevent } => match prevent {
                0 | 1 => {
                    self.set_prevent(nexus.id, prevent == 1);
                    Ok(Outcome::good(0))
                }
                _ => Err(Sense::invalid_cdb_field(4, Some(1)).into()),
            },
            // PMI only asks where the next delay occurs; without one, the answer is the
            // capacity either way (SBC-3 5.16).
            Command::ReadCapacity10 { .. } => {
                Self::check_ready(snap)?;
                let last = self.num_blocks().saturating_sub(1);
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&u32::try_from(last).unwrap_or(u32::MAX).to_be_bytes());
                b[4..].copy_from_slice(&bs.to_be_bytes());
                Ok(fill(data_in, &b, 8))
            }
            Command::ReadCapacity16 { alloc } => {
                Self::check_ready(snap)?;
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&self.num_blocks().saturating_sub(1).to_be_bytes());
                b[8..12].copy_from_slice(&bs.to_be_bytes());
                b[13] = self.lbppbe();
                // LBPME and LBPRZ (SBC-4 5.20.2): deallocated blocks read as zeros.
                if self.thin() {
                    b[14] = 0x80 | 0x40;
                }
                Ok(fill(data_in, &b, alloc))
            }
            Command::Read {
                lba,
                blocks,
                len_byte,
                ..
            } => {
                let len = self.read_blocks(snap, lba, blocks, len_byte, data_in)?;
                Ok(Outcome::good(len))
            }
            Command::Write {
                lba,
                blocks,
                fua,
                len_byte,
            } => {
                Self::check_ready(snap)?;
                self.check_transfer(blocks, len_byte)?;
                self.check_range(lba, blocks)?;
                self.check_writable(snap)?;
                let data = self.received_blocks(data_out, blocks)?;
                self.write_blocks(lba, data, fua)?;
                Ok(Outcome::good(0))
            }
            Command::WriteVerify {
                lba,
                blocks,
                len_byte,
                ..
            } => {
                Self::check_ready(snap)?;
                self.check_transfer(blocks, len_byte)?;
                self.check_range(lba, blocks)?;
                self.check_writable(snap)?;
                let data = self.received_blocks(data_out, blocks)?;
                let off = lba * u64::from(bs);
                let x =
                    self.lock_exclusive(lba, (data.len() / bs as usize) as u64, Origin::Command);
                x.write(off, data, true)?;
                // Verify: read the blocks back from the medium and compare.
                grow(data_in, data.len());
                x.read(off, &mut data_in[..data.len()])?;
                if let Some(at) = first_difference(&data_in[..data.len()], data) {
                    return Err(Error::Miscompare { offset: at as u64 });
                }
                Ok(Outcome::good(0))
            }
            Command::Verify {
                lba,
                blocks,
                bytchk,
                len_byte,
            } => {
                let len = self.read_blocks(snap, lba, blocks, len_byte, data_in)?;
                let medium = &data_in[..len];
                match bytchk {
                    0 => {}
                    1 => {
                        let Some(expected) = data_out.get(..len) else {
                            return Err(Sense::invalid_cdb_field(len_byte, None).into());
                        };
                        if let Some(at) = first_difference(medium, expected) {
                            return Err(Error::Miscompare { offset: at as u64 });
                        }
                    }
                    _ => {
                        let Some(pattern) = data_out.get(..bs as usize).filter(|_| blocks > 0)
                        else {
                            return if blocks == 0 {
                                Ok(Outcome::good(0))
                            } else {
                                Err(Sense::invalid_cdb_field(len_byte, None).into())
                            };
                        };
                        for (i, block) in medium.chunks(bs as usize).enumerate() {
                            if let Some(at) = first_difference(block, pattern) {
                                let offset = (i * bs as usize + at) as u64;
                                return Err(Error::Miscompare { offset });
                            }
                        }
                    }
                }
                Ok(Outcome::good(0))
            }
            Command::PreFetch { lba, blocks, .. } => {
                Self::check_ready(snap)?;
                self.check_range(lba, blocks)?;
                Ok(Outcome::good(0))
            }
            Command::SynchronizeCache { lba, blocks, .. } => {
                Self::check_ready(snap)?;
                self.check_range(lba, blocks)?;
                self.flush()?;
                Ok(Outcome::good(0))
            }
            Command::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                alloc,
            } => {
                // No defect lists are kept: an empty list in the requested format.
                let flags = (u8::from(plist) << 4) | (u8::from(glist) << 3) | format;
                let b: Vec<u8> = if twelve {
                    vec![0, flags, 0, 0, 0, 0, 0, 0]
                } else {
                    vec![0, flags, 0, 0]
                };
                Ok(fill(data_in, &b, alloc))
            }
            Command::CompareAndWrite { lba, blocks, fua } => {
                Self::check_ready(snap)?;
                self.check_range(lba, blocks)?;
                self.check_writable(snap)?;
                self.compare_and_write(lba, blocks, fua, edtl, data_out, data_in)?;
                Ok(Outcome::good(0))
            }
            Command::OrWrite { lba, blocks, fua } | Command::WriteAtomic { lba, blocks, fua } => {
                let atomic = matches!(cmd, Command::WriteAtomic { .. });
                Self::check_ready(snap)?;
                // TRANSFER LENGTH: ORWRITE(16) bytes 10-13, WRITE ATOMIC(16) 12-13.
                self.check_transfer(blocks, if atomic { 12 } else { 10 })?;
                self.check_range(lba, blocks)?;
                if atomic {
                    self.check_atomic(lba, blocks)?;
                }
                self.check_writable(snap)?;
                let data = self.received_blocks(data_out, blocks)?;
                if atomic {
                    self.write_blocks(lba, data, fua)?;
                } else {
                    self.or_write(lba, data, fua, data_in)?;
                }
                Ok(Outcome::good(0))
            }
            Command::WriteSame {
                lba,
                blocks,
                unmap,
                anchor,
                ndob,
                len_byte,
            } => {
                Self::check_ready(snap)?;
                // ANC_SUP is 0 in VPD B2: anchored blocks are not offered.
                if anchor {
                    return Err(Sense::invalid_cdb_field(1, Some(4)).into());
                }
                let n = self.write_same_extent(lba, blocks, len_byte)?;
                self.check_writable(snap)?;
                // One block of Data-Out unless NDOB. With UNMAP on a thin LU the
                // pattern is not used, and no Data-Out at all is accepted too (as
                // LIO does; libiscsi's WriteSame*.UnmapUnaligned sends none).
                let pattern = if ndob || (unmap && self.thin() && edtl == 0) {
                    None
                } else {
                    if edtl != bs || data_out.len() != bs as usize {
                        return Err(Sense::invalid_cdb_field(len_byte, None).into());
                    }
                    Some(data_out)
                };
                self.write_same(lba, n, unmap, pattern)?;
                Ok(Outcome::good(0))
            }
            Command::Unmap { anchor, len } => {
                // Without thin provisioning UNMAP is not supported (LBPU 0).
                if !self.thin() {
                    return Err(Sense::invalid_opcode().into());
                }
                Self::check_ready(snap)?;
                if anchor {
                    return Err(Sense::invalid_cdb_field(1, Some(0)).into());
                }
                self.check_writable(snap)?;
                let Some(params) = data_out.get(..len as usize) else {
                    return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
                };
                self.unmap(params)?;
                Ok(Outcome::good(0))
            }
            Command::GetLbaStatus { lba, alloc } => {
                Self::check_ready(snap)?;
                let bytes = self.lba_status(lba, alloc)?;
                Ok(fill(data_in, &bytes, alloc))
            }
            // Not a block command: the SPC dispatcher answered everything else.
            _ => Err(Sense::invalid_opcode().into()),
        }
    }

    /// A READ answered without blocking, for the transport to run inline instead of
    /// handing the command to a worker thread: `None` when it cannot be (not a
    /// read, larger than `max_bytes`, its blocks locked by a writer, or data not in
    /// memory); the caller then runs [`LogicalUnit::execute`] as usual. Checks and
    /// their answers are exactly those of `execute`.
    pub fn try_read_nowait(
        &self,
        nexus: &Nexus,
        cmd: &Result<crate::cdb::Parsed, Sense>,
        max_bytes: usize,
        data_in: &mut Vec<u8>,
    ) -> Option<Outcome> {
        match self.read_quick(nexus, cmd, max_bytes)? {
            Err(early) => Some(early),
            Ok((x, off, len)) => {
                grow(data_in, len);
                match x.read_nowait(off, &mut data_in[..len]) {
                    Ok(true) => Some(Outcome::good(len)),
                    Ok(false) | Err(_) => None,
                }
            }
        }
    }

    /// A READ answered with the store's own memory, without a copy or a wait
    /// (RAM LUs: [`backstore::Backstore::read_shared`]): `Some((outcome, data))`
    /// with the data when GOOD, or with no data for a CHECK CONDITION; `None` when
    /// the LU cannot (the caller tries [`LogicalUnit::try_read_nowait`] or
    /// `execute`). Checks and their answers are exactly those of `execute`.
    pub fn try_read_shared(
        &self,
        nexus: &Nexus,
        cmd: &Result<crate::cdb::Parsed, Sense>,
        max_bytes: usize,
    ) -> Option<(Outcome, Vec<backstore::SharedBytes>)> {
        match self.read_quick(nexus, cmd, max_bytes)? {
            Err(early) => Some((early, Vec::new())),
            Ok((x, off, len)) => {
                let data = x.read_shared(off, len)?;
                Some((Outcome::good(len), data))
            }
        }
    }

    /// The checks of a READ done on the transport's thread: `None` when it is not
    /// a READ or longer than `max_bytes`, or its blocks are locked by a writer;
    /// `Some(Err(answer))` when the checks answer it; else the locked extent and
    /// the byte range to read.
    fn read_quick(
        &self,
        nexus: &Nexus,
        cmd: &Result<crate::cdb::Parsed, Sense>,
        max_bytes: usize,
    ) -> Option<Result<(crate::lu::Extent<'_>, u64, usize), Outcome>> {
        let Ok(crate::cdb::Parsed {
            command:
                Command::Read {
                    lba,
                    blocks,
                    len_byte,
                    ..
                },
            ..
        }) = *cmd
        else {
            return None;
        };
        let (off, len) = self.byte_range(lba, blocks.min(1 << 24));
        if len > max_bytes {
            return None;
        }
        let snap = match self.gate(nexus, cmd) {
            Err(early) => return Some(Err(early)),
            Ok(snap) => snap,
        };
        let checked = Self::check_ready(&snap)
            .and_then(|()| self.check_transfer(blocks, len_byte))
            .and_then(|()| self.check_range(lba, blocks));
        if let Err(e) = checked {
            return Some(Err(self.answer(&snap, e)));
        }
        let x = self.try_lock_shared(lba, blocks.into())?;
        Some(Ok((x, off, len)))
    }

    /// A WRITE (without FUA, write cache on) done without blocking, like
    /// [`LogicalUnit::try_read_nowait`]: `None` sends the command to `execute`.
    pub fn try_write_nowait(
        &self,
        nexus: &Nexus,
        cmd: &Result<crate::cdb::Parsed, Sense>,
        data_out: &[u8],
        max_bytes: usize,
    ) -> Option<Outcome> {
        let Ok(crate::cdb::Parsed {
            command:
                Command::Write {
                    lba,
                    blocks,
                    fua,
                    len_byte,
                },
            ..
        }) = *cmd
        else {
            return None;
        };
        if data_out.len() > max_bytes
            || fua
            || !self.write_cache_enabled()
            || !self.backstore().writes_nowait()
        {
            return None;
        }
        let snap = match self.gate(nexus, cmd) {
            Err(early) => return Some(early),
            Ok(snap) => snap,
        };
        let checked = Self::check_ready(&snap)
            .and_then(|()| self.check_transfer(blocks, len_byte))
            .and_then(|()| self.check_range(lba, blocks))
            .and_then(|()| self.check_writable(&snap))
            .and_then(|()| self.received_blocks(data_out, blocks));
        let data = match checked {
            Ok(d) => d,
            Err(e) => return Some(self.answer(&snap, e)),
        };
        if data.is_empty() {
            return Some(Outcome::good(0));
        }
        let bs = u64::from(self.block_size());
        let x = self.try_lock_exclusive(lba, data.len() as u64 / bs)?;
        match x.write_nowait(lba * bs, data) {
            Ok(true) => Some(Outcome::good(0)),
            Ok(false) | Err(_) => None,
        }
    }

    /// READ and VERIFY's medium access: checks, then the blocks into `data_in`;
    /// returns their length.
    fn read_blocks(
        &self,
        snap: &Snapshot,
        lba: u64,
        blocks: u32,
        len_byte: u16,
        data_in: &mut Vec<u8>,
    ) -> Result<usize, Error> {
        Self::check_ready(snap)?;
        self.check_transfer(blocks, len_byte)?;
        self.check_range(lba, blocks)?;
        let (off, len) = self.byte_range(lba, blocks);
        grow(data_in, len);
        self.lock_shared(lba, blocks.into(), Origin::Command)
            .read(off, &mut data_in[..len])?;
        Ok(len)
    }

    /// Checks `[lba, lba+blocks)` lies on the medium.
    fn check_range(&self, lba: u64, blocks: u32) -> Result<(), Error> {
        if lba
            .checked_add(u64::from(blocks))
            .is_none_or(|end| end > self.num_blocks())
        {
            return Err(Error::LbaOutOfRange);
        }
        Ok(())
    }

    /// Checks the transfer against MAXIMUM TRANSFER LENGTH; `len_byte` is where the
    /// CDB's TRANSFER LENGTH starts.
    fn check_transfer(&self, blocks: u32, len_byte: u16) -> Result<(), Error> {
        if u64::from(blocks) * u64::from(self.block_size()) > MAX_TRANSFER_BYTES {
            return Err(Sense::invalid_cdb_field(len_byte, None).into());
        }
        Ok(())
    }

    fn byte_range(&self, lba: u64, blocks: u32) -> (u64, usize) {
        let bs = u64::from(self.block_size());
        (lba * bs, (u64::from(blocks) * bs) as usize)
    }

    /// Writes whole blocks through the I/O path.
    fn write_blocks(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let bs = u64::from(self.block_size());
        self.lock_exclusive(lba, data.len() as u64 / bs, Origin::Command)
            .write(lba * bs, data, fua)?;
        Ok(())
    }

    /// The whole blocks of a write's data that actually arrived. A short Expected
    /// Data Transfer Length writes fewer blocks (the residual reports the rest); a
    /// length that splits a block is INVALID FIELD IN INFORMATION UNIT (SAM-5: the
    /// transport's information unit, not the CDB, is at fault).
    fn received_blocks<'d>(&self, data_out: &'d [u8], blocks: u32) -> Result<&'d [u8], Error> {
        let bs = self.block_size() as usize;
        let want = (u64::from(blocks) * bs as u64) as usize;
        let got = data_out.len().min(want);
        if !got.is_multiple_of(bs) {
            return Err(Sense::illegal(Asc::INVALID_FIELD_IN_INFORMATION_UNIT).into());
        }
        Ok(&data_out[..got])
    }
}

pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}
