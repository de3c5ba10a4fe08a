//! The admin interface: a Unix socket (mode 0600) speaking [`proto`], served by the
//! daemon, and the `oxtgt ctl` client ([`cli`]). Every change goes through
//! [`Control`]; reads are views of the registry, the copy manager and the sessions
//! table (tokens without their bytes).

pub mod cli;
pub mod edit;
pub mod proto;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::control::{Control, DRAIN_TIMEOUT};
use proto::{Answer, Envelope, Request, VERSION};

/// The longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// Binds the admin socket at `path` with mode 0600. A socket file left by a
/// process that is gone is replaced; one a live server answers on is not.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use by a running server (another oxtgt?)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // Created with no access for others from the start: the umask covers the
    // window between bind and chmod. This runs at start-up, before any session
    // or other file-creating thread exists (umask is process-wide).
    // SAFETY: umask(2) only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves admin connections until the task is dropped.
pub async fn serve(listener: UnixListener, control: Arc<Control>, path: PathBuf) {
    tracing::info!(socket = %path.display(), "admin socket listening");
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let c = control.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(s, c).await {
                        tracing::debug!(error = %e, "admin connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(s: UnixStream, control: Arc<Control>) -> std::io::Result<()> {
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd).take(u64::MAX);
    let mut line = String::new();
    loop {
        line.clear();
        rd.set_limit(MAX_REQUEST as u64 + 1);
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_REQUEST {
            Answer::err(vec![format!("request longer than {MAX_REQUEST} bytes")])
        } else {
            match serde_json::from_str::<Envelope>(&line) {
                Ok(e) if e.version != VERSION => Answer::err(vec![format!(
                    "this server speaks admin protocol version {VERSION}, not {}",
                    e.version
                )]),
                Ok(e) => handle(&control, e.request).await,
                Err(e) => Answer::err(vec![format!("not a request: {e}")]),
            }
        };
        let mut out = serde_json::to_vec(&answer).unwrap_or_default();
        out.push(b'\n');
        wr.write_all(&out).await?;
        if line.len() > MAX_REQUEST {
            return Ok(());
        }
    }
}

fn drain(t: Option<u64>) -> Duration {
    t.map_or(DRAIN_TIMEOUT, Duration::from_secs)
}

/// Runs one request.
pub async fn handle(c: &Control, req: Request) -> Answer {
    let changed = |r: Result<crate::control::ChangeReport, Vec<String>>| match r {
        Ok(report) => Answer::ok(serde_json::to_value(report).unwrap_or(Value::Null)),
        Err(errors) => Answer::err(errors),
    };
    match req {
        Request::Status => Answer::ok(status(c).await),
        Request::List => Answer::ok(list(c).await),
        Request::LuAdd { target, lun, spec } => changed(
            c.edit("lu add", DRAIN_TIMEOUT, |t| {
                edit::lu_add(t, &target, lun, &spec)
            })
            .await,
        ),
        Request::LuRemove { lu, timeout_secs } => changed(
            c.edit("lu remove", drain(timeout_secs), |t| {
                edit::lu_remove(t, &lu)
            })
            .await,
        ),
        Request::LuResize { lu, size } => changed(
            c.edit("lu resize", DRAIN_TIMEOUT, |t| {
                edit::lu_resize(t, &lu, &size)
            })
            .await,
        ),
        Request::LunMap { target, lun, lu } => changed(
            c.edit("lun map", DRAIN_TIMEOUT, |t| {
                edit::lun_map(t, &target, lun, &lu)
            })
            .await,
        ),
        Request::LunUnmap {
            target,
            lun,
            timeout_secs,
        } => changed(
            c.edit("lun unmap", drain(timeout_secs), |t| {
                edit::lun_unmap(t, &target, lun).map(|_| ())
            })
            .await,
        ),
        Request::AclAdd {
            target,
            initiator,
            map,
        } => changed(
            c.edit("acl add", DRAIN_TIMEOUT, |t| {
                edit::acl_add(t, &target, &initiator, &map.iter().copied().collect())
            })
            .await,
        ),
        Request::AclRemove { target, initiator } => changed(
            c.edit("acl remove", DRAIN_TIMEOUT, |t| {
                edit::acl_remove(t, &target, &initiator)
            })
            .await,
        ),
        Request::SessionLogout { tsih, initiator } => logout(c, tsih, initiator.as_deref()),
        Request::TapeLoad { lu, cartridge } => tape(c, &lu, Some(cartridge)),
        Request::TapeUnload { lu } => tape(c, &lu, None),
        Request::Reload => changed(c.reload().await),
        Request::Save { path } => match c.save(path.as_deref().map(Path::new)) {
            Ok(p) => Answer::ok(json!({ "path": p.display().to_string() })),
            Err(e) => Answer::err(vec![e]),
        },
    }
}

/// Loads (`Some`, with a cartridge name or the last one) or unloads (`None`) the
/// cartridge of tape LU `name`, as LOAD UNLOAD would; initiators hear of a load by
/// NOT READY TO READY CHANGE.
fn tape(c: &Control, name: &str, load: Option<Option<String>>) -> Answer {
    let model = c.reg.model();
    let Some((_, _, lu)) = model.lus().find(|(n, _, _)| *n == name) else {
        return Answer::err(vec![format!("no LU named {name}")]);
    };
    let Some(t) = lu.tape() else {
        return Answer::err(vec![format!("LU {name} is not a tape drive")]);
    };
    let r = match load {
        Some(cartridge) => {
            let want = cartridge
                .or_else(|| t.loaded())
                .unwrap_or_else(|| t.last_loaded());
            lu.load_cartridge(&want)
        }
        None => lu.unload_cartridge(),
    };
    match r {
        Ok(()) => {
            tracing::info!(lu = name, cartridge = ?t.loaded(), "operator changed the tape");
            Answer::ok(json!({ "lu": name, "cartridge": t.loaded() }))
        }
        Err(e) => Answer::err(vec![format!("LU {name}: {:?}", e.sense())]),
    }
}

fn logout(c: &Control, tsih: Option<u16>, initiator: Option<&str>) -> Answer {
    if tsih.is_none() && initiator.is_none() {
        return Answer::err(vec!["name a session by --tsih or --initiator".into()]);
    }
    let sessions = c.reg.sessions.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    for ((i, _, _), s) in sessions.iter() {
        if tsih.is_none_or(|t| t == s.tsih) && initiator.is_none_or(|x| x == i) {
            let _ = s.logout.send(true);
            n += 1;
        }
    }
    if n == 0 {
        return Answer::err(vec!["no such session".into()]);
    }
    tracing::info!(sessions = n, "operator asked sessions to log out");
    Answer::ok(json!({ "sessions": n }))
}

fn naa_hex(naa: &[u8; 16]) -> String {
    codec::hex(naa).to_ascii_lowercase()
}

fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn status(c: &Control) -> Value {
    let model = c.reg.model();
    let copies = c.reg.copy.copies();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_secs": c.started.elapsed().as_secs(),
        "started_at": unix_secs(c.started_at),
        "config": c.cfg_path.as_ref().map(|p| p.display().to_string()),
        "generation": c.reg.generation(),
        "portals": c.portal_addrs().await.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "targets": model.targets.len(),
        "lus": model.lus().count(),
        "sessions": c.reg.sessions.lock().unwrap_or_else(|e| e.into_inner()).len(),
        "copies_running": copies.iter().filter(|x| x.state == "running").count(),
        "tokens_live": c.reg.copy.tokens.live(),
    })
}

