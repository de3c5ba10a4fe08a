//! SANITIZE (SBC-4 4.11, 5.30): OVERWRITE and BLOCK ERASE, run as an operation of
//! the LU rather than of the command that started it. Task management, resets and
//! the loss of the nexus do not stop a sanitize (SBC-4 4.11.2); while it runs every
//! command but INQUIRY, REPORT LUNS and REQUEST SENSE is answered NOT READY,
//! SANITIZE IN PROGRESS with its progress (the gate), and a failure leaves the LU in
//! sanitize failure mode (MEDIUM ERROR, SANITIZE COMMAND FAILED on medium access)
//! until a sanitize succeeds or, when the failed one allowed it (AUSE), EXIT FAILURE
//! MODE.
//!
//! The operation holds the whole LU exclusively through the one I/O path, so it
//! starts once the commands already admitted have finished, write observers (ROD
//! tokens) hear of it, and its writes are counted like any other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::Error;
use crate::lu::{Ctx, LogicalUnit, Origin, Outcome, Snapshot};
use crate::sense::{status, Asc, Sense, SenseKey};

/// Bytes one write of an overwrite pass carries.
const CHUNK: usize = 4 << 20;
/// An overwrite flushes at least this often, so dirty data never piles up behind it
/// and its progress is the medium's.
const FLUSH_EVERY: u64 = 256 << 20;

/// A sanitize running on an LU, or the failure mode one left.
#[derive(Debug, Default)]
pub(crate) enum SanitizeState {
    #[default]
    Idle,
    Running(Arc<Run>),
    /// The last sanitize failed; `ause` is its AUSE bit, which decides whether EXIT
    /// FAILURE MODE may end this state.
    Failed {
        ause: bool,
    },
}

impl SanitizeState {
    /// While a sanitize runs, how far it is (in 65536ths).
    pub(crate) fn progress(&self) -> Option<u16> {
        match self {
            SanitizeState::Running(r) => Some(r.progress()),
            _ => None,
        }
    }

    pub(crate) fn failed(&self) -> bool {
        matches!(self, SanitizeState::Failed { .. })
    }
}

/// One running sanitize: its progress and, once done, its result for the command
/// still waiting (if any).
#[derive(Debug, Default)]
pub(crate) struct Run {
    done: AtomicU64,
    total: AtomicU64,
    result: Mutex<Option<Result<(), Error>>>,
    finished: Condvar,
}

impl Run {
    fn progress(&self) -> u16 {
        let total = self.total.load(Ordering::Relaxed).max(1);
        let done = self.done.load(Ordering::Relaxed).min(total);
        (u128::from(done) * 65536 / u128::from(total)).min(65535) as u16
    }

    fn finish(&self, r: Result<(), Error>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.finished.notify_all();
    }

    /// The result, if the operation ended within `timeout`.
    fn wait(&self, timeout: Duration) -> Option<Result<(), Error>> {
        let mut g = self.result.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            g = self
                .finished
                .wait_timeout(g, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.take()
    }
}

/// What a sanitize does to the medium.
#[derive(Debug)]
enum Op {
    /// Every block written with `block` (the initialization pattern repeated),
    /// `passes` times, inverted on every other pass with INVERT.
    Overwrite {
        block: Vec<u8>,
        passes: u8,
        invert: bool,
    },
    /// Every block deallocated: on a thin LU the data is gone from the backing
    /// store and the blocks read as zeros.
    BlockErase,
}

impl LogicalUnit {
    /// BLOCK ERASE needs deallocation that reads back as zeros: a thin LU.
    pub fn block_erase_supported(&self) -> bool {
        self.thin()
    }

    /// Whether REPORT SUPPORTED OPERATION CODES lists `c` for this LU: the table's
    /// rows, less what this LU's backstore cannot do.
    pub(crate) fn offers(&self, c: &crate::cdb::OpcodeInfo) -> bool {
        !(c.opcode == 0x48 && c.service_action == Some(0x02) && !self.block_erase_supported())
    }

