//! Where commands that may block run: two lanes of worker threads.
//!
//! - **io**: reads, writes and everything else a host waits on command by command.
//!   Commands of at most 8 KiB and COMPARE AND WRITE (heartbeats) queue ahead of
//!   the rest ([`Lane::IoUrgent`]).
//! - **bulk**: commands that may run for seconds (EXTENDED COPY, WRITE USING
//!   TOKEN, WRITE SAME, UNMAP, ...). Its threads run at a lower CPU priority
//!   (nice +10), so a copy never starves a COMPARE AND WRITE heartbeat or a 4 KiB
//!   write of the CPU, and never occupies an io thread.
//!
//! A job finishes its command itself (its worker writes the response to the
//! socket), so a command costs at most one thread hand-off; tokio's `spawn` +
//! `spawn_blocking` pair cost a task, a JoinHandle and two more wakes on top.
//!
//! Waking a thread is the dearest part of a small command (on a 2-core VM a wake
//! and the sleep after it cost more CPU than a 4 KiB page-cache write), so the io
//! lane keeps work on threads that are already awake: a queued job wakes a
//! sleeping worker only when no worker is awake, or when it has waited [`STALE`]
//! (the awake workers are blocked or behind): then one worker per job that old.
//! A worker that blocks (dirty-page throttling, a slow disk, an fsync) therefore
//! holds up the jobs queued behind it for at most about [`STALE`] plus the
//! lane's watchdog tick ([`TICK`]), which re-checks while jobs wait; any push
//! re-checks too. The bulk lane wakes a worker for every job: its jobs are long.
//!
//! - **writer**: one thread per regular-file LU for its small cached writes
//!   ([`Executor::spawn_writer`]). Linux holds a file's inode lock across each
//!   buffered write (ext4, XFS), so writers of one file run one at a time whatever
//!   the thread count; on a file whose page cache sits in large folios (anything
//!   written sequentially: a `dd`-made image) each 4 KiB write walks the folio's
//!   buffer heads, and done from several CPUs that walk costs twice as much (fio,
//!   one file, random 4 KiB writes: 17 us per write from one thread, 33-42 us from
//!   two to sixteen; bench/RESULTS.md, session 13). One thread per LU does the
//!   same writes without the contention. It runs at [`WRITER_NICE`], above the
//!   network threads: all the LU's small writes queue behind it, and at the default
//!   priority it got only its fair share of a busy CPU and became the bottleneck
//!   (18 % fewer IOPS than the io lane; with the raised priority 13-16 % more, at
//!   19 % less CPU per write). Its work is bounded by what the network threads queue,
//!   so it cannot starve them for long. Where the priority cannot be raised (no
//!   CAP_SYS_NICE or RLIMIT_NICE), these writes stay on the io lane.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;
/// A job's LU and how many jobs of that LU may run at once.
type LuLimit = Option<(u64, usize)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Io,
    /// The io lane, ahead of every queued `Io` job: commands a host waits on
    /// one at a time with little data (COMPARE AND WRITE heartbeats, small
    /// I/O, commands without data).
    IoUrgent,
    Bulk,
}

/// Thread limits per lane. An io thread that blocks (dirty-page throttling, a
/// slow disk) holds only its own command; 32 such commands can wait before the
/// next one queues behind them, twice tgt's 16 threads per LU.
const IO_THREADS: usize = 32;
const BULK_THREADS: usize = 16;
/// Nice value of bulk workers and of the copy manager's threads.
pub const BULK_NICE: libc::c_int = 10;
/// Nice value of the LU writer threads ([`Executor::spawn_writer`]): three times a
/// nice-0 thread's weight. At 0 the writer was the bottleneck; -10 (nine times)
/// gave no more write IOPS than -5 on one LU (bench/ab.sh: 25.1k vs 26.4k) and took
/// the CPU from everything else: with two file LUs under random writes, a third
/// LU's reads did 6.8k IOPS against 8.4k at -5 and the writes 26.5k against 30.6k
/// (six alternating rounds), and the ATS heartbeat's p99 under writers and a copy
/// averaged 2.4-3.1 ms against 1.7-2.4 ms (two six-round A/Bs, one in each order;
/// bench/RESULTS.md, session 14).
pub const WRITER_NICE: libc::c_int = -5;
/// How long an LU's writer thread waits for work before it ends.
const WRITER_IDLE: Duration = Duration::from_secs(5);

