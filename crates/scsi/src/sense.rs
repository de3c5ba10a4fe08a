//! Status codes and sense data (SPC-4 4.5): the one place a failure becomes bytes.
//!
//! Execution code returns a [`Sense`] built from a named constant; [`Sense::encode`]
//! produces fixed (70h) or descriptor (72h) format as the control mode page's D_SENSE
//! bit selects.

/// SCSI status codes (SAM-5 5.3.1).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const TASK_ABORTED: u8 = 0x40;
}

codec::open_enum! {
    /// Sense keys (SPC-4 Table 49). Unknown values print in hex.
    pub struct SenseKey(u8) {
        NO_SENSE = 0x0,
        RECOVERED_ERROR = 0x1,
        NOT_READY = 0x2,
        MEDIUM_ERROR = 0x3,
        HARDWARE_ERROR = 0x4,
        ILLEGAL_REQUEST = 0x5,
        UNIT_ATTENTION = 0x6,
        DATA_PROTECT = 0x7,
        BLANK_CHECK = 0x8,
        COPY_ABORTED = 0xa,
        ABORTED_COMMAND = 0xb,
        VOLUME_OVERFLOW = 0xd,
        MISCOMPARE = 0xe,
    }
}

/// Additional sense code and qualifier (SPC-4 Table 50), as `ASC << 8 | ASCQ`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asc(pub u16);

impl std::fmt::Debug for Asc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02X}h/{:02X}h", self.0 >> 8, self.0 & 0xff)
    }
}

impl Asc {
    pub const NO_ADDITIONAL_SENSE: Self = Self(0x0000);
    pub const FILEMARK_DETECTED: Self = Self(0x0001);
    pub const END_OF_PARTITION_DETECTED: Self = Self(0x0002);
    pub const BEGINNING_OF_PARTITION_DETECTED: Self = Self(0x0004);
    pub const END_OF_DATA_DETECTED: Self = Self(0x0005);
    pub const OPERATION_IN_PROGRESS: Self = Self(0x0016);
    pub const UNREACHABLE_COPY_TARGET: Self = Self(0x0804);
    pub const THIRD_PARTY_DEVICE_FAILURE: Self = Self(0x0d01);
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Self = Self(0x0d02);
    pub const INCORRECT_COPY_TARGET_DEVICE_TYPE: Self = Self(0x0d03);
    pub const TOO_MANY_TARGET_DESCRIPTORS: Self = Self(0x2606);
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE: Self = Self(0x2607);
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Self = Self(0x2608);
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE: Self = Self(0x2609);
    pub const UNEXPECTED_INEXACT_SEGMENT: Self = Self(0x260a);
    pub const INLINE_DATA_LENGTH_EXCEEDED: Self = Self(0x260b);
    pub const INVALID_OPERATION_FOR_COPY: Self = Self(0x260c);
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x5503);
    pub const LU_NOT_READY_INIT_REQUIRED: Self = Self(0x0402);
    pub const INVALID_FIELD_IN_INFORMATION_UNIT: Self = Self(0x0e03);
    pub const DATA_PHASE_ERROR: Self = Self(0x4b00);
    pub const INFORMATION_UNIT_CRC_ERROR: Self = Self(0x4703);
    pub const WRITE_ERROR: Self = Self(0x0c00);
    pub const UNRECOVERED_READ_ERROR: Self = Self(0x1100);
    pub const MISCOMPARE_DURING_VERIFY: Self = Self(0x1d00);
    pub const PARAMETER_LIST_LENGTH_ERROR: Self = Self(0x1a00);
    pub const INVALID_COMMAND_OPCODE: Self = Self(0x2000);
    pub const LBA_OUT_OF_RANGE: Self = Self(0x2100);
    pub const INVALID_FIELD_IN_CDB: Self = Self(0x2400);
    pub const LU_NOT_SUPPORTED: Self = Self(0x2500);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Self = Self(0x2600);
    pub const WRITE_PROTECTED: Self = Self(0x2700);
    pub const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: Self = Self(0x2707);
    pub const POWER_ON_RESET: Self = Self(0x2900);
    pub const POWER_ON_OCCURRED: Self = Self(0x2901);
    /// Reported after TARGET WARM RESET.
    pub const BUS_RESET: Self = Self(0x2902);
    /// BUS DEVICE RESET FUNCTION OCCURRED: reported after LOGICAL UNIT RESET.
    pub const LU_RESET: Self = Self(0x2903);
    pub const I_T_NEXUS_LOSS: Self = Self(0x2907);
    pub const MODE_PARAMETERS_CHANGED: Self = Self(0x2a01);
    pub const RESERVATIONS_PREEMPTED: Self = Self(0x2a03);
    pub const RESERVATIONS_RELEASED: Self = Self(0x2a04);
    pub const REGISTRATIONS_PREEMPTED: Self = Self(0x2a05);
    pub const CAPACITY_DATA_CHANGED: Self = Self(0x2a09);
    pub const COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Self = Self(0x2f00);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Self = Self(0x3900);
    pub const MEDIUM_NOT_PRESENT: Self = Self(0x3a00);
    pub const NOT_READY_TO_READY_CHANGE: Self = Self(0x2800);
    pub const SANITIZE_IN_PROGRESS: Self = Self(0x041b);
    pub const SANITIZE_COMMAND_FAILED: Self = Self(0x3103);
    pub const REPORTED_LUNS_DATA_CHANGED: Self = Self(0x3f0e);
    pub const INTERNAL_TARGET_FAILURE: Self = Self(0x4400);
    pub const MEDIUM_REMOVAL_PREVENTED: Self = Self(0x5302);
    pub const INVALID_MESSAGE_ERROR: Self = Self(0x4900);
}

