//! Mode parameters (SPC-4 7.5, SBC-3 6.4): the pages this LU keeps, MODE SENSE
//! rendering and MODE SELECT validation.
//!
//! Block devices: 01h read-write error recovery, 08h caching (WCE changeable), 0Ah
//! control (D_SENSE and SWP changeable), 1Ch informational exceptions control.
//! Stream devices (SSC-3): 0Ah control, 0Fh data compression (no compression:
//! DCC 0), 10h device configuration, 11h medium partition (one partition); the block
//! descriptor carries the density code and the block length (0: variable), which
//! MODE SELECT changes. Parameters are not saveable: PC=11b and SP=1 are refused.

use crate::params::ModeSelectList;
use crate::sense::{Asc, Sense};

/// The changeable mode state of one LU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeValues {
    /// Caching page WCE: writes may complete before reaching stable storage.
    pub wce: bool,
    /// Control page D_SENSE: descriptor-format sense data.
    pub d_sense: bool,
    /// Control page SWP: software write protect.
    pub swp: bool,
    /// Stream devices: the block descriptor's block length (0 = variable blocks).
    pub block_len: u32,
}

impl Default for ModeValues {
    fn default() -> Self {
        Self {
            wce: true,
            d_sense: false,
            swp: false,
            block_len: 0,
        }
    }
}

/// What the block descriptor describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// A block device's capacity and logical block length.
    Block { num_blocks: u64, block_size: u32 },
    /// A tape drive: the density code and the block length of [`ModeValues`], and
    /// the largest block length MODE SELECT may set.
    Stream { density: u8, max_block: u32 },
}

impl Geometry {
    fn pages(self) -> &'static [u8] {
        match self {
            Geometry::Block { .. } => &[0x01, 0x08, 0x0a, 0x1c],
            Geometry::Stream { .. } => &[0x0a, 0x0f, 0x10, 0x11],
        }
    }
}

/// Page contents for page control `pc` (0 current, 1 changeable, 2 default).
fn page(code: u8, pc: u8, v: &ModeValues) -> Vec<u8> {
    let v = match pc {
        2 => ModeValues::default(),
        _ => v.clone(),
    };
    let changeable = pc == 1;
    match code {
        0x01 => {
            let mut p = vec![0u8; 12];
            p[0] = 0x01;
            p[1] = 10;
            if !changeable {
                p[2] = 0x80; // AWRE
            }
            p
        }
        0x08 => {
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 18;
            p[2] = if changeable || v.wce { 0x04 } else { 0 };
            p
        }
        0x0a => {
            let mut p = vec![0u8; 12];
            p[0] = 0x0a;
            p[1] = 10;
            if changeable {
                p[2] = 0x04;
                p[4] = 0x08;
            } else {
                p[2] = if v.d_sense { 0x04 } else { 0 } | 0x02; // GLTSD: no log pages
                p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                p[4] = if v.swp { 0x08 } else { 0 };
                p[8..10].copy_from_slice(&0xffffu16.to_be_bytes()); // busy timeout: unlimited
            }
            p
        }
        0x0f => {
            // Data compression (SSC-3): DCC 0, the drive cannot compress; data
            // is stored as sent.
            let mut p = vec![0u8; 16];
            p[0] = 0x0f;
            p[1] = 14;
            p
        }
        0x10 => {
            // Device configuration (SSC-3): EOD defined by the format (EEG),
            // buffered data synchronized at early warning (SEW).
            let mut p = vec![0u8; 16];
            p[0] = 0x10;
            p[1] = 14;
            if !changeable {
                p[10] = 0x10 | 0x08;
            }
            p
        }
        0x11 => {
            // Medium partition (SSC-3): one partition, none can be added.
            let mut p = vec![0u8; 8];
            p[0] = 0x11;
            p[1] = 6;
            if !changeable {
                p[5] = 0x03; // MEDIUM FORMAT RECOGNITION: format and partition
            }
            p
        }
        _ => {
            let mut p = vec![0u8; 12];
            p[0] = 0x1c;
            p[1] = 10;
            if !changeable {
                p[2] = 0x08; // DEXCPT: no informational exception reporting
            }
            p
        }
    }
}

