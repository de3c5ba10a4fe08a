//! The copy manager: keeps per-nexus list IDs and results for RECEIVE COPY RESULTS,
//! turns each EXTENDED COPY into a [`Job`] that owns the LUs it resolved through the
//! requesting initiator's access rights, and runs it on its own bounded
//! [`Executor`].
//!
//! List IDs (SPC-4 5.16.4) are 32 bits wide here (LID1 fills 8 of them): with LIST
//! ID USAGE 00b the results are held and the ID must not be in use on the nexus
//! (OPERATION IN PROGRESS otherwise). With 10b and 11b nothing is held, and several
//! copies may run under one ID at once (ESXi and Windows do this with LID1): COPY
//! STATUS for such an ID reports the oldest of them still running; once all have
//! ended the ID is unknown again. Held results stay readable for [`RETENTION`] or
//! until [`MAX_HELD_PER_NEXUS`] newer ones push them out, and go when the session
//! ends. Time is an argument of every function that ages results, so retention is
//! tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scsi::sense::{Asc, Sense};
use scsi::tpc::lid1::{ListFormat, ListIdUsage};
use scsi::tpc::{
    self, CopyManager, ExtendedCopy, PopulateToken, ReceiveCopy, WriteUsingToken,
    MAX_CONCURRENT_COPIES,
};
use scsi::{LogicalUnit, Nexus};

use crate::engine::PathCounters;
use crate::executor::Executor;
use crate::job::Job;
use crate::token::{Token, TokenLimits, Tokens};

/// How long held results stay readable.
pub const RETENTION: Duration = Duration::from_secs(600);
/// Held results kept per nexus; older ones are dropped first.
pub const MAX_HELD_PER_NEXUS: usize = 64;
/// Copy jobs running at once, server-wide; more wait in the executor's queue.
pub const COPY_THREADS: usize = 8;
/// Copy jobs waiting for a thread; past this a copy is refused with INSUFFICIENT
/// RESOURCES, like one past [`MAX_CONCURRENT_COPIES`] on an LU.
pub const COPY_QUEUE: usize = 256;
/// How often a command waiting for its job passes on an abort.
const ABORT_POLL: Duration = Duration::from_millis(5);

/// The LUs an initiator may reach, on every target of the server: the only place
/// CSCD designators are looked up.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    fn accessible(&self, nexus: &Nexus) -> Vec<Arc<LogicalUnit>>;
}

/// Per-LU offload counters (keyed by the LU's NAA).
#[derive(Debug, Default)]
pub struct LuCounters {
    /// EXTENDED COPY bytes into this LU, by path.
    pub paths: PathCounters,
    pub started: AtomicU64,
    pub failed: AtomicU64,
    /// ROD tokens made from this LU, and how they ended.
    pub tokens_created: AtomicU64,
    pub tokens_expired: AtomicU64,
    pub tokens_cancelled: AtomicU64,
    pub tokens_deleted: AtomicU64,
    /// WRITE USING TOKEN commands into this LU, and their bytes by path.
    pub tokens_used: AtomicU64,
    pub token_paths: PathCounters,
}

impl LuCounters {
    pub(crate) fn token_used(&self) {
        self.tokens_used.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    Done,
    Failed,
    /// Stopped by COPY OPERATION ABORT, a task abort or a reset.
    Aborted,
}

/// The command that started a copy: its service action is what RECEIVE COPY
/// STATUS(LID4) and RECEIVE ROD TOKEN INFORMATION report as RESPONSE TO SERVICE
/// ACTION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    ExtendedCopyLid1 = 0x00,
    ExtendedCopyLid4 = 0x01,
    PopulateToken = 0x10,
    WriteUsingToken = 0x11,
}

