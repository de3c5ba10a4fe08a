//! One copy as a job that owns what it uses: `Arc` handles to every LU a segment
//! names (resolved through the initiator's access before any data moves), the parsed
//! list, its result record and counters. A job runs on the copy manager's executor
//! and can outlive the command that started it; it stops when its record's abort
//! flag rises (task abort, LU reset, session loss, later COPY OPERATION ABORT).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use scsi::cdb::DeviceType;
use scsi::error::{copy_aborted, Error};
use scsi::sense::{Asc, Sense, SenseKey};
use scsi::tpc::lid1::{CopyList, Cscd, Designator, Segment, SegmentKind};
use scsi::tpc::{self, CSCD_ID_RECEIVING_LU};
use scsi::{LogicalUnit, Nexus};

use crate::engine::{self, Range, Stop};
use crate::manager::{counters_of, CounterMap, Record};
use crate::stream::{Residue, Seg, Side};

/// One segment, resolved.
#[derive(Debug)]
struct Step {
    seg: Segment,
    src: Arc<LogicalUnit>,
    dst: Arc<LogicalUnit>,
    /// PAD, FIXED and block length of each side's CSCD (stream segments).
    sides: (Side, Side),
}

/// A CSCD's stream parameters (CSCD FFFFh, the receiving LU: variable, no PAD).
fn side_of(list: &CopyList, index: u16) -> Side {
    match list.cscds.get(usize::from(index)) {
        Some((
            _,
            Cscd::Identification {
                pad,
                fixed,
                block_len,
                ..
            },
        )) => Side {
            pad: *pad,
            fixed: *fixed,
            block_len: *block_len,
        },
        None => Side::default(),
    }
}

/// A copy ready to run.
#[derive(Debug)]
pub(crate) struct Job {
    nexus: Nexus,
    steps: Vec<Step>,
    pub(crate) record: Arc<Record>,
    counters: CounterMap,
}

