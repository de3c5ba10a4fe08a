//! A pipelined load generator that measures the target, not itself.
//!
//! Many sessions, each keeping `queue_depth` commands in flight, all driven by
//! one async thread (or a few): a session sends every command its CmdSN window
//! and queue depth allow in one write, reads every response the socket holds
//! before writing again, answers R2Ts with Data-Out, and records each command's
//! latency in a log-linear histogram. Reads and writes, sequential or random,
//! mixed in any ratio, optionally verified: each session owns a slice of the LU,
//! never has two commands on one unit at once, stamps every 512-byte piece it
//! writes with (unit, version) and checks what it reads back against the last
//! version it wrote. Works against any iSCSI target (logins go through
//! [`Endpoint::session`]).

use std::io;
use std::time::{Duration, Instant};

use codec::be;
use iscsi::pdu::{opcode, BhsWriter, BHS_LEN, NO_TAG};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

use crate::cdb;
use crate::load::{Endpoint, Pattern, Rng};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub sessions: u8,
    pub queue_depth: u32,
    pub io_bytes: u32,
    pub pattern: Pattern,
    /// Percent of commands that are READs (the rest WRITEs).
    pub read_pct: u8,
    /// Blocks at the start of the LU the run covers (split among sessions).
    pub span_blocks: u64,
    pub secs: f64,
    pub verify: bool,
    /// Async threads driving the sessions.
    pub threads: usize,
    /// Stop each session after this many commands (0: run for `secs`).
    pub max_ops: u64,
}

/// Latencies in a log-linear histogram: 16 sub-buckets per power of two of
/// nanoseconds (at most 6 % error), constant memory however long the run.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    max_ns: u64,
}

const SUB: u64 = 16;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; 64 * SUB as usize],
            max_ns: 0,
        }
    }
}

impl Histogram {
    fn index(ns: u64) -> usize {
        if ns < SUB {
            return ns as usize;
        }
        let exp = 63 - u64::from(ns.leading_zeros());
        let sub = (ns >> (exp - 4)) & (SUB - 1);
        ((exp - 3) * SUB + sub) as usize
    }

    /// The largest value a bucket holds.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let exp = i / SUB + 3;
        let sub = i % SUB;
        ((SUB + sub + 1) << (exp - 4)) - 1
    }

    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let last = self.counts.len() - 1;
        self.counts[Self::index(ns).min(last)] += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.max_ns = self.max_ns.max(o.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency `q` (0..=1) of the samples lie at or below.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let want = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Duration::from_nanos(Self::upper(i).min(self.max_ns));
            }
        }
        Duration::from_nanos(self.max_ns)
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub reads: u64,
    pub writes: u64,
    pub bytes: u64,
    pub secs: f64,
    pub latency: Histogram,
    /// Commands that did not end GOOD, and verified reads that did not match.
    pub errors: u64,
    pub mismatches: u64,
}

