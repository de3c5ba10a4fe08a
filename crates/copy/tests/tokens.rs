//! Token-based copies in process: LUs over RAM and over a fault-injecting store,
//! POPULATE TOKEN / WRITE USING TOKEN / RECEIVE ROD TOKEN INFORMATION / COPY
//! OPERATION ABORT as CDB bytes and parameter lists built by testkit (not by
//! oxtgt's encoder): partial completion, aborts, resets, limits.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstore::Backstore;
use copy::{Manager, Resolver, TokenLimits};
use scsi::sense::{status, SenseKey};
use scsi::testing::{identity, FaultyBackstore, Reply, TestLu};
use scsi::{LogicalUnit, Nexus};
use testkit::rod;

const BS: u32 = 512;
const MIB: usize = 1 << 20;

#[derive(Debug)]
struct Lus(Vec<Arc<LogicalUnit>>);

impl Resolver for Lus {
    fn accessible(&self, _: &Nexus) -> Vec<Arc<LogicalUnit>> {
        self.0.clone()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed ^ (i >> 10) as u8)
        .collect()
}

/// An LU over a fault-injecting store.
fn faulty(seed: u8, bytes: usize) -> (TestLu, Arc<FaultyBackstore>) {
    let f = Arc::new(FaultyBackstore::new(bytes as u64));
    let store: Arc<dyn Backstore> = f.clone();
    let lu = LogicalUnit::new(identity(seed), store, BS, false);
    let t = TestLu {
        lu: lu.shared(),
        ram: Arc::new(backstore::RamBackstore::new(0)),
    };
    (t, f)
}

fn run(t: &TestLu, m: &Manager, n: &Nexus, cdb: &[u8], data: &[u8], alloc: u32) -> Reply {
    let edtl = if data.is_empty() {
        alloc
    } else {
        data.len() as u32
    };
    t.run_with(n, cdb, data, edtl, Some(m), &AtomicBool::new(false))
}

fn populate(t: &TestLu, m: &Manager, n: &Nexus, list_id: u32, ranges: &[(u64, u32)]) -> Vec<u8> {
    let p = rod::pt_params(false, None, 0, ranges);
    let r = run(
        t,
        m,
        n,
        &rod::populate_token(list_id, p.len() as u32),
        &p,
        0,
    );
    assert!(r.is_good(), "PT: {:?}", r.sense);
    rrti(t, m, n, list_id).token.expect("token")
}

fn rrti(t: &TestLu, m: &Manager, n: &Nexus, list_id: u32) -> rod::CopyStatus {
    let r = run(
        t,
        m,
        n,
        &rod::receive_rod_token_information(list_id, 2048),
        &[],
        2048,
    );
    assert!(r.is_good(), "RRTI: {:?}", r.sense);
    rod::decode_status(&r.data, true)
}

fn wut(
    t: &TestLu,
    m: &Manager,
    n: &Nexus,
    list_id: u32,
    immed: bool,
    token: &[u8],
    ranges: &[(u64, u32)],
) -> Reply {
    let p = rod::wut_params(immed, false, 0, token, ranges);
    run(
        t,
        m,
        n,
        &rod::write_using_token(list_id, p.len() as u32),
        &p,
        0,
    )
}

/// Polls RRTI until the operation is no longer in progress.
fn settle(t: &TestLu, m: &Manager, n: &Nexus, list_id: u32) -> rod::CopyStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = rrti(t, m, n, list_id);
        if !matches!(s.status, 0x10..=0x12) {
            return s;
        }
        assert!(Instant::now() < deadline, "never settled");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A destination that fails past 40 MiB: the first 32 MiB window lands, the
