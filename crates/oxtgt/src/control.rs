//! The one place the served model changes: SIGHUP, `oxtgt ctl reload` and every
//! live edit of the admin interface come through [`Control::apply`], one at a time.
//!
//! An edit never touches the running objects directly. It takes the config being
//! served (as the file would say it, without command-line overrides), changes it
//! as TOML, validates the result whole with the same parser as the file, and
//! applies the difference through [`Registry::reload`]: unchanged LUs and the
//! sessions using them keep running, new portals are bound before anything
//! changes, removed LUs are drained and flushed. `save` writes that config back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, LogFormat};
use crate::portals::Portals;
use crate::registry::Registry;

/// What the command line sets over the config file, at start and at every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<SocketAddr>,
    pub log_format: Option<LogFormat>,
    pub admin_socket: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
}

impl Overrides {
    pub fn apply(&self, cfg: &mut Config) {
        if !self.listen.is_empty() {
            cfg.server.listen = self.listen.clone();
        }
        if let Some(f) = self.log_format {
            cfg.server.log_format = f;
        }
        if let Some(p) = &self.admin_socket {
            cfg.server.admin_socket = Some(p.clone());
        }
        if let Some(a) = self.metrics_listen {
            cfg.server.metrics_listen = Some(a);
        }
    }
}

/// How long a removal waits for commands and copies on the LU by default.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// An LU that left the model, after draining.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drained {
    pub lu: String,
    /// Commands on the LU, and copies started through it (a copy without IMMED
    /// is both), still running when the wait ended: both 0 when drained.
    pub commands_running: usize,
    pub copies_running: usize,
    pub waited_ms: u64,
}

/// What one change did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ChangeReport {
    pub lus: usize,
    pub reused: usize,
    pub removed: Vec<Drained>,
    /// (LU, blocks now)
    pub resized: Vec<(String, u64)>,
    pub portals_started: Vec<String>,
    pub portals_stopped: Vec<String>,
    /// Sessions asked to log out because their initiator lost access.
    pub sessions_logged_out: usize,
    /// Things that take effect only at the next restart.
    pub warnings: Vec<String>,
}

pub struct Control {
    pub reg: Arc<Registry>,
    /// The config served now, as its file would say it (no overrides).
    base: Mutex<Config>,
    pub cfg_path: Option<PathBuf>,
    overrides: Overrides,
    /// Held for the whole of a change: changes apply one at a time.
    portals: tokio::sync::Mutex<Portals>,
    pub started: Instant,
    pub started_at: std::time::SystemTime,
}

impl Control {
    pub fn new(
        reg: Arc<Registry>,
        base: Config,
        cfg_path: Option<PathBuf>,
        overrides: Overrides,
        portals: Portals,
    ) -> Self {
        Self {
            reg,
            base: Mutex::new(base),
            cfg_path,
            overrides,
            portals: tokio::sync::Mutex::new(portals),
            started: Instant::now(),
            started_at: std::time::SystemTime::now(),
        }
    }

    /// The config served now, as its file would say it.
    pub fn base(&self) -> Config {
        self.base.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn portal_addrs(&self) -> Vec<SocketAddr> {
        self.portals.lock().await.bound_addrs()
    }

    pub async fn stop_portals(&self) {
        self.portals.lock().await.stop_all();
    }

    /// Re-reads the config file and applies it whole, or nothing of it.
    pub async fn reload(&self) -> Result<ChangeReport, Vec<String>> {
        let Some(path) = &self.cfg_path else {
            return Err(vec![
                "serving the embedded default: there is no config file to reload".into(),
            ]);
        };
        // File reads, secret files included: off the runtime's worker for the while.
        let cfg = tokio::task::block_in_place(|| Config::load(path))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        self.apply(cfg, DRAIN_TIMEOUT).await
    }

    /// Applies an edit of the served config: `edit` changes its TOML, the result is
    /// validated whole and applied, or nothing changes.
    pub async fn edit(
        &self,
        what: &str,
        drain: Duration,
        edit: impl FnOnce(&mut toml::Table) -> Result<(), String>,
    ) -> Result<ChangeReport, Vec<String>> {
        let text = self
            .base()
            .to_toml()
            .map_err(|e| vec![format!("cannot write the served config as TOML: {e}")])?;
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| vec![format!("cannot read the served config back: {e}")])?;
        edit(&mut table).map_err(|e| vec![e])?;
        let text = toml::to_string(&table).map_err(|e| vec![e.to_string()])?;
        let cfg = tokio::task::block_in_place(|| Config::parse(what, &text))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        self.apply(cfg, drain).await
    }

