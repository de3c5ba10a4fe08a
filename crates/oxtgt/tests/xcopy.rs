//! End-to-end tests of the copy manager: EXTENDED COPY (LID1) and RECEIVE COPY
//! RESULTS driven by testkit sessions against a real oxtgt. Parameter lists are
//! built here byte by byte from SPC-4, independently of the parser.

mod common;

use std::time::{Duration, Instant};

use common::{Server, TARGET};
use testkit::xcopy::{command as xcopy_cdb, cscd, list, seg_blocks};
use testkit::{cdb, Initiator};

/// The LU's NAA designator from VPD 0x83.
fn naa(i: &mut Initiator, lun: u16) -> [u8; 16] {
    testkit::xcopy::naa(i, lun).unwrap()
}

const GOOD: u8 = 0;
const BS: usize = 512;
const OTHER_TARGET: &str = "iqn.2026-11.org.oxtgt:other";
const SECRET_TARGET: &str = "iqn.2026-11.org.oxtgt:secret";
const STRANGER: &str = "iqn.2026-11.org.example:stranger";

/// LUN 0, 1: RAM; 2: file; 3: file with 4096-byte blocks; LUN 4: 1 GiB file to
/// make copies long. A second target the testkit initiator may use, a third it may
/// not (only STRANGER is in its ACL).
const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
[[target.lun]]
id = 0
backstore = "ram"
size = "64MiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "64MiB"
[[target.lun]]
id = 2
backstore = "file"
path = "{dir}/lun2.img"
size = "64MiB"
[[target.lun]]
id = 3
backstore = "file"
path = "{dir}/lun3.img"
size = "64MiB"
block_size = 4096
[[target.lun]]
id = 4
backstore = "file"
path = "{dir}/big.img"
size = "1GiB"
[[target.acl]]
initiator = "iqn.2026-11.org.oxtgt.testkit:initiator"
luns = [0, 1, 2, 3, 4]

[[target]]
name = "iqn.2026-11.org.oxtgt:other"
[[target.lun]]
id = 0
backstore = "ram"
size = "64MiB"
[[target.acl]]
initiator = "iqn.2026-11.org.oxtgt.testkit:initiator"
luns = [0]

[[target]]
name = "iqn.2026-11.org.oxtgt:secret"
[[target.lun]]
id = 0
backstore = "ram"
size = "64MiB"
[[target.acl]]
initiator = "iqn.2026-11.org.example:stranger"
luns = [0]
"#;

fn login(server: &Server, initiator: &str, target: &str, isid: u8) -> Initiator {
    let mut i = Initiator::connect(&server.addr()).unwrap();
    i.isid[5] = isid;
    let r = i.login_as(initiator, Some(target), &[]).unwrap();
    assert_eq!((r.status_class, r.status_detail), (0, 0), "login {r:?}");
    i
}

fn me(server: &Server, isid: u8) -> Initiator {
    login(server, testkit::INITIATOR, TARGET, isid)
}

fn seg_bytes(
    src: u16,
    dst: u16,
    bytes: u32,
    src_lba: u64,
    dst_lba: u64,
    so: u16,
    d_o: u16,
) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0x0a;
    d[3] = 0x1c;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[8..12].copy_from_slice(&bytes.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d[28..30].copy_from_slice(&so.to_be_bytes());
    d[30..32].copy_from_slice(&d_o.to_be_bytes());
    d
}

fn seg_verify(idx: u16) -> Vec<u8> {
    let mut d = vec![0u8; 12];
    d[0] = 0x07;
    d[3] = 0x08;
    d[4..6].copy_from_slice(&idx.to_be_bytes());
    d[8] = 0x01; // TUR
    d
}

fn seg_register(dst: u16, key: u64, sark: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x14;
    d[3] = 0x18;
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[8..16].copy_from_slice(&key.to_be_bytes());
    d[16..24].copy_from_slice(&sark.to_be_bytes());
    d
}

fn xcopy(i: &mut Initiator, lun: u16, params: &[u8]) -> testkit::ScsiResult {
    i.scsi(lun, &xcopy_cdb(params.len()), 0, Some(params))
        .unwrap()
}

