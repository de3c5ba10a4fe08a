//! Why a command failed, typed, and the one function that turns a failure into status
//! and sense ([`Error::outcome`]). Field errors arrive already formed as a [`Sense`]
//! (the parser knows the byte and bit); every other failure is a variant here, and
//! backstore failures keep their kind, operation and offset ([`IoError`]), so a
//! kernel's EINVAL never reads as LBA OUT OF RANGE.
//!
//! The copy manager reports a failure inside a segment as COPY ABORTED with the
//! underlying condition forwarded ([`Error::copy_aborted`]), the one mapping for that.

use std::fmt;
use std::io;

use crate::lu::Outcome;
use crate::sense::{status, Asc, FieldPointer, Sense, SenseKey};

/// A failed command.
#[derive(Debug)]
pub enum Error {
    /// A condition whose sense is already exact: INVALID FIELD IN CDB with its field
    /// pointer, PARAMETER LIST LENGTH ERROR, a unit attention, COPY ABORTED.
    Sense(Sense),
    /// Another nexus's reservation covers the command (SPC-4 5.13).
    ReservationConflict,
    /// The LU cannot serve media commands now (SPC-4 Table 49 NOT READY); the
    /// additional sense says why.
    NotReady(Asc),
    /// Write-protected by configuration or by the control page's SWP.
    WriteProtected,
    /// The command's blocks run past the last LBA.
    LbaOutOfRange,
    /// VERIFY, WRITE AND VERIFY or COMPARE AND WRITE found different data, this many
    /// bytes into the compared range.
    Miscompare { offset: u64 },
    /// The backstore failed.
    Io(IoError),
    /// The device server could not do what it advertises (a bug, or state that could
    /// not be persisted).
    Internal,
}

impl From<Sense> for Error {
    fn from(s: Sense) -> Self {
        Error::Sense(s)
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

/// What the backstore was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
    Flush,
    /// Deallocation (UNMAP, WRITE SAME with UNMAP).
    Discard,
    WriteZeroes,
    /// A native copy (reflink, copy_file_range, RAM pages) into this LU.
    Copy,
    /// A provisioning query (GET LBA STATUS).
    Provisioning,
}

impl IoOp {
    fn writes(self) -> bool {
        !matches!(self, IoOp::Read | IoOp::Provisioning)
    }
}

/// How the backstore failed, as far as the answer to the initiator differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// EIO and anything not named below: the medium failed.
    Medium,
    /// ENOSPC, EDQUOT: a thin LU's storage is exhausted.
    NoSpace,
    /// The engine refused a range past its end (the LU checked first, so the store
    /// shrank underneath it).
    OutOfRange,
    /// The engine does not implement the operation.
    Unsupported,
}

/// A backstore failure with its context.
#[derive(Debug)]
pub struct IoError {
    pub kind: IoKind,
    pub op: IoOp,
    /// Byte offset in the LU where the operation began.
    pub offset: u64,
    /// The LBA to report in INFORMATION, when the operation names blocks.
    pub lba: Option<u64>,
    pub source: io::Error,
}

impl IoError {
    /// Classifies `source` from operation `op` at byte `offset`.
    pub fn new(op: IoOp, offset: u64, source: io::Error) -> Self {
        let kind = if backstore::is_out_of_range(&source) {
            IoKind::OutOfRange
        } else if matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT)) {
            IoKind::NoSpace
        } else if source.kind() == io::ErrorKind::Unsupported
            || source.raw_os_error() == Some(EOPNOTSUPP)
        {
            IoKind::Unsupported
        } else {
            IoKind::Medium
        };
        Self {
            kind,
            op,
            offset,
            lba: None,
            source,
        }
    }

    /// Reports the failure at `lba` (the first block of the failed operation).
    pub fn at_lba(mut self, lba: u64) -> Self {
        self.lba = Some(lba);
        self
    }
}

// Linux errno values; the scsi crate makes no system calls of its own.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
const EOPNOTSUPP: i32 = 95;

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?} at byte {}: {}",
            self.kind, self.op, self.offset, self.source
        )
    }
}

