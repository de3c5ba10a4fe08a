//! Sans-IO iSCSI target protocol (RFC 7143).
//!
//! This crate turns bytes into typed PDUs and typed decisions into bytes. It owns no
//! socket and reads no clock, so everything here is unit-, property- and fuzz-testable.
//!
//! ```text
//!  bytes ──► framer (BHS + AHS + digests + data) ──► pdu::Request
//!                                                     │
//!        login::Negotiator (login phase) ◄────────────┤
//!        seq::CmdWindow (full-feature phase) ◄────────┘
//!  bytes ◄── pdu::*::encode (responses, Data-In, R2T, NOP-In, Reject, ...)
//! ```
#![forbid(unsafe_code)]

pub mod digest;
pub mod framer;
pub mod keys;
pub mod login;
pub mod name;
pub mod pdu;
pub mod seq;
pub mod session;

pub use framer::{DigestConfig, PduError};
pub use login::{NegotiatedParams, TargetLimits};
