//! End-to-end tests of token-based copy offload (Windows ODX, ddpt): POPULATE
//! TOKEN, RECEIVE ROD TOKEN INFORMATION, WRITE USING TOKEN, the zero token,
//! point-in-time semantics per backstore, access through the ACL, expiry, IMMED.
//! Parameter lists and status decoding come from testkit::rod, written from the
//! layouts in ROD-TOKENS.md, not from oxtgt's parser.

mod common;

use std::time::{Duration, Instant};

use common::{Server, TARGET};
use testkit::rod::{self, populate, rrti, write};
use testkit::{cdb, Initiator, ScsiResult};

const GOOD: u8 = 0;
const CHECK: u8 = 2;
const OTHER: &str = "iqn.2026-11.org.oxtgt:other";
const SECRET: &str = "iqn.2026-11.org.oxtgt:secret";
const STRANGER: &str = "iqn.2026-11.org.example:stranger";

fn login(server: &Server, initiator: &str, target: &str, isid: u8) -> Initiator {
    let mut i = Initiator::connect(&server.addr()).unwrap();
    i.isid[5] = isid;
    let r = i.login_as(initiator, Some(target), &[]).unwrap();
    assert_eq!((r.status_class, r.status_detail), (0, 0), "login {r:?}");
    i
}

