//! iSCSI PDU layouts (RFC 7143 §11).
//!
//! Requests (initiator → target) are parsed from the 48-byte Basic Header Segment into
//! [`Request`]; every field the target acts on is named. Responses (target → initiator)
//! are plain structs whose `encode` writes a BHS. Data segments travel separately so the
//! daemon can place them straight into I/O buffers. Full-feature responses carry no
//! StatSN, ExpCmdSN or MaxCmdSN: those bytes are zero here and the connection's writer
//! stamps them at send time, in sending order (only the login phase, which has no
//! writer yet, sets them on [`LoginResp`]).

use crate::framer::PduError;
use codec::be;

/// Size of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// The reserved "no tag" value for Initiator and Target Transfer Tags.
pub const NO_TAG: u32 = 0xffff_ffff;

/// Opcodes (RFC 7143 §11.1.1).
pub mod opcode {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const SNACK_REQ: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESP: u8 = 0x22;
    pub const LOGIN_RESP: u8 = 0x23;
    pub const TEXT_RESP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MSG: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject_reason {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const LONG_OPERATION_REJECT: u8 = 0x0a;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Task management function codes (RFC 7143 §11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFunction {
    AbortTask,
    AbortTaskSet,
    ClearAca,
    ClearTaskSet,
    LogicalUnitReset,
    TargetWarmReset,
    TargetColdReset,
    TaskReassign,
    Other(u8),
}

impl TmfFunction {
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::AbortTask,
            2 => Self::AbortTaskSet,
            3 => Self::ClearAca,
            4 => Self::ClearTaskSet,
            5 => Self::LogicalUnitReset,
            6 => Self::TargetWarmReset,
            7 => Self::TargetColdReset,
            8 => Self::TaskReassign,
            other => Self::Other(other),
        }
    }
}

/// TMF response codes (RFC 7143 §11.6.1).
pub mod tmf_response {
    pub const COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const TASK_STILL_ALLEGIANT: u8 = 3;
    pub const REASSIGNMENT_NOT_SUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const AUTHORIZATION_FAILED: u8 = 6;
    pub const REJECTED: u8 = 255;
}

/// The header fields common to every PDU, read before the type-specific parse so the
/// framer knows how much follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BhsPrefix {
    pub opcode: u8,
    pub immediate: bool,
    pub total_ahs_len: usize,
    pub data_segment_len: usize,
}

impl BhsPrefix {
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            opcode: bhs[0] & 0x3f,
            immediate: bhs[0] & 0x40 != 0,
            total_ahs_len: usize::from(bhs[4]) * 4,
            data_segment_len: (usize::from(bhs[5]) << 16)
                | (usize::from(bhs[6]) << 8)
                | usize::from(bhs[7]),
        }
    }
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub task_attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub expected_data_len: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// The CDB: the 16 bytes of the BHS followed by any Extended CDB AHS bytes.
    pub cdb: Vec<u8>,
    /// Expected Bidirectional Read Data Length AHS, when present.
    pub bidi_read_len: Option<u32>,
}

/// SCSI Data-Out (RFC 7143 §11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
}

/// NOP-Out (RFC 7143 §11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// Task Management Function Request (RFC 7143 §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmt {
    pub immediate: bool,
    pub function: TmfFunction,
    pub lun: u64,
    pub itt: u32,
    pub referenced_task_tag: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
}

/// Login Request (RFC 7143 §11.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginReq {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// Text Request (RFC 7143 §11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextReq {
    pub immediate: bool,
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutReq {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// SNACK Request (RFC 7143 §11.16); the target supports ErrorRecoveryLevel 0 only and
/// rejects these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnackReq {
    pub itt: u32,
}

/// Every PDU an initiator may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ScsiCommand(ScsiCommand),
    DataOut(DataOut),
    NopOut(NopOut),
    TaskMgmt(TaskMgmt),
    Login(LoginReq),
    Text(TextReq),
    Logout(LogoutReq),
    Snack(SnackReq),
}

