//! Runtime objects built from the config: targets, their logical units, ACLs, and the
//! table of live sessions (for reinstatement and shutdown).
//!
//! Every LUN lookup goes through [`Target::lun_map`], which applies the initiator's
//! ACL; nothing resolves an LU by any other route. The copy manager's CSCD
//! resolution ([`AclResolver`]) is the union of those maps over every target.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use backstore::{Backstore, FileBackstore, RamBackstore};
use iscsi::login::{LoginPolicy, LoginStatus, SessionType};
use scsi::{LogicalUnit, LuIdentity};
use tokio::sync::watch;

use crate::config::{BackstoreKind, Config, LunConfig, ServerConfig};

/// Who may see which LUs of a target.
#[derive(Debug)]
enum Access {
    Open,
    /// initiator name → (visible LUN → target LUN id)
    Acl(HashMap<String, BTreeMap<u16, u16>>),
}

#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub alias: Option<String>,
    pub tpgt: u16,
    luns: BTreeMap<u16, Arc<LogicalUnit>>,
    access: Access,
}

impl Target {
    /// The LUs `initiator` can reach through this target, by the LUN it sees them at;
    /// `None` if the initiator may not log in here at all.
    pub fn lun_map(&self, initiator: &str) -> Option<BTreeMap<u16, Arc<LogicalUnit>>> {
        match &self.access {
            Access::Open => Some(self.luns.clone()),
            Access::Acl(acl) => acl.get(initiator).map(|m| {
                m.iter()
                    .filter_map(|(&vis, id)| self.luns.get(id).map(|lu| (vis, lu.clone())))
                    .collect()
            }),
        }
    }

    pub fn luns(&self) -> impl Iterator<Item = &Arc<LogicalUnit>> {
        self.luns.values()
    }
}

/// Identifies a session for reinstatement (RFC 7143 §6.3.5): initiator name, ISID
/// and target.
pub type SessionKey = (String, [u8; 6], String);

/// A live session as the registry sees it.
pub struct SessionEntry {
    pub tsih: u16,
    /// Set to true to ask the session to end.
    pub stop: watch::Sender<bool>,
    /// Becomes true when the session has ended.
    pub ended: watch::Receiver<bool>,
}

/// What EXTENDED COPY designators resolve against: the LUs the initiator of a nexus
/// may access, through its ACL entry (or open access) on each target of the server.
#[derive(Debug)]
pub struct AclResolver {
    targets: Vec<Arc<Target>>,
}

impl copy::Resolver for AclResolver {
    fn accessible(&self, nexus: &scsi::Nexus) -> Vec<Arc<LogicalUnit>> {
        let mut out: Vec<Arc<LogicalUnit>> = Vec::new();
        for t in &self.targets {
            for lu in t
                .lun_map(&nexus.initiator)
                .into_iter()
                .flat_map(|m| m.into_values())
            {
                if !out.iter().any(|o| Arc::ptr_eq(o, &lu)) {
                    out.push(lu);
                }
            }
        }
        out
    }
}

pub struct Registry {
    pub server: ServerConfig,
    pub targets: Vec<Arc<Target>>,
    /// The server's copy manager (EXTENDED COPY, RECEIVE COPY RESULTS).
    pub copy: Arc<copy::Manager>,
    next_nexus: AtomicU64,
    next_tsih: AtomicU16,
    pub sessions: Mutex<HashMap<SessionKey, SessionEntry>>,
}

/// Lower-case hex, as state file names have always used.
fn hex(b: &[u8]) -> String {
    codec::hex(b).to_ascii_lowercase()
}

/// APTPL reservation state in a file: written to a temporary name, synced, renamed
/// over the old one and the directory synced, so a crash leaves the old or the new
/// state, never a torn one.
#[derive(Debug)]
struct FilePrStore {
    path: std::path::PathBuf,
}

