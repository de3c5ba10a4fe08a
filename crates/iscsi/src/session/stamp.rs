//! Sequence numbers on outgoing PDUs (RFC 7143 §4.2.2): StatSN, ExpCmdSN and
//! MaxCmdSN are written into bytes 24..36 of every target PDU when it is sent, not
//! when it is built, so they are always current and always in send order.
//!
//! [`SessionWindow`] is the CmdSN window shared by the side that admits commands
//! (the reader) and the side that advertises it (the writer); [`Stamper`] owns the
//! StatSN counter and fills the fields per [`SnMode`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::pdu::BHS_LEN;
use crate::seq::CmdWindow;

/// How bytes 24..28 (StatSN) of a PDU are filled at send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnMode {
    /// Data-In without status: StatSN reserved (zero).
    NoStat,
    /// StatSN = the next StatSN, not advanced (R2T, unsolicited NOP-In, Reject,
    /// Asynchronous Message: RFC 7143 §11.8.2, §11.9, §11.17, §11.18).
    Current,
    /// StatSN = the next StatSN, then advanced (every PDU that carries status:
    /// SCSI Response, Data-In with S, TMF/Text/Logout responses, NOP-In answering a
    /// NOP-Out).
    Advance,
}

/// The CmdSN window as both sides of a connection see it.
#[derive(Debug)]
pub struct SessionWindow {
    window: Mutex<CmdWindow>,
    /// Admitted non-immediate commands whose final response has not been sent.
    in_flight: AtomicU32,
}

impl SessionWindow {
    pub fn new(first_cmd_sn: u32, depth: u32) -> Self {
        Self {
            window: Mutex::new(CmdWindow::new(first_cmd_sn, depth)),
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn window(&self) -> MutexGuard<'_, CmdWindow> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A command was admitted: it holds a slot until its final response is sent.
    pub fn admitted(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// An admitted command's final response was sent: its slot is free again.
    pub fn completed(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Admitted commands without their final response yet.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Current ExpCmdSN and MaxCmdSN.
    pub fn sns(&self) -> (u32, u32) {
        let in_flight = self.in_flight();
        let mut w = self.window();
        (w.exp_cmd_sn(), w.max_cmd_sn(in_flight))
    }
}

/// The StatSN counter of one connection.
#[derive(Debug, Clone)]
pub struct Stamper {
    stat_sn: u32,
}

impl Stamper {
    /// `next` is the StatSN of the first full-feature response: one past the last
    /// Login Response's.
    pub fn new(next: u32) -> Self {
        Self { stat_sn: next }
    }

    /// The StatSN the next status-carrying PDU gets.
    pub fn next(&self) -> u32 {
        self.stat_sn
    }

    /// Takes the next StatSN for a PDU that carries status and is stamped by its
    /// encoder (Login Responses).
    pub fn advance(&mut self) -> u32 {
        let sn = self.stat_sn;
        self.stat_sn = sn.wrapping_add(1);
        sn
    }

    /// Fills StatSN (per `mode`), ExpCmdSN and MaxCmdSN of `bhs`.
    pub fn stamp(&mut self, bhs: &mut [u8; BHS_LEN], mode: SnMode, exp: u32, max: u32) {
        match mode {
            SnMode::NoStat => bhs[24..28].fill(0),
            SnMode::Current => bhs[24..28].copy_from_slice(&self.stat_sn.to_be_bytes()),
            SnMode::Advance => {
                bhs[24..28].copy_from_slice(&self.stat_sn.to_be_bytes());
                self.stat_sn = self.stat_sn.wrapping_add(1);
            }
        }
        bhs[28..32].copy_from_slice(&exp.to_be_bytes());
        bhs[32..36].copy_from_slice(&max.to_be_bytes());
    }
}
