//! The full-feature phase's sequencing, sans IO: what the connection task asks
//! before it acts, with no socket and no clock. The connection keeps the I/O (reading
//! data into buffers, running commands, writing PDUs); these types decide.
//!
//! ```text
//!  request PDU ──► order::CmdQueue::offer ──► requests to deliver, in CmdSN order
//!                   (CmdWindow: ExpCmdSN, MaxCmdSN; ahead ones wait; out of
//!                    window dropped; immediate ones bypass)
//!  write command ─► write::WriteSeq ──► R2Ts to send; each Data-Out checked (TTT,
//!                   DataSN, offset, F) and accepted; complete() when all arrived
//!  command done ──► data_in::plan ──► Data-In PDUs (segment and burst split,
//!                   status piggybacked when GOOD) + SCSI Response, residuals
//! ```
//!
//! StatSN, ExpCmdSN and MaxCmdSN are stamped by the connection's writer at send time
//! from the [`crate::seq::CmdWindow`], so PDUs are built with zeros there.

pub mod data_in;
pub mod order;
pub mod write;

#[cfg(test)]
mod tests;