impl Request {
    /// Parses a BHS and its AHS bytes. Unknown opcodes and inconsistent fields are
    /// errors the caller answers with Reject.
    pub fn parse(bhs: &[u8; BHS_LEN], ahs: &[u8]) -> Result<Self, PduError> {
        let p = BhsPrefix::parse(bhs);
        let immediate = p.immediate;
        let f = bhs[1];
        Ok(match p.opcode {
            opcode::SCSI_COMMAND => {
                let mut cdb = bhs[32..48].to_vec();
                let mut bidi_read_len = None;
                let mut rest = ahs;
                // AHS: 2-byte length, 1-byte type, then length bytes padded to 4.
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(PduError::BadAhs);
                    }
                    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let ty = rest[2];
                    let padded = (3 + len).div_ceil(4) * 4;
                    let body = rest.get(3..3 + len).ok_or(PduError::BadAhs)?;
                    match ty {
                        // Extended CDB: a reserved byte then the CDB bytes past 16.
                        1 => cdb.extend_from_slice(body.get(1..).ok_or(PduError::BadAhs)?),
                        2 => {
                            let b = body.get(1..5).ok_or(PduError::BadAhs)?;
                            bidi_read_len = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        }
                        _ => return Err(PduError::BadAhs),
                    }
                    rest = rest.get(padded..).unwrap_or(&[]);
                }
                Request::ScsiCommand(ScsiCommand {
                    immediate,
                    final_: f & 0x80 != 0,
                    read: f & 0x40 != 0,
                    write: f & 0x20 != 0,
                    task_attr: f & 0x07,
                    lun: be::u64(bhs, 8),
                    itt: be::u32(bhs, 16),
                    expected_data_len: be::u32(bhs, 20),
                    cmd_sn: be::u32(bhs, 24),
                    exp_stat_sn: be::u32(bhs, 28),
                    cdb,
                    bidi_read_len,
                })
            }
            opcode::DATA_OUT => Request::DataOut(DataOut {
                final_: f & 0x80 != 0,
                lun: be::u64(bhs, 8),
                itt: be::u32(bhs, 16),
                ttt: be::u32(bhs, 20),
                exp_stat_sn: be::u32(bhs, 28),
                data_sn: be::u32(bhs, 36),
                buffer_offset: be::u32(bhs, 40),
            }),
            opcode::NOP_OUT => Request::NopOut(NopOut {
                immediate,
                lun: be::u64(bhs, 8),
                itt: be::u32(bhs, 16),
                ttt: be::u32(bhs, 20),
                cmd_sn: be::u32(bhs, 24),
                exp_stat_sn: be::u32(bhs, 28),
            }),
            opcode::TASK_MGMT_REQ => Request::TaskMgmt(TaskMgmt {
                immediate,
                function: TmfFunction::from_code(f & 0x7f),
                lun: be::u64(bhs, 8),
                itt: be::u32(bhs, 16),
                referenced_task_tag: be::u32(bhs, 20),
                cmd_sn: be::u32(bhs, 24),
                exp_stat_sn: be::u32(bhs, 28),
                ref_cmd_sn: be::u32(bhs, 32),
            }),
            opcode::LOGIN_REQ => {
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&bhs[8..14]);
                Request::Login(LoginReq {
                    transit: f & 0x80 != 0,
                    cont: f & 0x40 != 0,
                    csg: (f >> 2) & 0x3,
                    nsg: f & 0x3,
                    version_max: bhs[2],
                    version_min: bhs[3],
                    isid,
                    tsih: be::u16(bhs, 14),
                    itt: be::u32(bhs, 16),
                    cid: be::u16(bhs, 20),
                    cmd_sn: be::u32(bhs, 24),
                    exp_stat_sn: be::u32(bhs, 28),
                })
            }
            opcode::TEXT_REQ => Request::Text(TextReq {
                immediate,
                final_: f & 0x80 != 0,
                cont: f & 0x40 != 0,
                lun: be::u64(bhs, 8),
                itt: be::u32(bhs, 16),
                ttt: be::u32(bhs, 20),
                cmd_sn: be::u32(bhs, 24),
                exp_stat_sn: be::u32(bhs, 28),
            }),
            opcode::LOGOUT_REQ => Request::Logout(LogoutReq {
                immediate,
                reason: f & 0x7f,
                itt: be::u32(bhs, 16),
                cid: be::u16(bhs, 20),
                cmd_sn: be::u32(bhs, 24),
                exp_stat_sn: be::u32(bhs, 28),
            }),
            opcode::SNACK_REQ => Request::Snack(SnackReq {
                itt: be::u32(bhs, 16),
            }),
            other => return Err(PduError::UnknownOpcode(other)),
        })
    }
}

