//! The vocabulary of a command's execution: who asks ([`Nexus`]), with what
//! ([`Ctx`]), about which LU ([`LuIdentity`]), and what comes back ([`Outcome`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::inquiry;
use crate::pr::NexusKey;
use crate::sense::{status, Sense};

/// The I_T nexus a command arrives on (SAM-5 4.8): who is asking, through which port.
#[derive(Debug, Clone)]
pub struct Nexus {
    /// Server-unique id of the session (I_T nexus).
    pub id: u64,
    pub initiator: Arc<str>,
    pub isid: [u8; 6],
    pub target_name: Arc<str>,
    pub tpgt: u16,
    pub relative_port: u16,
}

impl Nexus {
    /// The nexus as persistent reservations identify it.
    pub fn key(&self) -> NexusKey {
        NexusKey {
            initiator: self.initiator.clone(),
            isid: self.isid,
            relative_port: self.relative_port,
        }
    }
}

/// What a command runs with besides its CDB and data: the transport's Expected Data
/// Transfer Length, the flag that TMFs and session loss raise to abort it, and the
/// server's copy manager.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    pub edtl: u32,
    pub abort: &'a AtomicBool,
    pub copy: Option<&'a dyn crate::tpc::CopyManager>,
}

/// What the LU says about itself in INQUIRY and VPD pages.
#[derive(Debug, Clone)]
pub struct LuIdentity {
    pub vendor: String,
    pub product: String,
    pub revision: String,
    pub serial: String,
    /// NAA type 6 designator (16 bytes), unique per LU across the server.
    pub naa: [u8; 16],
}

impl LuIdentity {
    /// EUI-64 designator: the NAA's company ID, then its last 40 bits.
    pub fn eui64(&self) -> [u8; 8] {
        let company = codec::be::u32(&self.naa, 0) >> 4;
        let c = (company & 0x00ff_ffff).to_be_bytes();
        let mut e = [0u8; 8];
        e[..3].copy_from_slice(&c[1..]);
        e[3..].copy_from_slice(&self.naa[11..]);
        e
    }

    /// SCSI name string designator of the LU: "naa." and the NAA in hex.
    pub fn scsi_name(&self) -> String {
        format!("naa.{}", codec::hex(&self.naa))
    }

    /// T10 vendor ID designator: vendor padded to 8 bytes, then the serial.
    pub fn t10_vendor_id(&self) -> Vec<u8> {
        let mut t10 = vec![b' '; 8];
        inquiry::ascii_field(&mut t10, &self.vendor);
        t10.extend_from_slice(self.serial.as_bytes());
        t10
    }
}

/// Result of one command. Data-In, if any, is the first `data_in_len` bytes of the
/// buffer the caller passed to [`LogicalUnit::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    pub sense: Option<Sense>,
    /// Encode sense in descriptor format (control mode page D_SENSE).
    pub descriptor_sense: bool,
    pub data_in_len: usize,
}

impl Outcome {
    pub fn good(data_in_len: usize) -> Self {
        Self {
            status: status::GOOD,
            sense: None,
            descriptor_sense: false,
            data_in_len,
        }
    }
    pub fn status(status: u8) -> Self {
        Self {
            status,
            sense: None,
            descriptor_sense: false,
            data_in_len: 0,
        }
    }
    pub fn check(sense: Sense) -> Self {
        Self {
            status: status::CHECK_CONDITION,
            sense: Some(sense),
            descriptor_sense: false,
            data_in_len: 0,
        }
    }
    /// Sense bytes as they go on the wire.
    pub fn sense_bytes(&self) -> Option<Vec<u8>> {
        self.sense.as_ref().map(|s| s.encode(self.descriptor_sense))
    }
}
