//! One write's Data-Out sequence (RFC 7143 §4.2.6, §11.7, §11.8): unsolicited data up
//! to FirstBurstLength ending at the F bit, then R2Ts of at most MaxBurstLength, at
//! most MaxOutstandingR2T at a time, each answered by Data-Out PDUs whose TTT, DataSN
//! and buffer offset continue that R2T's sequence exactly. A PDU that breaks
//! sequence is the initiator's protocol error; the caller fails the task.

use std::collections::VecDeque;

use crate::pdu::NO_TAG;

/// An R2T to send: the caller fills in LUN and ITT and encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2tRequest {
    pub ttt: u32,
    pub r2t_sn: u32,
    pub offset: u32,
    pub len: u32,
}

/// A Data-Out's sequencing fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutHeader {
    pub ttt: u32,
    pub data_sn: u32,
    pub offset: usize,
    pub len: usize,
    pub final_: bool,
}

/// A Data-Out that does not continue any open sequence of this write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfSequence;

/// Target transfer tags, unique per connection, never the reserved FFFFFFFFh.
#[derive(Debug, Clone)]
pub struct TttAllocator {
    next: u32,
}

impl Default for TttAllocator {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl TttAllocator {
    pub fn allocate(&mut self) -> u32 {
        let t = self.next;
        self.next = self.next.wrapping_add(1);
        if self.next == NO_TAG {
            self.next = 1;
        }
        t
    }
}

#[derive(Debug, Clone)]
struct R2tState {
    ttt: u32,
    end: usize,
    next_offset: usize,
    data_sn: u32,
}

/// The Data-Out state of one write command.
#[derive(Debug, Clone)]
pub struct WriteSeq {
    /// Bytes the target will use: min(EDTL, what the CDB needs).
    transfer: usize,
    /// Unsolicited Data-Out is still expected (no F bit seen yet).
    unsolicited_open: bool,
    unsolicited_next: usize,
    unsolicited_limit: usize,
    unsolicited_data_sn: u32,
    r2ts: VecDeque<R2tState>,
    next_r2t_offset: usize,
    r2t_sn: u32,
}

impl WriteSeq {
    /// A write of `transfer` bytes whose first `immediate` bytes came with the
    /// command; `unsolicited_open` when Data-Out PDUs without R2T follow (F clear,
    /// InitialR2T=No), up to `unsolicited_limit` bytes in all.
    pub fn new(
        transfer: usize,
        immediate: usize,
        unsolicited_open: bool,
        unsolicited_limit: usize,
    ) -> Self {
        Self {
            transfer,
            unsolicited_open,
            unsolicited_next: immediate,
            unsolicited_limit,
            unsolicited_data_sn: 0,
            r2ts: VecDeque::new(),
            next_r2t_offset: immediate,
            r2t_sn: 0,
        }
    }

    /// Whether `h` is the next PDU of an open sequence. A solicited sequence must
    /// also not end (F bit) before its R2T's range is filled: the buffer would be
    /// written with bytes that never arrived.
    pub fn check(&self, h: &DataOutHeader) -> Result<(), OutOfSequence> {
        let end = h.offset.checked_add(h.len).ok_or(OutOfSequence)?;
        let ok = if h.ttt == NO_TAG {
            self.unsolicited_open
                && h.data_sn == self.unsolicited_data_sn
                && h.offset == self.unsolicited_next
                && end <= self.unsolicited_limit
        } else {
            self.r2ts.iter().any(|r| {
                r.ttt == h.ttt
                    && h.data_sn == r.data_sn
                    && h.offset == r.next_offset
                    && end <= r.end
                    && (!h.final_ || end == r.end)
            })
        };
        if ok {
            Ok(())
        } else {
            Err(OutOfSequence)
        }
    }

    /// Records a Data-Out that [`WriteSeq::check`] accepted and whose data arrived.
    pub fn accept(&mut self, h: &DataOutHeader) {
        if h.ttt == NO_TAG {
            self.unsolicited_next += h.len;
            self.unsolicited_data_sn += 1;
            if h.final_ {
                self.unsolicited_open = false;
                self.next_r2t_offset = self.next_r2t_offset.max(self.unsolicited_next);
            }
        } else if let Some(i) = self.r2ts.iter().position(|r| r.ttt == h.ttt) {
            let r = &mut self.r2ts[i];
            r.next_offset += h.len;
            r.data_sn += 1;
            if h.final_ || r.next_offset >= r.end {
                self.r2ts.remove(i);
            }
        }
    }

    /// The R2Ts to send now: none while unsolicited data is still expected, then as
    /// many as MaxOutstandingR2T allows, each at most MaxBurstLength.
    pub fn next_r2ts(
        &mut self,
        max_burst: usize,
        max_outstanding: usize,
        ttts: &mut TttAllocator,
    ) -> Vec<R2tRequest> {
        let mut out = Vec::new();
        if self.unsolicited_open {
            return out;
        }
        while self.r2ts.len() < max_outstanding.max(1) && self.next_r2t_offset < self.transfer {
            let len = max_burst.max(1).min(self.transfer - self.next_r2t_offset);
            let ttt = ttts.allocate();
            out.push(R2tRequest {
                ttt,
                r2t_sn: self.r2t_sn,
                offset: self.next_r2t_offset as u32,
                len: len as u32,
            });
            self.r2t_sn += 1;
            self.r2ts.push_back(R2tState {
                ttt,
                end: self.next_r2t_offset + len,
                next_offset: self.next_r2t_offset,
                data_sn: 0,
            });
            self.next_r2t_offset += len;
        }
        out
    }

    /// Every byte of the transfer has arrived.
    pub fn complete(&self) -> bool {
        !self.unsolicited_open && self.r2ts.is_empty() && self.next_r2t_offset >= self.transfer
    }

    /// Bytes the target will use.
    pub fn transfer(&self) -> usize {
        self.transfer
    }
}
