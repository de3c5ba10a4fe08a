//! What RECEIVE COPY RESULTS (LID1) and THIRD PARTY COPY IN return about a copy:
//! RECEIVE COPY STATUS(LID4) and RECEIVE ROD TOKEN INFORMATION (SPC-4 6.18, 6.20;
//! layout in ROD-TOKENS.md §1.3 and §1.6), and the LID1 status, data and failure
//! details (SPC-4 6.22).
//!
//! ```text
//!  0-3   AVAILABLE DATA (n-3)          12  completion status (SCSI status byte)
//!  4     RESPONSE TO SERVICE ACTION    13  LENGTH OF THE SENSE DATA FIELD
//!  5     COPY OPERATION STATUS         14  SENSE DATA LENGTH
//!  6-7   OPERATION COUNTER             15  TRANSFER COUNT UNITS (F1h: blocks)
//!  8-11  ESTIMATED STATUS UPDATE DELAY 16-23 TRANSFER COUNT
//!  24-25 SEGMENTS PROCESSED            32..  sense data (byte 13 bytes)
//!  RRTI only, at k = 32 + byte 13: ROD TOKEN DESCRIPTORS LENGTH (4 bytes: 0 or
//!  0202h), then 2 bytes of ID FOR CREATING ROD CSCD DESCRIPTOR (0) and the token.
//! ```

use std::sync::atomic::Ordering;
use std::time::Instant;

use scsi::sense::{status, Asc, Sense};

use crate::manager::{Record, Status};
use crate::token::Token;

/// COPY OPERATION STATUS values.
pub(crate) mod op_status {
    pub const COMPLETED: u8 = 0x01;
    pub const COMPLETED_WITH_ERRORS: u8 = 0x02;
    /// Completed, but not every block asked for was transferred: a partial
    /// WRITE USING TOKEN (the transfer count says how far it got).
    pub const PARTIAL: u8 = 0x03;
    pub const IN_PROGRESS_FOREGROUND: u8 = 0x11;
    pub const IN_PROGRESS_BACKGROUND: u8 = 0x12;
    pub const TERMINATED: u8 = 0x60;
}

/// ESTIMATED STATUS UPDATE DELAY once the operation has completed.
const DELAY_COMPLETED: u32 = 0xffff_fffe;
/// While in progress and nothing moved yet, or the size is not known: how long a
/// client should wait before asking again.
const DELAY_RUNNING_MS: u32 = 100;
/// Bounds on the estimate while running.
const DELAY_MIN_MS: u64 = 10;
const DELAY_MAX_MS: u64 = 1000;

/// ESTIMATED STATUS UPDATE DELAY while running: the time the rest should take at
/// the rate so far, within [10 ms, 1 s].
fn running_delay(rec: &Record) -> u32 {
    let (done, total) = (
        rec.bytes.load(Ordering::Relaxed),
        rec.total.load(Ordering::Relaxed),
    );
    if done == 0 || total <= done {
        return DELAY_RUNNING_MS;
    }
    let elapsed = rec.began.elapsed().as_millis() as u64;
    let rest = elapsed.saturating_mul(total - done) / done;
    rest.clamp(DELAY_MIN_MS, DELAY_MAX_MS) as u32
}

type End = (Status, Instant, Option<Sense>);

/// RECEIVE ROD TOKEN INFORMATION: the status of `rec`, then the ROD token
/// descriptors: `token` when the list made one that still lives, else none.
pub(crate) fn rod_token_info(rec: &Record, end: Option<&End>, token: Option<&Token>) -> Vec<u8> {
    let mut b = lid4(rec, end);
    match token {
        Some(t) => {
            b.extend_from_slice(&0x0202u32.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&t.bytes[..]);
        }
        None => b.extend_from_slice(&[0; 4]),
    }
    let avail = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&avail.to_be_bytes());
    b
}

