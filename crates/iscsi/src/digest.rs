//! CRC32C header and data digests (RFC 7143 §13.1, test vectors from RFC 3720 §B.4).

/// The iSCSI digest of `bytes`: CRC32C, transmitted little-endian on the wire.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues a digest over further bytes (for data segments received in pieces).
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 3720 Appendix B.4 gives the CRC register contents; the values below are the
    // resulting CRC32C as transmitted (the standard "check" form of those vectors).
    #[test]
    fn rfc3720_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46dd_794e);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113f_db5c);
        // The iSCSI read command PDU of B.4.
        let pdu: [u8; 48] = [
            0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x04, 0, 0,
            0, 0, 0x14, 0, 0, 0, 0x18, 0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(crc32c(&pdu), 0xd9963a56);
    }

    #[test]
    fn append_matches_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let part = crc32c_append(crc32c(&data[..333]), &data[333..]);
        assert_eq!(part, crc32c(&data));
    }
}
