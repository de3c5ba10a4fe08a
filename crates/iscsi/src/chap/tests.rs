//! CHAP with the hash functions' published vectors and every refusal.

use super::*;

/// A source that hands out 1, 2, 3, ...: deterministic identifiers and challenges.
#[derive(Debug)]
struct Counting(u8);
impl ChapSource for Counting {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

fn hex(s: &str) -> Vec<u8> {
    decode_binary(&format!("0x{s}")).unwrap()
}

/// H(id || secret || challenge) with id 'a', secret "b", challenge "c" is H("abc"),
/// whose value each hash's standard publishes (RFC 1321, FIPS 180, FIPS 202).
#[test]
fn responses_match_the_published_abc_vectors() {
    let r = |a: Algorithm| a.response(b'a', b"b", b"c");
    assert_eq!(r(Algorithm::Md5), hex("900150983cd24fb0d6963f7d28e17f72"));
    assert_eq!(
        r(Algorithm::Sha1),
        hex("a9993e364706816aba3e25717850c26c9cd0d89d")
    );
    assert_eq!(
        r(Algorithm::Sha256),
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(
        r(Algorithm::Sha3_256),
        hex("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
    );
}

#[test]
fn binary_values_and_algorithm_choice() {
    assert_eq!(decode_binary("0x0aFF"), Some(vec![0x0a, 0xff]));
    assert_eq!(decode_binary("0XaFF"), Some(vec![0x0a, 0xff]), "odd length");
    assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]), "base64");
    assert_eq!(decode_binary("0xzz"), None);
    assert_eq!(decode_binary("12"), None);
    assert_eq!(encode_hex(&[0, 0xab]), "0x00ab");
    assert_eq!(Algorithm::choose("5"), Some(Algorithm::Md5));
    assert_eq!(
        Algorithm::choose("5,7,6"),
        Some(Algorithm::Sha256),
        "strongest offered"
    );
    assert_eq!(Algorithm::choose("8,5"), Some(Algorithm::Sha3_256));
    assert_eq!(Algorithm::choose("1,2,99"), None);
    assert_eq!(
        format!("{:?}", Secret::new("topsecret123")),
        "Secret(<redacted>)"
    );
}

fn policy(mutual: bool) -> ChapPolicy {
    ChapPolicy {
        initiator: Credentials {
            user: "alice".into(),
            secret: Secret::new("initiator-secret"),
        },
        target: mutual.then(|| Credentials {
            user: "target".into(),
            secret: Secret::new("target-secret-1"),
        }),
    }
}

