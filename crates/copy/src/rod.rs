//! POPULATE TOKEN and WRITE USING TOKEN (SBC-3 5.9, 5.36) in the copy manager.
//!
//! ```text
//!  PT  ─► Tokens::create: ranges locked shared ─► snapshot image (reflink / shared
//!         RAM pages) or change-vulnerable watch ─► 512-byte token, kept in the
//!         list's record for RECEIVE ROD TOKEN INFORMATION
//!  WUT ─► token looked up by its bytes, through the initiator's access ─► plan:
//!         ROD bytes (source ranges from OFFSET INTO ROD) onto destination ranges
//!         ─► job on the executor, window by window under the destination's locks:
//!            image → native copy (reflink from a reflink) or bounce
//!            live source → engine::copy_range, the token checked alive per window
//!            zero token → write_zeroes
//!         ─► GOOD, or a partial completion with the contiguous blocks written
//! ```
//! Without IMMED the command waits for its job (passing on its abort); with IMMED
//! it returns GOOD once the job is queued and the client polls RECEIVE ROD TOKEN
//! INFORMATION or RECEIVE COPY STATUS(LID4).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use scsi::error::Error;
use scsi::lu::Origin;
use scsi::sense::{Asc, Sense, SenseKey};
use scsi::tpc::lid1::ListIdUsage;
use scsi::tpc::rod::{rod_type, token_asc, token_error, BlockRange};
use scsi::tpc::{PopulateToken, WriteUsingToken};
use scsi::{LogicalUnit, Nexus};

use crate::engine::{self, Range, Stop, BOUNCE_CHUNK, WINDOW};
use crate::manager::{counters_of, owned, wait, LuCounters, Manager, Op, Record};
use crate::token::{Data, InUse};

pub(crate) fn populate_token(m: &Manager, req: PopulateToken<'_>) -> Result<(), Sense> {
    let naa = req.lu.identity().naa;
    let accessible = m.resolver.accessible(req.nexus);
    let lu = owned(&accessible, req.lu)?;
    let now = Instant::now();
    let op = Op::PopulateToken;
    let rec = m.start(req.nexus, naa, op, req.list_id, ListIdUsage::Hold, now)?;
    let counters = counters_of(&m.counters, &naa);
    let p = &req.params;
    let result = m
        .tokens
        .create(
            &lu,
            req.nexus,
            req.list_id,
            p.rod_type,
            p.inactivity_timeout,
            &p.ranges,
            counters.clone(),
            now,
        )
        .map(|token| {
            let blocks: u64 = p.ranges.iter().map(|r| u64::from(r.blocks)).sum();
            rec.blocks.store(blocks, Ordering::Relaxed);
            rec.bytes.store(token.bytes_represented, Ordering::Relaxed);
            tracing::info!(
                initiator = %req.nexus.initiator,
                list_id = req.list_id,
                ranges = p.ranges.len(),
                bytes = token.bytes_represented,
                rod_type = format!("{:08x}", token.rod_type),
                us = now.elapsed().as_micros() as u64,
                "POPULATE TOKEN"
            );
            *rec.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        });
    if let Err(s) = &result {
        tracing::warn!(
            initiator = %req.nexus.initiator,
            list_id = req.list_id,
            key = s.key.0,
            asc = format!("{:04x}", s.asc.0),
            "POPULATE TOKEN refused"
        );
    }
    m.finish(req.nexus, &rec, &result, Instant::now());
    m.release(&naa);
    result
}

/// One contiguous piece of a WRITE USING TOKEN: source bytes (at the source LU's,
/// or its image's, offsets) onto destination bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) src_off: u64,
    pub(crate) dst_off: u64,
    pub(crate) len: u64,
}