impl Report {
    pub fn iops(&self) -> f64 {
        (self.reads + self.writes) as f64 / self.secs
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    /// One line for scripts: `io ops N iops X MB/s Y p50_us .. p99_us .. p999_us .. max_us .. errors E mismatches M`.
    pub fn line(&self) -> String {
        let us = |d: Duration| d.as_micros();
        format!(
            "io ops {} reads {} writes {} iops {:.0} MB/s {:.1} p50_us {} p99_us {} p999_us {} max_us {} errors {} mismatches {}",
            self.reads + self.writes,
            self.reads,
            self.writes,
            self.iops(),
            self.mb_per_sec(),
            us(self.latency.quantile(0.50)),
            us(self.latency.quantile(0.99)),
            us(self.latency.quantile(0.999)),
            us(self.latency.max()),
            self.errors,
            self.mismatches,
        )
    }
}

/// Runs `spec` against `ep`.
pub fn run(ep: &Endpoint, spec: &Spec) -> io::Result<Report> {
    let block = u64::from(ep.block_size);
    let unit_blocks = u64::from(spec.io_bytes) / block;
    if unit_blocks == 0 || u64::from(spec.io_bytes) % block != 0 {
        return Err(io::Error::other(
            "io size must be a multiple of the block size",
        ));
    }
    let slice_units = spec.span_blocks / u64::from(spec.sessions.max(1)) / unit_blocks;
    if slice_units < u64::from(spec.queue_depth) * 2 {
        return Err(io::Error::other(
            "span too small for sessions × queue depth",
        ));
    }
    // Logins first (blocking testkit sessions), then hand the sockets to tokio.
    let mut sessions = Vec::new();
    for s in 0..spec.sessions {
        // Data-In of up to 256 KiB per PDU, as Linux's open-iscsi asks.
        let ini = ep.session_with(s, &[("MaxRecvDataSegmentLength", "262144")])?;
        let neg = Negotiated {
            cmd_sn: ini.cmd_sn,
            exp_stat_sn: ini.exp_stat_sn,
            mrdsl: ini.target_mrdsl,
            first_burst: ini.first_burst,
            immediate: ini.immediate_data,
        };
        if ini.digests.header || ini.digests.data {
            return Err(io::Error::other("the generator runs without digests"));
        }
        sessions.push((ini.into_stream(), neg, s));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads.max(1))
        .enable_all()
        .build()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(spec.secs);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for (stream, neg, s) in sessions {
            stream.set_nonblocking(true)?;
            let stream = tokio::net::TcpStream::from_std(stream)?;
            let cfg = SessionCfg {
                lun: ep.lun,
                unit_blocks,
                base_unit: slice_units * u64::from(s),
                units: slice_units,
                seed: u64::from(s) + 1,
                session: s,
            };
            let spec = spec.clone();
            tasks.push(tokio::spawn(drive(stream, neg, cfg, spec, deadline)));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(io::Error::other)?);
        }
        Ok::<_, io::Error>(out)
    })?;
    let secs = start.elapsed().as_secs_f64();
    let mut total = Report {
        secs,
        ..Report::default()
    };
    for r in results {
        let r = r?;
        total.reads += r.reads;
        total.writes += r.writes;
        total.bytes += r.bytes;
        total.errors += r.errors;
        total.mismatches += r.mismatches;
        total.latency.merge(&r.latency);
    }
    Ok(total)
}

struct Negotiated {
    cmd_sn: u32,
    exp_stat_sn: u32,
    mrdsl: usize,
    first_burst: usize,
    immediate: bool,
}

struct SessionCfg {
    lun: u16,
    unit_blocks: u64,
    base_unit: u64,
    units: u64,
    seed: u64,
    session: u8,
}

struct Slot {
    itt: u32,
    unit: u64,
    read: bool,
    /// For writes: the version written; for verified reads: the version expected
    /// (0: unknown, not checked).
    version: u32,
    started: Instant,
    data: Vec<u8>,
    got: usize,
    status: Option<u8>,
}

/// Fills `buf` with the stamp of (session, unit, version) in every 512-byte piece.
fn stamp(buf: &mut [u8], session: u8, unit: u64, version: u32) {
    for (i, piece) in buf.chunks_mut(512).enumerate() {
        piece[..8].copy_from_slice(&unit.to_be_bytes());
        piece[8..12].copy_from_slice(&version.to_be_bytes());
        piece[12] = session;
        piece[13..16].copy_from_slice(&(i as u32).to_be_bytes()[1..]);
        let fill = (unit as u8) ^ (version as u8) ^ (i as u8);
        piece[16..].fill(fill);
    }
}

fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

