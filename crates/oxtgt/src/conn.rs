//! One iSCSI connection (= one session: MaxConnections is 1): login, then the
//! full-feature phase.
//!
//! ```text
//!  socket ─► PduReader ─► Conn::on_pdu ─► CmdSN window ─► command ─► R2T/Data-Out ─► execute
//!                                                                  (pooled buffer)   (blocking pool)
//!  socket ◄─ writer task (StatSN/ExpCmdSN/MaxCmdSN stamped, vectored writes) ◄─ responses
//! ```
//! The reader never waits on storage: commands run on the blocking pool and their
//! responses go to the writer through a channel.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iscsi::keys::TextPairs;
use iscsi::login::{LoginOutcome, NegotiatedParams, Negotiator, SessionType};
use iscsi::pdu::{
    self, reject_reason, tmf_response, DataIn, LogoutResp, NopIn, R2t, Reject, Request,
    ScsiCommand, ScsiResponse, TaskMgmt, TaskMgmtResp, TextResp, TmfFunction, NO_TAG,
};
use iscsi::session::data_in::{self, Answer};
use iscsi::session::order::{CmdQueue, Offer};
use iscsi::session::write::{DataOutHeader, TttAllocator, WriteSeq};
use iscsi::{DigestConfig, PduError};
use scsi::cdb::{DataDir, DeviceType, Parsed};
use scsi::lu::{TaskManagement, MAX_TRANSFER_BYTES};
use scsi::report::{decode_lun, report_luns};
use scsi::sense::status;
use scsi::{Asc, Command, Ctx, LogicalUnit, Nexus, Outcome, Sense, SenseKey};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::pool::BufPool;
use crate::registry::{Registry, SessionEntry, Target};
use crate::wire::{
    self, After, DataRef, Header, OutTx, Outgoing, PduOut, PduReader, ReadError, Shared, SnMode,
};

/// Login text is small; this bounds what a peer can make us buffer before login ends.
const LOGIN_MAX_DATA: usize = 64 * 1024;

