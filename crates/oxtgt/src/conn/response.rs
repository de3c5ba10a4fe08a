//! A command's answer as PDUs: the command runs against its LU (or the no-LU rules
//! of SPC-4 6.6.2 and SAM-5 5.9.2), then `iscsi::session::data_in` splits the data
//! and places status and residuals.

use super::*;
use scsi::lu::stats::Class;

/// Executes one command (blocking) and builds its response PDUs.
pub(super) fn run_command(
    mut exec: Exec,
    ctx: Ctx<'_>,
    nexus: &Nexus,
    luns: &[u16],
    params: &NegotiatedParams,
    pool: &BufPool,
    stats: &Counted,
) -> Outgoing {
    let to = ReplyTo::of(&exec);
    let class = exec.class();
    let hint = match (&exec.lu, &exec.parsed) {
        (
            Some(lu),
            Ok(Parsed {
                command:
                    Command::Read { blocks, .. }
                    | Command::Verify { blocks, .. }
                    | Command::WriteVerify { blocks, .. },
                ..
            }),
        ) => (u64::from(*blocks) * u64::from(lu.block_size())).min(MAX_TRANSFER_BYTES) as usize,
        _ => 4096,
    };
    let mut data_in = pool.get(hint.max(1));
    let data_out = &exec.data_out[..exec.data_out_len.min(exec.data_out.len())];
    // The parsed command goes to the LU; what stays in `exec` is for the counters.
    let parsed = std::mem::replace(
        &mut exec.parsed,
        Err(Sense::illegal(Asc::NO_ADDITIONAL_SENSE)),
    );
    let outcome = match (&exec.lu, parsed) {
        (
            _,
            Ok(Parsed {
                command: Command::ReportLuns { select, alloc },
                ..
            }),
        ) => match report_luns(luns, select, alloc) {
            Ok(b) => copy_in(&mut data_in, &b, alloc),
            Err(s) => Outcome::check(s),
        },
        (Some(lu), parsed) => lu.execute(nexus, parsed, ctx, data_out, &mut data_in),
        (None, parsed) => no_lu(parsed, &mut data_in),
    };
    account(&exec, class, &outcome, stats);
    pool.put(exec.data_out);
    build_response(to, outcome, data_in, params)
}

/// Where a session's commands are counted: its own counters and its initiator's.
pub(super) struct Counted {
    pub(super) session: Arc<SessionStats>,
    pub(super) initiator: Arc<SessionStats>,
}

impl Exec {
    /// The command's class for the counters; a CDB that did not parse is "other".
    pub(super) fn class(&self) -> Class {
        self.parsed
            .as_ref()
            .map_or(Class::Other, |p| Class::of(&p.command))
    }
}

/// Counts an answered command for its session, its initiator and its LU.
pub(super) fn account(exec: &Exec, class: Class, out: &Outcome, stats: &Counted) {
    let good = out.status == status::GOOD && out.sense.is_none();
    let bytes = if exec.read {
        out.data_in_len.min(exec.edtl as usize) as u64
    } else {
        exec.data_out_len as u64
    };
    for s in [&*stats.session, &*stats.initiator] {
        s.commands.fetch_add(1, Ordering::Relaxed);
        if good && bytes > 0 {
            let c = if exec.read {
                &s.read_bytes
            } else {
                &s.write_bytes
            };
            c.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    if let Some(lu) = &exec.lu {
        lu.command_stats()
            .record(class, exec.started.elapsed(), bytes, out);
    }
}

fn copy_in(buf: &mut Vec<u8>, bytes: &[u8], alloc: u32) -> Outcome {
    let n = bytes.len().min(alloc as usize);
    if buf.len() < n {
        buf.resize(n, 0);
    }
    buf[..n].copy_from_slice(&bytes[..n]);
    Outcome::good(n)
}

/// Commands addressed to a LUN this nexus has no LU at (SPC-4 6.6.2, SAM-5 5.9.2).
fn no_lu(parsed: Result<Parsed, Sense>, buf: &mut Vec<u8>) -> Outcome {
    match parsed.map(|p| p.command) {
        Ok(Command::Inquiry {
            evpd: false, alloc, ..
        }) => copy_in(buf, &scsi::inquiry::standard_no_lu(), alloc),
        Ok(Command::RequestSense { desc, alloc }) => copy_in(
            buf,
            &Sense::illegal(Asc::LU_NOT_SUPPORTED).encode(desc),
            alloc,
        ),
        _ => Outcome::check(Sense::illegal(Asc::LU_NOT_SUPPORTED)),
    }
}

/// The header fields of a command its response needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplyTo {
    itt: u32,
    lun: u64,
    edtl: u32,
    read: bool,
    needed_out: u64,
}

impl ReplyTo {
    pub(super) fn of(exec: &Exec) -> Self {
        Self {
            itt: exec.itt,
            lun: exec.lun_raw,
            edtl: exec.edtl,
            read: exec.read,
            needed_out: exec.needed_out,
        }
    }
}

/// Data-In PDUs (status in the last one when it is GOOD) or Data-In plus SCSI Response.
pub(super) fn build_response(
    to: ReplyTo,
    out: Outcome,
    data_in: Vec<u8>,
    params: &NegotiatedParams,
) -> Outgoing {
    let ReplyTo {
        itt,
        lun,
        edtl,
        read,
        needed_out,
    } = to;
    let plan = data_in::plan(
        Answer {
            edtl,
            read,
            needed_out,
            data_in: out.data_in_len,
            good: out.status == status::GOOD && out.sense.is_none(),
        },
        params.max_send_data_segment_length as usize,
        params.max_burst_length as usize,
    );
    let residual = plan.residual;
    let mut pdus = Vec::new();
    for p in plan.data_in() {
        let d = DataIn {
            final_: p.final_,
            status: p.with_status.then_some(out.status),
            lun,
            itt,
            data_sn: p.data_sn,
            buffer_offset: p.offset as u32,
            residual,
            data_len: p.len,
        };
        pdus.push(PduOut {
            bhs: d.encode(),
            sn: if p.with_status {
                SnMode::Advance
            } else {
                SnMode::NoStat
            },
            data: DataRef::Buf(p.offset, p.len),
        });
    }
    if let Some(exp_data_sn) = plan.response {
        let sense = out.sense_bytes().map(|s| {
            let mut v = (s.len() as u16).to_be_bytes().to_vec();
            v.extend(s);
            v
        });
        let data = sense.unwrap_or_default();
        let r = ScsiResponse {
            itt,
            response: 0,
            status: out.status,
            exp_data_sn,
            residual,
            data_len: data.len(),
        };
        pdus.push(PduOut::with_data(r.encode(), SnMode::Advance, data));
    }
    Outgoing {
        pdus,
        buf: Some(data_in),
        shared: Vec::new(),
        completes_command: false,
        after: After::Nothing,
    }
}