/// Lowers the calling thread to [`BULK_NICE`] (per thread on Linux; threads it
/// starts inherit it) and gives it a [`SHORT_SLICE`]. Raising nice needs no
/// privilege; on failure the thread keeps its priority.
pub fn lower_priority() {
    if own_nice() < BULK_NICE {
        set_nice(BULK_NICE);
    }
    short_slice();
}

/// The time slice asked for the network threads and the bulk threads.
///
/// Linux's EEVDF scheduler lets a running thread finish its slice (1.4 ms on
/// 2 CPUs) before a thread that wakes gets the CPU, unless the waking thread's
/// slice is shorter (Linux 6.12+). A command's first hop is a network thread
/// waking for its PDU: with the default slice it waits out whichever io worker,
/// copy thread or other process holds the CPU, once per hop. Network threads run
/// a few microseconds per wake and sleep again, so a short slice changes when they
/// start, not how long they run. Bulk threads (copies, nice +10) get it too, so one
/// holds a CPU for at most this long when anything else wants it. Measured on the
/// 2-core bench VM, three A/B pairs: a heartbeat COMPARE AND WRITE's p99 under 16
/// writers and a looping copy went from 4.3-5.7 ms to 3.8-4.6 ms, under the 16
/// writers alone from 3.2-6.1 ms to 2.8-3.3 ms (bench/RESULTS.md, 2026-12-01).
pub const SHORT_SLICE: Duration = Duration::from_micros(100);

/// Asks for [`SHORT_SLICE`] for the calling thread (threads it starts inherit it).
pub fn short_slice() {
    set_slice(SHORT_SLICE);
}

/// Sets the calling thread's time slice, `Duration::ZERO` for the kernel's default,
/// keeping its policy (SCHED_OTHER, or SCHED_BATCH/SCHED_IDLE if the administrator
/// started oxtgt so) and nice value. Kernels before 6.12 ignore the slice of a fair
/// thread; a refusal (a real-time policy, a kernel before 5.3 without
/// SCHED_FLAG_KEEP_POLICY) leaves the thread as it was.
fn set_slice(slice: Duration) {
    /// include/uapi/linux/sched.h: keep the thread's current policy.
    const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;
    /// `struct sched_attr` (include/uapi/linux/sched/types.h), version 1.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        /// For SCHED_OTHER: the requested slice, in nanoseconds.
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
        sched_util_min: u32,
        sched_util_max: u32,
    }
    let nice = own_nice();
    // SAFETY: sched_setattr reads `attr`, a live sched_attr whose size field says
    // how much of it there is.
    unsafe {
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: SCHED_FLAG_KEEP_POLICY,
            sched_nice: nice,
            sched_priority: 0,
            sched_runtime: slice.as_nanos() as u64,
            sched_deadline: 0,
            sched_period: 0,
            sched_util_min: 0,
            sched_util_max: 0,
        };
        if libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "sched_setattr (time slice) refused");
        }
    }
}

/// How long a queued job waits for an awake worker before another is woken for it.
pub const STALE: Duration = Duration::from_micros(200);
/// The io lane's watchdog period while jobs wait (it sleeps when the lane is idle).
pub const TICK: Duration = Duration::from_millis(1);
/// Non-urgent io jobs of one LU that run at once.
pub const PER_LU: usize = 4;

pub struct Executor {
    io: Arc<Pool>,
    bulk: Arc<Pool>,
    /// The LU writer threads; `None` where their priority cannot be raised.
    writers: Option<Arc<Writers>>,
}

impl Default for Executor {
    fn default() -> Self {
        let writers = can_raise_priority();
        if !writers {
            tracing::info!(
                nice = WRITER_NICE,
                "cannot raise a thread's priority (no CAP_SYS_NICE or RLIMIT_NICE): \
                 small writes to file LUs run on the io lane"
            );
        }
        Self {
            io: Pool::new("oxtgt-io", IO_THREADS, false, true),
            bulk: Pool::new("oxtgt-bulk", BULK_THREADS, true, false),
            writers: writers.then(|| Writers::new(WRITER_IDLE)),
        }
    }
}