fn me(server: &Server, target: &str, isid: u8) -> Initiator {
    login(server, testkit::INITIATOR, target, isid)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn sense(r: &ScsiResult) -> (u8, u8, u8) {
    r.sense_code().unwrap_or_else(|| panic!("no sense: {r:?}"))
}

fn read(i: &mut Initiator, lun: u16, lba: u64, blocks: u32, bs: usize) -> Vec<u8> {
    let len = blocks as usize * bs;
    let r = i
        .scsi(lun, &cdb::read16(lba, blocks), len as u32, None)
        .unwrap();
    assert_eq!(r.status, GOOD, "read: {:?}", r.sense_code());
    r.data
}

fn write_blocks(i: &mut Initiator, lun: u16, lba: u64, data: &[u8], bs: usize) {
    let r = i
        .scsi(
            lun,
            &cdb::write16(lba, (data.len() / bs) as u32),
            0,
            Some(data),
        )
        .unwrap();
    assert_eq!(r.status, GOOD, "write: {:?}", r.sense_code());
}

/// Target `test`: LUN 0 a 1 GiB file (512-byte blocks), LUN 1 RAM, LUN 2 a small
/// file, LUN 3 RAM. Target `other`: LUN 0 a 1 GiB file with 4096-byte blocks.
/// Target `secret`: a RAM LU only STRANGER may see.
const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/src.img"
size = "1GiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "64MiB"
[[target.lun]]
id = 2
backstore = "file"
path = "{dir}/small.img"
size = "64MiB"
[[target.lun]]
id = 3
backstore = "ram"
size = "64MiB"

[[target]]
name = "iqn.2026-11.org.oxtgt:other"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/dst.img"
size = "1GiB"
block_size = 4096

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

const MIB: usize = 1 << 20;
const FRAG: usize = 16 * MIB;
const FRAGS: usize = 64;

/// Where fragment `i` of the "file" lives on the source and on the destination.
fn src_frag(i: usize) -> usize {
    (i * 37) % FRAGS
}
fn dst_frag(i: usize) -> usize {
    (i * 13 + 5) % FRAGS
}

/// A Windows-like copy of a fragmented 1 GiB file between two LUs on different
/// targets, with different block sizes: per 256 MiB, one POPULATE TOKEN with 16
/// ranges (file order, scattered on the source), RECEIVE ROD TOKEN INFORMATION,
/// then four WRITE USING TOKEN of OPTIMAL TRANSFER COUNT (64 MiB) each, advancing
/// OFFSET INTO ROD (in destination blocks), onto scattered destination ranges. The
/// destination's backing file is then compared with the source's, fragment by
/// fragment.
#[test]
fn windows_like_copy_of_a_fragmented_gib_between_targets() {
    let s = Server::start_with("odx-win", CONFIG, |dir| {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("src.img")).unwrap();
        for k in 0..FRAGS {
            f.write_all(&pattern(FRAG, k as u8)).unwrap();
        }
    });
    let mut src = me(&s, TARGET, 1);
    let mut dst = me(&s, OTHER, 2);
    // VPD 8Fh: what a Windows host reads first (BDRL).
    let r = dst
        .scsi(0, &cdb::inquiry(true, 0x8f, 4096), 4096, None)
        .unwrap();
    assert_eq!(
        &r.data[4..8],
        &[0x00, 0x00, 0x00, 0x20],
        "BDRL first, length 20h"
    );
    let optimal = u64::from_be_bytes(r.data[32..40].try_into().unwrap()) as usize * 4096;
    assert_eq!(
        optimal,
        64 * MIB,
        "OPTIMAL TRANSFER COUNT in destination blocks"
    );

    let t0 = Instant::now();
    for chunk in 0..4 {
        let frags: Vec<usize> = (chunk * 16..chunk * 16 + 16).collect();
        let list: Vec<(u64, u32)> = frags
            .iter()
            .map(|&i| ((src_frag(i) * FRAG / 512) as u64, (FRAG / 512) as u32))
            .collect();
        let (r, token) = populate(&mut src, 0, 0x100 + chunk as u32, None, 0, &list).unwrap();
        assert_eq!(r.status, GOOD, "PT: {:?}", r.sense_code());
        let token = token.expect("RRTI returns the token");
        assert_eq!(token.len(), 512);
        assert_eq!(&token[6..8], &[0x01, 0xf8]);
        let info = rrti(&mut src, 0, 0x100 + chunk as u32).unwrap();
        assert_eq!((info.response_to_sa, info.status), (0x10, 0x01));
        assert_eq!(info.units, 0xf1, "transfer count in logical blocks");
        assert_eq!(info.transfer_count, (256 * MIB / 512) as u64);
        for k in 0..4 {
            let wfrags = &frags[k * 4..k * 4 + 4];
            let wlist: Vec<(u64, u32)> = wfrags
                .iter()
                .map(|&i| ((dst_frag(i) * FRAG / 4096) as u64, (FRAG / 4096) as u32))
                .collect();
            let offset = (k * 64 * MIB / 4096) as u64;
            let r = write(&mut dst, 0, 0x200, &token, offset, k == 3, &wlist).unwrap();
            assert_eq!(r.status, GOOD, "WUT {chunk}/{k}: {:?}", r.sense_code());
            let info = rrti(&mut dst, 0, 0x200).unwrap();
            assert_eq!((info.response_to_sa, info.status), (0x11, 0x01));
            assert_eq!(info.transfer_count, (64 * MIB / 4096) as u64);
            assert_eq!(info.token, None, "no token after WRITE USING TOKEN");
        }
    }
    let took = t0.elapsed();
    let sync = |i: &mut Initiator| {
        let r = i
            .scsi(0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, None)
            .unwrap();
        assert_eq!(r.status, GOOD);
    };
    sync(&mut dst);
    let a = std::fs::read(s.dir.join("src.img")).unwrap();
    let b = std::fs::read(s.dir.join("dst.img")).unwrap();
    for i in 0..FRAGS {
        let (so, d_o) = (src_frag(i) * FRAG, dst_frag(i) * FRAG);
        assert!(
            a[so..so + FRAG] == b[d_o..d_o + FRAG],
            "fragment {i}: destination differs"
        );
    }
    println!("odx: 1 GiB in 4 PT + 16 WUT, file to file, {took:?}");
}