/// What RECEIVE COPY RESULTS and THIRD PARTY COPY IN read about one copy. List
/// IDs are scoped to the I_T nexus and the LU that received the command.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) list_id: u32,
    pub(crate) lu: [u8; 16],
    pub(crate) op: Op,
    pub(crate) usage: ListIdUsage,
    pub(crate) segments_done: AtomicU32,
    pub(crate) bytes: AtomicU64,
    /// TRANSFER COUNT in logical blocks: what a PT represents, or the contiguous
    /// blocks a WUT wrote from its first.
    pub(crate) blocks: AtomicU64,
    pub(crate) end: Mutex<Option<(Status, Instant, Option<Sense>)>>,
    /// Data of 0Dh segments, for RECEIVE COPY DATA.
    pub(crate) held: Mutex<Vec<u8>>,
    /// Raised to stop the job at its next window.
    pub(crate) abort: AtomicBool,
    /// The token a POPULATE TOKEN made, for RECEIVE ROD TOKEN INFORMATION.
    pub(crate) token: Mutex<Option<Arc<Token>>>,
    /// Bytes the copy will move when known up front (0 if not), and when it
    /// began: what the estimated status update delay is computed from.
    pub(crate) total: AtomicU64,
    pub(crate) began: Instant,
    /// Started with IMMED: running in the background (status 12h).
    pub(crate) background: AtomicBool,
}

impl Record {
    /// Records how the copy ended.
    pub(crate) fn end_with(&self, result: &Result<(), Sense>, now: Instant) {
        let status = match result {
            Ok(()) => Status::Done,
            Err(_) if self.abort.load(Ordering::Acquire) => Status::Aborted,
            Err(_) => Status::Failed,
        };
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((status, now, result.clone().err()));
    }

    fn status(&self) -> Status {
        self.end
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(Status::Running, |e| e.0)
    }
}

/// One copy as operators see it ([`Manager::copies`]).
#[derive(Debug, Clone)]
pub struct CopyInfo {
    /// The session (nexus id) that started it.
    pub nexus: u64,
    pub list_id: u32,
    /// NAA of the LU the command was sent to.
    pub lu: [u8; 16],
    pub op: &'static str,
    /// running, done, failed or aborted.
    pub state: &'static str,
    pub bytes: u64,
    /// Bytes the copy will move, when known up front (0 if not).
    pub total_bytes: u64,
    pub background: bool,
    pub age: Duration,
}

#[derive(Debug)]
pub struct Manager {
    pub(crate) resolver: Arc<dyn Resolver>,
    lists: Mutex<HashMap<u64, VecDeque<Arc<Record>>>>,
    running_per_lu: Arc<Mutex<HashMap<[u8; 16], u16>>>,
    pub(crate) counters: CounterMap,
    pub(crate) executor: Executor,
    pub tokens: Tokens,
}

impl Manager {
    pub fn new(resolver: Arc<dyn Resolver>) -> Self {
        Self::with_token_limits(resolver, TokenLimits::default())
    }

    pub fn with_token_limits(resolver: Arc<dyn Resolver>, limits: TokenLimits) -> Self {
        Self::with_thread_start(resolver, limits, || {})
    }

    /// Like `with_token_limits`, with `start` run first on each copy thread.
    pub fn with_thread_start(
        resolver: Arc<dyn Resolver>,
        limits: TokenLimits,
        start: fn(),
    ) -> Self {
        Self {
            resolver,
            lists: Mutex::new(HashMap::new()),
            running_per_lu: Arc::new(Mutex::new(HashMap::new())),
            counters: Arc::new(Mutex::new(HashMap::new())),
            executor: Executor::with_thread_start(COPY_THREADS, COPY_QUEUE, start),
            tokens: Tokens::new(limits),
        }
    }

    fn lists(&self) -> MutexGuard<'_, HashMap<u64, VecDeque<Arc<Record>>>> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The offload counters of the LU with this NAA.
    pub fn counters(&self, naa: &[u8; 16]) -> Arc<LuCounters> {
        counters_of(&self.counters, naa)
    }

