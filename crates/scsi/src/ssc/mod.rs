//! The sequential-access (tape) device type, SSC-3: one drive with one position,
//! cartridges from a directory ([`backstore::tape::Cartridge`]).
//!
//! Every command of a tape LU runs under the drive's lock from start to end, so
//! commands from every nexus (and the copy manager's) run one at a time and each
//! sees the position the previous one left. The sense rules follow SSC-3 and
//! what the Linux st driver relies on (docs/CONFORMANCE.md, SSC section): FILEMARK,
//! EOM and ILI with a signed INFORMATION residue, BLANK CHECK at end of data, data
//! and CHECK CONDITION on the same command.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use backstore::tape::{Cartridge, Object};

use crate::cdb::Command;
use crate::error::{Error, IoError, IoOp};
use crate::lu::{fill, grow, LogicalUnit, Nexus, Outcome, Snapshot};
use crate::mode::Geometry;
use crate::sense::{Asc, Sense, SenseKey};

/// The density code this drive reports and writes (vendor specific range).
pub const DENSITY: u8 = 0x80;
/// Largest block (READ BLOCK LIMITS): the transfer limit of one command.
pub const MAX_BLOCK: u32 = crate::sbc::MAX_TRANSFER_BYTES as u32;

/// A tape drive and the cartridges it can load.
#[derive(Debug)]
pub struct Tape {
    dir: PathBuf,
    /// Capacity of a cartridge created on first load.
    capacity: u64,
    drive: Mutex<Drive>,
}

#[derive(Debug)]
struct Drive {
    cart: Option<Cartridge>,
    /// The cartridge LOAD loads (the last one loaded).
    name: String,
    pos: u64,
    /// The last medium command wrote: a read or a move syncs first.
    writing: bool,
}

/// What a cartridge file is called in the drive's directory.
pub fn cartridge_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tape"))
}

/// A name a cartridge file may have: a barcode's characters.
pub fn valid_cartridge_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Tape {
    /// A drive over `dir` with cartridge `name` loaded (created with `capacity`
    /// bytes if missing). A cartridge whose index had a torn tail is repaired.
    pub fn open(dir: &Path, name: &str, capacity: u64) -> std::io::Result<Self> {
        if !valid_cartridge_name(name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a cartridge name (1-32 of A-Z a-z 0-9 - _)"),
            ));
        }
        let (cart, repair) = Cartridge::open(&cartridge_path(dir, name), name, capacity)?;
        if repair.index_bytes_dropped > 0 {
            tracing::warn!(
                cartridge = name,
                bytes = repair.index_bytes_dropped,
                "cartridge index had a torn tail; cut off (data after the last sync point is lost)"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            capacity,
            drive: Mutex::new(Drive {
                cart: Some(cart),
                name: name.to_owned(),
                pos: 0,
                writing: false,
            }),
        })
    }

    fn drive(&self) -> MutexGuard<'_, Drive> {
        self.drive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loaded cartridge's name, if one is loaded.
    pub fn loaded(&self) -> Option<String> {
        self.drive().cart.as_ref().map(|c| c.name().to_owned())
    }

    /// The cartridge LOAD loads: the last one loaded.
    pub fn last_loaded(&self) -> String {
        self.drive().name.clone()
    }

    /// Makes everything written durable (shutdown, removal).
    pub fn sync(&self) -> std::io::Result<()> {
        let mut d = self.drive();
        d.writing = false;
        match d.cart.as_mut() {
            Some(c) => c.sync(),
            None => Ok(()),
        }
    }
}

fn io_err(op: IoOp, e: std::io::Error) -> Error {
    Error::Io(IoError::new(op, 0, e))
}

/// NO SENSE with the stream bits, or another key, and a residue.
fn tape_sense(key: SenseKey, asc: Asc, flags: u8, residue: i64) -> Sense {
    Sense::new(key, asc).with_flags(flags).with_residue(residue)
}

