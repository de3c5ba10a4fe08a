//! Ceph RBD images as oxtgt backstores ([`RbdBackstore`]), through librbd's C API,
//! with copies between images of one cluster done by the OSDs (RADOS copy-from).
//!
//! I/O goes through librbd's aio calls, waited on by the daemon's blocking I/O
//! workers (never a network task). librbd's client cache is turned off on every
//! connection: a completed write is then on the OSDs, so FUA needs nothing extra,
//! SYNCHRONIZE CACHE is a cheap flush, and a copy-from (which the OSDs do on their
//! own) sees every write the gateway acknowledged.
//!
//! # Copies inside the cluster
//!
//! [`backstore::CopyOffload`] between two images of one cluster copies every whole
//! object of the range with copy-from (one round trip per object, no data through
//! this process) and only the unaligned edges through the gateway. Three things a
//! raw object copy must not get wrong, each handled here:
//!
//! - **Snapshots of the destination.** The write carries the destination image's
//!   snapshot context (read from its header with `rbd.get_snapcontext` before every
//!   batch), so an object that belongs to a snapshot is cloned before it is
//!   replaced; without it the snapshot would silently take the new data.
//! - **The object map.** With `object-map`, the exclusive-lock holder trusts its map:
//!   an object it believes absent reads as zeros without asking the OSD. Before each
//!   object is copied, one 512-byte write through librbd marks it present (the copy
//!   then replaces the whole object); a source object that does not exist is
//!   discarded through librbd, which marks it absent again.
//! - **Snapshots taken meanwhile.** The backstore registers a quiesce watch: a
//!   snapshot (from `rbd snap create` anywhere, or a ROD token here) waits until the
//!   copies in flight finish, and no copy starts until it is taken.
//!
//! Sources with a parent (clones not yet flattened) and images with fancy striping
//! are copied through the gateway: their objects do not hold the image's bytes one
//! to one.

mod ffi;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use backstore::{
    check_range, Backstore, CopyOffload, CopyReport, CopySource, Snapshot, ThinProvisioning,
};

/// Names of the snapshots that hold POPULATE TOKEN's points in time.
const TOKEN_SNAP_PREFIX: &str = "oxtgt.rod.";

/// Where an image is and who opens it: the `[[lu]]` fields of `backstore = "rbd"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RbdConfig {
    pub pool: String,
    pub image: String,
    /// RADOS namespace inside the pool (none: the default namespace).
    pub namespace: Option<String>,
    /// Ceph client id (`admin` for `client.admin`).
    pub client_id: String,
    /// ceph.conf to read (none: librados' default search).
    pub conf: Option<PathBuf>,
    /// Keyring (none: what the ceph.conf says).
    pub keyring: Option<PathBuf>,
}

impl RbdConfig {
    /// `pool/[namespace/]image`, as the `rbd` tool spells it.
    pub fn spec(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.pool, ns, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }
}

fn err(r: i64, what: &str) -> io::Error {
    let e = io::Error::from_raw_os_error((-r) as i32);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        Err(err(r.into(), what))
    } else {
        Ok(())
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// One connection to a cluster, shared by every image opened with the same
/// identity (conf, keyring, client id).
#[derive(Debug)]
struct Cluster {
    raw: ffi::rados_t,
    fsid: String,
}

// librados handles are thread-safe.
unsafe impl Send for Cluster {}
unsafe impl Sync for Cluster {}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle was connected by `connect` and nothing uses it now.
        unsafe { ffi::rados_shutdown(self.raw) }
    }
}

type ClusterKey = (Option<PathBuf>, Option<PathBuf>, String);

fn clusters() -> &'static Mutex<HashMap<ClusterKey, Weak<Cluster>>> {
    static CLUSTERS: std::sync::OnceLock<Mutex<HashMap<ClusterKey, Weak<Cluster>>>> =
        std::sync::OnceLock::new();
    CLUSTERS.get_or_init(Default::default)
}