/// Sense-key specific field pointer (SPC-4 4.5.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// true: the error is in the CDB; false: in the parameter data.
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

/// One sense condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: Asc,
    /// INFORMATION field (e.g. first miscomparing byte offset), with VALID set.
    pub information: Option<u64>,
    pub command_specific: Option<u64>,
    pub field: Option<FieldPointer>,
    /// Stream device bits of fixed-format byte 2 (SPC-4 4.5.3): FILEMARK 80h, EOM 40h,
    /// ILI 20h.
    pub flags: u8,
    /// COPY ABORTED: the sense a copy source (1) or destination (2) returned, with
    /// its status byte, forwarded unchanged (SPC-4 6.4.6.1 and 4.5.2.9).
    pub forwarded: Option<(u8, u8, Vec<u8>)>,
    /// PROGRESS INDICATION (SPC-4 4.5.2.4.3), in 65536ths, for NOT READY while an
    /// operation (SANITIZE) runs; used when there is no field pointer.
    pub progress: Option<u16>,
}

impl Sense {
    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Self {
            key,
            asc,
            information: None,
            command_specific: None,
            field: None,
            flags: 0,
            forwarded: None,
            progress: None,
        }
    }

    pub const FILEMARK: u8 = 0x80;
    pub const EOM: u8 = 0x40;
    pub const ILI: u8 = 0x20;

    pub fn with_flags(mut self, flags: u8) -> Self {
        self.flags |= flags;
        self
    }

    /// INFORMATION as a signed residue (a tape's overlength block is negative); the
    /// fixed format keeps its low 32 bits, which is the two's complement there too.
    pub fn with_residue(mut self, residue: i64) -> Self {
        self.information = Some(residue as u64);
        self
    }

    pub fn illegal(asc: Asc) -> Self {
        Self::new(SenseKey::ILLEGAL_REQUEST, asc)
    }

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit` when one bit is at fault).
    pub fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: true,
                byte,
                bit,
            }),
            ..Self::illegal(Asc::INVALID_FIELD_IN_CDB)
        }
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` of the parameter data.
    pub fn invalid_param_field(byte: u16, bit: Option<u8>) -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: false,
                byte,
                bit,
            }),
            ..Self::illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST)
        }
    }

    pub fn invalid_opcode() -> Self {
        Self {
            field: Some(FieldPointer {
                in_cdb: true,
                byte: 0,
                bit: None,
            }),
            ..Self::illegal(Asc::INVALID_COMMAND_OPCODE)
        }
    }

    pub fn lba_out_of_range() -> Self {
        Self::illegal(Asc::LBA_OUT_OF_RANGE)
    }

    pub fn write_protected() -> Self {
        Self::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED)
    }

    pub fn unit_attention(asc: Asc) -> Self {
        Self::new(SenseKey::UNIT_ATTENTION, asc)
    }

    pub fn with_information(mut self, info: u64) -> Self {
        self.information = Some(info);
        self
    }

    pub fn with_progress(mut self, progress: u16) -> Self {
        self.progress = Some(progress);
        self
    }

    fn sks(&self) -> Option<[u8; 3]> {
        if let (None, Some(p)) = (self.field, self.progress) {
            let [hi, lo] = p.to_be_bytes();
            return Some([0x80, hi, lo]);
        }
        self.field.map(|f| {
            let mut b0 = 0x80u8; // SKSV
            if f.in_cdb {
                b0 |= 0x40;
            }
            if let Some(bit) = f.bit {
                b0 |= 0x08 | (bit & 7);
            }
            let [hi, lo] = f.byte.to_be_bytes();
            [b0, hi, lo]
        })
    }

    /// Encodes as fixed format (70h, 18 bytes) or descriptor format (72h).
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        let [asc, ascq] = self.asc.0.to_be_bytes();
        if descriptor {
            let mut v = vec![0x72, self.key.0 & 0x0f, asc, ascq, 0, 0, 0, 0];
            if let Some(info) = self.information {
                // Information descriptor (SPC-4 4.5.2.2): type 0, VALID.
                v.extend_from_slice(&[0x00, 0x0a, 0x80, 0]);
                v.extend_from_slice(&info.to_be_bytes());
            }
            if let Some(cs) = self.command_specific {
                v.extend_from_slice(&[0x01, 0x0a, 0, 0]);
                v.extend_from_slice(&cs.to_be_bytes());
            }
            if let Some(sks) = self.sks() {
                v.extend_from_slice(&[0x02, 0x06, 0, 0, sks[0], sks[1], sks[2], 0]);
            }
            if self.flags != 0 {
                // Stream commands descriptor (SPC-4 4.5.2.5).
                v.extend_from_slice(&[0x04, 0x02, 0, self.flags & 0xe0]);
            }
            if let Some((source, status, sense)) = &self.forwarded {
                // Forwarded sense data descriptor: SENSE DATA SOURCE, status, sense.
                let n = sense.len().min(200);
                v.extend_from_slice(&[0x0c, (2 + n) as u8, source & 0x0f, *status]);
                v.extend_from_slice(&sense[..n]);
            }
            v[7] = (v.len() - 8) as u8;
            v
        } else {
            let mut v = vec![0u8; 18];
            v[0] = 0x70;
            v[2] = self.key.0 & 0x0f | self.flags & 0xe0;
            if let Some(info) = self.information {
                v[0] |= 0x80;
                v[3..7].copy_from_slice(&(info as u32).to_be_bytes());
            }
            v[7] = 10;
            if let Some(cs) = self.command_specific {
                v[8..12].copy_from_slice(&(cs as u32).to_be_bytes());
            }
            v[12] = asc;
            v[13] = ascq;
            if let Some(sks) = self.sks() {
                v[15..18].copy_from_slice(&sks);
            }
            if let Some((source, status, sense)) = &self.forwarded {
                // COMMAND-SPECIFIC INFORMATION byte 0 (source) or 1 (destination):
                // where the status byte and sense of that device start.
                let at = v.len() as u8;
                v[8 + usize::from(source.saturating_sub(1).min(1))] = at;
                v.push(*status);
                v.extend_from_slice(&sense[..sense.len().min(200)]);
                v[7] = (v.len() - 8) as u8;
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_invalid_field_with_pointer() {
        let s = Sense::invalid_cdb_field(2, Some(5)).encode(false);
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 0x05);
        assert_eq!((s[12], s[13]), (0x24, 0x00));
        assert_eq!(&s[15..18], &[0x80 | 0x40 | 0x08 | 5, 0, 2]);
    }

    #[test]
    fn descriptor_miscompare_with_information() {
        let s = Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(513)
            .encode(true);
        assert_eq!(&s[..4], &[0x72, 0x0e, 0x1d, 0x00]);
        assert_eq!(s[7] as usize, s.len() - 8);
        assert_eq!(&s[8..12], &[0x00, 0x0a, 0x80, 0x00]);
        assert_eq!(u64::from_be_bytes(s[12..20].try_into().unwrap()), 513);
    }

    #[test]
    fn fixed_information_sets_valid() {
        let s = Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(7)
            .encode(false);
        assert_eq!(s[0], 0xf0);
        assert_eq!(&s[3..7], &[0, 0, 0, 7]);
    }
}
