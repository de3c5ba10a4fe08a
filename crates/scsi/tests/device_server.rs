//! The device server in process: an LU over RAM driven by CDB bytes. Each test states
//! what an initiator would see (status, sense, field pointer, data, bytes on the
//! medium).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use scsi::lu::ResetKind;
use scsi::sense::{status, Asc, SenseKey};
use scsi::testing::TestLu;
use testkit::cdb as cdbs;

const BS: u32 = 512;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn write_then_read_round_trips_through_the_medium() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let data = pattern(2 * BS as usize, 7);
    assert!(t.run(&a, &cdbs::write10(3, 2), &data).is_good());
    assert_eq!(t.medium(3, 2), data, "bytes on the medium");
    let r = t.run(&a, &cdbs::read10(3, 2), &[]);
    assert!(r.is_good());
    assert_eq!(r.data, data);
}

#[test]
fn past_the_last_block_is_lba_out_of_range() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    assert_eq!(
        t.run(&a, &cdbs::read10(63, 2), &[]).check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE)
    );
    assert!(t.run(&a, &cdbs::read10(63, 1), &[]).is_good());
}

#[test]
fn reserved_bits_point_at_their_byte_and_bit() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let mut c = cdbs::read10(0, 1);
    c[1] = 0x20; // RDPROTECT 001b: no protection information formatted
    let r = t.run(&a, &c, &[]);
    assert_eq!(
        r.check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB)
    );
    assert_eq!(r.field_pointer(), Some((true, 1, Some(5))));
    let mut c = cdbs::read16(0, 1);
    c[15] = 0x04; // NACA in the control byte
    assert_eq!(
        t.run(&a, &c, &[]).field_pointer(),
        Some((true, 15, Some(2)))
    );
}

#[test]
fn unknown_opcode_points_at_byte_zero() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let r = t.run(&a, &[0xc0, 0, 0, 0, 0, 0], &[]);
    assert_eq!(
        r.check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_COMMAND_OPCODE)
    );
}

#[test]
fn reset_raises_a_unit_attention_once_on_every_nexus() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    t.lu.reset(ResetKind::LogicalUnit);
    for n in [&a, &b] {
        // INQUIRY is not blocked by a pending unit attention (SPC-4 5.14).
        assert!(t.run(n, &cdbs::inquiry(false, 0, 96), &[]).is_good());
        assert_eq!(
            t.run(n, &cdbs::TEST_UNIT_READY, &[]).check(),
            (SenseKey::UNIT_ATTENTION, Asc::LU_RESET)
        );
        assert!(t.run(n, &cdbs::TEST_UNIT_READY, &[]).is_good());
    }
}

#[test]
fn request_sense_returns_the_pending_unit_attention_as_data() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    t.lu.reset(ResetKind::TargetWarm);
    let r = t.run(&a, &cdbs::request_sense(18), &[]);
    assert!(r.is_good());
    assert_eq!((r.data[2], r.data[12], r.data[13]), (0x06, 0x29, 0x02));
    // Consumed: the next command runs.
    assert!(t.run(&a, &cdbs::TEST_UNIT_READY, &[]).is_good());
}

#[test]
fn mode_select_tells_the_other_nexuses_only() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    // MODE SENSE(6), DBD, caching page.
    let r = t.run(&a, &[0x1a, 0x08, 0x08, 0, 255, 0], &[]);
    assert!(r.is_good());
    let page_len = usize::from(r.data[5]) + 2;
    let mut params = vec![0u8, 0, 0, 0];
    params.extend_from_slice(&r.data[4..4 + page_len]);
    params[4] &= 0x3f; // PS is reserved in MODE SELECT
    params[4 + 2] ^= 0x04; // WCE
    let sel = [0x15, 0x10, 0, 0, params.len() as u8, 0];
    assert!(t.run(&a, &sel, &params).is_good());
    assert!(t.run(&a, &cdbs::TEST_UNIT_READY, &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check(),
        (SenseKey::UNIT_ATTENTION, Asc::MODE_PARAMETERS_CHANGED)
    );
    assert_eq!(t.lu.write_cache_enabled(), params[6] & 0x04 != 0);
}

