//! CDB parsing: field checks, usage masks, attributes.

use super::*;
use crate::sense::Asc;
use proptest::prelude::*;

#[test]
fn read10_fields() {
    let c = Command::parse(&[0x28, 0x08, 0, 0, 0x10, 0, 0, 0, 8, 0]).unwrap();
    assert_eq!(
        c,
        Command::Read {
            lba: 0x1000,
            blocks: 8,
            fua: true,
            len_byte: 7,
        }
    );
}

#[test]
fn read6_zero_means_256() {
    assert_eq!(
        Command::parse(&[0x08, 0, 0, 5, 0, 0]).unwrap(),
        Command::Read {
            lba: 5,
            blocks: 256,
            fua: false,
            len_byte: 4,
        }
    );
}

#[test]
fn rdprotect_is_invalid_field_with_bit_pointer() {
    let e = Command::parse(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
    assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
    let f = e.field.unwrap();
    assert_eq!((f.in_cdb, f.byte, f.bit), (true, 1, Some(5)));
}

#[test]
fn unknown_opcode_and_service_action() {
    assert_eq!(
        Command::parse(&[0xc0, 0, 0, 0, 0, 0]).unwrap_err().asc,
        Asc::INVALID_COMMAND_OPCODE
    );
    let e = Command::parse(&[0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
}

#[test]
fn naca_in_control_byte_rejected() {
    let e = Command::parse(&[0x00, 0, 0, 0, 0, 0x04]).unwrap_err();
    assert_eq!(e.field.unwrap().byte, 5);
}

#[test]
fn data_out_lengths() {
    let w = Command::parse(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 4, 0]).unwrap();
    assert_eq!(w.data_out_len(512), 2048);
    let v = Command::parse(&[0x2f, 0x06, 0, 0, 0, 0, 0, 0, 4, 0]).unwrap();
    assert_eq!(v.data_out_len(4096), 4096, "BYTCHK 11b sends one block");
}

#[test]
fn attributes_come_from_the_row() {
    let a = |cdb: &[u8]| Parsed::parse(DeviceType::Block, cdb).unwrap().attrs;
    let inq = a(&[0x12, 0, 0, 0, 96, 0]);
    assert!(inq.ua_exempt && inq.spc2_allowed && inq.pr == PrAccess::Any);
    assert_eq!(inq.dir, DataDir::In);
    let rd = a(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert!(rd.inline && !rd.ua_exempt && !rd.spc2_allowed);
    assert_eq!((rd.dir, rd.pr), (DataDir::In, PrAccess::Read));
    let wr = a(&[0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(
        (wr.dir, wr.pr, wr.inline),
        (DataDir::Out, PrAccess::Write, true)
    );
    // PREVENT ALLOW: allowing removal passes every reservation; preventing does not.
    let allow = a(&[0x1e, 0, 0, 0, 0, 0]);
    assert!(allow.spc2_allowed && allow.pr == PrAccess::Any);
    let prevent = a(&[0x1e, 0, 0, 0, 1, 0]);
    assert!(!prevent.spc2_allowed && prevent.pr == PrAccess::Write);
    // A command with a Data-Out length is a Data-Out row (all usage bits set).
    for c in table(DeviceType::Block) {
        if let Ok(p) = Parsed::parse(DeviceType::Block, c.usage) {
            let out = p.command.data_out_len(512) > 0;
            if out {
                assert_eq!(p.attrs.dir, DataDir::Out, "{}", c.name);
            }
        }
    }
}

#[test]
fn the_opcode_index_finds_what_a_scan_finds() {
    let rows = table(DeviceType::Block);
    for op in 0..=255u8 {
        for sa in 0..32u8 {
            let scan = rows
                .iter()
                .copied()
                .find(|c| c.opcode == op && c.service_action.is_none_or(|s| s == sa));
            let got = lookup(DeviceType::Block, op, sa);
            assert_eq!(
                got.map(|c| c.name),
                scan.map(|c| c.name),
                "{op:02x}/{sa:02x}"
            );
        }
        let any_sa = rows
            .iter()
            .any(|c| c.opcode == op && c.service_action.is_some());
        assert_eq!(has_service_actions(DeviceType::Block, op), any_sa);
    }
}

#[test]
fn usage_table_is_consistent() {
    for c in table(DeviceType::Block) {
        assert_eq!(c.usage[0], c.opcode, "{}", c.name);
        assert_eq!(c.usage.len(), cdb_len(c.opcode), "{}", c.name);
        if let Some(sa) = c.service_action {
            // The service action bits, plus any flags byte 1 carries (SANITIZE).
            assert_eq!(c.usage[1] & 0x1f, sa, "{}", c.name);
        }
    }
}

proptest! {
    #[test]
    fn parse_never_panics(cdb in proptest::collection::vec(any::<u8>(), 0..20)) {
        let _ = Command::parse(&cdb);
    }
}