impl Job {
    /// Resolves every CSCD a segment names among `accessible` (the initiator's LUs
    /// on every target) and checks the held-data limit, before any data moves: a
    /// designator outside the initiator's access fails the command with nothing
    /// read or written.
    pub(crate) fn prepare(
        receiving: &Arc<LogicalUnit>,
        nexus: &Nexus,
        list: CopyList,
        accessible: &[Arc<LogicalUnit>],
        record: Arc<Record>,
        counters: CounterMap,
    ) -> Result<Self, Sense> {
        let lookup = Lookup {
            receiving,
            nexus,
            list: &list,
            accessible,
        };
        let mut steps = Vec::with_capacity(list.segments.len());
        for (i, seg) in list.segments.iter().enumerate() {
            let src = lookup.resolve(seg.src, i, seg.offset + 4)?;
            let dst = lookup.resolve(seg.dst, i, seg.offset + 6)?;
            // Each side must be the device type the segment moves data with (a
            // tape receiving a block segment through CSCD FFFFh, say).
            let (want_src, want_dst) = device_types(&seg.kind);
            for (want, lu, at) in [(want_src, &src, 4), (want_dst, &dst, 6)] {
                if want.is_some_and(|t| lu.device_type() != t) {
                    return Err(copy_aborted(
                        Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE,
                        i,
                        seg.offset + at,
                    ));
                }
            }
            steps.push(Step {
                seg: seg.clone(),
                src,
                dst,
                sides: (side_of(&list, seg.src), side_of(&list, seg.dst)),
            });
        }
        let mut held = 0u64;
        // Stream segments hold what they process up to the limit, keeping the most
        // recent bytes (SPC-4 5.17.4.5); 0Dh's total is known here and checked.
        for (i, s) in steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.seg.hold && !s.seg.kind.is_stream())
        {
            held += byte_range(&s.src, &s.dst, &s.seg.kind, i, s.seg.offset)?.len;
            if held > u64::from(tpc::HELD_DATA_LIMIT) {
                return Err(Sense::invalid_param_field((s.seg.offset + 10) as u16, None));
            }
        }
        Ok(Self {
            nexus: nexus.clone(),
            steps,
            record,
            counters,
        })
    }

    /// Runs the segments in order.
    pub(crate) fn run(&self) -> Result<(), Sense> {
        let nexus = &self.nexus;
        let rec = &self.record;
        // Residual data of stream segments, carried from one to the next; what a
        // last segment with CAT leaves is dropped with it (SPC-4 Table 116).
        let mut residue = Residue::default();
        for (i, step) in self.steps.iter().enumerate() {
            let (seg, src, dst) = (&step.seg, step.src.as_ref(), step.dst.as_ref());
            if seg.kind.is_stream() {
                Seg {
                    index: i,
                    offset: seg.offset,
                    kind: &seg.kind,
                    src,
                    dst,
                    src_side: step.sides.0,
                    dst_side: step.sides.1,
                    hold: seg.hold,
                    nexus,
                    rec,
                }
                .run(&mut residue)?;
                rec.segments_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // One COPY ABORTED mapping for whatever stops a segment.
            let denied = |e: Error, pointer: usize| {
                e.log("copy segment");
                e.copy_aborted(i, pointer)
            };
            match seg.kind {
                // Run above, by `stream::Seg`.
                SegmentKind::BlockToStream { .. }
                | SegmentKind::StreamToBlock { .. }
                | SegmentKind::BlockBytesToStream { .. }
                | SegmentKind::StreamToBlockBytes { .. }
                | SegmentKind::DataToStream { .. }
                | SegmentKind::StreamToDiscard { .. }
                | SegmentKind::Filemarks { .. } => {}
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
                    let r = byte_range(src, dst, &seg.kind, i, seg.offset)?;
                    src.check_copy_access(nexus, false)
                        .map_err(|d| denied(d, seg.offset + 4))?;
                    dst.check_copy_access(nexus, true)
                        .map_err(|d| denied(d, seg.offset + 6))?;
                    let counters = counters_of(&self.counters, &dst.identity().naa);
                    let permit = |write: bool| {
                        if write {
                            dst.check_copy_access(nexus, true)
                        } else {
                            src.check_copy_access(nexus, false)
                        }
                    };
                    // Data a 0Dh segment holds is captured inside each window, under
                    // the window's locks: exactly the bytes copied.
                    let mut held = rec.held.lock().unwrap_or_else(|e| e.into_inner());
                    let hold_at = held.len();
                    let hold = if seg.hold {
                        held.resize(hold_at + r.len as usize, 0);
                        Some(&mut held[hold_at..])
                    } else {
                        None
                    };
                    let result = engine::copy_range(
                        src,
                        dst,
                        r,
                        &rec.abort,
                        &permit,
                        &rec.bytes,
                        &counters.paths,
                        hold,
                    );
                    if result.is_err() && seg.hold {
                        held.truncate(hold_at);
                    }
                    drop(held);
                    match result {
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
            rec.segments_done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What a CSCD index is resolved against for one copy.
struct Lookup<'a> {
    receiving: &'a Arc<LogicalUnit>,
    nexus: &'a Nexus,
    list: &'a CopyList,
    accessible: &'a [Arc<LogicalUnit>],
}

impl<'a> Lookup<'a> {
    fn resolve(
        &self,
        index: u16,
        segment: usize,
        pointer: usize,
    ) -> Result<Arc<LogicalUnit>, Sense> {
        if index == CSCD_ID_RECEIVING_LU {
            return Ok(self.receiving.clone());
        }
        let Some((at, cscd)) = self.list.cscds.get(usize::from(index)) else {
            return Err(copy_aborted(Asc::UNREACHABLE_COPY_TARGET, segment, pointer));
        };
        let Cscd::Identification {
            designator,
            block_len,
            pdt,
            ..
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
        // An LU of another type than the descriptor says: COPY ABORTED, INCORRECT
        // COPY TARGET DEVICE TYPE.
        if lu.device_type().code() != *pdt {
            return Err(copy_aborted(
                Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE,
                segment,
                *at,
            ));
        }
        if *pdt == 0 && *block_len != 0 && *block_len != lu.block_size() {
            return Err(copy_aborted(
                Asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
                segment,
                at + 29,
            ));
        }
        Ok(lu.clone())
    }
}

/// The device types a segment's source and destination must be (`None`: either).
fn device_types(kind: &SegmentKind) -> (Option<DeviceType>, Option<DeviceType>) {
    use DeviceType::{Block, Stream};
    match kind {
        SegmentKind::BlockToBlock { .. } | SegmentKind::BlockToBlockBytes { .. } => {
            (Some(Block), Some(Block))
        }
        SegmentKind::BlockToStream { .. } | SegmentKind::BlockBytesToStream { .. } => {
            (Some(Block), Some(Stream))
        }
        SegmentKind::StreamToBlock { .. } | SegmentKind::StreamToBlockBytes { .. } => {
            (Some(Stream), Some(Block))
        }
        SegmentKind::DataToStream { .. } | SegmentKind::Filemarks { .. } => (None, Some(Stream)),
        SegmentKind::StreamToDiscard { .. } => (Some(Stream), None),
        SegmentKind::Verify { .. } | SegmentKind::RegisterKey { .. } => (None, None),
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

/// The bytes a block→block segment moves, checked against both LUs.
pub(crate) fn byte_range(
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