/// Early warning (NO SENSE, EOM, END-OF-PARTITION/MEDIUM DETECTED, INFORMATION 0):
/// the command did its work and the end of the medium is near.
fn early_warning() -> Outcome {
    Outcome::check(tape_sense(
        SenseKey::NO_SENSE,
        Asc::END_OF_PARTITION_DETECTED,
        Sense::EOM,
        0,
    ))
}

/// CHECK CONDITION that also returns `data_in_len` bytes of data.
fn check_with_data(sense: Sense, data_in_len: usize) -> Outcome {
    let mut o = Outcome::check(sense);
    o.data_in_len = data_in_len;
    o
}

impl Drive {
    fn cart(&mut self) -> Result<&mut Cartridge, Error> {
        self.cart
            .as_mut()
            .ok_or(Error::NotReady(Asc::MEDIUM_NOT_PRESENT))
    }

    /// Leaves write mode: what was written becomes durable before the tape moves
    /// or is read (SSC-3: buffered data is written before other operations).
    fn settle(&mut self) -> Result<(), Error> {
        if self.writing {
            self.writing = false;
            self.cart()?.sync().map_err(|e| io_err(IoOp::Flush, e))?;
        }
        Ok(())
    }

    /// Past early warning: the tail of the medium kept so the host can finish.
    fn past_early_warning(&self) -> bool {
        self.cart.as_ref().is_some_and(|c| {
            let zone = (c.capacity() / 32)
                .clamp(64 << 10, 256 << 20)
                .min(c.capacity() / 2);
            c.used() >= c.capacity() - zone
        })
    }
}

impl LogicalUnit {
    /// A tape LU (PDT 01h) with `tape` as its drive.
    pub fn new_tape(identity: crate::lu::LuIdentity, tape: Tape, read_only: bool) -> Self {
        let store = std::sync::Arc::new(backstore::RamBackstore::new(0));
        let mut lu = Self::new(identity, store, 512, read_only).with_removable(true);
        lu.tape = Some(Box::new(tape));
        lu
    }

    /// What the MODE SENSE block descriptor describes.
    pub(crate) fn geometry(&self) -> Geometry {
        match &self.tape {
            Some(_) => Geometry::Stream {
                density: DENSITY,
                max_block: MAX_BLOCK,
            },
            None => Geometry::Block {
                num_blocks: self.num_blocks(),
                block_size: self.block_size(),
            },
        }
    }

    pub fn tape(&self) -> Option<&Tape> {
        self.tape.as_deref()
    }

