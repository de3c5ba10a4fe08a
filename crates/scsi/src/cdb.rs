//! CDB parsing: bytes → typed [`Command`] or a precise [`Sense`].
//!
//! [`COMMANDS`] is the single table of what the device server accepts. Each entry's
//! CDB usage data (SPC-4 6.35.3) is both what REPORT SUPPORTED OPERATION CODES returns
//! and the mask the parser enforces: a bit set in a CDB where the usage data has a zero
//! is INVALID FIELD IN CDB with a field pointer at that byte and bit.

use crate::sense::Sense;
use codec::be;

/// One supported command.
#[derive(Debug)]
pub struct OpcodeInfo {
    pub opcode: u8,
    pub service_action: Option<u8>,
    pub name: &'static str,
    /// CDB usage data: byte 0 is the opcode, then the bits the device server honours.
    pub usage: &'static [u8],
    /// Nominal command timeout in seconds, reported with RCTD.
    pub nominal_timeout: u32,
    /// Whether the command moves data out (for the transport's R2T decisions).
    pub writes_medium: bool,
}

const FF: u8 = 0xff;

macro_rules! op {
    ($op:expr, $sa:expr, $name:expr, $to:expr, $w:expr, [$($u:expr),* $(,)?]) => {
        OpcodeInfo { opcode: $op, service_action: $sa, name: $name, usage: &[$($u),*], nominal_timeout: $to, writes_medium: $w }
    };
}

