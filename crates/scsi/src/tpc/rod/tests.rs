//! PT/WUT parameter lists and the token layout, checked at the offsets of
//! ROD-TOKENS.md §1.4-1.8 (not through the encoders alone).

use proptest::prelude::*;

use super::*;

const LU: RangeLimits = RangeLimits {
    capacity: 1 << 21,
    block_size: 512,
};

fn pt(ranges: &[(u64, u32)]) -> PopulateToken {
    PopulateToken {
        immed: false,
        rod_type: None,
        inactivity_timeout: 0,
        ranges: ranges
            .iter()
            .map(|&(lba, blocks)| BlockRange { lba, blocks })
            .collect(),
    }
}

#[test]
fn populate_token_fields_at_their_offsets() {
    let mut p = pt(&[(0x0102_0304_0506_0708, 9), (5, 0)]);
    p.rod_type = Some(rod_type::PIT_DEFAULT);
    p.inactivity_timeout = 30;
    p.immed = true;
    let b = p.encode();
    assert_eq!(b.len(), 16 + 32);
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 46, "DATA LENGTH is n-1");
    assert_eq!(b[2], 0x03, "RTV and IMMED");
    assert_eq!(&b[4..8], &30u32.to_be_bytes());
    assert_eq!(&b[8..12], &[0x00, 0x80, 0x00, 0x00]);
    assert_eq!(&b[14..16], &[0, 32]);
    assert_eq!(&b[16..24], &[1, 2, 3, 4, 5, 6, 7, 8], "LBA at 0-7");
    assert_eq!(
        &b[24..28],
        &[0, 0, 0, 9],
        "NUMBER OF LOGICAL BLOCKS at 8-11"
    );
}

