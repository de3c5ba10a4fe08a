//! Token-based copy offload as a client sends it, built byte by byte from the
//! layouts in ROD-TOKENS.md §1 (SBC-3 5.9 / 5.36, SPC-4 6.18-6.21), independent of
//! oxtgt's own parser: the CDBs of POPULATE TOKEN, WRITE USING TOKEN, COPY
//! OPERATION ABORT and the THIRD PARTY COPY IN commands, their parameter lists,
//! and a decoder of RECEIVE ROD TOKEN INFORMATION data that finds the token the way
//! ddpt and Windows do (through byte 13).

use std::io;

use crate::{Initiator, ScsiResult};

/// Well-known ROD types.
pub const ROD_TYPE_AUR: u32 = 0x0001_0000;
pub const ROD_TYPE_PIT_DEFAULT: u32 = 0x0080_0000;
pub const ROD_TYPE_PIT_VULNERABLE: u32 = 0x0080_0001;
pub const ROD_TYPE_PIT_PERSISTENT: u32 = 0x0080_0002;
pub const ROD_TYPE_ZERO: u32 = 0xffff_0001;

fn cdb16(op: u8, sa: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = sa;
    c
}

/// THIRD PARTY COPY OUT with the list ID at bytes 6-9 (PT 10h, WUT 11h).
fn copy_out(sa: u8, list_id: u32, len: u32) -> [u8; 16] {
    let mut c = cdb16(0x83, sa);
    c[6..10].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

pub fn populate_token(list_id: u32, len: u32) -> [u8; 16] {
    copy_out(0x10, list_id, len)
}

pub fn write_using_token(list_id: u32, len: u32) -> [u8; 16] {
    copy_out(0x11, list_id, len)
}

/// COPY OPERATION ABORT: the list ID at bytes 2-5.
pub fn copy_operation_abort(list_id: u32) -> [u8; 16] {
    let mut c = cdb16(0x83, 0x1c);
    c[2..6].copy_from_slice(&list_id.to_be_bytes());
    c
}

/// THIRD PARTY COPY IN: the list ID at bytes 2-5, ALLOCATION LENGTH at 10-13.
fn copy_in(sa: u8, list_id: u32, alloc: u32) -> [u8; 16] {
    let mut c = cdb16(0x84, sa);
    c[2..6].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

pub fn receive_rod_token_information(list_id: u32, alloc: u32) -> [u8; 16] {
    copy_in(0x07, list_id, alloc)
}

pub fn receive_copy_status_lid4(list_id: u32, alloc: u32) -> [u8; 16] {
    copy_in(0x05, list_id, alloc)
}

pub fn report_all_rod_tokens(alloc: u32) -> [u8; 16] {
    copy_in(0x08, 0, alloc)
}

fn ranges(p: &mut Vec<u8>, ranges: &[(u64, u32)]) {
    for &(lba, blocks) in ranges {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&blocks.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
}

fn set_data_length(p: &mut [u8]) {
    let n = (p.len() - 2) as u16;
    p[0..2].copy_from_slice(&n.to_be_bytes());
}

/// A POPULATE TOKEN parameter list: header (16 bytes) and 16-byte range
/// descriptors. `rod_type` sets RTV.
pub fn pt_params(
    immed: bool,
    rod_type: Option<u32>,
    inactivity_timeout: u32,
    list: &[(u64, u32)],
) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[2] = u8::from(immed) | if rod_type.is_some() { 0x02 } else { 0 };
    p[4..8].copy_from_slice(&inactivity_timeout.to_be_bytes());
    p[8..12].copy_from_slice(&rod_type.unwrap_or(0).to_be_bytes());
    p[14..16].copy_from_slice(&((list.len() * 16) as u16).to_be_bytes());
    ranges(&mut p, list);
    set_data_length(&mut p);
    p
}

/// A WRITE USING TOKEN parameter list: header, OFFSET INTO ROD at 8, the token at
/// 16, the range list length at 534 and the ranges from 536.
pub fn wut_params(
    immed: bool,
    del_tkn: bool,
    offset_into_rod: u64,
    token: &[u8],
    list: &[(u64, u32)],
) -> Vec<u8> {
    assert_eq!(token.len(), 512);
    let mut p = vec![0u8; 536];
    p[2] = u8::from(immed) | if del_tkn { 0x02 } else { 0 };
    p[8..16].copy_from_slice(&offset_into_rod.to_be_bytes());
    p[16..528].copy_from_slice(token);
    p[534..536].copy_from_slice(&((list.len() * 16) as u16).to_be_bytes());
    ranges(&mut p, list);
    set_data_length(&mut p);
    p
}

/// The block device zero token a client builds itself.
pub fn zero_token() -> Vec<u8> {
    let mut t = vec![0u8; 512];
    t[0..4].copy_from_slice(&ROD_TYPE_ZERO.to_be_bytes());
    t[6..8].copy_from_slice(&0x01f8u16.to_be_bytes());
    t
}

/// RECEIVE ROD TOKEN INFORMATION / RECEIVE COPY STATUS(LID4) data, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStatus {
    pub response_to_sa: u8,
    pub status: u8,
    pub delay_ms: u32,
    pub completion: u8,
    pub units: u8,
    pub transfer_count: u64,
    pub sense: Vec<u8>,
    /// The ROD token, found at 32 + byte 13 + 6 (RRTI only).
    pub token: Option<Vec<u8>>,
}

/// Decodes status data; `rrti` looks for the token part.
pub fn decode_status(b: &[u8], rrti: bool) -> CopyStatus {
    let be32 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let avail = be32(0) as usize;
    assert_eq!(avail + 4, b.len(), "AVAILABLE DATA");
    let sense_field = usize::from(b[13]);
    let sense_len = usize::from(b[14]);
    let k = 32 + sense_field;
    let token = if rrti {
        let len = be32(k) as usize;
        match len {
            0 => None,
            0x202 => Some(b[k + 6..k + 6 + 512].to_vec()),
            other => panic!("ROD TOKEN DESCRIPTORS LENGTH {other:#x}"),
        }
    } else {
        None
    };
    CopyStatus {
        response_to_sa: b[4] & 0x1f,
        status: b[5] & 0x7f,
        delay_ms: be32(8),
        completion: b[12],
        units: b[15],
        transfer_count: u64::from_be_bytes(b[16..24].try_into().unwrap()),
        sense: b[32..32 + sense_len].to_vec(),
        token,
    }
}

/// POPULATE TOKEN of `list` on `lun`, then RECEIVE ROD TOKEN INFORMATION: the
/// command's result and, when it worked, the token.
pub fn populate(
    i: &mut Initiator,
    lun: u16,
    list_id: u32,
    rod_type: Option<u32>,
    inactivity_timeout: u32,
    list: &[(u64, u32)],
) -> io::Result<(ScsiResult, Option<Vec<u8>>)> {
    let p = pt_params(false, rod_type, inactivity_timeout, list);
    let r = i.scsi(lun, &populate_token(list_id, p.len() as u32), 0, Some(&p))?;
    if r.status != 0 {
        return Ok((r, None));
    }
    let info = rrti(i, lun, list_id)?;
    Ok((r, info.token))
}

/// RECEIVE ROD TOKEN INFORMATION, decoded.
pub fn rrti(i: &mut Initiator, lun: u16, list_id: u32) -> io::Result<CopyStatus> {
    let r = i.scsi(
        lun,
        &receive_rod_token_information(list_id, 1024),
        1024,
        None,
    )?;
    if r.status != 0 {
        return Err(io::Error::other(format!(
            "RRTI failed: {:?}",
            r.sense_code()
        )));
    }
    Ok(decode_status(&r.data, true))
}

/// WRITE USING TOKEN of `list` on `lun`.
pub fn write(
    i: &mut Initiator,
    lun: u16,
    list_id: u32,
    token: &[u8],
    offset_into_rod: u64,
    del_tkn: bool,
    list: &[(u64, u32)],
) -> io::Result<ScsiResult> {
    let p = wut_params(false, del_tkn, offset_into_rod, token, list);
    i.scsi(
        lun,
        &write_using_token(list_id, p.len() as u32),
        0,
        Some(&p),
    )
}