/// A BHS under construction: opcode, flags and the fields shared by target PDUs.
#[derive(Debug, Clone, Copy)]
pub struct BhsWriter {
    pub bytes: [u8; BHS_LEN],
}

impl BhsWriter {
    pub fn new(opcode: u8, flags: u8) -> Self {
        let mut bytes = [0u8; BHS_LEN];
        bytes[0] = opcode;
        bytes[1] = flags;
        Self { bytes }
    }
    pub fn u8_at(mut self, at: usize, v: u8) -> Self {
        self.bytes[at] = v;
        self
    }
    pub fn u16_at(mut self, at: usize, v: u16) -> Self {
        self.bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32_at(mut self, at: usize, v: u32) -> Self {
        self.bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64_at(mut self, at: usize, v: u64) -> Self {
        self.bytes[at..at + 8].copy_from_slice(&v.to_be_bytes());
        self
    }
    /// Sets DataSegmentLength (bytes 5-7).
    pub fn data_len(mut self, len: usize) -> Self {
        let len = len as u32;
        self.bytes[5] = (len >> 16) as u8;
        self.bytes[6] = (len >> 8) as u8;
        self.bytes[7] = len as u8;
        self
    }
    /// StatSN, ExpCmdSN, MaxCmdSN at bytes 24, 28, 32 (the same place in every target PDU
    /// that carries them).
    pub fn sns(self, stat_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) -> Self {
        self.u32_at(24, stat_sn)
            .u32_at(28, exp_cmd_sn)
            .u32_at(32, max_cmd_sn)
    }
    pub fn finish(self) -> [u8; BHS_LEN] {
        self.bytes
    }
}

/// Residual: how the transferred amount differed from the Expected Data Transfer Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    #[default]
    None,
    Underflow(u32),
    Overflow(u32),
}

impl Residual {
    /// From what the command wanted to move (`needed`) and what the initiator allowed
    /// (`expected`), per RFC 7143 §11.4.5.
    pub fn of(needed: u64, expected: u32) -> Self {
        let expected = u64::from(expected);
        match needed.cmp(&expected) {
            std::cmp::Ordering::Equal => Residual::None,
            std::cmp::Ordering::Less => Residual::Underflow((expected - needed) as u32),
            std::cmp::Ordering::Greater => {
                Residual::Overflow(u32::try_from(needed - expected).unwrap_or(u32::MAX))
            }
        }
    }
    fn flags_and_count(self) -> (u8, u32) {
        match self {
            Residual::None => (0, 0),
            Residual::Overflow(n) => (0x04, n),
            Residual::Underflow(n) => (0x02, n),
        }
    }
}

/// SCSI Response (RFC 7143 §11.4). The data segment, when sense is present, is
/// `SenseLength(2) || sense`.
#[derive(Debug, Clone, Copy)]
pub struct ScsiResponse {
    pub itt: u32,
    /// 0x00 command completed at target, 0x01 target failure.
    pub response: u8,
    pub status: u8,
    pub exp_data_sn: u32,
    pub residual: Residual,
    pub data_len: usize,
}

impl ScsiResponse {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let (rf, count) = self.residual.flags_and_count();
        BhsWriter::new(opcode::SCSI_RESPONSE, 0x80 | rf)
            .u8_at(2, self.response)
            .u8_at(3, self.status)
            .data_len(self.data_len)
            .u32_at(16, self.itt)
            .u32_at(36, self.exp_data_sn)
            .u32_at(44, count)
            .finish()
    }
}

/// SCSI Data-In (RFC 7143 §11.7). With `status = Some(..)` this is the final PDU of
/// the command and carries its status (the S bit), saving a SCSI Response.
#[derive(Debug, Clone, Copy)]
pub struct DataIn {
    pub final_: bool,
    pub status: Option<u8>,
    pub lun: u64,
    pub itt: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub residual: Residual,
    pub data_len: usize,
}

