//! `oxtgt ctl` (also installed as `oxtgtctl`): the admin socket's client. Human
//! tables by default, the server's JSON with `--json`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::proto::{Answer, Envelope, LuSpec, Request, VERSION};

/// Where the CLI looks for the daemon when neither `--socket` nor OXTGT_SOCKET
/// says otherwise (the packaged config's `admin_socket`).
pub const DEFAULT_SOCKET: &str = "/run/oxtgt/oxtgt.sock";

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The daemon's admin socket.
    #[arg(long, env = "OXTGT_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Print the server's JSON answer instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCmd,
}

#[derive(Debug, Subcommand)]
pub enum CtlCmd {
    /// Version, uptime, portals and counts.
    Status,
    /// Targets, LUs, sessions, copies and live tokens (no token bytes).
    List {
        /// Only one kind.
        #[arg(value_parser = ["targets", "lus", "sessions", "copies", "tokens", "portals"])]
        what: Option<String>,
    },
    /// Add, remove or resize logical units.
    #[command(subcommand)]
    Lu(LuCmd),
    /// Map a named LU at a LUN of a target, or unmap one.
    #[command(subcommand)]
    Lun(LunCmd),
    /// Who may log in to a target and which LUNs they see.
    #[command(subcommand)]
    Acl(AclCmd),
    /// Running sessions.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Load or unload a tape LU's cartridge.
    #[command(subcommand)]
    Tape(TapeCmd),
    /// Re-read the config file and apply the difference (like SIGHUP).
    Reload,
    /// Write the running model to the config file (atomically).
    Save {
        /// Another file than the one the daemon was started with.
        #[arg(long)]
        path: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LuCmd {
    /// Create an LU and map it at LUN of TARGET.
    Add {
        #[arg(long)]
        target: String,
        #[arg(long)]
        lun: u16,
        /// Name it, so other targets can map it too (else it is <target>/lun<N>).
        #[arg(long)]
        name: Option<String>,
        /// file, block or ram.
        #[arg(long)]
        backstore: String,
        #[arg(long)]
        path: Option<String>,
        /// Bytes, or e.g. 10GiB (files are created sparse at this size).
        #[arg(long)]
        size: Option<String>,
        #[arg(long)]
        block_size: Option<u32>,
        #[arg(long)]
        thin: Option<bool>,
        #[arg(long)]
        read_only: bool,
    },
    /// Unmap an LU everywhere and let go of it once its commands and copies end.
    Remove {
        lu: String,
        /// Seconds to wait for running commands and copies.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Grow a file or block LU (initiators get CAPACITY DATA HAS CHANGED).
    Resize { lu: String, size: String },
}

#[derive(Debug, Subcommand)]
pub enum LunCmd {
    Map {
        target: String,
        lun: u16,
        lu: String,
    },
    Unmap {
        target: String,
        lun: u16,
        #[arg(long)]
        timeout: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Give INITIATOR access (replacing its entry if it has one).
    Add {
        target: String,
        initiator: String,
        /// VISIBLE=LUN: the initiator sees target LUN at VISIBLE (repeatable).
        #[arg(long = "map", value_parser = parse_map, required = true)]
        map: Vec<(u16, u16)>,
    },
    /// Take INITIATOR's access away (its sessions are asked to log out).
    Remove { target: String, initiator: String },
}

#[derive(Debug, Subcommand)]
pub enum TapeCmd {
    /// Load CARTRIDGE (created with the LU's size when missing), or the last one.
    Load {
        lu: String,
        cartridge: Option<String>,
    },
    /// Unload the cartridge: the drive answers NOT READY, MEDIUM NOT PRESENT.
    Unload { lu: String },
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Ask a session (or every session of an initiator) to log out.
    Logout {
        #[arg(long)]
        tsih: Option<u16>,
        #[arg(long)]
        initiator: Option<String>,
    },
}

fn parse_map(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not VISIBLE=LUN"))?;
    Ok((
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a LUN"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a LUN"))?,
    ))
}

impl CtlCmd {
    fn request(self) -> Request {
        match self {
            CtlCmd::Status => Request::Status,
            CtlCmd::List { .. } => Request::List,
            CtlCmd::Lu(LuCmd::Add {
                target,
                lun,
                name,
                backstore,
                path,
                size,
                block_size,
                thin,
                read_only,
            }) => Request::LuAdd {
                target,
                lun,
                spec: LuSpec {
                    name,
                    backstore,
                    path,
                    size,
                    block_size,
                    thin,
                    read_only,
                },
            },
            CtlCmd::Lu(LuCmd::Remove { lu, timeout }) => Request::LuRemove {
                lu,
                timeout_secs: timeout,
            },
            CtlCmd::Lu(LuCmd::Resize { lu, size }) => Request::LuResize { lu, size },
            CtlCmd::Lun(LunCmd::Map { target, lun, lu }) => Request::LunMap { target, lun, lu },
            CtlCmd::Lun(LunCmd::Unmap {
                target,
                lun,
                timeout,
            }) => Request::LunUnmap {
                target,
                lun,
                timeout_secs: timeout,
            },
            CtlCmd::Acl(AclCmd::Add {
                target,
                initiator,
                map,
            }) => Request::AclAdd {
                target,
                initiator,
                map,
            },
            CtlCmd::Acl(AclCmd::Remove { target, initiator }) => {
                Request::AclRemove { target, initiator }
            }
            CtlCmd::Session(SessionCmd::Logout { tsih, initiator }) => {
                Request::SessionLogout { tsih, initiator }
            }
            CtlCmd::Tape(TapeCmd::Load { lu, cartridge }) => Request::TapeLoad { lu, cartridge },
            CtlCmd::Tape(TapeCmd::Unload { lu }) => Request::TapeUnload { lu },
            CtlCmd::Reload => Request::Reload,
            CtlCmd::Save { path } => Request::Save { path },
        }
    }
}

/// Sends one request and reads its answer.
pub fn call(socket: &std::path::Path, request: Request) -> std::io::Result<Answer> {
    let mut s = UnixStream::connect(socket)?;
    // Removal waits for draining; reload may bind portals.
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut line = serde_json::to_vec(&Envelope {
        version: VERSION,
        request,
    })?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an answer: {e}"),
        )
    })
}

