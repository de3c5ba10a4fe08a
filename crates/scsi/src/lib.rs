//! SCSI device server for direct-access logical units (SPC-4, SBC-3).
//!
//! ```text
//! CDB bytes ──► cdb::Command::parse ──► LogicalUnit::execute ──► Outcome (+ Data-In bytes)
//!                   │ (Sense on error)        │ unit attentions, reservations, mode state
//!                   ▼                         ▼
//!              sense::Sense ◄──────── backstore::Backstore (positional I/O)
//! ```
//!
//! The transport (iSCSI) never looks inside a CDB beyond [`cdb::Command::data_out_len`];
//! everything SCSI lives here. Execution is synchronous and runs on the daemon's
//! blocking I/O pool.
#![forbid(unsafe_code)]

pub mod cdb;
pub mod error;
pub mod inquiry;
pub mod locks;
pub mod lu;
pub mod mode;
pub mod params;
pub mod pr;
pub mod report;
pub mod sbc;
pub mod sense;
pub mod ssc;
pub mod testing;
pub mod tpc;

pub use cdb::Command;
pub use lu::{Ctx, LogicalUnit, LuIdentity, Nexus, Outcome};
pub use sense::{Asc, Sense, SenseKey};
