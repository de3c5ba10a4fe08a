//! Third-party copy as the device server sees it (SPC-4 6.3-6.4, 7.8.17): the limits
//! the copy manager enforces, what VPD 0x8F and RECEIVE COPY OPERATING PARAMETERS say
//! about them, and the [`CopyManager`] interface the daemon plugs in. The parser and
//! engine live in the `copy` crate; every number advertised here is the constant its
//! parser checks.

use std::sync::atomic::AtomicBool;

use crate::lu::{LogicalUnit, Nexus};

pub mod lid1;
pub mod rod;
use crate::sense::Sense;

/// Most CSCD descriptors in one parameter list.
pub const MAX_CSCD_DESCRIPTORS: u16 = 64;
/// Most segment descriptors in one parameter list.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// Largest CSCD + segment descriptor lists, in bytes.
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 8192;
/// Largest segment, in bytes: a block→block segment may name 65535 blocks of up to
/// 4096 bytes (the 16-bit count), so the limit is what that field allows.
pub const MAX_SEGMENT_LENGTH: u32 = 65535 * 4096;
/// Inline data (segment 04h: labels and headers written to a tape), bytes per list.
pub const MAX_INLINE_DATA_LENGTH: u32 = 64 * 1024;
/// INLINE DATA GRANULARITY, as a power of two: 04h offsets are multiples of 4.
pub const INLINE_DATA_GRANULARITY_LOG2: u8 = 2;
/// MAXIMUM STREAM DEVICE TRANSFER SIZE: one READ or WRITE of a stream CSCD (STDL
/// bytes, or STDL blocks of the stream block length), the tape's largest block.
pub const MAX_STREAM_TRANSFER_BYTES: u32 = crate::ssc::MAX_BLOCK;
/// Concurrent copies per logical unit that received them.
pub const MAX_CONCURRENT_COPIES: u16 = 64;
/// Segment descriptor codes implemented, then CSCD codes (SPC-4 Table 109, 110):
/// block→block (02h, 0Ah, 0Dh), block→stream (00h, 0Bh; with a byte offset 08h),
/// stream→block (01h, 0Ch; with a byte offset 09h), inline and embedded
/// data→stream (04h, 05h), stream→discard (06h, 0Fh), verify (07h), filemarks
/// (10h), register key (14h); E4h names block and stream devices. Not 03h
/// (stream→stream): libiscsi's ExtendedCopy.DescrType expects it refused.
pub const IMPLEMENTED_DESCRIPTORS: &[u8] = &[
    0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0f, 0x10, 0x14,
    0xe4,
];
/// Bytes a held list may keep for RECEIVE COPY DATA (segment 0Dh), in total.
pub const HELD_DATA_LIMIT: u32 = 1 << 20;
/// CSCD ID 0xFFFF: the logical unit that received the EXTENDED COPY.
pub const CSCD_ID_RECEIVING_LU: u16 = 0xffff;

/// An EXTENDED COPY(LID1) whose parameter list parsed: what the copy manager runs.
#[derive(Debug)]
pub struct ExtendedCopy<'a> {
    /// The LU that received the command (CSCD ID FFFFh).
    pub lu: &'a LogicalUnit,
    pub nexus: &'a Nexus,
    pub list: lid1::CopyList,
    /// Raised when the command is aborted (ABORT TASK, LU reset, session loss).
    pub abort: &'a AtomicBool,
}

/// RECEIVE COPY RESULTS(LID1) service actions (SPC-4 6.22), as the CDB parser
/// produced them. List IDs are 32 bits wide for every copy the manager keeps; LID1
/// CDBs carry 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveCopy {
    /// 00h: COPY STATUS.
    Status { list_id: u32 },
    /// 01h: RECEIVE DATA (held by segment 0Dh).
    Data { list_id: u32 },
    /// 03h: OPERATING PARAMETERS.
    OperatingParameters,
    /// 04h: FAILED SEGMENT DETAILS.
    FailureDetails { list_id: u32 },
    /// 05h: RECEIVE COPY STATUS(LID4).
    StatusLid4 { list_id: u32 },
    /// 07h: RECEIVE ROD TOKEN INFORMATION.
    RodTokenInfo { list_id: u32 },
    /// 08h: REPORT ALL ROD TOKENS.
    AllRodTokens,
}

