//! One iSCSI connection (= one session: MaxConnections is 1): login, then the
//! full-feature phase.
//!
//! ```text
//!  socket ─► PduReader ─► Conn::on_pdu ─► CmdSN window ─► command ─► R2T/Data-Out ─► execute
//!                                                                  (pooled buffer)   (exec lanes)
//!  socket ◄─ OutTx (StatSN/ExpCmdSN/MaxCmdSN stamped, vectored writes) ◄─ responses
//! ```
//! The reader never waits on storage: commands that may block run on worker threads
//! (`exec`), which write their responses through `OutTx` themselves.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iscsi::keys::TextPairs;
use iscsi::login::{NegotiatedParams, SessionType};
use iscsi::pdu::{
    self, reject_reason, tmf_response, DataIn, R2t, Request, ScsiCommand, ScsiResponse, TaskMgmt,
    TaskMgmtResp, TextResp, TmfFunction, NO_TAG,
};
use iscsi::session::control::{self, Control};
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
use tokio::sync::watch;

mod data;
mod login;
mod response;
mod text;
mod tmf;

use login::{login, shutdown_notice, spawn_keepalive, spawn_logout_watch, LoginDone};

use response::{build_response, run_command, Counted, ReplyTo};

use crate::exec::{Executor, Lane};
use crate::pool::BufPool;
use crate::registry::{Registry, SessionEntry, SessionStats, Target};
use crate::wire::{
    After, DataRef, Header, OutTx, Outgoing, PduOut, PduReader, ReadError, SessionWindow, SnMode,
};

/// Login text is small; this bounds what a peer can make us buffer before login ends.
const LOGIN_MAX_DATA: usize = 64 * 1024;

/// Serves one TCP connection until it closes.
pub async fn serve(
    stream: TcpStream,
    reg: Arc<Registry>,
    pool: Arc<BufPool>,
    exec: Arc<Executor>,
    shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let slot = match reg.guard.enter(peer.map(|p| p.ip()), &reg.server().guard) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(
                ?peer,
                ?why,
                "connection refused: too many logins in progress"
            );
            return;
        }
    };
    let mut reader = PduReader::new(rd, LOGIN_MAX_DATA);
    let login = login(&mut reader, &mut wr, &reg, peer).await;
    drop(slot);
    let login = match login {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::info!(?peer, error = %e, "connection closed during login");
            return;
        }
    };
    let LoginDone {
        params,
        stamper,
        server,
    } = login;
    let tsih = params.tsih;
    tracing::info!(?peer, initiator = %params.initiator_name, target = ?params.target_name, tsih = params.tsih, "login complete");
    reader.digests = DigestConfig {
        header: params.header_digest,
        data: params.data_digest,
    };
    reader.max_data = params.max_recv_data_segment_length as usize;

    let shared = Arc::new(SessionWindow::new(params.first_cmd_sn, server.queue_depth));
    let (tx, flusher) = OutTx::new(wr, shared.clone(), reader.digests, stamper, pool.clone());
    let writer = tokio::spawn(flusher);

    let generation = reg.generation();
    let target = params.target_name.as_deref().and_then(|n| reg.target(n));
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
    let stop_on_logout = stop_tx.clone();
    let (ended_tx, ended_rx) = watch::channel(false);
    let (logout_tx, logout_rx) = watch::channel(false);
    let stats = Arc::new(SessionStats::default());
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
                    peer,
                    since: std::time::SystemTime::now(),
                    stats: stats.clone(),
                    logout: logout_tx,
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
        exec,
        params: Arc::new(params),
        nexus: nexus.clone(),
        target,
        visible_luns: luns.keys().copied().collect(),
        luns,
        generation,
        tx: tx.clone(),
        shared: shared.clone(),
        queued: CmdQueue::default(),
        writes: HashMap::new(),
        tasks: Arc::new(Mutex::new(HashMap::new())),
        ttts: TttAllocator::default(),
        local,
        logged_out: false,
        stats: Arc::new(Counted {
            session: stats,
            initiator: reg.initiator_stats(&nexus.initiator),
        }),
        rx_at: Instant::now(),
    };

    let keepalive = spawn_keepalive(&server, tx.clone(), last_rx.clone(), started);
    let logout_watch = spawn_logout_watch(logout_rx, stop_on_logout, tx.clone());
    let mut shutdown = shutdown;
    let end_reason: String = tokio::select! {
        r = conn.run(&mut reader, &last_rx, started) => r,
        _ = stop_rx.wait_for(|s| *s) => "session stopped (reinstated, reset or logged out by the target)".into(),
        r = shutdown_notice(&mut shutdown, tx.clone()) => r,
    };
    if let Some(k) = keepalive {
        k.abort();
    }
    logout_watch.abort();
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

/// A command in flight on a worker thread.
struct TaskEntry {
    lun: u64,
    aborted: Arc<AtomicBool>,
    done: watch::Receiver<bool>,
}

