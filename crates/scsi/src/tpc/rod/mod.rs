//! Token-based copy offload (SBC-3 5.9, 5.36; SPC-4 6.3, 6.4): the POPULATE TOKEN and
//! WRITE USING TOKEN parameter lists, the 512-byte ROD token, and the limits the
//! device server advertises for them (VPD 8Fh Block Device ROD Token Limits, ROD
//! Token Features, Supported ROD Types). Every limit here is the one the parsers
//! below enforce.
//!
//! Byte layouts follow the research notes in `shared/guide/ROD-TOKENS.md` (sources:
//! FreeBSD CTL, Microsoft's public structs, QNAP's SBC-3 quotes); checks come in the
//! order clients expect (lengths, token, then ranges).

use codec::be;

use crate::sense::{Asc, Sense, SenseKey};

/// Length of every ROD token.
pub const TOKEN_LEN: usize = 512;
/// ROD TOKEN LENGTH field value: the bytes after byte 7.
pub const TOKEN_LENGTH_FIELD: u16 = (TOKEN_LEN - 8) as u16;
/// Most block device range descriptors in one PT or WUT (Windows sends up to 64).
pub const MAX_RANGE_DESCRIPTORS: u16 = 64;
/// Longest inactivity timeout a client may ask for, in seconds.
pub const MAX_INACTIVITY_TIMEOUT: u32 = 600;
/// The inactivity timeout used when a POPULATE TOKEN asks for 0.
pub const DEFAULT_INACTIVITY_TIMEOUT: u32 = 60;
/// Most bytes one POPULATE TOKEN may represent and one WRITE USING TOKEN may
/// write: small enough that the slowest copy path finishes well inside the 4
/// seconds Windows allows a synchronous offload command (bench/RESULTS.md).
pub const MAX_TOKEN_TRANSFER_BYTES: u64 = 256 << 20;
/// What a client should ask for per command: Windows splits copies by it.
pub const OPTIMAL_TRANSFER_BYTES: u64 = 64 << 20;
/// Shortest POPULATE TOKEN parameter list: header and one range descriptor.
pub const PT_MIN_LEN: usize = 32;
/// Shortest WRITE USING TOKEN parameter list: header, token and one range.
pub const WUT_MIN_LEN: usize = 552;

/// ROD types (SPC-4 Table 124, names from sg3_utils and ddpt).
pub mod rod_type {
    pub const ACCESS_UPON_REFERENCE: u32 = 0x0001_0000;
    pub const PIT_DEFAULT: u32 = 0x0080_0000;
    pub const PIT_CHANGE_VULNERABLE: u32 = 0x0080_0001;
    pub const PIT_PERSISTENT: u32 = 0x0080_0002;
    pub const PIT_ANY: u32 = 0x0080_ffff;
    /// The well-known block device zero token: writes zeros, never produced.
    pub const BLOCK_ZERO: u32 = 0xffff_0001;
}

/// Token sense answers (SPC-4 Table 50, 23h/xxh).
pub mod token_asc {
    use crate::sense::Asc;
    pub const UNSUPPORTED_TOKEN_TYPE: Asc = Asc(0x2301);
    pub const TOKEN_UNKNOWN: Asc = Asc(0x2304);
    pub const TOKEN_CORRUPT: Asc = Asc(0x2305);
    pub const TOKEN_REVOKED: Asc = Asc(0x2306);
    pub const TOKEN_EXPIRED: Asc = Asc(0x2307);
    pub const TOKEN_CANCELLED: Asc = Asc(0x2308);
    pub const TOKEN_DELETED: Asc = Asc(0x2309);
    pub const INVALID_TOKEN_LENGTH: Asc = Asc(0x230a);
    pub const COPY_TARGET_DEVICE_DATA_UNDERRUN: Asc = Asc(0x0d04);
    pub const INSUFFICIENT_RESOURCES_TO_CREATE_ROD: Asc = Asc(0x550c);
    pub const INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN: Asc = Asc(0x550d);
}

/// One block device range descriptor (SBC-3 5.36.3): 16 bytes, the same in PT and
/// WUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub lba: u64,
    pub blocks: u32,
}

