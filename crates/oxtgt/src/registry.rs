//! Runtime objects built from the config: targets, their logical units, ACLs, and the
//! table of live sessions (for reinstatement and shutdown).
//!
//! Every LUN lookup goes through [`Target::lun_map`], which applies the initiator's
//! ACL; nothing resolves an LU by any other route. The copy manager's CSCD
//! resolution ([`AclResolver`]) is the union of those maps over every target.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use backstore::{Backstore, FileBackstore, RamBackstore};
use iscsi::chap::ChapPolicy;
use iscsi::login::{LoginPolicy, LoginStatus, SessionType};
use iscsi::session::login::SessionTable;
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
    /// CHAP for each initiator: its ACL entry's, else the target's.
    chap: HashMap<String, ChapPolicy>,
    chap_default: Option<ChapPolicy>,
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

    /// What `initiator` must prove with CHAP to log in here, if anything.
    pub fn chap_for(&self, initiator: &str) -> Option<&ChapPolicy> {
        self.chap.get(initiator).or(self.chap_default.as_ref())
    }
}

/// Identifies a session for reinstatement (RFC 7143 §6.3.5): initiator name, ISID
/// and target.
pub type SessionKey = (String, [u8; 6], String);

/// How a login ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Ok = 0,
    Authentication = 1,
    Authorization = 2,
    NotFound = 3,
    Timeout = 4,
    Other = 5,
}

impl LoginResult {
    pub const ALL: [LoginResult; 6] = [
        LoginResult::Ok,
        LoginResult::Authentication,
        LoginResult::Authorization,
        LoginResult::NotFound,
        LoginResult::Timeout,
        LoginResult::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::Authentication => "authentication_failed",
            LoginResult::Authorization => "not_authorized",
            LoginResult::NotFound => "target_not_found",
            LoginResult::Timeout => "timeout",
            LoginResult::Other => "other",
        }
    }
}

/// Logins by how they ended.
#[derive(Debug, Default)]
pub struct LoginCounters(pub [AtomicU64; 6]);

impl LoginCounters {
    pub fn count(&self, r: LoginResult) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What a session did, counted as its commands are answered.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub commands: AtomicU64,
    /// Data bytes read by commands that completed GOOD.
    pub read_bytes: AtomicU64,
    /// Data bytes written by commands that completed GOOD.
    pub write_bytes: AtomicU64,
}

/// A live session as the registry sees it.
pub struct SessionEntry {
    pub tsih: u16,
    /// The initiator's address.
    pub peer: Option<std::net::SocketAddr>,
    /// When login completed.
    pub since: std::time::SystemTime,
    pub stats: Arc<SessionStats>,
    /// Set to true to ask the initiator to log out (async message), ending the
    /// session if it does not within its grace time.
    pub logout: watch::Sender<bool>,
    /// Set to true to ask the session to end.
    pub stop: watch::Sender<bool>,
    /// Becomes true when the session has ended.
    pub ended: watch::Receiver<bool>,
}

/// What EXTENDED COPY designators resolve against: the LUs the initiator of a nexus
/// may access, through its ACL entry (or open access) on each target of the server.
#[derive(Debug)]
pub struct AclResolver {
    model: Arc<RwLock<Arc<Model>>>,
}

