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

use crate::sense::Sense;

mod command;
mod opcode;
mod ssc;
mod table;

pub use command::Command;
pub use opcode::Opcode;

/// Peripheral device type (SPC-4 Table 141): selects the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// 00h: direct-access block device (SBC).
    Block,
    /// 01h: sequential-access device, a tape drive (SSC).
    Stream,
}

impl DeviceType {
    /// The PERIPHERAL DEVICE TYPE code INQUIRY reports.
    pub fn code(self) -> u8 {
        match self {
            DeviceType::Block => 0x00,
            DeviceType::Stream => 0x01,
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
static STREAM: LazyLock<Table> = LazyLock::new(|| Table::new(&[table::SPC, table::SSC]));

fn table_of(device_type: DeviceType) -> &'static Table {
    match device_type {
        DeviceType::Block => &BLOCK,
        DeviceType::Stream => &STREAM,
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
        let command = match device_type {
            DeviceType::Stream => match ssc::from_row(info, cdb)? {
                Some(c) => c,
                None => Command::from_row(info, cdb)?,
            },
            DeviceType::Block => Command::from_row(info, cdb)?,
        };
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

#[cfg(test)]
mod tests;