/// A POPULATE TOKEN whose parameter list parsed against the receiving LU.
#[derive(Debug)]
pub struct PopulateToken<'a> {
    pub lu: &'a LogicalUnit,
    pub nexus: &'a Nexus,
    pub list_id: u32,
    pub params: rod::PopulateToken,
    pub abort: &'a AtomicBool,
}

/// A WRITE USING TOKEN whose parameter list parsed against the receiving LU.
#[derive(Debug)]
pub struct WriteUsingToken<'a> {
    pub lu: &'a LogicalUnit,
    pub nexus: &'a Nexus,
    pub list_id: u32,
    pub params: rod::WriteUsingToken,
    pub abort: &'a AtomicBool,
}

/// The daemon's copy manager: resolves CSCDs and ROD tokens through the nexus's
/// access rights and moves the data. Called on a thread that may block.
pub trait CopyManager: Send + Sync + std::fmt::Debug {
    fn extended_copy(&self, req: ExtendedCopy<'_>) -> Result<(), Sense>;

    fn populate_token(&self, req: PopulateToken<'_>) -> Result<(), Sense>;

    fn write_using_token(&self, req: WriteUsingToken<'_>) -> Result<(), Sense>;

    /// COPY OPERATION ABORT (SPC-4 6.3.2): stops the copy `list_id` that `nexus`
    /// started through `lu`.
    fn copy_operation_abort(
        &self,
        lu: &LogicalUnit,
        nexus: &Nexus,
        list_id: u32,
    ) -> Result<(), Sense>;

    /// RECEIVE COPY RESULTS / THIRD PARTY COPY IN; `alloc` is the CDB's
    /// allocation length (RECEIVE ROD TOKEN INFORMATION with 0 discards the token).
    fn receive_copy_results(
        &self,
        lu: &LogicalUnit,
        nexus: &Nexus,
        req: ReceiveCopy,
        alloc: u32,
    ) -> Result<Vec<u8>, Sense>;
}

/// DATA SEGMENT GRANULARITY, as a power of two: segment 0Ah moves any byte count
/// (within MAXIMUM SEGMENT LENGTH) at any byte offset, so the smallest unit the copy
/// manager permits is one byte (SPC-4 6.4.4.3: the amount of data in a segment shall
/// be a multiple of it).
pub const DATA_SEGMENT_GRANULARITY_LOG2: u8 = 0;
/// HELD DATA GRANULARITY, as a power of two: segment 0Dh holds whole source blocks,
/// and every block size oxtgt offers is a multiple of 512.
pub const HELD_DATA_GRANULARITY_LOG2: u8 = 9;

/// The third-party copy commands and service actions the device server implements,
/// taken from the CDB table (opcode, SAs), in opcode order.
pub fn supported_commands() -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for c in crate::cdb::table(crate::cdb::DeviceType::Block)
        .iter()
        .filter(|c| matches!(c.opcode, 0x83 | 0x84))
    {
        let sa = c.service_action.unwrap_or(0);
        match out.last_mut() {
            Some((op, sas)) if *op == c.opcode => sas.push(sa),
            _ => out.push((c.opcode, vec![sa])),
        }
    }
    out
}

/// RECEIVE COPY OPERATING PARAMETERS data (SPC-4 6.22.4).
pub fn operating_parameters() -> Vec<u8> {
    let mut b = vec![0u8; 44];
    b[4] = 0x01; // SNLID: LIST ID USAGE 11b supported
    b[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    b[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    b[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    b[16..20].copy_from_slice(&MAX_SEGMENT_LENGTH.to_be_bytes());
    b[20..24].copy_from_slice(&MAX_INLINE_DATA_LENGTH.to_be_bytes());
    b[24..28].copy_from_slice(&HELD_DATA_LIMIT.to_be_bytes());
    b[28..32].copy_from_slice(&MAX_STREAM_TRANSFER_BYTES.to_be_bytes());
    b[34..36].copy_from_slice(&MAX_CONCURRENT_COPIES.to_be_bytes());
    b[36] = MAX_CONCURRENT_COPIES.min(255) as u8;
    b[37] = DATA_SEGMENT_GRANULARITY_LOG2;
    b[38] = INLINE_DATA_GRANULARITY_LOG2;
    b[39] = HELD_DATA_GRANULARITY_LOG2;
    b[43] = IMPLEMENTED_DESCRIPTORS.len() as u8;
    b.extend_from_slice(IMPLEMENTED_DESCRIPTORS);
    let avail = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&avail.to_be_bytes());
    b
}

/// Third-party copy descriptor type codes of VPD page 8Fh (SPC-4 7.8.17, Table 623).
pub mod descriptor_type {
    pub const BLOCK_DEVICE_ROD_TOKEN_LIMITS: u16 = 0x0000;
    pub const SUPPORTED_COMMANDS: u16 = 0x0001;
    pub const PARAMETER_DATA: u16 = 0x0004;
    pub const SUPPORTED_DESCRIPTORS: u16 = 0x0008;
    pub const SUPPORTED_CSCD_IDS: u16 = 0x000c;
    pub const ROD_TOKEN_FEATURES: u16 = 0x0106;
    pub const SUPPORTED_ROD_TYPES: u16 = 0x0108;
    pub const STREAM_COPY_OPERATIONS: u16 = 0x9101;
    pub const HELD_DATA: u16 = 0xc001;
    pub const GENERAL_COPY_OPERATIONS: u16 = 0x8001;
}

/// ROD types in Supported ROD Types (0108h): (type, TOKEN_IN, TOKEN_OUT).
/// Point-in-time persistent tokens are made where the backstore can snapshot
/// cheaply, change-vulnerable ones elsewhere; access-upon-reference when asked for;
/// the zero token is accepted, never made.
pub const ROD_TYPES: &[(u32, bool, bool)] = &[
    (rod::rod_type::ACCESS_UPON_REFERENCE, true, true),
    (rod::rod_type::PIT_CHANGE_VULNERABLE, true, true),
    (rod::rod_type::PIT_PERSISTENT, true, true),
    (rod::rod_type::BLOCK_ZERO, true, false),
];

fn tpc_descriptor(out: &mut Vec<u8>, kind: u16, mut body: Vec<u8>) {
    while !(body.len() + 4).is_multiple_of(4) {
        body.push(0);
    }
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
}

/// Third Party Copy VPD page body (SPC-4 7.8.17) for an LU of `block_size`: Block
/// Device ROD Token Limits first (what Windows and ddpt read), then Supported
/// Commands, Parameter Data, Supported Descriptors, Supported CSCD IDs, ROD Token
/// Features, Supported ROD Types and General Copy Operations.
///
/// `snapshots`: whether the LU's backstore offers point-in-time images at all
/// (not block devices); without them persistent tokens are not offered out.
pub fn vpd_page(block_size: u32, snapshots: bool) -> Vec<u8> {
    use descriptor_type as t;
    let mut d = Vec::new();
    // Block Device ROD Token Limits (SBC-3 6.6.5.3): 6 vendor bytes, then the
    // limits, transfer sizes in this LU's logical blocks.
    let bs = u64::from(block_size);
    let mut body = vec![0u8; 32];
    body[6..8].copy_from_slice(&rod::MAX_RANGE_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&rod::MAX_INACTIVITY_TIMEOUT.to_be_bytes());
    body[12..16].copy_from_slice(&rod::DEFAULT_INACTIVITY_TIMEOUT.to_be_bytes());
    body[16..24].copy_from_slice(&(rod::MAX_TOKEN_TRANSFER_BYTES / bs).to_be_bytes());
    body[24..32].copy_from_slice(&(rod::OPTIMAL_TRANSFER_BYTES / bs).to_be_bytes());
    tpc_descriptor(&mut d, t::BLOCK_DEVICE_ROD_TOKEN_LIMITS, body);
    // Supported Commands: list length, then opcode, SA count, SAs (7.8.17.3).
    let mut list = Vec::new();
    for (op, sas) in supported_commands() {
        list.push(op);
        list.push(sas.len() as u8);
        list.extend_from_slice(&sas);
    }
    let mut body = vec![list.len() as u8];
    body.extend_from_slice(&list);
    tpc_descriptor(&mut d, t::SUPPORTED_COMMANDS, body);
    // Parameter Data (7.8.17.4): 4 reserved bytes, then the list limits.
    let mut body = vec![0u8; 28];
    body[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    body[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    body[12..16].copy_from_slice(&MAX_INLINE_DATA_LENGTH.to_be_bytes());
    tpc_descriptor(&mut d, t::PARAMETER_DATA, body);
    // Supported Descriptors (7.8.17.5): list length, then the codes.
    let mut body = vec![IMPLEMENTED_DESCRIPTORS.len() as u8];
    body.extend_from_slice(IMPLEMENTED_DESCRIPTORS);
    tpc_descriptor(&mut d, t::SUPPORTED_DESCRIPTORS, body);
    // Supported CSCD IDs (7.8.17.6).
    let mut body = 2u16.to_be_bytes().to_vec();
    body.extend_from_slice(&CSCD_ID_RECEIVING_LU.to_be_bytes());
    tpc_descriptor(&mut d, t::SUPPORTED_CSCD_IDS, body);
    // ROD Token Features (7.8.17.10): no remote tokens; lifetime bounded only by
    // inactivity; one block ROD device type features descriptor.
    let mut body = vec![0u8; 92];
    body[12..16].copy_from_slice(&1u32.to_be_bytes()); // MINIMUM TOKEN LIFETIME
    body[16..20].copy_from_slice(&u32::MAX.to_be_bytes()); // MAXIMUM TOKEN LIFETIME
    body[20..24].copy_from_slice(&rod::MAX_INACTIVITY_TIMEOUT.to_be_bytes());
    body[42..44].copy_from_slice(&48u16.to_be_bytes());
    let f = &mut body[44..92];
    f[0] = 0x00; // direct access block device
    f[2..4].copy_from_slice(&0x002cu16.to_be_bytes());
    f[6..8].copy_from_slice(&1u16.to_be_bytes()); // OPTIMAL BLOCK ROD LENGTH GRANULARITY
    f[8..16].copy_from_slice(&rod::MAX_TOKEN_TRANSFER_BYTES.to_be_bytes());
    f[16..24].copy_from_slice(&rod::OPTIMAL_TRANSFER_BYTES.to_be_bytes());
    f[24..32].copy_from_slice(&rod::MAX_TOKEN_TRANSFER_BYTES.to_be_bytes());
    f[32..40].copy_from_slice(&rod::OPTIMAL_TRANSFER_BYTES.to_be_bytes());
    tpc_descriptor(&mut d, t::ROD_TOKEN_FEATURES, body);
    // Supported ROD Types (7.8.17.11): 64-byte ROD type descriptors.
    let mut body = vec![0u8; 4];
    body[2..4].copy_from_slice(&((ROD_TYPES.len() * 64) as u16).to_be_bytes());
    for &(kind, token_in, token_out) in ROD_TYPES {
        let token_out = token_out && (snapshots || kind != rod::rod_type::PIT_PERSISTENT);
        let mut r = [0u8; 64];
        r[0..4].copy_from_slice(&kind.to_be_bytes());
        r[4] = u8::from(token_in) << 1 | u8::from(token_out);
        body.extend_from_slice(&r);
    }
    tpc_descriptor(&mut d, t::SUPPORTED_ROD_TYPES, body);
    // General Copy Operations (7.8.17.8).
    let mut body = vec![0u8; 28];
    body[0..4].copy_from_slice(&u32::from(MAX_CONCURRENT_COPIES).to_be_bytes());
    body[4..8].copy_from_slice(&u32::from(MAX_CONCURRENT_COPIES).to_be_bytes());
    body[8..12].copy_from_slice(&MAX_SEGMENT_LENGTH.to_be_bytes());
    body[12] = DATA_SEGMENT_GRANULARITY_LOG2;
    body[13] = INLINE_DATA_GRANULARITY_LOG2;
    tpc_descriptor(&mut d, t::GENERAL_COPY_OPERATIONS, body);
    // Stream Copy Operations (7.8.17.9): MAXIMUM STREAM DEVICE TRANSFER SIZE.
    let mut body = vec![0u8; 12];
    body[0..4].copy_from_slice(&MAX_STREAM_TRANSFER_BYTES.to_be_bytes());
    tpc_descriptor(&mut d, t::STREAM_COPY_OPERATIONS, body);
    // Held Data (7.8.17.12): HELD DATA LIMIT and HELD DATA GRANULARITY, as in
    // RECEIVE COPY OPERATING PARAMETERS.
    let mut body = vec![0u8; 8];
    body[0..4].copy_from_slice(&HELD_DATA_LIMIT.to_be_bytes());
    body[4] = HELD_DATA_GRANULARITY_LOG2;
    tpc_descriptor(&mut d, t::HELD_DATA, body);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpd_descriptors_are_well_formed() {
        let d = vpd_page(512, true);
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < d.len() {
            let kind = u16::from_be_bytes([d[at], d[at + 1]]);
            let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
            assert_eq!((len + 4) % 4, 0, "descriptor {kind:#x} padded");
            kinds.push(kind);
            at += 4 + len;
        }
        assert_eq!(at, d.len());
        assert_eq!(
            kinds,
            vec![0x0000, 0x0001, 0x0004, 0x0008, 0x000c, 0x0106, 0x0108, 0x8001, 0x9101, 0xc001]
        );
        // 0x84 lists SA 00h (what libiscsi's CopyStatus test looks for).
        assert_eq!(
            &d[40..57],
            &[
                16, 0x83, 5, 0x00, 0x01, 0x10, 0x11, 0x1c, 0x84, 7, 0x00, 0x01, 0x03, 0x04, 0x05,
                0x07, 0x08
            ][..]
        );
    }

    /// Persistent tokens are offered out only where the backstore can snapshot.
    #[test]
    fn supported_rod_types_follow_the_backstore() {
        let out_flags = |snapshots: bool| {
            let d = vpd_page(512, snapshots);
            let mut at = 0;
            loop {
                let kind = u16::from_be_bytes([d[at], d[at + 1]]);
                let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
                if kind == descriptor_type::SUPPORTED_ROD_TYPES {
                    let body = &d[at + 4..at + 4 + len];
                    return body[4..]
                        .chunks(64)
                        .map(|r| (u32::from_be_bytes(r[0..4].try_into().unwrap()), r[4] & 3))
                        .collect::<Vec<_>>();
                }
                at += 4 + len;
            }
        };
        assert!(out_flags(true).contains(&(rod::rod_type::PIT_PERSISTENT, 3)));
        assert!(out_flags(false).contains(&(rod::rod_type::PIT_PERSISTENT, 2)));
        assert!(out_flags(false).contains(&(rod::rod_type::PIT_CHANGE_VULNERABLE, 3)));
    }

    #[test]
    fn operating_parameters_match_the_constants() {
        let p = operating_parameters();
        assert_eq!(
            u32::from_be_bytes(p[..4].try_into().unwrap()) as usize,
            p.len() - 4
        );
        assert_eq!(u16::from_be_bytes([p[8], p[9]]), MAX_CSCD_DESCRIPTORS);
        assert_eq!(&p[44..], IMPLEMENTED_DESCRIPTORS);
    }
}
