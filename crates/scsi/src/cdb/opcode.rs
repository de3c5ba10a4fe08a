//! Operation codes of the commands in the SPC-4 and SBC-4 tables, by their
//! standard names. An open enum: any byte is an `Opcode`, the named ones print by
//! name. Stream devices (SSC) give several of these values other meanings
//! (08h READ(6) with a FIXED bit, 34h READ POSITION instead of PRE-FETCH(10)), so
//! the SSC table brings its own names rather than sharing these.

codec::open_enum! {
    /// A CDB's byte 0.
    pub struct Opcode(u8) {
        TEST_UNIT_READY = 0x00,
        REQUEST_SENSE = 0x03,
        READ_6 = 0x08,
        WRITE_6 = 0x0a,
        INQUIRY = 0x12,
        MODE_SELECT_6 = 0x15,
        RESERVE_6 = 0x16,
        RELEASE_6 = 0x17,
        MODE_SENSE_6 = 0x1a,
        START_STOP_UNIT = 0x1b,
        PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1e,
        READ_CAPACITY_10 = 0x25,
        READ_10 = 0x28,
        WRITE_10 = 0x2a,
        WRITE_AND_VERIFY_10 = 0x2e,
        VERIFY_10 = 0x2f,
        PRE_FETCH_10 = 0x34,
        SYNCHRONIZE_CACHE_10 = 0x35,
        READ_DEFECT_DATA_10 = 0x37,
        WRITE_SAME_10 = 0x41,
        UNMAP = 0x42,
        SANITIZE = 0x48,
        MODE_SELECT_10 = 0x55,
        RESERVE_10 = 0x56,
        RELEASE_10 = 0x57,
        MODE_SENSE_10 = 0x5a,
        PERSISTENT_RESERVE_IN = 0x5e,
        PERSISTENT_RESERVE_OUT = 0x5f,
        /// EXTENDED COPY (LID1) and, by service action, THIRD PARTY COPY OUT.
        EXTENDED_COPY = 0x83,
        /// RECEIVE COPY RESULTS (LID1) and, by service action, THIRD PARTY COPY IN.
        RECEIVE_COPY_RESULTS = 0x84,
        READ_16 = 0x88,
        COMPARE_AND_WRITE = 0x89,
        WRITE_16 = 0x8a,
        ORWRITE_16 = 0x8b,
        WRITE_AND_VERIFY_16 = 0x8e,
        VERIFY_16 = 0x8f,
        PRE_FETCH_16 = 0x90,
        SYNCHRONIZE_CACHE_16 = 0x91,
        WRITE_SAME_16 = 0x93,
        WRITE_ATOMIC_16 = 0x9c,
        /// SERVICE ACTION IN(16): READ CAPACITY(16) (10h), GET LBA STATUS (12h).
        SERVICE_ACTION_IN_16 = 0x9e,
        REPORT_LUNS = 0xa0,
        /// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES (0Ch), REPORT SUPPORTED
        /// TASK MANAGEMENT FUNCTIONS (0Dh).
        MAINTENANCE_IN = 0xa3,
        READ_12 = 0xa8,
        WRITE_12 = 0xaa,
        WRITE_AND_VERIFY_12 = 0xae,
        VERIFY_12 = 0xaf,
        READ_DEFECT_DATA_12 = 0xb7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::{table, DeviceType};

    /// Every opcode of the block table has a name here, and every name here is in
    /// the table: the names cannot drift from what is implemented.
    #[test]
    fn names_cover_exactly_the_block_table() {
        let mut in_table: Vec<u8> = table(DeviceType::Block).iter().map(|r| r.opcode).collect();
        in_table.dedup();
        for &op in &in_table {
            assert!(Opcode(op).name().is_some(), "{op:#04x} has no name");
        }
        for op in 0..=255u8 {
            if Opcode(op).name().is_some() {
                assert!(
                    in_table.contains(&op),
                    "{:?} is not in the table",
                    Opcode(op)
                );
            }
        }
        assert_eq!(format!("{:?}", Opcode(0x28)), "READ_10");
        assert_eq!(format!("{:?}", Opcode(0xc0)), "Opcode(0xc0)");
    }
}