    /// Loads cartridge `name` (created if missing) in place of the current one:
    /// the admin interface's load. Refused while removal is prevented.
    pub fn load_cartridge(&self, name: &str) -> Result<(), Error> {
        let Some(t) = self.tape() else {
            return Err(Error::Internal);
        };
        if !valid_cartridge_name(name) {
            return Err(Sense::invalid_cdb_field(0, None).into());
        }
        if self.medium_removal_prevented() {
            return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED).into());
        }
        let mut d = t.drive();
        d.settle()?;
        d.cart = None;
        let (cart, _) = Cartridge::open(&cartridge_path(&t.dir, name), name, t.capacity)
            .map_err(|e| io_err(IoOp::Read, e))?;
        d.cart = Some(cart);
        d.name = name.to_owned();
        d.pos = 0;
        drop(d);
        self.raise_unit_attention(None, Asc::NOT_READY_TO_READY_CHANGE);
        Ok(())
    }

    /// Unloads the cartridge (what was written becomes durable first): the admin
    /// interface's unload. Refused while removal is prevented.
    pub fn unload_cartridge(&self) -> Result<(), Error> {
        let Some(t) = self.tape() else {
            return Err(Error::Internal);
        };
        if self.medium_removal_prevented() {
            return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED).into());
        }
        let mut d = t.drive();
        d.settle()?;
        d.cart = None;
        d.pos = 0;
        Ok(())
    }

    /// Medium access on a tape LU: a cartridge must be loaded.
    pub(crate) fn tape_ready(&self) -> Result<(), Error> {
        match self.tape() {
            Some(t) if t.drive().cart.is_none() => Err(Error::NotReady(Asc::MEDIUM_NOT_PRESENT)),
            _ => Ok(()),
        }
    }

    fn check_tape_writable(&self, snap: &Snapshot, d: &Drive) -> Result<(), Error> {
        self.check_writable(snap)?;
        if d.cart.as_ref().is_some_and(Cartridge::write_protected) {
            return Err(Error::WriteProtected);
        }
        Ok(())
    }

    /// SSC commands, after the gate and the shared SPC commands.
    pub(crate) fn dispatch_stream(
        &self,
        nexus: &Nexus,
        snap: &Snapshot,
        cmd: Command,
        data_out: &[u8],
        data_in: &mut Vec<u8>,
    ) -> Result<Outcome, Error> {
        let Some(tape) = self.tape() else {
            return Err(Error::Internal);
        };
        let mut d = tape.drive();
        match cmd {
            Command::TestUnitReady => {
                d.cart()?;
                Ok(Outcome::good(0))
            }
            Command::ReadBlockLimits { mloi } => {
                if mloi {
                    // SSC-4: MAXIMUM LOGICAL OBJECT IDENTIFIER at bytes 12-19.
                    let mut b = [0u8; 20];
                    b[3] = 16;
                    b[12..20].copy_from_slice(&(u64::from(u32::MAX) - 1).to_be_bytes());
                    return Ok(fill(data_in, &b, 20));
                }
                let mut b = [0u8; 6];
                b[1..4].copy_from_slice(&MAX_BLOCK.to_be_bytes()[1..]);
                b[4..6].copy_from_slice(&1u16.to_be_bytes());
                Ok(fill(data_in, &b, 6))
            }
            Command::TapeRead { fixed, sili, len } => {
                d.settle()?;
                let block_len = snap.mode.block_len;
                read(&mut d, fixed, sili, len, block_len, data_in)
            }
            Command::TapeWrite { fixed, len } => {
                self.check_tape_writable(snap, &d)?;
                write(&mut d, fixed, len, snap.mode.block_len, data_out)
            }
            Command::WriteFilemarks { count, .. } => {
                self.check_tape_writable(snap, &d)?;
                let pos = d.pos;
                let c = d.cart()?;
                c.truncate(pos).map_err(|e| io_err(IoOp::Write, e))?;
                c.append_filemarks(count);
                // Every WRITE FILEMARKS, count 0 included, is where buffered data
                // reaches the medium (SSC-3; what applications rely on).
                c.sync().map_err(|e| io_err(IoOp::Flush, e))?;
                d.pos = c.eod();
                d.writing = false;
                if d.past_early_warning() {
                    return Ok(early_warning());
                }
                Ok(Outcome::good(0))
            }
            Command::Space { code, count } => {
                d.settle()?;
                space(&mut d, code, count)
            }
            Command::Rewind { .. } => {
                d.settle()?;
                d.cart()?;
                d.pos = 0;
                Ok(Outcome::good(0))
            }
            Command::Locate {
                cp,
                partition,
                object,
                ..
            } => {
                if cp && partition != 0 {
                    return Err(Sense::invalid_cdb_field(8, None).into());
                }
                d.settle()?;
                let eod = d.cart()?.eod();
                if object > eod {
                    d.pos = eod;
                    return Ok(Outcome::check(Sense::new(
                        SenseKey::BLANK_CHECK,
                        Asc::END_OF_DATA_DETECTED,
                    )));
                }
                d.pos = object;
                Ok(Outcome::good(0))
            }
            Command::ReadPosition { sa, alloc } => {
                d.settle()?;
                let ew = d.past_early_warning();
                let pos = d.pos;
                let c = d.cart()?;
                let mut flags = if pos == 0 { 0x80 } else { 0 }; // BOP
                if ew {
                    flags |= 0x01; // BPEW: beyond programmable early warning
                }
                match sa {
                    0 | 1 => {
                        // Short form, 20 bytes whatever the allocation length says
                        // (st sends 0; SSC-3).
                        let mut b = [0u8; 20];
                        match u32::try_from(pos) {
                            Ok(p) => {
                                b[4..8].copy_from_slice(&p.to_be_bytes());
                                b[8..12].copy_from_slice(&p.to_be_bytes());
                            }
                            Err(_) => flags |= 0x04, // BPU: position beyond 32 bits
                        }
                        b[0] = flags;
                        Ok(fill(data_in, &b, 20))
                    }
                    6 => {
                        let mut b = [0u8; 32];
                        b[0] = flags & !0x04;
                        b[8..16].copy_from_slice(&pos.to_be_bytes());
                        b[16..24].copy_from_slice(&c.files_before(pos).to_be_bytes());
                        Ok(fill(data_in, &b, 32))
                    }
                    _ => {
                        let mut b = [0u8; 32];
                        b[0] = flags & !0x04;
                        b[2..4].copy_from_slice(&0x1cu16.to_be_bytes());
                        b[8..16].copy_from_slice(&pos.to_be_bytes());
                        b[16..24].copy_from_slice(&pos.to_be_bytes());
                        Ok(fill(data_in, &b, alloc))
                    }
                }
            }
            Command::LoadUnload {
                load, hold, reten, ..
            } => {
                if !load && !hold && self.medium_removal_prevented() {
                    return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED).into());
                }
                d.settle()?;
                if load || reten || hold {
                    if d.cart.is_none() {
                        let name = d.name.clone();
                        let (cart, _) = Cartridge::open(
                            &cartridge_path(&tape.dir, &name),
                            &name,
                            tape.capacity,
                        )
                        .map_err(|e| io_err(IoOp::Read, e))?;
                        d.cart = Some(cart);
                        drop(d);
                        // Every nexus, the loader included: st starts a new session
                        // (file and block counters 0) on this unit attention.
                        self.raise_unit_attention(None, Asc::NOT_READY_TO_READY_CHANGE);
                        d = tape.drive();
                    }
                    d.pos = 0;
                    return Ok(Outcome::good(0));
                }
                d.cart = None;
                d.pos = 0;
                Ok(Outcome::good(0))
            }
            Command::Erase { .. } => {
                self.check_tape_writable(snap, &d)?;
                let pos = d.pos;
                let c = d.cart()?;
                c.truncate(pos).map_err(|e| io_err(IoOp::Write, e))?;
                c.sync().map_err(|e| io_err(IoOp::Flush, e))?;
                d.writing = false;
                Ok(Outcome::good(0))
            }
            Command::ReportDensity { media, alloc, .. } => {
                let capacity = match (&d.cart, media) {
                    (Some(c), true) => c.capacity(),
                    (None, true) => return Err(Error::NotReady(Asc::MEDIUM_NOT_PRESENT)),
                    _ => tape.capacity,
                };
                Ok(fill(data_in, &density_support(capacity), alloc))
            }
            Command::PreventAllow { prevent } => match prevent {
                0 | 1 => {
                    self.set_prevent(nexus.id, prevent == 1);
                    Ok(Outcome::good(0))
                }
                _ => Err(Sense::invalid_cdb_field(4, Some(1)).into()),
            },
            _ => Err(Sense::invalid_opcode().into()),
        }
    }
}

