//! Persistent reservations: registration, every type's conflicts, preempt, APTPL.

use super::*;

fn nk(name: &str, i: u8) -> NexusKey {
    NexusKey {
        initiator: name.into(),
        isid: [0x40, 0, 0, 0, 0, i],
        relative_port: 1,
    }
}

/// PERSISTENT RESERVE OUT from raw parameter bytes, parsed as the LU does.
trait OutBytes {
    fn out_bytes(
        &mut self,
        n: &NexusKey,
        sa: u8,
        scope: u8,
        kind: u8,
        params: &[u8],
        persist_capable: bool,
    ) -> Result<Effects, Option<Sense>>;
}

impl OutBytes for Reservations {
    fn out_bytes(
        &mut self,
        n: &NexusKey,
        sa: u8,
        scope: u8,
        kind: u8,
        params: &[u8],
        persist_capable: bool,
    ) -> Result<Effects, Option<Sense>> {
        let p = PrOutParams::parse(sa, params).map_err(Some)?;
        self.out(n, sa, scope, kind, &p, persist_capable)
    }
}

fn basic(key: u64, sark: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[20] = flags;
    p
}

fn write() -> PrAccess {
    PrAccess::Write
}
fn read() -> PrAccess {
    PrAccess::Read
}

#[test]
fn register_reserve_and_conflicts_per_type() {
    let (a, b, c) = (nk("iqn.a", 1), nk("iqn.b", 2), nk("iqn.c", 3));
    // (type, registered b can read, can write, unregistered c can read, write)
    for (kind, br, bw, cr, cw) in [
        (WRITE_EXCLUSIVE, true, false, true, false),
        (EXCLUSIVE_ACCESS, false, false, false, false),
        (WRITE_EXCLUSIVE_RO, true, true, true, false),
        (EXCLUSIVE_ACCESS_RO, true, true, false, false),
        (WRITE_EXCLUSIVE_AR, true, true, true, false),
        (EXCLUSIVE_ACCESS_AR, true, true, false, false),
    ] {
        let mut st = Reservations::default();
        st.out_bytes(&a, 6, 0, 0, &basic(0, 0xa, 0), false).unwrap();
        st.out_bytes(&b, 6, 0, 0, &basic(0, 0xb, 0), false).unwrap();
        st.out_bytes(&a, 1, 0, kind, &basic(0xa, 0, 0), false)
            .unwrap();
        assert!(!st.conflicts(&a, write()) && !st.conflicts(&a, read()));
        assert_eq!(!st.conflicts(&b, read()), br, "type {kind} b read");
        assert_eq!(!st.conflicts(&b, write()), bw, "type {kind} b write");
        assert_eq!(!st.conflicts(&c, read()), cr, "type {kind} c read");
        assert_eq!(!st.conflicts(&c, write()), cw, "type {kind} c write");
        assert!(!st.conflicts(&c, PrAccess::Any));
        // A second RESERVE of another type by a non-holder conflicts.
        assert!(
            matches!(
                st.out_bytes(&b, 1, 0, WRITE_EXCLUSIVE, &basic(0xb, 0, 0), false),
                Err(None)
            ) || all_registrants(kind)
        );
    }
}

#[test]
fn register_rules_and_generation() {
    let a = nk("iqn.a", 1);
    let mut st = Reservations::default();
    // REGISTER with a non-zero key while unregistered: conflict.
    assert!(matches!(
        st.out_bytes(&a, 0, 0, 0, &basic(5, 6, 0), false),
        Err(None)
    ));
    st.out_bytes(&a, 0, 0, 0, &basic(0, 6, 0), false).unwrap();
    assert_eq!(st.generation, 1);
    // Re-register with the wrong key: conflict; with the right key: changes it.
    assert!(matches!(
        st.out_bytes(&a, 0, 0, 0, &basic(7, 8, 0), false),
        Err(None)
    ));
    st.out_bytes(&a, 0, 0, 0, &basic(6, 8, 0), false).unwrap();
    assert_eq!(st.read(0, false).unwrap()[8..16], 8u64.to_be_bytes());
    // RESERVE does not bump the generation; CLEAR does.
    st.out_bytes(&a, 1, 0, EXCLUSIVE_ACCESS, &basic(8, 0, 0), false)
        .unwrap();
    assert_eq!(st.generation, 2);
    let rr = st.read(1, false).unwrap();
    assert_eq!(&rr[8..16], &8u64.to_be_bytes());
    assert_eq!(rr[21], EXCLUSIVE_ACCESS);
    st.out_bytes(&a, 3, 0, 0, &basic(8, 0, 0), false).unwrap();
    assert!(st.is_empty());
    assert_eq!(st.generation, 3);
}

#[test]
fn release_of_wrong_type_and_preempt() {
    let (a, b) = (nk("iqn.a", 1), nk("iqn.b", 2));
    let mut st = Reservations::default();
    st.out_bytes(&a, 6, 0, 0, &basic(0, 1, 0), false).unwrap();
    st.out_bytes(&b, 6, 0, 0, &basic(0, 2, 0), false).unwrap();
    st.out_bytes(&a, 1, 0, WRITE_EXCLUSIVE, &basic(1, 0, 0), false)
        .unwrap();
    let e = st
        .out_bytes(&a, 2, 0, EXCLUSIVE_ACCESS, &basic(1, 0, 0), false)
        .unwrap_err()
        .unwrap();
    assert_eq!(e.asc, Asc(0x2604));
    // b preempts a's reservation: a loses registration and gets a UA.
    let fx = st
        .out_bytes(&b, 4, 0, EXCLUSIVE_ACCESS, &basic(2, 1, 0), false)
        .unwrap();
    assert_eq!(
        fx.unit_attentions,
        vec![(a.clone(), Asc::REGISTRATIONS_PREEMPTED)]
    );
    assert!(st.holds(&b) && st.reg(&a).is_none());
    assert!(st.conflicts(&a, read()));
}

#[test]
fn aptpl_text_round_trip() {
    let a = nk("iqn.2026-11.org.example:host a", 1);
    let mut st = Reservations::default();
    let fx = st
        .out_bytes(&a, 6, 0, 0, &basic(0, 0x1234, 1), true)
        .unwrap();
    assert!(fx.persist.is_some());
    st.out_bytes(&a, 1, 0, WRITE_EXCLUSIVE_RO, &basic(0x1234, 0, 1), true)
        .unwrap();
    let back = Reservations::from_text(&st.to_text()).unwrap();
    assert_eq!(back, st);
    assert!(Reservations::from_text("garbage").is_err());
    // APTPL without a store is refused.
    let mut st2 = Reservations::default();
    assert!(st2
        .out_bytes(&a, 6, 0, 0, &basic(0, 1, 1), false)
        .unwrap_err()
        .is_some());
}

#[test]
fn transport_id_round_trip() {
    let a = nk("iqn.2026-11.org.example:h", 9);
    let tid = a.transport_id();
    assert_eq!(tid.len() % 4, 0);
    let (back, len) = NexusKey::from_transport_id(&tid, 1).unwrap();
    assert_eq!((back, len), (a, tid.len()));
}