/// The calling thread's nice value.
fn own_nice() -> libc::c_int {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

/// Sets the calling thread's nice value; false if refused.
fn set_nice(nice: libc::c_int) -> bool {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
}

/// Whether a thread of this process may run at [`WRITER_NICE`] (tried on a
/// short-lived thread, so the caller keeps its own).
fn can_raise_priority() -> bool {
    std::thread::Builder::new()
        .name("oxtgt-probe".into())
        .spawn(|| set_nice(WRITER_NICE))
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or(false)
}

impl Executor {
    /// Runs `job` on a thread of `lane`.
    #[cfg(test)]
    pub fn spawn(&self, lane: Lane, job: impl FnOnce() + Send + 'static) {
        self.spawn_for(lane, None, job);
    }

    /// Runs `job`, a command for the tape LU `lu`, after every earlier command of
    /// that LU and before any later one: a tape has one position, so its commands
    /// run one at a time in the order they were ready (io lane, never urgent).
    pub fn spawn_ordered(&self, lu: u64, job: impl FnOnce() + Send + 'static) {
        Pool::push(&self.io, Box::new(job), false, Some((lu, 1)));
    }

    /// Runs `job`, a small write to the regular-file LU `lu`, on that LU's writer
    /// thread, after the jobs queued there before it (see the module comment);
    /// on `fallback` where there are no writer threads.
    pub fn spawn_writer(&self, lu: u64, fallback: Lane, job: impl FnOnce() + Send + 'static) {
        match &self.writers {
            Some(w) => {
                if let Err(job) = Writers::push(w, lu, Box::new(job)) {
                    self.spawn_for(fallback, Some(lu), job);
                }
            }
            None => self.spawn_for(fallback, Some(lu), job),
        }
    }

    /// Runs `job`, a command for the LU `lu`, on a thread of `lane`. At most
    /// [`PER_LU`] non-urgent io jobs of one LU run at once; the rest wait their
    /// turn in the queue, so one LU's flood of large writes neither takes every
    /// worker nor lines up in the file's inode lock ahead of a heartbeat.
    pub fn spawn_for(&self, lane: Lane, lu: Option<u64>, job: impl FnOnce() + Send + 'static) {
        let (pool, urgent) = match lane {
            Lane::Io => (&self.io, false),
            Lane::IoUrgent => (&self.io, true),
            Lane::Bulk => (&self.bulk, false),
        };
        let lu = if urgent || !pool.thrifty { None } else { lu };
        Pool::push(pool, Box::new(job), urgent, lu.map(|k| (k, PER_LU)));
    }
}

/// The writer threads, one per LU with writes queued or recently run.
struct Writers {
    by_lu: Mutex<std::collections::HashMap<u64, Arc<Writer>>>,
    /// How long a writer thread waits for work before it ends.
    idle: Duration,
}

/// One LU's writer thread and the jobs waiting for it.
#[derive(Default)]
struct Writer {
    state: Mutex<WriterState>,
    wake: Condvar,
}

#[derive(Default)]
struct WriterState {
    jobs: VecDeque<Job>,
    /// The thread exists (it may be about to end: see [`Writers::run`]).
    alive: bool,
    /// The thread sleeps on `wake`.
    sleeping: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writers {
    fn new(idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            by_lu: Mutex::default(),
            idle,
        })
    }

    /// Threads running now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        lock(&self.by_lu).len()
    }

    /// Queues `job` for `lu`'s writer, starting the thread if there is none.
    /// Gives the job back if no thread can be started.
    fn push(self: &Arc<Self>, lu: u64, job: Job) -> Result<(), Job> {
        // Under the map's lock: a writer decides to end under it too.
        let mut map = lock(&self.by_lu);
        let w = map.entry(lu).or_default().clone();
        let mut s = lock(&w.state);
        if s.alive {
            s.jobs.push_back(job);
            if s.sleeping {
                s.sleeping = false;
                w.wake.notify_one();
            }
            return Ok(());
        }
        let (all, writer) = (self.clone(), w.clone());
        let spawned = std::thread::Builder::new()
            .name("oxtgt-writer".into())
            .spawn(move || all.run(lu, &writer));
        match spawned {
            Ok(_) => {
                s.alive = true;
                s.jobs.push_back(job);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start an LU writer thread");
                drop(s);
                map.remove(&lu);
                Err(job)
            }
        }
    }

    /// A writer thread: runs `lu`'s jobs in order; ends after `self.idle`
    /// without any.
    fn run(&self, lu: u64, w: &Writer) {
        // Started from a network thread: not its short slice.
        set_slice(Duration::ZERO);
        if !set_nice(WRITER_NICE) {
            tracing::warn!(
                nice = WRITER_NICE,
                "an LU writer thread could not raise its priority"
            );
        }
        let mut s = lock(&w.state);
        let mut batch = VecDeque::new();
        loop {
            if !s.jobs.is_empty() {
                // Everything queued, taken in one go: one lock per batch, not per job.
                std::mem::swap(&mut batch, &mut s.jobs);
                drop(s);
                for job in batch.drain(..) {
                    // A job that panics must not take the LU's writer with it:
                    // later writes would queue for a thread that is gone.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a job on an LU writer thread panicked");
                    }
                }
                s = lock(&w.state);
                continue;
            }
            s.sleeping = true;
            let (g, wait) = w
                .wake
                .wait_timeout(s, self.idle)
                .unwrap_or_else(|e| e.into_inner());
            s = g;
            s.sleeping = false;
            if wait.timed_out() && s.jobs.is_empty() {
                // Lock order: map, then state (as in `push`).
                drop(s);
                let mut map = lock(&self.by_lu);
                s = lock(&w.state);
                if s.jobs.is_empty() {
                    s.alive = false;
                    map.remove(&lu);
                    return;
                }
            }
        }
    }
}