#[test]
fn unit_attention_comes_before_a_reservation_conflict() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    assert!(t.run(&a, &[0x16, 0, 0, 0, 0, 0], &[]).is_good()); // RESERVE(6)
    t.lu.raise_unit_attention_for(2, Asc::CAPACITY_DATA_CHANGED);
    assert_eq!(
        t.run(&b, &cdbs::read10(0, 1), &[]).check(),
        (SenseKey::UNIT_ATTENTION, Asc::CAPACITY_DATA_CHANGED)
    );
    assert_eq!(
        t.run(&b, &cdbs::read10(0, 1), &[]).status,
        status::RESERVATION_CONFLICT
    );
}

#[test]
fn spc2_reservation_lets_only_the_listed_commands_through() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    assert!(t.run(&a, &[0x16, 0, 0, 0, 0, 0], &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::read10(0, 1), &[]).status,
        status::RESERVATION_CONFLICT
    );
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).status,
        status::RESERVATION_CONFLICT
    );
    assert!(t.run(&b, &cdbs::inquiry(false, 0, 96), &[]).is_good());
    assert!(t.run(&b, &cdbs::request_sense(18), &[]).is_good());
    // RELEASE from a non-holder is allowed and changes nothing.
    assert!(t.run(&b, &[0x17, 0, 0, 0, 0, 0], &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::read10(0, 1), &[]).status,
        status::RESERVATION_CONFLICT
    );
    assert!(t.run(&a, &cdbs::read10(0, 1), &[]).is_good());
    assert!(t.run(&a, &[0x17, 0, 0, 0, 0, 0], &[]).is_good());
    assert!(t.run(&b, &cdbs::read10(0, 1), &[]).is_good());
    // The holder's session ending releases it too.
    assert!(t.run(&b, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).is_good()); // RESERVE(10)
    t.lu.detach(2);
    assert!(t.run(&a, &cdbs::read10(0, 1), &[]).is_good());
}

/// Registers `n` with `key` and, when `kind` is non-zero, reserves with that type.
fn register_and_reserve(t: &TestLu, n: &scsi::Nexus, key: u64, kind: u8) {
    let r = t.run(n, &cdbs::pr_out(0, 0), &cdbs::pr_params(0, key));
    assert!(r.is_good(), "REGISTER: {r:?}");
    if kind != 0 {
        let r = t.run(n, &cdbs::pr_out(1, kind), &cdbs::pr_params(key, 0));
        assert!(r.is_good(), "RESERVE: {r:?}");
    }
}

#[test]
fn write_exclusive_conflicts_only_with_writes_of_others() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    register_and_reserve(&t, &a, 0xa, 1);
    let block = pattern(BS as usize, 1);
    // Read class and "any" class pass; write class conflicts.
    assert!(t.run(&b, &cdbs::read10(0, 1), &[]).is_good());
    assert!(t.run(&b, &[0x1a, 0x08, 0x3f, 0, 255, 0], &[]).is_good());
    assert!(t.run(&b, &cdbs::TEST_UNIT_READY, &[]).is_good());
    assert!(t.run(&b, &cdbs::inquiry(true, 0x83, 255), &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::write10(0, 1), &block).status,
        status::RESERVATION_CONFLICT
    );
    assert_eq!(t.medium(0, 1), vec![0; BS as usize], "nothing written");
    assert!(t.run(&a, &cdbs::write10(0, 1), &block).is_good());
}

#[test]
fn exclusive_access_conflicts_with_reads_of_others_too() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    register_and_reserve(&t, &a, 0xa, 3);
    assert_eq!(
        t.run(&b, &cdbs::read10(0, 1), &[]).status,
        status::RESERVATION_CONFLICT
    );
    assert!(t.run(&b, &cdbs::TEST_UNIT_READY, &[]).is_good());
    assert!(t.run(&b, &cdbs::pr_in(0, 64), &[]).is_good());
}

#[test]
fn registrants_only_lets_registered_nexuses_write() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    let c = t.attach(3);
    register_and_reserve(&t, &a, 0xa, 5); // WRITE EXCLUSIVE - REGISTRANTS ONLY
    register_and_reserve(&t, &b, 0xb, 0);
    let block = pattern(BS as usize, 2);
    assert!(t.run(&b, &cdbs::write10(1, 1), &block).is_good());
    assert_eq!(
        t.run(&c, &cdbs::write10(1, 1), &block).status,
        status::RESERVATION_CONFLICT
    );
    // PREEMPT by B removes A's registration and tells A.
    let r = t.run(&b, &cdbs::pr_out(4, 5), &cdbs::pr_params(0xb, 0xa));
    assert!(r.is_good(), "{r:?}");
    assert_eq!(
        t.run(&a, &cdbs::TEST_UNIT_READY, &[]).check(),
        (SenseKey::UNIT_ATTENTION, Asc::REGISTRATIONS_PREEMPTED)
    );
}

