//! A tape LU (SSC) in process: CDB bytes in, status, sense, data and the cartridge
//! file out. Each test is a row of the sense rules the Linux st driver relies on
//! (shared/guide/TAPE.md §1.9 and its trap list).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scsi::sense::{Asc, Sense, SenseKey};
use scsi::ssc::Tape;
use scsi::testing::{Reply, TestLu};
use scsi::{LogicalUnit, Nexus};
use testkit::cdb as cdbs;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxtgt-ssc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn drive(dir: &Path, capacity: u64) -> TestLu {
    let tape = Tape::open(dir, "T1", capacity).unwrap();
    let lu = LogicalUnit::new_tape(scsi::testing::identity(3), tape, false);
    TestLu {
        lu: lu.shared(),
        ram: Arc::new(backstore::RamBackstore::new(0)),
    }
}

use cdbs::{
    space as space6, tape_read as read6, tape_write as write6, write_filemarks as weof, REWIND,
};

fn sense(r: &Reply) -> &Sense {
    r.sense.as_ref().expect("sense")
}

/// (key, ASC, FM/EOM/ILI bits, INFORMATION as signed) of a CHECK CONDITION.
fn tape_check(r: &Reply) -> (SenseKey, Asc, u8, Option<i64>) {
    let (k, a) = r.check();
    let s = sense(r);
    (k, a, s.flags, s.information.map(|i| i as i64))
}

/// READ POSITION short form with allocation length 0 (what st sends): position, flags.
fn position(t: &TestLu, n: &Nexus) -> (u32, u8) {
    let r = t.run(n, &[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert!(r.is_good(), "{r:?}");
    assert_eq!(
        r.data.len(),
        20,
        "short form whatever the allocation length"
    );
    (
        u32::from_be_bytes(r.data[4..8].try_into().unwrap()),
        r.data[0],
    )
}

fn write_var(t: &TestLu, n: &Nexus, data: &[u8]) {
    let r = t.run(n, &write6(false, data.len() as u32), data);
    assert!(r.is_good(), "{r:?}");
}

fn read_var(t: &TestLu, n: &Nexus, len: u32) -> Reply {
    t.run_with(
        n,
        &read6(false, false, len),
        &[],
        len,
        None,
        &std::sync::atomic::AtomicBool::new(false),
    )
}

#[test]
fn inquiry_and_limits_describe_a_tape_drive() {
    let d = dir("inq");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    let r = t.run(&a, &cdbs::inquiry(false, 0, 96), &[]);
    assert_eq!((r.data[0], r.data[1], r.data[2]), (0x01, 0x80, 0x06));
    let versions: Vec<u16> = r.data[58..66]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert!(versions.contains(&0x0400), "SSC-3: {versions:x?}");
    let r = t.run(&a, &cdbs::inquiry(true, 0, 64), &[]);
    assert_eq!(&r.data[4..], &[0x00, 0x80, 0x83, 0x86, 0x8f]);
    assert!(!t.run(&a, &cdbs::inquiry(true, 0xb0, 64), &[]).is_good());
    let r = t.run(&a, &[0x05, 0, 0, 0, 0, 0], &[]);
    let max = u32::from_be_bytes([0, r.data[1], r.data[2], r.data[3]]);
    assert!(max >= 1 << 20, "max block {max}");
    assert_eq!((r.data[0], &r.data[4..6]), (0, &[0u8, 1][..]));
    // REPORT DENSITY SUPPORT: one descriptor, the default density.
    let r = t.run(&a, &[0x44, 0, 0, 0, 0, 0, 0, 0, 60, 0], &[]);
    assert!(r.is_good());
    assert_eq!(r.data[4], 0x80);
}

#[test]
fn variable_blocks_read_back_with_signed_ili_residues() {
    let d = dir("var");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    write_var(&t, &a, &[1; 100]);
    write_var(&t, &a, &[2; 300]);
    write_var(&t, &a, &[3; 10240]);
    assert_eq!(position(&t, &a).0, 3);
    assert!(t.run(&a, &REWIND, &[]).is_good());
    assert_eq!(
        position(&t, &a),
        (0, 0x80),
        "BOP at 0, no position-unknown bit"
    );
    assert_eq!(read_var(&t, &a, 100).data, vec![1; 100]);
    // Block shorter than asked: ILI, INFORMATION = requested - actual (positive).
    let r = read_var(&t, &a, 512);
    assert_eq!(r.data, vec![2; 300]);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::NO_ADDITIONAL_SENSE,
            Sense::ILI,
            Some(212)
        )
    );
    // Longer than asked: the requested bytes, ILI with a negative residue.
    let r = read_var(&t, &a, 512);
    assert_eq!(r.data, vec![3; 512]);
    let s = sense(&r);
    assert_eq!(s.flags, Sense::ILI);
    assert_eq!(s.information.map(|i| i as i64), Some(512 - 10240));
    let fixed = s.encode(false);
    assert_eq!(
        i32::from_be_bytes(fixed[3..7].try_into().unwrap()),
        512 - 10240,
        "two's complement in the fixed format"
    );
    assert_eq!(fixed[2], 0x20, "ILI in byte 2");
    // SILI: an underlength block is no CHECK CONDITION; the transfer is short.
    assert!(t.run(&a, &REWIND, &[]).is_good());
    let r = t.run(&a, &read6(false, true, 4096), &[]);
    assert!(r.is_good());
    assert_eq!(r.data.len(), 100);
    // FIXED with SILI is invalid; FIXED in variable mode is invalid.
    let r = t.run(&a, &read6(true, true, 1), &[]);
    assert_eq!(
        r.check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB)
    );
    let r = t.run(&a, &read6(true, false, 1), &[]);
    assert_eq!(
        r.check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB)
    );
}

