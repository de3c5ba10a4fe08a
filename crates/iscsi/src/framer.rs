//! Framing: where one PDU ends and the next begins (RFC 7143 §11.1).
//!
//! ```text
//! BHS (48) | AHS (TotalAHSLength*4) | HeaderDigest (4)? | Data (DSL, padded to 4) | DataDigest (4)?
//! ```
//!
//! [`Layout`] computes the sizes from a BHS, so a reader can fetch the header, decide
//! where the data belongs, and read the data segment straight into that buffer.
//! [`decode`] is the whole-buffer form used by tests, the fuzzer and the test initiator.

use crate::digest;
use crate::pdu::{BhsPrefix, Request, BHS_LEN};

/// Errors in a peer's PDU stream. Each is answered with Reject or a logged close,
/// never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("header digest mismatch")]
    HeaderDigest,
    #[error("data digest mismatch")]
    DataDigest,
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("malformed additional header segment")]
    BadAhs,
    #[error("data segment of {len} bytes exceeds the negotiated limit of {max}")]
    DataTooLong { len: usize, max: usize },
}

/// Which digests are in force (both off until login completes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestConfig {
    pub header: bool,
    pub data: bool,
}

/// The wire sizes of one PDU, derived from its BHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub prefix: BhsPrefix,
    /// AHS plus header digest: what follows the BHS before the data segment.
    pub header_tail: usize,
    /// Data segment padded to a multiple of 4, plus data digest.
    pub data_tail: usize,
}

impl Layout {
    pub fn of(bhs: &[u8; BHS_LEN], digests: DigestConfig) -> Self {
        let prefix = BhsPrefix::parse(bhs);
        let header_tail = prefix.total_ahs_len + if digests.header { 4 } else { 0 };
        let data_tail = if prefix.data_segment_len == 0 {
            0
        } else {
            pad4(prefix.data_segment_len) + if digests.data { 4 } else { 0 }
        };
        Self {
            prefix,
            header_tail,
            data_tail,
        }
    }

    pub fn total(&self) -> usize {
        BHS_LEN + self.header_tail + self.data_tail
    }

    /// Checks the header digest over BHS + AHS; `tail` is the `header_tail` bytes.
    pub fn check_header(
        &self,
        bhs: &[u8; BHS_LEN],
        tail: &[u8],
        digests: DigestConfig,
    ) -> Result<(), PduError> {
        if digests.header {
            let ahs = &tail[..self.prefix.total_ahs_len];
            let got = le32(&tail[self.prefix.total_ahs_len..self.prefix.total_ahs_len + 4]);
            let want = digest::crc32c_append(digest::crc32c(bhs), ahs);
            if got != want {
                return Err(PduError::HeaderDigest);
            }
        }
        Ok(())
    }
}

/// Rounds up to the 4-byte boundary data segments are padded to.
pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Digest of a data segment including its padding, as RFC 7143 §11.1 defines it.
pub fn data_digest(data: &[u8]) -> u32 {
    let pad = pad4(data.len()) - data.len();
    digest::crc32c_append(digest::crc32c(data), &[0u8; 3][..pad])
}

/// One whole PDU as decoded from a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bhs: [u8; BHS_LEN],
    pub ahs: Vec<u8>,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn request(&self) -> Result<Request, PduError> {
        Request::parse(&self.bhs, &self.ahs)
    }
}

/// Decodes one PDU from the front of `buf`. `Ok(None)` means more bytes are needed;
/// `max_data` bounds the data segment (the negotiated MaxRecvDataSegmentLength, or the
/// login limit).
pub fn decode(
    buf: &[u8],
    digests: DigestConfig,
    max_data: usize,
) -> Result<Option<(Frame, usize)>, PduError> {
    let Some(head) = buf.get(..BHS_LEN) else {
        return Ok(None);
    };
    let mut bhs = [0u8; BHS_LEN];
    bhs.copy_from_slice(head);
    let layout = Layout::of(&bhs, digests);
    if layout.prefix.data_segment_len > max_data {
        return Err(PduError::DataTooLong {
            len: layout.prefix.data_segment_len,
            max: max_data,
        });
    }
    if buf.len() < layout.total() {
        return Ok(None);
    }
    let tail = &buf[BHS_LEN..BHS_LEN + layout.header_tail];
    layout.check_header(&bhs, tail, digests)?;
    let ahs = tail[..layout.prefix.total_ahs_len].to_vec();
    let dstart = BHS_LEN + layout.header_tail;
    let dlen = layout.prefix.data_segment_len;
    let data = buf[dstart..dstart + dlen].to_vec();
    if digests.data && dlen > 0 {
        let at = dstart + pad4(dlen);
        if le32(&buf[at..at + 4]) != data_digest(&buf[dstart..dstart + dlen]) {
            return Err(PduError::DataDigest);
        }
    }
    Ok(Some((Frame { bhs, ahs, data }, layout.total())))
}

/// Encodes a PDU (BHS, optional AHS, data) with padding and digests into `out`.
pub fn encode(
    bhs: &[u8; BHS_LEN],
    ahs: &[u8],
    data: &[u8],
    digests: DigestConfig,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(bhs);
    out.extend_from_slice(ahs);
    if digests.header {
        let crc = digest::crc32c_append(digest::crc32c(bhs), ahs);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    if !data.is_empty() {
        out.extend_from_slice(data);
        out.extend_from_slice(&[0u8; 3][..pad4(data.len()) - data.len()]);
        if digests.data {
            out.extend_from_slice(&data_digest(data).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nop_out(data_len: usize) -> [u8; BHS_LEN] {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x40;
        bhs[1] = 0x80;
        bhs[5] = (data_len >> 16) as u8;
        bhs[6] = (data_len >> 8) as u8;
        bhs[7] = data_len as u8;
        bhs[16..20].copy_from_slice(&[0, 0, 0, 9]);
        bhs
    }

    #[test]
    fn partial_then_whole() {
        let mut out = Vec::new();
        let d = DigestConfig {
            header: true,
            data: true,
        };
        encode(&nop_out(5), &[], b"hello", d, &mut out);
        assert_eq!(out.len(), 48 + 4 + 8 + 4);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], d, 8192).unwrap(), None);
        }
        let (f, used) = decode(&out, d, 8192).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(f.data, b"hello");
    }

    #[test]
    fn digest_errors_detected() {
        let d = DigestConfig {
            header: true,
            data: true,
        };
        let mut out = Vec::new();
        encode(&nop_out(5), &[], b"hello", d, &mut out);
        let mut bad = out.clone();
        bad[20] ^= 1;
        assert_eq!(decode(&bad, d, 8192), Err(PduError::HeaderDigest));
        let mut bad = out.clone();
        bad[53] ^= 1;
        assert_eq!(decode(&bad, d, 8192), Err(PduError::DataDigest));
    }

    #[test]
    fn oversized_data_rejected_before_buffering() {
        let bhs = nop_out(0x10000);
        assert!(matches!(
            decode(&bhs, DigestConfig::default(), 8192),
            Err(PduError::DataTooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300), h: bool, dd: bool) {
            let d = DigestConfig { header: h, data: dd };
            let mut out = Vec::new();
            encode(&nop_out(data.len()), &[], &data, d, &mut out);
            let (f, used) = decode(&out, d, 1 << 16).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(f.data, data);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200), h: bool, dd: bool) {
            let d = DigestConfig { header: h, data: dd };
            if let Ok(Some((f, _))) = decode(&buf, d, 8192) {
                let _ = f.request();
            }
        }
    }
}