fn rcr_cdb(sa: u8, list_id: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id;
    c[10..14].copy_from_slice(&1024u32.to_be_bytes());
    c
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn read(i: &mut Initiator, lun: u16, lba: u64, blocks: u32, bs: usize) -> Vec<u8> {
    let r = i
        .scsi(lun, &cdb::read16(lba, blocks), blocks * bs as u32, None)
        .unwrap();
    assert_eq!(r.status, GOOD);
    r.data
}

fn write(i: &mut Initiator, lun: u16, lba: u64, data: &[u8]) {
    let blocks = (data.len() / BS) as u32;
    let r = i
        .scsi(lun, &cdb::write16(lba, blocks), 0, Some(data))
        .unwrap();
    assert_eq!(r.status, GOOD);
}

#[test]
fn each_segment_type_moves_exactly_its_bytes() {
    let server = Server::start("xseg", CONFIG);
    let mut s = me(&server, 1);
    let (n0, n1, n2, n3) = (
        naa(&mut s, 0),
        naa(&mut s, 1),
        naa(&mut s, 2),
        naa(&mut s, 3),
    );
    let src = pattern(64 * BS, 3);
    write(&mut s, 0, 0, &src);

    // 0x02 RAM → RAM, and RAM → file, 64 blocks.
    let p = list(
        1,
        2,
        &[cscd(&n0, 512), cscd(&n1, 512), cscd(&n2, 512)],
        &[
            seg_blocks(0, 1, 64, 0, 1000, false),
            seg_blocks(0, 2, 64, 0, 2000, false),
        ],
    );
    assert_eq!(xcopy(&mut s, 0, &p).status, GOOD);
    assert_eq!(read(&mut s, 1, 1000, 64, BS), src);
    assert_eq!(read(&mut s, 2, 2000, 64, BS), src);

    // DC=1: NUMBER OF BLOCKS counts destination (4096-byte) blocks: 8 of them.
    let p = list(
        2,
        2,
        &[cscd(&n0, 512), cscd(&n3, 4096)],
        &[seg_blocks(0, 1, 8, 0, 10, true)],
    );
    let r = xcopy(&mut s, 0, &p);
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    assert_eq!(read(&mut s, 3, 10, 8, 4096), src[..8 * 4096]);

    // 0x0A: 1000 bytes from byte 100 of LBA 2 to byte 7 of LBA 5; neighbours intact.
    let before = read(&mut s, 1, 4, 6, BS);
    let p = list(
        3,
        2,
        &[cscd(&n0, 512), cscd(&n1, 512)],
        &[seg_bytes(0, 1, 1000, 2, 5, 100, 7)],
    );
    assert_eq!(xcopy(&mut s, 0, &p).status, GOOD);
    let after = read(&mut s, 1, 4, 6, BS);
    let mut want = before.clone();
    want[BS + 7..BS + 1007].copy_from_slice(&src[2 * BS + 100..2 * BS + 1100]);
    assert!(after == want, "0x0A changed other bytes or missed some");

    // CSCD ID FFFFh is the receiving LU; 0x07 verifies a CSCD; 0x14 registers a key.
    let p = list(
        4,
        2,
        &[cscd(&n1, 512)],
        &[
            seg_blocks(0, 0xffff, 1, 1000, 30_000, false),
            seg_verify(0),
            seg_register(0, 0, 0xfeed),
        ],
    );
    assert_eq!(xcopy(&mut s, 2, &p).status, GOOD);
    assert_eq!(read(&mut s, 2, 30_000, 1, BS), src[..BS]);
    let keys = s
        .scsi(1, &[0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096, None)
        .unwrap();
    assert_eq!(&keys.data[8..16], &0xfeedu64.to_be_bytes());

    // Errors: a CSCD index past the list, a range past the end of the LU.
    let p = list(5, 2, &[cscd(&n0, 512)], &[seg_blocks(0, 1, 1, 0, 0, false)]);
    let r = xcopy(&mut s, 0, &p);
    assert_eq!(r.sense_code(), Some((0x0a, 0x08, 0x04)));
    let p = list(
        5,
        2,
        &[cscd(&n0, 512), cscd(&n1, 512)],
        &[
            seg_blocks(0, 1, 1, 0, 3000, false),
            seg_blocks(0, 1, 2, 0, 131_071, false),
        ],
    );
    let r = xcopy(&mut s, 0, &p);
    assert_eq!(r.sense_code().map(|c| c.0), Some(0x0a));
    // Fixed sense: COMMAND-SPECIFIC INFORMATION = failing segment (1); the segment
    // pointer names the descriptor's destination LBA field (16 + 64 + 28 + 20).
    assert_eq!(u32::from_be_bytes(r.sense[8..12].try_into().unwrap()), 1);
    assert_eq!(r.sense[15] & 0x80, 0x80);
    assert_eq!(
        u16::from_be_bytes([r.sense[16], r.sense[17]]),
        16 + 64 + 28 + 20
    );
    assert_eq!(
        read(&mut s, 1, 3000, 1, BS),
        src[..BS],
        "segment 0 ran before the failure"
    );
}

#[test]
fn copies_cross_targets_under_one_acl_and_never_reach_unmapped_lus() {
    let server = Server::start("xacl", CONFIG);
    let mut s = me(&server, 1);
    let mut other = login(&server, testkit::INITIATOR, OTHER_TARGET, 2);
    let mut stranger = login(&server, STRANGER, SECRET_TARGET, 3);
    let (n0, n_other, n_secret) = (naa(&mut s, 0), naa(&mut other, 0), naa(&mut stranger, 0));
    let data = pattern(16 * BS, 9);
    write(&mut s, 0, 0, &data);
    let secret = pattern(16 * BS, 77);
    write(&mut stranger, 0, 0, &secret);

    // Same initiator, LU on another target: allowed.
    let p = list(
        1,
        2,
        &[cscd(&n0, 512), cscd(&n_other, 512)],
        &[seg_blocks(0, 1, 16, 0, 100, false)],
    );
    assert_eq!(xcopy(&mut s, 0, &p).status, GOOD);
    assert_eq!(read(&mut other, 0, 100, 16, BS), data);

    // An LU that exists but is not mapped to this initiator: COPY ABORTED, COPY
    // TARGET DEVICE NOT REACHABLE, as destination or as source, nothing moved.
    let p = list(
        2,
        2,
        &[cscd(&n0, 512), cscd(&n_secret, 512)],
        &[seg_blocks(0, 1, 16, 0, 0, false)],
    );
    assert_eq!(xcopy(&mut s, 0, &p).sense_code(), Some((0x0a, 0x0d, 0x02)));
    assert_eq!(
        read(&mut stranger, 0, 0, 16, BS),
        secret,
        "secret LU written"
    );
    let before = read(&mut s, 0, 500, 16, BS);
    let p = list(
        3,
        2,
        &[cscd(&n_secret, 512), cscd(&n0, 512)],
        &[seg_blocks(0, 1, 16, 0, 500, false)],
    );
    assert_eq!(xcopy(&mut s, 0, &p).sense_code(), Some((0x0a, 0x0d, 0x02)));
    assert_eq!(read(&mut s, 0, 500, 16, BS), before, "secret data leaked");
    // Even when the unreachable CSCD comes after a valid segment: nothing runs.
    let p = list(
        4,
        2,
        &[cscd(&n0, 512), cscd(&n_secret, 512)],
        &[
            seg_blocks(0, 0, 16, 0, 700, false),
            seg_blocks(1, 0, 16, 0, 800, false),
        ],
    );
    let zero = read(&mut s, 0, 700, 16, BS);
    assert_eq!(xcopy(&mut s, 0, &p).sense_code(), Some((0x0a, 0x0d, 0x02)));
    assert_eq!(read(&mut s, 0, 700, 16, BS), zero, "first segment ran");
}

/// The copy manager reads and writes as the initiator that sent EXTENDED COPY: a
/// persistent reservation another initiator holds, or a read-only LU, fails the
/// segment with COPY ABORTED and leaves the destination alone.
#[test]
fn reservations_and_write_protection_apply_to_copies() {
    const RO: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "16MiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "16MiB"
[[target.lun]]
id = 2
backstore = "file"
path = "{dir}/ro.img"
read_only = true
"#;
    let server = Server::start_with("xres", RO, |d| {
        std::fs::write(d.join("ro.img"), vec![0x44u8; 1 << 20]).unwrap();
    });
    let mut a = me(&server, 1);
    let mut b = login(&server, STRANGER, TARGET, 2);
    let (n0, n1, n2) = (naa(&mut a, 0), naa(&mut a, 1), naa(&mut a, 2));
    write(&mut a, 0, 0, &pattern(8 * BS, 1));
    // B registers and takes WRITE EXCLUSIVE on LU 1.
    let mut reg = vec![0u8; 24];
    reg[8..16].copy_from_slice(&0xbu64.to_be_bytes());
    assert_eq!(
        b.scsi(1, &[0x5f, 6, 0, 0, 0, 0, 0, 0, 24, 0], 0, Some(&reg))
            .unwrap()
            .status,
        GOOD
    );
    let mut res = vec![0u8; 24];
    res[..8].copy_from_slice(&0xbu64.to_be_bytes());
    assert_eq!(
        b.scsi(1, &[0x5f, 1, 1, 0, 0, 0, 0, 0, 24, 0], 0, Some(&res))
            .unwrap()
            .status,
        GOOD
    );
    let before = read(&mut a, 1, 0, 8, BS);
    let p = list(
        1,
        2,
        &[cscd(&n0, 512), cscd(&n1, 512)],
        &[seg_blocks(0, 1, 8, 0, 0, false)],
    );
    let r = xcopy(&mut a, 0, &p);
    assert_eq!(
        r.sense_code(),
        Some((0x0a, 0x0d, 0x01)),
        "write into B's reservation"
    );
    assert_eq!(read(&mut a, 1, 0, 8, BS), before);
    // Reading from it is allowed under WRITE EXCLUSIVE: LU 1 → LU 0 works.
    let p = list(
        2,
        2,
        &[cscd(&n1, 512), cscd(&n0, 512)],
        &[seg_blocks(0, 1, 8, 0, 100, false)],
    );
    assert_eq!(xcopy(&mut a, 0, &p).status, GOOD);
    // B, the holder, may copy into it.
    let p = list(
        3,
        2,
        &[cscd(&n0, 512), cscd(&n1, 512)],
        &[seg_blocks(0, 1, 8, 0, 0, false)],
    );
    assert_eq!(xcopy(&mut b, 0, &p).status, GOOD);
    assert_eq!(read(&mut a, 1, 0, 8, BS), pattern(8 * BS, 1));
    // A read-only destination.
    let p = list(
        4,
        2,
        &[cscd(&n0, 512), cscd(&n2, 512)],
        &[seg_blocks(0, 1, 8, 0, 0, false)],
    );
    let r = xcopy(&mut a, 0, &p);
    assert_eq!(
        r.sense_code(),
        Some((0x0a, 0x0d, 0x01)),
        "write into a read-only LU"
    );
    assert_eq!(read(&mut a, 2, 0, 8, BS), vec![0x44u8; 8 * BS]);
}

/// A copy of the 1 GiB file LUN to itself in 32 segments of 32 MiB, long enough to
/// be observed, started without waiting for it.
fn start_long_copy(s: &mut Initiator, list_id: u8, usage: u8, dst_base: u64) -> u32 {
    let n4 = naa(s, 4);
    let segs: Vec<Vec<u8>> = (0..16u64)
        .map(|k| seg_blocks(0, 0, 0xffff, k * 0xffff, dst_base + k * 0xffff, false))
        .collect();
    let p = list(list_id, usage, &[cscd(&n4, 512)], &segs);
    s.start(4, &xcopy_cdb(p.len()), 0, &p).unwrap()
}

/// After an abort of `start_long_copy`: the last segment's destination blocks stay
/// as they were (zeros) while `observer` watches for 300 ms.
fn assert_copy_stopped(observer: &mut Initiator, last_seg: u64, what: &str) {
    let snap = read(observer, 4, last_seg, 8, BS);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read(observer, 4, last_seg, 8, BS),
        snap,
        "the copy went on after the {what}"
    );
    assert!(
        snap.iter().all(|&x| x == 0),
        "the copy finished before the {what} reached it"
    );
}

fn fill_big(s: &mut Initiator) {
    // WRITE SAME fills the source half of the big LU server-side.
    let blk = pattern(BS, 5);
    let mut lba = 0u64;
    while lba < 16 * 0xffff {
        let mut c = [0u8; 16];
        c[0] = 0x93;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&0xffffu32.to_be_bytes());
        assert_eq!(s.scsi(4, &c, 0, Some(&blk)).unwrap().status, GOOD);
        lba += 0xffff;
    }
}

