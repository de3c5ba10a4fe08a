//! Load generation over several testkit sessions: write throughput, COMPARE AND
//! WRITE latency under load, and a verified random read/write soak. Used by the
//! `oxload` benchmark binary and by the soak test; works against any iSCSI target.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::perf::Histogram;
use crate::xcopy::{command, cscd, list, seg_blocks};
use crate::{cdb, Initiator, ScsiResult, INITIATOR};

pub use crate::xcopy::naa;

/// Where to connect and which LU to drive.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: String,
    pub target: String,
    pub lun: u16,
    pub block_size: u32,
}

impl Endpoint {
    /// A logged-in session; `n` makes its ISID (and so its I_T nexus) unique.
    pub fn session(&self, n: u8) -> io::Result<Initiator> {
        self.session_with(n, &[])
    }

    /// [`Endpoint::session`] offering `keys` in the operational stage.
    pub fn session_with(&self, n: u8, keys: &[(&str, &str)]) -> io::Result<Initiator> {
        let mut i = Initiator::connect(&self.addr)?;
        // OXLOAD_ISID_TAG (a byte in hex, e.g. 4d) lets several generators share
        // one target without their sessions reinstating each other's. A value
        // that does not parse is refused: a silent default would collide.
        i.isid[4] = match std::env::var("OXLOAD_ISID_TAG") {
            Ok(v) => u8::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("OXLOAD_ISID_TAG={v}: not a byte in hex"),
                )
            })?,
            Err(_) => 0x4c,
        };
        i.isid[5] = n;
        let r = i.login_as(INITIATOR, Some(&self.target), keys)?;
        if r.status_class != 0 {
            return Err(io::Error::other(format!("login refused: {r:?}")));
        }
        // Targets that raise a power-on unit attention at login (tgt does) answer
        // the first command with it: clear it before measuring.
        for _ in 0..4 {
            if i.scsi(self.lun, &cdb::TEST_UNIT_READY, 0, None)?.status == 0 {
                break;
            }
        }
        Ok(i)
    }
}

impl Endpoint {
    /// The LU's size in blocks (READ CAPACITY(16)).
    pub fn capacity_blocks(&self) -> io::Result<u64> {
        let mut i = self.session(255)?;
        let mut c = [0u8; 16];
        c[0] = 0x9e;
        c[1] = 0x10;
        c[13] = 32;
        let r = i.scsi(self.lun, &c, 32, None)?;
        if r.status != 0 || r.data.len() < 12 {
            return Err(io::Error::other("READ CAPACITY(16) failed"));
        }
        let last = u64::from_be_bytes(r.data[..8].try_into().unwrap_or_default());
        let _ = i.logout();
        Ok(last + 1)
    }
}

/// Cheap deterministic PRNG (xorshift64*), so runs are repeatable per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Sequential,
    Random,
}

/// Result of a throughput run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub ops: u64,
    pub bytes: u64,
    pub secs: f64,
}

