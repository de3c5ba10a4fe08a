//! LU identities derived from names: NAA type 6 designators under the local
//! company ID, and parsing configured WWNs.

/// FNV-1a over 128 bits: a stable (across builds and restarts) digest for deriving LU
/// identities from their configured names.
pub(super) fn fnv128(parts: &[&[u8]]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for p in parts {
        for &b in *p {
            h ^= u128::from(b);
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// IEEE company ID used in derived NAA designators: a locally administered value (the
/// X bit set, M bit clear), so it cannot collide with a registered vendor's.
pub(super) const LOCAL_COMPANY_ID: u32 = 0x5a_0e_7c;

/// NAA type 6 (IEEE Registered Extended, SPC-4 7.8.6.6.5) designator derived from the
/// target name and LUN id: stable across restarts, distinct per LU.
pub fn derive_naa(target: &str, lun: u16) -> [u8; 16] {
    naa_from(fnv128(&[target.as_bytes(), &lun.to_be_bytes()]))
}

/// NAA designator of a named `[[lu]]`: derived from its name alone, so mapping it
/// into other targets or under other LUN numbers never changes it.
pub fn derive_lu_naa(name: &str) -> [u8; 16] {
    naa_from(fnv128(&[b"lu:", name.as_bytes()]))
}

pub(super) fn naa_from(h: u128) -> [u8; 16] {
    let mut v = h.to_be_bytes();
    // NAA(4) = 6 | company id (24) | vendor specific (100 bits).
    let id = LOCAL_COMPANY_ID;
    v[0] = 0x60 | ((id >> 20) as u8 & 0x0f);
    v[1] = (id >> 12) as u8;
    v[2] = (id >> 4) as u8;
    v[3] = ((id as u8 & 0x0f) << 4) | (v[3] & 0x0f);
    v
}

pub(super) fn parse_wwn(s: &str) -> Option<[u8; 16]> {
    let hex = s.strip_prefix("naa.").unwrap_or(s);
    if hex.len() != 32 || !hex.starts_with('6') {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