    /// Copies started through the LU with this NAA that are running now (what
    /// removing the LU waits for).
    pub fn running_on(&self, naa: &[u8; 16]) -> u16 {
        self.running_per_lu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(naa)
            .copied()
            .unwrap_or(0)
    }

    /// Running copies and those whose results are still held, for operators.
    pub fn copies(&self) -> Vec<CopyInfo> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (&nexus, q) in self.lists().iter() {
            for r in q {
                let end = r.end.lock().unwrap_or_else(|e| e.into_inner()).clone();
                out.push(CopyInfo {
                    nexus,
                    list_id: r.list_id,
                    lu: r.lu,
                    op: match r.op {
                        Op::ExtendedCopyLid1 => "extended-copy-lid1",
                        Op::ExtendedCopyLid4 => "extended-copy-lid4",
                        Op::PopulateToken => "populate-token",
                        Op::WriteUsingToken => "write-using-token",
                    },
                    state: match end.as_ref().map(|e| e.0) {
                        None | Some(Status::Running) => "running",
                        Some(Status::Done) => "done",
                        Some(Status::Failed) => "failed",
                        Some(Status::Aborted) => "aborted",
                    },
                    bytes: r.bytes.load(Ordering::Relaxed),
                    total_bytes: r.total.load(Ordering::Relaxed),
                    background: r.background.load(Ordering::Relaxed),
                    age: now.saturating_duration_since(r.began),
                });
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.age));
        out
    }

    /// The nexus ended (I_T nexus loss): its running copies, background ones
    /// included, stop at their next window, and its held results go.
    pub fn forget_nexus(&self, nexus: u64) {
        if let Some(q) = self.lists().remove(&nexus) {
            for r in q.iter().filter(|r| r.status() == Status::Running) {
                r.abort.store(true, Ordering::Release);
            }
        }
    }

    /// A logical unit reset (or a target reset, for each LU): every copy started
    /// through the LU with this NAA, from any nexus, stops at its next window.
    /// Their status stays readable (COPY OPERATION STATUS 60h).
    pub fn reset_lu(&self, naa: &[u8; 16]) {
        for q in self.lists().values() {
            for r in q
                .iter()
                .filter(|r| r.lu == *naa && r.status() == Status::Running)
            {
                r.abort.store(true, Ordering::Release);
            }
        }
    }

    /// Stops the running copy `list_id` that `nexus` started through the LU `lu`
    /// at its next window (COPY OPERATION ABORT). `None` when the ID is unknown
    /// there, `Some(false)` when it is known but nothing runs.
    pub fn abort(&self, nexus: u64, lu: &[u8; 16], list_id: u32) -> Option<bool> {
        let lists = self.lists();
        let q = lists.get(&nexus)?;
        let mut known = false;
        let mut hit = false;
        for r in q.iter().filter(|r| r.list_id == list_id && r.lu == *lu) {
            known = true;
            if r.status() == Status::Running {
                r.abort.store(true, Ordering::Release);
                hit = true;
            }
        }
        known.then_some(hit)
    }

    fn prune(q: &mut VecDeque<Arc<Record>>, now: Instant) {
        q.retain(
            |r| match &*r.end.lock().unwrap_or_else(|e| e.into_inner()) {
                None => true,
                Some((_, at, _)) => {
                    r.usage == ListIdUsage::Hold && now.saturating_duration_since(*at) < RETENTION
                }
            },
        );
        while q.iter().filter(|r| r.status() != Status::Running).count() > MAX_HELD_PER_NEXUS {
            if let Some(i) = q.iter().position(|r| r.status() != Status::Running) {
                q.remove(i);
            }
        }
    }

    pub(crate) fn begin(
        &self,
        nexus: &Nexus,
        lu: [u8; 16],
        op: Op,
        list_id: u32,
        usage: ListIdUsage,
        now: Instant,
    ) -> Result<Arc<Record>, Sense> {
        let mut lists = self.lists();
        let q = lists.entry(nexus.id).or_default();
        Self::prune(q, now);
        let mine = |r: &Arc<Record>| r.list_id == list_id && r.lu == lu;
        if usage == ListIdUsage::Hold && q.iter().any(|r| mine(r) && r.status() == Status::Running)
        {
            return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS));
        }
        if usage == ListIdUsage::Hold {
            // A new held list replaces an old result under the same ID.
            q.retain(|r| !(mine(r) && r.usage == ListIdUsage::Hold));
        }
        let rec = Arc::new(Record {
            list_id,
            lu,
            op,
            usage,
            segments_done: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            end: Mutex::new(None),
            held: Mutex::new(Vec::new()),
            abort: AtomicBool::new(false),
            token: Mutex::new(None),
            total: AtomicU64::new(0),
            began: now,
            background: AtomicBool::new(false),
        });
        q.push_back(rec.clone());
        Ok(rec)
    }

    pub(crate) fn finish(
        &self,
        nexus: &Nexus,
        rec: &Arc<Record>,
        result: &Result<(), Sense>,
        now: Instant,
    ) {
        rec.end_with(result, now);
        let mut lists = self.lists();
        if let Some(q) = lists.get_mut(&nexus.id) {
            Self::prune(q, now);
        }
    }

    /// Resolves the list into a job that owns its LUs (nothing moves yet).
    fn prepare(&self, req: &ExtendedCopy<'_>, rec: &Arc<Record>) -> Result<Job, Sense> {
        let accessible = self.resolver.accessible(req.nexus);
        let receiving = owned(&accessible, req.lu)?;
        Job::prepare(
            &receiving,
            req.nexus,
            req.list.clone(),
            &accessible,
            rec.clone(),
            self.counters.clone(),
        )
    }

    /// RECEIVE COPY RESULTS and THIRD PARTY COPY IN through `lu` as of `now`.
    pub(crate) fn results(
        &self,
        lu: &[u8; 16],
        nexus: &Nexus,
        req: ReceiveCopy,
        alloc: u32,
        now: Instant,
    ) -> Result<Vec<u8>, Sense> {
        let list_id = match req {
            ReceiveCopy::OperatingParameters => return Ok(tpc::operating_parameters()),
            ReceiveCopy::AllRodTokens => return Ok(self.all_rod_tokens(nexus)),
            ReceiveCopy::Status { list_id }
            | ReceiveCopy::Data { list_id }
            | ReceiveCopy::FailureDetails { list_id }
            | ReceiveCopy::StatusLid4 { list_id }
            | ReceiveCopy::RodTokenInfo { list_id } => list_id,
        };
        let lid1 = matches!(
            req,
            ReceiveCopy::Status { .. }
                | ReceiveCopy::Data { .. }
                | ReceiveCopy::FailureDetails { .. }
        );
        let rec = {
            let mut lists = self.lists();
            let q = lists.entry(nexus.id).or_default();
            Self::prune(q, now);
            let mut mine = q.iter().filter(|r| {
                r.list_id == list_id && r.lu == *lu && (r.op == Op::ExtendedCopyLid1) == lid1
            });
            let running = mine.clone().find(|r| r.status() == Status::Running);
            running
                .or_else(|| mine.rfind(|r| r.usage == ListIdUsage::Hold))
                .cloned()
        };
        let Some(rec) = rec else {
            return Err(Sense::invalid_cdb_field(2, None));
        };
        let end = rec.end.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match req {
            ReceiveCopy::StatusLid4 { .. } => return Ok(crate::status::lid4(&rec, end.as_ref())),
            ReceiveCopy::RodTokenInfo { .. } => {
                let token = rec.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if alloc == 0 {
                    // SPC-4 (as QNAP quotes r36): allocation length 0 discards the
                    // token this list made.
                    if let Some(t) = &token {
                        self.tokens.delete(t, now);
                    }
                    return Ok(Vec::new());
                }
                let token = token.filter(|t| t.alive());
                return Ok(crate::status::rod_token_info(
                    &rec,
                    end.as_ref(),
                    token.as_deref(),
                ));
            }
            _ => {}
        }
        match req {
            ReceiveCopy::Status { .. } => Ok(crate::status::lid1(&rec, end.as_ref())),
            ReceiveCopy::Data { .. } => crate::status::lid1_data(&rec, end.as_ref()),
            _ => crate::status::lid1_failure_details(end.as_ref()),
        }
    }
}