/// Drives one exchange: CHAP_A offered, then the initiator's answer built by `answer`
/// from (algorithm, id, challenge).
fn exchange(
    chap: &mut Chap,
    offered: &str,
    answer: impl Fn(Algorithm, u8, &[u8]) -> Vec<(&'static str, String)>,
) -> Result<Vec<(&'static str, String)>, ChapFailure> {
    let mut rng = Counting(0);
    assert_eq!(chap.auth_method("CHAP,None"), Ok("CHAP"));
    let a = offered.to_owned();
    let out = chap.step(&|k| (k == "CHAP_A").then(|| a.clone()), &mut rng)?;
    let get = |k: &str| out.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let alg = Algorithm::from_code(get("CHAP_A").unwrap().parse().unwrap()).unwrap();
    let id: u8 = get("CHAP_I").unwrap().parse().unwrap();
    let c = decode_binary(&get("CHAP_C").unwrap()).unwrap();
    assert!(c.len() >= 16, "challenge of at least 16 bytes");
    let keys = answer(alg, id, &c);
    chap.step(
        &|k| keys.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        &mut rng,
    )
}

#[test]
fn one_way_and_mutual_exchanges() {
    for (offered, alg) in [
        ("5", Algorithm::Md5),
        ("6,7", Algorithm::Sha256),
        ("8", Algorithm::Sha3_256),
    ] {
        let mut chap = Chap::new(policy(false));
        let out = exchange(&mut chap, offered, |a, id, c| {
            assert_eq!(a, alg);
            vec![
                ("CHAP_N", "alice".into()),
                (
                    "CHAP_R",
                    encode_hex(&a.response(id, b"initiator-secret", c)),
                ),
            ]
        })
        .unwrap();
        assert!(out.is_empty());
        assert!(chap.done());
    }
    // Mutual: the target answers the initiator's challenge with its own secret.
    let mut chap = Chap::new(policy(true));
    let c2 = vec![9u8; 16];
    let out = exchange(&mut chap, "7", |a, id, c| {
        vec![
            ("CHAP_N", "alice".into()),
            (
                "CHAP_R",
                encode_hex(&a.response(id, b"initiator-secret", c)),
            ),
            ("CHAP_I", "77".into()),
            ("CHAP_C", encode_hex(&c2)),
        ]
    })
    .unwrap();
    assert_eq!(out[0], ("CHAP_N", "target".to_owned()));
    assert_eq!(
        decode_binary(&out[1].1).unwrap(),
        Algorithm::Sha256.response(77, b"target-secret-1", &c2)
    );
}

#[test]
fn every_refusal() {
    let good = |a: Algorithm, id: u8, c: &[u8]| {
        vec![
            ("CHAP_N", "alice".to_owned()),
            (
                "CHAP_R",
                encode_hex(&a.response(id, b"initiator-secret", c)),
            ),
        ]
    };
    // Wrong secret, wrong user, malformed response.
    let e = exchange(&mut Chap::new(policy(false)), "5", |a, id, c| {
        vec![
            ("CHAP_N", "alice".into()),
            ("CHAP_R", encode_hex(&a.response(id, b"not-the-secret", c))),
        ]
    });
    assert_eq!(e, Err(ChapFailure::WrongResponse));
    let e = exchange(&mut Chap::new(policy(false)), "5", |a, id, c| {
        let mut k = good(a, id, c);
        k[0].1 = "mallory".into();
        k
    });
    assert_eq!(e, Err(ChapFailure::WrongUser));
    let e = exchange(&mut Chap::new(policy(false)), "5", |_, _, _| {
        vec![("CHAP_N", "alice".into()), ("CHAP_R", "0xq".into())]
    });
    assert_eq!(e, Err(ChapFailure::Malformed));
    // No algorithm this target implements.
    let mut chap = Chap::new(policy(false));
    chap.auth_method("CHAP").unwrap();
    let e = chap.step(
        &|k| (k == "CHAP_A").then(|| "1,2".to_owned()),
        &mut Counting(0),
    );
    assert_eq!(e, Err(ChapFailure::NoAlgorithm));
    // CHAP_N/CHAP_R before the challenge.
    let mut chap = Chap::new(policy(false));
    chap.auth_method("CHAP").unwrap();
    let e = chap.step(
        &|k| (k == "CHAP_N" || k == "CHAP_R").then(|| "0x00".to_owned()),
        &mut Counting(0),
    );
    assert_eq!(e, Err(ChapFailure::OutOfOrder));
    // A second CHAP_A round.
    let e = exchange(&mut Chap::new(policy(false)), "5", |_, _, _| {
        vec![("CHAP_A", "5".into())]
    });
    assert_eq!(e, Err(ChapFailure::OutOfOrder));
    // CHAP not offered.
    assert_eq!(
        Chap::new(policy(false)).auth_method("None"),
        Err(ChapFailure::NotOffered)
    );
    // Mutual asked without a target secret; the target's own challenge reflected.
    let e = exchange(&mut Chap::new(policy(false)), "5", |a, id, c| {
        let mut k = good(a, id, c);
        k.push(("CHAP_I", "1".into()));
        k.push(("CHAP_C", encode_hex(&[5; 16])));
        k
    });
    assert_eq!(e, Err(ChapFailure::MutualNotConfigured));
    let e = exchange(&mut Chap::new(policy(true)), "5", |a, id, c| {
        let mut k = good(a, id, c);
        k.push(("CHAP_I", "1".into()));
        k.push(("CHAP_C", encode_hex(c)));
        k
    });
    assert_eq!(e, Err(ChapFailure::Reflected));
}

/// The negotiator with a policy that requires CHAP: the target holds the login in
/// the security stage until the response checks, and a login that jumps to the
/// operational stage is refused 02/01.
mod negotiator {
    use super::*;
    use crate::keys::TextPairs;
    use crate::login::{LoginOutcome, LoginPolicy, LoginStatus, Negotiator, SessionType};
    use crate::pdu::LoginReq;
    use crate::TargetLimits;

    struct Needs;
    impl LoginPolicy for Needs {
        fn admit(
            &self,
            _: &str,
            _: SessionType,
            _: Option<&str>,
        ) -> Result<Option<String>, LoginStatus> {
            Ok(None)
        }
        fn chap(&self, _: &str, _: SessionType, _: Option<&str>) -> Option<ChapPolicy> {
            Some(policy(false))
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
            cmd_sn: 1,
            exp_stat_sn: 0,
        }
    }

    const FIRST: &[u8] =
        b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0AuthMethod=CHAP,None\0";

    #[test]
    fn the_security_stage_is_left_only_once_authenticated() {
        let mut n =
            Negotiator::new(TargetLimits::default()).with_chap_source(Box::new(Counting(0)));
        let r = n.handle(&req(0, 1, true), FIRST, &Needs);
        let a = TextPairs::parse(&r.data).unwrap();
        assert_eq!(a.get("AuthMethod"), Some("CHAP"));
        assert!(!r.header.transit, "not authenticated yet: T stays clear");
        let r = n.handle(&req(0, 1, true), b"CHAP_A=5\0", &Needs);
        assert!(!r.header.transit);
        let a = TextPairs::parse(&r.data).unwrap();
        let id: u8 = a.get("CHAP_I").unwrap().parse().unwrap();
        let c = decode_binary(a.get("CHAP_C").unwrap()).unwrap();
        let resp = encode_hex(&Algorithm::Md5.response(id, b"initiator-secret", &c));
        let r = n.handle(
            &req(0, 1, true),
            format!("CHAP_N=alice\0CHAP_R={resp}\0").as_bytes(),
            &Needs,
        );
        assert_eq!(r.outcome, LoginOutcome::Continue);
        assert!(
            r.header.transit,
            "authenticated: on to the operational stage"
        );
        assert_eq!(r.header.nsg, 1);
    }

    #[test]
    fn wrong_secret_or_skipping_is_refused_02_01_and_logged_without_the_secret() {
        let mut n =
            Negotiator::new(TargetLimits::default()).with_chap_source(Box::new(Counting(0)));
        n.handle(&req(0, 1, true), FIRST, &Needs);
        let r = n.handle(&req(0, 1, true), b"CHAP_A=7\0", &Needs);
        let a = TextPairs::parse(&r.data).unwrap();
        let id: u8 = a.get("CHAP_I").unwrap().parse().unwrap();
        let c = decode_binary(a.get("CHAP_C").unwrap()).unwrap();
        let resp = encode_hex(&Algorithm::Sha256.response(id, b"guessed-secret", &c));
        let r = n.handle(
            &req(0, 1, true),
            format!("CHAP_N=alice\0CHAP_R={resp}\0").as_bytes(),
            &Needs,
        );
        assert_eq!(r.outcome, LoginOutcome::Failed(LoginStatus::AUTH_FAILURE));
        let why = n.failure().unwrap();
        assert!(why.contains("iqn.2026-01.org.test:i") && why.contains("WrongResponse"));
        assert!(!why.contains("secret"), "{why}");

        // Straight to the operational stage.
        let mut n =
            Negotiator::new(TargetLimits::default()).with_chap_source(Box::new(Counting(0)));
        let r = n.handle(
            &req(1, 3, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0",
            &Needs,
        );
        assert_eq!(r.outcome, LoginOutcome::Failed(LoginStatus::AUTH_FAILURE));
        // CHAP not offered.
        let mut n =
            Negotiator::new(TargetLimits::default()).with_chap_source(Box::new(Counting(0)));
        let r = n.handle(
            &req(0, 1, true),
            b"InitiatorName=iqn.2026-01.org.test:i\0TargetName=iqn.2026-01.org.oxtgt:t\0AuthMethod=None\0",
            &Needs,
        );
        assert_eq!(r.outcome, LoginOutcome::Failed(LoginStatus::AUTH_FAILURE));
    }
}