/// Serves one TCP connection until it closes.
pub async fn serve(
    stream: TcpStream,
    reg: Arc<Registry>,
    pool: Arc<BufPool>,
    shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut reader = PduReader::new(rd, LOGIN_MAX_DATA);
    let login = match login(&mut reader, &mut wr, &reg).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::info!(?peer, error = %e, "connection closed during login");
            return;
        }
    };
    let LoginDone { params, stat_sn } = login;
    let tsih = params.tsih;
    tracing::info!(?peer, initiator = %params.initiator_name, target = ?params.target_name, tsih = params.tsih, "login complete");
    reader.digests = DigestConfig {
        header: params.header_digest,
        data: params.data_digest,
    };
    reader.max_data = params.max_recv_data_segment_length as usize;

    let shared = Arc::new(Shared::new(params.first_cmd_sn, reg.server.queue_depth));
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(wire::writer(
        wr,
        rx,
        shared.clone(),
        reader.digests,
        stat_sn,
        pool.clone(),
    ));

    let target = params
        .target_name
        .as_deref()
        .and_then(|n| reg.target(n))
        .cloned();
    let luns = target
        .as_ref()
        .and_then(|t| t.lun_map(&params.initiator_name))
        .unwrap_or_default();
    let nexus = Arc::new(Nexus {
        id: reg.new_nexus_id(),
        initiator: params.initiator_name.as_str().into(),
        isid: params.isid,
        target_name: params.target_name.clone().unwrap_or_default().into(),
        tpgt: target.as_ref().map(|t| t.tpgt).unwrap_or(1),
        relative_port: 1,
    });
    for lu in luns.values() {
        lu.attach(&nexus);
    }

    // Register for reinstatement and for being stopped.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (ended_tx, ended_rx) = watch::channel(false);
    let key = (
        params.initiator_name.clone(),
        params.isid,
        params.target_name.clone().unwrap_or_default(),
    );
    if params.session_type == SessionType::Normal {
        let old = reg
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.clone(),
                SessionEntry {
                    tsih: params.tsih,
                    stop: stop_tx,
                    ended: ended_rx,
                },
            );
        if let Some(old) = old {
            // Session reinstatement (RFC 7143 §6.3.5): the old session ends first.
            let _ = old.stop.send(true);
            let mut ended = old.ended;
            let _ = tokio::time::timeout(Duration::from_secs(10), ended.wait_for(|e| *e)).await;
        }
    }

    let last_rx = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut conn = Conn {
        reg: reg.clone(),
        pool: pool.clone(),
        params: Arc::new(params),
        nexus: nexus.clone(),
        target,
        visible_luns: luns.keys().copied().collect(),
        luns,
        tx: tx.clone(),
        shared: shared.clone(),
        queued: CmdQueue::default(),
        writes: HashMap::new(),
        tasks: Arc::new(Mutex::new(HashMap::new())),
        ttts: TttAllocator::default(),
        local,
        logged_out: false,
    };

    let keepalive = spawn_keepalive(&reg, tx.clone(), last_rx.clone(), started);
    let mut shutdown = shutdown;
    let end_reason: String = tokio::select! {
        r = conn.run(&mut reader, &last_rx, started) => r,
        _ = stop_rx.wait_for(|s| *s) => "session stopped (reinstated or reset)".into(),
        r = shutdown_notice(&mut shutdown, tx.clone()) => r,
    };
    if let Some(k) = keepalive {
        k.abort();
    }
    tracing::info!(?peer, initiator = %nexus.initiator, reason = %end_reason, "session ended");

    // Nexus loss: stop what runs, let in-flight writes finish, then detach.
    for w in conn.writes.drain() {
        pool.put(w.1.exec.data_out);
    }
    // Running commands lose their nexus: long ones (copies) stop at their next
    // check, the rest finish and their responses are dropped.
    let waiters = {
        let tasks = conn.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .values()
            .map(|t| {
                t.aborted.store(true, Ordering::Release);
                t.done.clone()
            })
            .collect::<Vec<_>>()
    };
    let drained = async {
        for mut d in waiters {
            let _ = d.wait_for(|x| *x).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .is_err()
    {
        tracing::warn!(initiator = %nexus.initiator, "commands still running 30 s after the session ended");
    }
    for lu in conn.luns.values() {
        lu.detach(nexus.id);
    }
    conn.reg.copy.forget_nexus(nexus.id);
    drop(conn);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    if !key.2.is_empty() {
        // Remove our own entry only: a reinstating session may already have replaced it.
        let mut s = reg.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if s.get(&key).is_some_and(|e| e.tsih == tsih) {
            s.remove(&key);
        }
    }
    let _ = ended_tx.send(true);
}

/// On server shutdown: ask the initiator to log out (Async Message, event 1), give it
/// a moment, then end the session.
async fn shutdown_notice(shutdown: &mut watch::Receiver<bool>, tx: OutTx) -> String {
    let _ = shutdown.wait_for(|s| *s).await;
    let msg = pdu::AsyncMsg {
        lun: 0,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        event: 1,
        parameter1: 0,
        parameter2: 0,
        parameter3: 2, // seconds the initiator has to log out
        data_len: 0,
    };
    let _ = tx.send(Outgoing::one(PduOut::new(msg.encode(), SnMode::Current)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    "server shutting down".into()
}

/// NOP-In pings when the initiator has been silent for the configured interval; the
/// connection is dropped if it stays silent past the timeout.
fn spawn_keepalive(
    reg: &Registry,
    tx: OutTx,
    last_rx: Arc<AtomicU64>,
    started: Instant,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = reg.server.nop_interval_secs;
    if interval == 0 {
        return None;
    }
    let timeout = reg.server.nop_timeout_secs;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(interval));
        let mut ttt: u32 = 0x4000_0000;
        loop {
            tick.tick().await;
            let idle = started
                .elapsed()
                .as_secs()
                .saturating_sub(last_rx.load(Ordering::Relaxed));
            if idle >= interval + timeout {
                tracing::warn!(idle, "initiator unresponsive to NOP-In; closing connection");
                let _ = tx.send(Outgoing {
                    after: After::Close,
                    ..Outgoing::default()
                });
                return;
            }
            if idle >= interval {
                ttt = ttt.wrapping_add(1) | 0x4000_0000;
                let nop = NopIn {
                    lun: 0,
                    itt: NO_TAG,
                    ttt,
                    stat_sn: 0,
                    exp_cmd_sn: 0,
                    max_cmd_sn: 0,
                    data_len: 0,
                };
                if tx
                    .send(Outgoing::one(PduOut::new(nop.encode(), SnMode::Current)))
                    .is_err()
                {
                    return;
                }
            }
        }
    }))
}

