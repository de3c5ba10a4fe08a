//! Standard INQUIRY data (SPC-4 6.6.2) and the vital product data pages (SPC-4 7.8,
//! SBC-3 6.5).

use crate::cdb::DeviceType;
use crate::lu::{LogicalUnit, Nexus, MAX_TRANSFER_BYTES};
use crate::sbc;
use crate::sense::Sense;

/// VPD pages a block LU returns, in ascending order (SPC-4 7.8.14 requires the order).
pub const SUPPORTED_VPD: &[u8] = &[0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2];
/// VPD pages a tape LU returns: no block device pages.
pub const SUPPORTED_VPD_STREAM: &[u8] = &[0x00, 0x80, 0x83, 0x86, 0x8f];

/// Version descriptors (SPC-4 Table 148): SAM-5, iSCSI, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00a0, 0x0960, 0x0460, 0x04c0];
/// For a tape LU: SAM-5, iSCSI, SPC-4, SSC-3.
const VERSION_DESCRIPTORS_STREAM: [u16; 4] = [0x00a0, 0x0960, 0x0460, 0x0400];

/// Protocol identifier for iSCSI (SPC-4 7.6.1).
const PROTOCOL_ISCSI: u8 = 0x5;

/// Fills a fixed-width ASCII field: printable characters of `s`, space padded.
pub(crate) fn ascii_field(out: &mut [u8], s: &str) {
    out.fill(b' ');
    for (d, c) in out
        .iter_mut()
        .zip(s.bytes().filter(|b| (0x20..0x7f).contains(b)))
    {
        *d = c;
    }
}

/// The 96-byte standard INQUIRY data.
pub fn standard(lu: &LogicalUnit) -> Vec<u8> {
    let id = lu.identity();
    let mut b = vec![0u8; 96];
    b[0] = lu.device_type().code(); // peripheral qualifier 000b: connected
    if lu.removable() {
        b[1] = 0x80; // RMB
    }
    b[2] = 0x06; // SPC-4
    b[3] = 0x10 | 0x02; // HISUP, response data format 2
    b[4] = (b.len() - 5) as u8;
    b[5] = 0x08; // 3PC: EXTENDED COPY and RECEIVE COPY RESULTS
    b[7] = 0x02; // CMDQUE
    ascii_field(&mut b[8..16], &id.vendor);
    ascii_field(&mut b[16..32], &id.product);
    ascii_field(&mut b[32..36], &id.revision);
    let versions = match lu.device_type() {
        DeviceType::Block => &VERSION_DESCRIPTORS,
        DeviceType::Stream => &VERSION_DESCRIPTORS_STREAM,
    };
    for (i, v) in versions.iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    b
}

/// INQUIRY data for a LUN that does not exist for this nexus (SPC-4 6.6.2: peripheral
/// qualifier 011b, device type 1Fh).
pub fn standard_no_lu() -> Vec<u8> {
    let mut b = vec![0u8; 36];
    b[0] = 0x7f;
    b[2] = 0x06;
    b[3] = 0x12;
    b[4] = 31;
    b
}

/// One VPD page, or INVALID FIELD IN CDB for a page not supported.
pub fn vpd(lu: &LogicalUnit, nexus: &Nexus, page: u8) -> Result<Vec<u8>, Sense> {
    let stream = lu.device_type() == DeviceType::Stream;
    let supported = if stream {
        SUPPORTED_VPD_STREAM
    } else {
        SUPPORTED_VPD
    };
    if !supported.contains(&page) {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    let body = match page {
        0x00 => supported.to_vec(),
        0x80 => lu.identity().serial.as_bytes().to_vec(),
        0x83 => device_identification(lu, nexus),
        0x86 => extended_inquiry(),
        0x8f => crate::tpc::vpd_page(lu.block_size(), lu.backstore().snapshot().is_some()),
        0xb0 => block_limits(lu),
        0xb1 => block_device_characteristics(lu),
        0xb2 => logical_block_provisioning(lu),
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    };
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&[0x00, page]);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(&body);
    Ok(b)
}

fn designator(out: &mut Vec<u8>, code_set: u8, piv_assoc_type: u8, value: &[u8]) {
    let proto = if piv_assoc_type & 0x80 != 0 {
        PROTOCOL_ISCSI << 4
    } else {
        0
    };
    out.extend_from_slice(&[proto | code_set, piv_assoc_type, 0, value.len() as u8]);
    out.extend_from_slice(value);
}

