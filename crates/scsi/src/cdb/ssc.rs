//! SSC CDBs: the stream device type's own commands. Shared SPC opcodes are
//! parsed by [`Command::from_row`]; SSC reuses some SBC opcodes (08h, 0Ah, 1Bh,
//! 34h, 91h) with other meanings, which is why parsing is keyed by device type.

use codec::be;

use super::{Command, OpcodeInfo};
use crate::sense::Sense;

/// The typed command for an SSC row, or `None` for a shared SPC row.
pub(super) fn from_row(info: &OpcodeInfo, c: &[u8]) -> Result<Option<Command>, Sense> {
    let len24 = || be::u24(c, 2);
    Ok(Some(match info.opcode {
        0x01 => Command::Rewind {
            immed: c[1] & 1 != 0,
        },
        0x05 => Command::ReadBlockLimits {
            mloi: c[1] & 1 != 0,
        },
        0x08 => {
            let (fixed, sili) = (c[1] & 1 != 0, c[1] & 2 != 0);
            // SSC-3: SILI with FIXED is invalid.
            if fixed && sili {
                return Err(Sense::invalid_cdb_field(1, Some(1)));
            }
            Command::TapeRead {
                fixed,
                sili,
                len: len24(),
            }
        }
        0x0a => Command::TapeWrite {
            fixed: c[1] & 1 != 0,
            len: len24(),
        },
        0x10 => Command::WriteFilemarks {
            immed: c[1] & 1 != 0,
            count: len24(),
        },
        0x11 => {
            let code = c[1] & 0x0f;
            if !matches!(code, 0 | 1 | 3) {
                return Err(Sense::invalid_cdb_field(1, Some(3)));
            }
            // A 24-bit two's complement count (SSC-3).
            let raw = len24();
            let count = i64::from(((raw << 8) as i32) >> 8);
            Command::Space { code, count }
        }
        0x91 => {
            let code = c[1] & 0x0f;
            if !matches!(code, 0 | 1 | 3) {
                return Err(Sense::invalid_cdb_field(1, Some(3)));
            }
            Command::Space {
                code,
                count: be::u64(c, 4) as i64,
            }
        }
        0x19 => Command::Erase {
            long: c[1] & 1 != 0,
            immed: c[1] & 2 != 0,
        },
        0x1b => Command::LoadUnload {
            immed: c[1] & 1 != 0,
            hold: c[4] & 8 != 0,
            eot: c[4] & 4 != 0,
            reten: c[4] & 2 != 0,
            load: c[4] & 1 != 0,
        },
        0x2b => Command::Locate {
            immed: c[1] & 1 != 0,
            cp: c[1] & 2 != 0,
            partition: c[8],
            object: be::u32(c, 3).into(),
        },
        0x92 => Command::Locate {
            immed: c[1] & 1 != 0,
            cp: c[1] & 2 != 0,
            partition: c[3],
            object: be::u64(c, 4),
        },
        0x34 => Command::ReadPosition {
            sa: c[1] & 0x1f,
            alloc: be::u16(c, 7).into(),
        },
        0x44 => Command::ReportDensity {
            media: c[1] & 1 != 0,
            medium_type: c[1] & 2 != 0,
            alloc: be::u16(c, 7).into(),
        },
        0x1e => Command::PreventAllow { prevent: c[4] & 3 },
        _ => return Ok(None),
    }))
}