/// A POPULATE TOKEN parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopulateToken {
    pub immed: bool,
    /// The ROD type asked for (RTV set), or the copy manager's choice.
    pub rod_type: Option<u32>,
    /// Seconds; 0 means [`DEFAULT_INACTIVITY_TIMEOUT`].
    pub inactivity_timeout: u32,
    pub ranges: Vec<BlockRange>,
}

/// A WRITE USING TOKEN parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteUsingToken {
    pub immed: bool,
    /// Delete the token once this command is done with it.
    pub del_tkn: bool,
    /// Where in the ROD to start, in the destination's logical blocks.
    pub offset_into_rod: u64,
    pub token: Box<[u8; TOKEN_LEN]>,
    pub ranges: Vec<BlockRange>,
}

/// The LU a range list is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RangeLimits {
    /// Capacity in logical blocks.
    pub capacity: u64,
    pub block_size: u32,
}

impl RangeLimits {
    /// [`MAX_TOKEN_TRANSFER_BYTES`] in this LU's blocks.
    pub fn max_blocks(&self) -> u64 {
        MAX_TOKEN_TRANSFER_BYTES / u64::from(self.block_size)
    }
}

fn ifp(byte: usize) -> Sense {
    Sense::invalid_param_field(byte as u16, None)
}

/// The DATA LENGTH at bytes 0-1 (n-1) against the list actually sent.
fn data_length(p: &[u8], min: usize) -> Result<usize, Sense> {
    let len = usize::from(be::u16(p, 0)) + 2;
    if len < min {
        return Err(ifp(0));
    }
    if len > p.len() {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    Ok(len)
}

/// The range descriptors at `at` (list length at `len_at`), checked: the length a
/// multiple of 16 inside the data, at most [`MAX_RANGE_DESCRIPTORS`], no two
/// non-empty ranges overlapping, every range inside the LU, the total within
/// [`MAX_TOKEN_TRANSFER_BYTES`]. Zero-block ranges are accepted and move nothing.
fn ranges(
    p: &[u8],
    len_at: usize,
    at: usize,
    end: usize,
    lu: RangeLimits,
) -> Result<Vec<BlockRange>, Sense> {
    let list_len = usize::from(be::u16(p, len_at));
    if list_len == 0 || !list_len.is_multiple_of(16) || at + list_len > end {
        return Err(ifp(len_at));
    }
    if list_len / 16 > usize::from(MAX_RANGE_DESCRIPTORS) {
        return Err(Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS));
    }
    let ranges: Vec<BlockRange> = p[at..at + list_len]
        .chunks_exact(16)
        .map(|d| BlockRange {
            lba: be::u64(d, 0),
            blocks: be::u32(d, 8),
        })
        .collect();
    let mut total = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        let end = r.lba.checked_add(u64::from(r.blocks));
        if end.is_none_or(|e| e > lu.capacity) {
            let mut s = Sense::illegal(Asc::LBA_OUT_OF_RANGE);
            s.information = Some(r.lba);
            return Err(s);
        }
        total += u64::from(r.blocks);
        if r.blocks == 0 {
            continue;
        }
        let overlaps = ranges[..i].iter().any(|o| {
            o.blocks > 0
                && o.lba < r.lba + u64::from(r.blocks)
                && r.lba < o.lba + u64::from(o.blocks)
        });
        if overlaps {
            return Err(Sense::illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST));
        }
    }
    if total > lu.max_blocks() {
        return Err(ifp(len_at));
    }
    Ok(ranges)
}

