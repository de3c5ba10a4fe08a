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

/// The PDUs that answer one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInPlan {
    pub data_in: Vec<DataInPdu>,
    /// A SCSI Response follows the Data-In PDUs (status not piggybacked), carrying
    /// this ExpDataSN.
    pub response: Option<u32>,
    pub residual: Residual,
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
    let (seg, burst) = (max_seg.max(1), max_burst.max(1));
    let mut data_in = Vec::new();
    let mut off = 0usize;
    let mut data_sn = 0u32;
    while off < send {
        let to_burst_end = burst - (off % burst);
        let len = seg.min(send - off).min(to_burst_end);
        let last = off + len == send;
        data_in.push(DataInPdu {
            data_sn,
            offset: off,
            len,
            final_: last || (off + len).is_multiple_of(burst),
            with_status: last && a.good,
        });
        off += len;
        data_sn += 1;
    }
    let response = (send == 0 || !a.good).then_some(data_sn);
    DataInPlan {
        data_in,
        response,
        residual,
    }
}