/// second fails. COPY ABORTED / 0Dh/04h with INFORMATION = the contiguous blocks
/// written, and RRTI says partial (03h) with that transfer count.
#[test]
fn partial_completion_reports_the_contiguous_blocks_written() {
    let src = TestLu::with_identity(1, (128 * MIB / 512) as u64, BS, |l| l);
    let (dst, f) = faulty(2, 128 * MIB);
    let m = Manager::new(Arc::new(Lus(vec![src.lu.clone(), dst.lu.clone()])));
    let n = src.attach(1);
    dst.lu.attach(&n);
    src.ram.write_at(&pattern(64 * MIB, 1), 0, false).unwrap();
    let token = populate(&src, &m, &n, 1, &[(0, (64 * MIB / 512) as u32)]);
    f.fail(40 * MIB as u64..41 * MIB as u64, 5 /* EIO */, false);
    let r = wut(
        &dst,
        &m,
        &n,
        2,
        false,
        &token,
        &[(0, (64 * MIB / 512) as u32)],
    );
    assert_eq!(r.status, status::CHECK_CONDITION);
    let s = r.sense.expect("sense");
    assert_eq!((s.key, s.asc.0), (SenseKey::COPY_ABORTED, 0x0d04));
    let done = (32 * MIB / 512) as u64;
    assert_eq!(
        s.information,
        Some(done),
        "contiguous blocks from the first"
    );
    let info = rrti(&dst, &m, &n, 2);
    assert_eq!(
        (info.status, info.completion),
        (0x03, status::CHECK_CONDITION)
    );
    assert_eq!(info.transfer_count, done);
    assert!(!info.sense.is_empty());
    // What was reported as written is there.
    let mut back = vec![0u8; 32 * MIB];
    f.inner.read_at(&mut back, 0).unwrap();
    assert!(back == pattern(64 * MIB, 1)[..32 * MIB]);
}

/// COPY OPERATION ABORT stops a background WRITE USING TOKEN within a window;
/// RRTI then says terminated (60h) with TASK ABORTED. A logical unit reset does
/// the same to another one.
#[test]
fn copy_operation_abort_and_lu_reset_stop_background_jobs() {
    let src = TestLu::with_identity(1, (128 * MIB / 512) as u64, BS, |l| l);
    let (dst, f) = faulty(2, 128 * MIB);
    let m = Manager::new(Arc::new(Lus(vec![src.lu.clone(), dst.lu.clone()])));
    let n = src.attach(1);
    dst.lu.attach(&n);
    src.ram.write_at(&pattern(MIB, 1), 0, false).unwrap();
    let blocks = (128 * MIB / 512) as u32;
    let token = populate(&src, &m, &n, 1, &[(0, blocks)]);
    // 2 MiB bounce chunks at 20 ms each: 128 MiB take over a second.
    f.slow(Duration::from_millis(20));
    let r = wut(&dst, &m, &n, 7, true, &token, &[(0, blocks)]);
    assert!(r.is_good(), "IMMED returns at once: {:?}", r.sense);
    let running = rrti(&dst, &m, &n, 7);
    assert_eq!(running.status, 0x12, "in progress, in the background");
    assert!(running.delay_ms > 0 && running.delay_ms < 0xffff_fffe);
    let r = run(&dst, &m, &n, &rod::copy_operation_abort(7), &[], 0);
    assert!(r.is_good(), "{:?}", r.sense);
    let t0 = Instant::now();
    let s = settle(&dst, &m, &n, 7);
    assert_eq!((s.status, s.completion), (0x60, status::TASK_ABORTED));
    assert!(s.transfer_count < u64::from(blocks));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stopped within a window"
    );
    // An unknown list ID: INVALID FIELD IN CDB.
    let r = run(&dst, &m, &n, &rod::copy_operation_abort(99), &[], 0);
    assert_eq!(r.check().1 .0, 0x2400);

    let r = wut(&dst, &m, &n, 8, true, &token, &[(0, blocks)]);
    assert!(r.is_good());
    m.reset_lu(&dst.lu.identity().naa);
    let s = settle(&dst, &m, &n, 8);
    assert_eq!(s.status, 0x60, "ended by the reset");

    // I_T nexus loss ends a third.
    let r = wut(&dst, &m, &n, 9, true, &token, &[(0, blocks)]);
    assert!(r.is_good());
    let t0 = Instant::now();
    m.forget_nexus(n.id);
    // The status went with the nexus; the job itself must stop: the next WUT from a
    // new nexus on the same range gets its lock within a window.
    let n2 = dst.attach(2);
    f.slow(Duration::ZERO);
    let r = wut(&dst, &m, &n2, 1, false, &token, &[(0, 2048)]);
    assert!(r.is_good(), "{:?}", r.sense);
    assert!(t0.elapsed() < Duration::from_secs(2));
}