/// A ddpt-like flow: list ID 257, RRTI polling until done, WRITE USING TOKEN in
/// pieces with OFFSET INTO ROD and DEL_TKN on the last; the token is gone after.
#[test]
fn ddpt_like_flow_with_offset_and_del_tkn() {
    let s = Server::start("odx-ddpt", CONFIG);
    let mut i = me(&s, TARGET, 1);
    let data = pattern(4 * MIB, 7);
    write_blocks(&mut i, 1, 0, &data, 512);
    let (r, token) = populate(&mut i, 1, 257, None, 0, &[(0, 8192)]).unwrap();
    assert_eq!(r.status, GOOD);
    let token = token.unwrap();
    // Point in time, persistent: RAM shares pages.
    assert_eq!(&token[0..4], &rod::ROD_TYPE_PIT_PERSISTENT.to_be_bytes());
    assert_eq!(
        u64::from_be_bytes(token[56..64].try_into().unwrap()),
        4 * MIB as u64,
        "NUMBER OF BYTES REPRESENTED in the low half"
    );
    // Two WUTs into LUN 3: the second half first, then the first with DEL_TKN.
    let r = write(&mut i, 3, 257, &token, 4096, false, &[(100, 4096)]).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    let r = write(&mut i, 3, 257, &token, 0, true, &[(10_000, 4096)]).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    assert!(read(&mut i, 3, 100, 4096, 512) == data[2 * MIB..]);
    assert!(read(&mut i, 3, 10_000, 4096, 512) == data[..2 * MIB]);
    // RECEIVE COPY STATUS(LID4) says the same as RRTI, in blocks.
    let r = i
        .scsi(3, &rod::receive_copy_status_lid4(257, 64), 64, None)
        .unwrap();
    let st = rod::decode_status(&r.data, false);
    assert_eq!((st.response_to_sa, st.status, st.units), (0x11, 0x01, 0xf1));
    assert_eq!(st.transfer_count, 4096);
    assert_eq!(st.delay_ms, 0xffff_fffe, "completed: no need to poll");
    // Deleted: TOKEN DELETED (23h/09h).
    let r = write(&mut i, 3, 258, &token, 0, false, &[(0, 1)]).unwrap();
    assert_eq!((r.status, sense(&r)), (CHECK, (0x05, 0x23, 0x09)));
    // A token nobody made: TOKEN UNKNOWN; a mangled length: INVALID TOKEN LENGTH.
    let mut forged = token.clone();
    forged[300] ^= 1;
    let r = write(&mut i, 3, 258, &forged, 0, false, &[(0, 1)]).unwrap();
    assert_eq!(sense(&r), (0x05, 0x23, 0x04));
    forged[7] = 0;
    let r = write(&mut i, 3, 258, &forged, 0, false, &[(0, 1)]).unwrap();
    assert_eq!(sense(&r), (0x05, 0x23, 0x0a));
}

/// OFFSET INTO ROD past the ROD, and a destination longer than what is left:
/// refused before any byte moves, with the answers Windows' tests expect.
#[test]
fn short_rod_and_bad_offset_are_refused_before_writing() {
    let s = Server::start("odx-short", CONFIG);
    let mut i = me(&s, TARGET, 1);
    write_blocks(&mut i, 1, 0, &pattern(64 * 512, 1), 512);
    let (_, token) = populate(&mut i, 1, 1, None, 0, &[(0, 64)]).unwrap();
    let token = token.unwrap();
    let before = read(&mut i, 3, 0, 128, 512);
    let r = write(&mut i, 3, 2, &token, 0, false, &[(0, 65)]).unwrap();
    let e = sense(&r);
    assert_eq!(e, (0x05, 0x0d, 0x04), "COPY TARGET DEVICE DATA UNDERRUN");
    assert_eq!(&r.sense[3..7], &[0, 0, 0, 0], "INFORMATION 0");
    let r = write(&mut i, 3, 2, &token, 64, false, &[(0, 1)]).unwrap();
    assert_eq!(sense(&r), (0x05, 0x26, 0x00), "offset past the ROD");
    assert_eq!(read(&mut i, 3, 0, 128, 512), before, "nothing written");
    // Zero-length ranges are no-ops.
    let r = write(&mut i, 3, 2, &token, 0, false, &[(5, 0)]).unwrap();
    assert_eq!(r.status, GOOD);
}

