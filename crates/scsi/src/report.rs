//! REPORT LUNS (SPC-4 6.33), REPORT SUPPORTED OPERATION CODES (SPC-4 6.35) and REPORT
//! SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.36).

use crate::cdb::{has_service_actions, lookup, table, DeviceType, OpcodeInfo};
use crate::sense::Sense;

/// Encodes a LUN number in SAM-5 single-level form: peripheral device addressing
/// below 256, flat space addressing up to 16383.
pub fn encode_lun(lun: u16) -> u64 {
    let b = if lun < 256 {
        [0, lun as u8]
    } else {
        [0x40 | ((lun >> 8) as u8 & 0x3f), lun as u8]
    };
    u64::from(u16::from_be_bytes(b)) << 48
}

/// Decodes the 8-byte LUN field of an iSCSI PDU; `None` for forms this target never
/// assigns (they address no LU).
pub fn decode_lun(raw: u64) -> Option<u16> {
    let b = raw.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(u16::from(b[1])),
        1 => Some((u16::from(b[0] & 0x3f) << 8) | u16::from(b[1])),
        _ => None,
    }
}

/// REPORT LUNS parameter data for the LUNs this nexus can see.
pub fn report_luns(luns: &[u16], select: u8, alloc: u32) -> Result<Vec<u8>, Sense> {
    if alloc < 16 {
        return Err(Sense::invalid_cdb_field(6, None));
    }
    let listed: &[u16] = match select {
        0x00 | 0x02 => luns,
        0x01 => &[],
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    };
    let mut b = Vec::with_capacity(8 + 8 * listed.len());
    b.extend_from_slice(&((8 * listed.len()) as u32).to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    for &l in listed {
        b.extend_from_slice(&encode_lun(l).to_be_bytes());
    }
    Ok(b)
}

fn timeouts(nominal: u32) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[1] = 0x0a;
    t[4..8].copy_from_slice(&nominal.to_be_bytes());
    t[8..12].copy_from_slice(&(nominal * 2).to_be_bytes());
    t
}

/// REPORT SUPPORTED OPERATION CODES data for reporting options 000b-011b.
pub fn supported_opcodes(
    device_type: DeviceType,
    offered: &dyn Fn(&OpcodeInfo) -> bool,
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
) -> Result<Vec<u8>, Sense> {
    if options == 0 {
        let mut list = Vec::new();
        for c in table(device_type).iter().filter(|c| offered(c)) {
            list.push(c.opcode);
            list.push(0);
            list.extend_from_slice(&u16::from(c.service_action.unwrap_or(0)).to_be_bytes());
            list.push(0);
            list.push(if rctd { 0x02 } else { 0 } | u8::from(c.service_action.is_some()));
            list.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
            if rctd {
                list.extend_from_slice(&timeouts(c.nominal_timeout));
            }
        }
        let mut b = (list.len() as u32).to_be_bytes().to_vec();
        b.extend(list);
        return Ok(b);
    }
    let with_sa = has_service_actions(device_type, opcode);
    match options {
        1 if with_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
        2 if !with_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
        _ => {}
    }
    let sa8 = u8::try_from(sa).ok();
    let entry = match (with_sa, sa8) {
        (true, Some(s)) => lookup(device_type, opcode, s).filter(|c| c.service_action == Some(s)),
        (true, None) => None,
        (false, _) if options == 3 && sa != 0 => None,
        (false, _) => lookup(device_type, opcode, 0),
    }
    .filter(|c| offered(c));
    let mut b = vec![0u8; 4];
    match entry {
        Some(c) => {
            b[1] = if rctd { 0x80 } else { 0 } | 0x03; // supported as the standard says
            b[2..4].copy_from_slice(&(c.usage.len() as u16).to_be_bytes());
            b.extend_from_slice(c.usage);
            if rctd {
                b.extend_from_slice(&timeouts(c.nominal_timeout));
            }
        }
        None => b[1] = 0x01, // not supported
    }
    Ok(b)
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: ABORT TASK, ABORT TASK SET, CLEAR
/// TASK SET, LOGICAL UNIT RESET, TARGET RESET.
pub fn supported_tmfs(repd: bool) -> Vec<u8> {
    let mut b = vec![0u8; if repd { 16 } else { 4 }];
    b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02; // ATS ATSS CTSS LURS TRS
    if repd {
        b[3] = 0x0c; // additional data length
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_encoding_round_trips() {
        for l in [0u16, 1, 255, 256, 16383] {
            assert_eq!(decode_lun(encode_lun(l)), Some(l));
        }
        assert_eq!(encode_lun(1), 0x0001_0000_0000_0000);
        assert_eq!(decode_lun(0x0001_0000_0000_0001), None);
    }

    #[test]
    fn one_command_usage_for_read10() {
        let b = supported_opcodes(DeviceType::Block, &|_| true, false, 1, 0x28, 0).unwrap();
        assert_eq!(b[1] & 7, 3);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 10);
        assert_eq!(b[4], 0x28);
        assert_eq!(b[5], 0x18, "DPO and FUA are honoured");
        assert!(supported_opcodes(DeviceType::Block, &|_| true, false, 1, 0x9e, 0x10).is_err());
        let b = supported_opcodes(DeviceType::Block, &|_| true, true, 2, 0x9e, 0x10).unwrap();
        assert_eq!(b[1], 0x83);
        assert_eq!(b.len(), 4 + 16 + 12);
        assert_eq!(
            supported_opcodes(DeviceType::Block, &|_| true, false, 1, 0xc0, 0).unwrap()[1],
            0x01
        );
    }

    #[test]
    fn report_luns_lists_only_given() {
        let b = report_luns(&[0, 3], 0, 64).unwrap();
        assert_eq!(&b[..4], &16u32.to_be_bytes());
        assert_eq!(&b[16..18], &[0, 3]);
        assert!(report_luns(&[0], 0, 8).is_err());
    }
}