#[test]
fn filemarks_and_end_of_data_carry_sense_and_positions() {
    let d = dir("fm");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    write_var(&t, &a, &[1; 512]);
    assert!(t.run(&a, &weof(1), &[]).is_good());
    write_var(&t, &a, &[2; 512]);
    assert!(t.run(&a, &weof(1), &[]).is_good());
    assert!(t.run(&a, &REWIND, &[]).is_good());
    assert!(read_var(&t, &a, 512).is_good());
    let r = read_var(&t, &a, 512);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::FILEMARK_DETECTED,
            Sense::FILEMARK,
            Some(512)
        )
    );
    assert!(r.data.is_empty());
    assert_eq!(position(&t, &a).0, 2, "after the filemark");
    assert_eq!(read_var(&t, &a, 512).data, vec![2; 512]);
    let _ = read_var(&t, &a, 512); // the second filemark
    let r = read_var(&t, &a, 512);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::BLANK_CHECK,
            Asc::END_OF_DATA_DETECTED,
            0,
            Some(512)
        ),
        "BLANK CHECK at EOD, no EOM"
    );
    assert_eq!(position(&t, &a).0, 4, "stays at EOD");
    // The long form counts files.
    let r = t.run(&a, &[0x34, 6, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_eq!(r.data.len(), 32);
    assert_eq!(u64::from_be_bytes(r.data[8..16].try_into().unwrap()), 4);
    assert_eq!(u64::from_be_bytes(r.data[16..24].try_into().unwrap()), 2);
}

#[test]
fn fixed_mode_writes_n_objects_and_a_wrong_length_block_is_ili_with_a_block_residue() {
    let d = dir("fixed");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    // MODE SELECT(6), PF=1, a block descriptor and no pages: block length 512.
    let mut ms = vec![0u8, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 0x02, 0];
    let r = t.run(&a, &[0x15, 0x10, 0, 0, 12, 0], &ms);
    assert!(r.is_good(), "{r:?}");
    let r = t.run(&a, &[0x1a, 0, 0, 0, 12, 0], &[]);
    assert_eq!(
        (r.data[2], r.data[3], r.data[4]),
        (0x10, 8, 0x80),
        "buffered, density"
    );
    assert_eq!(&r.data[9..12], &[0, 2, 0]);
    let data: Vec<u8> = (0..8 * 512).map(|i| (i / 512) as u8).collect();
    assert!(t.run(&a, &write6(true, 8), &data).is_good());
    assert_eq!(position(&t, &a).0, 8, "eight logical objects");
    // Back to variable mode for one odd block, then fixed again.
    ms[10] = 0;
    assert!(t.run(&a, &[0x15, 0x10, 0, 0, 12, 0], &ms).is_good());
    write_var(&t, &a, &[9; 100]);
    ms[10] = 2;
    assert!(t.run(&a, &[0x15, 0x10, 0, 0, 12, 0], &ms).is_good());
    assert!(t.run(&a, &REWIND, &[]).is_good());
    let r = t.run(&a, &read6(true, false, 4), &[]);
    assert_eq!(r.data, data[..2048]);
    // 6 asked, 4 left of length 512, then the 100-byte block: ILI, residue in
    // blocks, data of the blocks read, position after the bad block.
    let r = t.run(&a, &read6(true, false, 6), &[]);
    assert_eq!(r.data.len(), 4 * 512, "data and CHECK CONDITION together");
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::NO_ADDITIONAL_SENSE,
            Sense::ILI,
            Some(2)
        )
    );
    assert_eq!(position(&t, &a).0, 9);
    // st's answer: SPACE -1 block, back before the odd block.
    assert!(t.run(&a, &space6(0, -1), &[]).is_good());
    assert_eq!(position(&t, &a).0, 8);
}

