//! oxtgt's copy manager (SPC-4 third-party copy): EXTENDED COPY (LID1) parameter
//! lists, list IDs and results, and an engine that moves data between backstores on
//! their fastest path. It plugs into the SCSI device server through
//! [`scsi::tpc::CopyManager`] and finds LUs only through a [`Resolver`] that answers
//! for one initiator's access rights.

#![forbid(unsafe_code)]

pub mod engine;
mod manager;
pub mod params;

pub use manager::{LuCounters, Manager, Resolver, MAX_HELD_PER_NEXUS, RETENTION};
