//! The copy manager: resolves CSCDs through the requesting initiator's access
//! rights, runs segments through the engine, and keeps per-nexus list IDs and
//! results for RECEIVE COPY RESULTS.
//!
//! List IDs (SPC-4 5.16.4): with LIST ID USAGE 00b the results are held and the ID
//! must not be in use on the nexus (OPERATION IN PROGRESS otherwise). With 10b and
//! 11b nothing is held, and several copies may run under one ID at once (ESXi and
//! Windows do this with LID1): COPY STATUS for such an ID reports the oldest of them
//! still running; once all have ended the ID is unknown again. Held results stay
//! readable for [`RETENTION`] or until [`MAX_HELD_PER_NEXUS`] newer ones push them
//! out, and go when the session ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scsi::error::{copy_aborted, Error};
use scsi::lu::Origin;
use scsi::sense::{Asc, Sense, SenseKey};
use scsi::tpc::{self, CopyManager, CSCD_ID_RECEIVING_LU, MAX_CONCURRENT_COPIES};
use scsi::{LogicalUnit, Nexus};

use crate::engine::{self, PathCounters, Range, Stop};
use crate::params::{self, Cscd, Designator, ListIdUsage, SegmentKind};

/// How long held results stay readable.
pub const RETENTION: Duration = Duration::from_secs(600);
/// Held results kept per nexus; older ones are dropped first.
pub const MAX_HELD_PER_NEXUS: usize = 64;

/// The LUs an initiator may reach, on every target of the server: the only place
/// CSCD designators are looked up.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    fn accessible(&self, nexus: &Nexus) -> Vec<Arc<LogicalUnit>>;
}

/// Per-LU offload counters (keyed by the LU's NAA).
#[derive(Debug, Default)]
pub struct LuCounters {
    pub paths: PathCounters,
    pub started: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Done,
    Failed,
}

#[derive(Debug)]
struct Record {
    list_id: u8,
    usage: ListIdUsage,
    segments_done: AtomicU32,
    bytes: AtomicU64,
    end: Mutex<Option<(Status, Instant, Option<Sense>)>>,
    /// Data of 0Dh segments, for RECEIVE COPY DATA.
    held: Mutex<Vec<u8>>,
}

impl Record {
    fn status(&self) -> Status {
        self.end
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(Status::Running, |e| e.0)
    }
}

#[derive(Debug)]
pub struct Manager {
    resolver: Arc<dyn Resolver>,
    lists: Mutex<HashMap<u64, VecDeque<Arc<Record>>>>,
    running_per_lu: Mutex<HashMap<[u8; 16], u16>>,
    counters: Mutex<HashMap<[u8; 16], Arc<LuCounters>>>,
}

/// What a CSCD index is resolved against for one copy.
struct Lookup<'a> {
    receiving: &'a LogicalUnit,
    nexus: &'a Nexus,
    list: &'a params::CopyList,
    accessible: &'a [Arc<LogicalUnit>],
}

impl<'a> Lookup<'a> {
    fn resolve(&self, index: u16, segment: usize, pointer: usize) -> Result<Resolved<'a>, Sense> {
        if index == CSCD_ID_RECEIVING_LU {
            return Ok(Resolved::Receiving(self.receiving));
        }
        let Some((at, cscd)) = self.list.cscds.get(usize::from(index)) else {
            return Err(copy_aborted(Asc::UNREACHABLE_COPY_TARGET, segment, pointer));
        };
        let Cscd::Identification {
            designator,
            block_len,
        } = cscd;
        let Some(lu) = self.accessible.iter().find(|lu| matches(lu, designator)) else {
            tracing::warn!(
                initiator = %self.nexus.initiator,
                designator_type = designator.kind,
                "EXTENDED COPY names an LU this initiator cannot access"
            );
            return Err(copy_aborted(
                Asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
                segment,
                *at,
            ));
        };
        if *block_len != 0 && *block_len != lu.block_size() {
            return Err(copy_aborted(
                Asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
                segment,
                at + 29,
            ));
        }
        Ok(Resolved::Held(lu.clone()))
    }
}