impl Cluster {
    fn get(cfg: &RbdConfig) -> io::Result<Arc<Cluster>> {
        let key = (cfg.conf.clone(), cfg.keyring.clone(), cfg.client_id.clone());
        let mut map = clusters().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let c = Arc::new(Self::connect(cfg)?);
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&c));
        Ok(c)
    }

    fn connect(cfg: &RbdConfig) -> io::Result<Cluster> {
        let name = cstr(&format!("client.{}", cfg.client_id))?;
        let cluster_name = cstr("ceph")?;
        let mut raw: ffi::rados_t = ptr::null_mut();
        // SAFETY: out-pointer to a local; strings outlive the call.
        check(
            unsafe { ffi::rados_create2(&mut raw, cluster_name.as_ptr(), name.as_ptr(), 0) },
            "rados_create2",
        )?;
        // From here `c` owns the handle (shutdown on every error path).
        let mut c = Cluster {
            raw,
            fsid: String::new(),
        };
        let conf = match &cfg.conf {
            Some(p) => Some(cstr(&p.to_string_lossy())?),
            None => None,
        };
        // SAFETY: a created, unconnected handle; NULL asks for the default search.
        check(
            unsafe {
                ffi::rados_conf_read_file(raw, conf.as_ref().map_or(ptr::null(), |s| s.as_ptr()))
            },
            "reading the ceph.conf",
        )?;
        let set = |k: &str, v: &str| -> io::Result<()> {
            let (k, v) = (cstr(k)?, cstr(v)?);
            // SAFETY: as above.
            check(
                unsafe { ffi::rados_conf_set(raw, k.as_ptr(), v.as_ptr()) },
                &format!("setting {k:?}"),
            )
        };
        if let Some(k) = &cfg.keyring {
            set("keyring", &k.to_string_lossy())?;
        }
        // Acknowledged writes must be on the OSDs (FUA, copy-from): no client cache.
        set("rbd_cache", "false")?;
        // A partial discard must zero (LBPRZ), not be skipped.
        set("rbd_skip_partial_discard", "false")?;
        // A dead cluster fails the start and commands within 30 s, not hangs them.
        set("client_mount_timeout", "30")?;
        set("rados_osd_op_timeout", "30")?;
        set("rados_mon_op_timeout", "30")?;
        // SAFETY: configured handle.
        check(
            unsafe { ffi::rados_connect(raw) },
            "connecting to the cluster",
        )?;
        let mut buf = [0 as libc::c_char; 64];
        // SAFETY: buffer and its length.
        check(
            unsafe { ffi::rados_cluster_fsid(raw, buf.as_mut_ptr(), buf.len()) },
            "rados_cluster_fsid",
        )?;
        // SAFETY: rados wrote a NUL-terminated string into buf.
        c.fsid = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(c)
    }
}

/// A pool (and namespace) handle.
#[derive(Debug)]
struct IoCtx {
    raw: ffi::rados_ioctx_t,
    _cluster: Arc<Cluster>,
}

unsafe impl Send for IoCtx {}
unsafe impl Sync for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by `open`, used by nothing else now.
        unsafe { ffi::rados_ioctx_destroy(self.raw) }
    }
}

impl IoCtx {
    fn open(cluster: &Arc<Cluster>, pool: Result<&str, i64>, ns: Option<&str>) -> io::Result<Self> {
        let mut raw: ffi::rados_ioctx_t = ptr::null_mut();
        match pool {
            Ok(name) => {
                let n = cstr(name)?;
                // SAFETY: connected cluster, out-pointer to a local.
                check(
                    unsafe { ffi::rados_ioctx_create(cluster.raw, n.as_ptr(), &mut raw) },
                    &format!("opening pool {name}"),
                )?;
            }
            Err(id) => {
                // SAFETY: as above.
                check(
                    unsafe { ffi::rados_ioctx_create2(cluster.raw, id, &mut raw) },
                    &format!("opening pool #{id}"),
                )?;
            }
        }
        let io = IoCtx {
            raw,
            _cluster: cluster.clone(),
        };
        if let Some(ns) = ns {
            let n = cstr(ns)?;
            // SAFETY: valid ioctx and string.
            unsafe { ffi::rados_ioctx_set_namespace(io.raw, n.as_ptr()) };
        }
        Ok(io)
    }
}

/// An open image (closed on drop).
#[derive(Debug)]
struct Image {
    raw: ffi::rbd_image_t,
}

unsafe impl Send for Image {}
unsafe impl Sync for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open*, no I/O in flight (every call waits).
        unsafe { ffi::rbd_close(self.raw) };
    }
}

/// Runs one librbd aio call and waits for it: the return value (bytes for reads).
fn aio(what: &str, start: impl FnOnce(ffi::rbd_completion_t) -> libc::c_int) -> io::Result<i64> {
    let mut c: ffi::rbd_completion_t = ptr::null_mut();
    // SAFETY: no callback; out-pointer to a local.
    check(
        unsafe { ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut c) },
        "rbd_aio_create_completion",
    )?;
    let r = start(c);
    let v = if r < 0 {
        r as i64
    } else {
        // SAFETY: the completion was handed to librbd, which completes it.
        unsafe {
            ffi::rbd_aio_wait_for_complete(c);
            ffi::rbd_aio_get_return_value(c) as i64
        }
    };
    // SAFETY: completed (or never started); released once.
    unsafe { ffi::rbd_aio_release(c) };
    if v < 0 {
        // The bare errno, so the SCSI layer classifies it (ENOSPC/EDQUOT from a full
        // pool become SPACE ALLOCATION FAILED); the LU's error log names the command.
        let e = io::Error::from_raw_os_error((-v) as i32);
        tracing::debug!(op = what, error = %e, "librbd I/O failed");
        Err(e)
    } else {
        Ok(v)
    }
}