struct Pool {
    name: &'static str,
    max_threads: usize,
    low_priority: bool,
    /// Count on awake workers (the io lane); otherwise wake one per job.
    thrifty: bool,
    state: Mutex<State>,
    wake: Condvar,
    tick: Condvar,
}

#[derive(Default)]
struct State {
    /// Jobs with the time each was queued: urgent ones, then the rest.
    urgent: VecDeque<(Instant, Job)>,
    /// Non-urgent jobs with their LU and how many of that LU's jobs may run at once.
    queue: VecDeque<(Instant, LuLimit, Job)>,
    /// Running non-urgent io jobs per LU.
    per_lu: std::collections::HashMap<u64, usize>,
    threads: usize,
    /// Workers waiting on the condition variable.
    idle: usize,
    /// Of those, how many were notified and have not yet woken.
    notified: usize,
    /// Workers running a job.
    busy: usize,
    /// The watchdog thread exists and is sleeping until the lane gets busy.
    watchdog_parked: bool,
    watchdog: bool,
}

impl State {
    fn queued(&self) -> usize {
        self.urgent.len() + self.queue.len()
    }

    /// Whether a queued job may start now (its LU is under [`PER_LU`]).
    fn may_run(&self, lu: LuLimit) -> bool {
        lu.is_none_or(|(k, limit)| self.per_lu.get(&k).copied().unwrap_or(0) < limit)
    }

    /// The next job to run and the LU it counts against: urgent ones first, then
    /// the oldest whose LU may run another.
    fn pop(&mut self) -> Option<(Job, Option<u64>)> {
        if let Some((_, j)) = self.urgent.pop_front() {
            return Some((j, None));
        }
        let i = self.queue.iter().position(|(_, lu, _)| self.may_run(*lu))?;
        let (_, lu, j) = self.queue.remove(i)?;
        if let Some((k, _)) = lu {
            *self.per_lu.entry(k).or_insert(0) += 1;
        }
        Some((j, lu.map(|(k, _)| k)))
    }