#[test]
fn status_is_readable_while_a_copy_runs_and_abort_stops_it() {
    let server = Server::start("xlong", CONFIG);
    let mut s = me(&server, 1);
    fill_big(&mut s);
    let dst = 1u64 << 20; // the second half of the 2 Mi-block LU

    // Held results (usage 00b), polled from the same session while the copy runs.
    let itt = start_long_copy(&mut s, 7, 0, dst);
    let mut seen_running = false;
    let mut last = 0u32;
    let t = Instant::now();
    loop {
        let r = s.scsi(4, &rcr_cdb(0, 7), 1024, None).unwrap();
        // Commands run concurrently: the status request may overtake the copy it
        // asks about, and then the list ID is not known yet.
        if r.status != GOOD && !seen_running && last == 0 {
            assert_eq!(r.sense_code(), Some((0x05, 0x24, 0x00)));
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        assert_eq!(r.status, GOOD);
        let status = r.data[4];
        let bytes = u32::from_be_bytes(r.data[8..12].try_into().unwrap());
        assert!(bytes >= last, "transfer count went backwards");
        last = bytes;
        if status == 0 {
            if !seen_running {
                // Once: a second copy under a held list ID still in use is refused
                // with OPERATION IN PROGRESS (unless the first just ended, in which
                // case the new list replaces its results and polling stops here).
                let n4 = naa(&mut s, 4);
                let p = list(7, 0, &[cscd(&n4, 512)], &[seg_blocks(0, 0, 1, 0, 1, false)]);
                let r2 = xcopy(&mut s, 4, &p);
                if r2.status == GOOD {
                    seen_running = true;
                    break;
                }
                assert_eq!(r2.sense_code(), Some((0x05, 0x00, 0x16)));
            }
            seen_running = true;
        } else {
            assert_eq!(status, 1, "completed without error");
            assert_eq!(
                u16::from_be_bytes([r.data[5], r.data[6]]),
                16,
                "segments processed"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "copy never finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen_running,
        "the copy finished before the first status poll"
    );
    assert_eq!(s.wait(itt).unwrap().status, GOOD);
    assert_eq!(
        read(&mut s, 4, dst + 5 * 0xffff, 8, BS),
        pattern(BS, 5).repeat(8)
    );

    // Abort: ABORT TASK stops the copy within a window and nothing more is written.
    // Zero the last segment's destination first, so a copy that went on shows.
    let last_seg = dst + 15 * 0xffff;
    let mut ws = [0u8; 16];
    ws[0] = 0x93;
    ws[2..10].copy_from_slice(&last_seg.to_be_bytes());
    ws[10..14].copy_from_slice(&0xffffu32.to_be_bytes());
    assert_eq!(s.scsi(4, &ws, 0, Some(&[0u8; BS])).unwrap().status, GOOD);
    let itt = start_long_copy(&mut s, 8, 2, dst);
    std::thread::sleep(Duration::from_millis(30));
    let t = Instant::now();
    assert_eq!(
        s.tmf(1, 4, itt, 0).unwrap(),
        0,
        "ABORT TASK: function complete"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "abort took {:?}",
        t.elapsed()
    );
    assert_copy_stopped(&mut s, last_seg, "abort");
    // The session is fine afterwards.
    assert_eq!(
        s.scsi(4, &cdb::TEST_UNIT_READY, 0, None).unwrap().status,
        GOOD
    );
}

#[test]
fn two_concurrent_copies_on_one_lu_both_complete() {
    let server = Server::start("xtwo", CONFIG);
    let mut a = me(&server, 1);
    let mut b = me(&server, 2);
    let n0 = naa(&mut a, 0);
    let n1 = naa(&mut a, 1);
    let d1 = pattern(4096 * BS, 1);
    let d2 = pattern(4096 * BS, 2);
    write(&mut a, 0, 0, &d1);
    write(&mut a, 0, 8192, &d2);
    // Same list ID and usage 10b on one nexus, several in flight (what ESXi does),
    // and a third from another session.
    let mk = |src: u64, dst: u64| {
        list(
            1,
            2,
            &[cscd(&n0, 512), cscd(&n1, 512)],
            &[seg_blocks(0, 1, 4096, src, dst, false)],
        )
    };
    let (p1, p2, p3) = (mk(0, 0), mk(8192, 8192), mk(0, 20_000));
    let i1 = a.start(0, &xcopy_cdb(p1.len()), 0, &p1).unwrap();
    let i2 = a.start(0, &xcopy_cdb(p2.len()), 0, &p2).unwrap();
    let i3 = b.start(0, &xcopy_cdb(p3.len()), 0, &p3).unwrap();
    for i in [i1, i2] {
        let r = a.wait(i).unwrap();
        assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    }
    assert_eq!(b.wait(i3).unwrap().status, GOOD);
    assert_eq!(read(&mut a, 1, 0, 4096, BS), d1);
    assert_eq!(read(&mut a, 1, 8192, 4096, BS), d2);
    assert_eq!(read(&mut a, 1, 20_000, 4096, BS), d1);
}

#[test]
fn overlapping_copy_on_one_lu_behaves_like_memmove() {
    let server = Server::start("xmove", CONFIG);
    let mut s = me(&server, 1);
    let n2 = naa(&mut s, 2);
    let data = pattern(20_000 * BS, 4);
    for (k, chunk) in data.chunks(8192 * BS).enumerate() {
        write(&mut s, 2, (k * 8192) as u64, chunk);
    }
    // Up by 3000 blocks (overlapping, larger than one 4 MiB window), then down.
    for (id, from, to, what) in [(1, 0, 3000, "forward"), (2, 3000, 100, "backward")] {
        let p = list(
            id,
            2,
            &[cscd(&n2, 512)],
            &[seg_blocks(0, 0, 20_000, from, to, false)],
        );
        assert_eq!(xcopy(&mut s, 2, &p).status, GOOD);
        let got: Vec<u8> = (0..3u32)
            .flat_map(|k| {
                read(
                    &mut s,
                    2,
                    to + u64::from(k) * 8192,
                    8192.min(20_000 - k * 8192),
                    BS,
                )
            })
            .collect();
        assert!(got == data, "{what} overlap is not a memmove");
    }
}

const GIB_CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "1GiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "1GiB"
[[target.lun]]
id = 2
backstore = "file"
path = "{dir}/dst.img"
size = "1GiB"
"#;

const GIB_BLOCKS: u64 = (1 << 30) / BS as u64;
const CHUNK: u32 = 16384; // 8 MiB of 512-byte blocks

fn assert_same(s: &mut Initiator, a: u16, b: u16) {
    let mut lba = 0;
    while lba < GIB_BLOCKS {
        let x = read(s, a, lba, CHUNK, BS);
        let y = read(s, b, lba, CHUNK, BS);
        assert!(
            x == y,
            "LUN {a} and {b} differ in blocks {lba}..{}",
            lba + u64::from(CHUNK)
        );
        lba += u64::from(CHUNK);
    }
}

/// The two ways real initiators drive LID1, each copying 1 GiB with identical
/// result: ESXi (usage 11b, list ID 0, two NAA CSCDs, one 8 MiB 0x02 segment per
/// command, eight commands in flight) and sg_xcopy (operating parameters from both
/// LUs first, list ID 1, usage 10b, the most blocks a segment allows, one command at
/// a time, sent to the destination).
#[test]
fn esxi_and_sg_xcopy_styles_copy_a_gib_identically() {
    let server = Server::start("xgib", GIB_CONFIG);
    let mut s = me(&server, 1);
    let (n0, n1, n2) = (naa(&mut s, 0), naa(&mut s, 1), naa(&mut s, 2));
    let mut lba = 0;
    while lba < GIB_BLOCKS {
        write(
            &mut s,
            0,
            lba,
            &pattern(CHUNK as usize * BS, (lba >> 14) as u8),
        );
        lba += u64::from(CHUNK);
    }

    // ESXi.
    let mut in_flight = std::collections::VecDeque::new();
    let mut lba = 0;
    while lba < GIB_BLOCKS || !in_flight.is_empty() {
        if lba < GIB_BLOCKS && in_flight.len() < 8 {
            let p = list(
                0,
                3,
                &[cscd(&n0, 512), cscd(&n1, 512)],
                &[seg_blocks(0, 1, CHUNK as u16, lba, lba, false)],
            );
            in_flight.push_back(s.start(0, &xcopy_cdb(p.len()), 0, &p).unwrap());
            lba += u64::from(CHUNK);
            continue;
        }
        let itt = in_flight.pop_front().unwrap();
        let r = s.wait(itt).unwrap();
        assert_eq!(r.status, GOOD, "ESXi-style copy: {:?}", r.sense_code());
    }
    assert_same(&mut s, 0, 1);

    // sg_xcopy: operating parameters of both LUs, then segments of what they allow.
    let mut max_blocks = u64::from(u16::MAX);
    let mut held_limit = u32::MAX;
    for lun in [0, 2] {
        let op = s.scsi(lun, &rcr_cdb(3, 0), 1024, None).unwrap();
        assert_eq!(op.status, GOOD);
        let n = op.data[43] as usize;
        let codes = &op.data[44..44 + n];
        assert!(
            codes.contains(&0x02) && codes.contains(&0xe4),
            "implemented descriptors {codes:x?}"
        );
        held_limit = held_limit.min(u32::from_be_bytes(op.data[24..28].try_into().unwrap()));
        let max_seg = u64::from(u32::from_be_bytes(op.data[16..20].try_into().unwrap()));
        if max_seg > 0 {
            max_blocks = max_blocks.min(max_seg / BS as u64);
        }
    }
    assert_eq!(
        max_blocks, 0xffff,
        "a segment may use the whole 16-bit block count"
    );
    // sg_xcopy discards results (usage 10b) only when nothing can be held.
    let usage = if held_limit == 0 { 2 } else { 0 };
    let mut lba = 0;
    while lba < GIB_BLOCKS {
        let n = max_blocks.min(GIB_BLOCKS - lba) as u16;
        let p = list(
            1,
            usage,
            &[cscd(&n0, 512), cscd(&n2, 512)],
            &[seg_blocks(0, 1, n, lba, lba, false)],
        );
        let r = xcopy(&mut s, 2, &p);
        assert_eq!(r.status, GOOD, "sg_xcopy-style copy: {:?}", r.sense_code());
        lba += u64::from(n);
    }
    assert_same(&mut s, 0, 2);
}

/// On a loop-mounted XFS with reflink, a file-to-file copy shares extents: 1 GiB
/// copied costs the filesystem almost no space, and reads back identical. The
/// metrics count exactly those bytes on the reflink path and none through a buffer.
#[test]
fn reflink_clone_on_xfs_shares_extents() {
    let Some(fs) = testkit::xfs::ReflinkFs::mount_or_skip("xcopy", 3 << 30) else {
        return;
    };
    let mnt = fs.path().to_path_buf();
    let metrics = common::free_port();
    let config = format!(
        "[server]\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\
         [[target]]\nname = \"{TARGET}\"\nopen_access = true\n\
         [[target.lun]]\nid = 0\nbackstore = \"file\"\npath = \"{m}/a.img\"\nsize = \"1GiB\"\n\
         [[target.lun]]\nid = 1\nbackstore = \"file\"\npath = \"{m}/b.img\"\nsize = \"1GiB\"\n",
        m = mnt.display()
    );
    let server = Server::start("xfsrv", &config);
    let mut s = me(&server, 1);
    let (n0, n1) = (naa(&mut s, 0), naa(&mut s, 1));
    let blocks = (1u64 << 30) / BS as u64;
    let mut lba = 0;
    while lba < blocks {
        write(&mut s, 0, lba, &pattern(CHUNK as usize * BS, lba as u8));
        lba += u64::from(CHUNK);
    }
    let sync = |s: &mut Initiator| {
        assert_eq!(
            s.scsi(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, None)
                .unwrap()
                .status,
            GOOD
        );
    };
    sync(&mut s);
    let used = || {
        let o = std::process::Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&mnt)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let before = used();
    let offload = |path: &str| {
        common::sample(
            &common::scrape(metrics),
            &format!(
                "oxtgt_offload_bytes_total{{lu=\"{TARGET}/lun1\",command=\"extended_copy\",path=\"{path}\"}}"
            ),
        )
    };
    let (reflink0, bounce0, cfr0) = (
        offload("reflink"),
        offload("bounce"),
        offload("copy_file_range"),
    );
    let segs: Vec<Vec<u8>> = (0..blocks.div_ceil(0xffff))
        .map(|k| {
            let at = k * 0xffff;
            seg_blocks(0, 1, (blocks - at).min(0xffff) as u16, at, at, false)
        })
        .collect();
    let p = list(1, 2, &[cscd(&n0, 512), cscd(&n1, 512)], &segs);
    let t = Instant::now();
    let r = xcopy(&mut s, 1, &p);
    let took = t.elapsed();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    sync(&mut s);
    let grew = used().saturating_sub(before);
    println!("reflink: 1 GiB cloned in {took:?}, filesystem grew {grew} bytes");
    // Segments of 0xffff blocks end off the filesystem's 4 KiB blocks: what does
    // not fill a whole one at each boundary goes by copy_file_range.
    let (reflinked, cfr) = (
        offload("reflink") - reflink0,
        offload("copy_file_range") - cfr0,
    );
    println!("reflink: metrics count {reflinked} bytes reflinked, {cfr} by copy_file_range");
    assert_eq!(
        reflinked + cfr,
        (1u64 << 30) as f64,
        "metrics: every byte on a path"
    );
    assert!(cfr <= (segs.len() * 8192) as f64, "only the edges: {cfr}");
    assert_eq!(
        offload("bounce") - bounce0,
        0.0,
        "metrics: nothing through a buffer"
    );
    assert_eq!(offload("memcpy"), 0.0);
    assert!(
        grew < 16 << 20,
        "1 GiB copy took {grew} bytes of space: not shared"
    );
    let mut lba = 0;
    while lba < blocks {
        assert!(
            read(&mut s, 0, lba, CHUNK, BS) == read(&mut s, 1, lba, CHUNK, BS),
            "clone differs at {lba}"
        );
        lba += u64::from(CHUNK);
    }
}

/// LOGICAL UNIT RESET from another session reaches a running copy: it stops within a
/// window, its initiator gets no response for it (TAS 0) and sees the reset as a
/// unit attention on its next command.
#[test]
fn lu_reset_from_another_session_stops_a_copy() {
    let server = Server::start("xreset", CONFIG);
    let mut a = me(&server, 1);
    let mut b = me(&server, 2);
    fill_big(&mut a);
    let dst = 1u64 << 20;
    let last_seg = dst + 15 * 0xffff;
    let itt = start_long_copy(&mut b, 9, 2, dst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        a.tmf(5, 4, 0xffff_ffff, 0).unwrap(),
        0,
        "LU reset: complete"
    );
    // A first sees its own reset's unit attention.
    let r = a.scsi(4, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x29, 0x03)));
    assert_copy_stopped(&mut a, last_seg, "reset");
    // B: no response for the aborted copy, the reset as a unit attention.
    let r = b.scsi(4, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x29, 0x03)));
    b.set_read_timeout(Duration::from_millis(300));
    assert!(b.wait(itt).is_err(), "an aborted copy answered");
}

