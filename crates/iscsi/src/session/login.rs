//! The login phase of one connection, sans IO: each Login Request's bytes in, the
//! Login Response's bytes out, with the sequence numbers, the TSIH decision and the
//! login deadline handled here rather than in the socket code.
//!
//! ```text
//!  Login Request (BHS, AHS, data) ──► LoginPhase::handle ──► Login Response bytes
//!                                       │  login::Negotiator (keys, stages, ACL)
//!                                       │  SessionTable (TSIH: new session / MC/S)
//!                                       └► step: Continue | FullFeature(params) | Close
//!  now ──► LoginPhase::expired: a peer that has not finished by the deadline is dropped
//! ```

use std::time::{Duration, Instant};

use crate::chap::ChapSource;
use crate::framer::{self, DigestConfig};
use crate::login::{LoginOutcome, LoginPolicy, LoginStatus, NegotiatedParams, Negotiator};
use crate::pdu::{Request, BHS_LEN};
use crate::session::stamp::Stamper;
use crate::TargetLimits;

/// What the login phase needs to know about the target's other sessions.
pub trait SessionTable {
    /// Whether a session with this TSIH is running (for the answer to a login that
    /// tries to add a connection to it).
    fn tsih_in_use(&self, tsih: u16) -> bool;
    /// A fresh, non-zero TSIH for a new session.
    fn new_tsih(&self) -> u16;
}

/// Where the connection goes after a login PDU.
#[derive(Debug)]
pub enum LoginStep {
    /// Send the reply and read the next Login Request.
    Continue,
    /// Send the reply; the connection is in full-feature phase with these
    /// parameters (the TSIH assigned), and its first StatSN is [`LoginPhase::stamper`]'s.
    FullFeature(Box<NegotiatedParams>),
    /// Send the reply if there is one, then close (login failed, or a PDU that is
    /// not a Login Request arrived: RFC 7143 §6.3 allows only Login PDUs here).
    Close(String),
}

/// The answer to one login PDU.
#[derive(Debug)]
pub struct LoginAnswer {
    /// The encoded Login Response (no digests during login), or empty.
    pub reply: Vec<u8>,
    pub step: LoginStep,
    /// The reply's status class and detail (02/01: authentication failed).
    pub status: (u8, u8),
}

/// The login phase of one connection.
#[derive(Debug)]
pub struct LoginPhase {
    negotiator: Negotiator,
    stamper: Stamper,
    depth: u32,
    deadline: Instant,
}

impl LoginPhase {
    /// A connection accepted at `now` that must reach full-feature phase within
    /// `timeout`. `first_stat_sn` is the StatSN of the first Login Response (a
    /// random start makes StatSNs of different connections unrelated); `depth` is
    /// the command window the session will advertise.
    pub fn new(
        limits: TargetLimits,
        depth: u32,
        first_stat_sn: u32,
        now: Instant,
        timeout: Duration,
        chap_source: Box<dyn ChapSource>,
    ) -> Self {
        Self {
            negotiator: Negotiator::new(limits).with_chap_source(chap_source),
            stamper: Stamper::new(first_stat_sn),
            depth: depth.max(1),
            deadline: now + timeout,
        }
    }

    /// When an unfinished login is given up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// The initiator logging in, once its first Login Request named it ("" before).
    pub fn initiator(&self) -> &str {
        self.negotiator.initiator()
    }

    /// The StatSN counter, to carry into full-feature phase.
    pub fn stamper(&self) -> Stamper {
        self.stamper.clone()
    }

    /// Handles one PDU read during login.
    pub fn handle(
        &mut self,
        bhs: &[u8; BHS_LEN],
        ahs: &[u8],
        data: &[u8],
        policy: &dyn LoginPolicy,
        sessions: &dyn SessionTable,
    ) -> LoginAnswer {
        let req = match Request::parse(bhs, ahs) {
            Ok(Request::Login(l)) => l,
            Ok(_) => return close("a PDU other than Login Request during login".into()),
            Err(e) => return close(format!("malformed PDU during login: {e}")),
        };
        let mut reply = self.negotiator.handle(&req, data, policy);
        let step = match reply.outcome {
            LoginOutcome::Continue => LoginStep::Continue,
            LoginOutcome::Failed(st) => LoginStep::Close(match self.negotiator.failure() {
                Some(why) => format!("{} ({why})", refused(st)),
                None => refused(st),
            }),
            LoginOutcome::Complete(mut p) => {
                if p.tsih != 0 {
                    // Adding a connection to an existing session (MC/S) is not
                    // offered: MaxConnections is 1 (RFC 7143 §11.13.5).
                    let st = if sessions.tsih_in_use(p.tsih) {
                        LoginStatus::TOO_MANY_CONNECTIONS
                    } else {
                        LoginStatus::SESSION_DOES_NOT_EXIST
                    };
                    reply.header.status_class = st.0;
                    reply.header.status_detail = st.1;
                    reply.header.transit = false;
                    reply.data.clear();
                    LoginStep::Close(refused(st))
                } else {
                    p.tsih = sessions.new_tsih();
                    reply.header.tsih = p.tsih;
                    LoginStep::FullFeature(p)
                }
            }
        };
        // Every Login Response carries status, so StatSN advances (RFC 7143
        // §11.13.4). Login requests do not advance CmdSN: ExpCmdSN is theirs.
        reply.header.stat_sn = self.stamper.advance();
        reply.header.exp_cmd_sn = req.cmd_sn;
        reply.header.max_cmd_sn = req.cmd_sn.wrapping_add(self.depth).wrapping_sub(1);
        reply.header.data_len = reply.data.len();
        let mut out = Vec::with_capacity(BHS_LEN + reply.data.len() + 4);
        framer::encode(
            &reply.header.encode(),
            &[],
            &reply.data,
            DigestConfig::default(),
            &mut out,
        );
        LoginAnswer {
            reply: out,
            step,
            status: (reply.header.status_class, reply.header.status_detail),
        }
    }
}

fn close(why: String) -> LoginAnswer {
    LoginAnswer {
        reply: Vec::new(),
        step: LoginStep::Close(why),
        status: (0, 0),
    }
}

fn refused(st: LoginStatus) -> String {
    format!("login refused with status {:02x}/{:02x}", st.0, st.1)
}