async fn list(c: &Control) -> Value {
    let model = c.reg.model();
    let base = c.base();
    let targets: Vec<Value> = base
        .targets
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "alias": t.alias,
                "open_access": t.open_access,
                "chap": t.chap.is_some(),
                "luns": t.luns.iter().map(|l| json!({"lun": l.id, "lu": l.lu})).collect::<Vec<_>>(),
                "acls": t.acls.iter().map(|a| json!({
                    "initiator": a.initiator,
                    "map": a.map.iter().map(|(v, l)| (v.to_string(), json!(l))).collect::<serde_json::Map<_, _>>(),
                    "chap": a.chap.is_some(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut lus: Vec<Value> = model
        .lus()
        .map(|(name, def, lu)| {
            let store = lu.backstore();
            let io = lu.io_stats().snapshot();
            let mapped: Vec<String> = base
                .targets
                .iter()
                .flat_map(|t| {
                    t.luns
                        .iter()
                        .filter(|l| &l.lu == name)
                        .map(move |l| format!("{}/{}", t.name, l.id))
                })
                .collect();
            json!({
                "name": name,
                "backstore": store.kind(),
                "path": def.path.as_ref().map(|p| p.display().to_string()),
                "size_bytes": lu.num_blocks() * u64::from(lu.block_size()),
                "block_size": lu.block_size(),
                "thin": lu.thin(),
                "read_only": lu.read_only(),
                "cartridge": lu.tape().and_then(|t| t.loaded()),
                "allocated_bytes": store.allocated(),
                "naa": naa_hex(&lu.identity().naa),
                "serial": lu.identity().serial,
                "mapped_at": mapped,
                "sessions": lu.attached_nexuses(),
                "running_commands": lu.running_tasks(),
                "read_bytes": io.read_bytes,
                "write_bytes": io.write_bytes,
            })
        })
        .collect();
    lus.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let names: std::collections::HashMap<[u8; 16], String> = model
        .lus()
        .map(|(n, _, lu)| (lu.identity().naa, n.clone()))
        .collect();
    let lu_name = |naa: &[u8; 16]| names.get(naa).cloned().unwrap_or_else(|| naa_hex(naa));
    let mut sessions: Vec<Value> = c
        .reg
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|((initiator, isid, target), s)| {
            json!({
                "tsih": s.tsih,
                "initiator": initiator,
                "isid": codec::hex(isid).to_ascii_lowercase(),
                "target": target,
                "address": s.peer.map(|p| p.to_string()),
                "since": unix_secs(s.since),
                "commands": s.stats.commands.load(Ordering::Relaxed),
                "read_bytes": s.stats.read_bytes.load(Ordering::Relaxed),
                "write_bytes": s.stats.write_bytes.load(Ordering::Relaxed),
            })
        })
        .collect();
    sessions.sort_by_key(|s| s["tsih"].as_u64());
    let copies: Vec<Value> = c
        .reg
        .copy
        .copies()
        .iter()
        .map(|x| {
            json!({
                "lu": lu_name(&x.lu),
                "list_id": x.list_id,
                "op": x.op,
                "state": x.state,
                "bytes": x.bytes,
                "total_bytes": x.total_bytes,
                "background": x.background,
                "age_ms": x.age.as_millis() as u64,
            })
        })
        .collect();
    let tokens: Vec<Value> = c
        .reg
        .copy
        .tokens
        .list()
        .iter()
        .map(|t| {
            json!({
                "source": lu_name(&t.source),
                "bytes": t.bytes,
                "idle_secs": t.idle.as_secs(),
                "inactivity_timeout_secs": t.inactivity.as_secs(),
                "in_use": t.in_use,
            })
        })
        .collect();
    json!({
        "portals": c.portal_addrs().await.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "targets": targets,
        "lus": lus,
        "sessions": sessions,
        "copies": copies,
        "tokens": tokens,
    })
}
