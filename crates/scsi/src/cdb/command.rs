//! The typed command: what the parser makes of a CDB whose table row and usage
//! mask already passed, and what execution reads instead of CDB bytes.

use codec::be;

use super::{DeviceType, Opcode, OpcodeInfo, Parsed};
use crate::sense::Sense;

/// A typed, validated command. Execution never re-reads the CDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    TestUnitReady,
    RequestSense {
        desc: bool,
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        len: u32,
    },
    Reserve,
    Release,
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        loej: bool,
        start: bool,
    },
    PreventAllow {
        prevent: u8,
    },
    /// SSC READ BLOCK LIMITS (05h); `mloi` asks for the 20-byte form.
    ReadBlockLimits {
        mloi: bool,
    },
    /// SSC READ(6): `len` blocks with FIXED, else bytes.
    TapeRead {
        fixed: bool,
        sili: bool,
        len: u32,
    },
    /// SSC WRITE(6): `len` blocks with FIXED, else bytes.
    TapeWrite {
        fixed: bool,
        len: u32,
    },
    WriteFilemarks {
        immed: bool,
        count: u32,
    },
    /// SPACE(6)/(16): `code` 0 blocks, 1 filemarks, 3 end of data; signed count.
    Space {
        code: u8,
        count: i64,
    },
    Rewind {
        immed: bool,
    },
    /// LOCATE(10)/(16) to a logical object identifier (BT or not: one partition,
    /// logical objects are the block addresses).
    Locate {
        immed: bool,
        cp: bool,
        partition: u8,
        object: u64,
    },
    /// READ POSITION: service action 00h/01h short, 06h long, 08h extended.
    ReadPosition {
        sa: u8,
        alloc: u32,
    },
    LoadUnload {
        immed: bool,
        hold: bool,
        eot: bool,
        reten: bool,
        load: bool,
    },
    Erase {
        immed: bool,
        long: bool,
    },
    ReportDensity {
        media: bool,
        medium_type: bool,
        alloc: u32,
    },
    /// SANITIZE (SBC-4 5.30): `action` 01h OVERWRITE, 02h BLOCK ERASE, 1Fh EXIT
    /// FAILURE MODE; `len` is the parameter list length.
    Sanitize {
        immed: bool,
        ause: bool,
        action: u8,
        len: u32,
    },
    ReadCapacity10 {
        lba: u32,
        pmi: bool,
    },
    ReadCapacity16 {
        alloc: u32,
    },
    /// READ(6/10/12/16). `len_byte`: the CDB byte where TRANSFER LENGTH starts, for
    /// field pointers.
    Read {
        lba: u64,
        blocks: u32,
        fua: bool,
        len_byte: u16,
    },
    Write {
        lba: u64,
        blocks: u32,
        fua: bool,
        len_byte: u16,
    },
    WriteVerify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
        len_byte: u16,
    },
    Verify {
        lba: u64,
        blocks: u32,
        bytchk: u8,
        len_byte: u16,
    },
    PreFetch {
        lba: u64,
        blocks: u32,
        immed: bool,
    },
    SynchronizeCache {
        lba: u64,
        blocks: u32,
        immed: bool,
    },
    ReadDefectData {
        twelve: bool,
        plist: bool,
        glist: bool,
        format: u8,
        alloc: u32,
    },
    ReportLuns {
        select: u8,
        alloc: u32,
    },
    ReportOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        sa: u16,
        alloc: u32,
    },
    ReportTmfs {
        repd: bool,
        alloc: u32,
    },
    /// COMPARE AND WRITE: `blocks` to compare, then the same number to write.
    CompareAndWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// WRITE SAME(10)/(16); `blocks` 0 means "to the last LBA".
    WriteSame {
        lba: u64,
        blocks: u32,
        unmap: bool,
        anchor: bool,
        ndob: bool,
        /// Which CDB byte holds NUMBER OF LOGICAL BLOCKS (for field pointers).
        len_byte: u16,
    },
    Unmap {
        anchor: bool,
        len: u32,
    },
    GetLbaStatus {
        lba: u64,
        alloc: u32,
    },
    OrWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    WriteAtomic {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    PersistentReserveIn {
        sa: u8,
        alloc: u32,
    },
    ExtendedCopy {
        len: u32,
    },
    ExtendedCopyLid4 {
        len: u32,
    },
    PopulateToken {
        list_id: u32,
        len: u32,
    },
    WriteUsingToken {
        list_id: u32,
        len: u32,
    },
    CopyOperationAbort {
        list_id: u32,
    },
    ReceiveCopyResults {
        request: crate::tpc::ReceiveCopy,
        alloc: u32,
    },
    PersistentReserveOut {
        sa: u8,
        scope: u8,
        kind: u8,
        len: u32,
    },
}