/// PREEMPT AND ABORT takes the preempted initiator's registration and aborts its
/// running tasks: its copy stops, with no response.
#[test]
fn preempt_and_abort_stops_the_preempted_initiators_copy() {
    let server = Server::start("xpreempt", CONFIG);
    let mut a = me(&server, 1);
    let mut b = me(&server, 2);
    fill_big(&mut a);
    let basic = |key: u64, sark: u64| {
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sark.to_be_bytes());
        p
    };
    let prout = |sa: u8, kind: u8| [0x5f, sa, kind, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(
        a.scsi(4, &prout(6, 0), 0, Some(&basic(0, 0xa)))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(
        b.scsi(4, &prout(6, 0), 0, Some(&basic(0, 0xb)))
            .unwrap()
            .status,
        GOOD
    );
    let dst = 1u64 << 20;
    let last_seg = dst + 15 * 0xffff;
    let itt = start_long_copy(&mut a, 9, 2, dst);
    std::thread::sleep(Duration::from_millis(30));
    // B preempts A's key and aborts A's tasks, taking EXCLUSIVE ACCESS.
    let r = b.scsi(4, &prout(5, 3), 0, Some(&basic(0xb, 0xa))).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    assert_copy_stopped(&mut b, last_seg, "preempt");
    let r = a.scsi(4, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x06, 0x2a, 0x05)),
        "REGISTRATIONS PREEMPTED"
    );
    a.set_read_timeout(Duration::from_millis(300));
    assert!(a.wait(itt).is_err(), "an aborted copy answered");
}

