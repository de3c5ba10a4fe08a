//! oxtgt: a userspace iSCSI target.
//!
//! `oxtgt` alone serves the embedded default config; `oxtgt serve --config FILE`
//! serves a TOML config; `oxtgt check-config FILE` validates one; `oxtgt
//! migrate-config FILE` prints it as the model oxtgt runs.

mod config;
mod conn;
mod exec;
mod guard;
mod pool;
mod portals;
mod registry;
mod wire;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use config::{Config, LogFormat};
use portals::Portals;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "oxtgt",
    version,
    about = "Userspace iSCSI target with copy offload"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve iSCSI (the default when no command is given).
    Serve {
        /// TOML config file; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Portals to listen on instead of the config's (repeatable).
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// Log format: human or json (overrides the config).
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Validate a config file and report every error with its line and key.
    CheckConfig { file: PathBuf },
    /// Print a config file as the model oxtgt runs, every default spelled out:
    /// LUs that several targets share as named [[lu]] sections.
    MigrateConfig { file: PathBuf },
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("OXTGT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Human => b.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (cfg_path, listen, log_format) = match cli.command {
        Some(Cmd::CheckConfig { file }) => {
            return match Config::load(&file) {
                Ok(c) => {
                    let luns: usize = c.targets.iter().map(|t| t.luns.len()).sum();
                    println!(
                        "{}: ok ({} targets, {} LUNs)",
                        file.display(),
                        c.targets.len(),
                        luns
                    );
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(Cmd::MigrateConfig { file }) => {
            return match Config::load(&file).map(|c| c.to_toml()) {
                Ok(Ok(text)) => {
                    print!("{text}");
                    std::process::ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("{}: cannot write the model as TOML: {e}", file.display());
                    std::process::ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(Cmd::Serve {
            config,
            listen,
            log_format,
        }) => (config, listen, log_format),
        None => (None, Vec::new(), None),
    };
    let mut cfg = match &cfg_path {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => Config::embedded_default(),
    };
    let overrides = Overrides {
        listen,
        log_format: match log_format.as_deref() {
            Some("json") => Some(LogFormat::Json),
            Some("human") => Some(LogFormat::Human),
            Some(other) => {
                eprintln!("--log-format: {other:?} is not \"human\" or \"json\"");
                return std::process::ExitCode::FAILURE;
            }
            None => None,
        },
    };
    overrides.apply(&mut cfg);
    init_logging(cfg.server.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg, cfg_path, overrides)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("oxtgt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the command line sets over the config file, at start and at every reload.
#[derive(Debug, Clone, Default)]
struct Overrides {
    listen: Vec<SocketAddr>,
    log_format: Option<LogFormat>,
}

impl Overrides {
    fn apply(&self, cfg: &mut Config) {
        if !self.listen.is_empty() {
            cfg.server.listen = self.listen.clone();
        }
        if let Some(f) = self.log_format {
            cfg.server.log_format = f;
        }
    }
}

/// SIGHUP: re-reads the config file and applies it whole, or nothing of it:
/// targets, LUs, ACLs and LUN maps (sessions see their new map at their next
/// request), the session settings new logins use, and the portals (new ones bound
/// first, so an address in use refuses the reload; removed ones stop accepting).
/// Every error is logged with file, line and key.
async fn reload(
    reg: &registry::Registry,
    path: Option<&std::path::Path>,
    overrides: &Overrides,
    portals: &mut Portals,
) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: serving the embedded default, nothing to reload");
        return;
    };
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(%e, "reload refused: nothing changed");
            }
            return;
        }
    };
    overrides.apply(&mut cfg);
    let bound = match portals.bind_new(&cfg.server.listen).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "reload refused: nothing changed");
            return;
        }
    };
    let old_format = reg.server().log_format;
    match reg.reload(&cfg) {
        Ok((lus, reused)) => {
            let (started, stopped) = portals.commit(bound, &cfg.server.listen);
            for p in started {
                tracing::info!(portal = %p, "listening");
            }
            for p in stopped {
                tracing::info!(portal = %p, "portal removed: no new connections; its sessions continue");
            }
            if cfg.server.log_format != old_format {
                tracing::warn!("server.log_format changes at the next restart");
            }
            tracing::info!(
                config = %path.display(),
                targets = cfg.targets.len(),
                lus,
                reused,
                "reloaded"
            )
        }
        Err(e) => tracing::error!(error = %e, "reload refused: nothing changed"),
    }
}

async fn serve(cfg: Config, cfg_path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let reg = Arc::new(registry::Registry::build(&cfg)?);
    let pool = Arc::new(pool::BufPool::default());
    let exec = Arc::new(exec::Executor::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut portals = Portals::new(conn_tx);
    let bound = portals.bind_new(&cfg.server.listen).await?;
    for bound in bound.local_addrs() {
        for t in &reg.model().targets {
            let host = match bound {
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
                SocketAddr::V4(a) => a.ip().to_string(),
            };
            // stdout may be closed (a supervisor or reader that went away): a failed
            // write must not take the server down.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "oxtgt: serving {} at iscsi://{}:{}/{}/0",
                t.name,
                host,
                bound.port(),
                t.name
            );
            let _ = out.flush();
        }
    }
    portals.commit(bound, &cfg.server.listen);
    let mut conns = tokio::task::JoinSet::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            Some(s) = conn_rx.recv() => {
                conns.spawn(conn::serve(
                    s,
                    reg.clone(),
                    pool.clone(),
                    exec.clone(),
                    shutdown_rx.clone(),
                ));
            }
            _ = sighup.recv() => reload(&reg, cfg_path.as_deref(), &overrides, &mut portals).await,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!(
        sessions = conns.len(),
        "shutting down: asking initiators to log out"
    );
    portals.stop_all();
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    let r = reg.clone();
    tokio::task::spawn_blocking(move || r.flush_all()).await?;
    tracing::info!("shutdown complete");
    Ok(())
}