impl CopyManager for Manager {
    fn extended_copy(&self, req: ExtendedCopy<'_>) -> Result<(), Sense> {
        let (nexus, list) = (req.nexus, &req.list);
        let naa = req.lu.identity().naa;
        let list_id = list.list_id;
        let op = match list.format {
            ListFormat::Lid1 => Op::ExtendedCopyLid1,
            ListFormat::Lid4 => Op::ExtendedCopyLid4,
        };
        let rec = self.start(nexus, naa, op, list_id, list.usage, Instant::now())?;
        let counters = self.counters(&naa);
        counters.started.fetch_add(1, Ordering::Relaxed);
        let job = match self.prepare(&req, &rec) {
            Ok(j) => j,
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                log_copy_end(
                    nexus,
                    list_id,
                    list.segments.len(),
                    &rec,
                    &counters,
                    Instant::now(),
                    &Err(e.clone()),
                );
                self.finish(nexus, &rec, &Err(e.clone()), Instant::now());
                self.release(&naa);
                return Err(e);
            }
        };
        if req.abort.load(Ordering::Acquire) {
            rec.abort.store(true, Ordering::Release);
        }
        let complete = self.completion(&rec, naa);
        let (tx, rx) = sync_channel(1);
        let started = Instant::now();
        let initiator = nexus.clone();
        let segments = list.segments.len();
        let record = rec.clone();
        let submitted = self.executor.submit(move || {
            let result = job.run();
            if result.is_err() {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            log_copy_end(
                &initiator, list_id, segments, &record, &counters, started, &result,
            );
            complete(&result);
            let _ = tx.send(result);
        });
        if submitted.is_err() {
            let e = Sense::illegal(Asc::INSUFFICIENT_RESOURCES);
            self.finish(nexus, &rec, &Err(e.clone()), Instant::now());
            self.release(&naa);
            return Err(e);
        }
        if list.immed {
            // LID4 IMMED: GOOD now; RECEIVE COPY STATUS(LID4) follows the job.
            rec.background.store(true, Ordering::Release);
            return Ok(());
        }
        wait(&rx, req.abort, &rec.abort)
    }

