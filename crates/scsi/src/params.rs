//! Parameter lists that arrive as Data-Out, parsed into typed values before the
//! command acts on any of them: UNMAP (SBC-4 5.31.2), PERSISTENT RESERVE OUT (SPC-4
//! 6.16.3, 6.16.4) and MODE SELECT (SPC-4 6.11, 7.5). Parsing checks structure
//! (lengths, counts, layout); what the values mean for the LU (ranges, keys, which
//! bits may change) is the executor's. Each type encodes too, so the two are tested
//! as a round trip.

use codec::{Reader, Short, Writer};

use crate::sense::{Asc, Sense};

fn length_error(_: Short) -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

/// One UNMAP block descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmapRange {
    pub lba: u64,
    pub blocks: u32,
}

/// The UNMAP parameter list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnmapList {
    pub ranges: Vec<UnmapRange>,
}

impl UnmapList {
    /// Parses a non-empty list. UNMAP DATA LENGTH and UNMAP BLOCK DESCRIPTOR DATA
    /// LENGTH must fit in what was sent; a descriptor length that is not a multiple
    /// of 16 uses the whole descriptors (SBC-4 5.31.2); more than `max_descriptors`
    /// is INVALID FIELD IN PARAMETER LIST at byte 2.
    pub fn parse(params: &[u8], max_descriptors: usize) -> Result<Self, Sense> {
        let mut r = Reader::new(params);
        let data_len = usize::from(r.u16().map_err(length_error)?);
        let desc_len = usize::from(r.u16().map_err(length_error)?);
        r.skip(4).map_err(length_error)?;
        if data_len + 2 > params.len() || desc_len + 8 > params.len() {
            return Err(length_error(Short {
                at: 0,
                wanted: data_len.max(desc_len),
            }));
        }
        let count = desc_len / 16;
        if count > max_descriptors {
            return Err(Sense::invalid_param_field(2, None));
        }
        let mut ranges = Vec::with_capacity(count);
        for _ in 0..count {
            let lba = r.u64().map_err(length_error)?;
            let blocks = r.u32().map_err(length_error)?;
            r.skip(4).map_err(length_error)?;
            ranges.push(UnmapRange { lba, blocks });
        }
        Ok(Self { ranges })
    }

    pub fn encode(&self) -> Vec<u8> {
        let n = self.ranges.len() * 16;
        let mut w = Writer::with_capacity(8 + n);
        w.u16((6 + n) as u16).u16(n as u16).zeros(4);
        for r in &self.ranges {
            w.u64(r.lba).u32(r.blocks).zeros(4);
        }
        w.into_vec()
    }
}

/// PERSISTENT RESERVE OUT parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrOutParams {
    /// The basic 24-byte list of every service action but REGISTER AND MOVE.
    Basic {
        key: u64,
        sark: u64,
        spec_i_pt: bool,
        all_tg_pt: bool,
        aptpl: bool,
    },
    /// REGISTER AND MOVE (SPC-4 6.16.4).
    RegisterAndMove {
        key: u64,
        sark: u64,
        unreg: bool,
        aptpl: bool,
        relative_port: u16,
        /// The TransportID, or `None` when TRANSPORTID PARAMETER DATA LENGTH runs past
        /// the list (reported as a length error once the command gets that far).
        transport_id: Option<Vec<u8>>,
    },
}