#[test]
fn reservation_key_mismatch_is_a_conflict() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    register_and_reserve(&t, &a, 0xa, 0);
    let r = t.run(&a, &cdbs::pr_out(1, 1), &cdbs::pr_params(0xbad, 0));
    assert_eq!(r.status, status::RESERVATION_CONFLICT);
}

#[test]
fn write_protected_lu_refuses_writes_and_serves_reads() {
    let t = TestLu::read_only(64, BS);
    let a = t.attach(1);
    let block = pattern(BS as usize, 3);
    assert_eq!(
        t.run(&a, &cdbs::write10(0, 1), &block).check(),
        (SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED)
    );
    assert!(t.run(&a, &cdbs::read10(0, 1), &[]).is_good());
}

#[test]
fn a_data_out_that_splits_a_block_writes_nothing() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let data = pattern(BS as usize + 100, 4);
    let r = t.run(&a, &cdbs::write10(0, 2), &data);
    assert_eq!(
        r.check(),
        (
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_FIELD_IN_INFORMATION_UNIT
        )
    );
    assert_eq!(t.medium(0, 2), vec![0; 2 * BS as usize]);
}

#[test]
fn compare_and_write_miscompare_reports_the_offset_and_writes_nothing() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let old = pattern(BS as usize, 5);
    assert!(t.run(&a, &cdbs::write10(9, 1), &old).is_good());
    let mut verify = old.clone();
    verify[77] ^= 0xff;
    let mut data = verify;
    data.extend(pattern(BS as usize, 6));
    let mut cdb = [0u8; 16];
    cdb[0] = 0x89;
    cdb[2..10].copy_from_slice(&9u64.to_be_bytes());
    cdb[13] = 1;
    let r = t.run(&a, &cdb, &data);
    assert_eq!(
        r.check(),
        (SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
    );
    assert_eq!(r.sense.unwrap().information, Some(77));
    assert_eq!(t.medium(9, 1), old);
    // The right verify data writes.
    let mut data = old;
    let new = pattern(BS as usize, 6);
    data.extend_from_slice(&new);
    assert!(t.run(&a, &cdb, &data).is_good());
    assert_eq!(t.medium(9, 1), new);
}

#[test]
fn a_stopped_lu_is_not_ready_for_media_commands() {
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    assert!(t.run(&a, &[0x1b, 0, 0, 0, 0x00, 0], &[]).is_good()); // STOP
    assert_eq!(
        t.run(&a, &cdbs::read10(0, 1), &[]).check(),
        (SenseKey::NOT_READY, Asc::LU_NOT_READY_INIT_REQUIRED)
    );
    assert!(t.run(&a, &cdbs::inquiry(false, 0, 96), &[]).is_good());
    assert!(t.run(&a, &[0x1b, 0, 0, 0, 0x01, 0], &[]).is_good()); // START
    assert!(t.run(&a, &cdbs::read10(0, 1), &[]).is_good());
}

#[test]
fn task_abort_reaches_the_selected_nexuses_only() {
    let t = TestLu::new(64, BS);
    let mine = Arc::new(AtomicBool::new(false));
    let theirs = Arc::new(AtomicBool::new(false));
    let t1 = t.lu.track_task(1, mine.clone());
    let t2 = t.lu.track_task(2, theirs.clone());
    let hit = t.lu.abort_tasks(|n| n != 1);
    assert_eq!(hit.into_iter().collect::<Vec<_>>(), vec![2]);
    assert!(!mine.load(Ordering::Acquire));
    assert!(theirs.load(Ordering::Acquire));
    t.lu.untrack_task(t1);
    t.lu.untrack_task(t2);
    assert!(t.lu.abort_tasks(|_| true).is_empty());
}

#[test]
fn read_capacity16_reports_thin_provisioning() {
    let t = TestLu::thin(1024, 4096);
    let a = t.attach(1);
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = 32;
    let r = t.run(&a, &cdb, &[]);
    assert!(r.is_good());
    assert_eq!(u64::from_be_bytes(r.data[..8].try_into().unwrap()), 1023);
    assert_eq!(u32::from_be_bytes(r.data[8..12].try_into().unwrap()), 4096);
    assert_eq!(r.data[14] & 0xc0, 0xc0, "LBPME and LBPRZ");
}