/// The block device zero token writes zeros over its ranges and nothing else.
#[test]
fn zero_token_writes_zeros() {
    let s = Server::start("odx-zero", CONFIG);
    let mut i = me(&s, TARGET, 1);
    let data = pattern(MIB, 3);
    write_blocks(&mut i, 2, 0, &data, 512);
    let r = write(
        &mut i,
        2,
        9,
        &rod::zero_token(),
        0,
        false,
        &[(16, 8), (100, 4)],
    )
    .unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    let back = read(&mut i, 2, 0, 2048, 512);
    for (lba, blocks) in [(16usize, 8usize), (100, 4)] {
        assert!(back[lba * 512..(lba + blocks) * 512]
            .iter()
            .all(|&b| b == 0));
    }
    let mut want = data.clone();
    want[16 * 512..24 * 512].fill(0);
    want[100 * 512..104 * 512].fill(0);
    assert!(back == want, "other blocks untouched");
}

/// Point in time by backstore: a write to the source after POPULATE TOKEN and
/// before WRITE USING TOKEN. RAM: the old data is copied (persistent). A file on
/// ext4 cannot snapshot cheaply: the token is change vulnerable, and the write
/// cancels it (23h/08h, nothing written), while a write elsewhere does not;
/// a write that starts before a range and runs into it cancels too. Asked for
/// access upon reference, the copy takes the data as it is at WUT time.
#[test]
fn point_in_time_on_ram_and_ext4() {
    let s = Server::start("odx-pit", CONFIG);
    let mut i = me(&s, TARGET, 1);
    let old = pattern(MIB, 1);
    let new = pattern(MIB, 2);
    // RAM: persistent.
    write_blocks(&mut i, 1, 0, &old, 512);
    let (_, t) = populate(&mut i, 1, 1, None, 0, &[(0, 2048)]).unwrap();
    let t = t.unwrap();
    write_blocks(&mut i, 1, 0, &new, 512);
    let r = write(&mut i, 3, 2, &t, 0, false, &[(0, 2048)]).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    assert!(
        read(&mut i, 3, 0, 2048, 512) == old,
        "RAM: the data as at PT"
    );

    // ext4 file: change vulnerable.
    let ext4 = s.dir.join("small.img");
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&ext4)
        .output()
        .unwrap();
    let fs_type = String::from_utf8_lossy(&fs.stdout).trim().to_owned();
    write_blocks(&mut i, 2, 0, &old, 512);
    let (_, t) = populate(&mut i, 2, 3, None, 0, &[(100, 100), (1000, 48)]).unwrap();
    let t = t.unwrap();
    let kind = u32::from_be_bytes(t[0..4].try_into().unwrap());
    if fs_type == "xfs" || fs_type == "btrfs" {
        // The temp dir can clone, so its tokens are persistent: the
        // change-vulnerable half cannot run here, and under CI that is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "temp dir on {fs_type}: the change-vulnerable path went untested"
        );
        println!("SKIPPED: {fs_type} temp dir, persistent tokens; change-vulnerable part not run");
        return;
    }
    assert_eq!(kind, rod::ROD_TYPE_PIT_VULNERABLE, "on {fs_type}");
    // A write next to the ranges leaves the token alive.
    write_blocks(&mut i, 2, 200, &new[..512 * 8], 512);
    let r = write(&mut i, 3, 4, &t, 0, false, &[(0, 148)]).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    let back = read(&mut i, 3, 0, 148, 512);
    assert!(back[..100 * 512] == old[100 * 512..200 * 512]);
    assert!(back[100 * 512..] == old[1000 * 512..1048 * 512]);
    // A write that starts before the second range and runs into it cancels.
    write_blocks(&mut i, 2, 990, &new[..512 * 16], 512);
    let before = read(&mut i, 3, 300, 148, 512);
    let r = write(&mut i, 3, 5, &t, 0, false, &[(300, 148)]).unwrap();
    assert_eq!(
        (r.status, sense(&r)),
        (CHECK, (0x05, 0x23, 0x08)),
        "TOKEN CANCELLED"
    );
    assert_eq!(read(&mut i, 3, 300, 148, 512), before, "never new data");

    // Access upon reference, asked for: the data at WUT time.
    write_blocks(&mut i, 2, 0, &old, 512);
    let (_, t) = populate(&mut i, 2, 6, Some(rod::ROD_TYPE_AUR), 0, &[(0, 64)]).unwrap();
    let t = t.unwrap();
    assert_eq!(&t[0..4], &rod::ROD_TYPE_AUR.to_be_bytes());
    write_blocks(&mut i, 2, 0, &new[..64 * 512], 512);
    let r = write(&mut i, 3, 7, &t, 0, false, &[(0, 64)]).unwrap();
    assert_eq!(r.status, GOOD);
    assert!(read(&mut i, 3, 0, 64, 512) == new[..64 * 512]);
}