impl PrOutParams {
    /// Parses the list of service action `sa` (07h: REGISTER AND MOVE). The basic
    /// list is exactly 24 bytes, longer only with SPEC_I_PT set (then refused by the
    /// executor: SIP_C is 0).
    pub fn parse(sa: u8, params: &[u8]) -> Result<Self, Sense> {
        let mut r = Reader::new(params);
        let key = r.u64().map_err(length_error)?;
        let sark = r.u64().map_err(length_error)?;
        if sa == 7 {
            r.skip(1).map_err(length_error)?;
            let flags = r.u8().map_err(length_error)?;
            let relative_port = r.u16().map_err(length_error)?;
            let tid_len = r.u32().map_err(length_error)? as usize;
            let transport_id = r.take(tid_len).ok().map(<[u8]>::to_vec);
            return Ok(Self::RegisterAndMove {
                key,
                sark,
                unreg: flags & 0x02 != 0,
                aptpl: flags & 0x01 != 0,
                relative_port,
                transport_id,
            });
        }
        r.skip(4).map_err(length_error)?;
        let flags = r.u8().map_err(length_error)?;
        r.skip(3).map_err(length_error)?;
        let spec_i_pt = flags & 0x08 != 0;
        if !r.is_empty() && !spec_i_pt {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        Ok(Self::Basic {
            key,
            sark,
            spec_i_pt,
            all_tg_pt: flags & 0x04 != 0,
            aptpl: flags & 0x01 != 0,
        })
    }

    pub fn key(&self) -> u64 {
        match *self {
            Self::Basic { key, .. } | Self::RegisterAndMove { key, .. } => key,
        }
    }

    pub fn sark(&self) -> u64 {
        match *self {
            Self::Basic { sark, .. } | Self::RegisterAndMove { sark, .. } => sark,
        }
    }

    pub fn aptpl(&self) -> bool {
        match *self {
            Self::Basic { aptpl, .. } | Self::RegisterAndMove { aptpl, .. } => aptpl,
        }
    }

    /// Where APTPL sits, for a field pointer: (byte, bit).
    pub fn aptpl_field(&self) -> (u16, u8) {
        match self {
            Self::Basic { .. } => (20, 0),
            Self::RegisterAndMove { .. } => (17, 0),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(24);
        match self {
            Self::Basic {
                key,
                sark,
                spec_i_pt,
                all_tg_pt,
                aptpl,
            } => {
                let flags =
                    u8::from(*spec_i_pt) << 3 | u8::from(*all_tg_pt) << 2 | u8::from(*aptpl);
                w.u64(*key).u64(*sark).zeros(4).u8(flags).zeros(3);
            }
            Self::RegisterAndMove {
                key,
                sark,
                unreg,
                aptpl,
                relative_port,
                transport_id,
            } => {
                let flags = u8::from(*unreg) << 1 | u8::from(*aptpl);
                w.u64(*key).u64(*sark).u8(0).u8(flags).u16(*relative_port);
                let tid = transport_id.as_deref().unwrap_or(&[]);
                w.u32(tid.len() as u32).bytes(tid);
            }
        }
        w.into_vec()
    }
}

/// A MODE SELECT block descriptor: only its block length matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDescriptor {
    /// LONGLBA: the 16-byte form (MODE SELECT(10) only).
    pub long: bool,
    pub blocks: u64,
    pub block_len: u32,
    /// Offset of BLOCK LENGTH in the list, for a field pointer.
    pub block_len_at: u16,
}

/// One mode page as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModePage {
    /// Offset of the page in the list, for field pointers.
    pub at: u16,
    /// Byte 0 whole: PS, SPF and the page code.
    pub code_byte: u8,
    /// The page, header included.
    pub bytes: Vec<u8>,
}

impl ModePage {
    pub fn code(&self) -> u8 {
        self.code_byte & 0x3f
    }
    /// SPF: a sub-page format page.
    pub fn spf(&self) -> bool {
        self.code_byte & 0x40 != 0
    }
}

/// A MODE SELECT(6)/(10) parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeSelectList {
    pub ten: bool,
    pub block_descriptor: Option<BlockDescriptor>,
    pub pages: Vec<ModePage>,
}