/// A reservation taken while a long copy runs stops it at its next window, like any
/// other command of the initiator that sent it.
#[test]
fn a_reservation_taken_mid_copy_stops_it() {
    let server = Server::start("xmidres", CONFIG);
    let mut a = me(&server, 1);
    let mut b = me(&server, 2);
    fill_big(&mut a);
    let dst = 1u64 << 20;
    let itt = start_long_copy(&mut a, 9, 2, dst);
    std::thread::sleep(Duration::from_millis(30));
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&0xbu64.to_be_bytes());
    let reg = [0x5f, 6, 0, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(b.scsi(4, &reg, 0, Some(&p)).unwrap().status, GOOD);
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&0xbu64.to_be_bytes());
    let reserve_ea = [0x5f, 1, 3, 0, 0, 0, 0, 0, 24, 0];
    assert_eq!(b.scsi(4, &reserve_ea, 0, Some(&p)).unwrap().status, GOOD);
    let r = a.wait(itt).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x0a, 0x0d, 0x01)),
        "copy under B's reservation"
    );
    assert_copy_stopped(&mut b, dst + 15 * 0xffff, "reservation");
}

/// Segment 0Dh copies like 02h and holds the data for RECEIVE COPY DATA, up to the
/// advertised HELD DATA LIMIT, in held lists only.
#[test]
fn held_data_segment_and_receive_copy_data() {
    let server = Server::start("xheld", CONFIG);
    let mut s = me(&server, 1);
    let (n0, n1) = (naa(&mut s, 0), naa(&mut s, 1));
    let data = pattern(32 * BS, 21);
    write(&mut s, 0, 0, &data);
    let mut hold = seg_blocks(0, 1, 16, 0, 500, false);
    hold[0] = 0x0d;
    let mut hold2 = seg_blocks(0, 1, 16, 16, 516, false);
    hold2[0] = 0x0d;
    let p = list(
        5,
        0,
        &[cscd(&n0, 512), cscd(&n1, 512)],
        &[hold.clone(), hold2],
    );
    assert_eq!(xcopy(&mut s, 0, &p).status, GOOD);
    assert_eq!(read(&mut s, 1, 500, 32, BS), data, "0Dh copies like 02h");
    let mut c = rcr_cdb(1, 5);
    c[10..14].copy_from_slice(&(64 * 1024u32).to_be_bytes());
    let r = s.scsi(0, &c, 64 * 1024, None).unwrap();
    assert_eq!(r.status, GOOD);
    assert_eq!(
        u32::from_be_bytes(r.data[..4].try_into().unwrap()) as usize,
        32 * BS
    );
    assert!(r.data[4..] == data[..], "held data is what was copied");
    // Held data needs a held list; and must fit HELD DATA LIMIT (1 MiB).
    let p = list(6, 2, &[cscd(&n0, 512), cscd(&n1, 512)], &[hold]);
    assert_eq!(xcopy(&mut s, 0, &p).sense_code(), Some((0x05, 0x26, 0x00)));
    let mut big = seg_blocks(0, 1, 4096, 0, 0, false);
    big[0] = 0x0d;
    let p = list(7, 0, &[cscd(&n0, 512), cscd(&n1, 512)], &[big]);
    assert_eq!(xcopy(&mut s, 0, &p).sense_code(), Some((0x05, 0x26, 0x00)));
}