impl Throughput {
    pub fn iops(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// `sessions` sessions each writing `io_bytes` per command for `secs` over the
/// first `span_blocks` blocks (each session its own slice for sequential runs).
pub fn write_throughput(
    ep: &Endpoint,
    sessions: u8,
    io_bytes: u32,
    span_blocks: u64,
    pattern: Pattern,
    secs: f64,
) -> io::Result<Throughput> {
    let blocks = io_bytes / ep.block_size;
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for s in 0..sessions {
        let mut ini = ep.session(s)?;
        let lun = ep.lun;
        let (ops, stop) = (ops.clone(), stop.clone());
        let slice = span_blocks / u64::from(sessions);
        let base = slice * u64::from(s);
        let data = vec![s.wrapping_mul(37) | 1; io_bytes as usize];
        handles.push(std::thread::spawn(move || -> io::Result<()> {
            let mut rng = Rng::new(u64::from(s) + 1);
            let mut next = base;
            while !stop.load(Ordering::Relaxed) {
                let lba = match pattern {
                    Pattern::Sequential => {
                        if next + u64::from(blocks) > base + slice {
                            next = base;
                        }
                        let l = next;
                        next += u64::from(blocks);
                        l
                    }
                    Pattern::Random => {
                        rng.below(span_blocks / u64::from(blocks)) * u64::from(blocks)
                    }
                };
                let r = ini.scsi(lun, &cdb::write16(lba, blocks), 0, Some(&data))?;
                if r.status != 0 {
                    return Err(io::Error::other(format!("WRITE status {:#x}", r.status)));
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("writer panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let ops = ops.load(Ordering::Relaxed);
    Ok(Throughput {
        ops,
        bytes: ops * u64::from(io_bytes),
        secs,
    })
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

fn percentiles(mut v: Vec<Duration>) -> Latency {
    v.sort();
    let at = |q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Latency {
        samples: v.len(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: v.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
    }
}

/// An ESXi-style ATS heartbeat: one session doing one-block COMPARE AND WRITE on
/// `lba` back to back for `secs`, while `writers` other sessions write `io_bytes`
/// randomly over blocks `[lba + 1024, lba + 1024 + span)`, and, with `copy` =
/// (source LUN, destination LUN, blocks), another session runs EXTENDED COPY of
/// that LU pair over and over. Every CAW must succeed.
pub fn ats_latency(
    ep: &Endpoint,
    lba: u64,
    writers: u8,
    io_bytes: u32,
    span_blocks: u64,
    secs: f64,
    copy: Option<(u16, u16, u64)>,
) -> io::Result<Latency> {
    let bs = ep.block_size as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let copies = Arc::new(AtomicU64::new(0));
    if let Some((src, dst, blocks)) = copy {
        let (ep, stop, copies) = (ep.clone(), stop.clone(), copies.clone());
        handles.push(std::thread::spawn(move || -> io::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                xcopy(&ep, src, dst, blocks)?;
                copies.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for w in 0..writers {
        let mut ini = ep.session(100 + w)?;
        let lun = ep.lun;
        let stop = stop.clone();
        let blocks = io_bytes / ep.block_size;
        let data = vec![0xeeu8; io_bytes as usize];
        handles.push(std::thread::spawn(move || -> io::Result<()> {
            let mut rng = Rng::new(u64::from(w) + 77);
            while !stop.load(Ordering::Relaxed) {
                let at =
                    lba + 1024 + rng.below(span_blocks / u64::from(blocks)) * u64::from(blocks);
                let r = ini.scsi(lun, &cdb::write16(at, blocks), 0, Some(&data))?;
                if r.status != 0 {
                    return Err(io::Error::other(format!("WRITE status {:#x}", r.status)));
                }
            }
            Ok(())
        }));
    }
    let mut hb = ep.session(250)?;
    let mut current = vec![0u8; bs];
    let r = hb.scsi(ep.lun, &cdb::write16(lba, 1), 0, Some(&current))?;
    if r.status != 0 {
        return Err(io::Error::other("seeding the heartbeat block failed"));
    }
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    let mut result = Ok(());
    while Instant::now() < end {
        n += 1;
        let mut data = current.clone();
        let next = vec![(n % 251) as u8 + 1; bs];
        data.extend_from_slice(&next);
        let t = Instant::now();
        let r = hb.scsi(ep.lun, &cdb::compare_and_write(lba, 1), 0, Some(&data))?;
        lat.push(t.elapsed());
        if r.status != 0 {
            result = Err(io::Error::other(format!(
                "heartbeat CAW failed: status {:#x} sense {:?}",
                r.status,
                r.sense_code()
            )));
            break;
        }
        current = next;
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("writer panicked"))??;
    }
    result.map(|()| percentiles(lat))
}

/// Outcome of a soak run; latencies are per command, over all sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Soak {
    pub writes: u64,
    pub reads: u64,
    pub bytes: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Fills block `lba` of a soak write: every 8 bytes hold (lba, generation, session),
/// so a misplaced, stale or torn block is recognisable.
fn stamp(buf: &mut [u8], lba: u64, generation: u32, session: u8) {
    let word = lba ^ (u64::from(generation) << 40) ^ (u64::from(session) << 32);
    for c in buf.chunks_exact_mut(8) {
        c.copy_from_slice(&word.to_le_bytes());
    }
}

/// `sessions` sessions, each owning a disjoint slice of `span_blocks`, issue random
/// writes (1–`max_blocks` blocks) and read back random ranges for `secs`, verifying
/// every block against what that session last wrote there (blocks not yet written
/// in this run are not checked). Returns the counts; errors are counted and the
/// first few logged to stderr.
pub fn soak(
    ep: &Endpoint,
    sessions: u8,
    span_blocks: u64,
    max_blocks: u32,
    secs: f64,
) -> io::Result<Soak> {
    let bs = ep.block_size as usize;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for s in 0..sessions {
        let mut ini = ep.session(s)?;
        let lun = ep.lun;
        let slice = span_blocks / u64::from(sessions);
        let base = slice * u64::from(s);
        handles.push(std::thread::spawn(
            move || -> io::Result<(Soak, Histogram)> {
                let mut rng = Rng::new(u64::from(s) * 1000 + 3);
                // Constant memory however long the soak (a Vec of every latency
                // took about 85 MB for 5.3 million commands).
                let mut lat = Histogram::default();
                // generation 0 = never written (reads as zeros).
                let mut gens = vec![0u32; slice as usize];
                let mut out = Soak::default();
                let mut buf = Vec::new();
                while Instant::now() < end {
                    let n = 1 + rng.below(u64::from(max_blocks)) as u32;
                    let n = n.min(slice as u32);
                    let off = rng.below(slice - u64::from(n) + 1);
                    let lba = base + off;
                    if rng.below(2) == 0 {
                        buf.resize(n as usize * bs, 0);
                        for i in 0..n as usize {
                            let g = &mut gens[off as usize + i];
                            *g += 1;
                            stamp(&mut buf[i * bs..(i + 1) * bs], lba + i as u64, *g, s);
                        }
                        let t = Instant::now();
                        let r = ini.scsi(lun, &cdb::write16(lba, n), 0, Some(&buf))?;
                        lat.record(t.elapsed());
                        out.writes += 1;
                        out.bytes += buf.len() as u64;
                        if r.status != 0 {
                            out.errors += 1;
                            if out.errors <= 10 {
                                eprintln!(
                                    "soak session {s}: WRITE {lba}+{n} status {:#x}",
                                    r.status
                                );
                            }
                        }
                    } else {
                        let t = Instant::now();
                        let r = ini.scsi(lun, &cdb::read16(lba, n), n * bs as u32, None)?;
                        lat.record(t.elapsed());
                        out.reads += 1;
                        out.bytes += r.data.len() as u64;
                        if r.status != 0 || r.data.len() != n as usize * bs {
                            out.errors += 1;
                            if out.errors <= 10 {
                                eprintln!(
                                    "soak session {s}: READ {lba}+{n} status {:#x}",
                                    r.status
                                );
                            }
                            continue;
                        }
                        let mut want = vec![0u8; bs];
                        for (i, got) in r.data.chunks(bs).enumerate() {
                            let g = gens[off as usize + i];
                            if g == 0 {
                                continue;
                            }
                            stamp(&mut want, lba + i as u64, g, s);
                            if got != want.as_slice() {
                                out.errors += 1;
                                if out.errors <= 10 {
                                    eprintln!(
                                        "soak session {s}: block {} wrong data",
                                        lba + i as u64
                                    );
                                }
                            }
                        }
                    }
                }
                Ok((out, lat))
            },
        ));
    }
    let mut total = Soak::default();
    let mut lat = Histogram::default();
    for h in handles {
        let (r, l) = h
            .join()
            .map_err(|_| io::Error::other("soak session panicked"))??;
        total.writes += r.writes;
        total.reads += r.reads;
        total.bytes += r.bytes;
        total.errors += r.errors;
        lat.merge(&l);
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    total.p50_us = us(lat.quantile(0.50));
    total.p99_us = us(lat.quantile(0.99));
    total.max_us = us(lat.max());
    Ok(total)
}

/// Copies `blocks` blocks from LUN `src` to LUN `dst` (same LBAs) with EXTENDED
/// COPY(LID1): one parameter list of 0x02 segments of up to 65535 blocks, sent to
/// the destination, usage 10b. Returns the elapsed time.
pub fn xcopy(ep: &Endpoint, src: u16, dst: u16, blocks: u64) -> io::Result<Duration> {
    let mut i = ep.session(7)?;
    let (ns, nd) = (naa(&mut i, src)?, naa(&mut i, dst)?);
    let mut segs = Vec::new();
    let mut lba = 0u64;
    while lba < blocks {
        let n = (blocks - lba).min(0xffff);
        segs.push(seg_blocks(0, 1, n as u16, lba, lba, false));
        lba += n;
    }
    let p = list(
        0,
        2,
        &[cscd(&ns, ep.block_size), cscd(&nd, ep.block_size)],
        &segs,
    );
    let c = command(p.len());
    let t = Instant::now();
    let r = i.scsi(dst, &c, 0, Some(&p))?;
    let took = t.elapsed();
    if r.status != 0 {
        return Err(io::Error::other(format!(
            "EXTENDED COPY failed: {:?}",
            r.sense_code()
        )));
    }
    Ok(took)
}

/// Tape block written by the backup benchmarks: 256 KiB variable blocks.
pub const TAPE_BLOCK: u32 = 256 << 10;

/// A backup of the first `blocks` of disk `src` to tape `tape` (rewound first):
/// one EXTENDED COPY of 00h segments in [`TAPE_BLOCK`] variable blocks and a
/// filemark (10h), sent to the tape. Returns the time and the bytes of data the
/// session carried (the parameter list).
pub fn tape_backup(ep: &Endpoint, src: u16, tape: u16, blocks: u64) -> io::Result<(Duration, u64)> {
    use crate::xcopy::{cscd_tape, seg_filemarks, seg_stream};
    let mut i = ep.session(9)?;
    let (ns, nt) = (naa(&mut i, src)?, naa(&mut i, tape)?);
    let r = i.scsi(tape, &cdb::REWIND, 0, None)?;
    if r.status != 0 {
        i.scsi(tape, &cdb::REWIND, 0, None)?; // a unit attention first
    }
    // Whole tape blocks per segment, CAT between them: the last may end short.
    let per = u64::from(TAPE_BLOCK / ep.block_size);
    let max = 0xffff / per * per;
    let mut segs = Vec::new();
    let mut lba = 0u64;
    while lba < blocks {
        let n = (blocks - lba).min(max);
        segs.push(seg_stream(
            true,
            0,
            1,
            lba + n < blocks,
            TAPE_BLOCK,
            n as u16,
            lba,
        ));
        lba += n;
    }
    segs.push(seg_filemarks(1, 1));
    let p = list(
        0,
        2,
        &[cscd(&ns, ep.block_size), cscd_tape(&nt, true, false, 0)],
        &segs,
    );
    let t = Instant::now();
    let r = i.scsi(tape, &command(p.len()), 0, Some(&p))?;
    let took = t.elapsed();
    if r.status != 0 {
        return Err(io::Error::other(format!(
            "EXTENDED COPY to tape failed: {:?}",
            r.sense_code()
        )));
    }
    Ok((took, p.len() as u64))
}

/// The same backup done by the host: READ(16) of 1 MiB from the disk, four
/// WRITE(6) of [`TAPE_BLOCK`] to the tape, a WRITE FILEMARKS; one session, as
/// `dd` to a tape drive does it. Returns the time and the data bytes carried.
pub fn tape_host_backup(
    ep: &Endpoint,
    src: u16,
    tape: u16,
    blocks: u64,
) -> io::Result<(Duration, u64)> {
    let mut i = ep.session(10)?;
    let r = i.scsi(tape, &cdb::REWIND, 0, None)?;
    if r.status != 0 {
        i.scsi(tape, &cdb::REWIND, 0, None)?;
    }
    let per = u64::from((1u32 << 20) / ep.block_size);
    let mut wire = 0u64;
    let t = Instant::now();
    let mut lba = 0u64;
    while lba < blocks {
        let n = (blocks - lba).min(per);
        let len = (n * u64::from(ep.block_size)) as u32;
        let r = i.scsi(src, &cdb::read16(lba, n as u32), len, None)?;
        if r.status != 0 {
            return Err(io::Error::other(format!(
                "READ failed: {:?}",
                r.sense_code()
            )));
        }
        wire += r.data.len() as u64;
        for b in r.data.chunks(TAPE_BLOCK as usize) {
            let w = i.scsi(tape, &cdb::tape_write(false, b.len() as u32), 0, Some(b))?;
            if w.status != 0 {
                return Err(io::Error::other(format!(
                    "WRITE failed: {:?}",
                    w.sense_code()
                )));
            }
            wire += b.len() as u64;
        }
        lba += n;
    }
    let r = i.scsi(tape, &cdb::write_filemarks(1), 0, None)?;
    if r.status != 0 {
        return Err(io::Error::other(format!(
            "WRITE FILEMARKS failed: {:?}",
            r.sense_code()
        )));
    }
    Ok((t.elapsed(), wire))
}

/// What an ODX copy took: the whole, the POPULATE TOKENs together, and the slowest
/// single PT and WUT (Windows gives each 4 seconds).
#[derive(Debug, Clone, Copy)]
pub struct OdxTimes {
    pub total: Duration,
    pub populate: Duration,
    pub slowest_pt: Duration,
    pub slowest_wut: Duration,
}

/// The whole of `src` copied to `dst` the way Windows does it: read the LU's
/// Block Device ROD Token Limits, then per MAXIMUM TOKEN TRANSFER SIZE one
/// POPULATE TOKEN, RECEIVE ROD TOKEN INFORMATION, and WRITE USING TOKENs of
/// OPTIMAL TRANSFER COUNT advancing OFFSET INTO ROD (DEL_TKN on the last); with
/// `whole`, one WRITE USING TOKEN per token (the largest the target allows).
pub fn odx(ep: &Endpoint, src: u16, dst: u16, blocks: u64, whole: bool) -> io::Result<OdxTimes> {
    use crate::rod;
    let mut i = ep.session(8)?;
    let r = i.scsi(dst, &cdb::inquiry(true, 0x8f, 4096), 4096, None)?;
    let d = &r.data;
    if r.status != 0 || d.len() < 40 || d[4..6] != [0, 0] {
        return Err(io::Error::other(
            "no Block Device ROD Token Limits in VPD 8Fh",
        ));
    }
    let max = u64::from_be_bytes(d[24..32].try_into().unwrap_or_default());
    let optimal = u64::from_be_bytes(d[32..40].try_into().unwrap_or_default());
    if max == 0 || optimal == 0 {
        return Err(io::Error::other("ROD token limits not reported"));
    }
    let piece = if whole { max } else { optimal };
    let mut t = OdxTimes {
        total: Duration::ZERO,
        populate: Duration::ZERO,
        slowest_pt: Duration::ZERO,
        slowest_wut: Duration::ZERO,
    };
    let start = Instant::now();
    let mut lba = 0u64;
    let fail = |what: &str, r: &ScsiResult| {
        io::Error::other(format!("{what} failed: {:?}", r.sense_code()))
    };
    while lba < blocks {
        let n = (blocks - lba).min(max);
        let t0 = Instant::now();
        let (r, token) = rod::populate(&mut i, src, 257, None, 0, &[(lba, n as u32)])?;
        let pt = t0.elapsed();
        t.populate += pt;
        t.slowest_pt = t.slowest_pt.max(pt);
        let token = token.ok_or_else(|| fail("POPULATE TOKEN", &r))?;
        let mut off = 0u64;
        while off < n {
            let k = (n - off).min(piece);
            let t0 = Instant::now();
            let r = rod::write(
                &mut i,
                dst,
                258,
                &token,
                off,
                off + k == n,
                &[(lba + off, k as u32)],
            )?;
            t.slowest_wut = t.slowest_wut.max(t0.elapsed());
            if r.status != 0 {
                return Err(fail("WRITE USING TOKEN", &r));
            }
            off += k;
        }
        lba += n;
    }
    t.total = start.elapsed();
    Ok(t)
}

/// The same copy done by the host: READ then WRITE of 8 MiB at a time through
/// `sessions` sessions, each taking every n-th chunk. Returns the elapsed time.
pub fn host_copy(
    ep: &Endpoint,
    src: u16,
    dst: u16,
    blocks: u64,
    sessions: u8,
) -> io::Result<Duration> {
    let chunk = (8u64 << 20) / u64::from(ep.block_size);
    let t = Instant::now();
    let mut handles = Vec::new();
    for s in 0..sessions {
        let mut i = ep.session(20 + s)?;
        let bs = ep.block_size;
        handles.push(std::thread::spawn(move || -> io::Result<()> {
            let mut lba = u64::from(s) * chunk;
            while lba < blocks {
                let n = (blocks - lba).min(chunk) as u32;
                let r = i.scsi(src, &cdb::read16(lba, n), n * bs, None)?;
                if r.status != 0 {
                    return Err(io::Error::other("READ failed"));
                }
                let w = i.scsi(dst, &cdb::write16(lba, n), 0, Some(&r.data))?;
                if w.status != 0 {
                    return Err(io::Error::other("WRITE failed"));
                }
                lba += chunk * u64::from(sessions);
            }
            Ok(())
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("copier panicked"))??;
    }
    Ok(t.elapsed())
}