    /// Serves `base` (plus the command-line overrides) from now on, or changes
    /// nothing: portals first (an address in use refuses the change), then the
    /// model; then removed LUs drain and are flushed, and sessions whose initiator
    /// may no longer log in to their target are asked to log out.
    pub async fn apply(&self, base: Config, drain: Duration) -> Result<ChangeReport, Vec<String>> {
        let mut portals = self.portals.lock().await;
        let mut cfg = base.clone();
        self.overrides.apply(&mut cfg);
        let old = self.reg.server();
        let bound = portals
            .bind_new(&cfg.server.listen)
            .await
            .map_err(|e| vec![format!("{e:#}")])?;
        // Opening and creating backing files, growing them, writing identities.txt
        // (fsync): blocking work, kept from stalling the sessions that share this
        // runtime worker.
        let applied = tokio::task::block_in_place(|| self.reg.reload(&cfg))
            .map_err(|e| vec![format!("{e:#}")])?;
        let (started, stopped) = portals.commit(bound, &cfg.server.listen);
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = base;
        let mut report = ChangeReport {
            lus: applied.lus,
            reused: applied.reused,
            resized: applied.resized,
            portals_started: started.iter().map(|a| a.to_string()).collect(),
            portals_stopped: stopped.iter().map(|a| a.to_string()).collect(),
            ..ChangeReport::default()
        };
        for (name, blocks) in &report.resized {
            tracing::info!(lu = %name, blocks, "LU resized");
        }
        for (changed, key) in [
            (old.log_format != cfg.server.log_format, "server.log_format"),
            (
                old.admin_socket != cfg.server.admin_socket,
                "server.admin_socket",
            ),
            (
                old.metrics_listen != cfg.server.metrics_listen,
                "server.metrics_listen",
            ),
        ] {
            if changed {
                report
                    .warnings
                    .push(format!("{key} changes at the next restart"));
            }
        }
        report.sessions_logged_out = self.log_out_sessions_without_access();
        drop(portals);
        for (name, lu) in applied.removed {
            report
                .removed
                .push(drain_lu(&self.reg, &name, &lu, drain).await);
        }
        Ok(report)
    }

    /// Asks every session whose initiator may no longer log in to its target to
    /// log out (its LUN map is already empty).
    fn log_out_sessions_without_access(&self) -> usize {
        let sessions = self.reg.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for ((initiator, _, target), s) in sessions.iter() {
            let allowed = self
                .reg
                .target(target)
                .is_some_and(|t| t.lun_map(initiator).is_some());
            if !allowed && !*s.logout.borrow() {
                tracing::info!(%initiator, %target, "access removed: asking the session to log out");
                let _ = s.logout.send(true);
                n += 1;
            }
        }
        n
    }

    /// Writes the served config to `path` (default: the file it came from)
    /// atomically: a temporary file in the same directory, synced, renamed over the
    /// old one, the directory synced. The old file's permissions are kept (it may
    /// hold CHAP secrets).
    pub fn save(&self, path: Option<&Path>) -> Result<PathBuf, String> {
        let path = match (path, &self.cfg_path) {
            (Some(p), _) => p.to_owned(),
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(
                    "serving the embedded default: give a path to save the config to".into(),
                )
            }
        };
        let text = self
            .base()
            .to_toml()
            .map_err(|e| format!("cannot write the served config as TOML: {e}"))?;
        tokio::task::block_in_place(|| write_atomically(&path, text.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "config saved");
        Ok(path)
    }
}

/// Waits until no command runs on `lu` and no copy started through it runs, up to
/// `timeout`; then flushes it. The LU is out of every LUN map already, so nothing
/// new can start on it.
async fn drain_lu(
    reg: &Registry,
    name: &str,
    lu: &Arc<scsi::LogicalUnit>,
    timeout: Duration,
) -> Drained {
    let began = Instant::now();
    let naa = lu.identity().naa;
    let running = || (lu.running_tasks(), usize::from(reg.copy.running_on(&naa)));
    while running() != (0, 0) && began.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (commands, copies) = running();
    let l = lu.clone();
    let flushed = tokio::task::spawn_blocking(move || l.flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::error!(lu = %name, error = %e, "flush of a removed LU failed");
    }
    if (commands, copies) != (0, 0) {
        tracing::warn!(lu = %name, commands, copies, "LU removed; still running on it after the drain timeout");
    } else {
        tracing::info!(lu = %name, "LU removed and drained");
    }
    Drained {
        lu: name.to_owned(),
        commands_running: commands,
        copies_running: copies,
        waited_ms: began.elapsed().as_millis() as u64,
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}