#[test]
fn over_the_transfer_limit_points_at_the_transfer_length_of_each_cdb_size() {
    let t = TestLu::new(1 << 16, BS);
    let a = t.attach(1);
    let over = (8 << 20) / BS + 1;
    let r = t.run(&a, &cdbs::read10(0, over as u16), &[]);
    assert_eq!(r.field_pointer(), Some((true, 7, None)));
    let r = t.run(&a, &cdbs::read12(0, over), &[]);
    assert_eq!(r.field_pointer(), Some((true, 6, None)));
    for cdb in [cdbs::read16(0, over), cdbs::verify16(0, over)] {
        let r = t.run(&a, &cdb, &[]);
        assert_eq!(r.check().1, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(r.field_pointer(), Some((true, 10, None)), "{:02x}", cdb[0]);
    }
    // WRITE(16): refused before the medium is touched.
    let r = t.run_with(
        &a,
        &cdbs::write16(0, over),
        &[],
        over * BS,
        None,
        &AtomicBool::new(false),
    );
    assert_eq!(r.field_pointer(), Some((true, 10, None)));
    // WRITE ATOMIC(16): TRANSFER LENGTH is bytes 12-13.
    let t4k = TestLu::new(1 << 16, 4096);
    let a4 = t4k.attach(1);
    let mut wa = [0u8; 16];
    wa[0] = 0x9c;
    wa[12..14].copy_from_slice(&(((8u32 << 20) / 4096 + 1) as u16).to_be_bytes());
    let r = t4k.run_with(&a4, &wa, &[], 0, None, &AtomicBool::new(false));
    assert_eq!(r.field_pointer(), Some((true, 12, None)));
}

#[test]
fn clear_task_set_aborts_other_nexuses_and_tells_them() {
    use scsi::lu::TaskManagement;
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    let theirs = Arc::new(AtomicBool::new(false));
    let mine = Arc::new(AtomicBool::new(false));
    let tb = t.lu.track_task(2, theirs.clone());
    let ta = t.lu.track_task(1, mine.clone());
    t.lu.task_management(TaskManagement::ClearTaskSet, 1);
    t.lu.task_management_done(TaskManagement::ClearTaskSet);
    assert!(theirs.load(Ordering::Acquire));
    assert!(
        !mine.load(Ordering::Acquire),
        "the issuer's own tasks are its transport's"
    );
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check(),
        (
            SenseKey::UNIT_ATTENTION,
            Asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR
        )
    );
    assert!(t.run(&a, &cdbs::TEST_UNIT_READY, &[]).is_good());
    t.lu.untrack_task(ta);
    t.lu.untrack_task(tb);
}

#[test]
fn abort_task_set_leaves_other_nexuses_alone() {
    use scsi::lu::TaskManagement;
    let t = TestLu::new(64, BS);
    let b = t.attach(2);
    let theirs = Arc::new(AtomicBool::new(false));
    let tb = t.lu.track_task(2, theirs.clone());
    t.lu.task_management(TaskManagement::AbortTaskSet, 1);
    t.lu.task_management_done(TaskManagement::AbortTaskSet);
    assert!(!theirs.load(Ordering::Acquire));
    assert!(t.run(&b, &cdbs::TEST_UNIT_READY, &[]).is_good());
    t.lu.untrack_task(tb);
}

#[test]
fn lu_reset_aborts_everyone_and_reports_the_reset_once_done() {
    use scsi::lu::TaskManagement;
    let t = TestLu::new(64, BS);
    let a = t.attach(1);
    let b = t.attach(2);
    assert!(t.run(&b, &[0x16, 0, 0, 0, 0, 0], &[]).is_good()); // B holds RESERVE(6)
    let theirs = Arc::new(AtomicBool::new(false));
    let tb = t.lu.track_task(2, theirs.clone());
    t.lu.task_management(TaskManagement::LogicalUnitReset, 1);
    assert!(theirs.load(Ordering::Acquire));
    // Not reset yet: the issuer's tasks are still draining.
    assert_eq!(
        t.run(&a, &cdbs::read10(0, 1), &[]).status,
        status::RESERVATION_CONFLICT
    );
    t.lu.task_management_done(TaskManagement::LogicalUnitReset);
    for n in [&a, &b] {
        assert_eq!(
            t.run(n, &cdbs::TEST_UNIT_READY, &[]).check(),
            (SenseKey::UNIT_ATTENTION, Asc::LU_RESET)
        );
    }
    assert!(
        t.run(&a, &cdbs::read10(0, 1), &[]).is_good(),
        "reservation gone"
    );
    t.lu.untrack_task(tb);
}

