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