    /// SANITIZE: validates the CDB and parameter list, starts the operation and,
    /// without IMMED, waits for it (an abort ends only the wait).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sanitize(
        &self,
        snap: &Snapshot,
        immed: bool,
        ause: bool,
        action: u8,
        len: u32,
        ctx: Ctx<'_>,
        data_out: &[u8],
    ) -> Result<Outcome, Error> {
        let bs = self.block_size() as usize;
        let op = match action {
            0x1f => return self.exit_failure_mode(len),
            0x02 => {
                if len != 0 {
                    return Err(Sense::invalid_cdb_field(7, None).into());
                }
                if !self.block_erase_supported() {
                    return Err(Sense::invalid_cdb_field(1, Some(4)).into());
                }
                Op::BlockErase
            }
            0x01 => {
                // SBC-4 5.30.2: the list is the 4-byte header and a pattern of 1 to
                // block-size bytes.
                if len < 5 || len as usize > bs + 4 {
                    return Err(Sense::invalid_cdb_field(7, None).into());
                }
                let Some(p) = data_out.get(..len as usize) else {
                    return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
                };
                let invert = p[0] & 0x80 != 0;
                if p[0] & 0x60 != 0 {
                    // TEST: vendor specific; this target defines none.
                    return Err(Sense::invalid_param_field(0, Some(6)).into());
                }
                let passes = p[0] & 0x1f;
                if passes == 0 {
                    return Err(Sense::invalid_param_field(0, Some(4)).into());
                }
                let ipl = usize::from(u16::from_be_bytes([p[2], p[3]]));
                if ipl == 0 || ipl > bs || ipl + 4 != p.len() {
                    return Err(Sense::invalid_param_field(2, None).into());
                }
                let pattern = &p[4..];
                let block = pattern.iter().copied().cycle().take(bs).collect();
                Op::Overwrite {
                    block,
                    passes,
                    invert,
                }
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4)).into()),
        };
        // A medium must be there; failure mode is what a new sanitize ends.
        if snap.ejected || snap.stopped {
            Self::check_ready(&Snapshot {
                mode: snap.mode.clone(),
                stopped: snap.stopped,
                ejected: snap.ejected,
                sanitize_failed: false,
            })?;
        }
        self.check_writable(snap)?;
        let Some(me) = self.this() else {
            tracing::error!(lu = %self.identity().serial, "SANITIZE on an LU that is not shared");
            return Err(Error::Internal);
        };
        let run = Arc::new(Run::default());
        self.with_sanitize(|s| {
            if s.progress().is_some() {
                return Err(Error::NotReady(Asc::SANITIZE_IN_PROGRESS));
            }
            *s = SanitizeState::Running(run.clone());
            Ok(())
        })?;
        let r = run.clone();
        let spawned = std::thread::Builder::new()
            .name("oxtgt-sanitize".into())
            .spawn(move || {
                let result = me.sanitize_medium(&op, &r);
                match &result {
                    Ok(()) => tracing::info!(lu = %me.identity().serial, "sanitize done"),
                    Err(e) => e.log("sanitize"),
                }
                me.with_sanitize(|s| {
                    *s = match result {
                        Ok(()) => SanitizeState::Idle,
                        Err(_) => SanitizeState::Failed { ause },
                    }
                });
                r.finish(result);
            });
        if spawned.is_err() {
            self.with_sanitize(|s| *s = SanitizeState::Idle);
            return Err(Error::Internal);
        }
        if immed {
            return Ok(Outcome::good(0));
        }
        loop {
            if let Some(result) = run.wait(Duration::from_millis(50)) {
                return match result {
                    Ok(()) => Ok(Outcome::good(0)),
                    Err(_) => {
                        Err(Sense::new(SenseKey::MEDIUM_ERROR, Asc::SANITIZE_COMMAND_FAILED).into())
                    }
                };
            }
            if ctx.abort.load(Ordering::Acquire) {
                // The task ends; the sanitize goes on (SBC-4 4.11.2).
                return Ok(Outcome::status(status::TASK_ABORTED));
            }
        }
    }

    /// EXIT FAILURE MODE (SBC-4 5.30.1): leaves sanitize failure mode if the failed
    /// sanitize set AUSE; outside failure mode there is nothing to do.
    fn exit_failure_mode(&self, len: u32) -> Result<Outcome, Error> {
        if len != 0 {
            return Err(Sense::invalid_cdb_field(7, None).into());
        }
        self.with_sanitize(|s| match s {
            SanitizeState::Failed { ause: false } => {
                Err(Sense::invalid_cdb_field(1, Some(4)).into())
            }
            SanitizeState::Failed { ause: true } => {
                *s = SanitizeState::Idle;
                Ok(Outcome::good(0))
            }
            _ => Ok(Outcome::good(0)),
        })
    }

    /// The operation itself, on its own thread, with the whole LU held.
    fn sanitize_medium(&self, op: &Op, run: &Run) -> Result<(), Error> {
        let blocks = self.num_blocks();
        let bs = u64::from(self.block_size());
        let total = blocks * bs;
        let x = self.lock_exclusive(0, blocks, Origin::Command);
        match op {
            Op::BlockErase => {
                run.total.store(total, Ordering::Relaxed);
                x.discard(0, total)?;
                run.done.store(total, Ordering::Relaxed);
            }
            Op::Overwrite {
                block,
                passes,
                invert,
            } => {
                run.total
                    .store(total * u64::from(*passes), Ordering::Relaxed);
                let per = (CHUNK / block.len()).max(1);
                let chunk: Vec<u8> = block.repeat(per);
                let inverted: Vec<u8> = chunk.iter().map(|b| !b).collect();
                for pass in 0..*passes {
                    let data = if *invert && pass % 2 == 1 {
                        &inverted
                    } else {
                        &chunk
                    };
                    let mut off = 0u64;
                    let mut unflushed = 0u64;
                    while off < total {
                        let n = (total - off).min(data.len() as u64);
                        x.write_cached(off, &data[..n as usize])?;
                        off += n;
                        unflushed += n;
                        run.done.fetch_add(n, Ordering::Relaxed);
                        if unflushed >= FLUSH_EVERY {
                            self.flush()?;
                            unflushed = 0;
                        }
                    }
                    self.flush()?;
                }
            }
        }
        self.flush()?;
        Ok(())
    }
}
