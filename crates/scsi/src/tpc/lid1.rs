//! EXTENDED COPY parameter lists (SPC-4 6.3, 6.4): the LID1 header (16 bytes, an
//! 8-bit list ID) or the LID4 header (48 bytes, LIST FORMAT 01h, a 32-bit list ID,
//! IMMED), then CSCD descriptors and segment descriptors, the same for both. Parsed
//! and checked whole before any data moves; errors carry a field pointer into the
//! parameter list.

use super::{MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS};
use crate::sense::{Asc, Sense};
use codec::be;

const HEADER: usize = 16;
const LID4_HEADER: usize = 48;
const CSCD_LEN: usize = 32;

/// LIST ID USAGE (SPC-4 Table 102).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: results held for RECEIVE COPY RESULTS; the ID must not be in use.
    Hold,
    /// 10b: nothing held.
    Discard,
    /// 11b: no list ID (the field must be zero).
    None,
}

/// How a CSCD names its logical unit: one VPD 0x83 designation descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designator {
    pub code_set: u8,
    pub association: u8,
    pub kind: u8,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cscd {
    /// 0xE4 identification descriptor of a block (PDT 00h) or stream (01h) device.
    Identification {
        designator: Designator,
        /// PERIPHERAL DEVICE TYPE: 00h block, 01h stream.
        pdt: u8,
        /// PAD (byte 28 bit 2): residue is padded or discarded (SPC-4 Table 116).
        pad: bool,
        /// Stream devices: FIXED (byte 28 bit 0), STREAM BLOCK LENGTH.
        fixed: bool,
        /// DISK BLOCK LENGTH (block) or STREAM BLOCK LENGTH (stream).
        block_len: u32,
    },
}