    fn finished(&mut self, lu: Option<u64>) {
        if let Some(k) = lu {
            if let Some(n) = self.per_lu.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.per_lu.remove(&k);
                }
            }
        }
    }

    /// How many more workers to wake for the queued jobs. The bulk lane: one per
    /// job not yet promised a worker. The io lane: none while an awake worker
    /// will get to the jobs soon (awake workers take queued jobs as they finish),
    /// otherwise one per job that could start and has waited [`STALE`] or longer
    /// (the awake workers are blocked or behind), and one when no worker is awake
    /// at all. A job held back by its LU's [`PER_LU`] starts when one of that
    /// LU's running jobs ends; its worker takes it.
    fn wanted(&self, thrifty: bool, now: Instant) -> usize {
        if !thrifty {
            return self.queued().saturating_sub(self.notified);
        }
        let awake = self.threads - self.idle + self.notified;
        if awake == 0 {
            return usize::from(self.urgent.len() + self.queue.len() > 0);
        }
        let stale_urgent = self
            .urgent
            .iter()
            .take_while(|(t, _)| now.duration_since(*t) >= STALE)
            .count();
        let stale = self
            .queue
            .iter()
            .take_while(|(t, _, _)| now.duration_since(*t) >= STALE)
            .filter(|(_, lu, _)| self.may_run(*lu))
            .count();
        (stale_urgent + stale).saturating_sub(self.notified)
    }
}

