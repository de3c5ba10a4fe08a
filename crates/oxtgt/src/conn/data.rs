//! The data path of a SCSI command on a connection: where its data goes (decided
//! from the header alone), R2Ts and Data-Out through `iscsi::session::write`, and
//! execution inline (when it cannot block) or on a worker lane (`exec`).

use super::*;
use response::account;

/// Commands moving at most this many bytes run ahead of larger ones in the io lane.
const URGENT_MAX: usize = 8 * 1024;

impl Conn {
    /// Decides, from the header alone, where a command's data goes.
    pub(super) fn plan_command(&self, cmd: &ScsiCommand, h: &Header) -> PendingBuf {
        let lu = self.lu_for(cmd.lun);
        let device_type = lu.as_ref().map_or(DeviceType::Block, |lu| lu.device_type());
        let parsed = Parsed::parse(device_type, &cmd.cdb);
        let needed_out = match (&lu, &parsed) {
            (Some(lu), Ok(c)) => c.command.data_out_len(lu.block_size()),
            _ => 0,
        };
        // u64::MAX: the CDB alone does not say (a tape's FIXED WRITE counts blocks
        // of its mode's length): take what the initiator says it sends.
        let needed_out = if needed_out == u64::MAX {
            u64::from(cmd.expected_data_len)
        } else {
            needed_out
        };
        let transfer = if cmd.write {
            needed_out.min(u64::from(cmd.expected_data_len))
        } else {
            0
        };
        // A command longer than the LU accepts is refused without its data: solicit none.
        let transfer = if transfer > MAX_TRANSFER_BYTES {
            0
        } else {
            transfer as usize
        };
        let p = &self.params;
        let imm = h.layout.prefix.data_segment_len;
        // Unsolicited data the initiator may send (RFC 7143 §13.13-14): up to
        // FirstBurstLength, never past EDTL.
        let unsolicited_limit = (p.first_burst_length as usize).min(cmd.expected_data_len as usize);
        let mut unsolicited_open = cmd.write && !cmd.final_ && !p.initial_r2t;
        let mut parsed = parsed;
        let mut transfer = transfer;
        // Immediate data where none was negotiated, or beyond FirstBurstLength, is the
        // initiator's protocol error: the command fails without touching the medium.
        if imm > 0 && (!p.immediate_data || imm > unsolicited_limit) {
            tracing::warn!(
                itt = cmd.itt,
                imm,
                "immediate data not allowed by the negotiated keys"
            );
            parsed = Err(Sense::illegal(Asc::INVALID_FIELD_IN_INFORMATION_UNIT));
            transfer = 0;
            unsolicited_open = false;
        }
        let size = transfer
            .max(if unsolicited_open {
                unsolicited_limit
            } else {
                imm
            })
            .max(1);
        PendingBuf {
            buf: self.pool.get(size),
            imm_len: 0,
            plan: Plan {
                lu,
                parsed,
                transfer,
                needed_out,
                unsolicited_open,
                unsolicited_limit,
            },
        }
    }

    pub(super) fn start_command(&mut self, cmd: ScsiCommand, pb: PendingBuf, counted: bool) {
        let PendingBuf { buf, imm_len, plan } = pb;
        let exec = Exec {
            started: self.rx_at,
            itt: cmd.itt,
            lun_raw: cmd.lun,
            edtl: cmd.expected_data_len,
            read: cmd.read,
            counted,
            lu: plan.lu,
            parsed: plan.parsed,
            needed_out: plan.needed_out,
            data_out: buf,
            data_out_len: imm_len.min(plan.transfer),
        };
        if plan.transfer <= imm_len && !plan.unsolicited_open {
            self.execute(exec);
            return;
        }
        let mut pw = PendingWrite {
            exec,
            seq: WriteSeq::new(
                plan.transfer,
                imm_len,
                plan.unsolicited_open,
                plan.unsolicited_limit,
            ),
        };
        self.issue_r2ts(&mut pw);
        self.writes.insert(cmd.itt, pw);
    }

    pub(super) fn issue_r2ts(&mut self, pw: &mut PendingWrite) {
        let burst = self.params.max_burst_length as usize;
        let max_out = self.params.max_outstanding_r2t as usize;
        for r in pw.seq.next_r2ts(burst, max_out, &mut self.ttts) {
            let r2t = R2t {
                lun: pw.exec.lun_raw,
                itt: pw.exec.itt,
                ttt: r.ttt,
                r2t_sn: r.r2t_sn,
                buffer_offset: r.offset,
                desired_len: r.len,
            };
            self.send(Outgoing::one(PduOut::new(r2t.encode(), SnMode::Current)));
        }
    }