/// How a copy manager's READ, WRITE or WRITE FILEMARKS to a tape ended when it did
/// not end GOOD: the tape's sense, to forward in COPY ABORTED, and whether the
/// data counts as written (a write at early warning does, SPC-4 6.4.6.1).
#[derive(Debug, Clone)]
pub struct TapeFault {
    pub sense: Sense,
    pub written: bool,
}

impl TapeFault {
    fn of(e: Error) -> Self {
        Self {
            sense: e.sense(),
            written: false,
        }
    }
}

/// The drive held for one copy segment: the copy manager's commands run at the
/// tape's position, and nothing else moves the tape until this is dropped.
#[derive(Debug)]
pub struct TapeIo<'a> {
    d: MutexGuard<'a, Drive>,
}

impl LogicalUnit {
    /// The drive of a tape LU, held until the returned handle is dropped.
    pub fn tape_io(&self) -> Option<TapeIo<'_>> {
        self.tape().map(|t| TapeIo { d: t.drive() })
    }
}

impl TapeIo<'_> {
    /// One READ as a copy manager sends it (SILI 0, no read-ahead): `stdl` blocks of
    /// `block_len` bytes with `fixed`, else one block of exactly `stdl` bytes. The
    /// data is appended to `out`; a filemark, end of data or a block of another
    /// length is a fault, with what was read before it still appended.
    pub fn read(
        &mut self,
        fixed: bool,
        block_len: u32,
        stdl: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), TapeFault> {
        self.d.settle().map_err(TapeFault::of)?;
        let mut buf = Vec::new();
        let o =
            read(&mut self.d, fixed, false, stdl, block_len, &mut buf).map_err(TapeFault::of)?;
        out.extend_from_slice(&buf[..o.data_in_len]);
        match o.sense {
            None => Ok(()),
            Some(sense) => Err(TapeFault {
                sense,
                written: false,
            }),
        }
    }

    /// One WRITE of `data`: blocks of `block_len` with `fixed`, else one block.
    pub fn write(&mut self, fixed: bool, block_len: u32, data: &[u8]) -> Result<(), TapeFault> {
        if self.d.cart.as_ref().is_some_and(Cartridge::write_protected) {
            return Err(TapeFault::of(Error::WriteProtected));
        }
        let len = if fixed {
            (data.len() / block_len.max(1) as usize) as u32
        } else {
            data.len() as u32
        };
        let o = write(&mut self.d, fixed, len, block_len, data).map_err(TapeFault::of)?;
        match o.sense {
            None => Ok(()),
            Some(sense) => Err(TapeFault {
                written: sense.key == SenseKey::NO_SENSE,
                sense,
            }),
        }
    }

    /// WRITE FILEMARKS: also the point where what was written is durable.
    pub fn filemarks(&mut self, count: u32) -> Result<(), TapeFault> {
        let pos = self.d.pos;
        let c = self.d.cart().map_err(TapeFault::of)?;
        c.truncate(pos)
            .and_then(|()| {
                c.append_filemarks(count);
                c.sync()
            })
            .map_err(|e| TapeFault::of(io_err(IoOp::Write, e)))?;
        self.d.pos = self.d.cart().map_err(TapeFault::of)?.eod();
        self.d.writing = false;
        Ok(())
    }

    /// Makes what this segment wrote durable when the copy ends.
    pub fn sync(&mut self) -> Result<(), TapeFault> {
        self.d.settle().map_err(TapeFault::of)
    }
}