#[test]
fn populate_token_refusals_in_order() {
    let asc = |b: &[u8]| PopulateToken::parse(b, LU).unwrap_err();
    let good = pt(&[(0, 8), (100, 8)]).encode();
    assert!(PopulateToken::parse(&good, LU).is_ok());
    // Shorter than the header.
    assert_eq!(asc(&good[..15]).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
    // DATA LENGTH below 1Eh: field 0.
    let mut b = good.clone();
    b[0..2].copy_from_slice(&0x10u16.to_be_bytes());
    let e = asc(&b);
    assert_eq!(
        (e.asc, e.field.unwrap().byte),
        (Asc::INVALID_FIELD_IN_PARAMETER_LIST, 0)
    );
    // Range list length not a multiple of 16: field 14.
    let mut b = good.clone();
    b[15] = 20;
    assert_eq!(asc(&b).field.unwrap().byte, 14);
    // Inactivity timeout above the maximum: field 4.
    let mut b = good.clone();
    b[4..8].copy_from_slice(&(MAX_INACTIVITY_TIMEOUT + 1).to_be_bytes());
    assert_eq!(asc(&b).field.unwrap().byte, 4);
    // An unknown or unproducible ROD type asked for: field 8.
    for t in [rod_type::BLOCK_ZERO, 0x0080_0003, 0x1234_5678] {
        let mut p = pt(&[(0, 8)]);
        p.rod_type = Some(t);
        assert_eq!(asc(&p.encode()).field.unwrap().byte, 8, "type {t:#x}");
    }
    // Overlap: IFP without a pointer; a zero-length range overlaps nothing.
    let e = asc(&pt(&[(0, 8), (7, 2)]).encode());
    assert_eq!(
        (e.asc, e.field),
        (Asc::INVALID_FIELD_IN_PARAMETER_LIST, None)
    );
    assert!(PopulateToken::parse(&pt(&[(0, 8), (4, 0)]).encode(), LU).is_ok());
    // Past the end: LBA OUT OF RANGE with the LBA in INFORMATION.
    let e = asc(&pt(&[(LU.capacity - 1, 2)]).encode());
    assert_eq!(
        (e.asc, e.information),
        (Asc::LBA_OUT_OF_RANGE, Some(LU.capacity - 1))
    );
    let e = asc(&pt(&[(u64::MAX, 1)]).encode());
    assert_eq!(e.asc, Asc::LBA_OUT_OF_RANGE, "no overflow");
    // 65 ranges: TOO MANY SEGMENT DESCRIPTORS.
    let many: Vec<(u64, u32)> = (0..65).map(|i| (i * 10, 1)).collect();
    assert_eq!(
        asc(&pt(&many).encode()).asc,
        Asc::TOO_MANY_SEGMENT_DESCRIPTORS
    );
    // More than the maximum transfer in total.
    let max = LU.max_blocks();
    let e = asc(&pt(&[(0, max as u32), (max, 1)]).encode());
    assert_eq!(e.field.unwrap().byte, 14);
    // DATA LENGTH beyond what was sent.
    let mut b = good.clone();
    b[0..2].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(asc(&b).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
}

fn wut(token: [u8; TOKEN_LEN], ranges: &[(u64, u32)]) -> WriteUsingToken {
    WriteUsingToken {
        immed: false,
        del_tkn: true,
        offset_into_rod: 0x11,
        token: Box::new(token),
        ranges: ranges
            .iter()
            .map(|&(lba, blocks)| BlockRange { lba, blocks })
            .collect(),
    }
}

#[test]
fn write_using_token_fields_at_their_offsets_and_token_checks() {
    let b = wut(zero_token(), &[(7, 3)]).encode();
    assert_eq!(b.len(), 552);
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 550);
    assert_eq!(b[2], 0x02, "DEL_TKN");
    assert_eq!(&b[8..16], &0x11u64.to_be_bytes(), "OFFSET INTO ROD at 8");
    assert_eq!(&b[16..20], &[0xff, 0xff, 0x00, 0x01], "token at 16");
    assert_eq!(&b[534..536], &[0, 16], "range list length at 534");
    assert_eq!(&b[536..544], &7u64.to_be_bytes(), "first range at 536");
    let w = WriteUsingToken::parse(&b, LU).unwrap();
    assert_eq!(w, wut(zero_token(), &[(7, 3)]));
    // Token length field other than 01F8h: 23/0A; unknown type: 23/01.
    let mut t = zero_token();
    t[7] = 0xf0;
    let e = WriteUsingToken::parse(&wut(t, &[(0, 1)]).encode(), LU).unwrap_err();
    assert_eq!(e.asc, token_asc::INVALID_TOKEN_LENGTH);
    let mut t = zero_token();
    t[0..4].copy_from_slice(&0x0080_0000u32.to_be_bytes());
    let e = WriteUsingToken::parse(&wut(t, &[(0, 1)]).encode(), LU).unwrap_err();
    assert_eq!(
        e.asc,
        token_asc::UNSUPPORTED_TOKEN_TYPE,
        "PIT default is a request value"
    );
    // Too short for a token: the list length is wrong.
    assert_eq!(
        WriteUsingToken::parse(&b[..551], LU).unwrap_err().asc,
        Asc::PARAMETER_LIST_LENGTH_ERROR
    );
    let mut short = b.clone();
    short[0..2].copy_from_slice(&540u16.to_be_bytes());
    assert_eq!(
        WriteUsingToken::parse(&short, LU)
            .unwrap_err()
            .field
            .unwrap()
            .byte,
        0
    );
}

#[test]
fn token_header_at_its_offsets() {
    let h = TokenHeader {
        rod_type: rod_type::PIT_PERSISTENT,
        id: 0x0a0b_0c0d_0e0f_1011,
        creator_naa: [0x60; 16],
        block_size: 4096,
        bytes_represented: 3 << 30,
        lbppbe: 3,
        thin: true,
        target_name: "iqn.2026-11.org.oxtgt:t".into(),
    };
    let t = h.encode(&[0xab; 256]);
    assert_eq!(&t[0..4], &[0x00, 0x80, 0x00, 0x02]);
    assert_eq!(&t[6..8], &[0x01, 0xf8], "ROD TOKEN LENGTH 508");
    assert_eq!(&t[8..16], &h.id.to_be_bytes());
    assert_eq!(t[16], 0xe4, "creator LU as an identification CSCD");
    assert_eq!(
        (t[20] & 0x0f, t[21] & 0x0f, t[23]),
        (1, 3, 16),
        "NAA designator"
    );
    assert_eq!(&t[24..40], &[0x60; 16]);
    assert_eq!(&t[45..48], &[0x00, 0x10, 0x00], "block length in the CSCD");
    assert_eq!(&t[48..56], &[0; 8], "bytes represented: upper half zero");
    assert_eq!(&t[56..64], &(3u64 << 30).to_be_bytes());
    assert_eq!(&t[64..96], &[0; 32], "nothing secret in the 96-byte prefix");
    assert_eq!(&t[96..100], &4096u32.to_be_bytes());
    assert_eq!((t[101], t[102]), (3, 0xc0));
    assert_eq!(t[129] & 0x30, 0x20, "target device association");
    assert!(t[256..].iter().all(|&b| b == 0xab));
    assert_eq!(TokenHeader::decode(&t), h);
    assert_eq!(check_token(&t), Ok(rod_type::PIT_PERSISTENT));
}

fn arb_ranges() -> impl Strategy<Value = Vec<(u64, u32)>> {
    proptest::collection::vec((0u64..1 << 20, 0u32..64), 1..=64).prop_map(|v| {
        // Space the ranges apart so they never overlap.
        v.into_iter()
            .enumerate()
            .map(|(i, (lba, n))| ((i as u64) * (1 << 14) + lba % (1 << 13), n))
            .collect()
    })
}

proptest! {
    #[test]
    fn populate_token_round_trips(r in arb_ranges(), ito in 0u32..=600, immed: bool) {
        let mut p = pt(&r);
        p.inactivity_timeout = ito;
        p.immed = immed;
        prop_assert_eq!(PopulateToken::parse(&p.encode(), LU).unwrap(), p);
    }

    #[test]
    fn write_using_token_round_trips(r in arb_ranges(), off: u64, del: bool) {
        let mut w = wut(zero_token(), &r);
        w.offset_into_rod = off;
        w.del_tkn = del;
        prop_assert_eq!(WriteUsingToken::parse(&w.encode(), LU).unwrap(), w);
    }

    #[test]
    fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = PopulateToken::parse(&b, LU);
        let _ = WriteUsingToken::parse(&b, LU);
    }
}
