//! One logical unit: its identity, its state shared by every I_T nexus (mode pages,
//! reservation, unit attentions, start/stop), and command execution.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use backstore::Backstore;

use crate::cdb::{Command, DeviceType, Parsed, PrAccess};
use crate::error::Error;
use crate::locks::RangeLocks;
use crate::mode::ModeValues;
use crate::params::PrOutParams;
use crate::pr::{NexusKey, PrStore, Reservations};
use crate::sense::{status, Asc, Sense, SenseKey};
use crate::{inquiry, mode, report};

mod io;
mod spc;
pub mod stats;
mod task;
mod types;
pub use io::{Extent, IoCounts, IoStats, Origin, WriteObserver};
pub use task::{ResetKind, TaskManagement};
pub use types::{Ctx, LuIdentity, Nexus, Outcome};

pub use crate::sbc::MAX_TRANSFER_BYTES;

/// Pending unit attentions kept per nexus; older ones are dropped past this (SPC-4
/// 5.14 lets a device server collapse them).
const MAX_PENDING_UA: usize = 8;

#[derive(Debug, Default)]
struct State {
    mode: ModeValues,
    /// Nexuses that can reach this LU (logged in with it mapped), by session id.
    attached: HashMap<u64, NexusKey>,
    /// SPC-4 persistent reservations.
    pr: Reservations,
    unit_attentions: HashMap<u64, VecDeque<Sense>>,
    /// SPC-2 RESERVE(6)/(10) holder.
    reserved_by: Option<u64>,
    /// Nexuses with PREVENT MEDIUM REMOVAL in force.
    prevent: HashSet<u64>,
    /// START STOP UNIT with START=0 leaves the LU stopped until started again.
    stopped: bool,
    /// A removable LU's medium was ejected (START STOP UNIT with LOEJ).
    ejected: bool,
    /// A SANITIZE running, or the failure mode one left (SBC-4 4.11).
    sanitize: crate::sbc::SanitizeState,
}

/// The per-LU state a command runs with, read once under the state lock.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) mode: ModeValues,
    pub(crate) stopped: bool,
    pub(crate) ejected: bool,
    /// In sanitize failure mode: medium access fails until a SANITIZE succeeds.
    pub(crate) sanitize_failed: bool,
}

/// A direct-access logical unit.
#[derive(Debug)]
pub struct LogicalUnit {
    identity: LuIdentity,
    store: Arc<dyn Backstore>,
    block_size: u32,
    /// Capacity in blocks; grows on [`LogicalUnit::resize`].
    num_blocks: AtomicU64,
    read_only: bool,
    /// Thin provisioned: LBPME, UNMAP and deallocating WRITE SAME.
    thin: bool,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    lbppbe: u8,
    locks: RangeLocks,
    /// Where APTPL reservation state is kept, when the daemon configured a place.
    pr_store: Option<Box<dyn PrStore>>,
    /// Running tasks from every nexus (token → nexus, abort flag): what LU resets,
    /// target resets and CLEAR TASK SET reach beyond the issuing session.
    tasks: Mutex<HashMap<u64, (u64, Arc<AtomicBool>)>>,
    next_task: AtomicU64,
    state: Mutex<State>,
    /// The caching page's WCE, mirrored for the I/O path (written under `state`).
    wce: AtomicBool,
    stats: IoStats,
    commands: stats::CommandStats,
    observers: RwLock<Vec<Arc<dyn WriteObserver>>>,
    /// Whether any observer is registered.
    observed: AtomicBool,
    /// The medium can be ejected and loaded (INQUIRY RMB).
    removable: bool,
    /// A tape LU's drive (device type 01h); `None` for block devices.
    pub(crate) tape: Option<Box<crate::ssc::Tape>>,
    /// This LU's own `Arc`, once [`LogicalUnit::shared`] made it: what a background
    /// operation (SANITIZE) that outlives its command holds on to.
    this: OnceLock<Weak<LogicalUnit>>,
}