#[test]
fn space_reports_residues_and_stops_where_st_expects() {
    let d = dir("space");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    // file 0: 3 blocks, FM (3), file 1: 2 blocks, FM (6), file 2: 1 block; EOD at 8.
    for _ in 0..3 {
        write_var(&t, &a, &[1; 64]);
    }
    assert!(t.run(&a, &weof(1), &[]).is_good());
    for _ in 0..2 {
        write_var(&t, &a, &[2; 64]);
    }
    assert!(t.run(&a, &weof(1), &[]).is_good());
    write_var(&t, &a, &[3; 64]);
    assert!(t.run(&a, &REWIND, &[]).is_good());
    // Blocks across a filemark: FM, INFORMATION = count not spaced, after the FM.
    let r = t.run(&a, &space6(0, 5), &[]);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::FILEMARK_DETECTED,
            Sense::FILEMARK,
            Some(2)
        )
    );
    assert_eq!(position(&t, &a).0, 4);
    // Filemarks forward: the next one, then past the last to EOD.
    assert!(t.run(&a, &space6(1, 1), &[]).is_good());
    assert_eq!(position(&t, &a).0, 7);
    let r = t.run(&a, &space6(1, 0x7f_ffff), &[]);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::BLANK_CHECK,
            Asc::END_OF_DATA_DETECTED,
            0,
            Some(0x7f_ffff)
        ),
        "st's MTEOM: file number from the residue"
    );
    assert_eq!(position(&t, &a).0, 8);
    // Backward one filemark (24-bit -1): on its BOP side.
    assert!(t.run(&a, &space6(1, -1), &[]).is_good());
    assert_eq!(position(&t, &a).0, 6);
    // Backward past BOP: NO SENSE, EOM, BEGINNING OF PARTITION, never BLANK CHECK.
    let r = t.run(&a, &space6(1, -5), &[]);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::BEGINNING_OF_PARTITION_DETECTED,
            Sense::EOM,
            Some(4)
        )
    );
    assert_eq!(position(&t, &a), (0, 0x80));
    // Landing exactly on EOD is success; code 3 goes there.
    assert!(t.run(&a, &space6(0, 3), &[]).is_good());
    assert_eq!(position(&t, &a).0, 3);
    assert!(t.run(&a, &space6(3, 0), &[]).is_good());
    assert_eq!(position(&t, &a).0, 8);
    assert!(t.run(&a, &REWIND, &[]).is_good());
    assert!(t.run(&a, &space6(1, 2), &[]).is_good());
    assert!(t.run(&a, &space6(0, 1), &[]).is_good());
    assert_eq!(position(&t, &a).0, 8, "exactly at EOD");
    // Blocks backward into a filemark: FM, stop on its BOP side.
    let r = t.run(&a, &space6(0, -3), &[]);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::FILEMARK_DETECTED,
            Sense::FILEMARK,
            Some(2)
        )
    );
    assert_eq!(position(&t, &a).0, 6);
    // SPACE(16): a 64-bit signed count.
    let mut c = [0u8; 16];
    c[0] = 0x91;
    c[1] = 1;
    c[4..12].copy_from_slice(&(-1i64).to_be_bytes());
    assert!(t.run(&a, &c, &[]).is_good());
    assert_eq!(position(&t, &a).0, 3);
}

