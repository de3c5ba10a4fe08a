//! Login phase (RFC 7143 §6, §13): stages, text negotiation and the parameters a
//! session runs with.
//!
//! The daemon feeds each Login Request to [`Negotiator::handle`] and sends back the
//! [`LoginReply`]; the negotiator decides the keys, the stage transitions and the status.
//! Who may log in to what is asked of a [`LoginPolicy`], so the ACL stays in the daemon.

use crate::chap::{Chap, ChapFailure, ChapPolicy, ChapSource};
use crate::keys::TextPairs;
use crate::pdu::{LoginReq, LoginResp};

/// Login stages (RFC 7143 §11.12.3).
pub const STAGE_SECURITY: u8 = 0;
pub const STAGE_OPERATIONAL: u8 = 1;
pub const STAGE_FULL_FEATURE: u8 = 3;

/// Login status class/detail pairs (RFC 7143 §11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginStatus(pub u8, pub u8);

impl LoginStatus {
    pub const SUCCESS: Self = Self(0, 0);
    pub const INITIATOR_ERROR: Self = Self(2, 0);
    pub const AUTH_FAILURE: Self = Self(2, 1);
    pub const AUTHORIZATION_FAILURE: Self = Self(2, 2);
    pub const NOT_FOUND: Self = Self(2, 3);
    pub const UNSUPPORTED_VERSION: Self = Self(2, 5);
    pub const TOO_MANY_CONNECTIONS: Self = Self(2, 6);
    pub const MISSING_PARAMETER: Self = Self(2, 7);
    pub const CANT_INCLUDE_IN_SESSION: Self = Self(2, 8);
    pub const SESSION_TYPE_UNSUPPORTED: Self = Self(2, 9);
    pub const SESSION_DOES_NOT_EXIST: Self = Self(2, 10);
    pub const INVALID_DURING_LOGIN: Self = Self(2, 11);
    pub const TARGET_ERROR: Self = Self(3, 0);
    pub const OUT_OF_RESOURCES: Self = Self(3, 2);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Normal,
    Discovery,
}

/// The target's side of every negotiable key: what it offers and the most it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLimits {
    /// What the target can receive in one data segment (declared to the initiator).
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    /// Target's preference; the result is the OR with the initiator's.
    pub initial_r2t: bool,
    /// Target's preference; the result is the AND with the initiator's.
    pub immediate_data: bool,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub allow_header_digest: bool,
    pub allow_data_digest: bool,
    pub portal_group_tag: u16,
}

impl Default for TargetLimits {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 16_776_192,
            first_burst_length: 262_144,
            max_outstanding_r2t: 16,
            initial_r2t: false,
            immediate_data: true,
            default_time2wait: 2,
            default_time2retain: 20,
            allow_header_digest: true,
            allow_data_digest: true,
            portal_group_tag: 1,
        }
    }
}

/// What a session runs with once login completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedParams {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub target_name: Option<String>,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment the target may send (the initiator's declaration).
    pub max_send_data_segment_length: u32,
    /// Largest data segment the target accepts (its own declaration).
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub error_recovery_level: u32,
    pub max_connections: u32,
    /// CmdSN of the leading login request: the session's first ExpCmdSN.
    pub first_cmd_sn: u32,
}

impl NegotiatedParams {
    /// RFC 7143 §13 defaults, before any key is exchanged.
    fn defaults(limits: &TargetLimits) -> Self {
        Self {
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target_name: None,
            isid: [0; 6],
            tsih: 0,
            header_digest: false,
            data_digest: false,
            max_send_data_segment_length: 8192,
            max_recv_data_segment_length: limits.max_recv_data_segment_length,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            max_connections: 1,
            first_cmd_sn: 0,
        }
    }
}

/// The ACL decision the negotiator asks for once it knows who is logging in to what.
pub trait LoginPolicy {
    /// `target` is `None` for discovery sessions. Returns the target's alias on
    /// success, or the status to fail the login with.
    fn admit(
        &self,
        initiator: &str,
        session_type: SessionType,
        target: Option<&str>,
    ) -> Result<Option<String>, LoginStatus>;