struct LoginDone {
    params: NegotiatedParams,
    stat_sn: u32,
}

/// The login phase: Login Request/Response exchanges until full-feature phase.
async fn login(
    reader: &mut PduReader,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    reg: &Arc<Registry>,
) -> Result<Option<LoginDone>, ReadError> {
    use tokio::io::AsyncWriteExt;
    let mut neg = Negotiator::new(reg.server.limits.clone());
    let mut stat_sn: u32 = rand_u32();
    loop {
        let h = reader.header().await?;
        let data = match reader.data_vec(&h).await? {
            Ok(d) => d,
            Err(e) => return Err(ReadError::Protocol(e)),
        };
        let req = match Request::parse(&h.bhs, &h.ahs) {
            Ok(Request::Login(l)) => l,
            Ok(other) => {
                tracing::info!(pdu = ?std::mem::discriminant(&other), "non-login PDU during login; closing");
                return Ok(None);
            }
            Err(e) => return Err(ReadError::Protocol(e)),
        };
        let mut reply = neg.handle(&req, &data, reg.as_ref());
        reply.header.stat_sn = stat_sn;
        stat_sn = stat_sn.wrapping_add(1);
        reply.header.exp_cmd_sn = req.cmd_sn;
        reply.header.max_cmd_sn = req
            .cmd_sn
            .wrapping_add(reg.server.queue_depth)
            .wrapping_sub(1);
        let mut done = None;
        match reply.outcome {
            LoginOutcome::Complete(mut p) => {
                if p.tsih != 0 {
                    // Adding a connection to an existing session (MC/S) is not offered.
                    reply.header.status_class = 2;
                    reply.header.status_detail = if reg
                        .sessions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .values()
                        .any(|s| s.tsih == p.tsih)
                    {
                        6
                    } else {
                        10
                    };
                    reply.header.transit = false;
                    reply.data.clear();
                } else {
                    p.tsih = reg.new_tsih();
                    reply.header.tsih = p.tsih;
                    done = Some(*p);
                }
            }
            LoginOutcome::Failed(st) => {
                tracing::info!(class = st.0, detail = st.1, "login refused");
            }
            LoginOutcome::Continue => {}
        }
        reply.header.data_len = reply.data.len();
        let mut out = Vec::with_capacity(48 + reply.data.len() + 4);
        iscsi::framer::encode(
            &reply.header.encode(),
            &[],
            &reply.data,
            DigestConfig::default(),
            &mut out,
        );
        wr.write_all(&out).await?;
        if reply.header.status_class != 0 {
            return Ok(None);
        }
        if let Some(params) = done {
            return Ok(Some(LoginDone { params, stat_sn }));
        }
    }
}

fn rand_u32() -> u32 {
    rand::random::<u32>() & 0x00ff_ffff
}

/// A command in flight on the blocking pool.
struct TaskEntry {
    lun: u64,
    aborted: Arc<AtomicBool>,
    done: watch::Receiver<bool>,
}

/// Everything needed to run a command once its data is in.
struct Exec {
    itt: u32,
    lun_raw: u64,
    edtl: u32,
    read: bool,
    counted: bool,
    lu: Option<Arc<LogicalUnit>>,
    parsed: Result<Parsed, Sense>,
    /// Bytes the CDB wants to move out (for the residual).
    needed_out: u64,
    data_out: Vec<u8>,
    data_out_len: usize,
}

/// A write waiting for its Data-Out PDUs.
struct PendingWrite {
    exec: Exec,
    seq: WriteSeq,
}