/// Every command the device server implements, in opcode order.
pub static COMMANDS: &[OpcodeInfo] = &[
    op!(
        0x00,
        None,
        "TEST UNIT READY",
        1,
        false,
        [0x00, 0, 0, 0, 0, 0]
    ),
    op!(
        0x03,
        None,
        "REQUEST SENSE",
        1,
        false,
        [0x03, 0x01, 0, 0, FF, 0]
    ),
    op!(
        0x08,
        None,
        "READ(6)",
        30,
        false,
        [0x08, 0x1f, FF, FF, FF, 0]
    ),
    op!(
        0x0a,
        None,
        "WRITE(6)",
        30,
        true,
        [0x0a, 0x1f, FF, FF, FF, 0]
    ),
    op!(0x12, None, "INQUIRY", 1, false, [0x12, 0x01, FF, FF, FF, 0]),
    op!(
        0x15,
        None,
        "MODE SELECT(6)",
        1,
        false,
        [0x15, 0x11, 0, 0, FF, 0]
    ),
    op!(0x16, None, "RESERVE(6)", 1, false, [0x16, 0, 0, 0, 0, 0]),
    op!(0x17, None, "RELEASE(6)", 1, false, [0x17, 0, 0, 0, 0, 0]),
    op!(
        0x1a,
        None,
        "MODE SENSE(6)",
        1,
        false,
        [0x1a, 0x08, FF, FF, FF, 0]
    ),
    op!(
        0x1b,
        None,
        "START STOP UNIT",
        30,
        false,
        [0x1b, 0x01, 0, 0x0f, 0xf7, 0]
    ),
    op!(
        0x1e,
        None,
        "PREVENT ALLOW MEDIUM REMOVAL",
        1,
        false,
        [0x1e, 0, 0, 0, 0x03, 0]
    ),
    op!(
        0x25,
        None,
        "READ CAPACITY(10)",
        1,
        false,
        [0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, 0]
    ),
    op!(
        0x28,
        None,
        "READ(10)",
        30,
        false,
        [0x28, 0x18, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x2a,
        None,
        "WRITE(10)",
        30,
        true,
        [0x2a, 0x18, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x2e,
        None,
        "WRITE AND VERIFY(10)",
        30,
        true,
        [0x2e, 0x16, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x2f,
        None,
        "VERIFY(10)",
        30,
        false,
        [0x2f, 0x16, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x34,
        None,
        "PRE-FETCH(10)",
        30,
        false,
        [0x34, 0x02, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x35,
        None,
        "SYNCHRONIZE CACHE(10)",
        60,
        false,
        [0x35, 0x02, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x37,
        None,
        "READ DEFECT DATA(10)",
        1,
        false,
        [0x37, 0, 0x1f, 0, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x41,
        None,
        "WRITE SAME(10)",
        60,
        true,
        [0x41, 0x18, FF, FF, FF, FF, 0x1f, FF, FF, 0]
    ),
    op!(
        0x42,
        None,
        "UNMAP",
        60,
        true,
        [0x42, 0x01, 0, 0, 0, 0, 0x1f, FF, FF, 0]
    ),
    op!(
        0x55,
        None,
        "MODE SELECT(10)",
        1,
        false,
        [0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x56,
        None,
        "RESERVE(10)",
        1,
        false,
        [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ),
    op!(
        0x57,
        None,
        "RELEASE(10)",
        1,
        false,
        [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ),
    op!(
        0x5a,
        None,
        "MODE SENSE(10)",
        1,
        false,
        [0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x5e,
        Some(0x00),
        "PERSISTENT RESERVE IN / READ KEYS",
        1,
        false,
        [0x5e, 0x00, 0, 0, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x5e,
        Some(0x01),
        "PERSISTENT RESERVE IN / READ RESERVATION",
        1,
        false,
        [0x5e, 0x01, 0, 0, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x5e,
        Some(0x02),
        "PERSISTENT RESERVE IN / REPORT CAPABILITIES",
        1,
        false,
        [0x5e, 0x02, 0, 0, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x5e,
        Some(0x03),
        "PERSISTENT RESERVE IN / READ FULL STATUS",
        1,
        false,
        [0x5e, 0x03, 0, 0, 0, 0, 0, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x00),
        "PERSISTENT RESERVE OUT / REGISTER",
        1,
        false,
        [0x5f, 0x00, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x01),
        "PERSISTENT RESERVE OUT / RESERVE",
        1,
        false,
        [0x5f, 0x01, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x02),
        "PERSISTENT RESERVE OUT / RELEASE",
        1,
        false,
        [0x5f, 0x02, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x03),
        "PERSISTENT RESERVE OUT / CLEAR",
        1,
        false,
        [0x5f, 0x03, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x04),
        "PERSISTENT RESERVE OUT / PREEMPT",
        1,
        false,
        [0x5f, 0x04, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x05),
        "PERSISTENT RESERVE OUT / PREEMPT AND ABORT",
        1,
        false,
        [0x5f, 0x05, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x06),
        "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY",
        1,
        false,
        [0x5f, 0x06, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x5f,
        Some(0x07),
        "PERSISTENT RESERVE OUT / REGISTER AND MOVE",
        1,
        false,
        [0x5f, 0x07, FF, 0, 0, FF, FF, FF, FF, 0]
    ),
    op!(
        0x83,
        Some(0x00),
        "EXTENDED COPY(LID1)",
        3600,
        true,
        [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0x84,
        Some(0x00),
        "RECEIVE COPY STATUS(LID1)",
        1,
        false,
        [0x84, 0x00, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0x84,
        Some(0x01),
        "RECEIVE COPY DATA(LID1)",
        1,
        false,
        [0x84, 0x01, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0x84,
        Some(0x03),
        "RECEIVE COPY OPERATING PARAMETERS",
        1,
        false,
        [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0x84,
        Some(0x04),
        "RECEIVE COPY FAILURE DETAILS(LID1)",
        1,
        false,
        [0x84, 0x04, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0x88,
        None,
        "READ(16)",
        30,
        false,
        [0x88, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x89,
        None,
        "COMPARE AND WRITE",
        30,
        true,
        [0x89, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0x1f, 0]
    ),
    op!(
        0x8a,
        None,
        "WRITE(16)",
        30,
        true,
        [0x8a, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x8b,
        None,
        "ORWRITE(16)",
        30,
        true,
        [0x8b, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x8e,
        None,
        "WRITE AND VERIFY(16)",
        30,
        true,
        [0x8e, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x8f,
        None,
        "VERIFY(16)",
        30,
        false,
        [0x8f, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x90,
        None,
        "PRE-FETCH(16)",
        30,
        false,
        [0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x91,
        None,
        "SYNCHRONIZE CACHE(16)",
        60,
        false,
        [0x91, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x93,
        None,
        "WRITE SAME(16)",
        60,
        true,
        [0x93, 0x19, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0x9c,
        None,
        "WRITE ATOMIC(16)",
        30,
        true,
        [0x9c, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, FF, FF, 0x1f, 0]
    ),
    op!(
        0x9e,
        Some(0x10),
        "READ CAPACITY(16)",
        1,
        false,
        [0x9e, 0x10, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, 0]
    ),
    op!(
        0x9e,
        Some(0x12),
        "GET LBA STATUS",
        1,
        false,
        [0x9e, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0xa0,
        None,
        "REPORT LUNS",
        1,
        false,
        [0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0xa3,
        Some(0x0c),
        "REPORT SUPPORTED OPERATION CODES",
        1,
        false,
        [0xa3, 0x0c, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0xa3,
        Some(0x0d),
        "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        1,
        false,
        [0xa3, 0x0d, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, 0]
    ),
    op!(
        0xa8,
        None,
        "READ(12)",
        30,
        false,
        [0xa8, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0xaa,
        None,
        "WRITE(12)",
        30,
        true,
        [0xaa, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0xae,
        None,
        "WRITE AND VERIFY(12)",
        30,
        true,
        [0xae, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0xaf,
        None,
        "VERIFY(12)",
        30,
        false,
        [0xaf, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0]
    ),
    op!(
        0xb7,
        None,
        "READ DEFECT DATA(12)",
        1,
        false,
        [0xb7, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]
    ),
];

/// Opcodes whose byte 1 carries a service action.
pub fn has_service_actions(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|c| c.opcode == opcode && c.service_action.is_some())
}

/// The table entry for `opcode` / `sa` (sa ignored for opcodes without service actions).
pub fn lookup(opcode: u8, sa: u8) -> Option<&'static OpcodeInfo> {
    COMMANDS
        .iter()
        .find(|c| c.opcode == opcode && c.service_action.is_none_or(|s| s == sa))
}

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
    ReceiveCopyResults {
        sa: u8,
        list_id: u8,
        alloc: u32,
    },
    PersistentReserveOut {
        sa: u8,
        scope: u8,
        kind: u8,
        len: u32,
    },
}

/// CDB length by group code (SPC-4 4.2.5.1).
pub fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

impl Command {
    /// Parses `cdb`: unknown opcodes are INVALID COMMAND OPERATION CODE, unknown
    /// service actions and reserved bits INVALID FIELD IN CDB with a field pointer.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        let Some(&opcode) = cdb.first() else {
            return Err(Sense::invalid_opcode());
        };
        let sa = cdb.get(1).copied().unwrap_or(0) & 0x1f;
        let Some(info) = lookup(opcode, sa) else {
            return Err(if has_service_actions(opcode) {
                Sense::invalid_cdb_field(1, Some(4))
            } else {
                Sense::invalid_opcode()
            });
        };
        if cdb.len() < info.usage.len() {
            return Err(Sense::invalid_opcode());
        }
        for (i, (&got, &allowed)) in cdb.iter().zip(info.usage).enumerate().skip(1) {
            let bad = got & !allowed;
            if bad != 0 {
                return Err(Sense::invalid_cdb_field(
                    i as u16,
                    Some(7 - bad.leading_zeros() as u8),
                ));
            }
        }
        let c = cdb;
        Ok(match opcode {
            0x00 => Command::TestUnitReady,
            0x03 => Command::RequestSense {
                desc: c[1] & 1 != 0,
                alloc: c[4].into(),
            },
            0x08 | 0x0a => {
                let lba = u64::from(be::u24(c, 1) & 0x1f_ffff);
                // A TRANSFER LENGTH of 0 means 256 blocks for the 6-byte forms (SBC-3 5.7).
                let blocks = if c[4] == 0 { 256 } else { u32::from(c[4]) };
                if opcode == 0x08 {
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
            0x12 => {
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
            0x15 => Command::ModeSelect {
                ten: false,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 1 != 0,
                len: c[4].into(),
            },
            0x55 => Command::ModeSelect {
                ten: true,
                pf: c[1] & 0x10 != 0,
                sp: c[1] & 1 != 0,
                len: be::u16(c, 7).into(),
            },
            0x16 | 0x56 => Command::Reserve,
            0x17 | 0x57 => Command::Release,
            0x1a => Command::ModeSense {
                ten: false,
                dbd: c[1] & 0x08 != 0,
                llbaa: false,
                pc: c[2] >> 6,
                page: c[2] & 0x3f,
                subpage: c[3],
                alloc: c[4].into(),
            },
            0x5a => Command::ModeSense {
                ten: true,
                dbd: c[1] & 0x08 != 0,
                llbaa: c[1] & 0x10 != 0,
                pc: c[2] >> 6,
                page: c[2] & 0x3f,
                subpage: c[3],
                alloc: be::u16(c, 7).into(),
            },
            0x1b => Command::StartStopUnit {
                immed: c[1] & 1 != 0,
                power_condition: c[4] >> 4,
                loej: c[4] & 0x02 != 0,
                start: c[4] & 0x01 != 0,
            },
            0x1e => Command::PreventAllow { prevent: c[4] & 3 },
            0x25 => {
                let lba = be::u32(c, 2);
                let pmi = c[8] & 1 != 0;
                // SBC-3 5.16: with PMI clear the LBA field shall be zero.
                if !pmi && lba != 0 {
                    return Err(Sense::invalid_cdb_field(2, None));
                }
                Command::ReadCapacity10 { lba, pmi }
            }
            0x28 | 0x2a | 0x2e | 0x2f | 0x34 | 0x35 => rw(
                opcode,
                u64::from(be::u32(c, 2)),
                u32::from(be::u16(c, 7)),
                7,
                c[1],
            )?,
            0xa8 | 0xaa | 0xae | 0xaf => {
                rw(opcode, u64::from(be::u32(c, 2)), be::u32(c, 6), 6, c[1])?
            }
            0x88 | 0x8a | 0x8e | 0x8f | 0x90 | 0x91 => {
                rw(opcode, be::u64(c, 2), be::u32(c, 10), 10, c[1])?
            }
            0x37 => Command::ReadDefectData {
                twelve: false,
                plist: c[2] & 0x10 != 0,
                glist: c[2] & 0x08 != 0,
                format: c[2] & 7,
                alloc: be::u16(c, 7).into(),
            },
            0xb7 => Command::ReadDefectData {
                twelve: true,
                plist: c[1] & 0x10 != 0,
                glist: c[1] & 0x08 != 0,
                format: c[1] & 7,
                alloc: be::u32(c, 6),
            },
            0x9e if sa == 0x10 => Command::ReadCapacity16 {
                alloc: be::u32(c, 10),
            },
            0xa0 => Command::ReportLuns {
                select: c[2],
                alloc: be::u32(c, 6),
            },
            0xa3 if sa == 0x0c => {
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
            0xa3 => Command::ReportTmfs {
                repd: c[2] & 0x80 != 0,
                alloc: be::u32(c, 6),
            },
            0x89 => Command::CompareAndWrite {
                lba: be::u64(c, 2),
                blocks: c[13].into(),
                fua: c[1] & 0x08 != 0,
            },
            0x41 | 0x93 => {
                let sixteen = opcode == 0x93;
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
            0x42 => Command::Unmap {
                anchor: c[1] & 0x01 != 0,
                len: be::u16(c, 7).into(),
            },
            0x9e => Command::GetLbaStatus {
                lba: be::u64(c, 2),
                alloc: be::u32(c, 10),
            },
            0x8b => Command::OrWrite {
                lba: be::u64(c, 2),
                blocks: be::u32(c, 10),
                fua: c[1] & 0x08 != 0,
            },
            0x83 => Command::ExtendedCopy {
                len: be::u32(c, 10),
            },
            0x84 => Command::ReceiveCopyResults {
                sa,
                list_id: c[2],
                alloc: be::u32(c, 10),
            },
            0x5e => Command::PersistentReserveIn {
                sa,
                alloc: be::u16(c, 7).into(),
            },
            0x5f => Command::PersistentReserveOut {
                sa,
                scope: c[2] >> 4,
                kind: c[2] & 0x0f,
                len: be::u32(c, 5),
            },
            0x9c => Command::WriteAtomic {
                lba: be::u64(c, 2),
                blocks: be::u16(c, 12).into(),
                fua: c[1] & 0x08 != 0,
            },
            _ => return Err(Sense::invalid_opcode()),
        })
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
            Command::Unmap { len, .. }
            | Command::PersistentReserveOut { len, .. }
            | Command::ExtendedCopy { len } => u64::from(len),
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
fn rw(opcode: u8, lba: u64, blocks: u32, len_byte: u16, b1: u8) -> Result<Command, Sense> {
    let fua = b1 & 0x08 != 0;
    let bytchk = (b1 >> 1) & 3;
    let immed = b1 & 0x02 != 0;
    Ok(match opcode {
        0x28 | 0xa8 | 0x88 => Command::Read {
            lba,
            blocks,
            fua,
            len_byte,
        },
        0x2a | 0xaa | 0x8a => Command::Write {
            lba,
            blocks,
            fua,
            len_byte,
        },
        0x2e | 0xae | 0x8e => {
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
        0x2f | 0xaf | 0x8f => {
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
        0x34 | 0x90 => Command::PreFetch { lba, blocks, immed },
        _ => Command::SynchronizeCache { lba, blocks, immed },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::Asc;
    use proptest::prelude::*;

    #[test]
    fn read10_fields() {
        let c = Command::parse(&[0x28, 0x08, 0, 0, 0x10, 0, 0, 0, 8, 0]).unwrap();
        assert_eq!(
            c,
            Command::Read {
                lba: 0x1000,
                blocks: 8,
                fua: true,
                len_byte: 7,
            }
        );
    }

    #[test]
    fn read6_zero_means_256() {
        assert_eq!(
            Command::parse(&[0x08, 0, 0, 5, 0, 0]).unwrap(),
            Command::Read {
                lba: 5,
                blocks: 256,
                fua: false,
                len_byte: 4,
            }
        );
    }

    #[test]
    fn rdprotect_is_invalid_field_with_bit_pointer() {
        let e = Command::parse(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
        let f = e.field.unwrap();
        assert_eq!((f.in_cdb, f.byte, f.bit), (true, 1, Some(5)));
    }

    #[test]
    fn unknown_opcode_and_service_action() {
        assert_eq!(
            Command::parse(&[0xc0, 0, 0, 0, 0, 0]).unwrap_err().asc,
            Asc::INVALID_COMMAND_OPCODE
        );
        let e =
            Command::parse(&[0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
    }

    #[test]
    fn naca_in_control_byte_rejected() {
        let e = Command::parse(&[0x00, 0, 0, 0, 0, 0x04]).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 5);
    }

    #[test]
    fn data_out_lengths() {
        let w = Command::parse(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 4, 0]).unwrap();
        assert_eq!(w.data_out_len(512), 2048);
        let v = Command::parse(&[0x2f, 0x06, 0, 0, 0, 0, 0, 0, 4, 0]).unwrap();
        assert_eq!(v.data_out_len(4096), 4096, "BYTCHK 11b sends one block");
    }

    #[test]
    fn usage_table_is_consistent() {
        for c in COMMANDS {
            assert_eq!(c.usage[0], c.opcode, "{}", c.name);
            assert_eq!(c.usage.len(), cdb_len(c.opcode), "{}", c.name);
            if let Some(sa) = c.service_action {
                assert_eq!(c.usage[1], sa, "{}", c.name);
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(cdb in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = Command::parse(&cdb);
        }
    }
}