    /// What this login must prove with CHAP, if anything (asked once `admit`
    /// has let it through).
    fn chap(
        &self,
        _initiator: &str,
        _session_type: SessionType,
        _target: Option<&str>,
    ) -> Option<ChapPolicy> {
        None
    }
}

/// Where the login stands after a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Keep exchanging Login PDUs.
    Continue,
    /// The reply moves the connection to full-feature phase with these parameters.
    /// The daemon assigns the TSIH and patches it into the reply before sending.
    Complete(Box<NegotiatedParams>),
    /// The reply carries a failure status; close the connection after sending it.
    Failed(LoginStatus),
}

/// One Login Response to send (SN fields to be filled by the caller).
#[derive(Debug, Clone)]
pub struct LoginReply {
    pub header: LoginResp,
    pub data: Vec<u8>,
    pub outcome: LoginOutcome,
}

/// The login state machine of one connection.
#[derive(Debug)]
pub struct Negotiator {
    limits: TargetLimits,
    params: NegotiatedParams,
    stage: u8,
    first: bool,
    pending: Vec<u8>,
    declared_mrdsl: bool,
    /// The CHAP exchange, when the policy requires one for this login.
    chap: Option<Chap>,
    chap_source: Option<Box<dyn ChapSource>>,
    /// Why the last reply failed the login, for the log (never a secret).
    failure: Option<String>,
}

impl Negotiator {
    pub fn new(limits: TargetLimits) -> Self {
        let params = NegotiatedParams::defaults(&limits);
        Self {
            limits,
            params,
            stage: STAGE_SECURITY,
            first: true,
            pending: Vec::new(),
            declared_mrdsl: false,
            chap: None,
            chap_source: None,
            failure: None,
        }
    }

    /// Where CHAP identifiers and challenges come from (the daemon: the OS RNG).
    /// Without one, a login that requires CHAP is refused.
    pub fn with_chap_source(mut self, source: Box<dyn ChapSource>) -> Self {
        self.chap_source = Some(source);
        self
    }

    /// The InitiatorName of this login, once its first PDU named it ("" before).
    pub fn initiator(&self) -> &str {
        &self.params.initiator_name
    }

