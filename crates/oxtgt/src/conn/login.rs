//! The login phase on a connection (RFC 7143 §6): Login Request/Response exchanges
//! driven by `iscsi::login::Negotiator` until the full-feature phase, and the
//! connection's keep-alive and shutdown notice.

use iscsi::session::keepalive::{Keepalive, KeepaliveAction};
use iscsi::session::login::{LoginPhase, LoginStep};
use iscsi::session::stamp::Stamper;

use crate::config::ServerConfig;

use super::*;
use crate::registry::LoginResult;

pub(super) struct LoginDone {
    pub(super) params: NegotiatedParams,
    pub(super) stamper: Stamper,
    /// The settings this session logged in under; it keeps them across reloads.
    pub(super) server: Arc<ServerConfig>,
}

/// The login phase: Login Request/Response exchanges, decided by
/// `iscsi::session::login::LoginPhase`, until full-feature phase or the login
/// deadline.
pub(super) async fn login(
    reader: &mut PduReader,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    reg: &Arc<Registry>,
    peer: Option<SocketAddr>,
) -> Result<Option<LoginDone>, ReadError> {
    use tokio::io::AsyncWriteExt;
    let server = reg.server();
    let mut phase = LoginPhase::new(
        server.limits.clone(),
        server.queue_depth,
        rand_u32(),
        Instant::now(),
        Duration::from_secs(server.login_timeout_secs),
        Box::new(OsRandom),
    );
    let deadline = tokio::time::Instant::from_std(phase.deadline());
    loop {
        let read = async {
            let h = reader.header().await?;
            let data = reader.data_vec(&h).await?.map_err(ReadError::Protocol)?;
            Ok::<_, ReadError>((h, data))
        };
        let Ok(read) = tokio::time::timeout_at(deadline, read).await else {
            tracing::info!(
                ?peer,
                secs = server.login_timeout_secs,
                "login not completed in time; closing"
            );
            reg.logins.count(LoginResult::Timeout);
            return Ok(None);
        };
        let (h, data) = read?;
        let answer = phase.handle(&h.bhs, &h.ahs, &data, reg.as_ref(), reg.as_ref());
        let ip = peer.map(|p| p.ip());
        if answer.status == (2, 1) {
            // Repeated authentication failures wait longer each time (on this
            // connection's task only).
            let name = phase.initiator();
            let delay = reg.guard.failed(name, ip, Instant::now(), &server.guard);
            if !delay.is_zero() {
                tracing::info!(?peer, initiator = %name, ms = delay.as_millis() as u64, "delaying the answer to a repeated authentication failure");
                tokio::time::sleep(delay).await;
            }
        }
        if let LoginStep::FullFeature(p) = &answer.step {
            reg.guard.succeeded(&p.initiator_name, ip);
        }
        if !answer.reply.is_empty() {
            wr.write_all(&answer.reply).await?;
        }
        match answer.step {
            LoginStep::Continue => {}
            LoginStep::FullFeature(params) => {
                reg.logins.count(LoginResult::Ok);
                return Ok(Some(LoginDone {
                    params: *params,
                    stamper: phase.stamper(),
                    server,
                }));
            }
            LoginStep::Close(why) => {
                reg.logins.count(match answer.status {
                    (0, _) => LoginResult::Ok,
                    (2, 1) => LoginResult::Authentication,
                    (2, 2) => LoginResult::Authorization,
                    (2, 3) => LoginResult::NotFound,
                    _ => LoginResult::Other,
                });
                tracing::info!(?peer, reason = %why, "login ended");
                return Ok(None);
            }
        }
    }
}

/// CHAP identifiers and challenges from the operating system's RNG.
#[derive(Debug)]
struct OsRandom;

impl iscsi::chap::ChapSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

pub(super) fn rand_u32() -> u32 {
    rand::random::<u32>() & 0x00ff_ffff
}

/// On server shutdown: ask the initiator to log out (Async Message, event 1), give it
/// a moment, then end the session.
pub(super) async fn shutdown_notice(shutdown: &mut watch::Receiver<bool>, tx: OutTx) -> String {
    let _ = shutdown.wait_for(|s| *s).await;
    ask_to_log_out(&tx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    "server shutting down".into()
}

/// Async Message, event 1: the target asks for a logout within 2 seconds.
fn ask_to_log_out(tx: &OutTx) {
    let msg = pdu::AsyncMsg {
        lun: 0,
        event: 1,
        parameter1: 0,
        parameter2: 0,
        parameter3: 2, // seconds the initiator has to log out
        data_len: 0,
    };
    let _ = tx.send(Outgoing::one(PduOut::new(msg.encode(), SnMode::Current)));
}

/// When an operator logs the session out (or its access is taken away): the same
/// request as at shutdown, then the session is stopped 3 s later if the initiator
/// has not logged out by then. A task of its own, so the connection's hot loop
/// polls nothing more for it.
pub(super) fn spawn_logout_watch(
    mut logout: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    tx: OutTx,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if logout.wait_for(|l| *l).await.is_ok() {
            tracing::info!("asking the initiator to log out (operator or access change)");
            ask_to_log_out(&tx);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = stop.send(true);
        }
    })
}

/// NOP-In pings when the initiator has been silent (`iscsi::session::keepalive`);
/// the reader reports receive times through `last_rx` (milliseconds since
/// `started`), so the read path takes no lock.
pub(super) fn spawn_keepalive(
    server: &ServerConfig,
    tx: OutTx,
    last_rx: Arc<AtomicU64>,
    started: Instant,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut ka = Keepalive::new(
        started,
        Duration::from_secs(server.nop_interval_secs),
        Duration::from_secs(server.nop_timeout_secs),
    )?;
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep_until(tokio::time::Instant::from_std(ka.poll_timeout())).await;
            ka.on_receive(started + Duration::from_millis(last_rx.load(Ordering::Relaxed)));
            match ka.handle_timeout(Instant::now()) {
                None => {}
                Some(KeepaliveAction::Ping(bhs))
                    if tx
                        .send(Outgoing::one(PduOut::new(bhs, SnMode::Current)))
                        .is_err() =>
                {
                    return;
                }
                Some(KeepaliveAction::Ping(_)) => {}
                Some(KeepaliveAction::Close { idle }) => {
                    tracing::warn!(
                        idle_secs = idle.as_secs(),
                        "initiator unresponsive to NOP-In; closing connection"
                    );
                    let _ = tx.send(Outgoing {
                        after: After::Close,
                        ..Outgoing::default()
                    });
                    return;
                }
            }
        }
    }))
}