impl Cscd {
    pub fn pdt(&self) -> u8 {
        let Cscd::Identification { pdt, .. } = self;
        *pdt
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKind {
    /// 0x02: NUMBER OF BLOCKS from source to destination; DC selects whose block
    /// size counts.
    BlockToBlock {
        dc: bool,
        cat: bool,
        blocks: u16,
        src_lba: u64,
        dst_lba: u64,
    },
    /// 0x0A: a byte count with byte offsets into the first blocks.
    BlockToBlockBytes {
        bytes: u32,
        src_lba: u64,
        dst_lba: u64,
        src_offset: u16,
        dst_offset: u16,
    },
    /// 0x07: check the CSCD is there (and ready, with TUR).
    Verify { tur: bool },
    /// 0x14: register a persistent reservation key on the destination.
    RegisterKey { key: u64, sark: u64 },
    /// 0x00: BLOCK DEVICE NUMBER OF BLOCKS from the block source at its LBA, written
    /// to the stream destination at its position in STREAM DEVICE TRANSFER LENGTH
    /// transfers.
    BlockToStream {
        cat: bool,
        stdl: u32,
        blocks: u16,
        lba: u64,
    },
    /// 0x01: read from the stream source in STDL transfers until BLOCK DEVICE
    /// NUMBER OF BLOCKS are written to the block destination at its LBA.
    StreamToBlock {
        cat: bool,
        stdl: u32,
        blocks: u16,
        lba: u64,
    },
    /// 0x08: NUMBER OF BYTES from BLOCK DEVICE BYTE OFFSET into the block at LBA,
    /// written to the stream destination in STDL transfers.
    BlockBytesToStream {
        cat: bool,
        stdl: u32,
        bytes: u32,
        lba: u64,
        offset: u16,
    },
    /// 0x09: read from the stream source until NUMBER OF BYTES are written to the
    /// block destination from BLOCK DEVICE BYTE OFFSET into the block at LBA; the
    /// bytes around them keep their contents.
    StreamToBlockBytes {
        cat: bool,
        stdl: u32,
        bytes: u32,
        lba: u64,
        offset: u16,
    },
    /// 0x04 (`inline`: bytes of the list's inline data) and 0x05 (embedded in the
    /// descriptor): data written to the stream destination.
    DataToStream { cat: bool, stdl: u32, data: Vec<u8> },
    /// 0x06: NUMBER OF BYTES read from the stream source and discarded.
    StreamToDiscard { cat: bool, stdl: u32, bytes: u32 },
    /// 0x10: FILEMARK COUNT filemarks written to the stream destination.
    Filemarks { count: u32 },
}

impl SegmentKind {
    /// Segments that read or write a stream device (type codes 00h, 01h, 04h-06h,
    /// 10h): they run one after another, in order, and carry residue (CAT).
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            SegmentKind::BlockToStream { .. }
                | SegmentKind::StreamToBlock { .. }
                | SegmentKind::BlockBytesToStream { .. }
                | SegmentKind::StreamToBlockBytes { .. }
                | SegmentKind::DataToStream { .. }
                | SegmentKind::StreamToDiscard { .. }
                | SegmentKind::Filemarks { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset of the descriptor in the parameter list (for sense pointers).
    pub offset: usize,
    /// 0Bh, 0Ch, 0Dh, 0Fh: the data processed is also held for RECEIVE COPY DATA.
    pub hold: bool,
    pub src: u16,
    pub dst: u16,
    pub kind: SegmentKind,
}

/// Which EXTENDED COPY a list came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Lid1,
    Lid4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyList {
    pub format: ListFormat,
    /// 8 bits wide in LID1, 32 in LID4.
    pub list_id: u32,
    pub usage: ListIdUsage,
    /// LID4: return GOOD once the copy is accepted and run it in the background.
    pub immed: bool,
    pub cscds: Vec<(usize, Cscd)>,
    pub segments: Vec<Segment>,
}

/// Where a 04h segment's bytes come from: the list's inline data.
const INLINE_GRANULARITY: usize = 4;

fn list_length_error() -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

fn with_pointer(asc: Asc, byte: usize) -> Sense {
    Sense {
        field: Some(crate::sense::FieldPointer {
            in_cdb: false,
            byte: byte.min(usize::from(u16::MAX)) as u16,
            bit: None,
        }),
        ..Sense::illegal(asc)
    }
}

/// What a header says: where the descriptors are and how long their lists are,
/// with the byte of each length field for sense pointers.
struct Header {
    format: ListFormat,
    list_id: u32,
    usage: ListIdUsage,
    immed: bool,
    len: usize,
    cscd_len: (usize, usize),
    seg_len: (usize, usize),
    inline_len: (usize, usize),
}

fn usage_of(byte1: u8) -> Result<ListIdUsage, Sense> {
    match (byte1 >> 3) & 3 {
        0 => Ok(ListIdUsage::Hold),
        2 => Ok(ListIdUsage::Discard),
        3 => Ok(ListIdUsage::None),
        _ => Err(Sense::invalid_param_field(1, Some(3))),
    }
}

/// Parses a non-empty LID1 parameter list (SPC-4 6.3.3).
pub fn parse(p: &[u8]) -> Result<CopyList, Sense> {
    if p.len() < HEADER {
        return Err(list_length_error());
    }
    let usage = usage_of(p[1])?;
    if usage == ListIdUsage::None && p[0] != 0 {
        return Err(Sense::invalid_param_field(0, None));
    }
    descriptors(
        p,
        Header {
            format: ListFormat::Lid1,
            list_id: u32::from(p[0]),
            usage,
            immed: false,
            len: HEADER,
            cscd_len: (usize::from(be::u16(p, 2)), 2),
            seg_len: (be::u32(p, 8) as usize, 8),
            inline_len: (be::u32(p, 12) as usize, 12),
        },
    )
}

/// Parses a non-empty LID4 parameter list (SPC-4 6.4.3): LIST FORMAT 01h; the
/// header CSCD list (bytes 2-3, 16) is not used and ignored.
pub fn parse_lid4(p: &[u8]) -> Result<CopyList, Sense> {
    if p.len() < LID4_HEADER {
        return Err(list_length_error());
    }
    if p[0] != 0x01 {
        return Err(Sense::invalid_param_field(0, None));
    }
    let usage = usage_of(p[1])?;
    let list_id = be::u32(p, 20);
    if usage == ListIdUsage::None && list_id != 0 {
        return Err(Sense::invalid_param_field(20, None));
    }
    descriptors(
        p,
        Header {
            format: ListFormat::Lid4,
            list_id,
            usage,
            immed: p[15] & 0x01 != 0,
            len: LID4_HEADER,
            cscd_len: (usize::from(be::u16(p, 42)), 42),
            seg_len: (usize::from(be::u16(p, 44)), 44),
            inline_len: (usize::from(be::u16(p, 46)), 46),
        },
    )
}

/// The CSCD and segment descriptors after a header, the same in LID1 and LID4.
fn descriptors(p: &[u8], h: Header) -> Result<CopyList, Sense> {
    let ((cscd_len, cscd_at), (seg_len, seg_at), (inline_len, inline_at)) =
        (h.cscd_len, h.seg_len, h.inline_len);
    // Order matters (libiscsi DescrLimits): the total length before the counts.
    if cscd_len + seg_len > MAX_DESCRIPTOR_LIST_LENGTH as usize {
        return Err(list_length_error());
    }
    if cscd_len / CSCD_LEN > usize::from(MAX_CSCD_DESCRIPTORS) {
        return Err(with_pointer(Asc::TOO_MANY_TARGET_DESCRIPTORS, cscd_at));
    }
    if inline_len > super::MAX_INLINE_DATA_LENGTH as usize {
        return Err(with_pointer(Asc::INLINE_DATA_LENGTH_EXCEEDED, inline_at));
    }
    if h.len + cscd_len + seg_len + inline_len > p.len() {
        return Err(list_length_error());
    }
    let usage = h.usage;
    let mut cscds = Vec::new();
    let mut at = h.len;
    let cscd_end = h.len + cscd_len;
    while at < cscd_end {
        if p[at] != 0xe4 {
            return Err(with_pointer(Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE, at));
        }
        if at + CSCD_LEN > cscd_end {
            return Err(list_length_error());
        }
        cscds.push((at, parse_identification(p, at)?));
        at += CSCD_LEN;
    }
    let mut segments = Vec::new();
    let seg_end = cscd_end + seg_len;
    while at < seg_end {
        if segments.len() == usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(with_pointer(Asc::TOO_MANY_SEGMENT_DESCRIPTORS, seg_at));
        }
        if at + 4 > seg_end {
            return Err(list_length_error());
        }
        let code = p[at];
        let desc_len = 4 + usize::from(be::u16(p, at + 2));
        let expected = match code {
            0x02 | 0x0d => 28,
            0x0a => 32,
            0x07 => 12,
            0x14 => 28,
            0x00 | 0x01 | 0x0b | 0x0c => 24,
            0x08 | 0x09 => 28,
            0x04 => 20,
            0x06 | 0x0f => 16,
            0x10 => 12,
            // 05h: 16 bytes, then the embedded data padded to a multiple of 4.
            0x05 if desc_len >= 16 && desc_len.is_multiple_of(4) => desc_len,
            0x05 => 16,
            _ => return Err(with_pointer(Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE, at)),
        };
        if at + expected.max(desc_len) > seg_end {
            return Err(list_length_error());
        }
        if desc_len != expected {
            return Err(Sense::invalid_param_field((at + 2) as u16, None));
        }
        let d = &p[at..at + desc_len];
        let (src, dst, kind) = match code {
            0x02 | 0x0d => (
                be::u16(d, 4),
                be::u16(d, 6),
                SegmentKind::BlockToBlock {
                    dc: d[1] & 0x02 != 0,
                    cat: d[1] & 0x01 != 0,
                    blocks: be::u16(d, 10),
                    src_lba: be::u64(d, 12),
                    dst_lba: be::u64(d, 20),
                },
            ),
            0x0a => (
                be::u16(d, 4),
                be::u16(d, 6),
                SegmentKind::BlockToBlockBytes {
                    bytes: be::u32(d, 8),
                    src_lba: be::u64(d, 12),
                    dst_lba: be::u64(d, 20),
                    src_offset: be::u16(d, 28),
                    dst_offset: be::u16(d, 30),
                },
            ),
            0x07 => (
                be::u16(d, 4),
                be::u16(d, 4),
                SegmentKind::Verify {
                    tur: d[8] & 0x01 != 0,
                },
            ),
            0x08 | 0x09 => {
                let (cat, stdl, bytes, lba, offset) = (
                    d[1] & 0x01 != 0,
                    be::u24(d, 9),
                    be::u32(d, 12),
                    be::u64(d, 16),
                    be::u16(d, 26),
                );
                let kind = if code == 0x08 {
                    SegmentKind::BlockBytesToStream {
                        cat,
                        stdl,
                        bytes,
                        lba,
                        offset,
                    }
                } else {
                    SegmentKind::StreamToBlockBytes {
                        cat,
                        stdl,
                        bytes,
                        lba,
                        offset,
                    }
                };
                (be::u16(d, 4), be::u16(d, 6), kind)
            }
            0x00 | 0x01 | 0x0b | 0x0c => {
                let (cat, stdl, blocks, lba) = (
                    d[1] & 0x01 != 0,
                    be::u24(d, 9),
                    be::u16(d, 14),
                    be::u64(d, 16),
                );
                let kind = if code == 0x00 || code == 0x0b {
                    SegmentKind::BlockToStream {
                        cat,
                        stdl,
                        blocks,
                        lba,
                    }
                } else {
                    SegmentKind::StreamToBlock {
                        cat,
                        stdl,
                        blocks,
                        lba,
                    }
                };
                (be::u16(d, 4), be::u16(d, 6), kind)
            }
            0x04 => {
                let (offset, n) = (be::u32(d, 12) as usize, be::u32(d, 16) as usize);
                if !offset.is_multiple_of(INLINE_GRANULARITY) {
                    return Err(Sense::invalid_param_field((at + 12) as u16, None));
                }
                let inline_at = seg_end;
                let Some(data) = offset
                    .checked_add(n)
                    .filter(|&end| end <= inline_len)
                    .map(|end| p[inline_at + offset..inline_at + end].to_vec())
                else {
                    return Err(with_pointer(Asc::INLINE_DATA_LENGTH_EXCEEDED, at + 16));
                };
                (
                    be::u16(d, 6),
                    be::u16(d, 6),
                    SegmentKind::DataToStream {
                        cat: d[1] & 0x01 != 0,
                        stdl: be::u24(d, 9),
                        data,
                    },
                )
            }
            0x05 => {
                let n = usize::from(be::u16(d, 12));
                if n > desc_len - 16 {
                    return Err(Sense::invalid_param_field((at + 12) as u16, None));
                }
                (
                    be::u16(d, 6),
                    be::u16(d, 6),
                    SegmentKind::DataToStream {
                        cat: d[1] & 0x01 != 0,
                        stdl: be::u24(d, 9),
                        data: d[16..16 + n].to_vec(),
                    },
                )
            }
            0x06 | 0x0f => (
                be::u16(d, 4),
                be::u16(d, 4),
                SegmentKind::StreamToDiscard {
                    cat: d[1] & 0x01 != 0,
                    stdl: be::u24(d, 9),
                    bytes: be::u32(d, 12),
                },
            ),
            0x10 => (
                be::u16(d, 6),
                be::u16(d, 6),
                SegmentKind::Filemarks {
                    count: be::u24(d, 9),
                },
            ),
            0x14 => (
                be::u16(d, 6),
                be::u16(d, 6),
                SegmentKind::RegisterKey {
                    key: be::u64(d, 8),
                    sark: be::u64(d, 16),
                },
            ),
            // The length table above admitted only the codes matched here.
            _ => return Err(with_pointer(Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE, at)),
        };
        // MAXIMUM SEGMENT LENGTH as advertised: only a 0Ah byte count can exceed it
        // (65535 blocks of at most 4096 bytes is the limit itself).
        if let SegmentKind::BlockToBlockBytes { bytes, .. } = kind {
            if bytes > super::MAX_SEGMENT_LENGTH {
                return Err(Sense::invalid_param_field((at + 8) as u16, None));
            }
        }
        segments.push(Segment {
            hold: matches!(code, 0x0b | 0x0c | 0x0d | 0x0f),
            offset: at,
            src,
            dst,
            kind,
        });
        at += desc_len;
    }
    // Held data is retrieved by list ID: only a held list (00b) may ask for it.
    // (Its size against HELD DATA LIMIT is checked once block sizes are known.)
    if usage != ListIdUsage::Hold && segments.iter().any(|s| s.hold) {
        return Err(Sense::invalid_param_field(1, Some(4)));
    }
    // A stream segment's CSCDs must be of the types it moves data between (SPC-4
    // 6.4.6.1): a mismatch is INVALID OPERATION FOR COPY SOURCE OR DESTINATION.
    for s in &segments {
        let (src_pdt, dst_pdt) = match s.kind {
            SegmentKind::BlockToStream { .. } | SegmentKind::BlockBytesToStream { .. } => {
                (Some(0), Some(1))
            }
            SegmentKind::StreamToBlock { .. } | SegmentKind::StreamToBlockBytes { .. } => {
                (Some(1), Some(0))
            }
            SegmentKind::DataToStream { .. } | SegmentKind::Filemarks { .. } => (None, Some(1)),
            SegmentKind::StreamToDiscard { .. } => (Some(1), None),
            _ => (None, None),
        };
        let pdt_of = |id: u16| cscds.get(usize::from(id)).map(|(_, c)| c.pdt());
        let bad = |want: Option<u8>, id: u16| {
            want.is_some_and(|w| {
                id != super::CSCD_ID_RECEIVING_LU && pdt_of(id).is_some_and(|p| p != w)
            })
        };
        if bad(src_pdt, s.src) {
            return Err(with_pointer(Asc::INVALID_OPERATION_FOR_COPY, s.offset + 4));
        }
        if bad(dst_pdt, s.dst) {
            return Err(with_pointer(Asc::INVALID_OPERATION_FOR_COPY, s.offset + 6));
        }
    }
    Ok(CopyList {
        format: h.format,
        list_id: h.list_id,
        usage,
        immed: h.immed,
        cscds,
        segments,
    })
}

fn parse_identification(p: &[u8], at: usize) -> Result<Cscd, Sense> {
    let d = &p[at..at + CSCD_LEN];
    // LU ID TYPE (byte 1, 7:6) is ignored as SPC-4 allows; NUL is obsolete. Block
    // (peripheral type 0) and stream (1) devices are copy targets here.
    let pdt = d[1] & 0x1f;
    if pdt > 1 {
        return Err(with_pointer(
            Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE,
            at + 1,
        ));
    }
    let (pad, fixed) = (d[28] & 0x04 != 0, d[28] & 0x01 != 0);
    let block_len = u32::from_be_bytes([0, d[29], d[30], d[31]]);
    // SPC-4 Table 138: FIXED and STREAM BLOCK LENGTH agree, or the list is invalid.
    if pdt == 1 && fixed != (block_len != 0) {
        return Err(Sense::invalid_param_field((at + 29) as u16, None));
    }
    let len = usize::from(d[7]);
    if len > 20 {
        return Err(Sense::invalid_param_field((at + 7) as u16, None));
    }
    Ok(Cscd::Identification {
        designator: Designator {
            code_set: d[4] & 0x0f,
            association: (d[5] >> 4) & 3,
            kind: d[5] & 0x0f,
            value: d[8..8 + len].to_vec(),
        },
        pdt,
        pad,
        fixed: pdt == 1 && fixed,
        block_len,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A parameter list: `cscds` NAA identification descriptors and `segs` 0x02
    /// segments copying one block from CSCD 0 to CSCD 0.
    pub fn list(usage: u8, cscds: usize, segs: usize) -> Vec<u8> {
        let mut p = vec![0u8; HEADER];
        p[0] = 1;
        p[1] = usage << 3;
        p[2..4].copy_from_slice(&((cscds * 32) as u16).to_be_bytes());
        p[8..12].copy_from_slice(&((segs * 28) as u32).to_be_bytes());
        for i in 0..cscds {
            let mut d = [0u8; 32];
            d[0] = 0xe4;
            d[4] = 0x01;
            d[5] = 0x03;
            d[7] = 16;
            d[8] = 0x60 | i as u8;
            d[30] = 0x02; // 512
            p.extend_from_slice(&d);
        }
        for i in 0..segs {
            let mut d = [0u8; 28];
            d[0] = 0x02;
            d[3] = 0x18;
            d[11] = 1;
            d[19] = i as u8;
            d[27] = 100u8.wrapping_add(i as u8);
            p.extend_from_slice(&d);
        }
        p
    }

    /// The same descriptors behind a LID4 header (48 bytes).
    fn lid4(list: &[u8], list_id: u32, immed: bool) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x01;
        p[1] = list[1];
        p[15] = u8::from(immed);
        p[20..24].copy_from_slice(&list_id.to_be_bytes());
        p[42..44].copy_from_slice(&list[2..4]);
        p[44..46].copy_from_slice(
            &(u32::from_be_bytes(list[8..12].try_into().unwrap()) as u16).to_be_bytes(),
        );
        p.extend_from_slice(&list[16..]);
        p
    }

    #[test]
    fn lid4_header_at_its_offsets_with_the_lid1_descriptors() {
        let one = list(0, 2, 3);
        let l1 = parse(&one).unwrap();
        let l4 = parse_lid4(&lid4(&one, 0xdead_beef, true)).unwrap();
        assert_eq!(
            (l4.format, l4.list_id, l4.immed),
            (ListFormat::Lid4, 0xdead_beef, true)
        );
        assert_eq!(l4.usage, l1.usage);
        // Descriptor offsets move with the header: 48 instead of 16.
        assert_eq!(l4.cscds[0].0, l1.cscds[0].0 + 32);
        assert_eq!(l4.segments.len(), 3);
        assert_eq!(l4.segments[0].kind, l1.segments[0].kind);
        // LIST FORMAT must be 01h; pointers name the LID4 fields.
        let mut bad = lid4(&one, 1, false);
        bad[0] = 0;
        assert_eq!(parse_lid4(&bad).unwrap_err().field.unwrap().byte, 0);
        let many = lid4(&list(0, 65, 1), 1, false);
        let e = parse_lid4(&many).unwrap_err();
        assert_eq!(
            (e.asc, e.field.unwrap().byte),
            (Asc::TOO_MANY_TARGET_DESCRIPTORS, 42)
        );
        let none = {
            let mut l = list(0, 1, 1);
            l[1] = 3 << 3;
            lid4(&l, 5, false)
        };
        assert_eq!(parse_lid4(&none).unwrap_err().field.unwrap().byte, 20);
        assert_eq!(
            parse_lid4(&one[..47]).unwrap_err().asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
    }

    #[test]
    fn parses_cscds_and_segments() {
        let l = parse(&list(0, 2, 3)).unwrap();
        assert_eq!((l.list_id, l.usage), (1, ListIdUsage::Hold));
        assert_eq!(l.cscds.len(), 2);
        let Cscd::Identification {
            designator,
            block_len,
            ..
        } = &l.cscds[1].1;
        assert_eq!(
            (designator.kind, designator.value.len(), *block_len),
            (3, 16, 512)
        );
        assert_eq!(l.segments[2].offset, 16 + 64 + 56);
        assert_eq!(
            l.segments[2].kind,
            SegmentKind::BlockToBlock {
                dc: false,
                cat: false,
                blocks: 1,
                src_lba: 2,
                dst_lba: 102
            }
        );
    }

    /// VPD 8Fh and RECEIVE COPY OPERATING PARAMETERS list
    /// `crate::tpc::IMPLEMENTED_DESCRIPTORS`: exactly the codes this parser accepts.
    #[test]
    fn implemented_descriptors_are_exactly_what_parses() {
        let mut accepted = Vec::new();
        // Segment descriptor codes 00h-BFh, each tried at every length any
        // implemented segment has, between a disk (CSCD 0) and a tape (CSCD 1)
        // either way.
        for code in 0u8..=0xbf {
            let ok = [12usize, 16, 20, 24, 28, 32].iter().any(|&len| {
                [(0u8, 0u8), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .any(|&(src, dst)| {
                        let mut p = list(0, 2, 0);
                        p[HEADER + 32 + 1] = 0x01; // the second CSCD is a tape,
                        p[HEADER + 32 + 30] = 0; // variable blocks
                        let mut d = vec![0u8; len];
                        d[0] = code;
                        d[2..4].copy_from_slice(&((len - 4) as u16).to_be_bytes());
                        d[5] = src;
                        d[7] = dst;
                        p[8..12].copy_from_slice(&(len as u32).to_be_bytes());
                        p.extend_from_slice(&d);
                        match parse(&p) {
                            Ok(_) => true,
                            Err(e) => {
                                assert_ne!(e.asc, Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE);
                                false
                            }
                        }
                    })
            });
            if ok {
                accepted.push(code);
            }
        }
        // CSCD descriptor codes C0h-FFh.
        for code in 0xc0u8..=0xff {
            let mut p = list(0, 1, 0);
            p[HEADER] = code;
            if parse(&p).is_ok() {
                accepted.push(code);
            }
        }
        assert_eq!(accepted, crate::tpc::IMPLEMENTED_DESCRIPTORS);
    }

    /// Stream segments: their fields, the CSCD types they need, and what sg_xcopy
    /// and ddpt send (DESCRIPTOR LENGTH 0 for anything but 02h), which must not
    /// parse into a copy of nothing.
    #[test]
    fn stream_segments_and_their_cscd_checks() {
        let tape_list = |segs: &[Vec<u8>], inline: &[u8]| {
            let mut p = list(0, 2, 0);
            p[HEADER + 32 + 1] = 0x01;
            p[HEADER + 32 + 30] = 0;
            let s: Vec<u8> = segs.concat();
            p[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
            p[12..16].copy_from_slice(&(inline.len() as u32).to_be_bytes());
            p.extend_from_slice(&s);
            p.extend_from_slice(inline);
            p
        };
        let mut d = vec![0u8; 24];
        d[0] = 0x00;
        d[1] = 0x01; // CAT
        d[3] = 0x14;
        d[7] = 1;
        d[9..12].copy_from_slice(&[0, 0x40, 0]); // STDL 16384
        d[14..16].copy_from_slice(&8u16.to_be_bytes());
        d[16..24].copy_from_slice(&77u64.to_be_bytes());
        let l = parse(&tape_list(&[d.clone()], &[])).unwrap();
        assert_eq!(
            l.segments[0].kind,
            SegmentKind::BlockToStream {
                cat: true,
                stdl: 16384,
                blocks: 8,
                lba: 77
            }
        );
        // The tape as the source of a block→stream segment: 26h/0Ch at the ID.
        let mut wrong = d.clone();
        wrong[5] = 1;
        let e = parse(&tape_list(&[wrong], &[])).unwrap_err();
        assert_eq!(
            (e.asc, e.field.unwrap().byte as usize),
            (Asc::INVALID_OPERATION_FOR_COPY, HEADER + 64 + 4)
        );
        // sg_xcopy's 00h: DESCRIPTOR LENGTH 0.
        let mut empty = vec![0u8; 4];
        empty[0] = 0x00;
        let e = parse(&tape_list(&[empty], &[])).unwrap_err();
        assert_ne!(e.asc, Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE);
        // 04h: inline bytes by offset and count; beyond the inline data 26h/0Bh.
        let mut i = vec![0u8; 20];
        i[0] = 0x04;
        i[3] = 0x10;
        i[7] = 1;
        i[11] = 0x80; // STDL 128
        i[15] = 4; // offset 4
        i[19] = 6; // 6 bytes
        let l = parse(&tape_list(&[i.clone()], b"....HEADER..")).unwrap();
        let SegmentKind::DataToStream { data, .. } = &l.segments[0].kind else {
            panic!("{:?}", l.segments[0].kind)
        };
        assert_eq!(data, b"HEADER");
        let e = parse(&tape_list(&[i], b"....HEAD")).unwrap_err();
        assert_eq!(e.asc, Asc::INLINE_DATA_LENGTH_EXCEEDED);
        // A tape CSCD whose FIXED and block length disagree (Table 138).
        let mut p = tape_list(&[], &[]);
        p[HEADER + 32 + 30] = 2; // 512 with FIXED 0
        let e = parse(&p).unwrap_err();
        assert_eq!(
            (e.asc, e.field.unwrap().byte as usize),
            (Asc::INVALID_FIELD_IN_PARAMETER_LIST, HEADER + 32 + 29)
        );
    }

    #[test]
    fn limits_in_the_order_clients_expect() {
        let asc = |p: &[u8]| parse(p).unwrap_err().asc;
        assert_eq!(asc(&list(0, 65, 1)), Asc::TOO_MANY_TARGET_DESCRIPTORS);
        assert_eq!(asc(&list(0, 1, 65)), Asc::TOO_MANY_SEGMENT_DESCRIPTORS);
        // Too long overall and too many of both: the length wins.
        assert_eq!(asc(&list(0, 65, 300)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // Truncated inside a descriptor.
        let full = list(0, 1, 1);
        assert_eq!(asc(&full[..16 + 31]), Asc::PARAMETER_LIST_LENGTH_ERROR);
        assert_eq!(
            asc(&full[..full.len() - 1]),
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
        // A 0Ah byte count above MAXIMUM SEGMENT LENGTH.
        let mut long = list(0, 1, 0);
        let mut d = [0u8; 32];
        d[0] = 0x0a;
        d[3] = 0x1c;
        d[8..12].copy_from_slice(&(crate::tpc::MAX_SEGMENT_LENGTH + 1).to_be_bytes());
        long.extend_from_slice(&d);
        long[8..12].copy_from_slice(&32u32.to_be_bytes());
        let e = parse(&long).unwrap_err();
        assert_eq!(
            (e.asc, e.field.unwrap().byte),
            (Asc::INVALID_FIELD_IN_PARAMETER_LIST, 16 + 32 + 8)
        );
        // Unsupported descriptor types.
        let mut fc = full.clone();
        fc[16] = 0xe0;
        assert_eq!(asc(&fc), Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE);
        // 03h stream→stream is not offered (libiscsi ExtendedCopy.DescrType).
        let mut stream = full.clone();
        stream[48] = 0x03;
        assert_eq!(asc(&stream), Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE);
        // Usage 11b needs list ID 0; 01b is reserved.
        assert_eq!(parse(&list(3, 1, 1)).unwrap_err().field.unwrap().byte, 0);
        assert!(parse(&list(1, 1, 1)).is_err());
    }

    proptest! {
        /// Any mutation of a valid list's length fields or bytes parses or fails
        /// with a sense, never panics, and a success never indexes past the data.
        #[test]
        fn mutated_lists_never_panic(
            cscds in 0usize..4, segs in 0usize..4,
            edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            cut in 0usize..200,
        ) {
            let mut p = list(0, cscds, segs);
            for (at, v) in edits {
                if let Some(b) = p.get_mut(at) { *b = v; }
            }
            p.truncate(cut.max(1).min(p.len()));
            if let Ok(l) = parse(&p) {
                for s in &l.segments { prop_assert!(s.offset < p.len()); }
                prop_assert!(l.cscds.len() <= MAX_CSCD_DESCRIPTORS as usize);
            }
        }

        /// Every field of every segment type round-trips: a list built from random
        /// field values parses back to exactly those values, at the right offsets.
        #[test]
        fn segment_fields_round_trip(
            segs in proptest::collection::vec(
                (0u8..4, any::<u16>(), any::<u16>(), any::<u32>(), any::<u64>(), any::<u64>(), any::<u16>(), any::<u16>(), any::<bool>(), any::<bool>()),
                1..8,
            ),
        ) {
            let mut p = list(2, 1, 0);
            let mut want = Vec::new();
            for (kind, src, dst, count, a, b, so, d_o, f1, f2) in segs {
                let at = p.len();
                let (bytes, k) = match kind {
                    0 => {
                        let mut d = vec![0u8; 28];
                        d[0] = 0x02;
                        d[1] = (u8::from(f1) << 1) | u8::from(f2);
                        d[3] = 0x18;
                        d[4..6].copy_from_slice(&src.to_be_bytes());
                        d[6..8].copy_from_slice(&dst.to_be_bytes());
                        d[10..12].copy_from_slice(&(count as u16).to_be_bytes());
                        d[12..20].copy_from_slice(&a.to_be_bytes());
                        d[20..28].copy_from_slice(&b.to_be_bytes());
                        (d, (src, dst, SegmentKind::BlockToBlock { dc: f1, cat: f2, blocks: count as u16, src_lba: a, dst_lba: b }))
                    }
                    1 => {
                        // Byte counts within MAXIMUM SEGMENT LENGTH (above it is an error).
                        let count = count % (crate::tpc::MAX_SEGMENT_LENGTH + 1);
                        let mut d = vec![0u8; 32];
                        d[0] = 0x0a;
                        d[3] = 0x1c;
                        d[4..6].copy_from_slice(&src.to_be_bytes());
                        d[6..8].copy_from_slice(&dst.to_be_bytes());
                        d[8..12].copy_from_slice(&count.to_be_bytes());
                        d[12..20].copy_from_slice(&a.to_be_bytes());
                        d[20..28].copy_from_slice(&b.to_be_bytes());
                        d[28..30].copy_from_slice(&so.to_be_bytes());
                        d[30..32].copy_from_slice(&d_o.to_be_bytes());
                        (d, (src, dst, SegmentKind::BlockToBlockBytes { bytes: count, src_lba: a, dst_lba: b, src_offset: so, dst_offset: d_o }))
                    }
                    2 => {
                        let mut d = vec![0u8; 12];
                        d[0] = 0x07;
                        d[3] = 0x08;
                        d[4..6].copy_from_slice(&src.to_be_bytes());
                        d[8] = u8::from(f1);
                        (d, (src, src, SegmentKind::Verify { tur: f1 }))
                    }
                    _ => {
                        let mut d = vec![0u8; 28];
                        d[0] = 0x14;
                        d[3] = 0x18;
                        d[6..8].copy_from_slice(&dst.to_be_bytes());
                        d[8..16].copy_from_slice(&a.to_be_bytes());
                        d[16..24].copy_from_slice(&b.to_be_bytes());
                        (d, (dst, dst, SegmentKind::RegisterKey { key: a, sark: b }))
                    }
                };
                p.extend_from_slice(&bytes);
                want.push((at, k));
            }
            let seg_len = (p.len() - 16 - 32) as u32;
            p[8..12].copy_from_slice(&seg_len.to_be_bytes());
            let l = parse(&p).unwrap();
            prop_assert_eq!(l.segments.len(), want.len());
            for (s, (at, (src, dst, kind))) in l.segments.iter().zip(want) {
                prop_assert_eq!(s.offset, at);
                prop_assert_eq!((s.src, s.dst), (src, dst));
                prop_assert_eq!(&s.kind, &kind);
            }
        }

        /// The header's three lengths against a model: exactly when the descriptors
        /// they announce fit the data and the limits does the list parse.
        #[test]
        fn header_lengths_match_the_model(cscds in 0usize..70, segs in 0usize..70, short in 0usize..3) {
            let p = list(0, cscds, segs);
            let p = &p[..p.len() - short.min(p.len() - 16)];
            let fits = short == 0 || cscds + segs == 0;
            let ok = cscds * 32 + segs * 28 <= 8192 && cscds <= 64 && segs <= 64 && fits;
            prop_assert_eq!(parse(p).is_ok(), ok);
        }
    }
}