    /// Why the last reply failed the login, when it did for a reason worth a log
    /// line (authentication); never contains a secret.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn chap_failed(&mut self, why: ChapFailure) -> LoginStatus {
        self.failure = Some(format!(
            "CHAP authentication of {} failed: {why:?}",
            self.params.initiator_name
        ));
        LoginStatus::AUTH_FAILURE
    }

    /// Handles one Login Request and its data segment.
    pub fn handle(&mut self, req: &LoginReq, data: &[u8], policy: &dyn LoginPolicy) -> LoginReply {
        let mut resp = LoginResp {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: req.nsg,
            version_active: 0,
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            stat_sn: 0,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn,
            status_class: 0,
            status_detail: 0,
            data_len: 0,
        };
        let fail = |mut resp: LoginResp, st: LoginStatus| {
            resp.status_class = st.0;
            resp.status_detail = st.1;
            resp.transit = false;
            LoginReply {
                header: resp,
                data: Vec::new(),
                outcome: LoginOutcome::Failed(st),
            }
        };

        if req.version_min > 0 {
            return fail(resp, LoginStatus::UNSUPPORTED_VERSION);
        }
        // Stage rules (RFC 7143 §6.3): CSG must be the current stage or a legal advance,
        // NSG (when T is set) must move forward, and FFP cannot be a CSG.
        let stage_ok = match req.csg {
            STAGE_SECURITY => self.stage == STAGE_SECURITY,
            STAGE_OPERATIONAL => self.stage <= STAGE_OPERATIONAL,
            _ => false,
        };
        if !stage_ok
            || (req.transit && (req.nsg <= req.csg || req.nsg == 2))
            || (req.transit && req.cont)
        {
            return fail(resp, LoginStatus::INITIATOR_ERROR);
        }
        if self.first {
            self.params.isid = req.isid;
            self.params.tsih = req.tsih;
            self.params.first_cmd_sn = req.cmd_sn;
        }
        self.stage = req.csg;

        // Text spanning several PDUs (C bit): collect, acknowledge with an empty reply.
        self.pending.extend_from_slice(data);
        if self.pending.len() > 64 * 1024 {
            return fail(resp, LoginStatus::OUT_OF_RESOURCES);
        }
        if req.cont {
            resp.nsg = 0;
            return LoginReply {
                header: resp,
                data: Vec::new(),
                outcome: LoginOutcome::Continue,
            };
        }
        let text = std::mem::take(&mut self.pending);
        let pairs = match TextPairs::parse(&text) {
            Ok(p) => p,
            Err(_) => return fail(resp, LoginStatus::INITIATOR_ERROR),
        };

        let mut out = TextPairs::default();
        if self.first {
            self.first = false;
            let Some(initiator) = pairs.get("InitiatorName") else {
                return fail(resp, LoginStatus::MISSING_PARAMETER);
            };
            self.params.initiator_name = initiator.to_owned();
            self.params.session_type = match pairs.get("SessionType").unwrap_or("Normal") {
                "Normal" => SessionType::Normal,
                "Discovery" => SessionType::Discovery,
                _ => return fail(resp, LoginStatus::SESSION_TYPE_UNSUPPORTED),
            };
            let target = pairs.get("TargetName");
            if self.params.session_type == SessionType::Normal && target.is_none() {
                return fail(resp, LoginStatus::MISSING_PARAMETER);
            }
            let target = if self.params.session_type == SessionType::Normal {
                target
            } else {
                None
            };
            match policy.admit(initiator, self.params.session_type, target) {
                Ok(alias) => {
                    self.chap = policy
                        .chap(initiator, self.params.session_type, target)
                        .map(Chap::new);
                    self.params.target_name = target.map(str::to_owned);
                    if self.params.session_type == SessionType::Normal {
                        out.push(
                            "TargetPortalGroupTag",
                            self.limits.portal_group_tag.to_string(),
                        );
                        if let Some(a) = alias {
                            out.push("TargetAlias", a);
                        }
                    }
                }
                Err(st) => return fail(resp, st),
            }
        }

        if self.chap.as_ref().is_some_and(|c| !c.done()) && req.csg != STAGE_SECURITY {
            // Straight to the operational stage without authenticating.
            let st = self.chap_failed(ChapFailure::Skipped);
            return fail(resp, st);
        }
        for (key, value) in &pairs.0 {
            if let Some(chap) = self.chap.as_mut() {
                if key == "AuthMethod" {
                    match chap.auth_method(value) {
                        Ok(m) => out.push(key, m),
                        Err(why) => {
                            let st = self.chap_failed(why);
                            return fail(resp, st);
                        }
                    }
                    continue;
                }
                if crate::chap::KEYS.contains(&key.as_str()) {
                    continue; // the exchange below takes them
                }
            }
            match self.negotiate(key, value) {
                Ok(Some(answer)) => out.push(key, answer),
                Ok(None) => {}
                Err(st) => return fail(resp, st),
            }
        }
        if let Some(mut chap) = self.chap.take() {
            let step = match self.chap_source.as_mut() {
                Some(rng) => chap.step(&|k| pairs.get(k).map(str::to_owned), rng.as_mut()),
                None => Err(ChapFailure::NoAlgorithm),
            };
            self.chap = Some(chap);
            match step {
                Ok(keys) => {
                    for (k, v) in keys {
                        out.push(k, v);
                    }
                }
                Err(why) => {
                    let st = self.chap_failed(why);
                    return fail(resp, st);
                }
            }
        }
        // Authentication must be complete before the security stage is left.
        let authenticated = self.chap.as_ref().is_none_or(Chap::done);

        // The target's MaxRecvDataSegmentLength is declarative: state it once, in the
        // operational stage or at the latest on the way to full-feature phase.
        let transit = req.transit && authenticated;
        let entering_ffp = transit && req.nsg == STAGE_FULL_FEATURE;
        if !self.declared_mrdsl && (req.csg == STAGE_OPERATIONAL || entering_ffp) {
            out.push(
                "MaxRecvDataSegmentLength",
                self.params.max_recv_data_segment_length.to_string(),
            );
            self.declared_mrdsl = true;
        }

        let data = out.encode();
        resp.data_len = data.len();
        if transit {
            resp.transit = true;
            resp.nsg = req.nsg;
            self.stage = req.nsg;
        } else {
            resp.nsg = 0;
        }
        let outcome = if entering_ffp {
            let mut p = self.params.clone();
            // FirstBurstLength never exceeds MaxBurstLength (RFC 7143 §13.14).
            p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
            LoginOutcome::Complete(Box::new(p))
        } else {
            LoginOutcome::Continue
        };
        LoginReply {
            header: resp,
            data,
            outcome,
        }
    }

    /// The answer for one offered key, or `None` for declarations needing no answer.
    fn negotiate(&mut self, key: &str, value: &str) -> Result<Option<String>, LoginStatus> {
        let l = &self.limits;
        let p = &mut self.params;
        let num = |lo: u32, hi: u32| -> Option<u32> {
            value.parse::<u32>().ok().filter(|v| (lo..=hi).contains(v))
        };
        let boolean = || match value {
            "Yes" => Some(true),
            "No" => Some(false),
            _ => None,
        };
        let yn = |b: bool| if b { "Yes" } else { "No" }.to_owned();
        let answer = match key {
            // Declarations that need no answer.
            "InitiatorName" | "SessionType" | "TargetName" => return Ok(None),
            "InitiatorAlias" => {
                p.initiator_alias = Some(value.to_owned());
                return Ok(None);
            }
            "AuthMethod" => {
                if value.split(',').any(|m| m == "None") {
                    "None".to_owned()
                } else {
                    return Err(LoginStatus::AUTH_FAILURE);
                }
            }
            "HeaderDigest" | "DataDigest" => {
                let allow = if key == "HeaderDigest" {
                    l.allow_header_digest
                } else {
                    l.allow_data_digest
                };
                let pick = value
                    .split(',')
                    .find(|v| *v == "None" || (*v == "CRC32C" && allow));
                match pick {
                    Some(v) => {
                        let on = v == "CRC32C";
                        if key == "HeaderDigest" {
                            p.header_digest = on;
                        } else {
                            p.data_digest = on;
                        }
                        v.to_owned()
                    }
                    None => "Reject".to_owned(),
                }
            }
            "MaxConnections" => match num(1, 65535) {
                // One connection per session (no MC/S at ErrorRecoveryLevel 0 here).
                Some(_) => {
                    p.max_connections = 1;
                    "1".to_owned()
                }
                None => "Reject".to_owned(),
            },
            "InitialR2T" => match boolean() {
                Some(v) => {
                    p.initial_r2t = v || l.initial_r2t;
                    yn(p.initial_r2t)
                }
                None => "Reject".to_owned(),
            },
            "ImmediateData" => match boolean() {
                Some(v) => {
                    p.immediate_data = v && l.immediate_data;
                    yn(p.immediate_data)
                }
                None => "Reject".to_owned(),
            },
            "DataPDUInOrder" | "DataSequenceInOrder" => match boolean() {
                // OR: this target always delivers and expects data in order.
                Some(_) => {
                    if key == "DataPDUInOrder" {
                        p.data_pdu_in_order = true;
                    } else {
                        p.data_sequence_in_order = true;
                    }
                    "Yes".to_owned()
                }
                None => "Reject".to_owned(),
            },
            "MaxRecvDataSegmentLength" => match num(512, 16_777_215) {
                Some(v) => {
                    p.max_send_data_segment_length = v;
                    // Declarative: we send our own value, not an answer.
                    if self.declared_mrdsl {
                        return Ok(None);
                    }
                    self.declared_mrdsl = true;
                    p.max_recv_data_segment_length.to_string()
                }
                None => "Reject".to_owned(),
            },
            "MaxBurstLength" => match num(512, 16_777_215) {
                Some(v) => {
                    p.max_burst_length = v.min(l.max_burst_length);
                    p.max_burst_length.to_string()
                }
                None => "Reject".to_owned(),
            },
            "FirstBurstLength" => match num(512, 16_777_215) {
                Some(v) => {
                    p.first_burst_length = v.min(l.first_burst_length);
                    p.first_burst_length.to_string()
                }
                None => "Reject".to_owned(),
            },
            "DefaultTime2Wait" => match num(0, 3600) {
                Some(v) => {
                    p.default_time2wait = v.max(l.default_time2wait);
                    p.default_time2wait.to_string()
                }
                None => "Reject".to_owned(),
            },
            "DefaultTime2Retain" => match num(0, 3600) {
                Some(v) => {
                    p.default_time2retain = v.min(l.default_time2retain);
                    p.default_time2retain.to_string()
                }
                None => "Reject".to_owned(),
            },
            "MaxOutstandingR2T" => match num(1, 65535) {
                Some(v) => {
                    p.max_outstanding_r2t = v.min(l.max_outstanding_r2t);
                    p.max_outstanding_r2t.to_string()
                }
                None => "Reject".to_owned(),
            },
            "ErrorRecoveryLevel" => match num(0, 2) {
                Some(_) => {
                    p.error_recovery_level = 0;
                    "0".to_owned()
                }
                None => "Reject".to_owned(),
            },
            // Markers were removed by RFC 7143; answer as an RFC 3720 target without them.
            "IFMarker" | "OFMarker" => "No".to_owned(),
            "IFMarkInt" | "OFMarkInt" => "Irrelevant".to_owned(),
            _ => "NotUnderstood".to_owned(),
        };
        Ok(Some(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Open;
    impl LoginPolicy for Open {
        fn admit(
            &self,
            _: &str,
            _: SessionType,
            t: Option<&str>,
        ) -> Result<Option<String>, LoginStatus> {
            match t {
                Some("iqn.2026-01.org.oxtgt:none") => Err(LoginStatus::NOT_FOUND),
                _ => Ok(None),
            }
        }
    }

    fn req(csg: u8, nsg: u8, transit: bool) -> LoginReq {
        LoginReq {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0, 0, 1],
            tsih: 0,
            itt: 1,
            cid: 0,
            cmd_sn: 42,
            exp_stat_sn: 0,
        }
    }

    fn answer(r: &LoginReply) -> TextPairs {
        TextPairs::parse(&r.data).unwrap()
    }

    #[test]
    fn two_stage_login_negotiates_table() {
        let mut n = Negotiator::new(TargetLimits::default());
        let r = n.handle(
            &req(0, 1, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0AuthMethod=CHAP,None\0",
            &Open,
        );
        assert_eq!(r.outcome, LoginOutcome::Continue);
        let a = answer(&r);
        assert_eq!(a.get("AuthMethod"), Some("None"));
        assert_eq!(a.get("TargetPortalGroupTag"), Some("1"));
        assert!(r.header.transit);
        assert_eq!(r.header.nsg, 1);

        let r = n.handle(
            &req(1, 3, true),
            b"HeaderDigest=CRC32C,None\0DataDigest=None\0InitialR2T=No\0ImmediateData=Yes\0\
MaxBurstLength=16777215\0FirstBurstLength=1048576\0MaxOutstandingR2T=64\0\
MaxRecvDataSegmentLength=65536\0DefaultTime2Wait=0\0DefaultTime2Retain=60\0\
ErrorRecoveryLevel=2\0MaxConnections=4\0X-com.example.Foo=1\0",
            &Open,
        );
        let a = answer(&r);
        assert_eq!(a.get("HeaderDigest"), Some("CRC32C"));
        assert_eq!(a.get("InitialR2T"), Some("No"));
        assert_eq!(
            a.get("MaxBurstLength"),
            Some("16776192"),
            "min rule, clamped to ours"
        );
        assert_eq!(a.get("FirstBurstLength"), Some("262144"));
        assert_eq!(a.get("MaxOutstandingR2T"), Some("16"));
        assert_eq!(a.get("DefaultTime2Wait"), Some("2"), "max rule");
        assert_eq!(a.get("DefaultTime2Retain"), Some("20"), "min rule");
        assert_eq!(a.get("ErrorRecoveryLevel"), Some("0"));
        assert_eq!(a.get("MaxConnections"), Some("1"));
        assert_eq!(a.get("X-com.example.Foo"), Some("NotUnderstood"));
        assert_eq!(a.get("MaxRecvDataSegmentLength"), Some("262144"));
        let LoginOutcome::Complete(p) = r.outcome else {
            panic!("not complete")
        };
        assert!(p.header_digest && !p.data_digest);
        assert_eq!(p.max_send_data_segment_length, 65536);
        assert_eq!(p.first_cmd_sn, 42);
    }

    #[test]
    fn initial_r2t_or_and_immediate_and() {
        let limits = TargetLimits {
            initial_r2t: true,
            immediate_data: false,
            ..TargetLimits::default()
        };
        let mut n = Negotiator::new(limits);
        let r = n.handle(
            &req(1, 3, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0InitialR2T=No\0ImmediateData=Yes\0",
            &Open,
        );
        let a = answer(&r);
        assert_eq!(a.get("InitialR2T"), Some("Yes"));
        assert_eq!(a.get("ImmediateData"), Some("No"));
    }

    #[test]
    fn out_of_range_values_rejected() {
        let mut n = Negotiator::new(TargetLimits::default());
        let r = n.handle(
            &req(1, 1, false),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0MaxBurstLength=12\0InitialR2T=Maybe\0",
            &Open,
        );
        let a = answer(&r);
        assert_eq!(a.get("MaxBurstLength"), Some("Reject"));
        assert_eq!(a.get("InitialR2T"), Some("Reject"));
    }

    #[test]
    fn failures_have_status() {
        let mut n = Negotiator::new(TargetLimits::default());
        let r = n.handle(
            &req(0, 1, true),
            b"TargetName=iqn.2026-01.org.oxtgt:t\0",
            &Open,
        );
        assert_eq!(
            r.outcome,
            LoginOutcome::Failed(LoginStatus::MISSING_PARAMETER)
        );
        assert_eq!((r.header.status_class, r.header.status_detail), (2, 7));

        let mut n = Negotiator::new(TargetLimits::default());
        let r = n.handle(
            &req(0, 1, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:none\0",
            &Open,
        );
        assert_eq!(r.outcome, LoginOutcome::Failed(LoginStatus::NOT_FOUND));

        let mut n = Negotiator::new(TargetLimits::default());
        let mut bad = req(0, 1, true);
        bad.version_min = 2;
        assert_eq!(
            n.handle(&bad, b"", &Open).outcome,
            LoginOutcome::Failed(LoginStatus::UNSUPPORTED_VERSION)
        );

        let mut n = Negotiator::new(TargetLimits::default());
        let r = n.handle(
            &req(0, 1, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=x\0AuthMethod=CHAP\0",
            &Open,
        );
        assert_eq!(r.outcome, LoginOutcome::Failed(LoginStatus::AUTH_FAILURE));
    }

    #[test]
    fn continuation_collects_text() {
        let mut n = Negotiator::new(TargetLimits::default());
        let mut first = req(1, 3, false);
        first.cont = true;
        let r = n.handle(&first, b"InitiatorName=iqn.2026-01.org.te", &Open);
        assert_eq!(r.outcome, LoginOutcome::Continue);
        assert!(r.data.is_empty());
        let r = n.handle(
            &req(1, 3, true),
            b"st:i\0TargetName=iqn.2026-01.org.oxtgt:t\0",
            &Open,
        );
        let LoginOutcome::Complete(p) = r.outcome else {
            panic!()
        };
        assert_eq!(p.initiator_name, "iqn.2026-01.org.test:i");
    }

    #[test]
    fn discovery_needs_no_target() {
        let mut n = Negotiator::new(TargetLimits::default());
        let r = n.handle(
            &req(1, 3, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0SessionType=Discovery\0",
            &Open,
        );
        let LoginOutcome::Complete(ref p) = r.outcome else {
            panic!()
        };
        assert_eq!(p.session_type, SessionType::Discovery);
        assert!(answer(&r).get("TargetPortalGroupTag").is_none());
    }
}