impl Command {
    /// Parses a direct-access block device CDB: unknown opcodes are INVALID COMMAND
    /// OPERATION CODE, unknown service actions and reserved bits INVALID FIELD IN CDB
    /// with a field pointer.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Parsed::parse(DeviceType::Block, cdb).map(|p| p.command)
    }

    /// The typed fields of a CDB whose row (and usage mask) was already checked.
    pub(super) fn from_row(info: &OpcodeInfo, cdb: &[u8]) -> Result<Self, Sense> {
        let (opcode, sa) = (Opcode(info.opcode), cdb[1] & 0x1f);
        let c = cdb;
        Ok(match opcode {
            Opcode::TEST_UNIT_READY => Command::TestUnitReady,
            Opcode::REQUEST_SENSE => Command::RequestSense {
                desc: c[1] & 1 != 0,
                alloc: c[4].into(),
            },
            Opcode::READ_6 | Opcode::WRITE_6 => {
                let lba = u64::from(be::u24(c, 1) & 0x1f_ffff);
                // A TRANSFER LENGTH of 0 means 256 blocks for the 6-byte forms (SBC-3 5.7).
                let blocks = if c[4] == 0 { 256 } else { u32::from(c[4]) };
                if opcode == Opcode::READ_6 {
                    Command::Read {
                        lba,
                        blocks,
                        fua: false,
                        len_byte: 4,
                    }
                } else {
                    Command::Write {
                        lba,
                        blocks,
                        fua: false,
                        len_byte: 4,
                    }
                }
            }
            Opcode::INQUIRY => {
                let evpd = c[1] & 1 != 0;
                if !evpd && c[2] != 0 {
                    return Err(Sense::invalid_cdb_field(2, None));
                }
                Command::Inquiry {
                    evpd,
                    page: c[2],
                    alloc: be::u16(c, 3).into(),
                }
            }
            Opcode::MODE_SELECT_6 => Command::ModeSelect {
                ten: false,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 1 != 0,
                len: c[4].into(),
            },
            Opcode::MODE_SELECT_10 => Command::ModeSelect {
                ten: true,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 1 != 0,
                len: be::u16(c, 7).into(),
            },
            Opcode::RESERVE_6 | Opcode::RESERVE_10 => Command::Reserve,
            Opcode::RELEASE_6 | Opcode::RELEASE_10 => Command::Release,
            Opcode::MODE_SENSE_6 => Command::ModeSense {
                ten: false,
                dbd: c[1] & 0x08 != 0,
                llbaa: false,
                pc: c[2] >> 6,
                page: c[2] & 0x3f,
                subpage: c[3],
                alloc: c[4].into(),
            },
            Opcode::MODE_SENSE_10 => Command::ModeSense {
                ten: true,
                dbd: c[1] & 0x08 != 0,
                llbaa: c[1] & 0x10 != 0,
                pc: c[2] >> 6,
                page: c[2] & 0x3f,
                subpage: c[3],
                alloc: be::u16(c, 7).into(),
            },
            Opcode::START_STOP_UNIT => Command::StartStopUnit {
                immed: c[1] & 1 != 0,
                power_condition: c[4] >> 4,
                loej: c[4] & 0x02 != 0,
                start: c[4] & 0x01 != 0,
            },
            Opcode::PREVENT_ALLOW_MEDIUM_REMOVAL => Command::PreventAllow { prevent: c[4] & 3 },
            Opcode::READ_CAPACITY_10 => {
                let lba = be::u32(c, 2);
                let pmi = c[8] & 1 != 0;
                // SBC-3 5.16: with PMI clear the LBA field shall be zero.
                if !pmi && lba != 0 {
                    return Err(Sense::invalid_cdb_field(2, None));
                }
                Command::ReadCapacity10 { lba, pmi }
            }
            Opcode::READ_10
            | Opcode::WRITE_10
            | Opcode::WRITE_AND_VERIFY_10
            | Opcode::VERIFY_10
            | Opcode::PRE_FETCH_10
            | Opcode::SYNCHRONIZE_CACHE_10 => rw(
                opcode,
                u64::from(be::u32(c, 2)),
                u32::from(be::u16(c, 7)),
                7,
                c[1],
            )?,
            Opcode::READ_12
            | Opcode::WRITE_12
            | Opcode::WRITE_AND_VERIFY_12
            | Opcode::VERIFY_12 => rw(opcode, u64::from(be::u32(c, 2)), be::u32(c, 6), 6, c[1])?,
            Opcode::READ_16
            | Opcode::WRITE_16
            | Opcode::WRITE_AND_VERIFY_16
            | Opcode::VERIFY_16
            | Opcode::PRE_FETCH_16
            | Opcode::SYNCHRONIZE_CACHE_16 => rw(opcode, be::u64(c, 2), be::u32(c, 10), 10, c[1])?,
            Opcode::READ_DEFECT_DATA_10 => Command::ReadDefectData {
                twelve: false,
                plist: c[2] & 0x10 != 0,
                glist: c[2] & 0x08 != 0,
                format: c[2] & 7,
                alloc: be::u16(c, 7).into(),
            },
            Opcode::READ_DEFECT_DATA_12 => Command::ReadDefectData {
                twelve: true,
                plist: c[1] & 0x10 != 0,
                glist: c[1] & 0x08 != 0,
                format: c[1] & 7,
                alloc: be::u32(c, 6),
            },
            Opcode::SERVICE_ACTION_IN_16 if sa == 0x10 => Command::ReadCapacity16 {
                alloc: be::u32(c, 10),
            },
            Opcode::REPORT_LUNS => Command::ReportLuns {
                select: c[2],
                alloc: be::u32(c, 6),
            },
            Opcode::MAINTENANCE_IN if sa == 0x0c => {
                let options = c[2] & 7;
                if options > 3 {
                    return Err(Sense::invalid_cdb_field(2, Some(2)));
                }
                Command::ReportOpcodes {
                    rctd: c[2] & 0x80 != 0,
                    options,
                    opcode: c[3],
                    sa: be::u16(c, 4),
                    alloc: be::u32(c, 6),
                }
            }
            Opcode::MAINTENANCE_IN => Command::ReportTmfs {
                repd: c[2] & 0x80 != 0,
                alloc: be::u32(c, 6),
            },
            Opcode::COMPARE_AND_WRITE => Command::CompareAndWrite {
                lba: be::u64(c, 2),
                blocks: c[13].into(),
                fua: c[1] & 0x08 != 0,
            },
            Opcode::WRITE_SAME_10 | Opcode::WRITE_SAME_16 => {
                let sixteen = opcode == Opcode::WRITE_SAME_16;
                let unmap = c[1] & 0x08 != 0;
                let anchor = c[1] & 0x10 != 0;
                let ndob = sixteen && c[1] & 0x01 != 0;
                // SBC-4 5.50: ANCHOR without UNMAP is invalid.
                if anchor && !unmap {
                    return Err(Sense::invalid_cdb_field(1, Some(4)));
                }
                let (lba, blocks, len_byte) = if sixteen {
                    (be::u64(c, 2), be::u32(c, 10), 10)
                } else {
                    (u64::from(be::u32(c, 2)), u32::from(be::u16(c, 7)), 7)
                };
                Command::WriteSame {
                    lba,
                    blocks,
                    unmap,
                    anchor,
                    ndob,
                    len_byte,
                }
            }
            Opcode::SANITIZE => Command::Sanitize {
                immed: c[1] & 0x80 != 0,
                ause: c[1] & 0x20 != 0,
                action: c[1] & 0x1f,
                len: be::u16(c, 7).into(),
            },
            Opcode::UNMAP => Command::Unmap {
                anchor: c[1] & 0x01 != 0,
                len: be::u16(c, 7).into(),
            },
            Opcode::SERVICE_ACTION_IN_16 => Command::GetLbaStatus {
                lba: be::u64(c, 2),
                alloc: be::u32(c, 10),
            },
            Opcode::ORWRITE_16 => Command::OrWrite {
                lba: be::u64(c, 2),
                blocks: be::u32(c, 10),
                fua: c[1] & 0x08 != 0,
            },
            // The table admits only these service actions.
            Opcode::EXTENDED_COPY => match sa {
                0x10 => Command::PopulateToken {
                    list_id: be::u32(c, 6),
                    len: be::u32(c, 10),
                },
                0x11 => Command::WriteUsingToken {
                    list_id: be::u32(c, 6),
                    len: be::u32(c, 10),
                },
                0x1c => Command::CopyOperationAbort {
                    list_id: be::u32(c, 2),
                },
                0x01 => Command::ExtendedCopyLid4 {
                    len: be::u32(c, 10),
                },
                _ => Command::ExtendedCopy {
                    len: be::u32(c, 10),
                },
            },
            Opcode::RECEIVE_COPY_RESULTS => {
                use crate::tpc::ReceiveCopy;
                let list_id = u32::from(c[2]);
                let lid4 = be::u32(c, 2);
                // The table admits only these service actions.
                let request = match sa {
                    0x00 => ReceiveCopy::Status { list_id },
                    0x01 => ReceiveCopy::Data { list_id },
                    0x03 => ReceiveCopy::OperatingParameters,
                    0x05 => ReceiveCopy::StatusLid4 { list_id: lid4 },
                    0x07 => ReceiveCopy::RodTokenInfo { list_id: lid4 },
                    0x08 => ReceiveCopy::AllRodTokens,
                    _ => ReceiveCopy::FailureDetails { list_id },
                };
                Command::ReceiveCopyResults {
                    request,
                    alloc: be::u32(c, 10),
                }
            }
            Opcode::PERSISTENT_RESERVE_IN => Command::PersistentReserveIn {
                sa,
                alloc: be::u16(c, 7).into(),
            },
            Opcode::PERSISTENT_RESERVE_OUT => Command::PersistentReserveOut {
                sa,
                scope: c[2] >> 4,
                kind: c[2] & 0x0f,
                len: be::u32(c, 5),
            },
            Opcode::WRITE_ATOMIC_16 => Command::WriteAtomic {
                lba: be::u64(c, 2),
                blocks: be::u16(c, 12).into(),
                fua: c[1] & 0x08 != 0,
            },
            _ => return Err(Sense::invalid_opcode()),
        })
    }

    /// Commands that may run for seconds (copies, WRITE SAME and UNMAP over large
    /// ranges): the transport runs them apart from commands a host waits on one by
    /// one, at lower CPU priority, so they cannot starve them.
    pub fn is_bulk(&self) -> bool {
        matches!(
            self,
            Command::ExtendedCopy { .. }
                | Command::ExtendedCopyLid4 { .. }
                | Command::PopulateToken { .. }
                | Command::WriteUsingToken { .. }
                | Command::WriteSame { .. }
                | Command::Unmap { .. }
                | Command::Sanitize { .. }
        )
    }

    /// Bytes of Data-Out this command transfers, given the LU's block size; the
    /// transport solicits no more than this.
    pub fn data_out_len(&self, block_size: u32) -> u64 {
        let bs = u64::from(block_size);
        match *self {
            Command::Write { blocks, .. }
            | Command::WriteVerify { blocks, .. }
            | Command::OrWrite { blocks, .. }
            | Command::WriteAtomic { blocks, .. } => u64::from(blocks) * bs,
            Command::CompareAndWrite { blocks, .. } => 2 * u64::from(blocks) * bs,
            Command::WriteSame { ndob: false, .. } => bs,
            // Without FIXED the length is in bytes; with it, in blocks of the mode
            // block length, which the transport does not know: it takes what the
            // initiator sends (the expected length) and execution checks it.
            Command::TapeWrite { fixed: false, len } => u64::from(len),
            Command::TapeWrite { fixed: true, .. } => u64::MAX,
            Command::Unmap { len, .. }
            | Command::PersistentReserveOut { len, .. }
            | Command::ExtendedCopy { len }
            | Command::ExtendedCopyLid4 { len }
            | Command::PopulateToken { len, .. }
            | Command::WriteUsingToken { len, .. }
            | Command::Sanitize { len, .. } => u64::from(len),
            Command::Verify {
                blocks, bytchk: 1, ..
            } => u64::from(blocks) * bs,
            Command::Verify {
                blocks, bytchk: 3, ..
            } if blocks > 0 => bs,
            Command::ModeSelect { len, .. } => u64::from(len),
            _ => 0,
        }
    }
}