/// A busy list ID is OPERATION IN PROGRESS; a new POPULATE TOKEN under a
/// completed list ID discards that list's token (TOKEN DELETED); RRTI with
/// allocation length 0 discards it too.
#[test]
fn list_ids_and_token_discarding() {
    let src = TestLu::with_identity(1, 4096, BS, |l| l);
    let (dst, f) = faulty(2, 64 * MIB);
    let m = Manager::new(Arc::new(Lus(vec![src.lu.clone(), dst.lu.clone()])));
    let n = src.attach(1);
    dst.lu.attach(&n);
    let t1 = populate(&src, &m, &n, 5, &[(0, 8)]);
    let t2 = populate(&src, &m, &n, 5, &[(8, 8)]);
    let r = wut(&dst, &m, &n, 1, false, &t1, &[(0, 8)]);
    assert_eq!(r.check().1 .0, 0x2309, "discarded by the list ID's reuse");
    let r = run(
        &src,
        &m,
        &n,
        &rod::receive_rod_token_information(5, 0),
        &[],
        0,
    );
    assert!(r.is_good());
    let r = wut(&dst, &m, &n, 1, false, &t2, &[(0, 8)]);
    assert_eq!(
        r.check().1 .0,
        0x2309,
        "discarded by RRTI with allocation length 0"
    );
    // Busy: a WUT still running under list ID 3.
    let t3 = populate(&src, &m, &n, 6, &[(0, 4096)]);
    f.slow(Duration::from_millis(50));
    assert!(wut(&dst, &m, &n, 3, true, &t3, &[(0, 4096)]).is_good());
    let r = wut(&dst, &m, &n, 3, false, &t3, &[(0, 8)]);
    assert_eq!(r.check().1 .0, 0x0016, "OPERATION IN PROGRESS");
    f.slow(Duration::ZERO);
    settle(&dst, &m, &n, 3);
}

/// Token storage is bounded: past the count, INSUFFICIENT RESOURCES TO CREATE ROD
/// TOKEN; past the bytes point-in-time images may pin, INSUFFICIENT RESOURCES TO
/// CREATE ROD. Nothing degrades quietly.
#[test]
fn token_limits_are_answered_not_degraded() {
    let src = TestLu::with_identity(1, 65_536, BS, |l| l);
    let limits = TokenLimits {
        max_tokens: 2,
        max_image_bytes: 8 * MIB as u64,
    };
    let m = Manager::with_token_limits(Arc::new(Lus(vec![src.lu.clone()])), limits);
    let n = src.attach(1);
    let pt = |list_id: u32, blocks: u32| {
        let p = rod::pt_params(false, None, 0, &[(0, blocks)]);
        run(
            &src,
            &m,
            &n,
            &rod::populate_token(list_id, p.len() as u32),
            &p,
            0,
        )
    };
    assert!(pt(1, 8192).is_good(), "4 MiB");
    let r = pt(2, 16_384);
    assert_eq!(r.check().1 .0, 0x550c, "8 MiB more images than allowed");
    assert!(pt(3, 8).is_good());
    let r = pt(4, 8);
    assert_eq!(r.check().1 .0, 0x550d, "a third live token");
}
