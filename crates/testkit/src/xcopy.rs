//! EXTENDED COPY (LID1) parameter lists built byte by byte from SPC-4 6.3, for
//! tests and benchmarks; independent of oxtgt's own parser.

use std::io;

use crate::{cdb, Initiator};

/// The NAA designator (VPD 0x83, LU association) of LUN `lun`.
pub fn naa(i: &mut Initiator, lun: u16) -> io::Result<[u8; 16]> {
    let r = i.scsi(lun, &cdb::inquiry(true, 0x83, 1024), 1024, None)?;
    let d = &r.data;
    let mut at = 4;
    while at + 4 <= d.len() {
        let (kind, assoc, len) = (
            d[at + 1] & 0x0f,
            (d[at + 1] >> 4) & 3,
            usize::from(d[at + 3]),
        );
        if kind == 3 && assoc == 0 && len == 16 && at + 20 <= d.len() {
            let mut n = [0u8; 16];
            n.copy_from_slice(&d[at + 4..at + 20]);
            return Ok(n);
        }
        at += 4 + len;
    }
    Err(io::Error::other(format!("LUN {lun} has no NAA designator")))
}

/// An E4h identification CSCD naming an LU by its NAA, with its block size.
pub fn cscd(naa: &[u8; 16], block: u32) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xe4;
    d[4] = 0x01; // binary
    d[5] = 0x03; // LU association, NAA
    d[7] = 16;
    d[8..24].copy_from_slice(naa);
    d[29..32].copy_from_slice(&block.to_be_bytes()[1..]);
    d
}

/// An E4h identification CSCD naming a tape (PDT 01h) by its NAA: PAD, FIXED and
/// the stream block length (SPC-4 Table 137).
pub fn cscd_tape(naa: &[u8; 16], pad: bool, fixed: bool, block_len: u32) -> Vec<u8> {
    let mut d = cscd(naa, block_len);
    d[1] = 0x01;
    d[28] = u8::from(pad) << 2 | u8::from(fixed);
    d
}

/// A disk CSCD with PAD set.
pub fn cscd_pad(naa: &[u8; 16], block: u32) -> Vec<u8> {
    let mut d = cscd(naa, block);
    d[28] = 0x04;
    d
}

/// A 00h block→stream (`to_tape`) or 01h stream→block segment: STREAM DEVICE
/// TRANSFER LENGTH, BLOCK DEVICE NUMBER OF BLOCKS, BLOCK DEVICE LBA.
pub fn seg_stream(
    to_tape: bool,
    src: u16,
    dst: u16,
    cat: bool,
    stdl: u32,
    blocks: u16,
    lba: u64,
) -> Vec<u8> {
    let mut d = vec![0u8; 24];
    d[0] = if to_tape { 0x00 } else { 0x01 };
    d[1] = u8::from(cat);
    d[3] = 0x14;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[9..12].copy_from_slice(&stdl.to_be_bytes()[1..]);
    d[14..16].copy_from_slice(&blocks.to_be_bytes());
    d[16..24].copy_from_slice(&lba.to_be_bytes());
    d
}

/// An 08h block-with-offset→stream (`to_tape`) or 09h stream→block-with-offset
/// segment: STDL, NUMBER OF BYTES, LBA and BLOCK DEVICE BYTE OFFSET.
pub fn seg_stream_bytes(
    to_tape: bool,
    src: u16,
    dst: u16,
    stdl: u32,
    bytes: u32,
    lba: u64,
    offset: u16,
) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = if to_tape { 0x08 } else { 0x09 };
    d[3] = 0x18;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[9..12].copy_from_slice(&stdl.to_be_bytes()[1..]);
    d[12..16].copy_from_slice(&bytes.to_be_bytes());
    d[16..24].copy_from_slice(&lba.to_be_bytes());
    d[26..28].copy_from_slice(&offset.to_be_bytes());
    d
}

/// A 04h segment: `bytes` of the list's inline data from `offset` to the tape.
pub fn seg_inline(dst: u16, cat: bool, stdl: u32, offset: u32, bytes: u32) -> Vec<u8> {
    let mut d = vec![0u8; 20];
    d[0] = 0x04;
    d[1] = u8::from(cat);
    d[3] = 0x10;
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[9..12].copy_from_slice(&stdl.to_be_bytes()[1..]);
    d[12..16].copy_from_slice(&offset.to_be_bytes());
    d[16..20].copy_from_slice(&bytes.to_be_bytes());
    d
}