/// With the write cache off (caching page WCE 0), a copy is flushed to stable
/// storage before EXTENDED COPY completes, like a WRITE; the data is all there.
#[test]
fn copy_into_an_lu_with_the_write_cache_off() {
    let server = Server::start("xwce", CONFIG);
    let mut s = me(&server, 1);
    // MODE SENSE(6) of the caching page, WCE cleared, MODE SELECT(6) back.
    let r = s
        .scsi(2, &[0x1a, 0x08, 0x08, 0, 255, 0], 255, None)
        .unwrap();
    assert_eq!(r.status, GOOD);
    let page_len = 2 + usize::from(r.data[4 + 1]);
    let mut page = r.data[4..4 + page_len].to_vec();
    page[0] &= 0x3f;
    page[2] &= !0x04;
    let mut params = vec![0u8, 0, 0, 0];
    params.extend_from_slice(&page);
    let sel = [0x15, 0x10, 0, 0, params.len() as u8, 0];
    assert_eq!(s.scsi(2, &sel, 0, Some(&params)).unwrap().status, GOOD);
    let r = s
        .scsi(2, &[0x1a, 0x08, 0x08, 0, 255, 0], 255, None)
        .unwrap();
    assert_eq!(r.data[4 + 2] & 0x04, 0, "WCE is off");

    let (n0, n2) = (naa(&mut s, 0), naa(&mut s, 2));
    let data = pattern(2048 * BS, 8);
    write(&mut s, 0, 0, &data);
    let p = list(
        1,
        2,
        &[cscd(&n0, 512), cscd(&n2, 512)],
        &[seg_blocks(0, 1, 2048, 0, 4096, false)],
    );
    assert_eq!(xcopy(&mut s, 2, &p).status, GOOD);
    assert_eq!(read(&mut s, 2, 4096, 2048, BS), data);
}
