//! A tape LU over iSCSI: what an initiator sees on the wire (data and CHECK
//! CONDITION on one command, exact residuals), the cartridge file surviving a
//! kill -9, and the copy manager refusing to treat a tape as a disk.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, session, Server};
use testkit::{cdb, xcopy};

const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
type = "tape"
path = "{dir}/tapes"
size = "4GiB"
cartridge = "BACKUP01"
[[target.lun]]
id = 1
backstore = "ram"
size = "16MiB"
"#;

use cdb::{tape_read as read6, tape_write as write6, write_filemarks as weof, REWIND};
/// MODE SELECT(6) parameter list: header and a block descriptor of `len`.
fn block_descriptor(len: u32) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![0, 0, 0x10, 8, 0, 0, 0, 0, 0, l[1], l[2], l[3]]
}

#[test]
fn data_and_check_condition_travel_together_with_exact_residuals() {
    let server = Server::start("tape-wire", CONFIG);
    let mut i = session(&server, &[]);
    let r = i.scsi(0, &cdb::inquiry(false, 0, 96), 96, None).unwrap();
    assert_eq!(
        (r.data[0], r.data[1] & 0x80),
        (0x01, 0x80),
        "tape, removable"
    );
    // Fixed 512-byte blocks: 3 blocks, a filemark, 1 block.
    let ms = block_descriptor(512);
    let r = i
        .scsi(0, &[0x15, 0x10, 0, 0, ms.len() as u8, 0], 0, Some(&ms))
        .unwrap();
    assert_eq!(r.status, 0);
    let data = pattern(3 * 512, 1);
    assert_eq!(
        i.scsi(0, &write6(true, 3), 0, Some(&data)).unwrap().status,
        0
    );
    assert_eq!(i.scsi(0, &weof(1), 0, None).unwrap().status, 0);
    assert_eq!(
        i.scsi(0, &write6(true, 1), 0, Some(&pattern(512, 2)))
            .unwrap()
            .status,
        0
    );
    assert_eq!(i.scsi(0, &REWIND, 0, None).unwrap().status, 0);
    // Ask for 5 blocks: 3 come back, then the filemark. Data-In with the 3 blocks,
    // then a SCSI Response: CHECK CONDITION, FILEMARK, INFORMATION 2, and the
    // residual underflow of the 2 blocks not sent.
    let r = i.scsi(0, &read6(true, false, 5), 5 * 512, None).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.data, data, "the blocks before the filemark");
    assert_eq!(r.sense_code(), Some((0, 0x00, 0x01)));
    assert_eq!(r.sense[2] & 0x80, 0x80, "FILEMARK bit");
    assert_eq!(r.sense[0] & 0x80, 0x80, "VALID");
    assert_eq!(u32::from_be_bytes(r.sense[3..7].try_into().unwrap()), 2);
    assert_eq!((r.residual_flags, r.residual), (0x02, 2 * 512), "underflow");
    // Variable mode, SILI: a short block is GOOD and the residual says how short.
    let ms = block_descriptor(0);
    i.scsi(0, &[0x15, 0x10, 0, 0, 12, 0], 0, Some(&ms)).unwrap();
    let r = i.scsi(0, &read6(false, true, 4096), 4096, None).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.data, pattern(512, 2));
    assert_eq!((r.residual_flags, r.residual), (0x02, 4096 - 512));
    // At end of data: BLANK CHECK with no data.
    let r = i.scsi(0, &read6(false, false, 4096), 4096, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x08, 0x00, 0x05)));
    assert_eq!((r.residual_flags, r.residual), (0x02, 4096));
}

#[test]
fn kill_9_while_writing_loses_nothing_acknowledged_by_write_filemarks() {
    let mut server = Server::start("tape-kill", CONFIG);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = common::session_at(&addr, &[]);
            let mut synced = 0u32;
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Variable 64 KiB blocks, each with its number; a filemark every 8.
                let mut b = pattern(64 << 10, n as u8);
                b[..4].copy_from_slice(&n.to_be_bytes());
                match i.scsi(0, &write6(false, b.len() as u32), 0, Some(&b)) {
                    Ok(r) if r.status == 0 => n += 1,
                    _ => break,
                }
                if n.is_multiple_of(8) {
                    match i.scsi(0, &weof(1), 0, None) {
                        Ok(r) if r.status == 0 => synced = n,
                        _ => break,
                    }
                }
            }
            synced
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    server.crash_restart();
    stop.store(true, Ordering::Relaxed);
    let synced = writer.join().unwrap();
    assert!(synced >= 16, "the writer got going: {synced} blocks synced");
    // The cartridge loads; every block up to the last acknowledged filemark is
    // there and right; what follows is either right or end of data.
    let mut i = session(&server, &[]);
    let _ = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None); // a power-on unit attention, if any
    let mut n = 0u32;
    let mut files = 0;
    loop {
        let r = i
            .scsi(0, &read6(false, false, 64 << 10), 64 << 10, None)
            .unwrap();
        match r.sense_code() {
            None => {
                let mut want = pattern(64 << 10, n as u8);
                want[..4].copy_from_slice(&n.to_be_bytes());
                assert!(r.data == want, "block {n} read back wrong");
                n += 1;
            }
            Some((0, 0, 1)) => files += 1,
            Some((8, 0, 5)) => break,
            other => panic!("block {n}: unexpected sense {other:?}"),
        }
    }
    assert!(
        n >= synced,
        "{n} blocks after the crash, {synced} were acknowledged as synced"
    );
    assert!(
        n < 40_000,
        "the writer was still writing when killed (not at early warning)"
    );
    assert_eq!(files, n / 8, "one filemark per 8 blocks");
    println!("tape kill -9: {synced} blocks synced before the kill, {n} read back intact");
}

#[test]
fn a_tape_is_not_a_block_copy_target_and_unload_load_round_trips() {
    let server = Server::start("tape-xcopy", CONFIG);
    let mut i = session(&server, &[]);
    let tape = xcopy::naa(&mut i, 0).unwrap();
    let disk = xcopy::naa(&mut i, 1).unwrap();
    // A block→block segment naming the tape as its destination (CSCD PDT 0).
    let p = xcopy::list(
        1,
        0,
        &[xcopy::cscd(&disk, 512), xcopy::cscd(&tape, 0)],
        &[xcopy::seg_blocks(0, 1, 8, 0, 0, false)],
    );
    let r = i.scsi(1, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((0x0a, 0x0d, 0x03)),
        "COPY ABORTED, INCORRECT COPY TARGET DEVICE TYPE"
    );
    // LOAD UNLOAD: unloaded, NOT READY, MEDIUM NOT PRESENT; loaded again.
    assert_eq!(
        i.scsi(0, &[0x1b, 0, 0, 0, 0, 0], 0, None).unwrap().status,
        0
    );
    let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x02, 0x3a, 0x00)));
    assert_eq!(
        i.scsi(0, &[0x1b, 0, 0, 0, 1, 0], 0, None).unwrap().status,
        0
    );
    assert_eq!(i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status, 0);
    // READ POSITION with allocation length 0 (as st sends it): 20 bytes, BOP.
    let r = i
        .scsi(0, &[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], 20, None)
        .unwrap();
    assert_eq!((r.status, r.data.len(), r.data[0]), (0, 20, 0x80));
    assert!(server.dir.join("tapes/BACKUP01.tape").exists());
}