/// A 05h segment: `data` embedded in the descriptor, written to the tape.
pub fn seg_embedded(dst: u16, cat: bool, stdl: u32, data: &[u8]) -> Vec<u8> {
    let padded = data.len().div_ceil(4) * 4;
    let mut d = vec![0u8; 16 + padded];
    d[0] = 0x05;
    d[1] = u8::from(cat);
    let n = (d.len() - 4) as u16;
    d[2..4].copy_from_slice(&n.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[9..12].copy_from_slice(&stdl.to_be_bytes()[1..]);
    d[12..14].copy_from_slice(&(data.len() as u16).to_be_bytes());
    d[16..16 + data.len()].copy_from_slice(data);
    d
}

/// A 06h segment: `bytes` read from the tape and discarded.
pub fn seg_discard(src: u16, cat: bool, stdl: u32, bytes: u32) -> Vec<u8> {
    let mut d = vec![0u8; 16];
    d[0] = 0x06;
    d[1] = u8::from(cat);
    d[3] = 0x0c;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[9..12].copy_from_slice(&stdl.to_be_bytes()[1..]);
    d[12..16].copy_from_slice(&bytes.to_be_bytes());
    d
}

/// A 10h segment: `count` filemarks written to the tape.
pub fn seg_filemarks(dst: u16, count: u32) -> Vec<u8> {
    let mut d = vec![0u8; 12];
    d[0] = 0x10;
    d[3] = 0x08;
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[9..12].copy_from_slice(&count.to_be_bytes()[1..]);
    d
}

/// A parameter list with inline data after the segments.
pub fn list_inline(list_id: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>], inline: &[u8]) -> Vec<u8> {
    let mut p = list(list_id, 2, cscds, segs);
    p[12..16].copy_from_slice(&(inline.len() as u32).to_be_bytes());
    p.extend_from_slice(inline);
    p
}

/// A 02h block→block segment.
pub fn seg_blocks(
    src: u16,
    dst: u16,
    blocks: u16,
    src_lba: u64,
    dst_lba: u64,
    dc: bool,
) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[1] = u8::from(dc) << 1;
    d[3] = 0x18;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

/// A parameter list: header (list ID, LIST ID USAGE), CSCDs, segments.
pub fn list(list_id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
    let c: Vec<u8> = cscds.concat();
    let s: Vec<u8> = segs.concat();
    let mut p = vec![0u8; 16];
    p[0] = list_id;
    p[1] = usage << 3;
    p[2..4].copy_from_slice(&(c.len() as u16).to_be_bytes());
    p[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
    p.extend_from_slice(&c);
    p.extend_from_slice(&s);
    p
}

/// EXTENDED COPY(LID1) CDB for a parameter list of `len` bytes.
pub fn command(len: usize) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&(len as u32).to_be_bytes());
    c
}

/// A LID4 parameter list (SPC-4 6.4.3, ROD-TOKENS.md §1.2): the 48-byte header
/// (LIST FORMAT 01h, LIST ID USAGE in byte 1, IMMED in byte 15, the 32-bit list ID
/// at 20-23, the two list lengths at 42-45), then CSCDs and segments as in LID1.
pub fn list_lid4(
    list_id: u32,
    usage: u8,
    immed: bool,
    cscds: &[Vec<u8>],
    segs: &[Vec<u8>],
) -> Vec<u8> {
    let c: Vec<u8> = cscds.concat();
    let s: Vec<u8> = segs.concat();
    let mut p = vec![0u8; 48];
    p[0] = 0x01;
    p[1] = usage << 3;
    p[15] = u8::from(immed);
    p[20..24].copy_from_slice(&list_id.to_be_bytes());
    p[42..44].copy_from_slice(&(c.len() as u16).to_be_bytes());
    p[44..46].copy_from_slice(&(s.len() as u16).to_be_bytes());
    p.extend_from_slice(&c);
    p.extend_from_slice(&s);
    p
}

/// EXTENDED COPY(LID4) CDB (83h/01h) for a parameter list of `len` bytes.
pub fn command_lid4(len: usize) -> [u8; 16] {
    let mut c = command(len);
    c[1] = 0x01;
    c
}
