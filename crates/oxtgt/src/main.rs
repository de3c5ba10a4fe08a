//! oxtgt: a userspace iSCSI target.
//!
//! `oxtgt` alone serves the embedded default config; `oxtgt serve --config FILE`
//! serves a TOML config; `oxtgt check-config FILE` validates one; `oxtgt
//! migrate-config FILE` prints it as the model oxtgt runs; `oxtgt ctl ...` (also
//! installed as `oxtgtctl`) talks to a running daemon's admin socket.

mod admin;
mod config;
mod conn;
mod control;
mod exec;
mod guard;
mod metrics;
mod notify;
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
use control::{Control, Overrides};
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
        /// The admin socket (overrides the config's admin_socket).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
        /// Serve Prometheus metrics here (overrides the config's metrics_listen).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Talk to a running daemon: status, lists, live changes, reload, save.
    Ctl(admin::cli::CtlArgs),
    /// Write man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenDocs { dir: PathBuf },
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

/// `oxtgtctl`: the same client as `oxtgt ctl`, under its own name.
#[derive(Parser)]
#[command(name = "oxtgtctl", version, about = "Control a running oxtgt daemon")]
struct CtlCli {
    #[command(flatten)]
    args: admin::cli::CtlArgs,
}

/// Man pages for `oxtgt`, each of its commands and `oxtgtctl`, and bash, zsh and
/// fish completions for both names, from the same clap definitions.
fn gen_docs(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let mut pages = vec![Cli::command(), CtlCli::command()];
    let top = Cli::command();
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        // A one-shot program: the page names live until it exits.
        let name: &'static str = Box::leak(format!("oxtgt-{}", sub.get_name()).into_boxed_str());
        pages.push(sub.clone().name(name));
    }
    for cmd in pages {
        let name = cmd.get_name().to_owned();
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(man.join(format!("{name}.1")), out)?;
    }
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "oxtgt", &comp)?;
        clap_complete::generate_to(shell, &mut CtlCli::command(), "oxtgtctl", &comp)?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new("oxtgtctl")) {
        return admin::cli::run(CtlCli::parse().args);
    }
    let cli = Cli::parse();
    let (cfg_path, listen, log_format, admin_socket, metrics_listen) = match cli.command {
        Some(Cmd::Ctl(args)) => return admin::cli::run(args),
        Some(Cmd::GenDocs { dir }) => {
            return match gen_docs(&dir) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gen-docs: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
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
            admin_socket,
            metrics_listen,
        }) => (config, listen, log_format, admin_socket, metrics_listen),
        None => (None, Vec::new(), None, None, None),
    };
    let base = match &cfg_path {
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
        admin_socket,
        metrics_listen,
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
    let mut cfg = base.clone();
    overrides.apply(&mut cfg);
    init_logging(cfg.server.log_format);
    // Network threads wake for every PDU: a short slice lets them run when they
    // wake instead of after the running thread's slice (exec::SHORT_SLICE).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(exec::short_slice)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(base, cfg, cfg_path, overrides)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("oxtgt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// SIGHUP: re-reads the config file and applies it whole, or nothing of it
/// ([`Control::reload`]); every error is logged with file, line and key.
async fn reload(control: &Control) {
    notify::reloading();
    match control.reload().await {
        Ok(r) => {
            for p in &r.portals_started {
                tracing::info!(portal = %p, "listening");
            }
            for p in &r.portals_stopped {
                tracing::info!(portal = %p, "portal removed: no new connections; its sessions continue");
            }
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                config = ?control.cfg_path,
                lus = r.lus,
                reused = r.reused,
                removed = r.removed.len(),
                "reloaded"
            )
        }
        Err(errors) => {
            for e in errors {
                tracing::error!(error = %e, "reload refused: nothing changed");
            }
        }
    }
    notify::notify("READY=1");
}

async fn serve(
    base: Config,
    cfg: Config,
    cfg_path: Option<PathBuf>,
    overrides: Overrides,
) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP or SIGTERM that arrives once READY=1 is out (or
    // once the portal line is printed) must reload or stop, not kill the process
    // by the signal's default action.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let reg = Arc::new(registry::Registry::build(&cfg)?);
    let pool = Arc::new(pool::BufPool::default());
    let exec = Arc::new(exec::Executor::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut portals = Portals::new(conn_tx);
    let bound = portals.bind_new(&cfg.server.listen).await?;
    // The admin socket and the metrics port are bound before anything is
    // announced: a daemon that cannot be managed does not start half-way.
    let admin = match &cfg.server.admin_socket {
        Some(p) => Some((admin::bind(p)?, p.clone())),
        None => None,
    };
    let metrics = match cfg.server.metrics_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {a}: {e}"))?,
        ),
        None => None,
    };
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
    let control = Arc::new(Control::new(
        reg.clone(),
        base,
        cfg_path,
        overrides,
        portals,
    ));
    let mut side = tokio::task::JoinSet::new();
    let admin_path = admin.as_ref().map(|(_, p)| p.clone());
    if let Some((l, path)) = admin {
        side.spawn(admin::serve(l, control.clone(), path));
    }
    if let Some(l) = metrics {
        if let Ok(a) = l.local_addr() {
            tracing::info!(address = %a, "serving metrics at /metrics");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "oxtgt: metrics at http://{a}/metrics");
            let _ = out.flush();
        }
        side.spawn(metrics::serve(
            l,
            Arc::new(metrics::Metrics {
                reg: reg.clone(),
                pool: pool.clone(),
            }),
        ));
    }
    notify::notify("READY=1");
    let mut conns = tokio::task::JoinSet::new();
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
            _ = sighup.recv() => reload(&control).await,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    notify::notify("STOPPING=1");
    tracing::info!(
        sessions = conns.len(),
        "shutting down: asking initiators to log out"
    );
    control.stop_portals().await;
    side.abort_all();
    // The socket this process bound (a reload may have changed the config's path,
    // which takes effect only at the next start).
    if let Some(p) = &admin_path {
        let _ = std::fs::remove_file(p);
    }
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