impl Pool {
    fn new(name: &'static str, max_threads: usize, low_priority: bool, thrifty: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            max_threads,
            low_priority,
            thrifty,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            tick: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn push(self: &Arc<Self>, job: Job, urgent: bool, lu: LuLimit) {
        let mut s = self.lock();
        if urgent {
            s.urgent.push_back((Instant::now(), job));
        } else {
            s.queue.push_back((Instant::now(), lu, job));
        }
        if self.thrifty {
            if !s.watchdog {
                s.watchdog = true;
                let pool = self.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-watch", self.name))
                    .spawn(move || pool.watch());
                if let Err(e) = spawned {
                    // Pushes still re-check; only blocked-worker recovery without
                    // further pushes is lost.
                    tracing::error!(error = %e, lane = self.name, "cannot start the watchdog thread");
                }
            } else if s.watchdog_parked {
                s.watchdog_parked = false;
                self.tick.notify_one();
            }
        }
        self.staff(s);
    }

    /// Wakes or starts workers for queued jobs no awake worker will take soon.
    fn staff(self: &Arc<Self>, mut s: MutexGuard<'_, State>) {
        let mut short = s.wanted(self.thrifty, Instant::now());
        while short > 0 {
            short -= 1;
            if s.idle > s.notified {
                s.notified += 1;
                self.wake.notify_one();
            } else if s.threads < self.max_threads {
                s.threads += 1;
                let pool = self.clone();
                let spawned = std::thread::Builder::new()
                    .name(self.name.into())
                    .spawn(move || pool.work());
                if let Err(e) = spawned {
                    // The queued job runs when a running worker comes back for it.
                    tracing::error!(error = %e, lane = self.name, "cannot start a worker thread");
                    s.threads -= 1;
                    break;
                }
            } else {
                break;
            }
        }
    }

    /// The io lane's watchdog: while jobs wait, re-checks every [`TICK`] that a
    /// worker blocked in a long job is not holding them; sleeps when the lane has
    /// been idle for a second.
    fn watch(self: Arc<Self>) {
        let mut s = self.lock();
        let mut idle_since = Instant::now();
        loop {
            if s.queued() > 0 {
                idle_since = Instant::now();
                self.staff(s);
                s = self.lock();
            } else if s.busy > 0 {
                idle_since = Instant::now();
            } else if idle_since.elapsed() > Duration::from_secs(1) {
                s.watchdog_parked = true;
                while s.watchdog_parked {
                    s = self.tick.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                idle_since = Instant::now();
                continue;
            }
            s = self
                .tick
                .wait_timeout(s, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn work(self: Arc<Self>) {
        if self.low_priority {
            lower_priority();
        } else {
            // Started from a network thread: not its short slice. An io job may
            // run for milliseconds (a large write), and preempting it more often
            // costs more than it saves (bench/RESULTS.md, session 11).
            set_slice(Duration::ZERO);
        }
        let mut s = self.lock();
        loop {
            if let Some((job, lu)) = s.pop() {
                s.busy += 1;
                drop(s);
                job();
                s = self.lock();
                s.busy -= 1;
                s.finished(lu);
                continue;
            }
            s.idle += 1;
            s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            s.idle -= 1;
            s.notified = s.notified.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_every_job() {
        let ex = Executor::default();
        let n = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for i in 0..10_000 {
            let (n, tx) = (n.clone(), tx.clone());
            let lane = if i % 7 == 0 { Lane::Bulk } else { Lane::Io };
            ex.spawn(lane, move || {
                n.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(());
            });
        }
        for _ in 0..10_000 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(n.load(Ordering::Relaxed), 10_000);
    }

    #[test]
    fn a_blocked_worker_does_not_hold_up_the_next_job() {
        let ex = Executor::default();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        // The first job blocks until released; the second must still run.
        ex.spawn(Lane::Io, move || {
            let _ = release_rx.recv();
        });
        std::thread::sleep(Duration::from_millis(50));
        ex.spawn(Lane::Io, move || {
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("second job ran while the first was blocked");
        let _ = release_tx.send(());
    }

    #[test]
    fn ordered_jobs_of_one_lu_run_one_at_a_time_in_order() {
        let ex = Executor::default();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel();
        for n in 0..64 {
            let (ran, running, done_tx) = (ran.clone(), running.clone(), done_tx.clone());
            ex.spawn_ordered(9, move || {
                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "alone");
                std::thread::sleep(Duration::from_micros(200));
                ran.lock().unwrap().push(n);
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = done_tx.send(());
            });
        }
        for _ in 0..64 {
            done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        assert_eq!(*ran.lock().unwrap(), (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn urgent_jobs_run_before_queued_ones_and_capped_lus_wait() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let tag = |n: usize| -> Job {
            let ran = ran.clone();
            Box::new(move || ran.lock().unwrap().push(n))
        };
        let mut s = State::default();
        let now = Instant::now();
        for i in 1..=PER_LU + 1 {
            s.queue.push_back((now, Some((7, PER_LU)), tag(i)));
        }
        s.queue.push_back((now, Some((8, PER_LU)), tag(100)));
        s.urgent.push_back((now, tag(200)));
        while let Some((job, _)) = s.pop() {
            job();
        }
        // Urgent first, then LU 7 up to its limit, then LU 8; LU 7's last waits.
        let mut want = vec![200];
        want.extend(1..=PER_LU);
        want.push(100);
        assert_eq!(*ran.lock().unwrap(), want);
        assert_eq!(
            s.queue.len(),
            1,
            "LU 7's job beyond the limit is still queued"
        );
        s.finished(Some(7));
        let (job, lu) = s.pop().expect("it starts once one of LU 7's jobs ends");
        job();
        assert_eq!(lu, Some(7));
        assert_eq!(ran.lock().unwrap().last(), Some(&(PER_LU + 1)));
    }

    #[test]
    fn one_lu_runs_at_most_per_lu_jobs_and_others_still_run() {
        let ex = Executor::default();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 0..(PER_LU * 2) {
            let (running, peak, release_rx, done_tx) = (
                running.clone(),
                peak.clone(),
                release_rx.clone(),
                done_tx.clone(),
            );
            ex.spawn_for(Lane::Io, Some(1), move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let _ = release_rx.lock().unwrap().recv();
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = done_tx.send(1);
            });
        }
        // Another LU's job runs although LU 1's jobs hold every slot it may use.
        let tx = done_tx.clone();
        ex.spawn_for(Lane::Io, Some(2), move || {
            let _ = tx.send(2);
        });
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(running.load(Ordering::SeqCst), PER_LU);
        for _ in 0..(PER_LU * 2) {
            let _ = release_tx.send(());
        }
        for _ in 0..(PER_LU * 2) {
            assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        }
        assert_eq!(peak.load(Ordering::SeqCst), PER_LU);
    }

    /// A job that sends `v` on `tx`.
    fn sends<T: Send + 'static>(tx: &mpsc::Sender<T>, v: T) -> Job {
        let tx = tx.clone();
        Box::new(move || {
            let _ = tx.send(v);
        })
    }

    #[test]
    fn an_lus_writes_run_in_order_one_at_a_time_on_one_raised_thread() {
        let w = Writers::new(Duration::from_secs(5));
        let ran = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for n in 0..500 {
            let (ran, running, tx) = (ran.clone(), running.clone(), tx.clone());
            let job: Job = Box::new(move || {
                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "alone");
                ran.lock()
                    .unwrap()
                    .push((n, std::thread::current().id(), own_nice()));
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(());
            });
            assert!(Writers::push(&w, 7, job).is_ok());
        }
        for _ in 0..500 {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        let ran = ran.lock().unwrap();
        assert_eq!(
            ran.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..500).collect::<Vec<_>>()
        );
        assert!(ran.iter().all(|r| r.1 == ran[0].1), "one thread");
        assert_ne!(ran[0].1, std::thread::current().id());
        if can_raise_priority() {
            assert!(ran.iter().all(|r| r.2 == WRITER_NICE), "raised priority");
        } else {
            eprintln!("this process may not raise a thread's priority: nice not checked");
        }
        assert_eq!(w.threads(), 1);
    }

    #[test]
    fn writers_of_two_lus_run_side_by_side_and_end_when_idle() {
        let w = Writers::new(Duration::from_millis(100));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        // LU 1's writer blocks until released; LU 2's must still run.
        assert!(Writers::push(
            &w,
            1,
            Box::new(move || {
                let _ = release_rx.recv();
                let _ = t.send(1);
            })
        )
        .is_ok());
        assert!(Writers::push(&w, 2, sends(&tx, 2)).is_ok());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        assert_eq!(w.threads(), 2);
        let _ = release_tx.send(());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        // Both end after their idle time ...
        let deadline = Instant::now() + Duration::from_secs(5);
        while w.threads() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(w.threads(), 0, "idle writers end");
        // ... and a later write starts a new one.
        assert!(Writers::push(&w, 1, sends(&tx, 3)).is_ok());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 3);
    }

    #[test]
    fn a_panicking_job_leaves_the_writer_running() {
        let w = Writers::new(Duration::from_secs(5));
        assert!(Writers::push(&w, 3, Box::new(|| panic!("job panics"))).is_ok());
        let (tx, rx) = mpsc::channel();
        assert!(Writers::push(&w, 3, sends(&tx, ())).is_ok());
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the next job ran");
    }

    #[test]
    fn writes_pushed_while_a_writer_ends_still_run() {
        // Idle time about equal to the gap between pushes: pushes race the
        // writer's decision to end; none may be lost.
        let w = Writers::new(Duration::from_millis(1));
        let (tx, rx) = mpsc::channel();
        for n in 0..300u32 {
            assert!(Writers::push(&w, 5, sends(&tx, n)).is_ok());
            std::thread::sleep(Duration::from_micros(u64::from(n % 3) * 700));
        }
        let mut got: Vec<u32> = (0..300)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn bulk_threads_run_at_lower_priority() {
        let ex = Executor::default();
        let (tx, rx) = mpsc::channel();
        ex.spawn(Lane::Bulk, move || {
            let _ = tx.send(own_nice());
        });
        let nice = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(nice, BULK_NICE);
    }

    /// The thread's slice in ns as the scheduler reports it (`se.slice` in
    /// /proc/thread-self/sched), where the kernel takes a custom slice (6.12+)
    /// and reports it.
    fn own_slice_ns() -> Option<u64> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let mut v = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        if (v.next()?, v.next()?) < (6, 12) {
            return None;
        }
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.rsplit(':').next()?.trim().parse().ok()
    }

    #[test]
    fn bulk_threads_take_a_short_slice_and_io_workers_the_default() {
        let ex = Executor::default();
        let (tx, rx) = mpsc::channel();
        // The io workers are started from a thread that asked for a short slice
        // (a network thread), as in the daemon.
        let ex = std::thread::spawn(move || {
            short_slice();
            let t = tx.clone();
            ex.spawn(Lane::Bulk, move || {
                let _ = t.send(("bulk", own_slice_ns()));
            });
            ex.spawn(Lane::Io, move || {
                let _ = tx.send(("io", own_slice_ns()));
            });
            (ex, own_slice_ns())
        })
        .join()
        .unwrap();
        let Some(default) = own_slice_ns() else {
            eprintln!("no custom time slices on this kernel: nothing to check");
            return;
        };
        assert_eq!(
            ex.1,
            Some(SHORT_SLICE.as_nanos() as u64),
            "the asking thread"
        );
        for _ in 0..2 {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                ("bulk", got) => assert_eq!(got, Some(SHORT_SLICE.as_nanos() as u64)),
                (_, got) => assert_eq!(got, Some(default), "an io worker keeps the default slice"),
            }
        }
    }
}