#[test]
fn locate_and_writing_in_the_middle_truncate_what_follows() {
    let d = dir("locate");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    for i in 0..6u8 {
        write_var(&t, &a, &[i; 32]);
    }
    // LOCATE(10) with BT: block 2.
    assert!(t
        .run(&a, &[0x2b, 0x04, 0, 0, 0, 0, 2, 0, 0, 0], &[])
        .is_good());
    assert_eq!(read_var(&t, &a, 32).data, vec![2; 32]);
    // LOCATE(16) beyond EOD: BLANK CHECK, at EOD.
    let mut c = [0u8; 16];
    c[0] = 0x92;
    c[4..12].copy_from_slice(&100u64.to_be_bytes());
    assert_eq!(
        t.run(&a, &c, &[]).check(),
        (SenseKey::BLANK_CHECK, Asc::END_OF_DATA_DETECTED)
    );
    assert_eq!(position(&t, &a).0, 6);
    c[4..12].copy_from_slice(&4u64.to_be_bytes());
    assert!(t.run(&a, &c, &[]).is_good());
    write_var(&t, &a, &[7; 32]);
    assert_eq!(position(&t, &a).0, 5);
    let r = read_var(&t, &a, 32);
    assert_eq!(r.check().0, SenseKey::BLANK_CHECK, "block 5 is gone");
    // ERASE from block 1 leaves one block.
    assert!(t.run(&a, &REWIND, &[]).is_good());
    assert!(t.run(&a, &space6(0, 1), &[]).is_good());
    assert!(t.run(&a, &[0x19, 0x01, 0, 0, 0, 0], &[]).is_good());
    assert!(t.run(&a, &space6(3, 0), &[]).is_good());
    assert_eq!(position(&t, &a).0, 1);
}

#[test]
fn write_filemarks_is_the_durability_point_and_a_torn_index_still_loads() {
    let d = dir("durable");
    {
        let t = drive(&d, 1 << 20);
        let a = t.attach(1);
        write_var(&t, &a, &[5; 4000]);
        assert!(t.run(&a, &weof(0), &[]).is_good(), "count 0 flushes");
        write_var(&t, &a, &[6; 4000]); // after the sync point: may be lost
    } // the LU goes away as in a kill: nothing else is synced
    let path = d.join("T1.tape");
    let len = std::fs::metadata(&path).unwrap().len();
    // A torn record at the end of the index, as a crash mid-write leaves.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[1, 0, 0, 0, 0, 0, 0, 1, 0, 0], len)
            .unwrap();
    }
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    assert_eq!(read_var(&t, &a, 4000).data, vec![5; 4000]);
    assert_eq!(read_var(&t, &a, 4000).check().0, SenseKey::BLANK_CHECK);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len,
        "torn tail cut"
    );
}