/// SCSI name string: NUL-terminated, padded with NULs to a multiple of 4 (SPC-4 7.8.6.11).
fn name_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// Device Identification VPD page (SPC-4 7.8.6).
fn device_identification(lu: &LogicalUnit, nexus: &Nexus) -> Vec<u8> {
    let id = lu.identity();
    let mut d = Vec::new();
    // LU: NAA (type 3), binary.
    designator(&mut d, 0x1, 0x03, &id.naa);
    // LU: T10 vendor ID (type 1), ASCII: vendor padded to 8, then the unit serial.
    designator(&mut d, 0x2, 0x01, &id.t10_vendor_id());
    // LU: EUI-64 (type 2) and SCSI name string "naa.<hex>" (type 8), both derived
    // from the NAA, so EXTENDED COPY CSCDs may name the LU any of these ways.
    designator(&mut d, 0x1, 0x02, &id.eui64());
    designator(&mut d, 0x3, 0x08, &name_string(&id.scsi_name()));
    // Target port: SCSI name string "<target>,t,0x<tpgt>" (PIV, association 01b, type 8).
    let port = name_string(&format!("{},t,0x{:04x}", nexus.target_name, nexus.tpgt));
    designator(&mut d, 0x3, 0x80 | 0x10 | 0x08, &port);
    // Target port: relative target port identifier (type 4).
    designator(
        &mut d,
        0x1,
        0x80 | 0x10 | 0x04,
        &u32::from(nexus.relative_port).to_be_bytes(),
    );
    // Target port group (type 5).
    designator(
        &mut d,
        0x1,
        0x80 | 0x10 | 0x05,
        &u32::from(nexus.tpgt).to_be_bytes(),
    );
    // Target device: SCSI name string (association 10b).
    designator(
        &mut d,
        0x3,
        0x80 | 0x20 | 0x08,
        &name_string(&nexus.target_name),
    );
    d
}

/// Extended INQUIRY Data VPD page (SPC-4 7.8.7).
fn extended_inquiry() -> Vec<u8> {
    let mut b = vec![0u8; 60];
    b[1] = 0x07; // HEADSUP, ORDSUP, SIMPSUP
    b[2] = 0x01; // V_SUP: volatile cache, flushed by SYNCHRONIZE CACHE
    b
}

/// Block Limits VPD page (SBC-3 6.5.3).
fn block_limits(lu: &LogicalUnit) -> Vec<u8> {
    let bs = u64::from(lu.block_size());
    let mut b = vec![0u8; 60];
    // Optimal transfer length granularity: 4 KiB worth of blocks.
    b[2..4].copy_from_slice(&((4096 / bs).max(1) as u16).to_be_bytes());
    // Offsets below are the page's minus the 4-byte header.
    b[1] = sbc::MAX_COMPARE_AND_WRITE_BLOCKS as u8;
    b[4..8].copy_from_slice(&((MAX_TRANSFER_BYTES / bs) as u32).to_be_bytes());
    b[8..12].copy_from_slice(&(((1 << 20) / bs) as u32).to_be_bytes());
    if lu.thin() {
        b[16..20].copy_from_slice(&sbc::MAX_UNMAP_LBA_COUNT.to_be_bytes());
        b[20..24].copy_from_slice(&sbc::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
        // Optimal granularity: the backstore's deallocation unit, ≤ 1 MiB and a
        // divisor of it (what ESXi accepts); UGAVALID with alignment 0.
        let unit = lu
            .backstore()
            .thin_provisioning()
            .map_or(4096, |t| t.discard_granularity());
        let gran = (reported_unmap_unit(unit) / bs).max(1) as u32;
        b[24..28].copy_from_slice(&gran.to_be_bytes());
        b[28] = 0x80;
    }
    b[32..40].copy_from_slice(&lu.max_write_same_blocks().to_be_bytes());
    let atomic = lu.atomic_unit_blocks() as u32;
    b[40..44].copy_from_slice(&((sbc::MAX_ATOMIC_BYTES / bs) as u32).to_be_bytes());
    b[44..48].copy_from_slice(&atomic.to_be_bytes());
    b[48..52].copy_from_slice(&atomic.to_be_bytes());
    b
}

/// The OPTIMAL UNMAP GRANULARITY to report, in bytes, for a deallocation unit:
/// itself when it divides 1 MiB, else 1 MiB. ESXi turns automatic UNMAP off above
/// 1 MiB, and an RBD image's default 4 MiB objects are above it; UNMAP of part of an
/// object still zeroes it (and the OSD's store frees the extent).
fn reported_unmap_unit(unit: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    if unit == 0 || unit > MIB || !MIB.is_multiple_of(unit) {
        MIB
    } else {
        unit
    }
}

#[cfg(test)]
#[test]
fn unmap_granularity_divides_one_mib() {
    assert_eq!(reported_unmap_unit(4096), 4096);
    assert_eq!(reported_unmap_unit(64 << 10), 64 << 10);
    assert_eq!(reported_unmap_unit(1 << 20), 1 << 20);
    assert_eq!(reported_unmap_unit(4 << 20), 1 << 20);
    assert_eq!(reported_unmap_unit(3 << 19), 1 << 20);
    assert_eq!(reported_unmap_unit(0), 1 << 20);
}

/// Logical Block Provisioning VPD page (SBC-4 6.6.4).
fn logical_block_provisioning(lu: &LogicalUnit) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    if lu.thin() {
        // LBPU, LBPWS, LBPWS10; LBPRZ (001b: deallocated blocks read as zeros).
        b[1] = 0x80 | 0x40 | 0x20 | 0x04;
        b[2] = 0x02; // provisioning type: thin
    }
    b
}

/// Block Device Characteristics VPD page (SBC-3 6.5.2).
fn block_device_characteristics(lu: &LogicalUnit) -> Vec<u8> {
    let mut b = vec![0u8; 60];
    b[1] = 0x01; // non-rotating medium
    if lu.block_erase_supported() {
        // WABEREQ 01b (SBC-4 6.6.2): after SANITIZE BLOCK ERASE a read returns
        // GOOD, the blocks being deallocated and read as zeros (LBPRZ).
        b[3] = 0x40;
    }
    b
}
