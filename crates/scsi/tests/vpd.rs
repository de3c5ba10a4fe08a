//! VPD pages read through INQUIRY and decoded here from the standard's layouts (not
//! from the encoder), then held against what the device server enforces.

use scsi::cdb::Command;
use scsi::sense::Asc;
use scsi::testing::TestLu;
use testkit::cdb as cdbs;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn vpd(t: &TestLu, page: u8) -> Vec<u8> {
    let a = t.attach(1);
    let r = t.run(&a, &cdbs::inquiry(true, page, 4096), &[]);
    assert!(r.is_good(), "page {page:#x}: {r:?}");
    assert_eq!(r.data[1], page);
    assert_eq!(usize::from(be16(&r.data, 2)) + 4, r.data.len());
    r.data
}

/// SPC-4 7.8.17: descriptors start at byte 4, each DESCRIPTOR TYPE (2 bytes),
/// DESCRIPTOR LENGTH (2 bytes, n-3), then the body. Returns (type, whole descriptor).
fn tpc_descriptors(page: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 4;
    while at < page.len() {
        let kind = be16(page, at);
        let len = usize::from(be16(page, at + 2)) + 4;
        out.push((kind, page[at..at + len].to_vec()));
        at += len;
    }
    assert_eq!(at, page.len(), "descriptors fill the page exactly");
    out
}

/// RECEIVE COPY OPERATING PARAMETERS (SPC-4 6.22.4), the fields VPD 8Fh repeats.
struct OperatingParameters {
    max_cscd: u16,
    max_segments: u16,
    max_list_len: u32,
    max_segment_len: u32,
    max_inline: u32,
    total_concurrent: u16,
    data_granularity: u8,
    inline_granularity: u8,
    implemented: Vec<u8>,
}

fn operating_parameters() -> OperatingParameters {
    let p = scsi::tpc::operating_parameters();
    assert_eq!(be32(&p, 0) as usize + 4, p.len(), "AVAILABLE DATA");
    let n = usize::from(p[43]);
    OperatingParameters {
        max_cscd: be16(&p, 8),
        max_segments: be16(&p, 10),
        max_list_len: be32(&p, 12),
        max_segment_len: be32(&p, 16),
        max_inline: be32(&p, 20),
        total_concurrent: be16(&p, 34),
        data_granularity: p[37],
        inline_granularity: p[38],
        implemented: p[44..44 + n].to_vec(),
    }
}

#[test]
fn third_party_copy_page_agrees_with_operating_parameters() {
    for bs in [512, 4096] {
        let t = TestLu::new(1024, bs);
        let page = vpd(&t, 0x8f);
        let op = operating_parameters();
        let descs = tpc_descriptors(&page);
        let find = |kind: u16| {
            descs
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| panic!("descriptor {kind:04x} missing"))
        };
        // 0004h Parameter Data (7.8.17.4).
        let d = find(0x0004);
        assert_eq!(be16(&d, 2), 0x001c);
        assert_eq!(be16(&d, 8), op.max_cscd);
        assert_eq!(be16(&d, 10), op.max_segments);
        assert_eq!(be32(&d, 12), op.max_list_len);
        assert_eq!(be32(&d, 16), op.max_inline);
        // 0008h Supported Descriptors (7.8.17.5).
        let d = find(0x0008);
        let n = usize::from(d[4]);
        assert_eq!(&d[5..5 + n], &op.implemented[..]);
        // 8001h General Copy Operations (7.8.17.8).
        let d = find(0x8001);
        assert_eq!(be32(&d, 4), u32::from(op.total_concurrent));
        assert_eq!(be32(&d, 12), op.max_segment_len);
        assert_eq!(d[16], op.data_granularity);
        assert_eq!(d[17], op.inline_granularity);
        // 000Ch Supported CSCD IDs: FFFFh only.
        let d = find(0x000c);
        assert_eq!(&d[4..8], &[0, 2, 0xff, 0xff]);
    }
}

#[test]
fn supported_commands_descriptor_lists_what_parses() {
    let t = TestLu::new(64, 512);
    let descs = tpc_descriptors(&vpd(&t, 0x8f));
    let (_, d) = descs.iter().find(|(k, _)| *k == 0x0001).unwrap();
    let list_len = usize::from(d[4]);
    let mut at = 5;
    let mut listed = Vec::new();
    while at < 5 + list_len {
        let (op, n) = (d[at], usize::from(d[at + 1]));
        for &sa in &d[at + 2..at + 2 + n] {
            listed.push((op, sa));
        }
        at += 2 + n;
    }
    assert_eq!(at, 5 + list_len);
    // Every listed (opcode, SA) parses; every other SA of those opcodes does not.
    for op in [0x83u8, 0x84] {
        for sa in 0u8..0x20 {
            let mut cdb = [0u8; 16];
            cdb[0] = op;
            cdb[1] = sa;
            let parsed = Command::parse(&cdb);
            let is_listed = listed.contains(&(op, sa));
            match parsed {
                Ok(_) => assert!(is_listed, "{op:02x}/{sa:02x} works but is not listed"),
                Err(e) => {
                    assert!(!is_listed, "{op:02x}/{sa:02x} listed but refused: {e:?}");
                    assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
                }
            }
        }
    }
    assert!(listed.contains(&(0x83, 0x00)) && listed.contains(&(0x84, 0x03)));
}

