//! PDU parsing and encoding against golden bytes.

use super::*;

#[test]
fn scsi_command_golden_bytes() {
    // READ(10) of 1 block at LBA 0x1234 on LUN 1, ITT 0x10, EDTL 512, CmdSN 7.
    let mut bhs = [0u8; BHS_LEN];
    bhs[0] = 0x01;
    bhs[1] = 0xc1; // F, R, SIMPLE
    bhs[9] = 0x01;
    bhs[16..20].copy_from_slice(&0x10u32.to_be_bytes());
    bhs[20..24].copy_from_slice(&512u32.to_be_bytes());
    bhs[24..28].copy_from_slice(&7u32.to_be_bytes());
    bhs[32..42].copy_from_slice(&[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 1, 0]);
    let Request::ScsiCommand(c) = Request::parse(&bhs, &[]).unwrap() else {
        panic!("not a command")
    };
    assert!(c.final_ && c.read && !c.write);
    assert_eq!(c.task_attr, 1);
    assert_eq!(c.lun, 0x0001_0000_0000_0000);
    assert_eq!((c.itt, c.expected_data_len, c.cmd_sn), (0x10, 512, 7));
    assert_eq!(&c.cdb[..10], &[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 1, 0]);
}

#[test]
fn extended_cdb_ahs_appends() {
    let mut bhs = [0u8; BHS_LEN];
    bhs[0] = 0x01;
    bhs[1] = 0x80;
    bhs[4] = 2;
    bhs[32] = 0x7f;
    // Length 9 (reserved byte + 8 CDB bytes), type 1, then padding to 12 bytes.
    let ahs = [0, 9, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let Request::ScsiCommand(c) = Request::parse(&bhs, &ahs).unwrap() else {
        panic!()
    };
    assert_eq!(c.cdb.len(), 24);
    assert_eq!(&c.cdb[16..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(Request::parse(&bhs, &ahs[..5]), Err(PduError::BadAhs));
}

#[test]
fn data_in_with_status_golden() {
    let b = DataIn {
        final_: true,
        status: Some(0),
        lun: 0,
        itt: 0xabcd,
        data_sn: 2,
        buffer_offset: 8192,
        residual: Residual::Underflow(512),
        data_len: 4096,
    }
    .encode();
    assert_eq!(b[0], 0x25);
    assert_eq!(b[1], 0x80 | 0x02 | 0x01);
    assert_eq!(&b[5..8], &[0, 0x10, 0]);
    assert_eq!(&b[20..24], &[0xff; 4]);
    // StatSN, ExpCmdSN, MaxCmdSN are left for the writer to stamp at send time.
    assert_eq!(&b[24..36], &[0; 12]);
    assert_eq!(u32::from_be_bytes([b[36], b[37], b[38], b[39]]), 2);
    assert_eq!(u32::from_be_bytes([b[40], b[41], b[42], b[43]]), 8192);
    assert_eq!(u32::from_be_bytes([b[44], b[45], b[46], b[47]]), 512);
}

#[test]
fn residual_of() {
    assert_eq!(Residual::of(512, 512), Residual::None);
    assert_eq!(Residual::of(512, 1024), Residual::Underflow(512));
    assert_eq!(Residual::of(1024, 512), Residual::Overflow(512));
}

#[test]
fn unknown_opcode_is_error() {
    let mut bhs = [0u8; BHS_LEN];
    bhs[0] = 0x1c;
    assert_eq!(
        Request::parse(&bhs, &[]),
        Err(PduError::UnknownOpcode(0x1c))
    );
}
