//! Configuration: TOML → validated, typed [`Config`].
//!
//! Unknown keys are errors. Every error names the file, the line and the key. The
//! embedded default (no `--config`) is [`DEFAULT_CONFIG`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

mod chap;
mod identity;
mod lu;
mod out;
mod raw;

pub use chap::ChapConfig;
use identity::parse_wwn;
pub use identity::{derive_lu_naa, derive_naa};
use lu::{validate_lu, LuFields, RbdKeys, Unique};
use raw::RawConfig;
use toml::Spanned;

/// What `oxtgt` runs with no arguments: one target on 127.0.0.1:3260 with two thin
/// 1 GiB RAM LUNs and open access.
pub const DEFAULT_CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:3260"]

[[target]]
name = "iqn.2026-11.org.oxtgt:default"
alias = "oxtgt default target"
open_access = true

[[target.lun]]
id = 0
backstore = "ram"
size = "1GiB"

[[target.lun]]
id = 1
backstore = "ram"
size = "1GiB"
"#;

/// A configuration error: where, which key, what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in one file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub queue_depth: u32,
    pub nop_interval_secs: u64,
    pub nop_timeout_secs: u64,
    /// A connection that has not completed login this long after it was accepted
    /// is closed.
    pub login_timeout_secs: u64,
    /// Bounds on live ROD tokens (POPULATE TOKEN).
    pub rod_tokens: copy::TokenLimits,
    /// CHAP that discovery sessions must pass.
    pub discovery_chap: Option<ChapConfig>,
    /// Login-phase bounds and authentication-failure delays.
    pub guard: crate::guard::GuardLimits,
    /// Sessions one initiator name may have at once (03/02 past it).
    pub max_sessions_per_initiator: u32,
    pub limits: iscsi::TargetLimits,
    pub log_format: LogFormat,
    /// Where persistent reservations made with APTPL are kept; without it APTPL is
    /// refused (PTPL_C 0).
    pub state_dir: Option<PathBuf>,
    /// The admin interface's Unix socket (`oxtgt ctl`); none when unset.
    pub admin_socket: Option<PathBuf>,
    /// Where Prometheus metrics are served over HTTP; off when unset.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackstoreKind {
    File,
    Block,
    Ram,
    /// A tape drive (`type = "tape"`): `path` is a directory of cartridge files.
    Tape,
    /// A Ceph RBD image ([`RbdImage`]).
    Rbd,
}

/// Where an RBD LU's image is and who opens it (`backstore = "rbd"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdImage {
    pub pool: String,
    pub image: String,
    pub namespace: Option<String>,
    /// Ceph client id (`admin` for `client.admin`); "admin" unless set.
    pub client_id: String,
    pub ceph_conf: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
}

impl RbdImage {
    /// `pool/[namespace/]image`.
    pub fn spec(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.pool, ns, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunConfig {
    pub id: u16,
    /// The LU's name: its `[[lu]]` name, or `<target>/lun<id>` for an LU defined
    /// inline. Two targets naming one LU share it (one state, one identity).
    pub lu: String,
    pub backstore: BackstoreKind,
    pub path: Option<PathBuf>,
    pub size: Option<u64>,
    pub block_size: u32,
    /// Reported physical block size (READ CAPACITY(16) LBPPBE); 4096 over 512-byte
    /// blocks is "512e".
    pub physical_block_size: u32,
    /// RAM LUs: most bytes of data pages; past it writes fail as a thin LU out of
    /// space (27h/07h).
    pub memory_limit: Option<u64>,
    pub read_only: bool,
    /// Thin provisioned (UNMAP, LBPME); RAM LUNs are by default.
    pub thin: bool,
    /// Removable medium (INQUIRY RMB): START STOP UNIT with LOEJ ejects and loads it.
    pub removable: bool,
    /// A tape LU: the cartridge loaded at start.
    pub cartridge: Option<String>,
    /// An RBD LU: its image.
    pub rbd: Option<RbdImage>,
    pub serial: String,
    pub naa: [u8; 16],
    /// `wwn` or `serial` was configured: the identity is the config's, never one
    /// remembered in the state directory.
    pub identity_configured: bool,
    pub vendor: String,
    pub product: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    pub initiator: String,
    /// Initiator-visible LUN → target LUN id.
    pub map: BTreeMap<u16, u16>,
    /// CHAP this initiator must pass (else the target's `chap`, if any).
    pub chap: Option<ChapConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    pub alias: Option<String>,
    pub open_access: bool,
    /// CHAP for every initiator without its own in an ACL entry.
    pub chap: Option<ChapConfig>,
    pub luns: Vec<LunConfig>,
    pub acls: Vec<AclConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub targets: Vec<TargetConfig>,
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        self.src[..span.start.min(self.src.len())]
            .matches('\n')
            .count()
            + 1
    }
    fn err(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: impl Into<String>) {
        let line = span.map(|s| self.line_of(s));
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        });
    }
}

