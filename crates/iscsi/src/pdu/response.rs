//! Target PDUs: each type's fields and its encoder. Sequence numbers are left zero
//! here and stamped at send time (`session::stamp`), except in Login Responses.

use super::*;

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
