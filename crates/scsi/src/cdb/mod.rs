//! CDB parsing: bytes → typed [`Command`] with its table attributes, or a precise
//! [`Sense`].
//!
//! [`table`] holds the commands each device type accepts (SPC-4 rows shared by all,
//! then the device type's own; SSC reuses opcodes such as 08h and 0Ah with other
//! meanings, so parsing is always keyed by [`DeviceType`]). Each row's CDB usage data
//! is both what REPORT SUPPORTED OPERATION CODES returns and the mask the parser
//! enforces: a bit set in a CDB where the usage data has a zero is INVALID FIELD IN
//! CDB with a field pointer at that byte and bit.

use std::sync::LazyLock;

use codec::be;

use crate::sense::Sense;

mod table;

/// Peripheral device type (SPC-4 Table 141): selects the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// 00h: direct-access block device (SBC).
    Block,
}

impl DeviceType {
    /// The PERIPHERAL DEVICE TYPE code INQUIRY reports.
    pub fn code(self) -> u8 {
        match self {
            DeviceType::Block => 0x00,
        }
    }
}

/// Which way a command's data moves (SAM-5 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    None,
    /// Data-In: the device server returns data.
    In,
    /// Data-Out: the initiator sends data (a parameter list or blocks).
    Out,
}

/// How a command meets a persistent reservation held by another nexus (SPC-4 5.13,
/// Table 63's columns reduced to what the reservation types distinguish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrAccess {
    /// Allowed under every reservation type.
    Any,
    /// Reads the medium: conflicts only with the exclusive-access types.
    Read,
    /// Modifies the medium or LU state: conflicts under every type.
    Write,
}

/// A command's attributes: the table row's columns, after the one field-dependent
/// exception ([`Parsed::attrs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub dir: DataDir,
    pub pr: PrAccess,
    /// Runs while a unit attention is pending for the nexus (SAM-5 5.14): INQUIRY,
    /// REPORT LUNS, REQUEST SENSE.
    pub ua_exempt: bool,
    /// Runs while another nexus holds an SPC-2 RESERVE (SPC-2 5.5.1).
    pub spc2_allowed: bool,
    /// The transport may try it on its network task when it cannot block (READ and
    /// WRITE of a few pages).
    pub inline: bool,
}

/// One supported command: a row of a device type's table.
#[derive(Debug)]
pub struct OpcodeInfo {
    pub opcode: u8,
    pub service_action: Option<u8>,
    pub name: &'static str,
    /// CDB usage data: byte 0 is the opcode, then the bits the device server honours.
    pub usage: &'static [u8],
    /// Nominal command timeout in seconds, reported with RCTD.
    pub nominal_timeout: u32,
    pub attrs: Attrs,
}

impl OpcodeInfo {
    const fn new(
        opcode: u8,
        service_action: Option<u8>,
        name: &'static str,
        nominal_timeout: u32,
        usage: &'static [u8],
    ) -> Self {
        Self {
            opcode,
            service_action,
            name,
            usage,
            nominal_timeout,
            attrs: Attrs {
                dir: DataDir::None,
                pr: PrAccess::Write,
                ua_exempt: false,
                spc2_allowed: false,
                inline: false,
            },
        }
    }
    const fn data_in(mut self) -> Self {
        self.attrs.dir = DataDir::In;
        self
    }
    const fn data_out(mut self) -> Self {
        self.attrs.dir = DataDir::Out;
        self
    }
    const fn pr(mut self, access: PrAccess) -> Self {
        self.attrs.pr = access;
        self
    }
    const fn ua_exempt(mut self) -> Self {
        self.attrs.ua_exempt = true;
        self
    }
    const fn spc2_allowed(mut self) -> Self {
        self.attrs.spc2_allowed = true;
        self
    }
    const fn inline(mut self) -> Self {
        self.attrs.inline = true;
        self
    }
}

/// One device type's rows in (opcode, service action) order, with the index of
/// each opcode's first row, so a lookup touches only that opcode's rows.
struct Table {
    rows: Vec<&'static OpcodeInfo>,
    first: [u16; 256],
}

impl Table {
    fn new(parts: &[&'static [OpcodeInfo]]) -> Self {
        let mut rows: Vec<&'static OpcodeInfo> = parts.iter().flat_map(|p| p.iter()).collect();
        rows.sort_by_key(|c| (c.opcode, c.service_action));
        let mut first = [u16::MAX; 256];
        for (i, c) in rows.iter().enumerate().rev() {
            first[usize::from(c.opcode)] = i as u16;
        }
        Self { rows, first }
    }

    fn rows_of(&self, opcode: u8) -> &[&'static OpcodeInfo] {
        let start = usize::from(self.first[usize::from(opcode)]);
        let Some(rest) = self.rows.get(start..) else {
            return &[];
        };
        let n = rest.iter().take_while(|c| c.opcode == opcode).count();
        &rest[..n]
    }
}

static BLOCK: LazyLock<Table> = LazyLock::new(|| Table::new(&[table::SPC, table::SBC]));

fn table_of(device_type: DeviceType) -> &'static Table {
    match device_type {
        DeviceType::Block => &BLOCK,
    }
}

/// Every command `device_type` implements, in opcode (then service action) order.
pub fn table(device_type: DeviceType) -> &'static [&'static OpcodeInfo] {
    &table_of(device_type).rows
}