    fn populate_token(&self, req: PopulateToken<'_>) -> Result<(), Sense> {
        crate::rod::populate_token(self, req)
    }

    fn write_using_token(&self, req: WriteUsingToken<'_>) -> Result<(), Sense> {
        crate::rod::write_using_token(self, req)
    }

    fn copy_operation_abort(
        &self,
        lu: &LogicalUnit,
        nexus: &Nexus,
        list_id: u32,
    ) -> Result<(), Sense> {
        match self.abort(nexus.id, &lu.identity().naa, list_id) {
            None => Err(Sense::invalid_cdb_field(2, None)),
            Some(running) => {
                if running {
                    tracing::info!(initiator = %nexus.initiator, list_id, "COPY OPERATION ABORT");
                }
                Ok(())
            }
        }
    }

    fn receive_copy_results(
        &self,
        lu: &LogicalUnit,
        nexus: &Nexus,
        req: ReceiveCopy,
        alloc: u32,
    ) -> Result<Vec<u8>, Sense> {
        self.results(&lu.identity().naa, nexus, req, alloc, Instant::now())
    }
}

impl Manager {
    /// Counts a copy against its LU's concurrency limit (INSUFFICIENT RESOURCES
    /// past [`MAX_CONCURRENT_COPIES`]); [`Manager::release`] undoes it.
    pub(crate) fn reserve(&self, naa: &[u8; 16]) -> Result<(), Sense> {
        let mut running = self
            .running_per_lu
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = running.entry(*naa).or_default();
        if *n >= MAX_CONCURRENT_COPIES {
            return Err(Sense::illegal(Asc::INSUFFICIENT_RESOURCES));
        }
        *n += 1;
        Ok(())
    }

