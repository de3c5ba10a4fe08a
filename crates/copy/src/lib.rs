//! oxtgt's copy manager (SPC-4 third-party copy): list IDs and results, copy jobs
//! that own the LUs they use and run on the manager's own executor, and an engine that moves data between backstores on
//! their fastest path. It plugs into the SCSI device server through
//! [`scsi::tpc::CopyManager`] and finds LUs only through a [`Resolver`] that answers
//! for one initiator's access rights.

#![forbid(unsafe_code)]

pub mod engine;
mod executor;
mod job;
mod manager;
mod rod;
mod status;
mod stream;
mod token;

pub use manager::{CopyInfo, LuCounters, Manager, Resolver, MAX_HELD_PER_NEXUS, RETENTION};
pub use token::{TokenInfo, TokenLimits, Tokens, TOMBSTONE_RETENTION};
