//! Login and control exchanges between a simulated initiator and the sans-IO
//! session pieces, over bytes: every PDU the target produces is framed, then
//! decoded by the initiator side and checked as a wire capture would be.

use std::time::{Duration, Instant};

use super::control::{self, Control};
use super::login::{LoginPhase, LoginStep, SessionTable};
use super::order::{CmdQueue, Offer};
use super::stamp::{SessionWindow, SnMode, Stamper};
use crate::framer::{self, DigestConfig};
use crate::login::{LoginPolicy, LoginStatus, SessionType};
use crate::pdu::{opcode, BhsWriter, Request, BHS_LEN, NO_TAG};
use crate::TargetLimits;

struct Open;
impl LoginPolicy for Open {
    fn admit(
        &self,
        _: &str,
        _: SessionType,
        _: Option<&str>,
    ) -> Result<Option<String>, LoginStatus> {
        Ok(None)
    }
}

struct Table {
    running: u16,
}
impl SessionTable for Table {
    fn tsih_in_use(&self, tsih: u16) -> bool {
        tsih == self.running
    }
    fn new_tsih(&self) -> u16 {
        self.running + 1
    }
}

const DEPTH: u32 = 8;
const FIRST_STAT_SN: u32 = 0x00ab_cdef;

/// A Login Request as an initiator frames it.
fn login_pdu(csg: u8, nsg: u8, tsih: u16, cmd_sn: u32, exp_stat_sn: u32, text: &[u8]) -> Vec<u8> {
    let bhs = BhsWriter::new(opcode::LOGIN_REQ | 0x40, 0x80 | (csg << 2) | nsg)
        .data_len(text.len())
        .u8_at(8, 0x80)
        .u8_at(13, 1)
        .u16_at(14, tsih)
        .u32_at(16, 7)
        .u32_at(24, cmd_sn)
        .u32_at(28, exp_stat_sn)
        .finish();
    let mut out = Vec::new();
    framer::encode(&bhs, &[], text, DigestConfig::default(), &mut out);
    out
}

/// Splits framed bytes into header and data, as the connection's reader does.
fn unframe(bytes: &[u8]) -> ([u8; BHS_LEN], Vec<u8>) {
    let bhs: [u8; BHS_LEN] = bytes[..BHS_LEN].try_into().unwrap();
    let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    (bhs, bytes[BHS_LEN..BHS_LEN + len].to_vec())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[derive(Debug)]
struct FixedRandom;
impl crate::chap::ChapSource for FixedRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(7);
    }
}

fn phase(now: Instant) -> LoginPhase {
    LoginPhase::new(
        TargetLimits::default(),
        DEPTH,
        FIRST_STAT_SN,
        now,
        Duration::from_secs(15),
        Box::new(FixedRandom),
    )
}

const SECURITY: &[u8] = b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0SessionType=Normal\0AuthMethod=None\0";
const OPERATIONAL: &[u8] = b"HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=65536\0";