/// Parses a size: an integer (bytes) or a string with a K/M/G/T(iB) suffix.
fn parse_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "K" | "KiB" => 1 << 10,
                "M" | "MiB" => 1 << 20,
                "G" | "GiB" => 1 << 30,
                "T" | "TiB" => 1 << 40,
                u => {
                    return Err(format!(
                        "unknown size unit {u:?} (use KiB, MiB, GiB or TiB)"
                    ))
                }
            };
            n.checked_mul(mult)
                .filter(|&b| b > 0)
                .ok_or_else(|| format!("{s:?} is not a usable size"))
        }
        _ => Err("size must be a positive integer of bytes or a string like \"10GiB\"".into()),
    }
}

impl Config {
    /// Loads and validates `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigErrors> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                key: "-".into(),
                message: e.to_string(),
            }])
        })?;
        Self::parse(&file, &src)
    }

    /// The built-in default.
    pub fn embedded_default() -> Self {
        Self::parse("<embedded default>", DEFAULT_CONFIG)
            .unwrap_or_else(|e| panic!("embedded default config is invalid: {e}"))
    }

    /// Parses and validates TOML `src`, reporting every error found.
    pub fn parse(file: &str, src: &str) -> Result<Self, ConfigErrors> {
        let mut cx = Ctx {
            file,
            src,
            errors: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                let key = e.message().split('`').nth(1).unwrap_or("-").to_owned();
                cx.err(e.span(), &key, e.message().to_owned());
                return Err(ConfigErrors(cx.errors));
            }
        };
        let cfg = Self::validate(&mut cx, raw);
        if cx.errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(cx.errors))
        }
    }

    fn validate(cx: &mut Ctx<'_>, raw: RawConfig) -> Config {
        let s = raw.server;
        let mut listen = Vec::new();
        match &s.listen {
            Some(l) => {
                for a in l.get_ref() {
                    match a.parse::<SocketAddr>() {
                        Ok(sa) => listen.push(sa),
                        Err(_) => cx.err(
                            Some(l.span()),
                            "server.listen",
                            format!("{a:?} is not ADDRESS:PORT"),
                        ),
                    }
                }
            }
            None => listen.push(SocketAddr::from(([127, 0, 0, 1], 3260))),
        }
        let mut limits = iscsi::TargetLimits::default();
        let ranged = |cx: &mut Ctx<'_>,
                      v: &Option<Spanned<u32>>,
                      key: &str,
                      lo: u32,
                      hi: u32,
                      slot: &mut u32| {
            if let Some(v) = v {
                if (lo..=hi).contains(v.get_ref()) {
                    *slot = *v.get_ref();
                } else {
                    cx.err(
                        Some(v.span()),
                        key,
                        format!("must be between {lo} and {hi}"),
                    );
                }
            }
        };
        ranged(
            cx,
            &s.max_recv_data_segment_length,
            "server.max_recv_data_segment_length",
            512,
            16_777_215,
            &mut limits.max_recv_data_segment_length,
        );
        ranged(
            cx,
            &s.max_burst_length,
            "server.max_burst_length",
            512,
            16_777_215,
            &mut limits.max_burst_length,
        );
        ranged(
            cx,
            &s.first_burst_length,
            "server.first_burst_length",
            512,
            16_777_215,
            &mut limits.first_burst_length,
        );
        ranged(
            cx,
            &s.max_outstanding_r2t,
            "server.max_outstanding_r2t",
            1,
            65535,
            &mut limits.max_outstanding_r2t,
        );
        let mut queue_depth = 128;
        ranged(
            cx,
            &s.queue_depth,
            "server.queue_depth",
            1,
            4096,
            &mut queue_depth,
        );
        let mut rod_tokens = copy::TokenLimits::default();
        let mut max_tokens = rod_tokens.max_tokens as u32;
        ranged(
            cx,
            &s.rod_tokens,
            "server.rod_tokens",
            1,
            65536,
            &mut max_tokens,
        );
        rod_tokens.max_tokens = max_tokens as usize;
        if let Some(v) = &s.rod_token_image_bytes {
            match parse_size(v.get_ref()) {
                Ok(n) => rod_tokens.max_image_bytes = n,
                Err(e) => cx.err(Some(v.span()), "server.rod_token_image_bytes", e),
            }
        }
        if let Some(v) = s.initial_r2t {
            limits.initial_r2t = v;
        }
        if let Some(v) = s.immediate_data {
            limits.immediate_data = v;
        }
        let log_format = match s
            .log_format
            .as_ref()
            .map(|v| (v.get_ref().as_str(), v.span()))
        {
            None | Some(("human", _)) => LogFormat::Human,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                cx.err(
                    Some(span),
                    "server.log_format",
                    format!("{other:?} is not \"human\" or \"json\""),
                );
                LogFormat::Human
            }
        };
        let login_timeout_secs = match &s.login_timeout_secs {
            None => 15,
            Some(v) if (1..=3600).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                cx.err(
                    Some(v.span()),
                    "server.login_timeout_secs",
                    format!("{} is not 1 to 3600 seconds", v.get_ref()),
                );
                15
            }
        };
        let mut guard = crate::guard::GuardLimits::default();
        let (mut max_logins, mut per_addr) =
            (guard.max_logins as u32, guard.max_logins_per_address as u32);
        ranged(
            cx,
            &s.max_logins,
            "server.max_logins",
            1,
            65536,
            &mut max_logins,
        );
        ranged(
            cx,
            &s.max_logins_per_address,
            "server.max_logins_per_address",
            1,
            65536,
            &mut per_addr,
        );
        let (mut delay, mut delay_max) = (
            guard.failure_delay.as_millis() as u32,
            guard.failure_delay_max.as_millis() as u32,
        );
        ranged(
            cx,
            &s.auth_failure_delay_ms,
            "server.auth_failure_delay_ms",
            0,
            60_000,
            &mut delay,
        );
        ranged(
            cx,
            &s.auth_failure_delay_max_ms,
            "server.auth_failure_delay_max_ms",
            0,
            600_000,
            &mut delay_max,
        );
        guard.max_logins = max_logins as usize;
        guard.max_logins_per_address = per_addr as usize;
        guard.failure_delay = std::time::Duration::from_millis(u64::from(delay));
        guard.failure_delay_max = std::time::Duration::from_millis(u64::from(delay_max));
        let mut max_sessions_per_initiator = 64;
        ranged(
            cx,
            &s.max_sessions_per_initiator,
            "server.max_sessions_per_initiator",
            1,
            65536,
            &mut max_sessions_per_initiator,
        );
        let discovery_chap = s
            .discovery_chap
            .as_ref()
            .and_then(|c| chap::validate(cx, c, "server.discovery_chap"));
        let admin_socket = match &s.admin_socket {
            Some(p) if p.get_ref().starts_with('/') => Some(PathBuf::from(p.get_ref())),
            Some(p) => {
                cx.err(
                    Some(p.span()),
                    "server.admin_socket",
                    format!("{:?} is not an absolute path", p.get_ref()),
                );
                None
            }
            None => None,
        };
        let metrics_listen = match &s.metrics_listen {
            Some(a) => match a.get_ref().parse::<SocketAddr>() {
                Ok(sa) => Some(sa),
                Err(_) => {
                    cx.err(
                        Some(a.span()),
                        "server.metrics_listen",
                        format!("{:?} is not ADDRESS:PORT", a.get_ref()),
                    );
                    None
                }
            },
            None => None,
        };
        let server = ServerConfig {
            admin_socket,
            metrics_listen,
            listen,
            queue_depth,
            nop_interval_secs: s.nop_interval_secs.unwrap_or(0),
            nop_timeout_secs: s.nop_timeout_secs.unwrap_or(30),
            login_timeout_secs,
            rod_tokens,
            discovery_chap,
            guard,
            max_sessions_per_initiator,
            limits,
            log_format,
            state_dir: s.state_dir.clone().map(PathBuf::from),
        };

        let mut uniq = Unique::default();
        let mut named: BTreeMap<String, LunConfig> = BTreeMap::new();
        for (i, l) in raw.lu.iter().enumerate() {
            let key = format!("lu[{i}]");
            let lu_name = l.name.get_ref().clone();
            let ok_name = !lu_name.is_empty()
                && lu_name.len() <= 64
                && lu_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok_name {
                cx.err(
                    Some(l.name.span()),
                    &format!("{key}.name"),
                    "must be 1-64 characters of letters, digits, '-', '_' or '.'",
                );
            }
            if named.contains_key(&lu_name) {
                cx.err(
                    Some(l.name.span()),
                    &format!("{key}.name"),
                    format!("LU {lu_name} is defined twice"),
                );
                continue;
            }
            let Some(backstore) =
                effective_backstore(cx, &key, &l.kind, &l.backstore, l.name.span())
            else {
                continue;
            };
            let fields = LuFields {
                backstore: &backstore,
                cartridge: &l.cartridge,
                path: &l.path,
                size: &l.size,
                block_size: &l.block_size,
                physical_block_size: &l.physical_block_size,
                memory_limit: &l.memory_limit,
                rbd: RbdKeys {
                    pool: &l.pool,
                    image: &l.image,
                    namespace: &l.namespace,
                    client_id: &l.client_id,
                    ceph_conf: &l.ceph_conf,
                    keyring: &l.keyring,
                },
                read_only: l.read_only,
                thin: l.thin,
                removable: l.removable,
                serial: &l.serial,
                wwn: &l.wwn,
                vendor: &l.vendor,
                product: &l.product,
                anchor: l.name.span(),
            };
            let def = validate_lu(
                cx,
                &key,
                &lu_name,
                &fields,
                derive_lu_naa(&lu_name),
                &mut uniq,
            );
            named.insert(lu_name, def);
        }
        let mut targets = Vec::new();
        let mut names = HashSet::new();
        for (ti, t) in raw.target.into_iter().enumerate() {
            let tkey = format!("target[{ti}]");
            let name = t.name.get_ref().clone();
            if let Err(e) = iscsi::name::validate(&name) {
                cx.err(Some(t.name.span()), &format!("{tkey}.name"), e.to_string());
            }
            if !names.insert(name.clone()) {
                cx.err(
                    Some(t.name.span()),
                    &format!("{tkey}.name"),
                    format!("target {name} is defined twice"),
                );
            }
            let mut luns = Vec::new();
            let mut ids = HashSet::new();
            for (li, l) in t.lun.into_iter().enumerate() {
                let key = format!("{tkey}.lun[{li}]");
                let id = *l.id.get_ref();
                if id > 16383 {
                    cx.err(
                        Some(l.id.span()),
                        &format!("{key}.id"),
                        "LUN ids go up to 16383",
                    );
                }
                if !ids.insert(id) {
                    cx.err(
                        Some(l.id.span()),
                        &format!("{key}.id"),
                        format!("LUN {id} is defined twice in {name}"),
                    );
                }
                let implied = match (&l.kind, &l.backstore) {
                    (Some(_), _) | (None, Some(_)) => {
                        let b = effective_backstore(cx, &key, &l.kind, &l.backstore, l.id.span());
                        if b.is_none() {
                            continue;
                        }
                        b
                    }
                    (None, None) => None,
                };
                let Some(backstore) = &implied else {
                    // A mapping of a named LU.
                    let Some(lu) = &l.lu else {
                        cx.err(
                            Some(l.id.span()),
                            &format!("{key}.backstore"),
                            "a LUN needs either lu = \"name\" or its own backstore",
                        );
                        continue;
                    };
                    if l.path.is_some() || l.size.is_some() || l.serial.is_some() || l.wwn.is_some()
                    {
                        cx.err(
                            Some(lu.span()),
                            &format!("{key}.lu"),
                            "a LUN that names an [[lu]] takes every setting from it",
                        );
                    }
                    match named.get(lu.get_ref()) {
                        Some(def) => luns.push(LunConfig { id, ..def.clone() }),
                        None => cx.err(
                            Some(lu.span()),
                            &format!("{key}.lu"),
                            format!("no [[lu]] is named {:?}", lu.get_ref()),
                        ),
                    }
                    continue;
                };
                if let Some(lu) = &l.lu {
                    cx.err(
                        Some(lu.span()),
                        &format!("{key}.lu"),
                        "a LUN names an [[lu]] or defines its own backstore, not both",
                    );
                }
                let fields = LuFields {
                    backstore,
                    cartridge: &l.cartridge,
                    path: &l.path,
                    size: &l.size,
                    block_size: &l.block_size,
                    physical_block_size: &l.physical_block_size,
                    memory_limit: &l.memory_limit,
                    rbd: RbdKeys {
                        pool: &l.pool,
                        image: &l.image,
                        namespace: &l.namespace,
                        client_id: &l.client_id,
                        ceph_conf: &l.ceph_conf,
                        keyring: &l.keyring,
                    },
                    read_only: l.read_only,
                    thin: l.thin,
                    removable: l.removable,
                    serial: &l.serial,
                    wwn: &l.wwn,
                    vendor: &l.vendor,
                    product: &l.product,
                    anchor: l.id.span(),
                };
                let lu_name = format!("{name}/lun{id}");
                let def = validate_lu(
                    cx,
                    &key,
                    &lu_name,
                    &fields,
                    derive_naa(&name, id),
                    &mut uniq,
                );
                luns.push(LunConfig { id, ..def });
            }
            let mut acls = Vec::new();
            for (ai, a) in t.acl.into_iter().enumerate() {
                let key = format!("{tkey}.acl[{ai}]");
                if let Err(e) = iscsi::name::validate(a.initiator.get_ref()) {
                    cx.err(
                        Some(a.initiator.span()),
                        &format!("{key}.initiator"),
                        e.to_string(),
                    );
                }
                let mut map = BTreeMap::new();
                if let Some(m) = &a.map {
                    for (visible, target_lun) in m.get_ref() {
                        match visible.parse::<u16>() {
                            Ok(v) if v <= 16383 => {
                                map.insert(v, *target_lun);
                            }
                            _ => cx.err(
                                Some(m.span()),
                                &format!("{key}.map"),
                                format!("{visible:?} is not a LUN number (0-16383)"),
                            ),
                        }
                    }
                }
                if let Some(l) = &a.luns {
                    for &n in l.get_ref() {
                        map.insert(n, n);
                    }
                }
                let span = a
                    .map
                    .as_ref()
                    .map(|m| m.span())
                    .or(a.luns.as_ref().map(|l| l.span()))
                    .unwrap_or(a.initiator.span());
                for tl in map.values() {
                    if !ids.contains(tl) {
                        cx.err(
                            Some(span.clone()),
                            &format!("{key}.map"),
                            format!("target {name} has no LUN {tl}"),
                        );
                    }
                }
                let chap = a
                    .chap
                    .as_ref()
                    .and_then(|c| chap::validate(cx, c, &format!("{key}.chap")));
                acls.push(AclConfig {
                    initiator: a.initiator.get_ref().clone(),
                    map,
                    chap,
                });
            }
            if t.open_access && !acls.is_empty() {
                cx.err(
                    Some(t.name.span()),
                    &format!("{tkey}.open_access"),
                    "open_access = true and acl entries exclude each other",
                );
            }
            let chap = t
                .chap
                .as_ref()
                .and_then(|c| chap::validate(cx, c, &format!("{tkey}.chap")));
            targets.push(TargetConfig {
                name,
                alias: t.alias,
                open_access: t.open_access,
                chap,
                luns,
                acls,
            });
        }
        if targets.is_empty() {
            cx.err(None, "target", "at least one [[target]] is required");
        }
        Config { server, targets }
    }
}