/// A CSCD resolved to an LU for the duration of one copy.
enum Resolved<'a> {
    Receiving(&'a LogicalUnit),
    Held(Arc<LogicalUnit>),
}

impl Resolved<'_> {
    fn lu(&self) -> &LogicalUnit {
        match self {
            Resolved::Receiving(l) => l,
            Resolved::Held(l) => l,
        }
    }
}

fn matches(lu: &LogicalUnit, d: &Designator) -> bool {
    if d.association != 0 {
        return false;
    }
    let id = lu.identity();
    match d.kind {
        3 => d.value == id.naa,
        2 => d.value == id.eui64(),
        1 => d.value == id.t10_vendor_id(),
        8 => {
            let v: Vec<u8> = d.value.iter().copied().take_while(|&c| c != 0).collect();
            v.eq_ignore_ascii_case(id.scsi_name().as_bytes())
        }
        _ => false,
    }
}

impl Manager {
    pub fn new(resolver: Arc<dyn Resolver>) -> Self {
        Self {
            resolver,
            lists: Mutex::new(HashMap::new()),
            running_per_lu: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
        }
    }

    fn lists(&self) -> MutexGuard<'_, HashMap<u64, VecDeque<Arc<Record>>>> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The offload counters of the LU with this NAA.
    pub fn counters(&self, naa: &[u8; 16]) -> Arc<LuCounters> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*naa)
            .or_default()
            .clone()
    }

    /// The nexus ended: its held results go.
    pub fn forget_nexus(&self, nexus: u64) {
        self.lists().remove(&nexus);
    }

    fn prune(q: &mut VecDeque<Arc<Record>>) {
        let now = Instant::now();
        q.retain(
            |r| match &*r.end.lock().unwrap_or_else(|e| e.into_inner()) {
                None => true,
                Some((_, at, _)) => {
                    r.usage == ListIdUsage::Hold && now.duration_since(*at) < RETENTION
                }
            },
        );
        while q.iter().filter(|r| r.status() != Status::Running).count() > MAX_HELD_PER_NEXUS {
            if let Some(i) = q.iter().position(|r| r.status() != Status::Running) {
                q.remove(i);
            }
        }
    }

    fn begin(&self, nexus: &Nexus, list: &params::CopyList) -> Result<Arc<Record>, Sense> {
        let mut lists = self.lists();
        let q = lists.entry(nexus.id).or_default();
        Self::prune(q);
        if list.usage == ListIdUsage::Hold
            && q.iter()
                .any(|r| r.list_id == list.list_id && r.status() == Status::Running)
        {
            return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS));
        }
        if list.usage == ListIdUsage::Hold {
            // A new held list replaces an old result under the same ID.
            q.retain(|r| !(r.list_id == list.list_id && r.usage == ListIdUsage::Hold));
        }
        let rec = Arc::new(Record {
            list_id: list.list_id,
            usage: list.usage,
            segments_done: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
            end: Mutex::new(None),
            held: Mutex::new(Vec::new()),
        });
        q.push_back(rec.clone());
        Ok(rec)
    }

    fn finish(&self, nexus: &Nexus, rec: &Arc<Record>, result: &Result<(), Sense>) {
        let status = if result.is_ok() {
            Status::Done
        } else {
            Status::Failed
        };
        *rec.end.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((status, Instant::now(), result.clone().err()));
        let mut lists = self.lists();
        if let Some(q) = lists.get_mut(&nexus.id) {
            Self::prune(q);
        }
    }

    fn run(
        &self,
        receiving: &LogicalUnit,
        nexus: &Nexus,
        list: &params::CopyList,
        rec: &Record,
        abort: &AtomicBool,
    ) -> Result<(), Sense> {
        let accessible = self.resolver.accessible(nexus);
        // Resolve every CSCD a segment names before any data moves: a designator
        // outside the initiator's access fails the command with nothing read or
        // written.
        let lookup = Lookup {
            receiving,
            nexus,
            list,
            accessible: &accessible,
        };
        let mut plan = Vec::with_capacity(list.segments.len());
        for (i, seg) in list.segments.iter().enumerate() {
            let src = lookup.resolve(seg.src, i, seg.offset + 4)?;
            let dst = lookup.resolve(seg.dst, i, seg.offset + 6)?;
            plan.push((seg, src, dst));
        }
        let mut held = 0u64;
        for (i, (seg, src, dst)) in plan.iter().enumerate().filter(|(_, p)| p.0.hold) {
            held += self
                .byte_range(src.lu(), dst.lu(), &seg.kind, i, seg.offset)?
                .len;
            if held > u64::from(tpc::HELD_DATA_LIMIT) {
                return Err(Sense::invalid_param_field((seg.offset + 10) as u16, None));
            }
        }
        for (i, (seg, src, dst)) in plan.iter().enumerate() {
            let (src, dst) = (src.lu(), dst.lu());
            // One COPY ABORTED mapping for whatever stops a segment.
            let denied = |e: Error, pointer: usize| {
                e.log("copy segment");
                e.copy_aborted(i, pointer)
            };
            match seg.kind {
                SegmentKind::Verify { tur } => {
                    if tur {
                        src.check_copy_access(nexus, false)
                            .map_err(|d| denied(d, seg.offset + 4))?;
                    }
                }
                SegmentKind::RegisterKey { key, sark } => dst
                    .pr_register(nexus, key, sark)
                    .map_err(|d| denied(d, seg.offset + 6))?,
                SegmentKind::BlockToBlock { .. } | SegmentKind::BlockToBlockBytes { .. } => {
                    let r = self.byte_range(src, dst, &seg.kind, i, seg.offset)?;
                    src.check_copy_access(nexus, false)
                        .map_err(|d| denied(d, seg.offset + 4))?;
                    dst.check_copy_access(nexus, true)
                        .map_err(|d| denied(d, seg.offset + 6))?;
                    let counters = self.counters(&dst.identity().naa);
                    let permit = |write: bool| {
                        if write {
                            dst.check_copy_access(nexus, true)
                        } else {
                            src.check_copy_access(nexus, false)
                        }
                    };
                    match engine::copy_range(
                        src,
                        dst,
                        r,
                        abort,
                        &permit,
                        &rec.bytes,
                        &counters.paths,
                    ) {
                        // Like a WRITE with the write cache off: durable before done.
                        Ok(()) if !dst.write_cache_enabled() => {
                            dst.flush()
                                .map_err(|e| denied(Error::Io(e), seg.offset + 6))?;
                        }
                        Ok(()) => {}
                        Err(Stop::Denied { write, why }) => {
                            return Err(denied(why, seg.offset + if write { 6 } else { 4 }))
                        }
                        Err(Stop::Aborted) => {
                            return Err(Sense::new(
                                SenseKey::ABORTED_COMMAND,
                                Asc::NO_ADDITIONAL_SENSE,
                            ))
                        }
                        Err(Stop::Io { write, error }) => {
                            return Err(denied(
                                Error::Io(error),
                                seg.offset + if write { 6 } else { 4 },
                            ))
                        }
                    }
                }
            }
            if seg.hold {
                let r = self.byte_range(src, dst, &seg.kind, i, seg.offset)?;
                let mut held = rec.held.lock().unwrap_or_else(|e| e.into_inner());
                let at = held.len();
                held.resize(at + r.len as usize, 0);
                let bs = u64::from(src.block_size());
                let (lba, end) = (r.src_off / bs, (r.src_off + r.len).div_ceil(bs));
                let x = src.lock_shared(lba, end - lba, Origin::Copy);
                if let Err(e) = x.read(r.src_off, &mut held[at..]) {
                    held.truncate(at);
                    return Err(denied(Error::Io(e), seg.offset + 4));
                }
            }
            rec.segments_done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The bytes a block→block segment moves, checked against both LUs.
    fn byte_range(
        &self,
        src: &LogicalUnit,
        dst: &LogicalUnit,
        kind: &SegmentKind,
        i: usize,
        at: usize,
    ) -> Result<Range, Sense> {
        let (sbs, dbs) = (u64::from(src.block_size()), u64::from(dst.block_size()));
        let (src_off, dst_off, len) = match *kind {
            SegmentKind::BlockToBlock {
                dc,
                cat: _,
                blocks,
                src_lba,
                dst_lba,
            } => {
                let len = u64::from(blocks) * if dc { dbs } else { sbs };
                // A destination block left partly filled needs CAT, which is not
                // offered: the bytes must fill whole blocks on both sides.
                if len % sbs != 0 || len % dbs != 0 {
                    return Err(copy_aborted(Asc::NO_ADDITIONAL_SENSE, i, at + 10));
                }
                (src_lba.checked_mul(sbs), dst_lba.checked_mul(dbs), len)
            }
            SegmentKind::BlockToBlockBytes {
                bytes,
                src_lba,
                dst_lba,
                src_offset,
                dst_offset,
            } => {
                if u64::from(src_offset) >= sbs || u64::from(dst_offset) >= dbs {
                    return Err(copy_aborted(Asc::NO_ADDITIONAL_SENSE, i, at + 28));
                }
                (
                    src_lba
                        .checked_mul(sbs)
                        .and_then(|o| o.checked_add(u64::from(src_offset))),
                    dst_lba
                        .checked_mul(dbs)
                        .and_then(|o| o.checked_add(u64::from(dst_offset))),
                    u64::from(bytes),
                )
            }
            // Only block→block segments move data; the caller never asks for others.
            _ => return Err(copy_aborted(Asc::NO_ADDITIONAL_SENSE, i, at)),
        };
        let fits = |off: Option<u64>, lu: &LogicalUnit| {
            off.and_then(|o| o.checked_add(len))
                .is_some_and(|end| end <= lu.backstore().size())
        };
        // Past the end of either LU: COPY ABORTED pointing at the LBA field.
        if !fits(src_off, src) {
            return Err(copy_aborted(Asc::NO_ADDITIONAL_SENSE, i, at + 12));
        }
        if !fits(dst_off, dst) {
            return Err(copy_aborted(Asc::NO_ADDITIONAL_SENSE, i, at + 20));
        }
        Ok(Range {
            src_off: src_off.unwrap_or(0),
            dst_off: dst_off.unwrap_or(0),
            len,
        })
    }
}

impl CopyManager for Manager {
    fn extended_copy(
        &self,
        lu: &LogicalUnit,
        nexus: &Nexus,
        params: &[u8],
        abort: &AtomicBool,
    ) -> Result<(), Sense> {
        let list = params::parse(params)?;
        let naa = lu.identity().naa;
        {
            let mut running = self
                .running_per_lu
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = running.entry(naa).or_default();
            if *n >= MAX_CONCURRENT_COPIES {
                return Err(Sense::illegal(Asc::INSUFFICIENT_RESOURCES));
            }
            *n += 1;
        }
        let rec = match self.begin(nexus, &list) {
            Ok(r) => r,
            Err(e) => {
                self.release(&naa);
                return Err(e);
            }
        };
        let counters = self.counters(&naa);
        counters.started.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let result = self.run(lu, nexus, &list, &rec, abort);
        self.finish(nexus, &rec, &result);
        self.release(&naa);
        let bytes = rec.bytes.load(Ordering::Relaxed);
        let p = &counters.paths;
        match &result {
            Ok(()) => tracing::info!(
                initiator = %nexus.initiator,
                list_id = list.list_id,
                segments = list.segments.len(),
                bytes,
                ms = t.elapsed().as_millis() as u64,
                lu_reflink = p.reflink.load(Ordering::Relaxed),
                lu_copy_file_range = p.copy_file_range.load(Ordering::Relaxed),
                lu_memcpy = p.memcpy.load(Ordering::Relaxed),
                lu_bounce = p.bounce.load(Ordering::Relaxed),
                "EXTENDED COPY done"
            ),
            Err(s) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    initiator = %nexus.initiator,
                    list_id = list.list_id,
                    bytes_before_failure = bytes,
                    key = s.key.0,
                    asc = format!("{:04x}", s.asc.0),
                    segment = ?s.command_specific,
                    "EXTENDED COPY failed"
                );
            }
        }
        result
    }

    fn receive_copy_results(
        &self,
        _lu: &LogicalUnit,
        nexus: &Nexus,
        sa: u8,
        list_id: u8,
    ) -> Result<Vec<u8>, Sense> {
        if sa == 0x03 {
            return Ok(tpc::operating_parameters());
        }
        let rec = {
            let mut lists = self.lists();
            let q = lists.entry(nexus.id).or_default();
            Self::prune(q);
            let mut mine = q.iter().filter(|r| r.list_id == list_id);
            let running = mine.clone().find(|r| r.status() == Status::Running);
            running
                .or_else(|| mine.rfind(|r| r.usage == ListIdUsage::Hold))
                .cloned()
        };
        let Some(rec) = rec else {
            return Err(Sense::invalid_cdb_field(2, None));
        };
        let end = rec.end.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match sa {
            0x00 => {
                let mut b = vec![0u8; 12];
                b[3] = 8;
                b[4] = match end.as_ref().map(|e| e.0) {
                    None | Some(Status::Running) => 0x00,
                    Some(Status::Done) => 0x01,
                    Some(Status::Failed) => 0x02,
                };
                let segs = rec.segments_done.load(Ordering::Relaxed).min(0xffff) as u16;
                b[5..7].copy_from_slice(&segs.to_be_bytes());
                // TRANSFER COUNT in the smallest unit that fits 32 bits: bytes,
                // then KiB, MiB, GiB (units 00h-03h).
                let mut count = rec.bytes.load(Ordering::Relaxed);
                let mut unit = 0u8;
                while count > u64::from(u32::MAX) {
                    count >>= 10;
                    unit += 1;
                }
                b[7] = unit;
                b[8..12].copy_from_slice(&(count as u32).to_be_bytes());
                Ok(b)
            }
            0x01 => {
                if end.is_none() {
                    return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS));
                }
                let held = rec.held.lock().unwrap_or_else(|e| e.into_inner());
                let mut b = Vec::with_capacity(4 + held.len());
                b.extend_from_slice(&(held.len() as u32).to_be_bytes());
                b.extend_from_slice(&held);
                Ok(b)
            }
            0x04 => {
                let mut b = vec![0u8; 60];
                match end {
                    None => return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS)),
                    Some((_, _, None)) => {}
                    Some((_, _, Some(sense))) => {
                        let sd = sense.encode(false);
                        b[56] = scsi::sense::status::CHECK_CONDITION;
                        b[58..60].copy_from_slice(&(sd.len() as u16).to_be_bytes());
                        b.extend_from_slice(&sd);
                        let avail = (b.len() - 4) as u32;
                        b[..4].copy_from_slice(&avail.to_be_bytes());
                    }
                }
                Ok(b)
            }
            _ => Err(Sense::invalid_cdb_field(1, Some(4))),
        }
    }
}

impl Manager {
    fn release(&self, naa: &[u8; 16]) {
        let mut running = self
            .running_per_lu
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(naa) {
            *n = n.saturating_sub(1);
        }
    }
}
