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
//!  NOP-Out, Logout, SNACK, stray Login ─► control::answer ──► reply / close
//!  silence (time passed in) ─► keepalive::Keepalive ──► NOP-In ping / close
//!  Login Requests ─► login::LoginPhase ──► Login Responses, TSIH, deadline
//! ```
//!
//! StatSN, ExpCmdSN and MaxCmdSN are stamped at send time by [`stamp::Stamper`]
//! from the [`stamp::SessionWindow`], so PDUs are built with zeros there. The
//! connection task keeps only I/O: reading PDUs into buffers, running commands,
//! writing bytes, sleeping until the deadlines these types return.

pub mod control;
pub mod data_in;
pub mod keepalive;
pub mod login;
pub mod order;
pub mod stamp;
pub mod write;

#[cfg(test)]
mod pair_tests;
#[cfg(test)]
mod tests;