/// Logs in through both stages; returns the target's StatSN counter and the
/// session parameters.
fn log_in(cmd_sn: u32) -> (Stamper, crate::NegotiatedParams) {
    let mut p = phase(Instant::now());
    let table = Table { running: 5 };
    let (bhs, data) = unframe(&login_pdu(0, 1, 0, cmd_sn, 0, SECURITY));
    let a = p.handle(&bhs, &[], &data, &Open, &table);
    assert!(matches!(a.step, LoginStep::Continue));
    let (r, _) = unframe(&a.reply);
    assert_eq!(r[0] & 0x3f, opcode::LOGIN_RESP);
    assert_eq!(be32(&r, 24), FIRST_STAT_SN, "first StatSN");
    assert_eq!(
        be32(&r, 28),
        cmd_sn,
        "ExpCmdSN: login does not advance CmdSN"
    );
    assert_eq!(
        be32(&r, 32),
        cmd_sn.wrapping_add(DEPTH - 1),
        "MaxCmdSN opens the window"
    );
    assert_eq!(&r[36..38], &[0, 0], "status success");

    let (bhs, data) = unframe(&login_pdu(1, 3, 0, cmd_sn, FIRST_STAT_SN + 1, OPERATIONAL));
    let a = p.handle(&bhs, &[], &data, &Open, &table);
    let (r, text) = unframe(&a.reply);
    assert_eq!(
        be32(&r, 24),
        FIRST_STAT_SN + 1,
        "StatSN advances per Login Response"
    );
    assert_eq!(u16::from_be_bytes([r[14], r[15]]), 6, "TSIH assigned");
    assert_eq!(r[1] & 0x80, 0x80, "T: moving to full-feature phase");
    assert!(String::from_utf8_lossy(&text).contains("MaxRecvDataSegmentLength="));
    let LoginStep::FullFeature(params) = a.step else {
        panic!("login did not complete: {:?}", a.step)
    };
    assert_eq!(params.tsih, 6);
    assert_eq!(params.first_cmd_sn, cmd_sn);
    (p.stamper(), *params)
}

#[test]
fn login_then_full_feature_sequence_numbers_continue() {
    let cmd_sn = 0xffff_fffe; // the window wraps during the test
    let (mut stamper, params) = log_in(cmd_sn);
    assert_eq!(stamper.next(), FIRST_STAT_SN + 2);
    let window = SessionWindow::new(params.first_cmd_sn, DEPTH);
    let mut queue: CmdQueue<u32> = CmdQueue::default();

    // An immediate NOP-Out ping: answered with the next StatSN, which advances;
    // immediate requests do not move ExpCmdSN.
    let nop = BhsWriter::new(opcode::NOP_OUT | 0x40, 0x80)
        .data_len(4)
        .u32_at(16, 0x11)
        .u32_at(20, NO_TAG)
        .u32_at(24, cmd_sn)
        .finish();
    let req = Request::parse(&nop, &[]).unwrap();
    let Control::Reply(r) = control::answer(&req, &nop, b"ping".to_vec(), 8192) else {
        panic!()
    };
    assert_eq!(r.sn, SnMode::Advance);
    let mut out = r.bhs;
    let (exp, max) = window.sns();
    stamper.stamp(&mut out, r.sn, exp, max);
    assert_eq!(be32(&out, 16), 0x11, "ITT echoed");
    assert_eq!(be32(&out, 24), FIRST_STAT_SN + 2);
    assert_eq!(
        (be32(&out, 28), be32(&out, 32)),
        (cmd_sn, cmd_sn.wrapping_add(DEPTH - 1))
    );
    assert_eq!(r.data, b"ping");

    // Three commands, the first arriving last: delivered in CmdSN order; each
    // admitted one holds a slot, so MaxCmdSN does not open until it completes.
    let sns = [cmd_sn, cmd_sn.wrapping_add(1), cmd_sn.wrapping_add(2)];
    let mut delivered = Vec::new();
    for &sn in [sns[1], sns[2], sns[0]].iter() {
        let offer = {
            let mut w = window.window();
            queue.offer(&mut w, sn, false, sn, || window.admitted())
        };
        match offer {
            Offer::Deliver(v, counted) => {
                assert!(counted);
                delivered.push(v);
                loop {
                    let next = {
                        let mut w = window.window();
                        queue.next_ready(&mut w, || window.admitted())
                    };
                    match next {
                        Some(v) => delivered.push(v),
                        None => break,
                    }
                }
            }
            Offer::Queued => {}
            Offer::Dropped(_) => panic!("in-window command dropped"),
        }
    }
    assert_eq!(delivered, sns);
    assert_eq!(window.in_flight(), 3);
    let (exp, max) = window.sns();
    assert_eq!(exp, cmd_sn.wrapping_add(3));
    assert_eq!(
        max,
        cmd_sn.wrapping_add(DEPTH - 1),
        "MaxCmdSN held while 3 run"
    );

    // A SNACK is rejected: the Reject carries the header and does not advance StatSN.
    let snack = BhsWriter::new(opcode::SNACK_REQ, 0x80)
        .u32_at(16, 0x22)
        .finish();
    let req = Request::parse(&snack, &[]).unwrap();
    let Control::Reply(r) = control::answer(&req, &snack, Vec::new(), 8192) else {
        panic!()
    };
    let mut out = r.bhs;
    stamper.stamp(&mut out, r.sn, exp, max);
    assert_eq!(out[0] & 0x3f, opcode::REJECT);
    assert_eq!(
        be32(&out, 24),
        FIRST_STAT_SN + 3,
        "Reject shows the next StatSN"
    );
    assert_eq!(r.data, snack.to_vec());
    assert_eq!(stamper.next(), FIRST_STAT_SN + 3, "…without taking it");

    // Each command's response frees its slot; MaxCmdSN opens by one per response.
    for (i, _) in sns.iter().enumerate() {
        let mut resp = [0u8; BHS_LEN];
        window.completed();
        let (exp, max) = window.sns();
        stamper.stamp(&mut resp, SnMode::Advance, exp, max);
        assert_eq!(be32(&resp, 24), FIRST_STAT_SN + 3 + i as u32);
        assert_eq!(max, cmd_sn.wrapping_add(DEPTH - 1 + i as u32 + 1));
    }

    // Logout (close the session): answered with status, then the connection closes.
    let logout = BhsWriter::new(opcode::LOGOUT_REQ | 0x40, 0x80)
        .u32_at(16, 0x33)
        .u32_at(24, cmd_sn.wrapping_add(3))
        .finish();
    let req = Request::parse(&logout, &[]).unwrap();
    let Control::Logout(r) = control::answer(&req, &logout, Vec::new(), 8192) else {
        panic!()
    };
    assert_eq!(r.bhs[0] & 0x3f, opcode::LOGOUT_RESP);
    assert_eq!(r.bhs[2], 0, "closed successfully");
    assert_eq!(r.sn, SnMode::Advance);
}