impl ModeSelectList {
    /// Parses the header, the block descriptor (none, or exactly one of the size
    /// LONGLBA selects) and the pages (page 0 format: 2-byte header; sub-page format
    /// pages are kept whole for the executor to refuse).
    pub fn parse(ten: bool, params: &[u8]) -> Result<Self, Sense> {
        let mut r = Reader::new(params);
        let (long, bd_len) = if ten {
            r.skip(4).map_err(length_error)?;
            let long = r.u8().map_err(length_error)? & 1 != 0;
            r.skip(1).map_err(length_error)?;
            (long, usize::from(r.u16().map_err(length_error)?))
        } else {
            r.skip(3).map_err(length_error)?;
            (false, usize::from(r.u8().map_err(length_error)?))
        };
        let hdr = r.offset();
        let mut bd = r.sub(bd_len).map_err(length_error)?;
        let bd_size = if long { 16 } else { 8 };
        let block_descriptor = match bd_len {
            0 => None,
            n if n == bd_size => {
                let blocks = if long {
                    let b = bd.u64().map_err(length_error)?;
                    bd.skip(4).map_err(length_error)?;
                    b
                } else {
                    u64::from(bd.u32().map_err(length_error)?)
                };
                let block_len_at = if long { hdr + 12 } else { hdr + 5 };
                let block_len = if long {
                    bd.u32().map_err(length_error)?
                } else {
                    bd.skip(1).map_err(length_error)?;
                    bd.u24().map_err(length_error)?
                };
                Some(BlockDescriptor {
                    long,
                    blocks,
                    block_len,
                    block_len_at: block_len_at as u16,
                })
            }
            _ => return Err(Sense::invalid_param_field(if ten { 6 } else { 3 }, None)),
        };
        let mut pages = Vec::new();
        while !r.is_empty() {
            let at = r.offset();
            if r.remaining() < 2 {
                return Err(length_error(Short { at, wanted: 2 }));
            }
            let rest = r.rest();
            let len = 2 + usize::from(rest[1]);
            let bytes = r.take(len).map_err(length_error)?.to_vec();
            pages.push(ModePage {
                at: at as u16,
                code_byte: bytes[0],
                bytes,
            });
        }
        Ok(Self {
            ten,
            block_descriptor,
            pages,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let bd = self.block_descriptor.map(|b| {
            let mut d = Writer::new();
            if b.long {
                d.u64(b.blocks).zeros(4).u32(b.block_len);
            } else {
                d.u32(b.blocks as u32).u8(0).u24(b.block_len);
            }
            d.into_vec()
        });
        let bd = bd.unwrap_or_default();
        let long = self.block_descriptor.is_some_and(|b| b.long);
        if self.ten {
            w.zeros(4).u8(u8::from(long)).u8(0).u16(bd.len() as u16);
        } else {
            w.zeros(3).u8(bd.len() as u8);
        }
        w.bytes(&bd);
        for p in &self.pages {
            w.bytes(&p.bytes);
        }
        w.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unmap_limits_and_lengths() {
        let l = UnmapList {
            ranges: vec![UnmapRange { lba: 7, blocks: 3 }; 3],
        };
        assert_eq!(
            UnmapList::parse(&l.encode(), 2)
                .unwrap_err()
                .field
                .unwrap()
                .byte,
            2
        );
        let bytes = l.encode();
        assert_eq!(
            UnmapList::parse(&bytes[..bytes.len() - 1], 8)
                .unwrap_err()
                .asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
        assert_eq!(
            UnmapList::parse(&bytes[..7], 8).unwrap_err().asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
    }

    #[test]
    fn basic_pr_list_is_exactly_24_bytes_unless_spec_i_pt() {
        let p = PrOutParams::Basic {
            key: 1,
            sark: 2,
            spec_i_pt: false,
            all_tg_pt: false,
            aptpl: false,
        };
        let mut b = p.encode();
        b.push(0);
        assert_eq!(
            PrOutParams::parse(0, &b).unwrap_err().asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
        b[20] |= 0x08;
        assert!(matches!(
            PrOutParams::parse(0, &b).unwrap(),
            PrOutParams::Basic {
                spec_i_pt: true,
                ..
            }
        ));
    }

    #[test]
    fn short_transport_id_is_kept_as_missing() {
        let p = PrOutParams::RegisterAndMove {
            key: 1,
            sark: 2,
            unreg: true,
            aptpl: false,
            relative_port: 1,
            transport_id: Some(vec![0x05; 24]),
        };
        let b = p.encode();
        let parsed = PrOutParams::parse(7, &b[..b.len() - 1]).unwrap();
        assert!(matches!(
            parsed,
            PrOutParams::RegisterAndMove {
                transport_id: None,
                ..
            }
        ));
    }

    #[test]
    fn mode_block_descriptor_sizes() {
        let mut six = vec![0, 0, 0, 8, 0, 0, 0, 16, 0, 0, 2, 0];
        let l = ModeSelectList::parse(false, &six).unwrap();
        let bd = l.block_descriptor.unwrap();
        assert_eq!((bd.blocks, bd.block_len, bd.block_len_at), (16, 512, 9));
        six[3] = 4;
        assert_eq!(
            ModeSelectList::parse(false, &six)
                .unwrap_err()
                .field
                .unwrap()
                .byte,
            3
        );
    }

    fn page() -> impl Strategy<Value = Vec<u8>> {
        (0u8..0x40, proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(code, body)| {
            let mut p = vec![code, body.len() as u8];
            p.extend(body);
            p
        })
    }

    proptest! {
        #[test]
        fn unmap_round_trips(ranges in proptest::collection::vec((any::<u64>(), any::<u32>()), 0..40)) {
            let l = UnmapList { ranges: ranges.into_iter().map(|(lba, blocks)| UnmapRange { lba, blocks }).collect() };
            prop_assert_eq!(UnmapList::parse(&l.encode(), 1024).unwrap(), l);
        }

        #[test]
        fn pr_out_round_trips(key in any::<u64>(), sark in any::<u64>(), flags in 0u8..8, rel in any::<u16>(),
                              tid in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))) {
            let basic = PrOutParams::Basic { key, sark, spec_i_pt: false, all_tg_pt: flags & 4 != 0, aptpl: flags & 1 != 0 };
            prop_assert_eq!(PrOutParams::parse(0, &basic.encode()).unwrap(), basic);
            let mv = PrOutParams::RegisterAndMove { key, sark, unreg: flags & 2 != 0, aptpl: flags & 1 != 0, relative_port: rel,
                                                    transport_id: Some(tid.unwrap_or_default()) };
            prop_assert_eq!(PrOutParams::parse(7, &mv.encode()).unwrap(), mv);
        }

        #[test]
        fn mode_select_round_trips(ten in any::<bool>(), long in any::<bool>(), bd in proptest::option::of((any::<u32>(), 0u32..1 << 24)),
                                   pages in proptest::collection::vec(page(), 0..5)) {
            let long = long && ten;
            let block_descriptor = bd.map(|(blocks, block_len)| BlockDescriptor {
                long, blocks: u64::from(blocks), block_len,
                block_len_at: if long { 8 + 12 } else if ten { 8 + 5 } else { 4 + 5 },
            });
            let mut at = if ten { 8 } else { 4 } + block_descriptor.map_or(0, |b| if b.long { 16 } else { 8 });
            let pages: Vec<ModePage> = pages.into_iter().map(|bytes| {
                let p = ModePage { at: at as u16, code_byte: bytes[0], bytes };
                at += p.bytes.len();
                p
            }).collect();
            let l = ModeSelectList { ten, block_descriptor, pages };
            prop_assert_eq!(ModeSelectList::parse(ten, &l.encode()).unwrap(), l);
        }

        #[test]
        fn parsers_never_panic(sa in 0u8..8, ten in any::<bool>(), b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = UnmapList::parse(&b, 1024);
            let _ = PrOutParams::parse(sa, &b);
            let _ = ModeSelectList::parse(ten, &b);
        }
    }
}