#[test]
fn every_write_passes_the_observers_and_the_counters() {
    use scsi::lu::WriteObserver;
    use std::sync::Mutex;
    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<(u64, u64)>>);
    impl WriteObserver for Seen {
        fn before_write(&self, _lu: &scsi::LogicalUnit, lba: u64, blocks: u64) {
            self.0.lock().unwrap().push((lba, blocks));
        }
    }
    let t = TestLu::thin(4096, BS);
    let a = t.attach(1);
    let seen = Arc::new(Seen::default());
    t.lu.add_write_observer(seen.clone());
    assert!(t
        .run(&a, &cdbs::write10(5, 2), &pattern(2 * BS as usize, 1))
        .is_good());
    assert!(t.run(&a, &cdbs::read10(5, 2), &[]).is_good());
    // WRITE SAME(16) of 8 blocks at 100, UNMAP of 4 blocks at 200, CAW of 1 at 5.
    let mut ws = [0u8; 16];
    ws[0] = 0x93;
    ws[2..10].copy_from_slice(&100u64.to_be_bytes());
    ws[13] = 8;
    assert!(t.run(&a, &ws, &pattern(BS as usize, 2)).is_good());
    let unmap = scsi::params::UnmapList {
        ranges: vec![scsi::params::UnmapRange {
            lba: 200,
            blocks: 4,
        }],
    }
    .encode();
    let mut um = [0u8; 10];
    um[0] = 0x42;
    um[8] = unmap.len() as u8;
    assert!(t.run(&a, &um, &unmap).is_good());
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[2..10].copy_from_slice(&5u64.to_be_bytes());
    caw[13] = 1;
    let mut data = t.medium(5, 1);
    data.extend(pattern(BS as usize, 3));
    assert!(t.run(&a, &caw, &data).is_good());
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![(5, 2), (100, 8), (200, 4), (5, 1)]
    );
    let c = t.lu.io_stats().snapshot();
    assert_eq!((c.read_ops, c.read_bytes), (2, 3 * u64::from(BS)));
    assert_eq!(c.write_ops, 3, "WRITE, WRITE SAME's one chunk, CAW");
    assert_eq!(c.unmap_bytes, 4 * u64::from(BS));
}

fn faulty(blocks: u64) -> (TestLu, Arc<scsi::testing::FaultyBackstore>) {
    let f = Arc::new(scsi::testing::FaultyBackstore::new(blocks * u64::from(BS)));
    (TestLu::over(f.clone(), BS, 9), f)
}

#[test]
fn eio_is_a_medium_error_at_the_failing_lba_and_other_ranges_still_serve() {
    let (t, f) = faulty(64);
    let a = t.attach(1);
    f.fail(10 * u64::from(BS)..11 * u64::from(BS), 5, true);
    let r = t.run(&a, &cdbs::read10(10, 1), &[]);
    assert_eq!(
        r.check(),
        (SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR)
    );
    assert_eq!(r.sense.unwrap().information, Some(10));
    let r = t.run(&a, &cdbs::write10(10, 1), &pattern(BS as usize, 1));
    assert_eq!(r.check(), (SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR));
    assert!(t.run(&a, &cdbs::read10(20, 1), &[]).is_good());
    assert!(t
        .run(&a, &cdbs::write10(20, 1), &pattern(BS as usize, 1))
        .is_good());
}

#[test]
fn enospc_is_space_allocation_failed_and_reads_still_serve() {
    let (t, f) = faulty(64);
    let a = t.attach(1);
    f.fail(0..64 * u64::from(BS), 28, false);
    let r = t.run(&a, &cdbs::write10(3, 1), &pattern(BS as usize, 1));
    assert_eq!(
        r.check(),
        (
            SenseKey::DATA_PROTECT,
            Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT
        )
    );
    assert!(t.run(&a, &cdbs::read10(3, 1), &[]).is_good());
    *f.fault.lock().unwrap() = None;
    assert!(t
        .run(&a, &cdbs::write10(3, 1), &pattern(BS as usize, 1))
        .is_good());
}
