//! The SPC-4 commands every device type shares (INQUIRY, MODE SENSE/SELECT,
//! RESERVE/RELEASE, REPORT *, PERSISTENT RESERVE IN/OUT, EXTENDED COPY, RECEIVE COPY
//! RESULTS), then the device type's own dispatcher; and the copy manager's access
//! checks on behalf of a nexus.

use std::collections::{HashSet, VecDeque};

use super::*;

impl LogicalUnit {
    pub(super) fn dispatch(
        &self,
        nexus: &Nexus,
        snap: &Snapshot,
        cmd: Command,
        ctx: Ctx<'_>,
        data_out: &[u8],
        data_in: &mut Vec<u8>,
    ) -> Result<Outcome, Error> {
        if self.tape.is_some() && matches!(cmd, Command::TestUnitReady) {
            return self.dispatch_stream(nexus, snap, cmd, data_out, data_in);
        }
        match cmd {
            Command::TestUnitReady => {
                Self::check_ready(snap)?;
                Ok(Outcome::good(0))
            }
            Command::RequestSense { desc, alloc } => {
                let ua = self
                    .state()
                    .unit_attentions
                    .get_mut(&nexus.id)
                    .and_then(VecDeque::pop_front);
                let sense = ua.unwrap_or_else(|| self.current_condition());
                Ok(fill(data_in, &sense.encode(desc), alloc))
            }
            Command::Inquiry { evpd, page, alloc } => {
                let bytes = if evpd {
                    inquiry::vpd(self, nexus, page)?
                } else {
                    inquiry::standard(self)
                };
                Ok(fill(data_in, &bytes, alloc))
            }
            Command::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc,
            } => {
                let wp = self.read_only || snap.mode.swp;
                let bytes = mode::sense(
                    &snap.mode,
                    ten,
                    dbd,
                    llbaa,
                    pc,
                    page,
                    subpage,
                    self.geometry(),
                    wp,
                )?;
                Ok(fill(data_in, &bytes, alloc))
            }
            Command::ModeSelect { ten, pf, sp, len } => {
                if len == 0 {
                    return Ok(Outcome::good(0));
                }
                if !pf {
                    return Err(Sense::invalid_cdb_field(1, Some(4)).into());
                }
                if sp {
                    return Err(Sense::invalid_cdb_field(1, Some(0)).into());
                }
                let Some(params) = data_out.get(..len as usize) else {
                    return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
                };
                let mut st = self.state();
                let new = mode::select(&st.mode, ten, params, self.geometry())?;
                if new != st.mode {
                    self.wce.store(new.wce, Ordering::Relaxed);
                    st.mode = new;
                    Self::raise_ua(&mut st, Some(nexus.id), Asc::MODE_PARAMETERS_CHANGED);
                }
                Ok(Outcome::good(0))
            }
            Command::Reserve => {
                let mut st = self.state();
                match st.reserved_by {
                    Some(h) if h != nexus.id => Err(Error::ReservationConflict),
                    _ => {
                        st.reserved_by = Some(nexus.id);
                        Ok(Outcome::good(0))
                    }
                }
            }
            Command::Release => {
                let mut st = self.state();
                if st.reserved_by == Some(nexus.id) {
                    st.reserved_by = None;
                }
                Ok(Outcome::good(0))
            }
            Command::ReportLuns { .. } => {
                // Answered by the target from the nexus's LUN map before reaching an LU.
                Err(Error::Internal)
            }
            Command::ReportOpcodes {
                rctd,
                options,
                opcode,
                sa,
                alloc,
            } => {
                let offered = |c: &crate::cdb::OpcodeInfo| self.offers(c);
                let bytes = report::supported_opcodes(
                    self.device_type(),
                    &offered,
                    rctd,
                    options,
                    opcode,
                    sa,
                )?;
                Ok(fill(data_in, &bytes, alloc))
            }
            Command::ReportTmfs { repd, alloc } => {
                Ok(fill(data_in, &report::supported_tmfs(repd), alloc))
            }
            Command::PersistentReserveIn { sa, alloc } => {
                let bytes = self.state().pr.read(sa, self.pr_store.is_some())?;
                Ok(fill(data_in, &bytes, alloc))
            }
            Command::PersistentReserveOut {
                sa,
                scope,
                kind,
                len,
            } => {
                let Some(params) = data_out.get(..len as usize) else {
                    return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
                };
                let params = PrOutParams::parse(sa, params)?;
                self.persistent_reserve_out(nexus, sa, scope, kind, &params)
            }
            Command::ExtendedCopy { len } | Command::ExtendedCopyLid4 { len } => {
                let Some(copy) = ctx.copy else {
                    return Err(Sense::invalid_opcode().into());
                };
                Self::check_ready(snap)?;
                let Some(params) = data_out.get(..len as usize) else {
                    return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
                };
                if params.is_empty() {
                    return Ok(Outcome::good(0));
                }
                let list = match cmd {
                    Command::ExtendedCopyLid4 { .. } => crate::tpc::lid1::parse_lid4(params)?,
                    _ => crate::tpc::lid1::parse(params)?,
                };
                copy.extended_copy(crate::tpc::ExtendedCopy {
                    lu: self,
                    nexus,
                    list,
                    abort: ctx.abort,
                })?;
                Ok(Outcome::good(0))
            }
            Command::PopulateToken { list_id, len } => {
                let Some(copy) = ctx.copy else {
                    return Err(Sense::invalid_opcode().into());
                };
                Self::check_ready(snap)?;
                let params = self.token_params(data_out, len, crate::tpc::rod::PT_MIN_LEN)?;
                let params = crate::tpc::rod::PopulateToken::parse(params, self.range_limits())?;
                copy.populate_token(crate::tpc::PopulateToken {
                    lu: self,
                    nexus,
                    list_id,
                    params,
                    abort: ctx.abort,
                })?;
                Ok(Outcome::good(0))
            }
            Command::WriteUsingToken { list_id, len } => {
                let Some(copy) = ctx.copy else {
                    return Err(Sense::invalid_opcode().into());
                };
                Self::check_ready(snap)?;
                self.check_writable(snap)?;
                let params = self.token_params(data_out, len, crate::tpc::rod::WUT_MIN_LEN)?;
                let params = crate::tpc::rod::WriteUsingToken::parse(params, self.range_limits())?;
                copy.write_using_token(crate::tpc::WriteUsingToken {
                    lu: self,
                    nexus,
                    list_id,
                    params,
                    abort: ctx.abort,
                })?;
                Ok(Outcome::good(0))
            }
            Command::CopyOperationAbort { list_id } => {
                let Some(copy) = ctx.copy else {
                    return Err(Sense::invalid_opcode().into());
                };
                copy.copy_operation_abort(self, nexus, list_id)?;
                Ok(Outcome::good(0))
            }
            Command::ReceiveCopyResults { request, alloc } => {
                let Some(copy) = ctx.copy else {
                    return Err(Sense::invalid_opcode().into());
                };
                let bytes = copy.receive_copy_results(self, nexus, request, alloc)?;
                Ok(fill(data_in, &bytes, alloc))
            }
            other if self.tape.is_some() => {
                self.dispatch_stream(nexus, snap, other, data_out, data_in)
            }
            other => self.dispatch_block(nexus, snap, other, ctx, data_out, data_in),
        }
    }

    /// A PT/WUT parameter list: PARAMETER LIST LENGTH below the smallest list is a
    /// CDB field error (SBC-3 5.9, 5.36), a list shorter than it says a length error.
    fn token_params<'d>(
        &self,
        data_out: &'d [u8],
        len: u32,
        min: usize,
    ) -> Result<&'d [u8], Error> {
        if (len as usize) < min {
            return Err(Sense::invalid_cdb_field(10, None).into());
        }
        data_out
            .get(..len as usize)
            .ok_or_else(|| Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into())
    }

    /// What a token's block ranges are checked against on this LU.
    pub fn range_limits(&self) -> crate::tpc::rod::RangeLimits {
        crate::tpc::rod::RangeLimits {
            capacity: self.num_blocks(),
            block_size: self.block_size(),
        }
    }

    /// Whether the copy manager may read (or, with `write`, write) this LU on behalf
    /// of `nexus`: ready, not write protected, no reservation in the way.
    pub fn check_copy_access(&self, nexus: &Nexus, write: bool) -> Result<(), Error> {
        // A tape's drive lock is taken before the state lock, never after it.
        self.tape_ready()?;
        let st = self.state();
        if st.sanitize.progress().is_some() {
            return Err(Error::NotReady(Asc::SANITIZE_IN_PROGRESS));
        }
        Self::check_ready(&Snapshot {
            mode: ModeValues::default(),
            stopped: st.stopped,
            ejected: st.ejected,
            sanitize_failed: st.sanitize.failed(),
        })?;
        if write && (self.read_only || st.mode.swp) {
            return Err(Error::WriteProtected);
        }
        if st.reserved_by.is_some_and(|h| h != nexus.id) {
            return Err(Error::ReservationConflict);
        }
        let access = if write {
            PrAccess::Write
        } else {
            PrAccess::Read
        };
        if st.pr.conflicts(&nexus.key(), access) {
            return Err(Error::ReservationConflict);
        }
        Ok(())
    }

    /// PERSISTENT RESERVE OUT / REGISTER for `nexus` (the copy manager's segment 14h).
    pub fn pr_register(&self, nexus: &Nexus, key: u64, sark: u64) -> Result<(), Error> {
        let p = PrOutParams::Basic {
            key,
            sark,
            spec_i_pt: false,
            all_tg_pt: false,
            aptpl: false,
        };
        self.persistent_reserve_out(nexus, 0, 0, 0, &p).map(|_| ())
    }

    /// Applies a PERSISTENT RESERVE OUT under the state lock; with APTPL the new state
    /// is on disk before the command completes, or the change is undone.
    fn persistent_reserve_out(
        &self,
        nexus: &Nexus,
        sa: u8,
        scope: u8,
        kind: u8,
        params: &PrOutParams,
    ) -> Result<Outcome, Error> {
        let mut st = self.state();
        let before = st.pr.clone();
        let fx = match st.pr.out(
            &nexus.key(),
            sa,
            scope,
            kind,
            params,
            self.pr_store.is_some(),
        ) {
            Ok(fx) => fx,
            Err(None) => return Err(Error::ReservationConflict),
            Err(Some(sense)) => return Err(sense.into()),
        };
        if let (Some(text), Some(store)) = (&fx.persist, &self.pr_store) {
            if let Err(e) = store.save(text) {
                tracing::error!(error = %e, lu = %self.identity.serial, "persisting reservations failed");
                st.pr = before;
                return Err(Error::Internal);
            }
        }
        for (key, asc) in &fx.unit_attentions {
            Self::raise_ua_for(&mut st, key, *asc);
        }
        if sa == 5 {
            // PREEMPT AND ABORT: the preempted nexuses' running tasks are aborted too.
            let doomed: HashSet<u64> = st
                .attached
                .iter()
                .filter(|(_, k)| fx.unit_attentions.iter().any(|(p, _)| p == *k))
                .map(|(id, _)| *id)
                .collect();
            drop(st);
            if !doomed.is_empty() {
                self.abort_tasks(|n| doomed.contains(&n));
            }
        }
        Ok(Outcome::good(0))
    }
}
