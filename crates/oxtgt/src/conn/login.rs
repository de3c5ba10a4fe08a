//! The login phase on a connection (RFC 7143 §6): Login Request/Response exchanges
//! driven by `iscsi::login::Negotiator` until the full-feature phase, and the
//! connection's keep-alive and shutdown notice.

use super::*;

pub(super) struct LoginDone {
    pub(super) params: NegotiatedParams,
    pub(super) stat_sn: u32,
}

/// The login phase: Login Request/Response exchanges until full-feature phase.
pub(super) async fn login(
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

pub(super) fn rand_u32() -> u32 {
    rand::random::<u32>() & 0x00ff_ffff
}

/// On server shutdown: ask the initiator to log out (Async Message, event 1), give it
/// a moment, then end the session.
pub(super) async fn shutdown_notice(shutdown: &mut watch::Receiver<bool>, tx: OutTx) -> String {
    let _ = shutdown.wait_for(|s| *s).await;
    let msg = pdu::AsyncMsg {
        lun: 0,
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
pub(super) fn spawn_keepalive(
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
