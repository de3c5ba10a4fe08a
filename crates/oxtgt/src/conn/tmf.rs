//! Task management functions on a connection (RFC 7143 §11.5): the session's own
//! tasks are aborted and drained here; what a TMF does to other nexuses is the SCSI
//! layer's (`scsi::lu::task`).

use super::*;

impl Conn {
    pub(super) fn task_waiters(&self, pred: impl Fn(u64) -> bool) -> Vec<watch::Receiver<bool>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .values()
            .filter(|t| pred(t.lun))
            .map(|t| t.done.clone())
            .collect()
    }

    /// Aborts this session's tasks matching `pred` (by raw LUN): pending writes are
    /// dropped, running ones lose their response. Returns waiters for the running ones.
    pub(super) fn abort_where(&mut self, pred: impl Fn(u64) -> bool) -> Vec<watch::Receiver<bool>> {
        let doomed: Vec<u32> = self
            .writes
            .iter()
            .filter(|(_, w)| pred(w.exec.lun_raw))
            .map(|(k, _)| *k)
            .collect();
        for itt in doomed {
            if let Some(w) = self.writes.remove(&itt) {
                self.finish_counted(w.exec.counted);
                self.pool.put(w.exec.data_out);
            }
        }
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .values()
            .filter(|t| pred(t.lun))
            .map(|t| {
                t.aborted.store(true, Ordering::Release);
                t.done.clone()
            })
            .collect()
    }

    pub(super) fn on_tmf(&mut self, t: TaskMgmt, counted: bool) {
        let lu = self.lu_for(t.lun);
        let mut after_reset: Option<Box<dyn FnOnce() + Send>> = None;
        let mut close_after = false;
        let (response, waiters) = match t.function {
            TmfFunction::AbortTask => {
                let rtt = t.referenced_task_tag;
                if let Some(w) = self.writes.remove(&rtt) {
                    self.finish_counted(w.exec.counted);
                    self.pool.put(w.exec.data_out);
                    (tmf_response::COMPLETE, Vec::new())
                } else {
                    let running = {
                        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                        tasks.get(&rtt).map(|e| {
                            e.aborted.store(true, Ordering::Release);
                            e.done.clone()
                        })
                    };
                    match running {
                        Some(w) => (tmf_response::COMPLETE, vec![w]),
                        None => {
                            // RFC 7143 §11.5.1: a command not yet received but inside the
                            // window counts as received; anything else does not exist.
                            let queued = self
                                .queued
                                .take_where(|q| matches!(q, Queued::Command(c, _) if c.itt == rtt));
                            if let Some(q) = queued {
                                if let Queued::Command(_, pb) = q {
                                    self.pool.put(pb.buf);
                                }
                                (tmf_response::COMPLETE, Vec::new())
                            } else {
                                (tmf_response::TASK_DOES_NOT_EXIST, Vec::new())
                            }
                        }
                    }
                }
            }
            TmfFunction::AbortTaskSet
            | TmfFunction::ClearTaskSet
            | TmfFunction::LogicalUnitReset => match lu.clone() {
                None => (tmf_response::LUN_DOES_NOT_EXIST, Vec::new()),
                Some(lu) => {
                    let tmf = match t.function {
                        TmfFunction::AbortTaskSet => TaskManagement::AbortTaskSet,
                        TmfFunction::ClearTaskSet => TaskManagement::ClearTaskSet,
                        _ => TaskManagement::LogicalUnitReset,
                    };
                    let lun = t.lun;
                    let w = self.abort_where(|l| l == lun);
                    lu.task_management(tmf, self.nexus.id);
                    if tmf == TaskManagement::LogicalUnitReset {
                        // Background copies through the LU end too (SPC-4 5.16.4.5).
                        self.reg.copy.reset_lu(&lu.identity().naa);
                    }
                    after_reset = Some(Box::new(move || lu.task_management_done(tmf)));
                    (tmf_response::COMPLETE, w)
                }
            },
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                let cold = t.function == TmfFunction::TargetColdReset;
                let tmf = TaskManagement::TargetReset { cold };
                let w = self.abort_where(|_| true);
                let lus: Vec<Arc<LogicalUnit>> =
                    self.target.iter().flat_map(|t| t.luns().cloned()).collect();
                for lu in &lus {
                    lu.task_management(tmf, self.nexus.id);
                    self.reg.copy.reset_lu(&lu.identity().naa);
                }
                after_reset = Some(Box::new(move || {
                    lus.iter().for_each(|lu| lu.task_management_done(tmf))
                }));
                if cold {
                    // A cold reset ends every session of the target (RFC 7143 §11.5.1).
                    close_after = true;
                    if let Some(target) = &self.target {
                        let sessions = self.reg.sessions.lock().unwrap_or_else(|e| e.into_inner());
                        for ((_, _, tname), s) in sessions.iter() {
                            if *tname == target.name && s.tsih != self.params.tsih {
                                let _ = s.stop.send(true);
                            }
                        }
                    }
                }
                (tmf_response::COMPLETE, w)
            }
            TmfFunction::TaskReassign => (tmf_response::REASSIGNMENT_NOT_SUPPORTED, Vec::new()),
            TmfFunction::ClearAca | TmfFunction::Other(_) => {
                (tmf_response::NOT_SUPPORTED, Vec::new())
            }
        };
        let resp = TaskMgmtResp {
            response,
            itt: t.itt,
        };
        let mut o = Outgoing::one(PduOut::new(resp.encode(), SnMode::Advance));
        o.completes_command = counted;
        if close_after {
            o.after = After::Close;
            self.logged_out = true;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            for mut w in waiters {
                let _ = w.wait_for(|d| *d).await;
            }
            if let Some(f) = after_reset {
                let _ = tokio::task::spawn_blocking(f).await;
            }
            let _ = tx.send(o);
        });
    }
}
