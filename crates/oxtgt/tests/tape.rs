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
    // The loader hears of the new medium too: st starts a new session on it.
    let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x28, 0x00)));
    assert_eq!(i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status, 0);
    // READ POSITION with allocation length 0 (as st sends it): 20 bytes, BOP.
    let r = i
        .scsi(0, &[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], 20, None)
        .unwrap();
    assert_eq!((r.status, r.data.len(), r.data[0]), (0, 20, 0x80));
    assert!(server.dir.join("tapes/BACKUP01.tape").exists());
}

const COPY_CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
type = "tape"
path = "{dir}/tapes"
size = "4GiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "1GiB"
block_size = 4096
[[target.lun]]
id = 2
backstore = "ram"
size = "1GiB"
block_size = 4096
"#;

/// The disk's contents: every 4 KiB block names itself.
fn disk_block(lba: u64) -> Vec<u8> {
    let mut b = pattern(4096, lba as u8);
    b[..8].copy_from_slice(&lba.to_be_bytes());
    b
}

#[test]
fn a_gib_backed_up_to_tape_and_restored_by_extended_copy_is_the_same_gib() {
    let server = Server::start("tape-copy", COPY_CONFIG);
    let mut i = session(&server, &[]);
    const BLOCKS: u64 = 1 << 18; // 1 GiB of 4 KiB blocks
    for chunk in 0..BLOCKS / 2048 {
        let data: Vec<u8> = (0..2048)
            .flat_map(|k| disk_block(chunk * 2048 + k))
            .collect();
        let r = i
            .scsi(1, &cdb::write16(chunk * 2048, 2048), 0, Some(&data))
            .unwrap();
        assert_eq!(r.status, 0);
    }
    let tape = xcopy::naa(&mut i, 0).unwrap();
    let disk = xcopy::naa(&mut i, 1).unwrap();
    let restore = xcopy::naa(&mut i, 2).unwrap();
    // Two backups of 512 MiB: a header block (05h embedded in one, 04h inline in
    // the other; the tape CSCD pads it to a 512-byte block), two 00h segments of
    // 256 MiB in 256 KiB variable blocks, a filemark.
    let cscds = [
        xcopy::cscd(&disk, 4096),
        xcopy::cscd_tape(&tape, true, false, 0),
    ];
    let half = BLOCKS / 2;
    // 65535 blocks per 00h segment (the field's maximum), then the 2 left: 65535
    // blocks are not whole 256 KiB transfers, so the first two carry their residue
    // to the next (CAT) and the last ends exactly on a transfer.
    let seg = 65535u16;
    let backup = |i: &mut testkit::Initiator, n: u64, header: &[u8], inline: bool| {
        let first = n * half;
        let mut segs = Vec::new();
        if inline {
            segs.push(xcopy::seg_inline(1, false, 512, 0, header.len() as u32));
        } else {
            segs.push(xcopy::seg_embedded(1, false, 512, header));
        }
        segs.push(xcopy::seg_stream(true, 0, 1, true, 256 << 10, seg, first));
        segs.push(xcopy::seg_stream(
            true,
            0,
            1,
            true,
            256 << 10,
            seg,
            first + u64::from(seg),
        ));
        let rest = (half - 2 * u64::from(seg)) as u16;
        segs.push(xcopy::seg_stream(
            true,
            0,
            1,
            false,
            256 << 10,
            rest,
            first + 2 * u64::from(seg),
        ));
        segs.push(xcopy::seg_filemarks(1, 1));
        let p = if inline {
            xcopy::list_inline(n as u8 + 1, &cscds, &segs, header)
        } else {
            xcopy::list(n as u8 + 1, 2, &cscds, &segs)
        };
        let started = std::time::Instant::now();
        let r = i.scsi(0, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
        assert_eq!(r.status, 0, "backup {n}: {:02x?}", r.sense);
        started.elapsed()
    };
    let t1 = backup(&mut i, 0, b"OXTGT BACKUP 1 - EMBEDDED HEADER", false);
    let t2 = backup(&mut i, 1, b"OXTGT BACKUP 2 - INLINE HEADER..", true);
    // What st would read: the header block, 2048 blocks of 256 KiB, a filemark.
    assert_eq!(i.scsi(0, &REWIND, 0, None).unwrap().status, 0);
    let r = i.scsi(0, &read6(false, false, 512), 512, None).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(&r.data[..32], b"OXTGT BACKUP 1 - EMBEDDED HEADER");
    assert!(
        r.data[32..].iter().all(|&b| b == 0),
        "padded with zeros (PAD)"
    );
    let r = i
        .scsi(0, &read6(false, false, 256 << 10), 256 << 10, None)
        .unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.data[..4096], disk_block(0)[..], "the first disk block");
    // Restore both to the second disk: 06h drops each header, 01h writes the data;
    // between the backups the host spaces over the filemark.
    let cscds = [
        xcopy::cscd_tape(&tape, false, false, 0),
        xcopy::cscd(&restore, 4096),
    ];
    let restore_one = |i: &mut testkit::Initiator, n: u64| {
        let first = n * half;
        let rest = (half - 2 * u64::from(seg)) as u16;
        let segs = [
            xcopy::seg_discard(0, false, 512, 512),
            xcopy::seg_stream(false, 0, 1, true, 256 << 10, seg, first),
            xcopy::seg_stream(false, 0, 1, true, 256 << 10, seg, first + u64::from(seg)),
            xcopy::seg_stream(
                false,
                0,
                1,
                false,
                256 << 10,
                rest,
                first + 2 * u64::from(seg),
            ),
        ];
        let p = xcopy::list(n as u8 + 10, 2, &cscds, &segs);
        let r = i.scsi(0, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
        assert_eq!(r.status, 0, "restore {n}: {:02x?}", r.sense);
    };
    assert_eq!(i.scsi(0, &REWIND, 0, None).unwrap().status, 0);
    restore_one(&mut i, 0);
    assert_eq!(i.scsi(0, &cdb::space(1, 1), 0, None).unwrap().status, 0);
    restore_one(&mut i, 1);
    for chunk in 0..BLOCKS / 2048 {
        let r = i
            .scsi(2, &cdb::read16(chunk * 2048, 2048), 2048 * 4096, None)
            .unwrap();
        assert_eq!(r.status, 0);
        for k in 0..2048u64 {
            let lba = chunk * 2048 + k;
            let got = &r.data[(k * 4096) as usize..((k + 1) * 4096) as usize];
            assert!(got == disk_block(lba), "block {lba} restored wrong");
        }
    }
    // Reading on across the filemark is a source failure: COPY ABORTED, THIRD
    // PARTY DEVICE FAILURE, the tape's FILEMARK sense forwarded.
    let segs = [xcopy::seg_stream(false, 0, 1, false, 256 << 10, 128, 0)];
    let p = xcopy::list(30, 2, &cscds, &segs);
    let r = i.scsi(0, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(r.sense_code(), Some((0x0a, 0x0d, 0x01)));
    let at = usize::from(r.sense[8]);
    assert!(
        at >= 18 && r.sense.len() > at + 14,
        "source sense forwarded: {:02x?}",
        r.sense
    );
    assert_eq!(r.sense[at], 0x02, "its status: CHECK CONDITION");
    let fwd = &r.sense[at + 1..];
    assert_eq!(
        (fwd[2] & 0x80, fwd[12], fwd[13]),
        (0x80, 0x00, 0x01),
        "FILEMARK"
    );
    println!(
        "tape copy: 1 GiB backed up by EXTENDED COPY in {:.2} s + {:.2} s and restored, every block compared",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );
}

#[test]
fn byte_offset_segments_and_held_data_travel_through_the_tape() {
    let server = Server::start("tape-bytes", COPY_CONFIG);
    let mut i = session(&server, &[]);
    let src: Vec<u8> = (0..4).flat_map(disk_block).collect();
    assert_eq!(
        i.scsi(1, &cdb::write16(0, 4), 0, Some(&src))
            .unwrap()
            .status,
        0
    );
    let before = vec![0xeeu8; 3 * 4096];
    assert_eq!(
        i.scsi(2, &cdb::write16(0, 3), 0, Some(&before))
            .unwrap()
            .status,
        0
    );
    let tape = xcopy::naa(&mut i, 0).unwrap();
    let disk = xcopy::naa(&mut i, 1).unwrap();
    let other = xcopy::naa(&mut i, 2).unwrap();
    // 08h: 5000 bytes from byte 100 of LBA 1, as one 5000-byte tape block; then
    // 0Bh holds the whole of LBA 3 while writing it as a 4096-byte block.
    let cscds = [
        xcopy::cscd(&disk, 4096),
        xcopy::cscd_tape(&tape, false, false, 0),
    ];
    let mut hold = xcopy::seg_stream(true, 0, 1, false, 4096, 1, 3);
    hold[0] = 0x0b;
    let segs = [
        xcopy::seg_stream_bytes(true, 0, 1, 5000, 5000, 1, 100),
        hold,
    ];
    let p = xcopy::list(7, 0, &cscds, &segs); // usage 00b: results held
    let r = i.scsi(0, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(r.status, 0, "{:02x?}", r.sense);
    let mut c = cdb::receive_copy_results(1, 8192);
    c[2] = 7;
    let r = i.scsi(0, &c, 8192, None).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(u32::from_be_bytes(r.data[..4].try_into().unwrap()), 4096);
    assert_eq!(&r.data[4..], &disk_block(3)[..], "0Bh held what it copied");
    // 09h: that 5000-byte block to byte 300 of LBA 0 of the other disk; the bytes
    // around it keep their contents.
    assert_eq!(i.scsi(0, &REWIND, 0, None).unwrap().status, 0);
    let cscds = [
        xcopy::cscd_tape(&tape, false, false, 0),
        xcopy::cscd(&other, 4096),
    ];
    let segs = [xcopy::seg_stream_bytes(false, 0, 1, 5000, 5000, 0, 300)];
    let p = xcopy::list(8, 2, &cscds, &segs);
    let r = i.scsi(0, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(r.status, 0, "{:02x?}", r.sense);
    let r = i.scsi(2, &cdb::read16(0, 3), 3 * 4096, None).unwrap();
    let mut want = before.clone();
    want[300..5300].copy_from_slice(&src[4096 + 100..4096 + 5100]);
    assert!(r.data == want, "09h wrote exactly its bytes");
    // An offset past the block: COPY ABORTED pointing at BLOCK DEVICE BYTE OFFSET.
    let segs = [xcopy::seg_stream_bytes(false, 0, 1, 5000, 5000, 0, 4096)];
    let p = xcopy::list(9, 2, &cscds, &segs);
    let r = i.scsi(0, &xcopy::command(p.len()), 0, Some(&p)).unwrap();
    assert_eq!(r.sense_code().map(|c| c.0), Some(0x0a));
}