/// Opcodes whose byte 1 carries a service action.
pub fn has_service_actions(device_type: DeviceType, opcode: u8) -> bool {
    table_of(device_type)
        .rows_of(opcode)
        .iter()
        .any(|c| c.service_action.is_some())
}

/// The table entry for `opcode` / `sa` (sa ignored for opcodes without service actions).
pub fn lookup(device_type: DeviceType, opcode: u8, sa: u8) -> Option<&'static OpcodeInfo> {
    table_of(device_type)
        .rows_of(opcode)
        .iter()
        .copied()
        .find(|c| c.service_action.is_none_or(|s| s == sa))
}

/// A parsed command and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub attrs: Attrs,
}

impl Parsed {
    /// Parses `cdb` for a logical unit of `device_type`.
    pub fn parse(device_type: DeviceType, cdb: &[u8]) -> Result<Self, Sense> {
        let info = row_for(device_type, cdb)?;
        let command = Command::from_row(info, cdb)?;
        let mut attrs = info.attrs;
        // PREVENT ALLOW MEDIUM REMOVAL with PREVENT 00b only allows removal: no
        // reservation stops it (SPC-2 5.5.1, SPC-4 Table 63).
        if let Command::PreventAllow { prevent: 0 } = command {
            attrs.pr = PrAccess::Any;
            attrs.spc2_allowed = true;
        }
        Ok(Self { command, attrs })
    }
}

/// The row `cdb` names, with its usage mask enforced.
fn row_for(device_type: DeviceType, cdb: &[u8]) -> Result<&'static OpcodeInfo, Sense> {
    let Some(&opcode) = cdb.first() else {
        return Err(Sense::invalid_opcode());
    };
    let sa = cdb.get(1).copied().unwrap_or(0) & 0x1f;
    let Some(info) = lookup(device_type, opcode, sa) else {
        return Err(if has_service_actions(device_type, opcode) {
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
    Ok(info)
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
    /// Parses a direct-access block device CDB: unknown opcodes are INVALID COMMAND
    /// OPERATION CODE, unknown service actions and reserved bits INVALID FIELD IN CDB
    /// with a field pointer.
    pub fn parse(cdb: &[u8]) -> Result<Self, Sense> {
        Parsed::parse(DeviceType::Block, cdb).map(|p| p.command)
    }

    /// The typed fields of a CDB whose row (and usage mask) was already checked.
    fn from_row(info: &OpcodeInfo, cdb: &[u8]) -> Result<Self, Sense> {
        let (opcode, sa) = (info.opcode, cdb[1] & 0x1f);
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
            0x84 => {
                use crate::tpc::ReceiveCopy;
                let list_id = u32::from(c[2]);
                // The table admits only these service actions.
                let request = match sa {
                    0x00 => ReceiveCopy::Status { list_id },
                    0x01 => ReceiveCopy::Data { list_id },
                    0x03 => ReceiveCopy::OperatingParameters,
                    _ => ReceiveCopy::FailureDetails { list_id },
                };
                Command::ReceiveCopyResults {
                    request,
                    alloc: be::u32(c, 10),
                }
            }
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
    fn attributes_come_from_the_row() {
        let a = |cdb: &[u8]| Parsed::parse(DeviceType::Block, cdb).unwrap().attrs;
        let inq = a(&[0x12, 0, 0, 0, 96, 0]);
        assert!(inq.ua_exempt && inq.spc2_allowed && inq.pr == PrAccess::Any);
        assert_eq!(inq.dir, DataDir::In);
        let rd = a(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(rd.inline && !rd.ua_exempt && !rd.spc2_allowed);
        assert_eq!((rd.dir, rd.pr), (DataDir::In, PrAccess::Read));
        let wr = a(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            (wr.dir, wr.pr, wr.inline),
            (DataDir::Out, PrAccess::Write, true)
        );
        // PREVENT ALLOW: allowing removal passes every reservation; preventing does not.
        let allow = a(&[0x1e, 0, 0, 0, 0, 0]);
        assert!(allow.spc2_allowed && allow.pr == PrAccess::Any);
        let prevent = a(&[0x1e, 0, 0, 0, 1, 0]);
        assert!(!prevent.spc2_allowed && prevent.pr == PrAccess::Write);
        // A command with a Data-Out length is a Data-Out row (all usage bits set).
        for c in table(DeviceType::Block) {
            if let Ok(p) = Parsed::parse(DeviceType::Block, c.usage) {
                let out = p.command.data_out_len(512) > 0;
                if out {
                    assert_eq!(p.attrs.dir, DataDir::Out, "{}", c.name);
                }
            }
        }
    }

    #[test]
    fn the_opcode_index_finds_what_a_scan_finds() {
        let rows = table(DeviceType::Block);
        for op in 0..=255u8 {
            for sa in 0..32u8 {
                let scan = rows
                    .iter()
                    .copied()
                    .find(|c| c.opcode == op && c.service_action.is_none_or(|s| s == sa));
                let got = lookup(DeviceType::Block, op, sa);
                assert_eq!(
                    got.map(|c| c.name),
                    scan.map(|c| c.name),
                    "{op:02x}/{sa:02x}"
                );
            }
            let any_sa = rows
                .iter()
                .any(|c| c.opcode == op && c.service_action.is_some());
            assert_eq!(has_service_actions(DeviceType::Block, op), any_sa);
        }
    }

    #[test]
    fn usage_table_is_consistent() {
        for c in table(DeviceType::Block) {
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
