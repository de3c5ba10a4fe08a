//! End-to-end tests for the VAAI primitives, thin provisioning and persistent
//! reservations, driven by testkit sessions against a real oxtgt process.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use common::{Server, TARGET};
use testkit::{cdb, Initiator};

const GOOD: u8 = 0;
const CHECK: u8 = 2;
const CONFLICT: u8 = 0x18;

fn session_as(server: &Server, name: &str, isid_tail: u8) -> Initiator {
    let mut i = Initiator::connect(&server.addr()).unwrap();
    i.isid[5] = isid_tail;
    let r = i.login_as(name, Some(TARGET), &[]).unwrap();
    assert_eq!((r.status_class, r.status_detail), (0, 0), "login: {r:?}");
    i
}

fn caw16(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

fn write_same16(lba: u64, blocks: u32, unmap: bool) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x93;
    c[1] = if unmap { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn unmap(ranges: &[(u64, u32)]) -> ([u8; 10], Vec<u8>) {
    let mut p = vec![0u8; 8];
    for (lba, n) in ranges {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    let len = p.len() as u16;
    p[0..2].copy_from_slice(&(len - 2).to_be_bytes());
    p[2..4].copy_from_slice(&(len - 8).to_be_bytes());
    let mut c = [0u8; 10];
    c[0] = 0x42;
    c[7..9].copy_from_slice(&len.to_be_bytes());
    (c, p)
}

fn get_lba_status(lba: u64, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn prin(sa: u8) -> [u8; 10] {
    [0x5e, sa, 0, 0, 0, 0, 0, 0x20, 0, 0]
}

fn prout(sa: u8, kind: u8, key: u64, sark: u64, aptpl: bool) -> ([u8; 10], Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[20] = u8::from(aptpl);
    ([0x5f, sa, kind, 0, 0, 0, 0, 0, 24, 0], p)
}

const BS: usize = 512;

/// Status of WRITE(16) / READ(16) of one block at LBA 0 of LUN 0.
fn write0(i: &mut Initiator) -> u8 {
    i.scsi(0, &cdb::write16(0, 1), 0, Some(&[7u8; BS]))
        .unwrap()
        .status
}
fn read0(i: &mut Initiator) -> u8 {
    i.scsi(0, &cdb::read16(0, 1), BS as u32, None)
        .unwrap()
        .status
}

/// Several sessions race COMPARE AND WRITE on one block, round after round, while
/// two more rewrite a neighbouring range with large writes and a reader checks it:
/// exactly one CAW wins each round, the block always holds a winner's whole data,
/// and no block in the neighbouring range is ever a mix of two writes.
#[test]
fn compare_and_write_has_one_winner_per_round_and_no_torn_blocks() {
    const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/lun0.img"
size = "64MiB"
"#;
    let server = Arc::new(Server::start("caw", CONFIG));
    const RACERS: u8 = 4;
    const ROUNDS: u8 = 60;
    const ATS_LBA: u64 = 1000;
    let block = |round: u8, who: u8| vec![round.wrapping_mul(7) ^ (who << 4) | 1; BS];
    // Round 0's compare value is whatever is there: seed it.
    let mut s = session_as(&server, testkit::INITIATOR, 100);
    let r = s
        .scsi(0, &cdb::write16(ATS_LBA, 1), 0, Some(&block(0, 0)))
        .unwrap();
    assert_eq!(r.status, GOOD);
    let current = Arc::new(std::sync::Mutex::new(block(0, 0)));
    let barrier = Arc::new(Barrier::new(RACERS as usize));
    let stop = Arc::new(AtomicBool::new(false));
    let wins = Arc::new(std::sync::Mutex::new(vec![0u32; ROUNDS as usize]));

    let mut hammer = Vec::new();
    // EXTENDED COPY of blocks 4000..6048 to 8000..10048 in a loop, beside the ATS
    // block and the writers, with the copy manager taking the same range locks.
    {
        let (server, stop) = (server.clone(), stop.clone());
        hammer.push(std::thread::spawn(move || {
            let mut s = session_as(&server, testkit::INITIATOR, 30);
            use testkit::xcopy::{command, cscd, list, naa, seg_blocks};
            let naa = naa(&mut s, 0).unwrap();
            let p = list(
                0,
                2,
                &[cscd(&naa, 512)],
                &[seg_blocks(0, 0, 2048, 4000, 8000, false)],
            );
            let c = command(p.len());
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = s.scsi(0, &c, 0, Some(&p)).unwrap();
                assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
                n += 1;
            }
            n
        }));
    }
    for w in 0..2u8 {
        let (server, stop) = (server.clone(), stop.clone());
        hammer.push(std::thread::spawn(move || {
            let mut s = session_as(&server, testkit::INITIATOR, 10 + w);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // 1 MiB over blocks 0..2048 except the ATS block's neighbourhood,
                // every block one byte value, different per writer and iteration.
                let tag = (w << 7) | (n % 127) as u8;
                let data = vec![tag; 2048 * BS];
                let r = s
                    .scsi(0, &cdb::write16(2000, 2048), 0, Some(&data))
                    .unwrap();
                assert_eq!(r.status, GOOD);
                n += 1;
            }
            n
        }));
    }
    {
        let (server, stop) = (server.clone(), stop.clone());
        hammer.push(std::thread::spawn(move || {
            let mut s = session_as(&server, testkit::INITIATOR, 20);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = s
                    .scsi(0, &cdb::read16(2000, 2048), 2048 * BS as u32, None)
                    .unwrap();
                assert_eq!(r.status, GOOD);
                for (i, b) in r.data.chunks(BS).enumerate() {
                    assert!(b.iter().all(|&x| x == b[0]), "block {} torn", 2000 + i);
                }
                n += 1;
            }
            n
        }));
    }

    let racers: Vec<_> = (0..RACERS)
        .map(|who| {
            let (server, barrier, current, wins) = (
                server.clone(),
                barrier.clone(),
                current.clone(),
                wins.clone(),
            );
            std::thread::spawn(move || {
                let mut s = session_as(&server, testkit::INITIATOR, who + 1);
                for round in 0..ROUNDS {
                    barrier.wait();
                    let expect = current.lock().unwrap().clone();
                    barrier.wait();
                    let mut data = expect.clone();
                    data.extend_from_slice(&block(round + 1, who));
                    let r = s.scsi(0, &caw16(ATS_LBA, 1), 0, Some(&data)).unwrap();
                    match r.status {
                        GOOD => {
                            wins.lock().unwrap()[round as usize] += 1;
                            *current.lock().unwrap() = block(round + 1, who);
                        }
                        CHECK => assert_eq!(r.sense_code(), Some((0x0e, 0x1d, 0x00))),
                        other => panic!("CAW status {other:#x}"),
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    for r in racers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u32> = hammer.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        counts.iter().all(|&n| n > 0),
        "background load ran: {counts:?}"
    );
    let wins = wins.lock().unwrap();
    assert!(wins.iter().all(|&w| w == 1), "wins per round: {wins:?}");
    let r = s
        .scsi(0, &cdb::read16(ATS_LBA, 1), BS as u32, None)
        .unwrap();
    assert_eq!(r.data, *current.lock().unwrap());
}

/// COMPARE AND WRITE reports the first differing byte and leaves the block alone;
/// a Data-Out length other than twice the blocks is refused before any I/O.
#[test]
fn compare_and_write_miscompare_offset_and_length_checks() {
    let server = Server::start(
        "cawmis",
        "[[target]]\nname = \"iqn.2026-11.org.oxtgt:test\"\nopen_access = true\n[[target.lun]]\nid = 0\nbackstore = \"ram\"\nsize = \"16MiB\"\n",
    );
    let mut s = session_as(&server, testkit::INITIATOR, 1);
    let old = vec![0x11u8; 2 * BS];
    assert_eq!(
        s.scsi(0, &cdb::write16(8, 2), 0, Some(&old))
            .unwrap()
            .status,
        GOOD
    );
    let mut data = old.clone();
    data[BS + 77] = 0x12; // differs in the second block
    data.extend_from_slice(&vec![0x22u8; 2 * BS]);
    let r = s.scsi(0, &caw16(8, 2), 0, Some(&data)).unwrap();
    assert_eq!(r.sense_code(), Some((0x0e, 0x1d, 0x00)));
    // Fixed sense: VALID, INFORMATION = offset of the first differing byte.
    assert_eq!(r.sense[0] & 0x80, 0x80);
    assert_eq!(
        u32::from_be_bytes(r.sense[3..7].try_into().unwrap()),
        (BS + 77) as u32
    );
    let back = s.scsi(0, &cdb::read16(8, 2), 2 * BS as u32, None).unwrap();
    assert_eq!(back.data, old);
    // Three blocks of Data-Out for a one-block CAW: INVALID FIELD IN CDB, nothing written.
    let r = s
        .scsi(0, &caw16(8, 1), 0, Some(&vec![0x11u8; 3 * BS]))
        .unwrap();
    assert_eq!(r.sense_code(), Some((0x05, 0x24, 0x00)));
    assert_eq!(
        s.scsi(0, &cdb::read16(8, 2), 2 * BS as u32, None)
            .unwrap()
            .data,
        old
    );
}

/// The acceptance figure: WRITE SAME fills a whole 1 GiB thin file LU, one UNMAP
/// descriptor gives the space back (the file's allocated blocks drop to ~0), the LU
/// reads zeros and GET LBA STATUS reports it deallocated.
#[test]
fn unmap_of_whole_file_lu_returns_its_space() {
    const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/thin.img"
size = "1GiB"
thin = true
"#;
    let server = Server::start("unmap", CONFIG);
    let path = server.dir.join("thin.img");
    let allocated = || std::fs::metadata(&path).unwrap().blocks() * 512;
    let mut s = session_as(&server, testkit::INITIATOR, 1);
    let blocks: u64 = (1 << 30) / BS as u64;
    let per = 0xffffu64;
    let pattern = vec![0x5au8; BS];
    let mut lba = 0;
    while lba < blocks {
        let n = per.min(blocks - lba) as u32;
        let r = s
            .scsi(0, &write_same16(lba, n, false), 0, Some(&pattern))
            .unwrap();
        assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
        lba += u64::from(n);
    }
    let full = allocated();
    assert!(full >= 1 << 30, "filled: {full} bytes allocated");
    let st = s.scsi(0, &get_lba_status(0, 24), 24, None).unwrap();
    assert_eq!(st.data[8 + 12] & 0x0f, 0, "mapped after WRITE SAME");

    let (c, p) = unmap(&[(0, blocks as u32)]);
    let r = s.scsi(0, &c, 0, Some(&p)).unwrap();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    let after = allocated();
    println!(
        "unmap: 1 GiB file LU allocated {full} bytes after WRITE SAME, {after} after one UNMAP"
    );
    assert!(
        after < 1 << 20,
        "after UNMAP: {after} bytes still allocated"
    );
    for lba in [0u64, 12345, blocks - 1] {
        let r = s.scsi(0, &cdb::read16(lba, 1), BS as u32, None).unwrap();
        assert!(r.data.iter().all(|&b| b == 0), "LBA {lba} not zero");
    }
    let st = s.scsi(0, &get_lba_status(0, 24), 24, None).unwrap();
    assert_eq!(u64::from_be_bytes(st.data[8..16].try_into().unwrap()), 0);
    assert_eq!(
        u32::from_be_bytes(st.data[16..20].try_into().unwrap()) as u64,
        blocks
    );
    assert_eq!(st.data[8 + 12] & 0x0f, 1, "deallocated");
    // An UNMAP past the end changes nothing and says LBA OUT OF RANGE.
    let (c, p) = unmap(&[(blocks - 1, 2)]);
    let r = s.scsi(0, &c, 0, Some(&p)).unwrap();
    assert_eq!(r.sense_code(), Some((0x05, 0x21, 0x00)));
}

/// A RAM LU with `memory_limit`: writes that need memory past it fail as a thin LU
/// out of space (DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT) and change
/// nothing; reads and rewrites of allocated blocks go on; after an UNMAP frees
/// memory, the refused write succeeds.
#[test]
fn a_ram_lu_at_its_memory_limit_answers_out_of_space_until_unmap_frees_memory() {
    const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "64MiB"
memory_limit = "1MiB"
"#;
    let server = Server::start("ramcap", CONFIG);
    let mut s = session_as(&server, testkit::INITIATOR, 1);
    let mib = (1u32 << 20) / BS as u32;
    let data = vec![0x3cu8; 1 << 20];
    let r = s.scsi(0, &cdb::write16(0, mib), 0, Some(&data)).unwrap();
    assert_eq!(r.status, GOOD, "the first MiB fits: {:?}", r.sense_code());
    let far = u64::from(mib) * 8;
    let r = s
        .scsi(0, &cdb::write16(far, 8), 0, Some(&data[..8 * BS]))
        .unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x07, 0x27, 0x07)),
        "past the limit: SPACE ALLOCATION FAILED WRITE PROTECT"
    );
    let r = s
        .scsi(0, &cdb::read16(far, 8), 8 * BS as u32, None)
        .unwrap();
    assert!(
        r.data.iter().all(|&b| b == 0),
        "the refused write left nothing"
    );
    let r = s.scsi(0, &cdb::read16(0, mib), 1 << 20, None).unwrap();
    assert_eq!(r.data, data, "reads still served");
    let r = s
        .scsi(0, &cdb::write16(0, 8), 0, Some(&vec![0x77; 8 * BS]))
        .unwrap();
    assert_eq!(r.status, GOOD, "rewriting allocated blocks needs no memory");
    let (c, p) = unmap(&[(u64::from(mib) / 2, mib / 2)]);
    assert_eq!(s.scsi(0, &c, 0, Some(&p)).unwrap().status, GOOD);
    let r = s
        .scsi(0, &cdb::write16(far, 8), 0, Some(&data[..8 * BS]))
        .unwrap();
    assert_eq!(r.status, GOOD, "after UNMAP: {:?}", r.sense_code());
}

/// A thin file LU on a real filesystem that fills up (a 320 MiB loop-mounted XFS
/// under a 1 GiB LU): the write that finds no space answers DATA PROTECT, SPACE
/// ALLOCATION FAILED WRITE PROTECT; what was written before reads back intact; an
/// UNMAP returns space and the write then succeeds.
#[test]
fn a_thin_file_lu_on_a_full_filesystem_answers_out_of_space_until_unmap() {
    let Some(fs) = testkit::xfs::ReflinkFs::mount_or_skip("full", 320 << 20) else {
        return;
    };
    let config = format!(
        r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{}/thin.img"
size = "1GiB"
thin = true
"#,
        fs.path().display()
    );
    let server = Server::start("full", &config);
    let mut s = session_as(&server, testkit::INITIATOR, 1);
    let per = (1u32 << 20) / BS as u32;
    let chunk = |i: u32| vec![(i % 251) as u8 + 1; 1 << 20];
    let mut full_at = None;
    for i in 0..1024u32 {
        let r = s
            .scsi(
                0,
                &cdb::write16(u64::from(i * per), per),
                0,
                Some(&chunk(i)),
            )
            .unwrap();
        if r.status != GOOD {
            assert_eq!(
                r.sense_code(),
                Some((0x07, 0x27, 0x07)),
                "a full filesystem: SPACE ALLOCATION FAILED WRITE PROTECT"
            );
            full_at = Some(i);
            break;
        }
    }
    let full_at = full_at.expect("the filesystem never filled");
    println!("full filesystem: {full_at} MiB written before 27h/07h");
    assert!(full_at > 100, "filled after {full_at} MiB");
    for i in [0, full_at / 2, full_at - 1] {
        let r = s
            .scsi(0, &cdb::read16(u64::from(i * per), per), 1 << 20, None)
            .unwrap();
        assert_eq!(r.status, GOOD);
        assert!(r.data == chunk(i), "MiB {i} reads back what was written");
    }
    let (c, p) = unmap(&[(0, 64 * per)]);
    assert_eq!(s.scsi(0, &c, 0, Some(&p)).unwrap().status, GOOD);
    let r = s
        .scsi(
            0,
            &cdb::write16(u64::from(full_at * per), per),
            0,
            Some(&chunk(full_at)),
        )
        .unwrap();
    assert_eq!(r.status, GOOD, "after UNMAP: {:?}", r.sense_code());
    let r = s
        .scsi(
            0,
            &cdb::read16(u64::from(full_at * per), per),
            1 << 20,
            None,
        )
        .unwrap();
    assert!(r.data == chunk(full_at), "the retried write reads back");
}

/// Two initiators, SPC-4 persistent reservations: registration, WRITE EXCLUSIVE
/// conflicts, READ FULL STATUS, APTPL surviving a restart, PREEMPT with its unit
/// attention, and CLEAR.
#[test]
fn persistent_reservations_between_two_initiators_survive_restart_with_aptpl() {
    const CONFIG: &str = r#"
[server]
state_dir = "{dir}/state"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/lun0.img"
size = "16MiB"
"#;
    const A: &str = "iqn.2026-11.org.example:host-a";
    const B: &str = "iqn.2026-11.org.example:host-b";
    let mut server = Server::start("pr", CONFIG);
    let mut a = session_as(&server, A, 1);
    let mut b = session_as(&server, B, 2);
    let run = |i: &mut Initiator, (c, p): ([u8; 10], Vec<u8>)| i.scsi(0, &c, 0, Some(&p)).unwrap();

    assert_eq!(run(&mut a, prout(6, 0, 0, 0xaaaa, true)).status, GOOD);
    assert_eq!(run(&mut b, prout(6, 0, 0, 0xbbbb, true)).status, GOOD);
    // RESERVE with a key that is not ours conflicts; with ours, WRITE EXCLUSIVE.
    assert_eq!(run(&mut a, prout(1, 1, 0xbbbb, 0, true)).status, CONFLICT);
    assert_eq!(run(&mut a, prout(1, 1, 0xaaaa, 0, true)).status, GOOD);
    assert_eq!(write0(&mut b), CONFLICT);
    assert_eq!(read0(&mut b), GOOD);
    assert_eq!(write0(&mut a), GOOD);
    assert_eq!(run(&mut b, prout(1, 1, 0xbbbb, 0, true)).status, CONFLICT);
    // RESERVE(6) conflicts while registrations exist.
    assert_eq!(
        b.scsi(0, &[0x16, 0, 0, 0, 0, 0], 0, None).unwrap().status,
        CONFLICT
    );

    let full = a.scsi(0, &prin(3), 8192, None).unwrap();
    assert_eq!(full.status, GOOD);
    let text = String::from_utf8_lossy(&full.data);
    assert!(
        text.contains(A) && text.contains(B),
        "READ FULL STATUS names both"
    );
    // First descriptor is A's (registered first): key, R_HOLDER, type 1.
    assert_eq!(&full.data[8..16], &0xaaaau64.to_be_bytes());
    assert_eq!((full.data[20] & 1, full.data[21]), (1, 1));

    drop((a, b));
    server.restart();
    let state: Vec<String> = std::fs::read_dir(server.dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let pr_files = state.iter().filter(|n| n.starts_with("pr-")).count();
    assert_eq!(pr_files, 1, "one APTPL file for the LU: {state:?}");
    // The LU's identity is remembered beside it, keyed by its backing file.
    let ids = std::fs::read_to_string(server.dir.join("state/identities.txt")).unwrap();
    assert!(
        ids.starts_with("path:") && ids.contains("lun0.img\t"),
        "{ids}"
    );
    let mut a = session_as(&server, A, 1);
    let mut b = session_as(&server, B, 2);
    let keys = a.scsi(0, &prin(0), 8192, None).unwrap();
    assert_eq!(u32::from_be_bytes(keys.data[4..8].try_into().unwrap()), 16);
    assert_eq!(&keys.data[8..16], &0xaaaau64.to_be_bytes());
    assert_eq!(&keys.data[16..24], &0xbbbbu64.to_be_bytes());
    let res = a.scsi(0, &prin(1), 8192, None).unwrap();
    assert_eq!(
        (&res.data[8..16], res.data[21]),
        (&0xaaaau64.to_be_bytes()[..], 1)
    );
    assert_eq!(write0(&mut b), CONFLICT);

    // B preempts A: A loses its registration, gets REGISTRATIONS PREEMPTED, and
    // now conflicts on writes under B's EXCLUSIVE ACCESS.
    assert_eq!(run(&mut b, prout(4, 3, 0xbbbb, 0xaaaa, true)).status, GOOD);
    let r = a.scsi(0, &[0, 0, 0, 0, 0, 0], 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x2a, 0x05)));
    assert_eq!(read0(&mut a), CONFLICT);
    assert_eq!(write0(&mut b), GOOD);
    // CLEAR by B ends everything; A's writes go through again.
    assert_eq!(run(&mut b, prout(3, 0, 0xbbbb, 0, true)).status, GOOD);
    assert_eq!(write0(&mut a), GOOD);
    let keys = a.scsi(0, &prin(0), 8192, None).unwrap();
    assert_eq!(u32::from_be_bytes(keys.data[4..8].try_into().unwrap()), 0);
}

/// A read-only LU answers every modifying command with WRITE PROTECTED, UNMAP and
/// WRITE SAME included, and keeps its data.
#[test]
fn read_only_lu_refuses_every_write_kind() {
    const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/ro.img"
read_only = true
thin = true
"#;
    let server = Server::start_with("ro", CONFIG, |d| {
        std::fs::write(d.join("ro.img"), vec![0x33u8; 1 << 20]).unwrap();
    });
    let mut s = session_as(&server, testkit::INITIATOR, 1);
    let blk = vec![0u8; BS];
    let (uc, up) = unmap(&[(0, 8)]);
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (cdb::write16(0, 1).to_vec(), blk.clone()),
        (write_same16(0, 8, false).to_vec(), blk.clone()),
        (write_same16(0, 8, true).to_vec(), blk.clone()),
        (
            caw16(0, 1).to_vec(),
            [vec![0x33u8; BS], blk.clone()].concat(),
        ),
        (uc.to_vec(), up),
    ];
    for (c, d) in cases {
        let r = s.scsi(0, &c, 0, Some(&d)).unwrap();
        assert_eq!(
            r.sense_code(),
            Some((0x07, 0x27, 0x00)),
            "opcode {:#x}",
            c[0]
        );
    }
    let r = s.scsi(0, &cdb::read16(0, 8), 8 * BS as u32, None).unwrap();
    assert!(r.data.iter().all(|&b| b == 0x33));
}