/// A non-immediate request that arrived ahead of ExpCmdSN.
enum Queued {
    Command(ScsiCommand, PendingBuf),
    Other(Request, Header, Vec<u8>),
}

/// Immediate data already read, in the buffer it will be written from.
struct PendingBuf {
    buf: Vec<u8>,
    imm_len: usize,
    plan: Plan,
}

struct Plan {
    lu: Option<Arc<LogicalUnit>>,
    parsed: Result<Parsed, Sense>,
    /// Bytes the target will use: min(EDTL, what the CDB needs).
    transfer: usize,
    needed_out: u64,
    /// Unsolicited Data-Out PDUs follow the command (F clear, InitialR2T=No).
    unsolicited_open: bool,
    /// Where unsolicited data must end: FirstBurstLength, never past EDTL.
    unsolicited_limit: usize,
}

struct Conn {
    reg: Arc<Registry>,
    pool: Arc<BufPool>,
    params: Arc<NegotiatedParams>,
    nexus: Arc<Nexus>,
    target: Option<Arc<Target>>,
    luns: BTreeMap<u16, Arc<LogicalUnit>>,
    /// The LUN numbers this nexus sees, for REPORT LUNS.
    visible_luns: Arc<[u16]>,
    tx: OutTx,
    shared: Arc<Shared>,
    queued: CmdQueue<Queued>,
    writes: HashMap<u32, PendingWrite>,
    tasks: Arc<Mutex<HashMap<u32, TaskEntry>>>,
    ttts: TttAllocator,
    local: Option<SocketAddr>,
    logged_out: bool,
}

impl Conn {
    fn discovery(&self) -> bool {
        self.params.session_type == SessionType::Discovery
    }

    fn send(&self, o: Outgoing) {
        let _ = self.tx.send(o);
    }

    fn lu_for(&self, lun_raw: u64) -> Option<Arc<LogicalUnit>> {
        decode_lun(lun_raw).and_then(|l| self.luns.get(&l)).cloned()
    }