impl Error {
    /// Status and sense for this failure: the one mapping. Each arm names where the
    /// answer comes from.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::ReservationConflict => Outcome::status(status::RESERVATION_CONFLICT),
            other => Outcome::check(other.sense()),
        }
    }

    /// The sense data of a CHECK CONDITION (RESERVATION CONFLICT has none: SAM-5
    /// 5.3.1; it is reported here as the ASC the copy manager forwards).
    pub fn sense(&self) -> Sense {
        match self {
            Error::Sense(s) => s.clone(),
            // SPC-4 5.13.1: a conflict is a status, not sense; the copy manager's
            // forwarded form has no ASC of its own.
            Error::ReservationConflict => Sense::new(SenseKey::NO_SENSE, Asc::NO_ADDITIONAL_SENSE),
            // SPC-4 Table 49 NOT READY with the cause (SBC-3 4.17: stopped LU is
            // 04h/02h INITIALIZING COMMAND REQUIRED).
            Error::NotReady(asc) => Sense::new(SenseKey::NOT_READY, *asc),
            // SBC-3 4.11: DATA PROTECT / WRITE PROTECTED.
            Error::WriteProtected => Sense::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED),
            // SBC-3 4.5: ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.
            Error::LbaOutOfRange => Sense::illegal(Asc::LBA_OUT_OF_RANGE),
            // SBC-3 5.3/5.33: MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION, the
            // offset of the first differing byte in INFORMATION.
            Error::Miscompare { offset } => {
                Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
                    .with_information(*offset)
            }
            Error::Io(e) => {
                let s = match e.kind {
                    // SBC-4 4.7.3.7: a thin LU out of physical space.
                    IoKind::NoSpace => Sense::new(
                        SenseKey::DATA_PROTECT,
                        Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
                    ),
                    IoKind::OutOfRange => Sense::illegal(Asc::LBA_OUT_OF_RANGE),
                    IoKind::Unsupported => {
                        Sense::new(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE)
                    }
                    // SBC-3 4.14 / SPC-4 Table 50: MEDIUM ERROR with the READ or
                    // WRITE error ASC.
                    IoKind::Medium if e.op.writes() => {
                        Sense::new(SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR)
                    }
                    IoKind::Medium => {
                        Sense::new(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR)
                    }
                };
                // SBC-3 4.14: INFORMATION holds the first failed LBA when known.
                match e.lba {
                    Some(lba) if e.kind != IoKind::OutOfRange => s.with_information(lba),
                    _ => s,
                }
            }
            Error::Internal => Sense::new(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE),
        }
    }

    /// COPY ABORTED for a failure inside segment `segment` (SPC-4 6.3.2): the
    /// segment's index in COMMAND-SPECIFIC INFORMATION, a field pointer at the
    /// descriptor field that names the failing side, and THIRD-PARTY DEVICE FAILURE
    /// with the underlying ASC/ASCQ in INFORMATION (none for a conflict).
    pub fn copy_aborted(&self, segment: usize, pointer: usize) -> Sense {
        let mut c = copy_aborted(Asc::THIRD_PARTY_DEVICE_FAILURE, segment, pointer);
        if !matches!(self, Error::ReservationConflict) {
            c.information = Some(u64::from(self.sense().asc.0));
        }
        c
    }

    /// Logs a backstore failure once, where it is mapped.
    pub fn log(&self, what: &str) {
        if let Error::Io(e) = self {
            tracing::warn!(error = %e, "{what}: backstore I/O failed");
        }
    }
}

/// COPY ABORTED with `asc`, the segment in COMMAND-SPECIFIC INFORMATION and a field
/// pointer into the parameter list (SPC-4 6.3.2).
pub fn copy_aborted(asc: Asc, segment: usize, pointer: usize) -> Sense {
    let mut s = Sense::new(SenseKey::COPY_ABORTED, asc);
    s.command_specific = Some(segment as u64);
    s.field = Some(FieldPointer {
        in_cdb: false,
        byte: pointer.min(usize::from(u16::MAX)) as u16,
        bit: None,
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(op: IoOp, e: io::Error) -> Error {
        Error::Io(IoError::new(op, 4096, e).at_lba(8))
    }

    #[test]
    fn backstore_failures_map_by_kind_not_errno_guesswork() {
        let s = io(IoOp::Read, io::Error::from_raw_os_error(5)).sense();
        assert_eq!(
            (s.key, s.asc, s.information),
            (SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR, Some(8))
        );
        let s = io(IoOp::Write, io::Error::from_raw_os_error(5)).sense();
        assert_eq!((s.key, s.asc), (SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR));
        let s = io(IoOp::Write, io::Error::from_raw_os_error(ENOSPC)).sense();
        assert_eq!(
            (s.key, s.asc),
            (
                SenseKey::DATA_PROTECT,
                Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT
            )
        );
        // A kernel EINVAL is a medium error, not LBA OUT OF RANGE.
        let s = io(IoOp::Write, io::Error::from_raw_os_error(22)).sense();
        assert_eq!((s.key, s.asc), (SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR));
    }

    #[test]
    fn the_engines_own_range_refusal_is_lba_out_of_range() {
        let store = backstore::RamBackstore::new(4096);
        let e = backstore::Backstore::read_at(&store, &mut [0u8; 512], 4096).unwrap_err();
        let s = io(IoOp::Read, e).sense();
        assert_eq!((s.asc, s.information), (Asc::LBA_OUT_OF_RANGE, None));
    }

    #[test]
    fn conflicts_are_a_status_and_forward_no_asc() {
        assert_eq!(
            Error::ReservationConflict.outcome().status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(
            Error::ReservationConflict.copy_aborted(1, 20).information,
            None
        );
        let c = Error::WriteProtected.copy_aborted(2, 54);
        assert_eq!(
            (c.key, c.asc),
            (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE)
        );
        assert_eq!((c.information, c.command_specific), (Some(0x2700), Some(2)));
    }
}