impl copy::Resolver for AclResolver {
    fn accessible(&self, nexus: &scsi::Nexus) -> Vec<Arc<LogicalUnit>> {
        let model = self.model.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out: Vec<Arc<LogicalUnit>> = Vec::new();
        for t in &model.targets {
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

/// The targets and LUs being served: built from a config, replaced whole on reload.
/// Sessions notice a new model by its generation and re-read their LUN map.
#[derive(Debug)]
pub struct Model {
    /// Session settings (window, negotiation limits, timeouts) that new logins use;
    /// a running session keeps what it negotiated.
    pub server: Arc<ServerConfig>,
    pub targets: Vec<Arc<Target>>,
    /// Every LU by name, with the definition it was built from (so a reload reuses
    /// the LUs whose definition did not change).
    lus: HashMap<String, (LunConfig, Arc<LogicalUnit>)>,
}

pub struct Registry {
    model: Arc<RwLock<Arc<Model>>>,
    generation: AtomicU64,
    /// The server's copy manager (EXTENDED COPY, RECEIVE COPY RESULTS).
    pub copy: Arc<copy::Manager>,
    next_nexus: AtomicU64,
    next_tsih: AtomicU16,
    pub sessions: Mutex<HashMap<SessionKey, SessionEntry>>,
    /// Who may be in the login phase, and failure delays.
    pub guard: Arc<crate::guard::LoginGuard>,
    pub logins: LoginCounters,
    /// What each initiator name did since the daemon started (all its sessions).
    initiators: Mutex<HashMap<String, Arc<SessionStats>>>,
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
        BackstoreKind::Tape => anyhow::bail!("LU {}: a tape LU has no block backstore", l.lu),
        BackstoreKind::Rbd => open_rbd(l)?,
        BackstoreKind::Ram => {
            let ram = RamBackstore::new(l.size.unwrap_or(0));
            Arc::new(match l.memory_limit {
                Some(limit) => ram.with_memory_limit(limit),
                None => ram,
            })
        }
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

#[cfg(feature = "rbd")]
fn open_rbd(l: &LunConfig) -> anyhow::Result<Arc<dyn Backstore>> {
    let r = l.rbd.as_ref().context("rbd LU without an image")?;
    let cfg = rbd::RbdConfig {
        pool: r.pool.clone(),
        image: r.image.clone(),
        namespace: r.namespace.clone(),
        client_id: r.client_id.clone(),
        conf: r.ceph_conf.clone(),
        keyring: r.keyring.clone(),
    };
    let b = rbd::RbdBackstore::open(&cfg, l.read_only)
        .with_context(|| format!("LU {}: opening RBD image {}", l.lu, r.spec()))?;
    if b.size() < u64::from(l.block_size) {
        anyhow::bail!(
            "LU {}: RBD image {} is smaller than one block",
            l.lu,
            r.spec()
        );
    }
    tracing::info!(lu = %l.lu, image = %b.spec(), fsid = b.fsid(), object_size = b.object_size(), "RBD image open");
    Ok(Arc::new(b))
}

#[cfg(not(feature = "rbd"))]
fn open_rbd(l: &LunConfig) -> anyhow::Result<Arc<dyn Backstore>> {
    anyhow::bail!(
        "LU {}: this oxtgt was built without Ceph RBD support (cargo build --features rbd)",
        l.lu
    )
}

/// LU identities remembered in the state directory (`identities.txt`, one line per
/// LU: key, NAA, serial), so an identity assigned once stays with the disk: a file or
/// block LU is keyed by its path, a RAM LU by its LU name. Renaming a target or
/// renumbering a LUN therefore leaves what initiators see (VPD 83h, 80h) unchanged.
#[derive(Debug, Default)]
struct Identities {
    path: Option<std::path::PathBuf>,
    known: BTreeMap<String, ([u8; 16], String)>,
    changed: bool,
}

impl Identities {
    fn load(dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(dir) = dir else {
            return Ok(Self::default());
        };
        let path = dir.join("identities.txt");
        let mut known = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let mut f = line.split('\t');
                    let (Some(key), Some(naa), Some(serial), None) =
                        (f.next(), f.next(), f.next(), f.next())
                    else {
                        anyhow::bail!("{}:{}: not KEY<TAB>NAA<TAB>SERIAL", path.display(), n + 1);
                    };
                    let naa = parse_naa_hex(naa)
                        .with_context(|| format!("{}:{}: NAA {naa:?}", path.display(), n + 1))?;
                    known.insert(key.to_owned(), (naa, serial.to_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        Ok(Self {
            path: Some(path),
            known,
            changed: false,
        })
    }

    /// The identity `l` has: the configured one, else the one remembered for its
    /// key, else the derived one, remembered from now on.
    fn resolve(&mut self, l: &LunConfig) -> ([u8; 16], String) {
        if self.path.is_none() || l.identity_configured {
            return (l.naa, l.serial.clone());
        }
        let key = match (&l.path, &l.rbd) {
            (Some(p), _) => format!("path:{}", p.display()),
            (None, Some(r)) => format!("rbd:{}", r.spec()),
            (None, None) => format!("lu:{}", l.lu),
        };
        if let Some(id) = self.known.get(&key) {
            return id.clone();
        }
        self.known.insert(key, (l.naa, l.serial.clone()));
        self.changed = true;
        (l.naa, l.serial.clone())
    }

    /// Writes the file when something new was remembered (temp file, fsync, rename).
    fn save(&self) -> anyhow::Result<()> {
        let (Some(path), true) = (&self.path, self.changed) else {
            return Ok(());
        };
        let mut text = String::new();
        for (key, (naa, serial)) in &self.known {
            text.push_str(&format!("{key}\t{}\t{serial}\n", hex(naa)));
        }
        let store = FilePrStore { path: path.clone() };
        scsi::pr::PrStore::save(&store, &text)
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn parse_naa_hex(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An LU whose size changed in a new config: (name, LU, new size in bytes).
type Resize = (String, Arc<LogicalUnit>, u64);

/// What applying a config did.
#[derive(Debug, Default)]
pub struct Applied {
    /// LUs served now, and how many of them were kept from before.
    pub lus: usize,
    pub reused: usize,
    /// LUs no longer served (callers drain and flush them).
    pub removed: Vec<(String, Arc<LogicalUnit>)>,
    /// LUs that grew: (name, blocks now).
    pub resized: Vec<(String, u64)>,
}

impl Model {
    /// Builds the targets and LUs of `cfg`, reusing `old`'s LU objects whose name and
    /// definition are unchanged. An LU whose definition changed while it exists is
    /// refused: two objects over one backing store would not share range locks.
    fn build(cfg: &Config, old: Option<&Model>) -> anyhow::Result<(Self, Vec<Resize>)> {
        let mut targets = Vec::new();
        let mut resizes = Vec::new();
        // LUs by name: a LU mapped into several targets is one LogicalUnit.
        let mut lus: HashMap<String, (LunConfig, Arc<LogicalUnit>)> = HashMap::new();
        let mut identities = Identities::load(cfg.server.state_dir.as_deref())?;
        let mut seen_naa: HashMap<[u8; 16], String> = HashMap::new();
        for t in &cfg.targets {
            let mut luns = BTreeMap::new();
            for l in &t.luns {
                if let Some((_, lu)) = lus.get(&l.lu) {
                    luns.insert(l.id, lu.clone());
                    continue;
                }
                let def = LunConfig { id: 0, ..l.clone() };
                if let Some((was, lu)) = old.and_then(|o| o.lus.get(&l.lu)) {
                    if *was != def {
                        let only_size = LunConfig {
                            size: def.size,
                            ..was.clone()
                        } == def;
                        if !only_size {
                            anyhow::bail!(
                                "LU {} is served and its definition changed; remove it first, or restart",
                                l.lu
                            );
                        }
                        if def.backstore == BackstoreKind::Tape {
                            anyhow::bail!(
                                "LU {}: a tape LU's size is the capacity of cartridges it creates; restart to change it",
                                l.lu
                            );
                        }
                        if def.backstore == BackstoreKind::Ram {
                            anyhow::bail!(
                                "LU {}: RAM LUs cannot be resized while served (file and block LUs can)",
                                l.lu
                            );
                        }
                        resizes.push((l.lu.clone(), lu.clone(), def.size.unwrap_or(0)));
                    }
                    seen_naa.insert(lu.identity().naa, l.lu.clone());
                    lus.insert(l.lu.clone(), (def, lu.clone()));
                    luns.insert(l.id, lu.clone());
                    continue;
                }
                let (naa, serial) = identities.resolve(l);
                if let Some(other) = seen_naa.insert(naa, l.lu.clone()) {
                    anyhow::bail!(
                        "LU {} and LU {other} have the same NAA {} (identities.txt in the state directory)",
                        l.lu,
                        hex(&naa)
                    );
                }
                let lu = build_lu(cfg, l, naa, serial)?.shared();
                lus.insert(l.lu.clone(), (def, lu.clone()));
                luns.insert(l.id, lu);
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
                chap: t
                    .acls
                    .iter()
                    .filter_map(|a| a.chap.as_ref().map(|c| (a.initiator.clone(), c.policy())))
                    .collect(),
                chap_default: t.chap.as_ref().map(|c| c.policy()),
            }));
        }
        identities.save()?;
        Ok((
            Self {
                server: Arc::new(cfg.server.clone()),
                targets,
                lus,
            },
            resizes,
        ))
    }

    /// Every LU by name.
    pub fn lus(&self) -> impl Iterator<Item = (&String, &LunConfig, &Arc<LogicalUnit>)> {
        self.lus.iter().map(|(n, (c, lu))| (n, c, lu))
    }
}

/// The cartridge a tape LU loads when its config names none.
pub const DEFAULT_CARTRIDGE: &str = "TAPE0001";

/// One LU of `cfg` with its identity, backstore and reservation store.
fn build_lu(
    cfg: &Config,
    l: &LunConfig,
    naa: [u8; 16],
    serial: String,
) -> anyhow::Result<LogicalUnit> {
    let identity = LuIdentity {
        vendor: l.vendor.clone(),
        product: l.product.clone(),
        revision: env!("CARGO_PKG_VERSION")
            .chars()
            .filter(|c| *c != '.')
            .take(4)
            .collect(),
        serial,
        naa,
    };
    let mut lu = if l.backstore == BackstoreKind::Tape {
        let dir = l.path.as_deref().context("tape LU without a path")?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("LU {}: creating {}", l.lu, dir.display()))?;
        let name = l.cartridge.as_deref().unwrap_or(DEFAULT_CARTRIDGE);
        let tape = scsi::ssc::Tape::open(dir, name, l.size.unwrap_or(0)).with_context(|| {
            format!(
                "LU {}: loading cartridge {name} from {}",
                l.lu,
                dir.display()
            )
        })?;
        LogicalUnit::new_tape(identity, tape, l.read_only)
    } else {
        let store = open_backstore(l)?;
        LogicalUnit::new(identity, store, l.block_size, l.read_only)
            .with_thin(l.thin)
            .with_removable(l.removable)
            .with_physical_block_size(l.physical_block_size)
    };
    if let Some(dir) = &cfg.server.state_dir {
        let path = dir.join(format!("pr-{}.txt", hex(&naa)));
        lu = lu
            .with_pr_store(Box::new(FilePrStore { path: path.clone() }))
            .map_err(|e| anyhow::anyhow!("LU {}: reservations in {}: {e}", l.lu, path.display()))?;
    }
    Ok(lu)
}

impl Registry {
    pub fn build(cfg: &Config) -> anyhow::Result<Self> {
        let model = Arc::new(RwLock::new(Arc::new(Model::build(cfg, None)?.0)));
        let copy = Arc::new(copy::Manager::with_thread_start(
            Arc::new(AclResolver {
                model: model.clone(),
            }),
            cfg.server.rod_tokens,
            crate::exec::lower_priority,
        ));
        Ok(Self {
            copy,
            model,
            generation: AtomicU64::new(1),
            next_nexus: AtomicU64::new(1),
            next_tsih: AtomicU16::new(1),
            sessions: Mutex::new(HashMap::new()),
            guard: Arc::new(crate::guard::LoginGuard::default()),
            logins: LoginCounters::default(),
            initiators: Mutex::new(HashMap::new()),
        })
    }

    /// The counters of `initiator` (made at its first login).
    pub fn initiator_stats(&self, initiator: &str) -> Arc<SessionStats> {
        self.initiators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(initiator.to_owned())
            .or_default()
            .clone()
    }

    /// Every initiator that logged in, with its counters.
    pub fn initiators(&self) -> Vec<(String, Arc<SessionStats>)> {
        self.initiators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The model being served now.
    pub fn model(&self) -> Arc<Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server settings new sessions use now.
    pub fn server(&self) -> Arc<ServerConfig> {
        self.model().server.clone()
    }

    /// Changes whenever the model is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Builds the targets and LUs of `cfg` (reusing the LUs whose definition is
    /// unchanged) and serves them from now on; sessions pick up their new LUN map at
    /// their next request. The server settings (negotiation limits, queue depth,
    /// timeouts) apply to logins from now on; running sessions keep what they
    /// negotiated. Portals are the caller's (`main`). `state_dir` cannot change
    /// while running: reservations and identities live there. Nothing changes on
    /// error. Returns (LUs, of which reused).
    pub fn reload(&self, cfg: &Config) -> anyhow::Result<Applied> {
        let old = self.model();
        if cfg.server.state_dir != old.server.state_dir {
            anyhow::bail!(
                "server.state_dir changed ({:?} → {:?}); it holds reservations and LU identities, so changing it needs a restart",
                old.server.state_dir,
                cfg.server.state_dir
            );
        }
        let (new, resizes) = Model::build(cfg, Some(&old))?;
        // Growing happens before the new model is served; a failure changes
        // nothing else (an LU that grew before it stays grown, which loses nothing).
        let mut resized = Vec::new();
        for (name, lu, bytes) in resizes {
            let blocks = lu
                .resize(bytes)
                .with_context(|| format!("resizing LU {name} to {bytes} bytes"))?;
            resized.push((name, blocks));
        }
        let removed: Vec<(String, Arc<LogicalUnit>)> = old
            .lus
            .iter()
            .filter(|(_, (_, o))| !new.lus.values().any(|(_, n)| Arc::ptr_eq(o, n)))
            .map(|(name, (_, lu))| (name.clone(), lu.clone()))
            .collect();
        let reused = new
            .lus
            .values()
            .filter(|(_, lu)| old.lus.values().any(|(_, o)| Arc::ptr_eq(o, lu)))
            .count();
        let total = new.lus.len();
        self.copy.tokens.set_limits(cfg.server.rod_tokens);
        let served: Vec<Arc<LogicalUnit>> = new.lus.values().map(|(_, lu)| lu.clone()).collect();
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        // Tokens of LUs no longer served let go of them (TOKEN REVOKED).
        self.copy
            .tokens
            .revoke_unless(|lu| served.iter().any(|s| Arc::ptr_eq(s, lu)));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(Applied {
            lus: total,
            reused,
            removed,
            resized,
        })
    }

    pub fn target(&self, name: &str) -> Option<Arc<Target>> {
        self.model()
            .targets
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    /// Targets `initiator` may discover (SendTargets).
    pub fn visible_targets(&self, initiator: &str) -> Vec<Arc<Target>> {
        self.model()
            .targets
            .iter()
            .filter(|t| t.lun_map(initiator).is_some())
            .cloned()
            .collect()
    }

    pub fn new_nexus_id(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// A TSIH not in use by a running session (never 0).
    pub fn new_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 && !self.tsih_in_use(t) {
                return t;
            }
        }
    }

    pub fn tsih_in_use(&self, tsih: u16) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|s| s.tsih == tsih)
    }

    /// Flushes every LU's backstore (shutdown).
    pub fn flush_all(&self) {
        for (name, (_, lu)) in &self.model().lus {
            if let Err(e) = lu.flush() {
                tracing::error!(lu = %name, error = %e, "flush at shutdown failed");
            }
        }
    }
}

impl SessionTable for Registry {
    fn tsih_in_use(&self, tsih: u16) -> bool {
        Registry::tsih_in_use(self, tsih)
    }
    fn new_tsih(&self) -> u16 {
        Registry::new_tsih(self)
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
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|(i, _, _)| i == initiator)
            .count();
        if sessions >= self.server().max_sessions_per_initiator as usize {
            tracing::warn!(
                initiator,
                sessions,
                "login refused: too many sessions for this initiator"
            );
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        Ok(t.alias.clone())
    }

    fn chap(
        &self,
        initiator: &str,
        session_type: SessionType,
        target: Option<&str>,
    ) -> Option<ChapPolicy> {
        match session_type {
            SessionType::Discovery => self.server().discovery_chap.as_ref().map(|c| c.policy()),
            SessionType::Normal => self
                .target(target?)
                .and_then(|t| t.chap_for(initiator).cloned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "oxtgt-registry-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn config(dir: &std::path::Path, target: &str, lun: u16) -> Config {
        let src = format!(
            r#"
[server]
state_dir = "{d}"
[[target]]
name = "{target}"
open_access = true
[[target.lun]]
id = {lun}
backstore = "file"
path = "{d}/disk.img"
size = "1MiB"
"#,
            d = dir.display()
        );
        Config::parse("t.toml", &src).unwrap()
    }

    fn naa_of(r: &Registry) -> [u8; 16] {
        r.model().targets[0].luns().next().unwrap().identity().naa
    }

    #[test]
    fn a_disk_keeps_its_identity_when_its_target_is_renamed_and_its_lun_renumbered() {
        let dir = tmpdir("identity");
        let first = Registry::build(&config(&dir, "iqn.2026-11.org.oxtgt:old", 0)).unwrap();
        let naa = naa_of(&first);
        drop(first);
        let renamed = Registry::build(&config(&dir, "iqn.2026-11.org.oxtgt:new", 7)).unwrap();
        assert_eq!(naa_of(&renamed), naa, "remembered in identities.txt");
        // Without the state directory the identity would have been derived anew.
        assert_ne!(derive_naa_for_test("iqn.2026-11.org.oxtgt:new", 7), naa);
        let text = std::fs::read_to_string(dir.join("identities.txt")).unwrap();
        assert!(
            text.starts_with(&format!("path:{}/disk.img\t", dir.display())),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn derive_naa_for_test(target: &str, lun: u16) -> [u8; 16] {
        crate::config::derive_naa(target, lun)
    }

    #[test]
    fn an_lu_mapped_into_two_targets_is_one_logical_unit() {
        let src = r#"
[[lu]]
name = "shared"
backstore = "ram"
size = "1MiB"
[[target]]
name = "iqn.2026-11.org.oxtgt:a"
open_access = true
[[target.lun]]
id = 0
lu = "shared"
[[target]]
name = "iqn.2026-11.org.oxtgt:b"
open_access = true
[[target.lun]]
id = 3
lu = "shared"
"#;
        let r = Registry::build(&Config::parse("s.toml", src).unwrap()).unwrap();
        let m = r.model();
        let a = m.targets[0].lun_map("iqn.x").unwrap();
        let b = m.targets[1].lun_map("iqn.x").unwrap();
        assert!(Arc::ptr_eq(&a[&0], &b[&3]));
        let resolver = AclResolver {
            model: r.model.clone(),
        };
        let nexus = scsi::testing::nexus(1);
        assert_eq!(copy::Resolver::accessible(&resolver, &nexus).len(), 1);
    }
}