/// Copies in flight against snapshots being taken (the quiesce watch).
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    copies: usize,
    quiesced: bool,
    /// Quiesce threads that have yet to call `rbd_quiesce_complete` (the store's
    /// drop waits for them: they use the image handle).
    completing: usize,
}

impl Gate {
    fn enter(self: &Arc<Self>) -> GateGuard {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.quiesced {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.copies += 1;
        GateGuard(self.clone())
    }

    fn quiesce(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.quiesced = true;
        while s.copies > 0 {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until no quiesce thread is left to call into the image.
    fn wait_completions(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.completing > 0 {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn completion_started(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .completing += 1;
    }

    fn completion_done(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .completing -= 1;
        self.cv.notify_all();
    }

    fn unquiesce(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quiesced = false;
        self.cv.notify_all();
    }
}

struct GateGuard(Arc<Gate>);

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .copies -= 1;
        self.0.cv.notify_all();
    }
}

/// What the quiesce callbacks reach (boxed, freed after the unwatch).
struct Watch {
    gate: Arc<Gate>,
    image: usize,
    handle: AtomicU64,
}

unsafe extern "C" fn on_quiesce(arg: *mut libc::c_void) {
    // SAFETY: `arg` is the Box<Watch> leaked at registration, freed only after the
    // unwatch returns (no callback runs after it).
    let w = unsafe { &*(arg as *const Watch) };
    let gate = w.gate.clone();
    let image = w.image;
    let handle = w.handle.load(Ordering::Acquire);
    // Wait for the copies in flight off librbd's thread, then let the snapshot go.
    // The store's drop waits for `completion_done` before it closes the image.
    gate.completion_started();
    let complete = move || {
        gate.quiesce();
        // SAFETY: the image stays open until completion_done (drop waits for it).
        unsafe { ffi::rbd_quiesce_complete(image as ffi::rbd_image_t, handle, 0) };
        gate.completion_done();
    };
    // Builder::spawn consumes the closure even when it fails: keep it reachable so
    // that, without a thread, it runs here (blocking librbd's thread, but correct).
    let pending = Arc::new(Mutex::new(Some(complete)));
    let theirs = pending.clone();
    let spawned = std::thread::Builder::new()
        .name("rbd-quiesce".into())
        .spawn(move || {
            if let Some(f) = theirs.lock().unwrap_or_else(|p| p.into_inner()).take() {
                f();
            }
        });
    if spawned.is_err() {
        if let Some(f) = pending.lock().unwrap_or_else(|p| p.into_inner()).take() {
            f();
        }
    }
}

unsafe extern "C" fn on_unquiesce(arg: *mut libc::c_void) {
    // SAFETY: as in on_quiesce.
    let w = unsafe { &*(arg as *const Watch) };
    w.gate.unquiesce();
}

/// Bytes by path, per store, for tests and metrics.
#[derive(Debug, Default)]
pub struct RbdCounters {
    /// Read through librbd (commands and copy edges).
    pub read: AtomicU64,
    /// Written through librbd (commands, copy edges, object-map markers).
    pub written: AtomicU64,
    /// Copied into this image by copy-from (never through the gateway).
    pub copy_from: AtomicU64,
    pub copy_from_objects: AtomicU64,
}

/// How a store stands towards a snapshot it was opened at.
#[derive(Debug)]
struct SnapOf {
    name: String,
    id: u64,
    /// The image the snapshot belongs to, to remove it when this store goes (a ROD
    /// token's point-in-time image); `None` for a snapshot the administrator made.
    owner: Option<Arc<Image>>,
}

/// One RBD image (or a snapshot of one) as a [`Backstore`].
pub struct RbdBackstore {
    cfg: RbdConfig,
    cluster: Arc<Cluster>,
    /// The image's pool and namespace (its header lives here).
    io: IoCtx,
    /// Where its data objects live (the data pool when it has one).
    data_io: IoCtx,
    /// Dropped by hand in `Drop`: a snapshot's handle closes before its removal.
    image: std::mem::ManuallyDrop<Arc<Image>>,
    id: String,
    prefix: String,
    obj_size: u64,
    size: AtomicU64,
    object_map: bool,
    /// Objects hold the image's bytes one to one (no fancy striping).
    plain_layout: bool,
    read_only: bool,
    snap: Option<SnapOf>,
    gate: Arc<Gate>,
    watch: Option<(u64, *mut Watch)>,
    counters: Arc<RbdCounters>,
    next_snap: AtomicU64,
}

unsafe impl Send for RbdBackstore {}
unsafe impl Sync for RbdBackstore {}

impl std::fmt::Debug for RbdBackstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdBackstore")
            .field("image", &self.cfg.spec())
            .field("snap", &self.snap.as_ref().map(|s| &s.name))
            .field("size", &self.size.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for RbdBackstore {
    fn drop(&mut self) {
        if let Some((handle, w)) = self.watch.take() {
            // SAFETY: registered in `open`; after the unwatch no callback runs, so the
            // box can be freed.
            unsafe {
                ffi::rbd_quiesce_unwatch(self.image.raw, handle);
                drop(Box::from_raw(w));
            }
        }
        // A quiesce thread still to call rbd_quiesce_complete uses the handle. No
        // copy runs now (they borrow the store), so it finishes at once.
        self.gate.wait_completions();
        if !self.read_only && self.snap.is_none() {
            // SAFETY: open image; releasing a lock not held is harmless.
            unsafe { ffi::rbd_lock_release(self.image.raw) };
        }
        // SAFETY: the only place `image` is taken, and it is not used after.
        drop(unsafe { std::mem::ManuallyDrop::take(&mut self.image) });
        if let Some(SnapOf {
            name,
            owner: Some(owner),
            ..
        }) = &self.snap
        {
            if let Ok(n) = cstr(name) {
                // SAFETY: the parent image is open (held by `owner`).
                let r = unsafe { ffi::rbd_snap_remove(owner.raw, n.as_ptr()) };
                if r < 0 {
                    tracing::warn!(image = %self.cfg.spec(), snap = %name, error = %err(r.into(), "rbd_snap_remove"), "could not remove a token's snapshot");
                }
            }
        }
    }
}

impl RbdBackstore {
    /// Opens `cfg`'s image for I/O (read-only with `read_only`).
    pub fn open(cfg: &RbdConfig, read_only: bool) -> io::Result<Self> {
        let cluster = Cluster::get(cfg)?;
        let io = IoCtx::open(&cluster, Ok(&cfg.pool), cfg.namespace.as_deref())?;
        let name = cstr(&cfg.image)?;
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: valid ioctx and name; out-pointer to a local.
        let r = unsafe {
            if read_only {
                ffi::rbd_open_read_only(io.raw, name.as_ptr(), &mut raw, ptr::null())
            } else {
                ffi::rbd_open(io.raw, name.as_ptr(), &mut raw, ptr::null())
            }
        };
        check(r, &format!("opening image {}", cfg.spec()))?;
        let image = Arc::new(Image { raw });
        let mut b = Self::with_image(cfg, cluster, io, image, read_only, None)?;
        if !read_only {
            b.own()?;
            b.remove_stale_token_snapshots();
            b.watch_quiesce()?;
        }
        Ok(b)
    }

    fn with_image(
        cfg: &RbdConfig,
        cluster: Arc<Cluster>,
        io: IoCtx,
        image: Arc<Image>,
        read_only: bool,
        snap: Option<SnapOf>,
    ) -> io::Result<Self> {
        let raw = image.raw;
        // SAFETY (all calls below): an open image, out-pointers to locals, buffers
        // with their lengths.
        let mut info: ffi::rbd_image_info_t = unsafe { std::mem::zeroed() };
        check(
            unsafe { ffi::rbd_stat(raw, &mut info, std::mem::size_of::<ffi::rbd_image_info_t>()) },
            "rbd_stat",
        )?;
        let mut features = 0u64;
        check(
            unsafe { ffi::rbd_get_features(raw, &mut features) },
            "rbd_get_features",
        )?;
        let (mut unit, mut count) = (0u64, 0u64);
        check(
            unsafe { ffi::rbd_get_stripe_unit(raw, &mut unit) },
            "rbd_get_stripe_unit",
        )?;
        check(
            unsafe { ffi::rbd_get_stripe_count(raw, &mut count) },
            "rbd_get_stripe_count",
        )?;
        let mut buf = [0 as libc::c_char; 128];
        check(
            unsafe { ffi::rbd_get_id(raw, buf.as_mut_ptr(), buf.len()) },
            "rbd_get_id",
        )?;
        let id = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let mut buf = [0 as libc::c_char; 128];
        check(
            unsafe { ffi::rbd_get_block_name_prefix(raw, buf.as_mut_ptr(), buf.len()) },
            "rbd_get_block_name_prefix",
        )?;
        let prefix = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let data_pool = unsafe { ffi::rbd_get_data_pool_id(raw) };
        let own_pool = unsafe { ffi::rados_ioctx_get_id(io.raw) };
        let data_io = if data_pool >= 0 && data_pool != own_pool {
            IoCtx::open(&cluster, Err(data_pool), cfg.namespace.as_deref())?
        } else {
            IoCtx::open(&cluster, Ok(&cfg.pool), cfg.namespace.as_deref())?
        };
        Ok(Self {
            cfg: cfg.clone(),
            cluster,
            io,
            data_io,
            image: std::mem::ManuallyDrop::new(image),
            id,
            prefix,
            obj_size: info.obj_size.max(512),
            size: AtomicU64::new(info.size),
            object_map: features & ffi::RBD_FEATURE_OBJECT_MAP != 0,
            plain_layout: unit == info.obj_size && count == 1,
            read_only,
            snap,
            gate: Arc::new(Gate::default()),
            watch: None,
            counters: Arc::new(RbdCounters::default()),
            next_snap: AtomicU64::new(0),
        })
    }

    /// Takes the image's exclusive lock for as long as this store is open: one
    /// gateway writes an image at a time, so a COMPARE AND WRITE's read and write
    /// (under the LU's range lock) cannot be split by another gateway's write, and a
    /// reservation held here is the only one. A lock held by a live gateway refuses
    /// (EROFS, the open fails); one whose holder died is broken (its client
    /// blocklisted) and taken, which is the failover.
    fn own(&mut self) -> io::Result<()> {
        let mut features = 0u64;
        // SAFETY: open image, out-pointer.
        check(
            unsafe { ffi::rbd_get_features(self.image.raw, &mut features) },
            "rbd_get_features",
        )?;
        if features & ffi::RBD_FEATURE_EXCLUSIVE_LOCK == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{} lacks the exclusive-lock feature, without which two gateways could write it at once (rbd feature enable {} exclusive-lock)",
                    self.cfg.spec(),
                    self.cfg.spec()
                ),
            ));
        }
        // SAFETY: open image.
        let r = unsafe { ffi::rbd_lock_acquire(self.image.raw, ffi::RBD_LOCK_MODE_EXCLUSIVE) };
        if r == -libc::EROFS || r == -libc::EBUSY {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is held by another gateway (its exclusive lock)",
                    self.cfg.spec()
                ),
            ));
        }
        check(r, "taking the image's exclusive lock")
    }

    /// Snapshots an earlier run left for its ROD tokens (a crash, or a stop that did
    /// not drop them): tokens do not outlive the daemon, and holding the exclusive
    /// lock means no other gateway's tokens live on this image.
    fn remove_stale_token_snapshots(&self) {
        let names = match self.snapshot_names() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(image = %self.cfg.spec(), error = %e, "could not list snapshots");
                return;
            }
        };
        for name in names
            .into_iter()
            .filter(|n| n.starts_with(TOKEN_SNAP_PREFIX))
        {
            let Ok(n) = cstr(&name) else { continue };
            // SAFETY: open image.
            let r = unsafe { ffi::rbd_snap_remove(self.image.raw, n.as_ptr()) };
            if r < 0 {
                tracing::warn!(image = %self.cfg.spec(), snap = %name, error = %err(r.into(), "rbd_snap_remove"), "could not remove a stale token snapshot");
            } else {
                tracing::info!(image = %self.cfg.spec(), snap = %name, "removed a token snapshot an earlier run left");
            }
        }
    }

    /// The image's snapshot names (user namespace).
    pub fn snapshot_names(&self) -> io::Result<Vec<String>> {
        let mut max: libc::c_int = 16;
        loop {
            // SAFETY: zeroed plain C structs.
            let mut v: Vec<ffi::rbd_snap_info_t> =
                (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
            let mut m = max;
            // SAFETY: a buffer of `m` entries.
            let r = unsafe { ffi::rbd_snap_list(self.image.raw, v.as_mut_ptr(), &mut m) };
            if r == -libc::ERANGE {
                max = m.max(max * 2);
                continue;
            }
            check(r, "rbd_snap_list")?;
            let names = v[..r as usize]
                .iter()
                // SAFETY: librbd filled these entries with NUL-terminated names.
                .map(|s| {
                    unsafe { CStr::from_ptr(s.name) }
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            // SAFETY: frees what rbd_snap_list allocated in the entries.
            unsafe { ffi::rbd_snap_list_end(v.as_mut_ptr()) };
            return Ok(names);
        }
    }

    fn watch_quiesce(&mut self) -> io::Result<()> {
        let w = Box::into_raw(Box::new(Watch {
            gate: self.gate.clone(),
            image: self.image.raw as usize,
            handle: AtomicU64::new(0),
        }));
        let mut handle = 0u64;
        // SAFETY: open image; `w` stays valid until the unwatch in Drop.
        let r = unsafe {
            ffi::rbd_quiesce_watch(
                self.image.raw,
                Some(on_quiesce),
                Some(on_unquiesce),
                w as *mut libc::c_void,
                &mut handle,
            )
        };
        if r < 0 {
            // SAFETY: not registered, so ours to free.
            drop(unsafe { Box::from_raw(w) });
            return Err(err(r.into(), "rbd_quiesce_watch"));
        }
        // SAFETY: `w` is live.
        unsafe { (*w).handle.store(handle, Ordering::Release) };
        self.watch = Some((handle, w));
        Ok(())
    }

    /// The image this store serves, `pool/[ns/]image[@snap]`.
    pub fn spec(&self) -> String {
        match &self.snap {
            Some(s) => format!("{}@{}", self.cfg.spec(), s.name),
            None => self.cfg.spec(),
        }
    }

    /// Object size in bytes (the unit of copy-from and of deallocation).
    pub fn object_size(&self) -> u64 {
        self.obj_size
    }

    /// The cluster's fsid.
    pub fn fsid(&self) -> &str {
        &self.cluster.fsid
    }

    pub fn counters(&self) -> &Arc<RbdCounters> {
        &self.counters
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only || self.snap.is_some() {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        Ok(())
    }

    fn read_raw(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let (img, p, n) = (self.image.raw, buf.as_mut_ptr(), buf.len());
        // SAFETY: `buf` outlives the wait inside `aio`.
        let got = aio("rbd read", |c| unsafe {
            ffi::rbd_aio_read2(img, offset, n, p as *mut libc::c_char, c, 0)
        })?;
        if (got as usize) < n {
            // librbd returns short only past the end, which check_range excludes;
            // whatever a racing shrink did, the caller sees zeros, not stale bytes.
            buf[got as usize..].fill(0);
        }
        self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    fn write_raw(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let (img, p, n) = (self.image.raw, buf.as_ptr(), buf.len());
        // SAFETY: `buf` outlives the wait inside `aio`.
        aio("rbd write", |c| unsafe {
            ffi::rbd_aio_write2(img, offset, n, p as *const libc::c_char, c, 0)
        })?;
        self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    fn discard_raw(&self, offset: u64, len: u64) -> io::Result<()> {
        let img = self.image.raw;
        // SAFETY: open image.
        aio("rbd discard", |c| unsafe {
            ffi::rbd_aio_discard(img, offset, len, c)
        })?;
        Ok(())
    }

    fn zero_raw(&self, offset: u64, len: u64) -> io::Result<()> {
        let img = self.image.raw;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(1 << 30);
            // SAFETY: open image.
            aio("rbd write_zeroes", |c| unsafe {
                ffi::rbd_aio_write_zeroes(img, offset + done, n as usize, c, 0, 0)
            })?;
            done += n;
        }
        Ok(())
    }

    /// The image's snapshot context from its header: (seq, ids newest first).
    fn snap_context(&self) -> io::Result<(u64, Vec<u64>)> {
        let oid = cstr(&format!("rbd_header.{}", self.id))?;
        let (cls, method) = (cstr("rbd")?, cstr("get_snapcontext")?);
        let mut out = vec![0u8; 64 * 1024];
        // SAFETY: buffer and its length; the header object is in the image's pool.
        let r = unsafe {
            ffi::rados_exec(
                self.io.raw,
                oid.as_ptr(),
                cls.as_ptr(),
                method.as_ptr(),
                ptr::null(),
                0,
                out.as_mut_ptr() as *mut libc::c_char,
                out.len(),
            )
        };
        check(r, "rbd.get_snapcontext")?;
        parse_snap_context(&out[..r as usize])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "snap context undecodable"))
    }

    fn object_name(&self, index: u64) -> String {
        format!("{}.{:016x}", self.prefix, index)
    }

    /// Whether `src`'s objects can be copied into this image's objects one to one.
    fn can_copy_objects_from(&self, src: &RbdBackstore) -> bool {
        if self.read_only || self.snap.is_some() {
            return false;
        }
        if src.cluster.fsid != self.cluster.fsid
            || src.obj_size != self.obj_size
            || !src.plain_layout
            || !self.plain_layout
        {
            return false;
        }
        // A clone's missing objects read through to its parent: not one to one.
        let mut overlap = 0u64;
        // SAFETY: open image, out-pointer.
        let r = unsafe { ffi::rbd_get_overlap(src.image.raw, &mut overlap) };
        r == -libc::ENOENT || (r == 0 && overlap == 0)
    }

    /// Copies whole objects `[first, first+count)` of `src` (offset by `delta`
    /// objects) into this image by copy-from. Returns bytes copied.
    fn copy_objects(
        &self,
        src: &RbdBackstore,
        src_first: u64,
        dst_first: u64,
        count: u64,
    ) -> io::Result<u64> {
        let _gate = self.gate.enter();
        let (seq, snaps) = self.snap_context()?;
        let src_snap = src.snap.as_ref().map_or(ffi::LIBRADOS_SNAP_HEAD, |s| s.id);
        let os = self.obj_size;
        let marker = [0u8; 512];
        let one = |i: u64| -> io::Result<()> {
            let dst_off = (dst_first + i) * os;
            if self.object_map {
                self.write_raw(&marker, dst_off)?;
            }
            let d = cstr(&self.object_name(dst_first + i))?;
            let s = cstr(&src.object_name(src_first + i))?;
            // SAFETY: valid ioctxs and names; `snaps` outlives the call.
            let r = unsafe {
                ffi::oxtgt_rados_copy_from(
                    self.data_io.raw,
                    d.as_ptr(),
                    src.data_io.raw,
                    s.as_ptr(),
                    src_snap,
                    seq,
                    snaps.as_ptr(),
                    snaps.len(),
                )
            };
            if r == -libc::ENOENT {
                // Never written in the source: so it reads as zeros here too.
                self.discard_raw(dst_off, os)?;
                return Ok(());
            }
            if r < 0 {
                tracing::debug!(error = %err(r.into(), "RADOS copy-from"), "copy-from failed");
                return Err(io::Error::from_raw_os_error(-r));
            }
            self.counters.copy_from.fetch_add(os, Ordering::Relaxed);
            self.counters
                .copy_from_objects
                .fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        // Up to 8 objects in flight: each copy is a round trip to the OSDs.
        let lanes = count.min(8);
        let next = AtomicU64::new(0);
        let failed: Mutex<Option<io::Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..lanes {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                        break;
                    }
                    if let Err(e) = one(i) {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        break;
                    }
                });
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(count * os),
        }
    }

    /// Copies through the gateway (edges): returns bytes moved.
    fn bounce_from(
        &self,
        src: &RbdBackstore,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> io::Result<u64> {
        let mut buf = vec![0u8; len.min(4 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(buf.len());
            src.read_raw(&mut buf[..n], src_off + done)?;
            self.write_raw(&buf[..n], dst_off + done)?;
            done += n as u64;
        }
        Ok(len)
    }
}

/// Decodes a Ceph `SnapContext` (u64 seq, u32 count, count × u64, little-endian);
/// ids come back newest first, as the OSD wants them.
fn parse_snap_context(b: &[u8]) -> Option<(u64, Vec<u64>)> {
    let seq = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let n = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?) as usize;
    let mut snaps = Vec::with_capacity(n.min(4096));
    for i in 0..n {
        let at = 12 + i * 8;
        snaps.push(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    }
    snaps.sort_unstable_by(|a, b| b.cmp(a));
    Some((seq, snaps))
}

impl Backstore for RbdBackstore {
    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn resize(&self, new_size: u64) -> io::Result<u64> {
        self.writable()?;
        let now = self.size();
        if new_size < now {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {now} bytes: shrinking would lose data", self.spec()),
            ));
        }
        if new_size > now {
            // SAFETY: open image.
            check(
                unsafe { ffi::rbd_resize(self.image.raw, new_size) },
                "rbd_resize",
            )?;
        }
        let mut got = 0u64;
        // SAFETY: open image, out-pointer.
        check(
            unsafe { ffi::rbd_get_size(self.image.raw, &mut got) },
            "rbd_get_size",
        )?;
        self.size.store(got, Ordering::Release);
        Ok(got)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size())?;
        self.read_raw(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64, _fua: bool) -> io::Result<()> {
        // No client cache: a completed write is on the OSDs, FUA or not.
        self.writable()?;
        check_range(offset, buf.len(), self.size())?;
        self.write_raw(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        if self.read_only || self.snap.is_some() {
            return Ok(());
        }
        let img = self.image.raw;
        // SAFETY: open image.
        aio("rbd flush", |c| unsafe { ffi::rbd_aio_flush(img, c) })?;
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.writable()?;
        check_range(offset, len as usize, self.size())?;
        self.zero_raw(offset, len)
    }

    fn thin_provisioning(&self) -> Option<&dyn ThinProvisioning> {
        Some(self)
    }

    fn copy_offload(&self) -> Option<&dyn CopyOffload> {
        Some(self)
    }

    fn snapshot(&self) -> Option<&dyn Snapshot> {
        if self.read_only || self.snap.is_some() {
            None
        } else {
            Some(self)
        }
    }
}

impl ThinProvisioning for RbdBackstore {
    fn discard_granularity(&self) -> u64 {
        self.obj_size
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.writable()?;
        check_range(offset, len as usize, self.size())?;
        // Whole objects are removed; the parts of objects around them are zeroed
        // (they stay allocated, like a file's partial blocks).
        let os = self.obj_size;
        let end = offset + len;
        let first = offset.div_ceil(os) * os;
        let last = end / os * os;
        if first >= last {
            return self.zero_raw(offset, len);
        }
        if offset < first {
            self.zero_raw(offset, first - offset)?;
        }
        self.discard_raw(first, last - first)?;
        if last < end {
            self.zero_raw(last, end - last)?;
        }
        Ok(())
    }

    fn mapped(&self, offset: u64, len: u64) -> io::Result<(bool, u64)> {
        // Object granularity from the object map when there is one; at most 1024
        // objects per question (GET LBA STATUS asks again from where this stops).
        let os = self.obj_size;
        let len = len.min(1024 * os).min(self.size().saturating_sub(offset));
        if len == 0 {
            return Ok((true, 0));
        }
        let start = offset / os * os;
        let end = (offset + len).div_ceil(os) * os;
        let mut extents: Vec<(u64, u64)> = Vec::new();
        unsafe extern "C" fn cb(
            off: u64,
            len: usize,
            exists: libc::c_int,
            arg: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: `arg` is the Vec below, alive for the call.
            let v = unsafe { &mut *(arg as *mut Vec<(u64, u64)>) };
            if exists != 0 {
                v.push((off, len as u64));
            }
            0
        }
        // A snapshot's handle is opened at it: the diff is the snapshot's.
        // SAFETY: open image; the callback's argument outlives the call.
        check(
            unsafe {
                ffi::rbd_diff_iterate2(
                    self.image.raw,
                    ptr::null(),
                    start,
                    end.min(self.size()) - start,
                    1,
                    u8::from(self.object_map),
                    Some(cb),
                    &mut extents as *mut _ as *mut libc::c_void,
                )
            },
            "rbd_diff_iterate2",
        )?;
        extents.sort_unstable();
        Ok(mapped_run(&extents, offset, len))
    }
}

/// From sorted allocated extents: whether `offset` is allocated, and for how many
/// bytes (at most `len`) that stays so.
fn mapped_run(extents: &[(u64, u64)], offset: u64, len: u64) -> (bool, u64) {
    let end = offset + len;
    let mut pos = offset;
    let mut mapped = None;
    for &(o, l) in extents {
        let e = o + l;
        if e <= pos {
            continue;
        }
        if o > pos {
            // A gap at `pos`.
            match mapped {
                None => return (false, (o.min(end)) - offset),
                Some(_) => return (true, pos - offset),
            }
        }
        mapped = Some(true);
        pos = e;
        if pos >= end {
            break;
        }
    }
    match mapped {
        None => (false, len),
        Some(_) => (true, pos.min(end) - offset),
    }
}

impl CopyOffload for RbdBackstore {
    fn as_source(&self) -> CopySource<'_> {
        CopySource::External(self)
    }

    fn copy_from(
        &self,
        src: CopySource<'_>,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> io::Result<Option<CopyReport>> {
        let CopySource::External(any) = src else {
            return Ok(None);
        };
        let Some(src) = any.downcast_ref::<RbdBackstore>() else {
            return Ok(None);
        };
        let os = self.obj_size;
        if !self.can_copy_objects_from(src) || src_off % os != dst_off % os {
            return Ok(None);
        }
        check_range(src_off, len as usize, src.size())?;
        check_range(dst_off, len as usize, self.size())?;
        let head = ((os - dst_off % os) % os).min(len);
        let whole = (len - head) / os;
        let tail = len - head - whole * os;
        let mut report = CopyReport::default();
        if whole == 0 {
            return Ok(None);
        }
        if head > 0 {
            report.bounced += self.bounce_from(src, src_off, dst_off, head)?;
        }
        let (s0, d0) = ((src_off + head) / os, (dst_off + head) / os);
        report.copy_from += self.copy_objects(src, s0, d0, whole)?;
        if tail > 0 {
            let at = head + whole * os;
            report.bounced += self.bounce_from(src, src_off + at, dst_off + at, tail)?;
        }
        Ok(Some(report))
    }
}

