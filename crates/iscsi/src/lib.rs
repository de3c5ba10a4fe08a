//! Sans-IO iSCSI target protocol (RFC 7143).
//!
//! This crate turns bytes into typed PDUs and typed decisions into bytes. It owns no
//! socket and reads no clock, so everything here is unit-, property- and fuzz-testable.
//!
//! ```text
//!  bytes ──► framer (BHS + AHS + digests + data) ──► pdu::Request
//!                                                     │
//!   session::login::LoginPhase (login::Negotiator,    │
//!     TSIH, StatSN, deadline) ◄───────────────────────┤
//!   session::{order, write, data_in, control,         │
//!     keepalive} (full-feature phase) ◄───────────────┘
//!  bytes ◄── pdu::*::encode, stamped by session::stamp::Stamper at send time
//! ```
#![forbid(unsafe_code)]

pub mod chap;
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