#[test]
fn early_warning_then_end_of_partition() {
    let d = dir("eot");
    // 1 MiB: early warning in the last 64 KiB.
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    let block = vec![0x42u8; 64 << 10];
    for _ in 0..14 {
        write_var(&t, &a, &block);
    }
    let r = t.run(&a, &write6(false, block.len() as u32), &block);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::NO_SENSE,
            Asc::END_OF_PARTITION_DETECTED,
            Sense::EOM,
            Some(0)
        ),
        "early warning: written"
    );
    assert_eq!(position(&t, &a).1 & 0x01, 0x01, "BPEW");
    let r = t.run(&a, &write6(false, block.len() as u32), &block);
    assert_eq!(r.check().0, SenseKey::NO_SENSE, "the last 64 KiB fit");
    let r = t.run(&a, &write6(false, block.len() as u32), &block);
    assert_eq!(
        tape_check(&r),
        (
            SenseKey::VOLUME_OVERFLOW,
            Asc::END_OF_PARTITION_DETECTED,
            Sense::EOM,
            Some(64 << 10)
        ),
        "end of partition: not written, residue in bytes"
    );
    assert_eq!(position(&t, &a).0, 16);
}

#[test]
fn unload_load_and_prevent_medium_removal() {
    let d = dir("load");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    let b = t.attach(2);
    write_var(&t, &a, &[1; 10]);
    assert!(t.run(&a, &cdbs::prevent_allow(true), &[]).is_good());
    assert_eq!(
        t.run(&a, &[0x1b, 0, 0, 0, 0, 0], &[]).check(),
        (SenseKey::ILLEGAL_REQUEST, Asc::MEDIUM_REMOVAL_PREVENTED)
    );
    assert!(t.run(&a, &cdbs::prevent_allow(false), &[]).is_good());
    assert!(t.run(&a, &[0x1b, 0, 0, 0, 0, 0], &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check(),
        (SenseKey::NOT_READY, Asc::MEDIUM_NOT_PRESENT)
    );
    assert_eq!(read_var(&t, &a, 10).check().1, Asc::MEDIUM_NOT_PRESENT);
    assert!(t.run(&a, &[0x1b, 0, 0, 0, 1, 0], &[]).is_good());
    assert_eq!(
        t.run(&b, &cdbs::TEST_UNIT_READY, &[]).check(),
        (SenseKey::UNIT_ATTENTION, Asc::NOT_READY_TO_READY_CHANGE),
        "the other nexus hears of the new medium"
    );
    assert_eq!(
        t.run(&a, &cdbs::TEST_UNIT_READY, &[]).check().1,
        Asc::NOT_READY_TO_READY_CHANGE,
        "and so does the loader (st resets its counters on it)"
    );
    assert_eq!(
        read_var(&t, &b, 10).data,
        vec![1; 10],
        "what was written survived"
    );
}

#[test]
fn mode_pages_of_a_tape_and_what_mode_select_refuses() {
    let d = dir("mode");
    let t = drive(&d, 1 << 20);
    let a = t.attach(1);
    let r = t.run(&a, &[0x1a, 0x08, 0x0f, 0, 64, 0], &[]);
    assert!(r.is_good());
    assert_eq!(&r.data[4..6], &[0x0f, 14]);
    assert_eq!(r.data[6] & 0xc0, 0, "DCE 0, DCC 0: no compression");
    assert!(t.run(&a, &[0x1a, 0x08, 0x10, 0, 64, 0], &[]).is_good());
    assert!(t.run(&a, &[0x1a, 0x08, 0x11, 0, 64, 0], &[]).is_good());
    assert!(
        !t.run(&a, &[0x1a, 0x08, 0x08, 0, 64, 0], &[]).is_good(),
        "no caching page"
    );
    // Another density, or a block beyond the limit: INVALID FIELD IN PARAMETER LIST.
    let ms = [0u8, 0, 0x10, 8, 0x44, 0, 0, 0, 0, 0, 0x02, 0];
    assert_eq!(
        t.run(&a, &[0x15, 0x10, 0, 0, 12, 0], &ms).check().1,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST
    );
    let ms = [0u8, 0, 0x10, 8, 0x7f, 0, 0, 0, 0, 0xff, 0xff, 0xff];
    assert_eq!(
        t.run(&a, &[0x15, 0x10, 0, 0, 12, 0], &ms).check().1,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST
    );
}
