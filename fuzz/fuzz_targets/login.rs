#![no_main]
// A login, PDU by PDU, through the sans-IO login phase with a policy that requires
// CHAP: the input is a sequence of (u16 length, PDU bytes) records, as the seed
// extractor writes them from captured sessions.
use std::time::{Duration, Instant};

use iscsi::chap::{ChapPolicy, ChapSource, Credentials, Secret};
use iscsi::login::{LoginPolicy, LoginStatus, SessionType};
use iscsi::session::login::{LoginPhase, SessionTable};

#[derive(Debug)]
struct Fixed;
impl ChapSource for Fixed {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(0x5a);
    }
}

struct Policy;
impl LoginPolicy for Policy {
    fn admit(&self, _: &str, _: SessionType, _: Option<&str>) -> Result<Option<String>, LoginStatus> {
        Ok(None)
    }
    fn chap(&self, _: &str, _: SessionType, _: Option<&str>) -> Option<ChapPolicy> {
        Some(ChapPolicy {
            initiator: Credentials {
                user: "user".into(),
                secret: Secret::new("initiator-secret"),
            },
            target: Some(Credentials {
                user: "target".into(),
                secret: Secret::new("target-secret-x"),
            }),
        })
    }
}

struct Sessions;
impl SessionTable for Sessions {
    fn tsih_in_use(&self, tsih: u16) -> bool {
        tsih == 1
    }
    fn new_tsih(&self) -> u16 {
        2
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut phase = LoginPhase::new(
        iscsi::TargetLimits::default(),
        32,
        1,
        Instant::now(),
        Duration::from_secs(15),
        Box::new(Fixed),
    );
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(pdu) = rest.get(2..2 + n) else { return };
        rest = &rest[2 + n..];
        let Some(bhs) = pdu.get(..48).and_then(|b| <[u8; 48]>::try_from(b).ok()) else {
            continue;
        };
        let dlen = usize::from(bhs[5]) << 16 | usize::from(bhs[6]) << 8 | usize::from(bhs[7]);
        let data = &pdu[48..pdu.len().min(48 + dlen)];
        let a = phase.handle(&bhs, &[], data, &Policy, &Sessions);
        if matches!(a.step, iscsi::session::login::LoginStep::Close(_)) {
            return;
        }
    }
});