/// Runs `oxtgt ctl`: exit 0 when done, 1 when the daemon refused (every error
/// printed), 2 when it could not be reached, 3 when a removed LU still had
/// commands running at the end of the wait.
pub fn run(args: CtlArgs) -> std::process::ExitCode {
    let json = args.json;
    let socket = args.socket.clone();
    let what = match &args.command {
        CtlCmd::List { what } => what.clone(),
        _ => None,
    };
    let answer = match call(&socket, args.command.request()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "oxtgt ctl: cannot reach the daemon at {}: {e} (is admin_socket set in its config?)",
                socket.display()
            );
            return std::process::ExitCode::from(2);
        }
    };
    if !answer.ok {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
        } else {
            for e in &answer.errors {
                eprintln!("error: {e}");
            }
        }
        return std::process::ExitCode::from(1);
    }
    let result = answer.result.unwrap_or(Value::Null);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        print_human(&result, what.as_deref());
    }
    let undrained = result["removed"]
        .as_array()
        .is_some_and(|r| r.iter().any(undrained));
    if undrained {
        return std::process::ExitCode::from(3);
    }
    std::process::ExitCode::SUCCESS
}

/// A removed LU that still had commands or copies running when the wait ended.
fn undrained(d: &Value) -> bool {
    d["commands_running"].as_u64() > Some(0) || d["copies_running"].as_u64() > Some(0)
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return s(v);
    };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

fn table(title: &str, head: &[&str], rows: Vec<Vec<String>>) {
    println!("{title}");
    if rows.is_empty() {
        println!("  (none)\n");
        return;
    }
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            out.push(' ');
            out.push_str(c);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w[i] - c.chars().count() + 1));
            }
        }
        println!("{out}");
    };
    line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
    println!();
}

