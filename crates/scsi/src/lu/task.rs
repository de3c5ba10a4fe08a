//! The task set of one logical unit as task management sees it (SAM-5 7): every
//! running command registers its abort flag here, so task management functions reach
//! other nexuses' tasks as SAM-5 says they do, and the transport only has to drain
//! its own session's commands.
//!
//! ```text
//! TMF arrives ─► LogicalUnit::task_management(tmf, issuer)   other nexuses' tasks
//!                │                                            flagged, UAs raised
//!                ▼
//!        transport aborts and drains the issuer's own tasks
//!                │
//!                ▼
//!      LogicalUnit::task_management_done(tmf)                 reset applied, reset
//!                                                             UAs raised
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::LogicalUnit;
use crate::sense::Asc;

/// Which events raise which unit attention (SAM-5 6.3, SPC-4 5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    LogicalUnit,
    TargetWarm,
    TargetCold,
}

/// Task management functions that reach a logical unit (SAM-5 7.1). ABORT TASK
/// touches one task of the issuing nexus and is the transport's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskManagement {
    /// The issuing nexus's tasks only (SAM-5 7.2).
    AbortTaskSet,
    /// Every nexus's tasks; the others learn of it by unit attention, since the
    /// control page's TAS is 0 (SAM-5 7.4, SPC-4 7.5.7).
    ClearTaskSet,
    /// Every nexus's tasks, then the LU's reset (SAM-5 7.7).
    LogicalUnitReset,
    /// Every task on every LU of the target, then each LU's reset (SAM-5 7.9;
    /// RFC 7143 §11.5.1 for warm and cold).
    TargetReset { cold: bool },
}

impl LogicalUnit {
    /// Registers a running task of `nexus` whose `abort` flag other sessions' task
    /// management may raise; returns the token for [`LogicalUnit::untrack_task`].
    pub fn track_task(&self, nexus: u64, abort: Arc<AtomicBool>) -> u64 {
        let token = self.next_task.fetch_add(1, Ordering::Relaxed);
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, (nexus, abort));
        token
    }

    pub fn untrack_task(&self, token: u64) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token);
    }

    /// Raises the abort flag of every running task whose nexus `pred` selects, and
    /// returns those nexuses. A copy stops at its next window; any other command
    /// loses its response.
    pub fn abort_tasks(&self, pred: impl Fn(u64) -> bool) -> HashSet<u64> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut hit = HashSet::new();
        for (nexus, flag) in tasks.values().filter(|(n, _)| pred(*n)) {
            flag.store(true, Ordering::Release);
            hit.insert(*nexus);
        }
        hit
    }

    /// What `tmf` from nexus `issuer` does to the other nexuses' tasks on this LU,
    /// before the issuer's own tasks are drained by its transport.
    pub fn task_management(&self, tmf: TaskManagement, issuer: u64) {
        match tmf {
            TaskManagement::AbortTaskSet => {}
            TaskManagement::ClearTaskSet => {
                for n in self.abort_tasks(|n| n != issuer) {
                    self.raise_unit_attention_for(n, Asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
                }
            }
            TaskManagement::LogicalUnitReset | TaskManagement::TargetReset { .. } => {
                self.abort_tasks(|n| n != issuer);
            }
        }
    }

    /// Completes `tmf` once the issuer's tasks have drained: resets apply here, so
    /// their unit attentions come after every aborted command (SAM-5 6.3).
    pub fn task_management_done(&self, tmf: TaskManagement) {
        match tmf {
            TaskManagement::AbortTaskSet | TaskManagement::ClearTaskSet => {}
            TaskManagement::LogicalUnitReset => self.reset(ResetKind::LogicalUnit),
            TaskManagement::TargetReset { cold: false } => self.reset(ResetKind::TargetWarm),
            TaskManagement::TargetReset { cold: true } => self.reset(ResetKind::TargetCold),
        }
    }
}