    pub(super) async fn on_data_out(
        &mut self,
        reader: &mut PduReader,
        h: Header,
        d: pdu::DataOut,
    ) -> Result<(), ReadError> {
        let len = h.layout.prefix.data_segment_len;
        let Some(mut pw) = self.writes.remove(&d.itt) else {
            // Data for a task that failed or was aborted: drop it quietly.
            tracing::debug!(itt = d.itt, "Data-Out for no pending write");
            return reader.skip_data(&h).await;
        };
        let off = d.buffer_offset as usize;
        let dh = DataOutHeader {
            ttt: d.ttt,
            data_sn: d.data_sn,
            offset: off,
            len,
            final_: d.final_,
        };
        let in_order = pw.seq.check(&dh).is_ok();
        if !in_order {
            tracing::warn!(
                itt = d.itt,
                ttt = d.ttt,
                data_sn = d.data_sn,
                offset = off,
                len,
                "Data-Out out of sequence; failing the task"
            );
            reader.skip_data(&h).await?;
            self.reject(reject_reason::PROTOCOL_ERROR, &h.bhs);
            let mut exec = pw.exec;
            exec.parsed = Err(Sense::new(SenseKey::ABORTED_COMMAND, Asc::DATA_PHASE_ERROR));
            exec.data_out_len = 0;
            self.execute(exec);
            return Ok(());
        }
        if pw.exec.data_out.len() < off + len {
            let mut bigger = self.pool.get(off + len);
            bigger[..pw.exec.data_out.len()].copy_from_slice(&pw.exec.data_out);
            std::mem::swap(&mut bigger, &mut pw.exec.data_out);
            self.pool.put(bigger);
        }
        match reader
            .data_into(&h, &mut pw.exec.data_out[off..off + len])
            .await?
        {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, itt = d.itt, "Data-Out digest error; failing the task");
                self.reject(reject_reason::DATA_DIGEST_ERROR, &h.bhs);
                let mut exec = pw.exec;
                exec.parsed = Err(Sense::new(
                    SenseKey::ABORTED_COMMAND,
                    Asc::INFORMATION_UNIT_CRC_ERROR,
                ));
                exec.data_out_len = 0;
                self.execute(exec);
                return Ok(());
            }
        }
        pw.seq.accept(&dh);
        self.issue_r2ts(&mut pw);
        if pw.seq.complete() {
            let mut exec = pw.exec;
            exec.data_out_len = pw.seq.transfer();
            self.execute(exec);
        } else {
            self.writes.insert(d.itt, pw);
        }
        Ok(())
    }

    /// Runs a command on a worker thread (`exec`); the worker sends its response.
    /// READs and WRITEs that can complete without blocking (page cache, RAM) are
    /// done right here instead: a thread handoff costs more than the I/O
    /// (`LogicalUnit::try_read_shared` / `try_read_nowait` / `try_write_nowait`
    /// never block).
    pub(super) fn execute(&mut self, exec: Exec) {
        let inline = exec.parsed.as_ref().ok().filter(|p| p.attrs.inline);
        if let (Some(lu), Some(p)) = (&exec.lu, inline) {
            let is_read = p.attrs.dir == DataDir::In;
            // A store that lends its memory (RAM): no copy, no wait, any length.
            let shared = if is_read {
                lu.try_read_shared(&self.nexus, &exec.parsed, MAX_TRANSFER_BYTES as usize)
            } else {
                None
            };
            if let Some((outcome, pieces)) = shared {
                return self.answer_inline(exec, outcome, Vec::new(), pieces);
            }
            // Writes return no data: no buffer to take from the pool.
            let mut data_in = if is_read {
                self.pool.get(INLINE_IO_MAX)
            } else {
                Vec::new()
            };
            let data_out = &exec.data_out[..exec.data_out_len.min(exec.data_out.len())];
            let done = if is_read {
                lu.try_read_nowait(&self.nexus, &exec.parsed, INLINE_IO_MAX, &mut data_in)
            } else {
                lu.try_write_nowait(&self.nexus, &exec.parsed, data_out, INLINE_IO_MAX)
            };
            match done {
                Some(outcome) => return self.answer_inline(exec, outcome, data_in, Vec::new()),
                None => self.pool.put(data_in),
            }
        }
        let aborted = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = watch::channel(false);
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).insert(
            exec.itt,
            TaskEntry {
                lun: exec.lun_raw,
                aborted: aborted.clone(),
                done: done_rx,
            },
        );
        let tasks = self.tasks.clone();
        let tx = self.tx.clone();
        let pool = self.pool.clone();
        let params = self.params.clone();
        let nexus = self.nexus.clone();
        let lun_list = self.visible_luns.clone();
        let copy = self.reg.copy.clone();
        let stats = self.stats.clone();
        let tracked = exec
            .lu
            .clone()
            .map(|lu| (lu.track_task(self.nexus.id, aborted.clone()), lu));
        let lane = match &exec.parsed {
            Ok(p) if p.command.is_bulk() => Lane::Bulk,
            // Heartbeats and small commands go ahead of queued bulk writes.
            Ok(p) if matches!(p.command, Command::CompareAndWrite { .. }) => Lane::IoUrgent,
            _ if exec.edtl as usize <= URGENT_MAX => Lane::IoUrgent,
            _ => Lane::Io,
        };
        // The job finishes the command itself: response to the writer, task
        // bookkeeping, and the done signal TMFs and session end wait for.
        // The LU's address identifies it for the per-LU limit of the io lane.
        let lu_key = exec.lu.as_ref().map(|lu| Arc::as_ptr(lu) as usize as u64);
        // Small plain writes to a regular file: its writer thread (`exec` says why).
        // FUA writes wait for the disk and stay on the io lane.
        let to_writer = exec.data_out_len <= INLINE_IO_MAX
            && matches!(&exec.parsed, Ok(p) if matches!(p.command, Command::Write { fua: false, .. }))
            && exec
                .lu
                .as_ref()
                .is_some_and(|lu| lu.backstore().serial_writes());
        let ordered = exec
            .lu
            .as_ref()
            .is_some_and(|lu| lu.device_type() == DeviceType::Stream);
        let job = move || {
            let itt = exec.itt;
            let counted = exec.counted;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let ctx = Ctx {
                    edtl: exec.edtl,
                    abort: &aborted,
                    copy: Some(copy.as_ref()),
                };
                run_command(exec, ctx, &nexus, &lun_list, &params, &pool, &stats)
            }));
            let mut out = ran.unwrap_or_else(|_| {
                tracing::error!(itt, "command execution panicked");
                Outgoing::default()
            });
            out.completes_command = counted;
            if let Some((token, lu)) = tracked {
                lu.untrack_task(token);
            }
            // Under the task table's lock, where ABORT TASK looks the task up and
            // raises its flag: either the abort saw the task (flag up, no
            // response goes out) or the task is gone (TASK DOES NOT EXIST) and
            // the response goes out. A response after FUNCTION COMPLETE, which
            // libiscsi's AbortTaskSimpleAsync caught once under load, cannot happen.
            {
                let mut t = tasks.lock().unwrap_or_else(|e| e.into_inner());
                if aborted.load(Ordering::Acquire) {
                    out.pdus.clear();
                }
                t.remove(&itt);
            }
            let _ = tx.send(out);
            let _ = done_tx.send(true);
        };
        match (ordered, lu_key) {
            // A tape has one position: its commands run one at a time, in order.
            (true, Some(k)) => self.exec.spawn_ordered(k, job),
            (false, Some(k)) if to_writer => self.exec.spawn_writer(k, lane, job),
            _ => self.exec.spawn_for(lane, lu_key, job),
        }
    }

    /// Sends the answer of a command done on this task: its data in `data_in`
    /// (pooled), or lent by the store in `shared`.
    fn answer_inline(
        &mut self,
        exec: Exec,
        outcome: Outcome,
        data_in: Vec<u8>,
        shared: Vec<backstore::SharedBytes>,
    ) {
        let lent = !shared.is_empty();
        account(&exec, exec.class(), &outcome, &self.stats);
        let mut out = build_response(ReplyTo::of(&exec), outcome, data_in, &self.params);
        if lent {
            out.buf = None;
            out.shared = shared;
        }
        out.completes_command = exec.counted;
        self.pool.put(exec.data_out);
        self.send(out);
    }
}
