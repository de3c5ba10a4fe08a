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

mod response;
pub use response::*;

#[cfg(test)]
mod tests;