impl DataIn {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let mut flags = 0u8;
        if self.final_ {
            flags |= 0x80;
        }
        let mut w = BhsWriter::new(opcode::DATA_IN, 0)
            .data_len(self.data_len)
            .u64_at(8, self.lun)
            .u32_at(16, self.itt)
            .u32_at(20, NO_TAG)
            .u32_at(36, self.data_sn)
            .u32_at(40, self.buffer_offset);
        if let Some(status) = self.status {
            let (rf, count) = self.residual.flags_and_count();
            flags |= 0x01 | rf;
            w = w.u8_at(3, status).u32_at(44, count);
        }
        w.u8_at(1, flags).finish()
    }
}

/// Ready To Transfer (RFC 7143 §11.8).
#[derive(Debug, Clone, Copy)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

impl R2t {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::R2T, 0x80)
            .u64_at(8, self.lun)
            .u32_at(16, self.itt)
            .u32_at(20, self.ttt)
            .u32_at(36, self.r2t_sn)
            .u32_at(40, self.buffer_offset)
            .u32_at(44, self.desired_len)
            .finish()
    }
}

/// NOP-In (RFC 7143 §11.19): an answer to a NOP-Out (ITT echoed, TTT = NO_TAG) or a
/// target ping (ITT = NO_TAG, TTT set, expecting a NOP-Out back).
#[derive(Debug, Clone, Copy)]
pub struct NopIn {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub data_len: usize,
}

impl NopIn {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::NOP_IN, 0x80)
            .data_len(self.data_len)
            .u64_at(8, self.lun)
            .u32_at(16, self.itt)
            .u32_at(20, self.ttt)
            .finish()
    }
}

/// Task Management Function Response (RFC 7143 §11.6).
#[derive(Debug, Clone, Copy)]
pub struct TaskMgmtResp {
    pub response: u8,
    pub itt: u32,
}

impl TaskMgmtResp {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::TASK_MGMT_RESP, 0x80)
            .u8_at(2, self.response)
            .u32_at(16, self.itt)
            .finish()
    }
}

/// Login Response (RFC 7143 §11.13).
#[derive(Debug, Clone, Copy)]
pub struct LoginResp {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub status_class: u8,
    pub status_detail: u8,
    pub data_len: usize,
}

impl LoginResp {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let flags = (u8::from(self.transit) << 7)
            | (u8::from(self.cont) << 6)
            | ((self.csg & 3) << 2)
            | (self.nsg & 3);
        let mut w = BhsWriter::new(opcode::LOGIN_RESP, flags)
            .u8_at(2, 0)
            .u8_at(3, self.version_active)
            .data_len(self.data_len)
            .u16_at(14, self.tsih)
            .u32_at(16, self.itt)
            .sns(self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn)
            .u8_at(36, self.status_class)
            .u8_at(37, self.status_detail);
        w.bytes[8..14].copy_from_slice(&self.isid);
        w.finish()
    }
}

/// Text Response (RFC 7143 §11.11).
#[derive(Debug, Clone, Copy)]
pub struct TextResp {
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub data_len: usize,
}

impl TextResp {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        let flags = (u8::from(self.final_) << 7) | (u8::from(self.cont) << 6);
        BhsWriter::new(opcode::TEXT_RESP, flags)
            .data_len(self.data_len)
            .u64_at(8, self.lun)
            .u32_at(16, self.itt)
            .u32_at(20, self.ttt)
            .finish()
    }
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Debug, Clone, Copy)]
pub struct LogoutResp {
    pub response: u8,
    pub itt: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl LogoutResp {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::LOGOUT_RESP, 0x80)
            .u8_at(2, self.response)
            .u32_at(16, self.itt)
            .u16_at(40, self.time2wait)
            .u16_at(42, self.time2retain)
            .finish()
    }
}

/// Asynchronous Message (RFC 7143 §11.9).
#[derive(Debug, Clone, Copy)]
pub struct AsyncMsg {
    pub lun: u64,
    /// 1 = target requests logout, 2 = target will drop the connection,
    /// 3 = target will drop all connections of the session.
    pub event: u8,
    pub parameter1: u16,
    pub parameter2: u16,
    pub parameter3: u16,
    pub data_len: usize,
}