/// Everything needed to run a command once its data is in.
struct Exec {
    /// When the command arrived (for the latency counters).
    started: Instant,
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
    exec: Arc<Executor>,
    params: Arc<NegotiatedParams>,
    nexus: Arc<Nexus>,
    target: Option<Arc<Target>>,
    luns: BTreeMap<u16, Arc<LogicalUnit>>,
    /// The registry model generation `luns` was read from.
    generation: u64,
    /// The LUN numbers this nexus sees, for REPORT LUNS.
    visible_luns: Arc<[u16]>,
    tx: OutTx,
    shared: Arc<SessionWindow>,
    queued: CmdQueue<Queued>,
    writes: HashMap<u32, PendingWrite>,
    tasks: Arc<Mutex<HashMap<u32, TaskEntry>>>,
    ttts: TttAllocator,
    local: Option<SocketAddr>,
    logged_out: bool,
    /// Shared with the worker jobs: one reference count per job.
    stats: Arc<Counted>,
    /// When the PDU being handled arrived.
    rx_at: Instant,
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
            // Answers to requests already buffered leave together; nothing is
            // held while this task waits for the network.
            if reader.whole_pdu_buffered() {
                self.tx.cork();
            } else {
                self.tx.uncork();
            }
            let h = match reader.header().await {
                Ok(h) => h,
                Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return "initiator closed the connection".into()
                }
                Err(e) => return format!("closing: {e}"),
            };
            // One clock read per PDU: the keep-alive's receive time and the
            // arrival time of a command it carries.
            let now = Instant::now();
            self.rx_at = now;
            let since = now.saturating_duration_since(started);
            let ms = since.as_secs() * 1000 + u64::from(since.subsec_millis());
            last_rx.store(ms, Ordering::Relaxed);
            if let Err(e) = self.on_pdu(reader, h).await {
                return format!("closing: {e}");
            }
        }
    }

    fn reject(&self, reason: u8, bhs: &[u8; 48]) {
        let r = control::reject(reason, bhs);
        self.send(Outgoing::one(PduOut::with_data(r.bhs, r.sn, r.data)));
    }

    /// Re-reads this nexus's LUN map when the registry's model was replaced
    /// (reload): LUs newly mapped are attached, LUs no longer mapped detached (their
    /// SPC-2 reservation and PREVENT end), and when the map changed every LU still
    /// mapped reports REPORTED LUNS DATA HAS CHANGED (SPC-4 6.33) at its next command.
    fn refresh_luns(&mut self) {
        let g = self.reg.generation();
        if g == self.generation {
            return;
        }
        self.generation = g;
        let target = self.reg.target(&self.nexus.target_name);
        let new = target
            .as_ref()
            .and_then(|t| t.lun_map(&self.nexus.initiator))
            .unwrap_or_default();
        let same = new.len() == self.luns.len()
            && new
                .iter()
                .zip(&self.luns)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y));
        if same {
            self.target = target;
            return;
        }
        for lu in new.values() {
            if !self.luns.values().any(|o| Arc::ptr_eq(o, lu)) {
                lu.attach(&self.nexus);
            }
        }
        for lu in self.luns.values() {
            if !new.values().any(|n| Arc::ptr_eq(n, lu)) {
                lu.detach(self.nexus.id);
            }
        }
        for lu in new.values() {
            lu.raise_unit_attention_for(self.nexus.id, Asc::REPORTED_LUNS_DATA_CHANGED);
        }
        tracing::info!(
            initiator = %self.nexus.initiator,
            luns = new.len(),
            "LUN map changed by a reload"
        );
        self.visible_luns = new.keys().copied().collect();
        self.luns = new;
        self.target = target;
    }

    async fn on_pdu(&mut self, reader: &mut PduReader, h: Header) -> Result<(), ReadError> {
        if !self.discovery() {
            self.refresh_luns();
        }
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

    fn deliver(&mut self, q: Queued, counted: bool) {
        match q {
            Queued::Command(cmd, pb) => self.start_command(cmd, pb, counted),
            Queued::Other(req, h, data) => self.on_other(req, &h, data, counted),
        }
    }

    /// Hands a request to the CmdSN order (`iscsi::session::order`) and delivers
    /// what is ready. Each counted request is counted in flight before ExpCmdSN moves
    /// past it, so MaxCmdSN never opens beyond the queue depth.
    fn offer(&mut self, cmd_sn: u32, immediate: bool, q: Queued) {
        let offer = {
            let shared = &self.shared;
            let mut window = shared.window();
            self.queued.offer(&mut window, cmd_sn, immediate, q, || {
                shared.admitted();
            })
        };
        match offer {
            Offer::Deliver(q, counted) => {
                self.deliver(q, counted);
                // Requests that waited behind it, in CmdSN order.
                while !self.queued.is_empty() {
                    let next = {
                        let shared = &self.shared;
                        let mut window = shared.window();
                        self.queued.next_ready(&mut window, || {
                            shared.admitted();
                        })
                    };
                    match next {
                        Some(q) => self.deliver(q, true),
                        None => break,
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

    fn on_other(&mut self, req: Request, h: &Header, data: Vec<u8>, counted: bool) {
        match req {
            Request::Text(t) => return self.on_text(t, &data, counted),
            Request::TaskMgmt(t) => return self.on_tmf(t, counted),
            _ => {}
        }
        let max_send = self.params.max_send_data_segment_length as usize;
        match control::answer(&req, &h.bhs, data, max_send) {
            Control::Nothing => self.finish_counted(counted),
            Control::Reply(r) => {
                let carries_status = r.sn == SnMode::Advance;
                let mut o = Outgoing::one(PduOut::with_data(r.bhs, r.sn, r.data));
                o.completes_command = counted && carries_status;
                self.send(o);
                if counted && !carries_status {
                    self.finish_counted(counted);
                }
            }
            Control::Logout(r) => {
                let mut o = Outgoing::one(PduOut::with_data(r.bhs, r.sn, r.data));
                o.completes_command = counted;
                o.after = After::Close;
                // Let running commands answer first (RFC 7143 §11.14).
                let waiters = self.task_waiters(|_| true);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    for mut w in waiters {
                        let _ = w.wait_for(|d| *d).await;
                    }
                    let _ = tx.send(o);
                });
                self.logged_out = true;
            }
            // Commands and Data-Out never reach here.
            Control::NotControl => self.finish_counted(counted),
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
}

/// Largest READ or WRITE done inline on the connection task when it cannot block.
const INLINE_IO_MAX: usize = 64 * 1024;