async fn drive(
    stream: tokio::net::TcpStream,
    mut neg: Negotiated,
    cfg: SessionCfg,
    spec: Spec,
    deadline: Instant,
) -> io::Result<Report> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let mut rng = Rng::new(cfg.seed);
    let io_bytes = spec.io_bytes as usize;
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut slots: Vec<Option<Slot>> = (0..spec.queue_depth).map(|_| None).collect();
    let mut busy = vec![false; cfg.units as usize];
    let mut versions = vec![0u32; if spec.verify { cfg.units as usize } else { 0 }];
    let mut next_seq = 0u64;
    let mut next_itt = 1u32;
    // Until the target tells us its window, one command at a time.
    let mut max_cmd_sn = neg.cmd_sn;
    let mut inflight = 0u32;
    let mut issued = 0u64;
    let mut r = Report::default();
    let pattern_buf = {
        let mut b = vec![0u8; io_bytes];
        stamp(&mut b, cfg.session, u64::MAX, 0);
        b
    };
    let mut data_scratch = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        let stopping = now >= deadline || (spec.max_ops > 0 && issued >= spec.max_ops);
        // Fill the window.
        while inflight < spec.queue_depth
            && !sn_lt(max_cmd_sn, neg.cmd_sn)
            && (spec.max_ops == 0 || issued < spec.max_ops)
            && (now < deadline)
        {
            let Some(idx) = slots.iter().position(Option::is_none) else {
                break;
            };
            let unit = match spec.pattern {
                Pattern::Sequential => {
                    let mut u = next_seq % cfg.units;
                    while busy[u as usize] {
                        u = (u + 1) % cfg.units;
                    }
                    next_seq = u + 1;
                    u
                }
                Pattern::Random => loop {
                    let u = rng.below(cfg.units);
                    if !busy[u as usize] {
                        break u;
                    }
                },
            };
            busy[unit as usize] = true;
            let read = rng.below(100) < u64::from(spec.read_pct);
            let lba = (cfg.base_unit + unit) * cfg.unit_blocks;
            let blocks = cfg.unit_blocks as u32;
            let itt = next_itt;
            next_itt = next_itt.wrapping_add(1).max(1);
            let mut slot = Slot {
                itt,
                unit,
                read,
                version: 0,
                started: now,
                data: Vec::new(),
                got: 0,
                status: None,
            };
            let cdb = if read {
                cdb::read16(lba, blocks)
            } else {
                cdb::write16(lba, blocks)
            };
            if spec.verify {
                let v = &mut versions[unit as usize];
                if read {
                    slot.version = *v;
                    slot.data = vec![0u8; io_bytes];
                } else {
                    *v = v.wrapping_add(1).max(1);
                    slot.version = *v;
                    let mut d = vec![0u8; io_bytes];
                    stamp(&mut d, cfg.session, cfg.base_unit + unit, *v);
                    slot.data = d;
                }
            }
            let imm = if !read && neg.immediate {
                io_bytes.min(neg.first_burst).min(neg.mrdsl)
            } else {
                0
            };
            let flags = 0x80 | if read { 0x40 } else { 0x20 } | 1;
            let mut w = BhsWriter::new(opcode::SCSI_COMMAND, flags)
                .data_len(imm)
                .u16_at(8, cfg.lun)
                .u32_at(16, itt)
                .u32_at(20, spec.io_bytes)
                .u32_at(24, neg.cmd_sn)
                .u32_at(28, neg.exp_stat_sn);
            w.bytes[32..48].copy_from_slice(&cdb);
            out.extend_from_slice(&w.finish());
            if imm > 0 {
                let d = if spec.verify {
                    &slot.data
                } else {
                    &pattern_buf
                };
                out.extend_from_slice(&d[..imm]);
                out.resize(out.len() + (4 - imm % 4) % 4, 0);
            }
            neg.cmd_sn = neg.cmd_sn.wrapping_add(1);
            slots[idx] = Some(slot);
            inflight += 1;
            issued += 1;
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        }
        if inflight == 0 {
            if stopping {
                break;
            }
            // Window closed with nothing in flight cannot happen with a sane target.
            return Err(io::Error::other(
                "CmdSN window closed with no command in flight",
            ));
        }
        // One PDU, then every PDU already buffered, before writing again.
        loop {
            let mut bhs = [0u8; BHS_LEN];
            rd.read_exact(&mut bhs).await?;
            let ahs = usize::from(bhs[4]) * 4;
            let dlen =
                (usize::from(bhs[5]) << 16) | (usize::from(bhs[6]) << 8) | usize::from(bhs[7]);
            if ahs > 0 {
                let mut skip = vec![0u8; ahs];
                rd.read_exact(&mut skip).await?;
            }
            let padded = dlen.div_ceil(4) * 4;
            let op = bhs[0] & 0x3f;
            let itt = be::u32(&bhs, 16);
            // StatSN, ExpCmdSN, MaxCmdSN (all target PDUs but R2T/Data-In without status carry StatSN).
            let stat_sn = be::u32(&bhs, 24);
            let max = be::u32(&bhs, 32);
            if matches!(
                op,
                opcode::SCSI_RESPONSE | opcode::DATA_IN | opcode::R2T | opcode::NOP_IN
            ) {
                if sn_lt(max_cmd_sn, max) {
                    max_cmd_sn = max;
                }
                let status_bit = op != opcode::DATA_IN || bhs[1] & 0x01 != 0;
                if status_bit && op != opcode::R2T && itt != NO_TAG {
                    neg.exp_stat_sn = stat_sn.wrapping_add(1);
                }
            }
            let idx = slots
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.itt == itt));
            match op {
                opcode::DATA_IN => {
                    let off = be::u32(&bhs, 40) as usize;
                    match idx.and_then(|i| slots[i].as_mut()) {
                        Some(s) if spec.verify && off + dlen <= s.data.len() => {
                            s.got += dlen;
                            rd.read_exact(&mut s.data[off..off + dlen]).await?;
                            skip(&mut rd, padded - dlen).await?;
                        }
                        other => {
                            // Not checked: consumed straight from the read buffer.
                            if let Some(s) = other {
                                s.got += dlen;
                            }
                            skip(&mut rd, padded).await?;
                        }
                    }
                    if bhs[1] & 0x01 != 0 {
                        if let Some(s) = idx.and_then(|i| slots[i].as_mut()) {
                            s.status = Some(bhs[3]);
                        }
                    }
                }
                opcode::SCSI_RESPONSE => {
                    if data_scratch.len() < padded {
                        data_scratch.resize(padded, 0);
                    }
                    rd.read_exact(&mut data_scratch[..padded]).await?;
                    if let Some(s) = idx.and_then(|i| slots[i].as_mut()) {
                        s.status = Some(if bhs[2] != 0 { 0xff } else { bhs[3] });
                    }
                }
                opcode::R2T => {
                    let ttt = be::u32(&bhs, 20);
                    let offset = be::u32(&bhs, 40) as usize;
                    let len = be::u32(&bhs, 44) as usize;
                    if let Some(s) = idx.and_then(|i| slots[i].as_ref()) {
                        let src = if spec.verify { &s.data } else { &pattern_buf };
                        let mut o = offset;
                        let mut dsn = 0u32;
                        while o < offset + len && o < src.len() {
                            let n = (offset + len - o).min(neg.mrdsl).min(src.len() - o);
                            let h = BhsWriter::new(
                                opcode::DATA_OUT,
                                if o + n == offset + len { 0x80 } else { 0 },
                            )
                            .data_len(n)
                            .u16_at(8, cfg.lun)
                            .u32_at(16, itt)
                            .u32_at(20, ttt)
                            .u32_at(28, neg.exp_stat_sn)
                            .u32_at(36, dsn)
                            .u32_at(40, o as u32)
                            .finish();
                            out.extend_from_slice(&h);
                            out.extend_from_slice(&src[o..o + n]);
                            out.resize(out.len() + (4 - n % 4) % 4, 0);
                            o += n;
                            dsn += 1;
                        }
                    }
                }
                _ => {
                    // NOP-In (answer target pings), Async Message, Reject: skip the data.
                    if data_scratch.len() < padded {
                        data_scratch.resize(padded, 0);
                    }
                    rd.read_exact(&mut data_scratch[..padded]).await?;
                    if op == opcode::NOP_IN && be::u32(&bhs, 20) != NO_TAG {
                        let h = BhsWriter::new(0x40 | opcode::NOP_OUT, 0x80)
                            .u32_at(16, NO_TAG)
                            .u32_at(20, be::u32(&bhs, 20))
                            .u32_at(24, neg.cmd_sn)
                            .u32_at(28, neg.exp_stat_sn)
                            .finish();
                        out.extend_from_slice(&h);
                    }
                    if op == opcode::REJECT {
                        return Err(io::Error::other("the target rejected a PDU"));
                    }
                }
            }
            // A finished command: account for it and free its slot.
            if let Some(i) = idx {
                if let Some(st) = slots[i].as_ref().and_then(|s| s.status) {
                    let s = slots[i].take().expect("slot checked above");
                    inflight -= 1;
                    busy[s.unit as usize] = false;
                    r.latency.record(s.started.elapsed());
                    if st != 0 {
                        r.errors += 1;
                    } else if s.read {
                        r.reads += 1;
                        r.bytes += s.got as u64;
                        if spec.verify && s.version != 0 {
                            let mut want = vec![0u8; io_bytes];
                            stamp(&mut want, cfg.session, cfg.base_unit + s.unit, s.version);
                            if want != s.data {
                                r.mismatches += 1;
                            }
                        }
                    } else {
                        r.writes += 1;
                        r.bytes += io_bytes as u64;
                    }
                }
            }
            if rd.buffer().len() < BHS_LEN {
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    Ok(r)
}

/// Consumes `n` bytes without copying them out.
async fn skip(rd: &mut BufReader<OwnedReadHalf>, mut n: usize) -> io::Result<()> {
    while n > 0 {
        let b = rd.fill_buf().await?;
        if b.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let k = b.len().min(n);
        rd.consume(k);
        n -= k;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_the_bucket_error() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        for (q, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = h.quantile(q).as_micros() as f64;
            assert!((got - want).abs() / want < 0.07, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), Duration::from_micros(10_000));
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn histogram_buckets_are_monotonic() {
        let mut last = 0;
        for i in 0..(60 * SUB as usize) {
            let u = Histogram::upper(i);
            assert!(u >= last, "bucket {i}");
            assert_eq!(Histogram::index(u), i, "upper of {i} maps back");
            last = u;
        }
    }
}