#[test]
fn supported_pages_are_exactly_the_pages_served() {
    let t = TestLu::thin(64, 512);
    let a = t.attach(1);
    let p00 = vpd(&t, 0x00);
    let listed = &p00[4..];
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "ascending");
    for page in 0u8..=0xff {
        let r = t.run(&a, &cdbs::inquiry(true, page, 255), &[]);
        assert_eq!(
            r.is_good(),
            listed.contains(&page),
            "page {page:#04x}: {:?}",
            r.sense
        );
    }
}

#[test]
fn block_limits_agree_with_the_enforced_transfer_limit() {
    for bs in [512u32, 4096] {
        let t = TestLu::new(1 << 16, bs);
        let a = t.attach(1);
        let b0 = vpd(&t, 0xb0);
        let max_blocks = be32(&b0, 8);
        assert_eq!(u64::from(max_blocks) * u64::from(bs), 8 << 20);
        assert!(t.run(&a, &cdbs::read16(0, max_blocks), &[]).is_good());
        let r = t.run(&a, &cdbs::read16(0, max_blocks + 1), &[]);
        assert_eq!(r.check().1, Asc::INVALID_FIELD_IN_CDB);
    }
}

/// SBC-3 6.6.5.3 Block Device ROD Token Limits, ROD Token Features (7.8.17.10)
/// and Supported ROD Types (7.8.17.11), decoded from their layouts and held
/// against what the POPULATE TOKEN / WRITE USING TOKEN parsers enforce.
#[test]
fn rod_token_descriptors_agree_with_the_token_parsers() {
    use scsi::tpc::rod::{PopulateToken, RangeLimits};
    for bs in [512u32, 4096] {
        let t = TestLu::new(1 << 20, bs);
        let descs = tpc_descriptors(&vpd(&t, 0x8f));
        assert_eq!(descs[0].0, 0x0000, "BDRL is the first descriptor");
        let d = &descs[0].1;
        assert_eq!(be16(d, 2), 0x0020);
        let max_ranges = be16(d, 10);
        let max_timeout = be32(d, 12);
        let default_timeout = be32(d, 16);
        let max_blocks = u64::from_be_bytes(d[20..28].try_into().unwrap());
        let optimal = u64::from_be_bytes(d[28..36].try_into().unwrap());
        assert!(max_ranges >= 64, "Windows sends up to 64 ranges");
        assert!(default_timeout > 0 && default_timeout <= max_timeout);
        assert!(optimal > 0 && optimal <= max_blocks);
        assert!(max_blocks < 1 << 32, "ddpt keeps it in 32 bits");
        let lu = RangeLimits {
            capacity: 1 << 20,
            block_size: bs,
        };
        let pt = |timeout: u32, ranges: &[(u64, u32)]| {
            let mut p = vec![0u8; 16];
            p[4..8].copy_from_slice(&timeout.to_be_bytes());
            p[14..16].copy_from_slice(&((ranges.len() * 16) as u16).to_be_bytes());
            for &(lba, n) in ranges {
                p.extend_from_slice(&lba.to_be_bytes());
                p.extend_from_slice(&n.to_be_bytes());
                p.extend_from_slice(&[0; 4]);
            }
            let n = (p.len() - 2) as u16;
            p[0..2].copy_from_slice(&n.to_be_bytes());
            PopulateToken::parse(&p, lu)
        };
        let ranges = |k: u64| (0..k).map(|i| (i * 2, 1u32)).collect::<Vec<_>>();
        assert!(pt(max_timeout, &ranges(u64::from(max_ranges))).is_ok());
        assert_eq!(
            pt(0, &ranges(u64::from(max_ranges) + 1)).unwrap_err().asc,
            Asc(0x2608)
        );
        assert!(pt(max_timeout + 1, &ranges(1)).is_err());
        assert!(pt(0, &[(0, max_blocks as u32)]).is_ok());
        assert!(pt(0, &[(0, max_blocks as u32), (max_blocks, 1)]).is_err());
        // ROD Token Features: the block ROD limits in bytes, the same numbers.
        let (_, f) = descs.iter().find(|(k, _)| *k == 0x0106).unwrap();
        assert_eq!(be32(f, 24), max_timeout);
        assert_eq!(be16(f, 46), 48);
        let b = &f[48..96];
        assert_eq!(be16(b, 2), 0x002c);
        let max_bytes = u64::from_be_bytes(b[8..16].try_into().unwrap());
        let optimal_bytes = u64::from_be_bytes(b[16..24].try_into().unwrap());
        assert_eq!(max_bytes, max_blocks * u64::from(bs));
        assert_eq!(optimal_bytes, optimal * u64::from(bs));
        // Supported ROD Types: 64-byte descriptors; the zero token in only.
        let (_, r) = descs.iter().find(|(k, _)| *k == 0x0108).unwrap();
        let n = usize::from(be16(r, 6)) / 64;
        let types: Vec<(u32, u8)> = (0..n)
            .map(|i| (be32(r, 8 + i * 64), r[8 + i * 64 + 4] & 0x83))
            .collect();
        assert!(types.contains(&(0xffff_0001, 0x02)));
        assert!(types.contains(&(0x0080_0002, 0x03)));
        assert!(types.contains(&(0x0080_0001, 0x03)));
    }
}