impl LogicalUnit {
    pub fn new(
        identity: LuIdentity,
        store: Arc<dyn Backstore>,
        block_size: u32,
        read_only: bool,
    ) -> Self {
        let num_blocks = store.size() / u64::from(block_size);
        let mode = ModeValues::default();
        Self {
            identity,
            store,
            block_size,
            num_blocks: AtomicU64::new(num_blocks),
            read_only,
            thin: false,
            lbppbe: 0,
            locks: RangeLocks::default(),
            pr_store: None,
            tasks: Mutex::new(HashMap::new()),
            next_task: AtomicU64::new(1),
            wce: AtomicBool::new(mode.wce),
            state: Mutex::new(State {
                mode,
                ..State::default()
            }),
            stats: IoStats::default(),
            commands: stats::CommandStats::default(),
            observers: RwLock::new(Vec::new()),
            observed: AtomicBool::new(false),
            removable: false,
            tape: None,
            this: OnceLock::new(),
        }
    }

    /// Puts the LU behind an `Arc` that it knows, as every served LU is: SANITIZE
    /// runs on past its command (aborts, resets, logouts) holding that reference.
    pub fn shared(self) -> Arc<Self> {
        let lu = Arc::new(self);
        let _ = lu.this.set(Arc::downgrade(&lu));
        lu
    }

    pub(crate) fn this(&self) -> Option<Arc<Self>> {
        self.this.get().and_then(Weak::upgrade)
    }

    /// Makes the medium removable: INQUIRY RMB, START STOP UNIT with LOEJ ejects
    /// and loads it, and PREVENT ALLOW MEDIUM REMOVAL holds it in.
    pub fn with_removable(mut self, removable: bool) -> Self {
        self.removable = removable;
        self
    }

    pub fn removable(&self) -> bool {
        self.removable
    }

    /// Makes the LU thin provisioned (when its backstore can deallocate).
    pub fn with_thin(mut self, thin: bool) -> Self {
        self.thin = thin && self.store.thin_provisioning().is_some();
        self
    }