/// On a reflink filesystem a file LU's tokens are persistent: the image is a clone.
#[test]
fn point_in_time_on_reflink_xfs() {
    let Some(fs) = testkit::xfs::ReflinkFs::mount_or_skip("odx", 1 << 30) else {
        return;
    };
    let config = format!(
        "[[target]]\nname = \"{TARGET}\"\nopen_access = true\n\
         [[target.lun]]\nid = 0\nbackstore = \"file\"\npath = \"{m}/a.img\"\nsize = \"256MiB\"\n\
         [[target.lun]]\nid = 1\nbackstore = \"file\"\npath = \"{m}/b.img\"\nsize = \"256MiB\"\n",
        m = fs.path().display()
    );
    let s = Server::start("odx-xfs", &config);
    let mut i = me(&s, TARGET, 1);
    let old = pattern(64 * MIB, 4);
    for k in 0..8 {
        write_blocks(
            &mut i,
            0,
            (k * 16384) as u64,
            &old[k * 8 * MIB..(k + 1) * 8 * MIB],
            512,
        );
    }
    let t0 = Instant::now();
    let (r, t) = populate(&mut i, 0, 1, None, 0, &[(0, 131_072)]).unwrap();
    let pt_time = t0.elapsed();
    assert_eq!(r.status, GOOD);
    let t = t.unwrap();
    assert_eq!(&t[0..4], &rod::ROD_TYPE_PIT_PERSISTENT.to_be_bytes());
    write_blocks(&mut i, 0, 0, &pattern(8 * MIB, 9), 512);
    let t0 = Instant::now();
    let r = write(&mut i, 1, 2, &t, 0, true, &[(0, 131_072)]).unwrap();
    let wut_time = t0.elapsed();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    for k in 0..8 {
        let back = read(&mut i, 1, (k * 16384) as u64, 16384, 512);
        assert!(
            back == old[k * 8 * MIB..(k + 1) * 8 * MIB],
            "chunk {k}: the data as at PT"
        );
    }
    println!("odx: xfs 64 MiB PT {pt_time:?}, WUT {wut_time:?}");
}