#[test]
fn adding_a_connection_to_a_session_is_refused() {
    let mut p = phase(Instant::now());
    let table = Table { running: 5 };
    for (tsih, detail) in [(5u16, 0x06u8), (9, 0x0a)] {
        let mut p2 = phase(Instant::now());
        let (bhs, data) = unframe(&login_pdu(0, 1, tsih, 1, 0, SECURITY));
        let a = p2.handle(&bhs, &[], &data, &Open, &table);
        if matches!(a.step, LoginStep::Continue) {
            let (bhs, data) = unframe(&login_pdu(1, 3, tsih, 1, 0, OPERATIONAL));
            let a = p2.handle(&bhs, &[], &data, &Open, &table);
            let (r, text) = unframe(&a.reply);
            assert!(matches!(a.step, LoginStep::Close(_)), "tsih {tsih}");
            assert_eq!((r[36], r[37]), (2, detail), "tsih {tsih}");
            assert!(text.is_empty());
            assert_eq!(r[1] & 0x80, 0, "T clear on failure");
        } else {
            panic!("first stage refused: {:?}", a.step);
        }
    }
    // A PDU other than a Login Request during login: closed without an answer.
    let nop = BhsWriter::new(opcode::NOP_OUT | 0x40, 0x80)
        .u32_at(16, 1)
        .finish();
    let a = p.handle(&nop, &[], &[], &Open, &table);
    assert!(a.reply.is_empty());
    assert!(matches!(a.step, LoginStep::Close(_)));
}

#[test]
fn login_deadline() {
    let t0 = Instant::now();
    let p = phase(t0);
    assert_eq!(p.deadline(), t0 + Duration::from_secs(15));
    assert!(!p.expired(t0 + Duration::from_secs(14)));
    assert!(p.expired(t0 + Duration::from_secs(15)));
}