/// RECEIVE COPY STATUS(LID4): the status of `rec` (its end as read by the caller).
pub(crate) fn lid4(rec: &Record, end: Option<&End>) -> Vec<u8> {
    let blocks = rec.blocks.load(Ordering::Relaxed);
    let (op, delay, completion, sense) = match end {
        None | Some((Status::Running, _, _)) => (
            if rec.background.load(Ordering::Acquire) {
                op_status::IN_PROGRESS_BACKGROUND
            } else {
                op_status::IN_PROGRESS_FOREGROUND
            },
            running_delay(rec),
            status::GOOD,
            None,
        ),
        Some((Status::Done, _, _)) => (op_status::COMPLETED, DELAY_COMPLETED, status::GOOD, None),
        Some((Status::Aborted, _, s)) => (
            op_status::TERMINATED,
            DELAY_COMPLETED,
            status::TASK_ABORTED,
            s.clone(),
        ),
        Some((Status::Failed, _, s)) => (
            if blocks > 0 {
                op_status::PARTIAL
            } else {
                op_status::COMPLETED_WITH_ERRORS
            },
            DELAY_COMPLETED,
            status::CHECK_CONDITION,
            s.clone(),
        ),
    };
    let sense = sense.map(|s| s.encode(false)).unwrap_or_default();
    let mut b = vec![0u8; 32];
    b[4] = rec.op as u8;
    b[5] = op;
    b[8..12].copy_from_slice(&delay.to_be_bytes());
    b[12] = completion;
    b[13] = sense.len() as u8;
    b[14] = sense.len() as u8;
    if rec.op == crate::manager::Op::ExtendedCopyLid4 {
        // Segments may name LUs of different block sizes: bytes.
        b[15] = 0x00;
        b[16..24].copy_from_slice(&rec.bytes.load(Ordering::Relaxed).to_be_bytes());
    } else {
        b[15] = 0xf1; // the destination's logical blocks
        b[16..24].copy_from_slice(&blocks.to_be_bytes());
    }
    let segs = rec.segments_done.load(Ordering::Relaxed).min(0xffff) as u16;
    b[24..26].copy_from_slice(&segs.to_be_bytes());
    b.extend_from_slice(&sense);
    let avail = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&avail.to_be_bytes());
    b
}

/// RECEIVE COPY STATUS(LID1) (SPC-4 6.22.2): status, segments processed, and the
/// transfer count in the smallest unit that fits 32 bits (bytes, then KiB, MiB,
/// GiB: units 00h-03h).
pub(crate) fn lid1(rec: &Record, end: Option<&End>) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[3] = 8;
    b[4] = match end.map(|e| e.0) {
        None | Some(Status::Running) => 0x00,
        Some(Status::Done) => 0x01,
        Some(Status::Failed | Status::Aborted) => 0x02,
    };
    let segs = rec.segments_done.load(Ordering::Relaxed).min(0xffff) as u16;
    b[5..7].copy_from_slice(&segs.to_be_bytes());
    let mut count = rec.bytes.load(Ordering::Relaxed);
    let mut unit = 0u8;
    while count > u64::from(u32::MAX) {
        count >>= 10;
        unit += 1;
    }
    b[7] = unit;
    b[8..12].copy_from_slice(&(count as u32).to_be_bytes());
    b
}

/// RECEIVE COPY DATA(LID1) (SPC-4 6.22.3): what 0Dh segments held, once the copy
/// has ended.
pub(crate) fn lid1_data(rec: &Record, end: Option<&End>) -> Result<Vec<u8>, Sense> {
    if end.is_none() {
        return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS));
    }
    let held = rec.held.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = Vec::with_capacity(4 + held.len());
    b.extend_from_slice(&(held.len() as u32).to_be_bytes());
    b.extend_from_slice(&held);
    Ok(b)
}

/// RECEIVE COPY FAILURE DETAILS(LID1) (SPC-4 6.22.5): the sense of a failed copy.
pub(crate) fn lid1_failure_details(end: Option<&End>) -> Result<Vec<u8>, Sense> {
    let mut b = vec![0u8; 60];
    match end {
        None => return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS)),
        Some((_, _, None)) => {}
        Some((_, _, Some(sense))) => {
            let sd = sense.encode(false);
            b[56] = status::CHECK_CONDITION;
            b[58..60].copy_from_slice(&(sd.len() as u16).to_be_bytes());
            b.extend_from_slice(&sd);
            let avail = (b.len() - 4) as u32;
            b[..4].copy_from_slice(&avail.to_be_bytes());
        }
    }
    Ok(b)
}
