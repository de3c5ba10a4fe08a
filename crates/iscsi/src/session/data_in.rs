//! A command's answer as PDUs (RFC 7143 §11.4, §11.7): Data-In split at
//! MaxRecvDataSegmentLength (the initiator's) and at MaxBurstLength boundaries, the F
//! bit closing each burst, status carried in the last Data-In when it is GOOD without
//! sense, otherwise a SCSI Response after the data; residuals from what the command
//! wanted against the Expected Data Transfer Length.

use crate::pdu::Residual;

/// One Data-In PDU: a slice of the command's data buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInPdu {
    pub data_sn: u32,
    pub offset: usize,
    pub len: usize,
    /// F: the last PDU of a burst (or of the data).
    pub final_: bool,
    /// S: status rides in this PDU.
    pub with_status: bool,
}

/// The PDUs that answer one command. The Data-In PDUs are produced on demand
/// ([`DataInPlan::data_in`]), so planning allocates nothing per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInPlan {
    /// Bytes of Data-In sent.
    send: usize,
    seg: usize,
    burst: usize,
    good: bool,
    /// A SCSI Response follows the Data-In PDUs (status not piggybacked), carrying
    /// this ExpDataSN.
    pub response: Option<u32>,
    pub residual: Residual,
}

impl DataInPlan {
    /// The Data-In PDUs, in order.
    pub fn data_in(&self) -> impl Iterator<Item = DataInPdu> + '_ {
        let mut off = 0usize;
        let mut data_sn = 0u32;
        std::iter::from_fn(move || {
            if off >= self.send {
                return None;
            }
            let to_burst_end = self.burst - (off % self.burst);
            let len = self.seg.min(self.send - off).min(to_burst_end);
            let last = off + len == self.send;
            let pdu = DataInPdu {
                data_sn,
                offset: off,
                len,
                final_: last || (off + len).is_multiple_of(self.burst),
                with_status: last && self.good,
            };
            off += len;
            data_sn += 1;
            Some(pdu)
        })
    }
}

/// What a command produced and what the initiator asked for.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Expected Data Transfer Length.
    pub edtl: u32,
    /// The command reads (R bit): Data-In may be sent.
    pub read: bool,
    /// Bytes of Data-Out the CDB wanted (for a write's residual).
    pub needed_out: u64,
    /// Bytes of Data-In the command produced.
    pub data_in: usize,
    /// GOOD status with no sense: status may ride in the last Data-In.
    pub good: bool,
}

/// Plans the PDUs for `a` with the initiator's MaxRecvDataSegmentLength `max_seg`
/// and the session's MaxBurstLength `max_burst`.
pub fn plan(a: Answer, max_seg: usize, max_burst: usize) -> DataInPlan {
    let residual = if a.data_in > 0 || a.needed_out == 0 {
        Residual::of(a.data_in as u64, a.edtl)
    } else {
        Residual::of(a.needed_out, a.edtl)
    };
    let send = if a.read {
        a.data_in.min(a.edtl as usize)
    } else {
        0
    };
    let mut p = DataInPlan {
        send,
        seg: max_seg.max(1),
        burst: max_burst.max(1),
        good: a.good,
        response: None,
        residual,
    };
    if send == 0 || !a.good {
        p.response = Some(p.data_in().count() as u32);
    }
    p
}