    /// Gives the LU a place to persist reservations made with APTPL, and restores
    /// what is stored there.
    pub fn with_pr_store(mut self, store: Box<dyn PrStore>) -> Result<Self, String> {
        match store.load() {
            Ok(Some(text)) if !text.is_empty() => {
                self.state().pr = Reservations::from_text(&text)?;
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.pr_store = Some(store);
        Ok(self)
    }

    /// Reports `physical` bytes per physical block (a power-of-two multiple of the
    /// logical block size; anything else is ignored).
    pub fn with_physical_block_size(mut self, physical: u32) -> Self {
        let ratio = physical / self.block_size;
        if physical.is_multiple_of(self.block_size) && ratio.is_power_of_two() {
            self.lbppbe = ratio.trailing_zeros().min(15) as u8;
        }
        self
    }

    pub fn thin(&self) -> bool {
        self.thin
    }

    pub fn lbppbe(&self) -> u8 {
        self.lbppbe
    }

    /// Whether any nexus holds PREVENT MEDIUM REMOVAL.
    pub(crate) fn medium_removal_prevented(&self) -> bool {
        !self.state().prevent.is_empty()
    }

    /// START STOP UNIT: a stopped LU answers media commands NOT READY.
    pub(crate) fn set_stopped(&self, stopped: bool) {
        self.state().stopped = stopped;
    }

    /// The LU's sanitize state, under the state lock.
    pub(crate) fn with_sanitize<R>(
        &self,
        f: impl FnOnce(&mut crate::sbc::SanitizeState) -> R,
    ) -> R {
        f(&mut self.state().sanitize)
    }

    /// START STOP UNIT with LOEJ on a removable LU: ejects or loads the medium. A
    /// load tells the other nexuses NOT READY TO READY CHANGE, MEDIUM MAY HAVE
    /// CHANGED (SBC-3 4.17); the nexus that loaded it knows.
    pub(crate) fn set_ejected(&self, nexus: u64, ejected: bool) {
        let mut st = self.state();
        let was = std::mem::replace(&mut st.ejected, ejected);
        if was && !ejected {
            Self::raise_ua(&mut st, Some(nexus), Asc::NOT_READY_TO_READY_CHANGE);
        }
    }

    /// PREVENT ALLOW MEDIUM REMOVAL for `nexus`.
    pub(crate) fn set_prevent(&self, nexus: u64, prevent: bool) {
        let mut st = self.state();
        if prevent {
            st.prevent.insert(nexus);
        } else {
            st.prevent.remove(&nexus);
        }
    }

    /// The answer to a failed command, in the sense format the control page selects.
    pub(crate) fn answer(&self, snap: &Snapshot, e: Error) -> Outcome {
        e.log("command");
        let mut out = e.outcome();
        if out.sense.is_some() {
            out.descriptor_sense = snap.mode.d_sense;
        }
        out
    }

    /// The device type, which selects the command table CDBs are parsed with.
    pub fn device_type(&self) -> DeviceType {
        if self.tape.is_some() {
            DeviceType::Stream
        } else {
            DeviceType::Block
        }
    }

    pub fn identity(&self) -> &LuIdentity {
        &self.identity
    }
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// Grows the LU to `bytes` (rounded down to whole blocks) while it is served:
    /// the backstore grows first, then the capacity, then every nexus gets CAPACITY
    /// DATA HAS CHANGED (SBC-3 4.4.4) so initiators re-read it. Returns the new
    /// block count. Shrinking is refused by the backstores.
    pub fn resize(&self, bytes: u64) -> std::io::Result<u64> {
        let got = self.store.resize(bytes)?;
        let blocks = got / u64::from(self.block_size);
        if self.num_blocks.swap(blocks, Ordering::AcqRel) != blocks {
            self.raise_unit_attention(None, Asc::CAPACITY_DATA_CHANGED);
        }
        Ok(blocks)
    }

    /// Per-class command counters (the transport records answered commands).
    pub fn command_stats(&self) -> &stats::CommandStats {
        &self.commands
    }

    /// Commands running on this LU now, from every nexus (the admin interface
    /// waits for them before it lets go of a removed LU).
    pub fn running_tasks(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Nexuses that can reach this LU now.
    pub fn attached_nexuses(&self) -> usize {
        self.state().attached.len()
    }
    pub fn read_only(&self) -> bool {
        self.read_only
    }
    /// The caching mode page's WCE: with it off, writes reach stable storage before
    /// they complete.
    pub fn write_cache_enabled(&self) -> bool {
        self.wce.load(Ordering::Relaxed)
    }
    pub fn backstore(&self) -> &Arc<dyn Backstore> {
        &self.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the state is
        // still consistent field by field, so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A nexus that maps this LU logged in.
    pub fn attach(&self, nexus: &Nexus) {
        self.state().attached.insert(nexus.id, nexus.key());
    }

    /// The nexus is gone (logout, connection loss): its reservation and PREVENT end
    /// (SPC-4 5.13, SBC-3 5.13) and its pending unit attentions are dropped.
    pub fn detach(&self, nexus: u64) {
        let mut st = self.state();
        st.attached.remove(&nexus);
        st.unit_attentions.remove(&nexus);
        st.prevent.remove(&nexus);
        if st.reserved_by == Some(nexus) {
            st.reserved_by = None;
        }
    }

    /// Applies a reset: clears reservation and PREVENT state and raises a unit
    /// attention on every nexus, the one that asked included.
    pub fn reset(&self, kind: ResetKind) {
        let mut st = self.state();
        st.reserved_by = None;
        st.prevent.clear();
        st.stopped = false;
        if kind == ResetKind::TargetCold {
            st.mode = ModeValues::default();
            self.wce.store(st.mode.wce, Ordering::Relaxed);
        }
        let asc = match kind {
            ResetKind::LogicalUnit => Asc::LU_RESET,
            ResetKind::TargetWarm => Asc::BUS_RESET,
            ResetKind::TargetCold => Asc::POWER_ON_OCCURRED,
        };
        Self::raise_ua(&mut st, None, asc);
    }

    /// Raises a unit attention for every attached nexus except `except`.
    pub fn raise_unit_attention(&self, except: Option<u64>, asc: Asc) {
        Self::raise_ua(&mut self.state(), except, asc);
    }

    /// Raises a unit attention for one nexus (by session id).
    pub fn raise_unit_attention_for(&self, nexus: u64, asc: Asc) {
        let mut st = self.state();
        if !st.attached.contains_key(&nexus) {
            return;
        }
        let q = st.unit_attentions.entry(nexus).or_default();
        if !q.iter().any(|s| s.asc == asc) {
            if q.len() >= MAX_PENDING_UA {
                q.pop_front();
            }
            q.push_back(Sense::unit_attention(asc));
        }
    }

    /// Raises `asc` on every session of the I_T nexus `key`.
    fn raise_ua_for(st: &mut State, key: &NexusKey, asc: Asc) {
        let ids: Vec<u64> = st
            .attached
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let q = st.unit_attentions.entry(id).or_default();
            if !q.iter().any(|s| s.asc == asc) {
                if q.len() >= MAX_PENDING_UA {
                    q.pop_front();
                }
                q.push_back(Sense::unit_attention(asc));
            }
        }
    }

    fn raise_ua(st: &mut State, except: Option<u64>, asc: Asc) {
        let targets: Vec<u64> = st
            .attached
            .keys()
            .copied()
            .filter(|n| Some(*n) != except)
            .collect();
        for n in targets {
            let q = st.unit_attentions.entry(n).or_default();
            if q.iter().any(|s| s.asc == asc) {
                continue;
            }
            if q.len() >= MAX_PENDING_UA {
                q.pop_front();
            }
            q.push_back(Sense::unit_attention(asc));
        }
    }

    /// Executes one command. `data_out` holds what the initiator transferred (possibly
    /// less than the CDB asks for, when the Expected Data Transfer Length `edtl` was
    /// short); Data-In is written to the front of `data_in`, which is grown as needed.
    pub fn execute(
        &self,
        nexus: &Nexus,
        cmd: Result<Parsed, Sense>,
        ctx: Ctx<'_>,
        data_out: &[u8],
        data_in: &mut Vec<u8>,
    ) -> Outcome {
        let (mut out, d_sense) = match self.gate(nexus, &cmd) {
            Err(early) => return early,
            Ok(snap) => {
                let out = match cmd {
                    Ok(c) => self
                        .dispatch(nexus, &snap, c.command, ctx, data_out, data_in)
                        .unwrap_or_else(|e| self.answer(&snap, e)),
                    Err(sense) => Outcome::check(sense),
                };
                (out, snap.mode.d_sense)
            }
        };
        if out.sense.is_some() {
            out.descriptor_sense = d_sense;
        }
        out
    }

    /// Unit attention and reservation checks that come before any command runs; on
    /// success, the state the command runs with, read under the same lock.
    pub(crate) fn gate(
        &self,
        nexus: &Nexus,
        cmd: &Result<Parsed, Sense>,
    ) -> Result<Snapshot, Outcome> {
        let mut st = self.state();
        // A CDB that did not parse is answered with its own sense, after any unit
        // attention (SAM-5 5.14: the UA is reported first).
        let attrs = cmd.as_ref().ok().map(|p| p.attrs);
        if !attrs.is_some_and(|a| a.ua_exempt) {
            if let Some(ua) = st
                .unit_attentions
                .get_mut(&nexus.id)
                .and_then(VecDeque::pop_front)
            {
                let mut out = Outcome::check(ua);
                out.descriptor_sense = st.mode.d_sense;
                return Err(out);
            }
        }
        // SBC-4 4.11.2: while a sanitize runs, everything but INQUIRY, REPORT LUNS
        // and REQUEST SENSE is NOT READY, SANITIZE IN PROGRESS, with its progress.
        if let Some(progress) = st.sanitize.progress() {
            let allowed = cmd.as_ref().is_ok_and(|p| {
                matches!(
                    p.command,
                    Command::Inquiry { .. }
                        | Command::RequestSense { .. }
                        | Command::ReportLuns { .. }
                )
            });
            if !allowed {
                let sense = Sense::new(SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS)
                    .with_progress(progress);
                let mut out = Outcome::check(sense);
                out.descriptor_sense = st.mode.d_sense;
                return Err(out);
            }
        }
        // SPC-2 5.5.1: while another nexus holds a RESERVE, only some commands pass.
        if st.reserved_by.is_some_and(|holder| holder != nexus.id)
            && !attrs.is_some_and(|a| a.spc2_allowed)
        {
            return Err(Outcome::status(status::RESERVATION_CONFLICT));
        }
        if let Ok(p) = cmd {
            // SPC-4 5.13.3: RESERVE/RELEASE(6/10) conflict while registrations exist.
            let spc2 = matches!(p.command, Command::Reserve | Command::Release);
            if (spc2 && st.pr.blocks_spc2()) || st.pr.conflicts(&nexus.key(), p.attrs.pr) {
                return Err(Outcome::status(status::RESERVATION_CONFLICT));
            }
        }
        Ok(Snapshot {
            mode: st.mode.clone(),
            stopped: st.stopped,
            ejected: st.ejected,
            sanitize_failed: st.sanitize.failed(),
        })
    }

    /// Medium access: NOT READY without a medium (SBC-3 4.17: MEDIUM NOT PRESENT) or
    /// while stopped (INITIALIZING COMMAND REQUIRED); MEDIUM ERROR, SANITIZE COMMAND
    /// FAILED in sanitize failure mode (SBC-4 4.11.4).
    pub(crate) fn check_ready(snap: &Snapshot) -> Result<(), Error> {
        if snap.ejected {
            return Err(Error::NotReady(Asc::MEDIUM_NOT_PRESENT));
        }
        if snap.stopped {
            return Err(Error::NotReady(Asc::LU_NOT_READY_INIT_REQUIRED));
        }
        if snap.sanitize_failed {
            return Err(Sense::new(SenseKey::MEDIUM_ERROR, Asc::SANITIZE_COMMAND_FAILED).into());
        }
        Ok(())
    }

    /// What REQUEST SENSE reports when no unit attention is pending: the condition
    /// that would stop a medium access command now (SPC-4 6.39), else NO SENSE.
    pub(crate) fn current_condition(&self) -> Sense {
        let snap = {
            let st = self.state();
            if let Some(progress) = st.sanitize.progress() {
                return Sense::new(SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS)
                    .with_progress(progress);
            }
            Snapshot {
                mode: ModeValues::default(),
                stopped: st.stopped,
                ejected: st.ejected,
                sanitize_failed: st.sanitize.failed(),
            }
        };
        // The drive lock is never taken under the state lock.
        match Self::check_ready(&snap).and_then(|()| self.tape_ready()) {
            Err(e) => e.sense(),
            Ok(()) => Sense::new(SenseKey::NO_SENSE, Asc::NO_ADDITIONAL_SENSE),
        }
    }

    pub(crate) fn check_writable(&self, snap: &Snapshot) -> Result<(), Error> {
        if self.read_only || snap.mode.swp {
            return Err(Error::WriteProtected);
        }
        Ok(())
    }
}

/// Copies `bytes` into the data-in buffer, truncated to the allocation length.
pub(crate) fn fill(data_in: &mut Vec<u8>, bytes: &[u8], alloc: u32) -> Outcome {
    let n = bytes.len().min(alloc as usize);
    grow(data_in, n);
    data_in[..n].copy_from_slice(&bytes[..n]);
    Outcome::good(n)
}

/// Makes the buffer at least `len` long; pooled buffers keep their length, so this
/// zero-fills only the first time a buffer grows.
pub(crate) fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}