/// MODE SENSE(6)/(10) data.
#[allow(clippy::too_many_arguments)]
pub fn sense(
    v: &ModeValues,
    ten: bool,
    dbd: bool,
    llbaa: bool,
    pc: u8,
    code: u8,
    subpage: u8,
    geometry: Geometry,
    write_protected: bool,
) -> Result<Vec<u8>, Sense> {
    if pc == 3 {
        return Err(Sense::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED));
    }
    let pages_of = geometry.pages();
    let mut pages = Vec::new();
    match (code, subpage) {
        // Page 0 (no page format): header and block descriptor only; how st reads a
        // tape's block length and density (MODE SENSE(6), 12 bytes).
        (0x00, 0x00) if matches!(geometry, Geometry::Stream { .. }) => {}
        (0x3f, 0x00 | 0xff) => pages_of.iter().for_each(|&c| pages.extend(page(c, pc, v))),
        (c, 0x00) if pages_of.contains(&c) => pages.extend(page(c, pc, v)),
        (c, _) if pages_of.contains(&c) || c == 0x3f => {
            return Err(Sense::invalid_cdb_field(3, None))
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(5))),
    }
    // Block descriptor (SPC-4 7.5.5): short form, or long form with LLBAA in MODE SENSE(10).
    let mut bd = Vec::new();
    if let (false, Geometry::Stream { density, .. }) = (dbd, geometry) {
        // SSC-3: density code, NUMBER OF BLOCKS 0 (the rest of the medium),
        // block length (0: variable). Changeable: the block length.
        bd.push(if pc == 1 { 0 } else { density });
        bd.extend_from_slice(&[0, 0, 0, 0]);
        let len = match pc {
            1 => 0x00ff_ffff,
            2 => 0,
            _ => v.block_len,
        };
        bd.extend_from_slice(&len.to_be_bytes()[1..]);
    }
    if let (
        false,
        Geometry::Block {
            num_blocks,
            block_size,
        },
    ) = (dbd, geometry)
    {
        if ten && llbaa {
            bd.extend_from_slice(&num_blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&block_size.to_be_bytes());
        } else {
            bd.extend_from_slice(&u32::try_from(num_blocks).unwrap_or(u32::MAX).to_be_bytes());
            bd.push(0);
            bd.extend_from_slice(&block_size.to_be_bytes()[1..]);
        }
    }
    // Device-specific parameter: WP, and DPOFUA (SBC-3 6.4.1) or BUFFERED MODE 001b
    // (SSC-3: GOOD once the data is in the buffer; WRITE FILEMARKS syncs).
    let dsp = if write_protected { 0x80 } else { 0 } | 0x10;
    let mut out = Vec::new();
    if ten {
        let len = 6 + bd.len() + pages.len();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&[0, dsp, u8::from(ten && llbaa && !dbd), 0]);
        out.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let len = 3 + bd.len() + pages.len();
        out.extend_from_slice(&[len.min(255) as u8, 0, dsp, bd.len() as u8]);
    }
    out.extend(bd);
    out.extend(pages);
    Ok(out)
}

/// Validates a MODE SELECT parameter list against the current values and returns the
/// new values. Any change to a bit that is not changeable is INVALID FIELD IN
/// PARAMETER LIST pointing at it.
pub fn select(
    cur: &ModeValues,
    ten: bool,
    params: &[u8],
    geometry: Geometry,
) -> Result<ModeValues, Sense> {
    let list = ModeSelectList::parse(ten, params)?;
    let mut new = cur.clone();
    match (list.block_descriptor, geometry) {
        (Some(bd), Geometry::Block { block_size, .. }) if bd.block_len != block_size => {
            return Err(Sense::invalid_param_field(bd.block_len_at, None));
        }
        (Some(bd), Geometry::Stream { density, max_block }) => {
            // Density 00h (default) or 7Fh (no change) or the one this drive writes.
            let code = if bd.long { 0 } else { (bd.blocks >> 24) as u8 };
            if !matches!(code, 0 | 0x7f) && code != density {
                let at = bd.block_len_at - if bd.long { 12 } else { 5 };
                return Err(Sense::invalid_param_field(at, None));
            }
            if bd.block_len > max_block {
                return Err(Sense::invalid_param_field(bd.block_len_at, None));
            }
            new.block_len = bd.block_len;
        }
        _ => {}
    }
    for p in &list.pages {
        let (at, code, sent) = (usize::from(p.at), p.code(), &p.bytes);
        if p.spf() || !geometry.pages().contains(&code) {
            return Err(Sense::invalid_param_field(p.at, None));
        }
        let current = page(code, 0, &new);
        let mask = page(code, 1, &new);
        let len = sent.len();
        if len != current.len() {
            return Err(Sense::invalid_param_field((at + 1) as u16, None));
        }
        for i in 2..len {
            let diff = (sent[i] ^ current[i]) & !mask[i];
            if diff != 0 {
                return Err(Sense::invalid_param_field(
                    (at + i) as u16,
                    Some(7 - diff.leading_zeros() as u8),
                ));
            }
        }
        match code {
            0x08 => new.wce = sent[2] & 0x04 != 0,
            0x0a => {
                new.d_sense = sent[2] & 0x04 != 0;
                new.swp = sent[4] & 0x08 != 0;
            }
            _ => {}
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK512: Geometry = Geometry::Block {
        num_blocks: 1,
        block_size: 512,
    };

    #[test]
    fn sense6_all_pages_layout() {
        let d = sense(
            &ModeValues::default(),
            false,
            false,
            false,
            0,
            0x3f,
            0,
            Geometry::Block {
                num_blocks: 1000,
                block_size: 512,
            },
            false,
        )
        .unwrap();
        assert_eq!(d[0] as usize, d.len() - 1);
        assert_eq!(d[2], 0x10);
        assert_eq!(d[3], 8);
        assert_eq!(&d[4..8], &1000u32.to_be_bytes());
        assert_eq!(&d[9..12], &[0, 2, 0]);
        assert_eq!(d[12], 0x01);
    }

    #[test]
    fn select_changes_only_changeable_bits() {
        let cur = ModeValues::default();
        let mut ctl = page(0x0a, 0, &cur);
        ctl[2] |= 0x04;
        let mut params = vec![0, 0, 0, 0];
        params.extend(&ctl);
        assert!(select(&cur, false, &params, BLOCK512).unwrap().d_sense);
        params[4 + 3] ^= 0x10; // QAM is not changeable
        let e = select(&cur, false, &params, BLOCK512).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(e.field.unwrap().byte, 7);
    }

    #[test]
    fn saved_values_refused() {
        let e = sense(
            &ModeValues::default(),
            false,
            true,
            false,
            3,
            0x08,
            0,
            Geometry::Block {
                num_blocks: 1,
                block_size: 512,
            },
            false,
        )
        .unwrap_err();
        assert_eq!(e.asc, Asc::SAVING_PARAMETERS_NOT_SUPPORTED);
    }
}