/// A token made by one initiator is TOKEN UNKNOWN to another that cannot see its
/// source LU, exactly as a token that never existed; nothing is written.
#[test]
fn a_token_is_useless_to_an_initiator_without_access_to_its_source() {
    let s = Server::start("odx-acl", CONFIG);
    let mut stranger = login(&s, STRANGER, SECRET, 1);
    write_blocks(&mut stranger, 0, 0, &pattern(64 * 512, 5), 512);
    let (r, t) = populate(&mut stranger, 0, 1, None, 0, &[(0, 64)]).unwrap();
    assert_eq!(r.status, GOOD);
    let t = t.unwrap();
    let mut i = me(&s, TARGET, 2);
    let before = read(&mut i, 3, 0, 64, 512);
    let r = write(&mut i, 3, 1, &t, 0, false, &[(0, 64)]).unwrap();
    assert_eq!((r.status, sense(&r)), (CHECK, (0x05, 0x23, 0x04)));
    assert_eq!(read(&mut i, 3, 0, 64, 512), before, "nothing written");
    // REPORT ALL ROD TOKENS shows it to its creator, not to the other initiator,
    // and shows only the first 96 bytes.
    let count = |x: &mut Initiator, lun: u16| {
        let r = x
            .scsi(lun, &rod::report_all_rod_tokens(8192), 8192, None)
            .unwrap();
        assert_eq!(r.status, GOOD);
        let d = &r.data;
        let n = (u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize - 4) / 96;
        (n, d.get(8..104).map(|m| m.to_vec()))
    };
    let (n, first) = count(&mut stranger, 0);
    assert_eq!(n, 1);
    assert_eq!(first.unwrap(), t[..96].to_vec());
    assert_eq!(count(&mut i, 3).0, 0);
}

/// A token's inactivity timeout ends it: TOKEN EXPIRED.
#[test]
fn inactivity_timeout_expires_a_token() {
    let s = Server::start("odx-expire", CONFIG);
    let mut i = me(&s, TARGET, 1);
    let (r, t) = populate(&mut i, 1, 1, None, 1, &[(0, 8)]).unwrap();
    assert_eq!(r.status, GOOD);
    let t = t.unwrap();
    // Above the maximum inactivity timeout: refused at byte 4.
    let p = rod::pt_params(false, None, 601, &[(0, 8)]);
    let r = i
        .scsi(1, &rod::populate_token(2, p.len() as u32), 0, Some(&p))
        .unwrap();
    assert_eq!(sense(&r), (0x05, 0x26, 0x00));
    assert_eq!(&r.sense[15..18], &[0x80, 0, 4], "field pointer at byte 4");
    std::thread::sleep(Duration::from_millis(2100));
    let r = write(&mut i, 3, 3, &t, 0, false, &[(0, 8)]).unwrap();
    assert_eq!(sense(&r), (0x05, 0x23, 0x07), "TOKEN EXPIRED");
}

/// WRITE USING TOKEN with IMMED returns at once; RECEIVE ROD TOKEN INFORMATION
/// polls it to completion with the transfer count.
#[test]
fn immed_write_using_token_is_polled_to_completion() {
    let s = Server::start("odx-immed", CONFIG);
    let mut i = me(&s, TARGET, 1);
    let data = pattern(32 * MIB, 8);
    for k in 0..4 {
        write_blocks(
            &mut i,
            1,
            (k * 16384) as u64,
            &data[k * 8 * MIB..(k + 1) * 8 * MIB],
            512,
        );
    }
    let (_, t) = populate(&mut i, 1, 1, None, 0, &[(0, 65_536)]).unwrap();
    let t = t.unwrap();
    let p = rod::wut_params(true, false, 0, &t, &[(0, 65_536)]);
    let r = i
        .scsi(2, &rod::write_using_token(77, p.len() as u32), 0, Some(&p))
        .unwrap();
    assert_eq!(r.status, GOOD);
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = rrti(&mut i, 2, 77).unwrap();
        assert_eq!(info.response_to_sa, 0x11);
        if info.status != 0x11 && info.status != 0x12 {
            break info;
        }
        assert!(
            info.delay_ms > 0 && info.delay_ms < 0xffff_fffe,
            "a real estimate"
        );
        assert!(Instant::now() < deadline, "never completed");
        std::thread::sleep(Duration::from_millis(u64::from(info.delay_ms)));
    };
    assert_eq!((info.status, info.completion), (0x01, GOOD));
    assert_eq!(info.transfer_count, 65_536);
    for k in 0..4 {
        let back = read(&mut i, 2, (k * 16384) as u64, 16384, 512);
        assert!(back == data[k * 8 * MIB..(k + 1) * 8 * MIB]);
    }
    // A busy list ID answers OPERATION IN PROGRESS (what ddpt walks on).
    let p = rod::pt_params(false, None, 0, &[(0, 8)]);
    let r = i
        .scsi(1, &rod::populate_token(1, p.len() as u32), 0, Some(&p))
        .unwrap();
    assert_eq!(r.status, GOOD, "a completed list ID is reused freely");
}