/// Lays the ROD (the token's ranges, concatenated, from `offset` bytes in) onto
/// the destination ranges. OFFSET INTO ROD at or past the ROD's end is INVALID
/// FIELD IN PARAMETER LIST; a destination longer than what the ROD has left is
/// COPY TARGET DEVICE DATA UNDERRUN with INFORMATION 0, before any byte moves.
pub(crate) fn plan(
    rod: &[BlockRange],
    src_bs: u64,
    offset: u64,
    dst: &[BlockRange],
    dst_bs: u64,
) -> Result<Vec<Piece>, Sense> {
    let rod_bytes: u64 = rod.iter().map(|r| u64::from(r.blocks) * src_bs).sum();
    let need: u64 = dst.iter().map(|r| u64::from(r.blocks) * dst_bs).sum();
    if need == 0 {
        return Ok(Vec::new());
    }
    if offset >= rod_bytes {
        return Err(Sense::invalid_param_field(8, None));
    }
    if need > rod_bytes - offset {
        let mut s = Sense::illegal(token_asc::COPY_TARGET_DEVICE_DATA_UNDERRUN);
        s.information = Some(0);
        return Err(s);
    }
    // The ROD as (offset, length) byte runs of the source, from OFFSET INTO ROD on.
    let mut src: VecDeque<(u64, u64)> = rod
        .iter()
        .filter(|r| r.blocks > 0)
        .map(|r| (r.lba * src_bs, u64::from(r.blocks) * src_bs))
        .collect();
    let mut skip = offset;
    while skip > 0 {
        let Some(front) = src.front_mut() else { break };
        if front.1 <= skip {
            skip -= front.1;
            src.pop_front();
        } else {
            front.0 += skip;
            front.1 -= skip;
            skip = 0;
        }
    }
    let mut out: Vec<Piece> = Vec::new();
    for d in dst.iter().filter(|r| r.blocks > 0) {
        let (mut d_off, mut d_left) = (d.lba * dst_bs, u64::from(d.blocks) * dst_bs);
        while d_left > 0 {
            // `need` fits in what the ROD has left, so a run is always there.
            let Some(front) = src.front_mut() else {
                return Err(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE));
            };
            let n = d_left.min(front.1);
            match out.last_mut() {
                Some(p) if p.src_off + p.len == front.0 && p.dst_off + p.len == d_off => p.len += n,
                _ => out.push(Piece {
                    src_off: front.0,
                    dst_off: d_off,
                    len: n,
                }),
            }
            front.0 += n;
            front.1 -= n;
            if front.1 == 0 {
                src.pop_front();
            }
            d_off += n;
            d_left -= n;
        }
    }
    Ok(out)
}

/// A WRITE USING TOKEN ready to run: it owns its destination, the token in use
/// (or none for the zero token), and its record.
#[derive(Debug)]
struct WriteJob {
    nexus: Nexus,
    dst: Arc<LogicalUnit>,
    source: Option<InUse>,
    pieces: Vec<Piece>,
    del_tkn: bool,
    record: Arc<Record>,
    counters: Arc<LuCounters>,
}

/// Why a WRITE USING TOKEN stopped, before the mapping to sense.
enum Failure {
    Aborted,
    /// The token died (a write to its change-vulnerable source) or the source can
    /// no longer be read by this initiator.
    Source(Sense),
    Io(Error),
}

impl From<Stop> for Failure {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Aborted => Failure::Aborted,
            Stop::Denied { write: false, why } => Failure::Source(why.sense()),
            Stop::Denied { write: true, why } => Failure::Io(why),
            Stop::Io { error, .. } => Failure::Io(Error::Io(error)),
        }
    }
}

impl WriteJob {
    fn run(&self) -> Result<(), Sense> {
        let rec = &self.record;
        let bs = u64::from(self.dst.block_size());
        let mut result = Ok(());
        for p in &self.pieces {
            let r = self.piece(*p);
            // Pieces run in destination order, so the bytes done are contiguous
            // from the first block.
            rec.blocks
                .store(rec.bytes.load(Ordering::Relaxed) / bs, Ordering::Relaxed);
            if let Err(f) = r {
                result = Err(f);
                break;
            }
        }
        if result.is_ok() && !self.dst.write_cache_enabled() {
            result = self.dst.flush().map_err(|e| Failure::Io(Error::Io(e)));
        }
        let done = rec.blocks.load(Ordering::Relaxed);
        if let Some(u) = &self.source {
            self.counters.token_used();
            if self.del_tkn && result.is_ok() {
                u.token.delete();
            }
        }
        result.map_err(|f| self.answer(f, done))
    }

    /// SBC-3 5.36 with Windows' resume rule: a failure after some blocks are
    /// written is COPY ABORTED / COPY TARGET DEVICE DATA UNDERRUN with INFORMATION
    /// = the contiguous blocks written; before any, the failure's own answer.
    fn answer(&self, f: Failure, done: u64) -> Sense {
        if done > 0 && !matches!(f, Failure::Aborted) {
            let mut s = Sense::new(
                SenseKey::COPY_ABORTED,
                token_asc::COPY_TARGET_DEVICE_DATA_UNDERRUN,
            );
            s.information = Some(done);
            return s;
        }
        match f {
            Failure::Aborted => Sense::new(SenseKey::ABORTED_COMMAND, Asc::NO_ADDITIONAL_SENSE),
            Failure::Source(s) => s,
            Failure::Io(e) => {
                e.log("WRITE USING TOKEN");
                e.sense()
            }
        }
    }