fn print_human(r: &Value, only: Option<&str>) {
    if let (Some(lu), Some(c)) = (r.get("lu"), r.get("cartridge")) {
        match c.as_str() {
            Some(c) => println!("{}: cartridge {c} loaded", s(lu)),
            None => println!("{}: no cartridge", s(lu)),
        }
        return;
    }
    if r.get("pid").is_some() {
        println!(
            "oxtgt {} (pid {}), up {} s, config {}",
            s(&r["version"]),
            s(&r["pid"]),
            s(&r["uptime_secs"]),
            s(&r["config"])
        );
        println!("portals: {}", s(&r["portals"]));
        println!(
            "{} targets, {} LUs, {} sessions, {} copies running, {} live tokens",
            s(&r["targets"]),
            s(&r["lus"]),
            s(&r["sessions"]),
            s(&r["copies_running"]),
            s(&r["tokens_live"])
        );
        return;
    }
    if r.get("targets").is_some_and(Value::is_array) {
        let want = |k: &str| only.is_none_or(|o| o == k);
        let arr = |k: &str| r[k].as_array().cloned().unwrap_or_default();
        if want("portals") {
            println!("portals: {}\n", s(&r["portals"]));
        }
        if want("targets") {
            let rows = arr("targets")
                .iter()
                .map(|t| {
                    let luns = t["luns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| format!("{}:{}", s(&l["lun"]), s(&l["lu"])))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let acls = if t["open_access"].as_bool() == Some(true) {
                        "open".into()
                    } else {
                        t["acls"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| s(&a["initiator"]))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    vec![s(&t["name"]), luns, acls]
                })
                .collect();
            table("TARGETS", &["name", "luns (lun:lu)", "access"], rows);
        }
        if want("lus") {
            let rows = arr("lus")
                .iter()
                .map(|l| {
                    vec![
                        s(&l["name"]),
                        s(&l["backstore"]),
                        bytes(&l["size_bytes"]),
                        bytes(&l["allocated_bytes"]),
                        s(&l["block_size"]),
                        if l["thin"].as_bool() == Some(true) {
                            "thin"
                        } else {
                            "thick"
                        }
                        .into(),
                        s(&l["sessions"]),
                        s(&l["path"]),
                    ]
                })
                .collect();
            table(
                "LUS",
                &[
                    "name", "store", "size", "used", "block", "prov", "sessions", "path",
                ],
                rows,
            );
        }
        if want("sessions") {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let rows = arr("sessions")
                .iter()
                .map(|x| {
                    vec![
                        s(&x["tsih"]),
                        s(&x["initiator"]),
                        s(&x["address"]),
                        s(&x["target"]),
                        format!(
                            "{} s",
                            now.saturating_sub(x["since"].as_u64().unwrap_or(now))
                        ),
                        s(&x["commands"]),
                        bytes(&x["read_bytes"]),
                        bytes(&x["write_bytes"]),
                    ]
                })
                .collect();
            table(
                "SESSIONS",
                &[
                    "tsih",
                    "initiator",
                    "address",
                    "target",
                    "for",
                    "commands",
                    "read",
                    "written",
                ],
                rows,
            );
        }
        if want("copies") {
            let rows = arr("copies")
                .iter()
                .map(|c| {
                    let total = c["total_bytes"].as_u64().unwrap_or(0);
                    let done = c["bytes"].as_u64().unwrap_or(0);
                    let progress = if total > 0 {
                        format!("{:.0}%", done as f64 * 100.0 / total as f64)
                    } else {
                        "-".into()
                    };
                    vec![
                        s(&c["lu"]),
                        s(&c["list_id"]),
                        s(&c["op"]),
                        s(&c["state"]),
                        bytes(&c["bytes"]),
                        progress,
                    ]
                })
                .collect();
            table(
                "COPIES",
                &["lu", "list id", "op", "state", "moved", "progress"],
                rows,
            );
        }
        if want("tokens") {
            let rows = arr("tokens")
                .iter()
                .map(|t| {
                    vec![
                        s(&t["source"]),
                        bytes(&t["bytes"]),
                        format!("{} s", s(&t["idle_secs"])),
                        format!("{} s", s(&t["inactivity_timeout_secs"])),
                        s(&t["in_use"]),
                    ]
                })
                .collect();
            table(
                "TOKENS",
                &["source", "represents", "idle", "timeout", "in use"],
                rows,
            );
        }
        return;
    }
    // A change: what it did.
    if let Some(p) = r.get("path") {
        println!("saved to {}", s(p));
        return;
    }
    if let Some(n) = r.get("sessions") {
        println!("asked {} session(s) to log out", s(n));
        return;
    }
    println!(
        "applied: {} LUs served ({} unchanged)",
        s(&r["lus"]),
        s(&r["reused"])
    );
    for (name, blocks) in r["resized"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| Some((x.get(0)?, x.get(1)?)))
    {
        println!("resized {}: {} blocks", s(name), s(blocks));
    }
    for d in r["removed"].as_array().into_iter().flatten() {
        if undrained(d) {
            println!(
                "removed {}: after {} ms {} command(s) and {} copy(ies) still running on it; it is closed when they end",
                s(&d["lu"]),
                s(&d["waited_ms"]),
                s(&d["commands_running"]),
                s(&d["copies_running"])
            );
        } else {
            println!(
                "removed {} (drained in {} ms)",
                s(&d["lu"]),
                s(&d["waited_ms"])
            );
        }
    }
    for p in r["portals_started"].as_array().into_iter().flatten() {
        println!("listening on {}", s(p));
    }
    for p in r["portals_stopped"].as_array().into_iter().flatten() {
        println!("stopped listening on {}", s(p));
    }
    if let Some(n) = r["sessions_logged_out"].as_u64().filter(|n| *n > 0) {
        println!("{n} session(s) lost access and were asked to log out");
    }
    for w in r["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", s(w));
    }
}