/// REPORT DENSITY SUPPORT data: one density descriptor (SSC-3).
fn density_support(capacity: u64) -> Vec<u8> {
    let mut d = [0u8; 52];
    d[0] = DENSITY;
    d[1] = DENSITY;
    d[2] = 0x80 | 0x20; // WRTOK, DEFLT
    d[12..16].copy_from_slice(
        &u32::try_from(capacity / 1_000_000)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    crate::inquiry::ascii_field(&mut d[16..24], "OXTGT");
    crate::inquiry::ascii_field(&mut d[24..32], "OXTAPE1");
    crate::inquiry::ascii_field(&mut d[32..52], "oxtgt cartridge v1");
    let mut b = vec![0u8; 4];
    b[..2].copy_from_slice(&(2 + d.len() as u16).to_be_bytes());
    b.extend_from_slice(&d);
    b
}

/// READ(6) from the current position (SSC-3 and 4.2.3).
fn read(
    d: &mut Drive,
    fixed: bool,
    sili: bool,
    len: u32,
    block_len: u32,
    data_in: &mut Vec<u8>,
) -> Result<Outcome, Error> {
    if len == 0 {
        d.cart()?;
        return Ok(Outcome::good(0));
    }
    if !fixed {
        if len > MAX_BLOCK {
            return Err(Sense::invalid_cdb_field(2, None).into());
        }
        let pos = d.pos;
        let c = d.cart()?;
        return match c.object(pos) {
            None => Ok(Outcome::check(tape_sense(
                SenseKey::BLANK_CHECK,
                Asc::END_OF_DATA_DETECTED,
                0,
                i64::from(len),
            ))),
            Some(Object::Filemark) => {
                d.pos += 1;
                Ok(Outcome::check(tape_sense(
                    SenseKey::NO_SENSE,
                    Asc::FILEMARK_DETECTED,
                    Sense::FILEMARK,
                    i64::from(len),
                )))
            }
            Some(Object::Block { len: blen, off }) => {
                let n = blen.min(len) as usize;
                grow(data_in, n);
                c.read(&mut data_in[..n], off)
                    .map_err(|e| io_err(IoOp::Read, e))?;
                d.pos += 1;
                if blen == len || (blen < len && sili) {
                    Ok(Outcome::good(n))
                } else {
                    // ILI, INFORMATION = requested - actual: negative when the
                    // block was longer (its tail is lost), SSC-3.
                    Ok(check_with_data(
                        tape_sense(
                            SenseKey::NO_SENSE,
                            Asc::NO_ADDITIONAL_SENSE,
                            Sense::ILI,
                            i64::from(len) - i64::from(blen),
                        ),
                        n,
                    ))
                }
            }
        };
    }
    if block_len == 0 {
        // FIXED while in variable mode (SSC-3).
        return Err(Sense::invalid_cdb_field(1, Some(0)).into());
    }
    let total = u64::from(len) * u64::from(block_len);
    if total > u64::from(MAX_BLOCK) {
        return Err(Sense::invalid_cdb_field(2, None).into());
    }
    grow(data_in, total as usize);
    let bl = block_len as usize;
    for i in 0..len {
        let pos = d.pos;
        let c = d.cart()?;
        let residue = i64::from(len - i);
        let done = i as usize * bl;
        match c.object(pos) {
            None => {
                return Ok(check_with_data(
                    tape_sense(SenseKey::BLANK_CHECK, Asc::END_OF_DATA_DETECTED, 0, residue),
                    done,
                ))
            }
            Some(Object::Filemark) => {
                d.pos += 1;
                return Ok(check_with_data(
                    tape_sense(
                        SenseKey::NO_SENSE,
                        Asc::FILEMARK_DETECTED,
                        Sense::FILEMARK,
                        residue,
                    ),
                    done,
                ));
            }
            Some(Object::Block { len: blen, off }) => {
                if blen != block_len {
                    // A block of another length: ILI with the blocks not read, the
                    // position after the bad block (SSC-3).
                    d.pos += 1;
                    return Ok(check_with_data(
                        tape_sense(
                            SenseKey::NO_SENSE,
                            Asc::NO_ADDITIONAL_SENSE,
                            Sense::ILI,
                            residue,
                        ),
                        done,
                    ));
                }
                c.read(&mut data_in[done..done + bl], off)
                    .map_err(|e| io_err(IoOp::Read, e))?;
                d.pos += 1;
            }
        }
    }
    Ok(Outcome::good(total as usize))
}

/// WRITE(6) at the current position: whatever followed it is gone (SSC-3).
fn write(
    d: &mut Drive,
    fixed: bool,
    len: u32,
    block_len: u32,
    data_out: &[u8],
) -> Result<Outcome, Error> {
    let (blen, count) = if fixed {
        if block_len == 0 {
            return Err(Sense::invalid_cdb_field(1, Some(0)).into());
        }
        (block_len, len)
    } else {
        if len > MAX_BLOCK {
            return Err(Sense::invalid_cdb_field(2, None).into());
        }
        (len, u32::from(len > 0))
    };
    let bytes = u64::from(blen) * u64::from(count);
    if bytes > u64::from(MAX_BLOCK) {
        return Err(Sense::invalid_cdb_field(2, None).into());
    }
    if count == 0 {
        d.cart()?;
        return Ok(Outcome::good(0));
    }
    let Some(data) = data_out.get(..bytes as usize) else {
        return Err(Sense::illegal(Asc::INVALID_FIELD_IN_INFORMATION_UNIT).into());
    };
    let pos = d.pos;
    let c = d.cart()?;
    c.truncate(pos).map_err(|e| io_err(IoOp::Write, e))?;
    // End of partition: as many whole blocks as fit are written, the rest is the
    // residue (bytes in variable mode, blocks in fixed), VOLUME OVERFLOW.
    let room = (c.capacity() + backstore::tape::ALIGN).saturating_sub(c.next_data_offset());
    let fit = if fixed {
        (room / u64::from(blen)).min(u64::from(count)) as u32
    } else {
        u32::from(room >= bytes)
    };
    if fit > 0 {
        let n = fit as usize * blen as usize;
        c.append_blocks(blen, &data[..n])
            .map_err(|e| io_err(IoOp::Write, e))?;
    }
    let synced = fit == count && c.sync_due();
    if synced {
        c.sync().map_err(|e| io_err(IoOp::Flush, e))?;
    }
    d.pos = d.cart()?.eod();
    d.writing = !synced;
    if fit < count {
        let residue = if fixed {
            i64::from(count - fit)
        } else {
            i64::from(len)
        };
        return Ok(Outcome::check(tape_sense(
            SenseKey::VOLUME_OVERFLOW,
            Asc::END_OF_PARTITION_DETECTED,
            Sense::EOM,
            residue,
        )));
    }
    if d.past_early_warning() {
        // Early warning: written, and the host is told (SSC-3).
        return Ok(early_warning());
    }
    Ok(Outcome::good(0))
}

/// SPACE: blocks (code 0), filemarks (1) or to end of data (3) (SSC-3).
fn space(d: &mut Drive, code: u8, count: i64) -> Result<Outcome, Error> {
    let pos = d.pos;
    let (to, sense) = space_from(d.cart()?, pos, code, count)?;
    d.pos = to;
    Ok(match sense {
        Some(s) => Outcome::check(s),
        None => Outcome::good(0),
    })
}

/// Where SPACE from `pos` ends, and the sense if it stopped short.
fn space_from(
    c: &Cartridge,
    pos: u64,
    code: u8,
    count: i64,
) -> Result<(u64, Option<Sense>), Error> {
    let eod = c.eod();
    if code == 3 {
        return Ok((eod, None));
    }
    let want = count.unsigned_abs();
    let mut done = 0u64;
    let mut p = pos;
    let runs = c.runs();
    let short =
        |key, asc, flags, done: u64| Some(tape_sense(key, asc, flags, (want - done) as i64));
    if count > 0 {
        while done < want {
            let Some(i) = c.run_at(p) else {
                let s = short(SenseKey::BLANK_CHECK, Asc::END_OF_DATA_DETECTED, 0, done);
                return Ok((eod, s));
            };
            let r = runs[i];
            let left = r.end() - p;
            match (code, r.block_len) {
                (0, Some(_)) | (1, None) => {
                    let step = left.min(want - done);
                    p += step;
                    done += step;
                }
                (0, None) => {
                    // Spacing blocks onto a filemark: stop after it (SSC-3).
                    let s = short(
                        SenseKey::NO_SENSE,
                        Asc::FILEMARK_DETECTED,
                        Sense::FILEMARK,
                        done,
                    );
                    return Ok((p + 1, s));
                }
                _ => p = r.end(),
            }
        }
        return Ok((p, None));
    }
    while done < want {
        if p == 0 {
            let s = short(
                SenseKey::NO_SENSE,
                Asc::BEGINNING_OF_PARTITION_DETECTED,
                Sense::EOM,
                done,
            );
            return Ok((0, s));
        }
        let Some(i) = c.run_at(p - 1) else {
            return Err(Error::Internal);
        };
        let r = runs[i];
        let back = p - r.first;
        match (code, r.block_len) {
            (0, Some(_)) | (1, None) => {
                let step = back.min(want - done);
                p -= step;
                done += step;
            }
            (0, None) => {
                // A filemark met backwards: stop on its BOP side.
                let s = short(
                    SenseKey::NO_SENSE,
                    Asc::FILEMARK_DETECTED,
                    Sense::FILEMARK,
                    done,
                );
                return Ok((p - 1, s));
            }
            _ => p = r.first,
        }
    }
    Ok((p, None))
}