/// READ/WRITE/VERIFY/PRE-FETCH/SYNCHRONIZE CACHE of every size share one field layout
/// in byte 1: (RD|WR|VR)PROTECT 7:5, DPO 4, FUA 3 or BYTCHK 2:1, IMMED 1. Protection
/// fields are rejected by the usage mask since this target formats no protection
/// information (SBC-3 4.22: PROTECT != 0 without PI is INVALID FIELD IN CDB).
fn rw(opcode: Opcode, lba: u64, blocks: u32, len_byte: u16, b1: u8) -> Result<Command, Sense> {
    let fua = b1 & 0x08 != 0;
    let bytchk = (b1 >> 1) & 3;
    let immed = b1 & 0x02 != 0;
    Ok(match opcode {
        Opcode::READ_10 | Opcode::READ_12 | Opcode::READ_16 => Command::Read {
            lba,
            blocks,
            fua,
            len_byte,
        },
        Opcode::WRITE_10 | Opcode::WRITE_12 | Opcode::WRITE_16 => Command::Write {
            lba,
            blocks,
            fua,
            len_byte,
        },
        Opcode::WRITE_AND_VERIFY_10 | Opcode::WRITE_AND_VERIFY_12 | Opcode::WRITE_AND_VERIFY_16 => {
            // WRITE AND VERIFY: BYTCHK 00b/01b only (SBC-4 5.42).
            if bytchk > 1 {
                return Err(Sense::invalid_cdb_field(1, Some(2)));
            }
            Command::WriteVerify {
                lba,
                blocks,
                bytchk,
                len_byte,
            }
        }
        Opcode::VERIFY_10 | Opcode::VERIFY_12 | Opcode::VERIFY_16 => {
            // VERIFY: BYTCHK 10b is reserved (SBC-4 5.33).
            if bytchk == 2 {
                return Err(Sense::invalid_cdb_field(1, Some(2)));
            }
            Command::Verify {
                lba,
                blocks,
                bytchk,
                len_byte,
            }
        }
        Opcode::PRE_FETCH_10 | Opcode::PRE_FETCH_16 => Command::PreFetch { lba, blocks, immed },
        _ => Command::SynchronizeCache { lba, blocks, immed },
    })
}