impl AsyncMsg {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::ASYNC_MSG, 0x80)
            .data_len(self.data_len)
            .u64_at(8, self.lun)
            .u32_at(16, NO_TAG)
            .u8_at(36, self.event)
            .u16_at(38, self.parameter1)
            .u16_at(40, self.parameter2)
            .u16_at(42, self.parameter3)
            .finish()
    }
}

/// Reject (RFC 7143 §11.17). The data segment is the rejected PDU's header.
#[derive(Debug, Clone, Copy)]
pub struct Reject {
    pub reason: u8,
    pub data_len: usize,
}

impl Reject {
    pub fn encode(&self) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::REJECT, 0x80)
            .u8_at(2, self.reason)
            .data_len(self.data_len)
            .u32_at(16, NO_TAG)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scsi_command_golden_bytes() {
        // READ(10) of 1 block at LBA 0x1234 on LUN 1, ITT 0x10, EDTL 512, CmdSN 7.
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x01;
        bhs[1] = 0xc1; // F, R, SIMPLE
        bhs[9] = 0x01;
        bhs[16..20].copy_from_slice(&0x10u32.to_be_bytes());
        bhs[20..24].copy_from_slice(&512u32.to_be_bytes());
        bhs[24..28].copy_from_slice(&7u32.to_be_bytes());
        bhs[32..42].copy_from_slice(&[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 1, 0]);
        let Request::ScsiCommand(c) = Request::parse(&bhs, &[]).unwrap() else {
            panic!("not a command")
        };
        assert!(c.final_ && c.read && !c.write);
        assert_eq!(c.task_attr, 1);
        assert_eq!(c.lun, 0x0001_0000_0000_0000);
        assert_eq!((c.itt, c.expected_data_len, c.cmd_sn), (0x10, 512, 7));
        assert_eq!(&c.cdb[..10], &[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 1, 0]);
    }

    #[test]
    fn extended_cdb_ahs_appends() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x01;
        bhs[1] = 0x80;
        bhs[4] = 2;
        bhs[32] = 0x7f;
        // Length 9 (reserved byte + 8 CDB bytes), type 1, then padding to 12 bytes.
        let ahs = [0, 9, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let Request::ScsiCommand(c) = Request::parse(&bhs, &ahs).unwrap() else {
            panic!()
        };
        assert_eq!(c.cdb.len(), 24);
        assert_eq!(&c.cdb[16..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Request::parse(&bhs, &ahs[..5]), Err(PduError::BadAhs));
    }

    #[test]
    fn data_in_with_status_golden() {
        let b = DataIn {
            final_: true,
            status: Some(0),
            lun: 0,
            itt: 0xabcd,
            data_sn: 2,
            buffer_offset: 8192,
            residual: Residual::Underflow(512),
            data_len: 4096,
        }
        .encode();
        assert_eq!(b[0], 0x25);
        assert_eq!(b[1], 0x80 | 0x02 | 0x01);
        assert_eq!(&b[5..8], &[0, 0x10, 0]);
        assert_eq!(&b[20..24], &[0xff; 4]);
        // StatSN, ExpCmdSN, MaxCmdSN are left for the writer to stamp at send time.
        assert_eq!(&b[24..36], &[0; 12]);
        assert_eq!(u32::from_be_bytes([b[36], b[37], b[38], b[39]]), 2);
        assert_eq!(u32::from_be_bytes([b[40], b[41], b[42], b[43]]), 8192);
        assert_eq!(u32::from_be_bytes([b[44], b[45], b[46], b[47]]), 512);
    }

    #[test]
    fn residual_of() {
        assert_eq!(Residual::of(512, 512), Residual::None);
        assert_eq!(Residual::of(512, 1024), Residual::Underflow(512));
        assert_eq!(Residual::of(1024, 512), Residual::Overflow(512));
    }

    #[test]
    fn unknown_opcode_is_error() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x1c;
        assert_eq!(
            Request::parse(&bhs, &[]),
            Err(PduError::UnknownOpcode(0x1c))
        );
    }
}