    /// The read loop; returns why it ended.
    async fn run(
        &mut self,
        reader: &mut PduReader,
        last_rx: &AtomicU64,
        started: Instant,
    ) -> String {
        loop {
            if self.logged_out {
                return "logout".into();
            }
            let h = match reader.header().await {
                Ok(h) => h,
                Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return "initiator closed the connection".into()
                }
                Err(e) => return format!("closing: {e}"),
            };
            last_rx.store(started.elapsed().as_secs(), Ordering::Relaxed);
            if let Err(e) = self.on_pdu(reader, h).await {
                return format!("closing: {e}");
            }
        }
    }

    fn reject(&self, reason: u8, bhs: &[u8; 48]) {
        let r = Reject {
            reason,
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            data_len: 48,
        };
        self.send(Outgoing::one(PduOut::with_data(
            r.encode(),
            SnMode::Current,
            bhs.to_vec(),
        )));
    }

    async fn on_pdu(&mut self, reader: &mut PduReader, h: Header) -> Result<(), ReadError> {
        let req = match Request::parse(&h.bhs, &h.ahs) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "rejecting PDU");
                reader.skip_data(&h).await?;
                let reason = if matches!(e, PduError::UnknownOpcode(_)) {
                    reject_reason::COMMAND_NOT_SUPPORTED
                } else {
                    reject_reason::PROTOCOL_ERROR
                };
                self.reject(reason, &h.bhs);
                return Ok(());
            }
        };
        match req {
            Request::DataOut(d) => self.on_data_out(reader, h, d).await,
            Request::ScsiCommand(cmd) => {
                if self.discovery() {
                    reader.skip_data(&h).await?;
                    self.reject(reject_reason::PROTOCOL_ERROR, &h.bhs);
                    return Ok(());
                }
                let mut pb = self.plan_command(&cmd, &h);
                let imm = h.layout.prefix.data_segment_len;
                if imm > 0 {
                    if imm > pb.buf.len() {
                        let mut bigger = self.pool.get(imm);
                        std::mem::swap(&mut bigger, &mut pb.buf);
                        self.pool.put(bigger);
                    }
                    if let Err(e) = reader.data_into(&h, &mut pb.buf[..imm]).await? {
                        tracing::warn!(error = %e, itt = cmd.itt, "immediate data digest error");
                        self.pool.put(pb.buf);
                        self.reject(reject_reason::DATA_DIGEST_ERROR, &h.bhs);
                        return Ok(());
                    }
                    pb.imm_len = imm;
                }
                let (cmd_sn, immediate) = (cmd.cmd_sn, cmd.immediate);
                self.offer(cmd_sn, immediate, Queued::Command(cmd, pb));
                Ok(())
            }
            other => {
                let data = match reader.data_vec(&h).await? {
                    Ok(d) => d,
                    Err(_) => {
                        self.reject(reject_reason::DATA_DIGEST_ERROR, &h.bhs);
                        return Ok(());
                    }
                };
                let (immediate, cmd_sn) = match &other {
                    Request::NopOut(n) => (n.immediate || n.itt == NO_TAG, n.cmd_sn),
                    Request::TaskMgmt(t) => (t.immediate, t.cmd_sn),
                    Request::Text(t) => (t.immediate, t.cmd_sn),
                    Request::Logout(l) => (l.immediate, l.cmd_sn),
                    _ => (true, 0),
                };
                self.offer(cmd_sn, immediate, Queued::Other(other, h, data));
                Ok(())
            }
        }
    }

    /// Hands a request to the CmdSN order (`iscsi::session::order`) and delivers
    /// what is ready. Each counted request is counted in flight before ExpCmdSN moves
    /// past it, so MaxCmdSN never opens beyond the queue depth.
    fn offer(&mut self, cmd_sn: u32, immediate: bool, q: Queued) {
        let shared = self.shared.clone();
        let offer = {
            let mut window = shared.window();
            self.queued.offer(&mut window, cmd_sn, immediate, q, || {
                shared.in_flight.fetch_add(1, Ordering::AcqRel);
            })
        };
        match offer {
            Offer::Deliver(ready) => {
                for (q, counted) in ready {
                    match q {
                        Queued::Command(cmd, pb) => self.start_command(cmd, pb, counted),
                        Queued::Other(req, h, data) => self.on_other(req, &h, data, counted),
                    }
                }
            }
            Offer::Queued => {}
            Offer::Dropped(q) => {
                tracing::debug!(cmd_sn, "request outside the CmdSN window dropped");
                if let Queued::Command(_, pb) = q {
                    self.pool.put(pb.buf);
                }
            }
        }
    }

    /// Decides, from the header alone, where a command's data goes.
    fn plan_command(&self, cmd: &ScsiCommand, h: &Header) -> PendingBuf {
        let lu = self.lu_for(cmd.lun);
        let device_type = lu.as_ref().map_or(DeviceType::Block, |lu| lu.device_type());
        let parsed = Parsed::parse(device_type, &cmd.cdb);
        let needed_out = match (&lu, &parsed) {
            (Some(lu), Ok(c)) => c.command.data_out_len(lu.block_size()),
            _ => 0,
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

    fn start_command(&mut self, cmd: ScsiCommand, pb: PendingBuf, counted: bool) {
        let PendingBuf { buf, imm_len, plan } = pb;
        let exec = Exec {
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

    fn issue_r2ts(&mut self, pw: &mut PendingWrite) {
        let burst = self.params.max_burst_length as usize;
        let max_out = self.params.max_outstanding_r2t as usize;
        for r in pw.seq.next_r2ts(burst, max_out, &mut self.ttts) {
            let r2t = R2t {
                lun: pw.exec.lun_raw,
                itt: pw.exec.itt,
                ttt: r.ttt,
                stat_sn: 0,
                exp_cmd_sn: 0,
                max_cmd_sn: 0,
                r2t_sn: r.r2t_sn,
                buffer_offset: r.offset,
                desired_len: r.len,
            };
            self.send(Outgoing::one(PduOut::new(r2t.encode(), SnMode::Current)));
        }
    }

    async fn on_data_out(
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

    /// Runs a command on the blocking pool and queues its response. Small reads and
    /// writes that can complete without blocking (page cache, RAM) are done right
    /// here instead: a thread handoff costs more than the I/O
    /// (`LogicalUnit::try_read_nowait` / `try_write_nowait` never block).
    fn execute(&mut self, exec: Exec) {
        let inline = exec.parsed.as_ref().ok().filter(|p| p.attrs.inline);
        if let (Some(lu), Some(p)) = (&exec.lu, inline) {
            let is_read = p.attrs.dir == DataDir::In;
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
                Some(outcome) => {
                    let mut out = build_response(
                        exec.itt,
                        exec.lun_raw,
                        exec.edtl,
                        exec.read,
                        exec.needed_out,
                        outcome,
                        data_in,
                        &self.params,
                    );
                    out.completes_command = exec.counted;
                    self.pool.put(exec.data_out);
                    self.send(out);
                    return;
                }
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
        let abort = aborted.clone();
        let tracked = exec
            .lu
            .clone()
            .map(|lu| (lu.track_task(self.nexus.id, aborted.clone()), lu));
        tokio::spawn(async move {
            let itt = exec.itt;
            let counted = exec.counted;
            let joined = tokio::task::spawn_blocking(move || {
                let ctx = Ctx {
                    edtl: exec.edtl,
                    abort: &abort,
                    copy: Some(copy.as_ref()),
                };
                run_command(exec, ctx, &nexus, &lun_list, &params, &pool)
            })
            .await;
            let mut out = match joined {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, itt, "command execution panicked");
                    Outgoing::default()
                }
            };
            out.completes_command = counted;
            if let Some((token, lu)) = tracked {
                lu.untrack_task(token);
            }
            if aborted.load(Ordering::Acquire) {
                out.pdus.clear();
            }
            let _ = tx.send(out);
            tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(&itt);
            let _ = done_tx.send(true);
        });
    }

    fn on_other(&mut self, req: Request, h: &Header, data: Vec<u8>, counted: bool) {
        match req {
            Request::NopOut(n) => {
                if n.itt == NO_TAG {
                    // The answer to our ping; nothing to send.
                    self.finish_counted(counted);
                    return;
                }
                let mut ping = data;
                ping.truncate(self.params.max_send_data_segment_length as usize);
                let nop = NopIn {
                    lun: n.lun,
                    itt: n.itt,
                    ttt: NO_TAG,
                    stat_sn: 0,
                    exp_cmd_sn: 0,
                    max_cmd_sn: 0,
                    data_len: ping.len(),
                };
                let mut o = Outgoing::one(PduOut::with_data(nop.encode(), SnMode::Advance, ping));
                o.completes_command = counted;
                self.send(o);
            }
            Request::Text(t) => self.on_text(t, &data, counted),
            Request::Logout(l) => {
                let response = match l.reason {
                    0 | 1 => 0,
                    _ => 2, // connection recovery is not supported at ErrorRecoveryLevel 0
                };
                let resp = LogoutResp {
                    response,
                    itt: l.itt,
                    stat_sn: 0,
                    exp_cmd_sn: 0,
                    max_cmd_sn: 0,
                    time2wait: 0,
                    time2retain: 0,
                };
                let close = response == 0;
                let mut o = Outgoing::one(PduOut::new(resp.encode(), SnMode::Advance));
                o.completes_command = counted;
                if close {
                    // Let running commands answer first (RFC 7143 §11.14).
                    let waiters = self.task_waiters(|_| true);
                    let tx = self.tx.clone();
                    o.after = After::Close;
                    tokio::spawn(async move {
                        for mut w in waiters {
                            let _ = w.wait_for(|d| *d).await;
                        }
                        let _ = tx.send(o);
                    });
                    self.logged_out = true;
                } else {
                    self.send(o);
                }
            }
            Request::TaskMgmt(t) => self.on_tmf(t, counted),
            Request::Snack(_) => {
                self.reject(reject_reason::SNACK_REJECT, &h.bhs);
                self.finish_counted(counted);
            }
            Request::Login(_) => {
                self.reject(reject_reason::PROTOCOL_ERROR, &h.bhs);
                self.finish_counted(counted);
            }
            Request::ScsiCommand(_) | Request::DataOut(_) => {}
        }
    }

    /// Releases the window slot of a counted request that produced no response.
    fn finish_counted(&self, counted: bool) {
        if counted {
            self.send(Outgoing {
                completes_command: true,
                ..Outgoing::default()
            });
        }
    }

    fn on_text(&mut self, t: pdu::TextReq, data: &[u8], counted: bool) {
        let mut out = TextPairs::default();
        match TextPairs::parse(data) {
            Ok(pairs) => {
                for (k, v) in &pairs.0 {
                    if k == "SendTargets" {
                        self.send_targets(v, &mut out);
                    } else {
                        out.push(k, "NotUnderstood");
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "malformed text request");
                out.push("X-oxtgt-Error", "malformed text");
            }
        }
        let mut body = out.encode();
        body.truncate(self.params.max_send_data_segment_length as usize);
        let resp = TextResp {
            final_: true,
            cont: false,
            lun: t.lun,
            itt: t.itt,
            ttt: NO_TAG,
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            data_len: body.len(),
        };
        let mut o = Outgoing::one(PduOut::with_data(resp.encode(), SnMode::Advance, body));
        o.completes_command = counted;
        self.send(o);
    }

    /// SendTargets (RFC 7143 §13.3, Appendix C): targets this initiator may see, with
    /// the portal this connection arrived on.
    fn send_targets(&self, what: &str, out: &mut TextPairs) {
        let initiator = &self.params.initiator_name;
        let portal = self.local.map(|a| match a {
            SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        });
        for t in self.reg.visible_targets(initiator) {
            let wanted = match what {
                "All" => self.discovery(),
                "" => self.target.as_ref().is_some_and(|s| s.name == t.name),
                name => name == t.name,
            };
            if !wanted {
                continue;
            }
            out.push("TargetName", t.name.clone());
            if let Some(p) = &portal {
                out.push("TargetAddress", format!("{p},{}", t.tpgt));
            }
        }
    }

    fn task_waiters(&self, pred: impl Fn(u64) -> bool) -> Vec<watch::Receiver<bool>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .values()
            .filter(|t| pred(t.lun))
            .map(|t| t.done.clone())
            .collect()
    }

    /// Aborts this session's tasks matching `pred` (by raw LUN): pending writes are
    /// dropped, running ones lose their response. Returns waiters for the running ones.
    fn abort_where(&mut self, pred: impl Fn(u64) -> bool) -> Vec<watch::Receiver<bool>> {
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

    fn on_tmf(&mut self, t: TaskMgmt, counted: bool) {
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
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
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

/// Largest READ or WRITE done inline on the connection task when it cannot block.
const INLINE_IO_MAX: usize = 64 * 1024;

/// Executes one command (blocking) and builds its response PDUs.
fn run_command(
    exec: Exec,
    ctx: Ctx<'_>,
    nexus: &Nexus,
    luns: &[u16],
    params: &NegotiatedParams,
    pool: &BufPool,
) -> Outgoing {
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
    let outcome = match (&exec.lu, exec.parsed) {
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
    pool.put(exec.data_out);
    build_response(
        exec.itt,
        exec.lun_raw,
        exec.edtl,
        exec.read,
        exec.needed_out,
        outcome,
        data_in,
        params,
    )
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

/// Data-In PDUs (status in the last one when it is GOOD) or Data-In plus SCSI Response.
#[allow(clippy::too_many_arguments)]
fn build_response(
    itt: u32,
    lun: u64,
    edtl: u32,
    read: bool,
    needed_out: u64,
    out: Outcome,
    data_in: Vec<u8>,
    params: &NegotiatedParams,
) -> Outgoing {
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
    let mut pdus = Vec::with_capacity(plan.data_in.len() + 1);
    for p in &plan.data_in {
        let d = DataIn {
            final_: p.final_,
            status: p.with_status.then_some(out.status),
            lun,
            itt,
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
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
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            exp_data_sn,
            residual,
            data_len: data.len(),
        };
        pdus.push(PduOut::with_data(r.encode(), SnMode::Advance, data));
    }
    Outgoing {
        pdus,
        buf: Some(data_in),
        completes_command: false,
        after: After::Nothing,
    }
}