impl Snapshot for RbdBackstore {
    /// An RBD snapshot of the whole image (the ranges are all kept; a snapshot costs
    /// the same whatever it covers), opened read-only at it, and removed when the
    /// returned store is dropped.
    fn snapshot_ranges(&self, _ranges: &[(u64, u64)]) -> io::Result<Option<Arc<dyn Backstore>>> {
        self.writable()?;
        let name = format!(
            "{TOKEN_SNAP_PREFIX}{}.{}.{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            self.next_snap.fetch_add(1, Ordering::Relaxed)
        );
        let n = cstr(&name)?;
        // SAFETY: open image.
        check(
            unsafe { ffi::rbd_snap_create(self.image.raw, n.as_ptr()) },
            "rbd_snap_create",
        )?;
        let opened = (|| {
            let mut id = 0u64;
            // SAFETY: open image, out-pointer.
            check(
                unsafe { ffi::rbd_snap_get_id(self.image.raw, n.as_ptr(), &mut id) },
                "rbd_snap_get_id",
            )?;
            let io = IoCtx::open(
                &self.cluster,
                Ok(&self.cfg.pool),
                self.cfg.namespace.as_deref(),
            )?;
            let img = cstr(&self.cfg.image)?;
            let mut raw: ffi::rbd_image_t = ptr::null_mut();
            // SAFETY: valid ioctx and names, out-pointer.
            check(
                unsafe { ffi::rbd_open_read_only(io.raw, img.as_ptr(), &mut raw, n.as_ptr()) },
                "opening the snapshot",
            )?;
            let snap = SnapOf {
                name: name.clone(),
                id,
                owner: Some(Arc::clone(&self.image)),
            };
            Self::with_image(
                &self.cfg,
                self.cluster.clone(),
                io,
                Arc::new(Image { raw }),
                true,
                Some(snap),
            )
        })();
        match opened {
            Ok(b) => Ok(Some(Arc::new(b))),
            Err(e) => {
                // SAFETY: open image.
                unsafe { ffi::rbd_snap_remove(self.image.raw, n.as_ptr()) };
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