/// EXTENDED COPY(LID4): a 32-bit list ID, IMMED polled with RECEIVE COPY
/// STATUS(LID4) (transfer count in bytes, units 00h: segments may name LUs of
/// different block sizes), the LID1 segment types; ROD CSCDs (FEh) and the
/// populate-ROD segments (BEh) refused as unsupported.
#[test]
fn extended_copy_lid4_runs_in_the_background_and_refuses_rod_descriptors() {
    use testkit::xcopy::{command_lid4, cscd, list_lid4, naa, seg_blocks};
    let s = Server::start("odx-lid4", CONFIG);
    let mut i = me(&s, TARGET, 1);
    let data = pattern(8 * MIB, 6);
    write_blocks(&mut i, 1, 0, &data, 512);
    let (n1, n3) = (naa(&mut i, 1).unwrap(), naa(&mut i, 3).unwrap());
    let cscds = [cscd(&n1, 512), cscd(&n3, 512)];
    let segs: Vec<Vec<u8>> = (0..4)
        .map(|k| seg_blocks(0, 1, 4096, k * 4096, 100_000 - k * 4096, false))
        .collect();
    let list_id = 0x0102_0304;
    let p = list_lid4(list_id, 0, true, &cscds, &segs);
    let r = i.scsi(3, &command_lid4(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let r = i
            .scsi(3, &rod::receive_copy_status_lid4(list_id, 64), 64, None)
            .unwrap();
        assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
        let st = rod::decode_status(&r.data, false);
        assert_eq!(st.response_to_sa, 0x01, "EXTENDED COPY(LID4)");
        if st.status != 0x11 && st.status != 0x12 {
            break st;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        (st.status, st.units, st.transfer_count),
        (0x01, 0x00, 8 * MIB as u64)
    );
    for k in 0..4u64 {
        let back = read(&mut i, 3, 100_000 - k * 4096, 4096, 512);
        assert!(back == data[(k as usize) * 2 * MIB..(k as usize + 1) * 2 * MIB]);
    }
    // The LID1 status command does not see LID4 lists.
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[2] = 4;
    c[13] = 64;
    let r = i.scsi(3, &c, 64, None).unwrap();
    assert_eq!(sense(&r), (0x05, 0x24, 0x00));
    // ROD CSCD (FEh): UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
    let mut rod_cscd = vec![0u8; 32];
    rod_cscd[0] = 0xfe;
    let p = list_lid4(9, 0, false, &[cscd(&n1, 512), rod_cscd], &segs[..1]);
    let r = i.scsi(3, &command_lid4(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(sense(&r), (0x05, 0x26, 0x07));
    // Populate ROD from block ranges (BEh): UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
    let mut be = vec![0u8; 32];
    be[0] = 0xbe;
    be[2..4].copy_from_slice(&28u16.to_be_bytes());
    let p = list_lid4(9, 0, false, &cscds, &[be]);
    let r = i.scsi(3, &command_lid4(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(sense(&r), (0x05, 0x26, 0x09));
    // LIST FORMAT other than 01h.
    let mut p = list_lid4(9, 0, false, &cscds, &segs[..1]);
    p[0] = 0;
    let r = i.scsi(3, &command_lid4(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(sense(&r), (0x05, 0x26, 0x00));
}