impl scsi::pr::PrStore for FilePrStore {
    fn save(&self, state: &str) -> std::io::Result<()> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        if state.is_empty() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            let tmp = self.path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(state.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
        }
        std::fs::File::open(dir)?.sync_all()
    }

    fn load(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn open_backstore(l: &LunConfig) -> anyhow::Result<Arc<dyn Backstore>> {
    Ok(match l.backstore {
        BackstoreKind::Ram => Arc::new(RamBackstore::new(l.size.unwrap_or(0))),
        BackstoreKind::File | BackstoreKind::Block => {
            let path = l.path.as_deref().context("LUN without a path")?;
            let b = FileBackstore::open(path, l.read_only, l.size).with_context(|| {
                format!("opening LUN {} backing store {}", l.id, path.display())
            })?;
            if l.backstore == BackstoreKind::Block && b.kind() != "block" {
                anyhow::bail!(
                    "LUN {}: {} is not a block device (use backstore = \"file\")",
                    l.id,
                    path.display()
                );
            }
            if b.size() < u64::from(l.block_size) {
                anyhow::bail!("LUN {}: {} is smaller than one block", l.id, path.display());
            }
            Arc::new(b)
        }
    })
}

impl Registry {
    pub fn build(cfg: &Config) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        for t in &cfg.targets {
            let mut luns = BTreeMap::new();
            for l in &t.luns {
                let store = open_backstore(l)?;
                let identity = LuIdentity {
                    vendor: l.vendor.clone(),
                    product: l.product.clone(),
                    revision: env!("CARGO_PKG_VERSION")
                        .chars()
                        .filter(|c| *c != '.')
                        .take(4)
                        .collect(),
                    serial: l.serial.clone(),
                    naa: l.naa,
                };
                let mut lu = LogicalUnit::new(identity, store, l.block_size, l.read_only)
                    .with_thin(l.thin)
                    .with_physical_block_size(l.physical_block_size);
                if let Some(dir) = &cfg.server.state_dir {
                    let path = dir.join(format!("pr-{}.txt", hex(&l.naa)));
                    lu = lu
                        .with_pr_store(Box::new(FilePrStore { path: path.clone() }))
                        .map_err(|e| {
                            anyhow::anyhow!("LUN {}: reservations in {}: {e}", l.id, path.display())
                        })?;
                }
                luns.insert(l.id, Arc::new(lu));
            }
            let access = if t.open_access {
                Access::Open
            } else {
                Access::Acl(
                    t.acls
                        .iter()
                        .map(|a| (a.initiator.clone(), a.map.clone()))
                        .collect(),
                )
            };
            targets.push(Arc::new(Target {
                name: t.name.clone(),
                alias: t.alias.clone(),
                tpgt: 1,
                luns,
                access,
            }));
        }
        let copy = Arc::new(copy::Manager::new(Arc::new(AclResolver {
            targets: targets.clone(),
        })));
        Ok(Self {
            server: cfg.server.clone(),
            copy,
            targets,
            next_nexus: AtomicU64::new(1),
            next_tsih: AtomicU16::new(1),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Targets `initiator` may discover (SendTargets).
    pub fn visible_targets(&self, initiator: &str) -> Vec<&Arc<Target>> {
        self.targets
            .iter()
            .filter(|t| t.lun_map(initiator).is_some())
            .collect()
    }

    pub fn new_nexus_id(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// A TSIH not in use (never 0).
    pub fn new_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }

    /// Flushes every LU's backstore (shutdown).
    pub fn flush_all(&self) {
        for t in &self.targets {
            for lu in t.luns() {
                if let Err(e) = lu.flush() {
                    tracing::error!(target = %t.name, error = %e, "flush at shutdown failed");
                }
            }
        }
    }
}

impl LoginPolicy for Registry {
    fn admit(
        &self,
        initiator: &str,
        session_type: SessionType,
        target: Option<&str>,
    ) -> Result<Option<String>, LoginStatus> {
        if session_type == SessionType::Discovery {
            return Ok(None);
        }
        let name = target.ok_or(LoginStatus::MISSING_PARAMETER)?;
        let t = self.target(name).ok_or(LoginStatus::NOT_FOUND)?;
        if t.lun_map(initiator).is_none() {
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        Ok(t.alias.clone())
    }
}