    /// Counts a held copy against its LU and opens its record (the ID busy while
    /// it runs); undone if the ID is busy.
    pub(crate) fn start(
        &self,
        nexus: &Nexus,
        naa: [u8; 16],
        op: Op,
        list_id: u32,
        usage: ListIdUsage,
        now: Instant,
    ) -> Result<Arc<Record>, Sense> {
        self.reserve(&naa)?;
        self.begin(nexus, naa, op, list_id, usage, now)
            .inspect_err(|_| self.release(&naa))
    }

    /// REPORT ALL ROD TOKENS (SPC-4 6.21): the management tokens of the live
    /// tokens whose source this nexus's initiator can reach.
    fn all_rod_tokens(&self, nexus: &Nexus) -> Vec<u8> {
        let accessible = self.resolver.accessible(nexus);
        let mut b = vec![0u8; 8];
        for m in self.tokens.management_tokens(&accessible) {
            b.extend_from_slice(&m);
        }
        let avail = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&avail.to_be_bytes());
        b
    }

    pub(crate) fn release(&self, naa: &[u8; 16]) {
        release_in(&self.running_per_lu, naa);
    }

    /// What a job that outlives its command does when it ends: record the result
    /// and give back its place in the LU's concurrency count.
    pub(crate) fn completion(
        &self,
        rec: &Arc<Record>,
        naa: [u8; 16],
    ) -> impl FnOnce(&Result<(), Sense>) + Send + 'static {
        let running = self.running_per_lu.clone();
        let rec = rec.clone();
        move |result| {
            rec.end_with(result, Instant::now());
            release_in(&running, &naa);
        }
    }
}

/// The receiving LU as an owned handle, found among the initiator's LUs (it is
/// there: the command reached it through the initiator's LUN map).
pub(crate) fn owned(
    accessible: &[Arc<LogicalUnit>],
    lu: &LogicalUnit,
) -> Result<Arc<LogicalUnit>, Sense> {
    accessible
        .iter()
        .find(|a| std::ptr::eq(a.as_ref(), lu))
        .cloned()
        .ok_or_else(|| Sense::illegal(Asc::INTERNAL_TARGET_FAILURE))
}

/// Waits for a job's result, passing the command's abort flag on to the job.
pub(crate) fn wait(
    rx: &std::sync::mpsc::Receiver<Result<(), Sense>>,
    abort: &AtomicBool,
    job_abort: &AtomicBool,
) -> Result<(), Sense> {
    loop {
        match rx.recv_timeout(ABORT_POLL) {
            Ok(result) => return result,
            Err(RecvTimeoutError::Timeout) => {
                if abort.load(Ordering::Acquire) {
                    job_abort.store(true, Ordering::Release);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Sense::illegal(Asc::INTERNAL_TARGET_FAILURE))
            }
        }
    }
}

/// One log line per EXTENDED COPY, with the LU's per-path totals; a warning with
/// the sense and segment when it failed.
fn log_copy_end(
    nexus: &Nexus,
    list_id: u32,
    segments: usize,
    rec: &Record,
    counters: &LuCounters,
    started: Instant,
    result: &Result<(), Sense>,
) {
    let bytes = rec.bytes.load(Ordering::Relaxed);
    let p = &counters.paths;
    match result {
        Ok(()) => tracing::info!(
            initiator = %nexus.initiator,
            list_id,
            segments,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            lu_reflink = p.reflink.load(Ordering::Relaxed),
            lu_copy_file_range = p.copy_file_range.load(Ordering::Relaxed),
            lu_memcpy = p.memcpy.load(Ordering::Relaxed),
            lu_shared = p.shared.load(Ordering::Relaxed),
            lu_copy_from = p.copy_from.load(Ordering::Relaxed),
            lu_bounce = p.bounce.load(Ordering::Relaxed),
            "EXTENDED COPY done"
        ),
        Err(s) => tracing::warn!(
            initiator = %nexus.initiator,
            list_id,
            bytes_before_failure = bytes,
            key = s.key.0,
            asc = format!("{:04x}", s.asc.0),
            segment = ?s.command_specific,
            "EXTENDED COPY failed"
        ),
    }
}

