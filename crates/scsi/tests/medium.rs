//! Removable media (START STOP UNIT with LOEJ, PREVENT ALLOW MEDIUM REMOVAL, medium
//! not present) and SANITIZE, in process: an LU over RAM driven by CDB bytes, each
//! test stating what an initiator would see.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scsi::lu::ResetKind;
use scsi::sense::{status, Asc, SenseKey};
use scsi::testing::{FaultyBackstore, TestLu};
use testkit::cdb as cdbs;

const BS: u32 = 512;

fn removable(blocks: u64) -> TestLu {
    TestLu::build(blocks, BS, |l| l.with_removable(true))
}

fn not_present() -> (SenseKey, Asc) {
    (SenseKey::NOT_READY, Asc::MEDIUM_NOT_PRESENT)
}

#[test]
fn inquiry_reports_rmb_only_for_removable_lus() {
    let fixed = TestLu::new(64, BS);
    let a = fixed.attach(1);
    assert_eq!(fixed.run(&a, &cdbs::inquiry(false, 0, 96), &[]).data[1], 0);
    let t = removable(64);
    let a = t.attach(1);
    assert_eq!(t.run(&a, &cdbs::inquiry(false, 0, 96), &[]).data[1], 0x80);
}

#[test]
fn eject_makes_every_medium_command_not_ready_and_load_brings_the_data_back() {
    let t = removable(64);
    let a = t.attach(1);
    let b = t.attach(2);
    let data = vec![0x5a; BS as usize];
    assert!(t.run(&a, &cdbs::write10(7, 1), &data).is_good());
    assert!(t.run(&a, &cdbs::start_stop(true, false), &[]).is_good());
    for cdb in [
        cdbs::TEST_UNIT_READY.to_vec(),
        cdbs::read10(7, 1).to_vec(),
        cdbs::read_capacity16(32).to_vec(),
        [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec(), // READ CAPACITY(10)
        [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec(), // SYNCHRONIZE CACHE(10)
        cdbs::verify16(0, 1).to_vec(),
    ] {
        assert_eq!(t.run(&b, &cdb, &[]).check(), not_present(), "{cdb:02x?}");
    }
    assert_eq!(
        t.run(&b, &cdbs::write10(7, 1), &data).check(),
        not_present()
    );
    // INQUIRY and REQUEST SENSE still answer; REQUEST SENSE says why.
    assert!(t.run(&b, &cdbs::inquiry(false, 0, 96), &[]).is_good());
    let r = t.run(&b, &cdbs::request_sense(18), &[]);
    assert!(r.is_good());
    assert_eq!((r.data[2] & 0x0f, r.data[12], r.data[13]), (2, 0x3a, 0));
    // A load: the loader goes on, the other nexus hears the medium may have changed.
    assert!(t.run(&a, &cdbs::start_stop(true, true), &[]).is_good());
    assert!(t.run(&a, &cdbs::TEST_UNIT_READY, &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check(),
        (SenseKey::UNIT_ATTENTION, Asc::NOT_READY_TO_READY_CHANGE)
    );
    let r = t.run(&b, &cdbs::read10(7, 1), &[]);
    assert!(r.is_good());
    assert_eq!(r.data, data);
}

#[test]
fn stop_without_loej_leaves_a_removable_medium_accessible() {
    let t = removable(64);
    let a = t.attach(1);
    assert!(t.run(&a, &cdbs::start_stop(false, false), &[]).is_good());
    assert!(t.run(&a, &cdbs::TEST_UNIT_READY, &[]).is_good());
    // A fixed disk keeps its stopped state (SBC-3 4.17).
    let f = TestLu::new(64, BS);
    let a = f.attach(1);
    assert!(f.run(&a, &cdbs::start_stop(false, false), &[]).is_good());
    assert_eq!(
        f.run(&a, &cdbs::TEST_UNIT_READY, &[]).check(),
        (SenseKey::NOT_READY, Asc::LU_NOT_READY_INIT_REQUIRED)
    );
}

#[test]
fn prevent_holds_the_medium_for_every_nexus_until_allow_logout_or_reset() {
    let t = removable(64);
    let a = t.attach(1);
    let b = t.attach(2);
    let prevented = (SenseKey::ILLEGAL_REQUEST, Asc::MEDIUM_REMOVAL_PREVENTED);
    assert!(t.run(&a, &cdbs::prevent_allow(true), &[]).is_good());
    assert_eq!(
        t.run(&a, &cdbs::start_stop(true, false), &[]).check(),
        prevented
    );
    assert_eq!(
        t.run(&b, &cdbs::start_stop(true, false), &[]).check(),
        prevented
    );
    assert!(t.run(&b, &cdbs::TEST_UNIT_READY, &[]).is_good());
    // Another nexus's ALLOW does not lift it; the preventing one's does.
    assert!(t.run(&b, &cdbs::prevent_allow(false), &[]).is_good());
    assert_eq!(
        t.run(&a, &cdbs::start_stop(true, false), &[]).check(),
        prevented
    );
    assert!(t.run(&a, &cdbs::prevent_allow(false), &[]).is_good());
    assert!(t.run(&a, &cdbs::start_stop(true, false), &[]).is_good());
    // Loading is refused while prevented too (libiscsi PreventAllow.Eject).
    assert!(t.run(&a, &cdbs::prevent_allow(true), &[]).is_good());
    assert_eq!(
        t.run(&a, &cdbs::start_stop(true, true), &[]).check(),
        prevented
    );
    // The preventing nexus goes away: removal is allowed again.
    t.lu.detach(a.id);
    assert!(t.run(&b, &cdbs::start_stop(true, true), &[]).is_good());
    assert!(t.run(&b, &cdbs::prevent_allow(true), &[]).is_good());
    t.lu.reset(ResetKind::LogicalUnit);
    while !t.run(&b, &cdbs::TEST_UNIT_READY, &[]).is_good() {}
    assert!(t.run(&b, &cdbs::start_stop(true, false), &[]).is_good());
    // A reset does not load an ejected medium.
    t.lu.reset(ResetKind::TargetCold);
    while t.run(&b, &cdbs::TEST_UNIT_READY, &[]).status != status::CHECK_CONDITION
        || t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check().0 == SenseKey::UNIT_ATTENTION
    {}
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check(),
        not_present()
    );
}

/// Waits for the sanitize on `t` to end, as an initiator would: TEST UNIT READY until
/// it is no longer NOT READY, SANITIZE IN PROGRESS; returns the progress values seen.
fn wait_sanitize(t: &TestLu, n: &scsi::Nexus) -> Vec<u16> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = t.run(n, &cdbs::TEST_UNIT_READY, &[]);
        match &r.sense {
            Some(s) if s.asc == Asc::SANITIZE_IN_PROGRESS => {
                seen.push(s.progress.expect("progress indication"));
            }
            _ => return seen,
        }
        assert!(Instant::now() < deadline, "sanitize did not end");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn overwrite_writes_the_pattern_over_every_block() {
    let t = TestLu::new(2048, BS);
    let a = t.attach(1);
    assert!(t
        .run(&a, &cdbs::write10(100, 1), &vec![0x11; BS as usize])
        .is_good());
    let p = cdbs::overwrite_params(1, false, &[0xde, 0xad, 0xbe]);
    let r = t.run(&a, &cdbs::sanitize(false, false, 1, p.len() as u16), &p);
    assert!(r.is_good(), "{r:?}");
    let expect: Vec<u8> = [0xde, 0xad, 0xbe]
        .iter()
        .copied()
        .cycle()
        .take(BS as usize)
        .collect();
    for lba in [0, 100, 2047] {
        assert_eq!(t.medium(lba, 1), expect, "block {lba}");
    }
    // Two passes with INVERT: the second pass is the inverted pattern.
    let p = cdbs::overwrite_params(2, true, &[0x0f]);
    assert!(t
        .run(&a, &cdbs::sanitize(false, false, 1, p.len() as u16), &p)
        .is_good());
    assert_eq!(t.medium(5, 1), vec![0xf0; BS as usize]);
}

#[test]
fn overwrite_parameter_errors_point_at_their_field() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let bad_cdb = (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    let bad_param = (
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    for len in [0u16, 4, BS as u16 + 5] {
        let p = vec![1u8; len as usize];
        let r = t.run(&a, &cdbs::sanitize(false, false, 1, len), &p);
        assert_eq!(r.check(), bad_cdb, "length {len}");
        assert_eq!(r.field_pointer(), Some((true, 7, None)));
    }
    let mut p = cdbs::overwrite_params(0, false, &[1; 8]);
    let r = t.run(&a, &cdbs::sanitize(false, false, 1, 12), &p);
    assert_eq!(r.check(), bad_param, "OVERWRITE COUNT 0");
    p[0] = 1;
    p[2..4].copy_from_slice(&0u16.to_be_bytes());
    let r = t.run(&a, &cdbs::sanitize(false, false, 1, 12), &p);
    assert_eq!(r.check(), bad_param, "pattern length 0");
    assert_eq!(r.field_pointer(), Some((false, 2, None)));
    // BLOCK ERASE and EXIT FAILURE MODE take no parameter list.
    for sa in [2u8, 0x1f] {
        let t = TestLu::thin(64, BS);
        let a = t.attach(1);
        let r = t.run(&a, &cdbs::sanitize(false, false, sa, 8), &[0; 8]);
        assert_eq!(r.check(), bad_cdb, "service action {sa:#x}");
    }
    // CRYPTOGRAPHIC ERASE and the reserved service actions are not commands here.
    for sa in [0u8, 3, 4, 0x1e] {
        let r = t.run(&a, &cdbs::sanitize(false, false, sa, 0), &[]);
        assert_eq!(r.check(), bad_cdb, "service action {sa:#x}");
    }
    // Reserved bit 6 of byte 1 and reserved bytes 2-6.
    let mut c = cdbs::sanitize(false, false, 1, 0);
    c[1] |= 0x40;
    assert_eq!(t.run(&a, &c, &[]).field_pointer(), Some((true, 1, Some(6))));
    let mut c = cdbs::sanitize(false, false, 1, 0);
    c[4] = 1;
    assert_eq!(t.run(&a, &c, &[]).field_pointer(), Some((true, 4, Some(0))));
}

#[test]
fn block_erase_deallocates_every_block_of_a_thin_lu_and_only_a_thin_one_offers_it() {
    let t = TestLu::thin(4096, BS);
    let a = t.attach(1);
    assert!(t
        .run(&a, &cdbs::write16(0, 256), &vec![b'a'; 256 * BS as usize])
        .is_good());
    // RSOC lists BLOCK ERASE (and VPD B1h says reads succeed after it: WABEREQ 01b).
    assert_eq!(t.run(&a, &cdbs::report_opcode(0x48, 2), &[]).data[1] & 7, 3);
    assert_eq!(
        t.run(&a, &cdbs::inquiry(true, 0xb1, 64), &[]).data[7] >> 6,
        1
    );
    assert!(t
        .run(&a, &cdbs::sanitize(false, false, 2, 0), &[])
        .is_good());
    let r = t.run(&a, &cdbs::read16(0, 256), &[]);
    assert!(r.is_good());
    assert!(r.data.iter().all(|&b| b == 0), "blocks read as zeros");
    assert_eq!(t.ram.allocated_bytes(), 0, "nothing left in the store");
    // A fully provisioned LU has nothing that reads as zeros after deallocation.
    let f = TestLu::new(64, BS);
    let a = f.attach(1);
    assert_eq!(f.run(&a, &cdbs::report_opcode(0x48, 2), &[]).data[1] & 7, 1);
    assert_eq!(
        f.run(&a, &cdbs::inquiry(true, 0xb1, 64), &[]).data[7] >> 6,
        0
    );
    assert_eq!(
        f.run(&a, &cdbs::sanitize(false, false, 2, 0), &[]).check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB)
    );
    // OVERWRITE and EXIT FAILURE MODE are offered; CRYPTOGRAPHIC ERASE is not.
    assert_eq!(f.run(&a, &cdbs::report_opcode(0x48, 1), &[]).data[1] & 7, 3);
    assert_eq!(
        f.run(&a, &cdbs::report_opcode(0x48, 0x1f), &[]).data[1] & 7,
        3
    );
    assert_eq!(f.run(&a, &cdbs::report_opcode(0x48, 3), &[]).data[1] & 7, 1);
}

fn slow_lu(blocks: u64) -> (TestLu, Arc<FaultyBackstore>) {
    let f = Arc::new(FaultyBackstore::new(blocks * u64::from(BS)));
    (TestLu::over(f.clone(), BS, 7), f)
}

#[test]
fn a_running_sanitize_survives_aborts_and_resets_and_refuses_all_but_three_commands() {
    // 64 MiB at 4 MiB per write and 30 ms per write: about half a second.
    let (t, f) = slow_lu(131072);
    f.slow(Duration::from_millis(30));
    let a = t.attach(1);
    let b = t.attach(2);
    let p = cdbs::overwrite_params(1, false, &[0x77]);
    let abort = AtomicBool::new(true); // the command is aborted as soon as it waits
    let r = t.run_with(
        &a,
        &cdbs::sanitize(false, false, 1, p.len() as u16),
        &p,
        p.len() as u32,
        None,
        &abort,
    );
    assert_eq!(r.status, status::TASK_ABORTED, "the task ends");
    let r = t.run(&b, &cdbs::read10(0, 1), &[]);
    assert_eq!(r.check(), (SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS));
    // INQUIRY and REQUEST SENSE pass; REQUEST SENSE carries the progress.
    assert!(t.run(&b, &cdbs::inquiry(false, 0, 96), &[]).is_good());
    let r = t.run(&b, &cdbs::request_sense(18), &[]);
    assert_eq!((r.data[2] & 0x0f, r.data[12], r.data[13]), (2, 0x04, 0x1b));
    assert_eq!(r.data[15] & 0x80, 0x80, "SKSV: progress indication");
    // Resets and the nexus going away do not stop it.
    t.lu.reset(ResetKind::LogicalUnit);
    t.lu.reset(ResetKind::TargetCold);
    t.lu.detach(a.id);
    let _ = t.run(&b, &cdbs::TEST_UNIT_READY, &[]); // the reset's unit attention
    let _ = t.run(&b, &cdbs::TEST_UNIT_READY, &[]);
    let seen = wait_sanitize(&t, &b);
    assert!(seen.len() >= 2, "progress was visible: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "monotonic: {seen:?}");
    assert!(t.run(&b, &cdbs::TEST_UNIT_READY, &[]).is_good());
    let r = t.run(&b, &cdbs::read10(131071, 1), &[]);
    assert_eq!(r.data, vec![0x77; BS as usize], "the last block too");
}

#[test]
fn immed_returns_at_once_and_a_second_sanitize_waits_its_turn() {
    let (t, f) = slow_lu(16384);
    f.slow(Duration::from_millis(50));
    let a = t.attach(1);
    let p = cdbs::overwrite_params(1, false, &[0x01]);
    let started = Instant::now();
    assert!(t
        .run(&a, &cdbs::sanitize(true, false, 1, p.len() as u16), &p)
        .is_good());
    assert!(started.elapsed() < Duration::from_millis(40));
    let r = t.run(&a, &cdbs::sanitize(true, false, 1, p.len() as u16), &p);
    assert_eq!(r.check(), (SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS));
    wait_sanitize(&t, &a);
    assert_eq!(t.run(&a, &cdbs::read10(9, 1), &[]).data, vec![1; 512]);
}

#[test]
fn a_failed_sanitize_leaves_failure_mode_until_exit_with_ause_or_a_good_sanitize() {
    let (t, f) = slow_lu(2048);
    let a = t.attach(1);
    f.fail(1000 * u64::from(BS)..1001 * u64::from(BS), 5, false);
    let p = cdbs::overwrite_params(1, false, &[0x33]);
    let cdb = |ause| cdbs::sanitize(false, ause, 1, p.len() as u16);
    let failed = (SenseKey::MEDIUM_ERROR, Asc::SANITIZE_COMMAND_FAILED);
    assert_eq!(t.run(&a, &cdb(false), &p).check(), failed);
    assert_eq!(t.run(&a, &cdbs::read10(0, 1), &[]).check(), failed);
    assert_eq!(t.run(&a, &cdbs::TEST_UNIT_READY, &[]).check(), failed);
    // AUSE was 0: EXIT FAILURE MODE is refused; only a good sanitize ends it.
    let exit = cdbs::sanitize(false, false, 0x1f, 0);
    assert_eq!(
        t.run(&a, &exit, &[]).check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB)
    );
    assert_eq!(t.run(&a, &cdb(true), &p).check(), failed);
    // That one had AUSE: EXIT FAILURE MODE now ends failure mode.
    assert!(t.run(&a, &exit, &[]).is_good());
    assert!(t.run(&a, &cdbs::read10(0, 1), &[]).is_good());
    assert_eq!(t.run(&a, &cdb(false), &p).check(), failed);
    *f.fault.lock().unwrap() = None;
    assert!(t.run(&a, &cdb(false), &p).is_good());
    assert_eq!(t.run(&a, &cdbs::read10(1000, 1), &[]).data, vec![0x33; 512]);
}

#[test]
fn sanitize_obeys_write_protection_and_reservations() {
    let t = TestLu::read_only(64, BS);
    let a = t.attach(1);
    let p = cdbs::overwrite_params(1, false, &[0]);
    assert_eq!(
        t.run(&a, &cdbs::sanitize(false, false, 1, p.len() as u16), &p)
            .check()
            .0,
        SenseKey::DATA_PROTECT
    );
    let t = TestLu::thin(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    assert!(t.run(&b, &[0x16, 0, 0, 0, 0, 0], &[]).is_good()); // RESERVE(6)
    let r = t.run(&a, &cdbs::sanitize(false, false, 2, 0), &[]);
    assert_eq!(r.status, status::RESERVATION_CONFLICT);
    // Ejected: no medium to sanitize.
    let t = removable(64);
    let a = t.attach(1);
    assert!(t.run(&a, &cdbs::start_stop(true, false), &[]).is_good());
    assert_eq!(
        t.run(&a, &cdbs::sanitize(false, false, 1, p.len() as u16), &p)
            .check(),
        not_present()
    );
}