/// The backstore an LU definition names: `backstore = ...`, or `type = "tape"`
/// (cartridge files), which names its own. `None` after reporting an error, or
/// when neither is given (`anchor` points there).
fn effective_backstore(
    cx: &mut Ctx<'_>,
    key: &str,
    kind: &Option<Spanned<String>>,
    backstore: &Option<Spanned<String>>,
    anchor: std::ops::Range<usize>,
) -> Option<Spanned<String>> {
    match (
        kind.as_ref().map(|k| (k.get_ref().as_str(), k.span())),
        backstore,
    ) {
        (None | Some(("disk", _)), Some(b)) if b.get_ref() == "tape" => {
            cx.err(
                Some(b.span()),
                &format!("{key}.backstore"),
                "\"tape\" is not \"file\", \"block\" or \"ram\" (a tape drive is type = \"tape\")",
            );
            None
        }
        (None | Some(("disk", _)), Some(b)) => Some(b.clone()),
        (None | Some(("disk", _)), None) => {
            cx.err(
                Some(anchor),
                &format!("{key}.backstore"),
                "an LU needs a backstore (\"file\", \"block\", \"ram\" or \"rbd\") or type = \"tape\"",
            );
            None
        }
        (Some(("tape", span)), None) => Some(Spanned::new(span, "tape".to_owned())),
        (Some(("tape", _)), Some(b)) => {
            cx.err(
                Some(b.span()),
                &format!("{key}.backstore"),
                "a tape LU keeps its cartridges as files in `path`: leave backstore out",
            );
            None
        }
        (Some((other, span)), _) => {
            cx.err(
                Some(span),
                &format!("{key}.type"),
                format!("{other:?} is not \"disk\" or \"tape\""),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