impl PopulateToken {
    /// Parses a POPULATE TOKEN parameter list (SBC-3 5.9.2) for an LU.
    pub fn parse(p: &[u8], lu: RangeLimits) -> Result<Self, Sense> {
        if p.len() < 16 {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let end = data_length(p, PT_MIN_LEN)?;
        let inactivity_timeout = be::u32(p, 4);
        let rtv = p[2] & 0x02 != 0;
        let rod_type = rtv.then(|| be::u32(p, 8));
        let ranges = ranges(p, 14, 16, end, lu)?;
        if inactivity_timeout > MAX_INACTIVITY_TIMEOUT {
            return Err(ifp(4));
        }
        if let Some(t) = rod_type {
            use self::rod_type as r;
            if !matches!(
                t,
                r::ACCESS_UPON_REFERENCE
                    | r::PIT_DEFAULT
                    | r::PIT_CHANGE_VULNERABLE
                    | r::PIT_PERSISTENT
                    | r::PIT_ANY
            ) {
                return Err(ifp(8));
            }
        }
        Ok(Self {
            immed: p[2] & 0x01 != 0,
            rod_type,
            inactivity_timeout,
            ranges,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; 16];
        p[2] = u8::from(self.immed) | if self.rod_type.is_some() { 0x02 } else { 0 };
        p[4..8].copy_from_slice(&self.inactivity_timeout.to_be_bytes());
        p[8..12].copy_from_slice(&self.rod_type.unwrap_or(0).to_be_bytes());
        p[14..16].copy_from_slice(&((self.ranges.len() * 16) as u16).to_be_bytes());
        encode_ranges(&mut p, &self.ranges);
        let n = (p.len() - 2) as u16;
        p[0..2].copy_from_slice(&n.to_be_bytes());
        p
    }
}

fn encode_ranges(p: &mut Vec<u8>, ranges: &[BlockRange]) {
    for r in ranges {
        p.extend_from_slice(&r.lba.to_be_bytes());
        p.extend_from_slice(&r.blocks.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
}

impl WriteUsingToken {
    /// Parses a WRITE USING TOKEN parameter list (SBC-3 5.36.2) for an LU: lengths,
    /// then the token's length and type, then the ranges.
    pub fn parse(p: &[u8], lu: RangeLimits) -> Result<Self, Sense> {
        if p.len() < WUT_MIN_LEN {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let end = data_length(p, WUT_MIN_LEN)?;
        let mut token = Box::new([0u8; TOKEN_LEN]);
        token.copy_from_slice(&p[16..16 + TOKEN_LEN]);
        check_token(&token[..])?;
        let ranges = ranges(p, 534, 536, end, lu)?;
        Ok(Self {
            immed: p[2] & 0x01 != 0,
            del_tkn: p[2] & 0x02 != 0,
            offset_into_rod: be::u64(p, 8),
            token,
            ranges,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; 536];
        p[2] = u8::from(self.immed) | if self.del_tkn { 0x02 } else { 0 };
        p[8..16].copy_from_slice(&self.offset_into_rod.to_be_bytes());
        p[16..16 + TOKEN_LEN].copy_from_slice(&self.token[..]);
        p[534..536].copy_from_slice(&((self.ranges.len() * 16) as u16).to_be_bytes());
        encode_ranges(&mut p, &self.ranges);
        let n = (p.len() - 2) as u16;
        p[0..2].copy_from_slice(&n.to_be_bytes());
        p
    }
}

/// A token as presented: ROD TOKEN LENGTH 01F8h (else INVALID TOKEN LENGTH) and a
/// type this copy manager produces or knows (else UNSUPPORTED TOKEN TYPE). Returns
/// the type.
pub fn check_token(t: &[u8]) -> Result<u32, Sense> {
    if t.len() != TOKEN_LEN || be::u16(t, 6) != TOKEN_LENGTH_FIELD {
        return Err(Sense::illegal(token_asc::INVALID_TOKEN_LENGTH));
    }
    let kind = be::u32(t, 0);
    use rod_type as r;
    match kind {
        r::ACCESS_UPON_REFERENCE | r::PIT_CHANGE_VULNERABLE | r::PIT_PERSISTENT | r::BLOCK_ZERO => {
            Ok(kind)
        }
        _ => Err(Sense::illegal(token_asc::UNSUPPORTED_TOKEN_TYPE)),
    }
}

/// What a produced token says about itself in its first 256 bytes; the rest is
/// random and is what makes it unguessable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    pub rod_type: u32,
    /// COPY MANAGER ROD TOKEN IDENTIFIER: unique per token on this server.
    pub id: u64,
    /// The creator LU's NAA designator and block length.
    pub creator_naa: [u8; 16],
    pub block_size: u32,
    pub bytes_represented: u64,
    /// READ CAPACITY(16) bits of the creator: LBPPBE, LBPME, LBPRZ.
    pub lbppbe: u8,
    pub thin: bool,
    /// The target the token was made through (SCSI name string designator), if
    /// its name fits.
    pub target_name: String,
}

impl TokenHeader {
    /// The 512-byte token (SPC-4 6.4.4.3 layout): this header in bytes 0-255, the
    /// caller's random bytes in 256-511.
    pub fn encode(&self, random: &[u8; 256]) -> [u8; TOKEN_LEN] {
        let mut t = [0u8; TOKEN_LEN];
        t[0..4].copy_from_slice(&self.rod_type.to_be_bytes());
        t[6..8].copy_from_slice(&TOKEN_LENGTH_FIELD.to_be_bytes());
        t[8..16].copy_from_slice(&self.id.to_be_bytes());
        // CREATOR LOGICAL UNIT DESCRIPTOR: an identification CSCD (E4h, SPC-4
        // 6.4.5.2) naming the LU by NAA, with its block length.
        let c = &mut t[16..48];
        c[0] = 0xe4;
        c[4] = 0x01; // binary
        c[5] = 0x03; // association: LU; type: NAA
        c[7] = 16;
        c[8..24].copy_from_slice(&self.creator_naa);
        c[29..32].copy_from_slice(&self.block_size.to_be_bytes()[1..]);
        // NUMBER OF BYTES REPRESENTED: a 128-bit field; the value in its low half.
        t[56..64].copy_from_slice(&self.bytes_represented.to_be_bytes());
        // DEVICE TYPE SPECIFIC DATA: READ CAPACITY(16) data from BLOCK LENGTH on.
        t[96..100].copy_from_slice(&self.block_size.to_be_bytes());
        t[101] = self.lbppbe & 0x0f;
        if self.thin {
            t[102] = 0xc0; // LBPME, LBPRZ
        }
        // TARGET DEVICE DESCRIPTOR: SCSI name string, association target device.
        let name = self.target_name.as_bytes();
        let padded = (name.len() + 1).next_multiple_of(4);
        if !name.is_empty() && 4 + padded <= 128 {
            t[128] = 0x03; // UTF-8
            t[129] = 0x20 | 0x08; // association: target device; type: SCSI name
            t[131] = padded as u8;
            t[132..132 + name.len()].copy_from_slice(name);
        }
        t[256..].copy_from_slice(random);
        t
    }

    /// Reads a token's header back (for tests and REPORT ALL ROD TOKENS checks).
    pub fn decode(t: &[u8; TOKEN_LEN]) -> Self {
        let name_len = usize::from(t[131]);
        let target_name = if t[129] & 0x0f == 0x08 && name_len <= 124 {
            let raw = &t[132..132 + name_len];
            String::from_utf8_lossy(raw.split(|&b| b == 0).next().unwrap_or(&[])).into_owned()
        } else {
            String::new()
        };
        let mut creator_naa = [0u8; 16];
        creator_naa.copy_from_slice(&t[24..40]);
        Self {
            rod_type: be::u32(t, 0),
            id: be::u64(t, 8),
            creator_naa,
            block_size: be::u32(t, 96),
            bytes_represented: be::u64(t, 56),
            lbppbe: t[101] & 0x0f,
            thin: t[102] & 0x80 != 0,
            target_name,
        }
    }
}

/// The block device zero token a client builds itself (MS-FSCC ZERO_DATA): type
/// FFFF0001h, the length field, nothing else.
pub fn zero_token() -> [u8; TOKEN_LEN] {
    let mut t = [0u8; TOKEN_LEN];
    t[0..4].copy_from_slice(&rod_type::BLOCK_ZERO.to_be_bytes());
    t[6..8].copy_from_slice(&TOKEN_LENGTH_FIELD.to_be_bytes());
    t
}

/// A token answer: ILLEGAL REQUEST with the 23h code.
pub fn token_error(asc: Asc) -> Sense {
    Sense::new(SenseKey::ILLEGAL_REQUEST, asc)
}

#[cfg(test)]
mod tests;