    fn permit_dst(&self) -> Result<(), Error> {
        self.dst.check_copy_access(&self.nexus, true)
    }

    fn piece(&self, p: Piece) -> Result<(), Failure> {
        let rec = &self.record;
        let dst = self.dst.as_ref();
        let Some(source) = &self.source else {
            return self.zeroes(p);
        };
        match &source.data {
            Data::Live => {
                let token = &source.token;
                let src = source.lu.as_ref();
                let permit = |write: bool| {
                    if write {
                        return self.permit_dst();
                    }
                    if !token.alive() {
                        return Err(Error::Sense(token_error(token.death())));
                    }
                    src.check_copy_access(&self.nexus, false)
                };
                engine::copy_range(
                    src,
                    dst,
                    Range {
                        src_off: p.src_off,
                        dst_off: p.dst_off,
                        len: p.len,
                    },
                    &rec.abort,
                    &permit,
                    &rec.bytes,
                    &self.counters.token_paths,
                    None,
                )
                .map_err(Failure::from)
            }
            Data::Image(image) => {
                let bs = u64::from(dst.block_size());
                let mut at = 0;
                while at < p.len {
                    if rec.abort.load(Ordering::Acquire) {
                        return Err(Failure::Aborted);
                    }
                    let n = WINDOW.min(p.len - at);
                    let (lba, end) = ((p.dst_off + at) / bs, (p.dst_off + at + n).div_ceil(bs));
                    let x = dst.lock_exclusive(lba, end - lba, Origin::Copy);
                    self.permit_dst().map_err(Failure::Io)?;
                    match x.write_from_store(
                        image.as_ref(),
                        p.src_off + at,
                        p.dst_off + at,
                        n,
                        BOUNCE_CHUNK,
                    ) {
                        Ok(Some(r)) => self.counters.token_paths.add(r),
                        Ok(None) => {
                            self.counters
                                .token_paths
                                .bounce
                                .fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => return Err(Failure::Io(Error::Io(e))),
                    }
                    at += n;
                    rec.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    /// The block device zero token: zeros over the destination (FFFF0001h).
    fn zeroes(&self, p: Piece) -> Result<(), Failure> {
        let rec = &self.record;
        let dst = self.dst.as_ref();
        let bs = u64::from(dst.block_size());
        let mut at = 0;
        while at < p.len {
            if rec.abort.load(Ordering::Acquire) {
                return Err(Failure::Aborted);
            }
            let n = WINDOW.min(p.len - at);
            let (lba, blocks) = ((p.dst_off + at) / bs, n / bs);
            let x = dst.lock_exclusive(lba, blocks, Origin::Copy);
            self.permit_dst().map_err(Failure::Io)?;
            x.write_zeroes(p.dst_off + at, n)
                .map_err(|e| Failure::Io(Error::Io(e)))?;
            at += n;
            rec.bytes.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }
}

pub(crate) fn write_using_token(m: &Manager, req: WriteUsingToken<'_>) -> Result<(), Sense> {
    let naa = req.lu.identity().naa;
    let accessible = m.resolver.accessible(req.nexus);
    let dst = owned(&accessible, req.lu)?;
    let p = &req.params;
    let now = Instant::now();
    let zero = codec::be::u32(&p.token[..], 0) == rod_type::BLOCK_ZERO;
    let dst_bs = u64::from(dst.block_size());
    let (source, pieces) = if zero {
        let pieces = p
            .ranges
            .iter()
            .filter(|r| r.blocks > 0)
            .map(|r| Piece {
                src_off: 0,
                dst_off: r.lba * dst_bs,
                len: u64::from(r.blocks) * dst_bs,
            })
            .collect();
        (None, pieces)
    } else {
        let used = m
            .tokens
            .acquire(&p.token, req.nexus, &accessible, now)
            .inspect_err(|s| {
                tracing::warn!(
                    initiator = %req.nexus.initiator,
                    list_id = req.list_id,
                    asc = format!("{:04x}", s.asc.0),
                    "WRITE USING TOKEN refused: token"
                );
            })?;
        let src_bs = u64::from(used.lu.block_size());
        let offset = p.offset_into_rod.saturating_mul(dst_bs);
        let pieces = plan(&used.token.ranges, src_bs, offset, &p.ranges, dst_bs)?;
        (Some(used), pieces)
    };
    let op = Op::WriteUsingToken;
    let rec = m.start(req.nexus, naa, op, req.list_id, ListIdUsage::Hold, now)?;
    rec.total
        .store(pieces.iter().map(|p| p.len).sum(), Ordering::Relaxed);
    let job = WriteJob {
        nexus: req.nexus.clone(),
        dst,
        source,
        pieces,
        del_tkn: p.del_tkn,
        record: rec.clone(),
        counters: counters_of(&m.counters, &naa),
    };
    let (tx, rx) = sync_channel(1);
    let started = Instant::now();
    let nexus = req.nexus.clone();
    let list_id = req.list_id;
    let log_end = {
        let rec = rec.clone();
        move |result: &Result<(), Sense>| {
            let bytes = rec.bytes.load(Ordering::Relaxed);
            match result {
                Ok(()) => tracing::info!(
                    initiator = %nexus.initiator,
                    list_id,
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "WRITE USING TOKEN done"
                ),
                Err(s) => tracing::warn!(
                    initiator = %nexus.initiator,
                    list_id,
                    bytes_before_failure = bytes,
                    key = s.key.0,
                    asc = format!("{:04x}", s.asc.0),
                    "WRITE USING TOKEN failed"
                ),
            }
        }
    };
    if req.abort.load(Ordering::Acquire) {
        rec.abort.store(true, Ordering::Release);
    }
    let immed = p.immed;
    let complete = m.completion(&rec, naa);
    let submitted = m.executor.submit(move || {
        let result = job.run();
        log_end(&result);
        complete(&result);
        drop(job);
        let _ = tx.send(result);
    });
    if submitted.is_err() {
        let e = Sense::illegal(Asc::INSUFFICIENT_RESOURCES);
        m.finish(req.nexus, &rec, &Err(e.clone()), Instant::now());
        m.release(&naa);
        return Err(e);
    }
    if immed {
        rec.background.store(true, Ordering::Release);
        return Ok(());
    }
    wait(&rx, req.abort, &rec.abort)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lba: u64, blocks: u32) -> BlockRange {
        BlockRange { lba, blocks }
    }

    fn piece(src_off: u64, dst_off: u64, len: u64) -> Piece {
        Piece {
            src_off,
            dst_off,
            len,
        }
    }

    #[test]
    fn plan_walks_both_lists_from_the_offset() {
        // 512-byte source ranges onto one 4096-byte destination block.
        let p = plan(&[r(10, 4), r(100, 8)], 512, 0, &[r(7, 1)], 4096).unwrap();
        assert_eq!(
            p,
            vec![
                piece(10 * 512, 7 * 4096, 2048),
                piece(100 * 512, 7 * 4096 + 2048, 2048)
            ]
        );
        // Offset into the first range, split destination, zero-length ranges skipped.
        let p = plan(
            &[r(0, 4), r(50, 4)],
            512,
            3 * 512,
            &[r(9, 0), r(20, 2), r(30, 2)],
            512,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                piece(3 * 512, 20 * 512, 512),
                piece(50 * 512, 21 * 512, 512),
                piece(51 * 512, 30 * 512, 1024),
            ]
        );
        // An offset past the whole first range.
        let p = plan(&[r(0, 4), r(50, 4)], 512, 5 * 512, &[r(0, 2)], 512).unwrap();
        assert_eq!(p, vec![piece(51 * 512, 0, 1024)]);
        // Adjacent on both sides: merged.
        let p = plan(&[r(0, 2), r(2, 2)], 512, 0, &[r(40, 4)], 512).unwrap();
        assert_eq!(p, vec![piece(0, 40 * 512, 2048)]);
    }

    #[test]
    fn plan_refuses_before_any_byte_moves() {
        let e = plan(&[r(0, 4)], 512, 4 * 512, &[r(0, 1)], 512).unwrap_err();
        assert_eq!(
            (e.asc, e.field.unwrap().byte),
            (Asc::INVALID_FIELD_IN_PARAMETER_LIST, 8)
        );
        let e = plan(&[r(0, 4)], 512, 512, &[r(0, 4)], 512).unwrap_err();
        assert_eq!(
            (e.asc, e.information),
            (token_asc::COPY_TARGET_DEVICE_DATA_UNDERRUN, Some(0))
        );
        assert_eq!(e.key, SenseKey::ILLEGAL_REQUEST);
        assert!(plan(&[r(0, 4)], 512, 0, &[r(5, 0)], 512)
            .unwrap()
            .is_empty());
    }
}