fn release_in(running: &Mutex<HashMap<[u8; 16], u16>>, naa: &[u8; 16]) {
    let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = running.get_mut(naa) {
        *n = n.saturating_sub(1);
    }
}

/// Offload counters by LU (NAA), shared by the manager and its jobs.
pub(crate) type CounterMap = Arc<Mutex<HashMap<[u8; 16], Arc<LuCounters>>>>;

pub(crate) fn counters_of(map: &CounterMap, naa: &[u8; 16]) -> Arc<LuCounters> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(*naa)
        .or_default()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi::testing::{nexus, TestLu};

    #[derive(Debug)]
    struct Lus(Vec<Arc<LogicalUnit>>);
    impl Resolver for Lus {
        fn accessible(&self, _: &Nexus) -> Vec<Arc<LogicalUnit>> {
            self.0.clone()
        }
    }

    fn manager() -> (Manager, TestLu) {
        let t = TestLu::new(64, 512);
        (Manager::new(Arc::new(Lus(vec![t.lu.clone()]))), t)
    }

    #[test]
    fn held_results_expire_after_the_retention_without_waiting() {
        let (m, _t) = manager();
        let n = nexus(1);
        let t0 = Instant::now();
        let lu = [0u8; 16];
        let rec = m
            .begin(&n, lu, Op::ExtendedCopyLid1, 7, ListIdUsage::Hold, t0)
            .unwrap();
        m.finish(&n, &rec, &Ok(()), t0);
        let status = |at: Instant| m.results(&lu, &n, ReceiveCopy::Status { list_id: 7 }, 255, at);
        assert_eq!(
            status(t0 + RETENTION - Duration::from_secs(1)).unwrap()[4],
            0x01
        );
        let e = status(t0 + RETENTION).unwrap_err();
        assert_eq!(
            e.asc,
            Asc::INVALID_FIELD_IN_CDB,
            "gone once retention passed"
        );
    }

    #[test]
    fn a_held_id_in_use_is_operation_in_progress_and_32_bit_ids_are_kept_apart() {
        let (m, _t) = manager();
        let n = nexus(1);
        let t0 = Instant::now();
        let (lu, other_lu) = ([1u8; 16], [2u8; 16]);
        let op = Op::PopulateToken;
        let a = m
            .begin(&n, lu, op, 0x0100_0005, ListIdUsage::Hold, t0)
            .unwrap();
        let e = m
            .begin(&n, lu, op, 0x0100_0005, ListIdUsage::Hold, t0)
            .unwrap_err();
        assert_eq!(e.asc, Asc::OPERATION_IN_PROGRESS);
        assert!(
            m.begin(&n, lu, op, 5, ListIdUsage::Hold, t0).is_ok(),
            "another ID"
        );
        assert!(
            m.begin(&n, other_lu, op, 0x0100_0005, ListIdUsage::Hold, t0)
                .is_ok(),
            "list IDs are per LU"
        );
        assert_eq!(m.abort(1, &lu, 0x0100_0005), Some(true));
        assert!(a.abort.load(Ordering::Acquire));
        assert_eq!(m.abort(1, &lu, 0x9999), None, "no such copy");
        assert_eq!(
            m.abort(2, &lu, 0x0100_0005),
            None,
            "another nexus's IDs are not reachable"
        );
    }
}
