//! The copy manager in process: LUs over RAM, EXTENDED COPY and RECEIVE COPY RESULTS
//! as CDB bytes and parameter lists (built by testkit from SPC-4, not by oxtgt's
//! parser), data checked on the media.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use copy::{Manager, Resolver};
use scsi::sense::status;
use scsi::testing::{Reply, TestLu};
use scsi::{LogicalUnit, Nexus};
use testkit::cdb as cdbs;
use testkit::xcopy;

const BS: u32 = 512;

#[derive(Debug)]
struct Lus(Vec<Arc<LogicalUnit>>);

impl Resolver for Lus {
    fn accessible(&self, _: &Nexus) -> Vec<Arc<LogicalUnit>> {
        self.0.clone()
    }
}

struct Rig {
    src: TestLu,
    dst: TestLu,
    hidden: TestLu,
    manager: Manager,
}

/// Two LUs the initiator may reach and one it may not.
fn rig() -> Rig {
    let src = TestLu::with_identity(1, 4096, BS, |l| l);
    let dst = TestLu::with_identity(2, 4096, BS, |l| l);
    let hidden = TestLu::with_identity(3, 4096, BS, |l| l);
    let manager = Manager::new(Arc::new(Lus(vec![src.lu.clone(), dst.lu.clone()])));
    Rig {
        src,
        dst,
        hidden,
        manager,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

impl Rig {
    fn xcopy(&self, n: &Nexus, params: &[u8], abort: &AtomicBool) -> Reply {
        self.src.run_with(
            n,
            &xcopy::command(params.len()),
            params,
            params.len() as u32,
            Some(&self.manager),
            abort,
        )
    }

    fn results(&self, n: &Nexus, sa: u8, list_id: u8) -> Reply {
        let mut c = cdbs::receive_copy_results(sa, 65536);
        c[2] = list_id;
        self.src.run_with(
            n,
            &c,
            &[],
            65536,
            Some(&self.manager),
            &AtomicBool::new(false),
        )
    }
}

#[test]
fn a_block_segment_copies_exactly_its_blocks_between_lus() {
    let r = rig();
    let n = r.src.attach(1);
    r.dst.attach(1);
    let data = pattern(64 * BS as usize, 3);
    assert!(r.src.run(&n, &cdbs::write10(100, 64), &data).is_good());
    let params = xcopy::list(
        7,
        0,
        &[
            xcopy::cscd(&r.src.lu.identity().naa, BS),
            xcopy::cscd(&r.dst.lu.identity().naa, BS),
        ],
        &[xcopy::seg_blocks(0, 1, 64, 100, 900, false)],
    );
    let reply = r.xcopy(&n, &params, &AtomicBool::new(false));
    assert!(reply.is_good(), "{reply:?}");
    assert_eq!(r.dst.medium(900, 64), data);
    assert_eq!(r.dst.medium(899, 1), vec![0; BS as usize], "nothing before");
    assert_eq!(r.dst.medium(964, 1), vec![0; BS as usize], "nothing after");
    // COPY STATUS: done, one segment, the bytes moved.
    let st = r.results(&n, 0x00, 7);
    assert!(st.is_good());
    assert_eq!((st.data[4], st.data[6]), (0x01, 1));
    assert_eq!(
        u32::from_be_bytes(st.data[8..12].try_into().unwrap()),
        64 * BS
    );
    // The destination's counters saw the copy as copy traffic, not host writes.
    let c = r.dst.lu.io_stats().snapshot();
    assert_eq!((c.write_ops, c.copy_write_bytes), (0, 64 * u64::from(BS)));
}

#[test]
fn an_lu_outside_the_initiators_access_is_unreachable_and_nothing_moves() {
    let r = rig();
    let n = r.src.attach(1);
    let data = pattern(8 * BS as usize, 5);
    assert!(r.src.run(&n, &cdbs::write10(0, 8), &data).is_good());
    let params = xcopy::list(
        1,
        0,
        &[
            xcopy::cscd(&r.src.lu.identity().naa, BS),
            xcopy::cscd(&r.hidden.lu.identity().naa, BS),
        ],
        &[xcopy::seg_blocks(0, 1, 8, 0, 0, false)],
    );
    let reply = r.xcopy(&n, &params, &AtomicBool::new(false));
    let (key, asc) = reply.check();
    assert_eq!(key.0, 0x0a, "COPY ABORTED");
    assert_eq!(asc.0, 0x0d02, "COPY TARGET DEVICE NOT REACHABLE");
    assert_eq!(r.hidden.medium(0, 8), vec![0; 8 * BS as usize]);
}

#[test]
fn an_aborted_task_stops_the_copy() {
    let r = rig();
    let n = r.src.attach(1);
    let params = xcopy::list(
        2,
        0,
        &[
            xcopy::cscd(&r.src.lu.identity().naa, BS),
            xcopy::cscd(&r.dst.lu.identity().naa, BS),
        ],
        &[xcopy::seg_blocks(0, 1, 4096, 0, 0, false)],
    );
    // Raised before the job's first window: it never copies a byte.
    let reply = r.xcopy(&n, &params, &AtomicBool::new(true));
    assert_eq!(reply.status, status::CHECK_CONDITION);
    assert_eq!(reply.check().0 .0, 0x0b, "ABORTED COMMAND");
    assert_eq!(r.dst.lu.io_stats().snapshot().copy_write_bytes, 0);
}

#[test]
fn held_data_is_what_the_segment_copied() {
    let r = rig();
    let n = r.src.attach(1);
    let data = pattern(16 * BS as usize, 9);
    assert!(r.src.run(&n, &cdbs::write10(40, 16), &data).is_good());
    let mut seg = xcopy::seg_blocks(0, 1, 16, 40, 0, false);
    seg[0] = 0x0d; // 02h with the data held for RECEIVE COPY DATA
    let params = xcopy::list(
        9,
        0,
        &[
            xcopy::cscd(&r.src.lu.identity().naa, BS),
            xcopy::cscd(&r.dst.lu.identity().naa, BS),
        ],
        &[seg],
    );
    assert!(r.xcopy(&n, &params, &AtomicBool::new(false)).is_good());
    let held = r.results(&n, 0x01, 9);
    assert!(held.is_good());
    let len = u32::from_be_bytes(held.data[..4].try_into().unwrap()) as usize;
    assert_eq!(&held.data[4..4 + len], &data[..]);
    assert_eq!(r.dst.medium(0, 16), data);
}

#[test]
fn a_source_that_fails_mid_copy_aborts_with_the_failure_and_an_exact_count() {
    // The source fails reads of blocks 2032-2039, inside the second segment.
    let f = Arc::new(scsi::testing::FaultyBackstore::new(4096 * u64::from(BS)));
    let store: Arc<dyn backstore::Backstore> = f.clone();
    let src = TestLu {
        lu: LogicalUnit::new(scsi::testing::identity(9), store, BS, false).shared(),
        ram: Arc::new(backstore::RamBackstore::new(0)),
    };
    let dst = TestLu::with_identity(2, 4096, BS, |l| l);
    let manager = Manager::new(Arc::new(Lus(vec![src.lu.clone(), dst.lu.clone()])));
    let n = src.attach(1);
    dst.attach(1);
    let data = pattern(4096 * BS as usize, 8);
    assert!(src.run(&n, &cdbs::write16(0, 4096), &data).is_good());
    f.fail(2032 * u64::from(BS)..2040 * u64::from(BS), 5, true); // EIO
    let params = xcopy::list(
        4,
        0,
        &[
            xcopy::cscd(&src.lu.identity().naa, BS),
            xcopy::cscd(&dst.lu.identity().naa, BS),
        ],
        &[
            xcopy::seg_blocks(0, 1, 64, 0, 0, false),
            xcopy::seg_blocks(0, 1, 64, 2000, 2000, false),
            xcopy::seg_blocks(0, 1, 64, 3000, 3000, false),
        ],
    );
    let run = |cdb: &[u8], p: &[u8], alloc: u32| {
        src.run_with(&n, cdb, p, alloc, Some(&manager), &AtomicBool::new(false))
    };
    let reply = run(&xcopy::command(params.len()), &params, params.len() as u32);
    let (key, asc) = reply.check();
    assert_eq!(
        (key.0, asc.0),
        (0x0a, 0x0d01),
        "COPY ABORTED, THIRD PARTY DEVICE FAILURE"
    );
    let s = reply.sense.as_ref().unwrap();
    assert_eq!(s.command_specific, Some(1), "the failing segment");
    assert_eq!(
        s.information,
        Some(0x1100),
        "the source's UNRECOVERED READ ERROR"
    );
    // The first segment landed, the third never ran.
    assert_eq!(dst.medium(0, 64), data[..64 * BS as usize].to_vec());
    assert_eq!(dst.medium(3000, 64), vec![0; 64 * BS as usize]);
    // COPY STATUS: completed with an error, one segment processed, and exactly
    // the bytes written before the failure (here the first segment's: the second
    // segment's read of its first chunk already failed).
    let mut c = cdbs::receive_copy_results(0x00, 1024);
    c[2] = 4;
    let st = run(&c, &[], 1024);
    assert!(st.is_good());
    let moved = u32::from_be_bytes(st.data[8..12].try_into().unwrap());
    assert_eq!(st.data[4] & 0x7f, 0x02, "completed with errors");
    assert_eq!(st.data[6], 1, "segments processed");
    let written = (0..4096u64)
        .filter(|&b| dst.medium(b, 1) != vec![0; BS as usize])
        .count() as u32;
    assert_eq!(
        moved,
        written * BS,
        "the count is what reached the destination"
    );
}
