//! Answers to the full-feature phase's control PDUs that need nothing from the SCSI
//! layer: NOP-Out, Logout, SNACK, a Login Request after login, and Reject for a PDU
//! that cannot be parsed. Text and task management need the target's state and are
//! answered by the daemon.

use crate::pdu::{reject_reason, LogoutResp, NopIn, Reject, Request, BHS_LEN, NO_TAG};
use crate::session::stamp::SnMode;

/// One PDU to send: header (SNs filled at send time per `sn`) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bhs: [u8; BHS_LEN],
    pub sn: SnMode,
    pub data: Vec<u8>,
}

/// What to do about a control PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Send this; it carries status when `sn` is [`SnMode::Advance`].
    Reply(Reply),
    /// Logout accepted: stop reading, let running commands answer, send the
    /// response, then close (RFC 7143 §11.14).
    Logout(Reply),
    /// Nothing to send (the answer to our own ping).
    Nothing,
    /// Not a control PDU: the caller handles it.
    NotControl,
}

/// Reject of the PDU whose header is `bhs` (RFC 7143 §11.17.1: the data segment is
/// that header). A Reject does not carry status: StatSN is not advanced.
pub fn reject(reason: u8, bhs: &[u8; BHS_LEN]) -> Reply {
    let r = Reject {
        reason,
        data_len: BHS_LEN,
    };
    Reply {
        bhs: r.encode(),
        sn: SnMode::Current,
        data: bhs.to_vec(),
    }
}

/// The answer to `req` (its header `bhs`, its data segment `data`), where
/// `max_send` is the initiator's MaxRecvDataSegmentLength.
pub fn answer(req: &Request, bhs: &[u8; BHS_LEN], data: Vec<u8>, max_send: usize) -> Control {
    match req {
        Request::NopOut(n) if n.itt == NO_TAG => Control::Nothing,
        Request::NopOut(n) => {
            // The ping data comes back, within what the initiator accepts.
            let mut ping = data;
            ping.truncate(max_send);
            let nop = NopIn {
                lun: n.lun,
                itt: n.itt,
                ttt: NO_TAG,
                data_len: ping.len(),
            };
            Control::Reply(Reply {
                bhs: nop.encode(),
                sn: SnMode::Advance,
                data: ping,
            })
        }
        Request::Logout(l) => {
            // 0 = close the session, 1 = close the connection (the only one);
            // 2 = connection recovery, which ErrorRecoveryLevel 0 does not support.
            let response = match l.reason {
                0 | 1 => 0,
                _ => 2,
            };
            let reply = Reply {
                bhs: LogoutResp {
                    response,
                    itt: l.itt,
                    time2wait: 0,
                    time2retain: 0,
                }
                .encode(),
                sn: SnMode::Advance,
                data: Vec::new(),
            };
            if response == 0 {
                Control::Logout(reply)
            } else {
                Control::Reply(reply)
            }
        }
        Request::Snack(_) => Control::Reply(reject(reject_reason::SNACK_REJECT, bhs)),
        Request::Login(_) => Control::Reply(reject(reject_reason::PROTOCOL_ERROR, bhs)),
        Request::ScsiCommand(_) | Request::DataOut(_) | Request::TaskMgmt(_) | Request::Text(_) => {
            Control::NotControl
        }
    }
}
