//! ROD tokens as the copy manager keeps them: what each represents, what it holds
//! on to, who may use it, and when it dies.
//!
//! - **Point in time, persistent** where the source LU's backstore can snapshot
//!   cheaply (`backstore::Snapshot`: reflink clones, shared RAM pages): the token
//!   holds the image, and later writes to the source change nothing it copies.
//! - **Point in time, change vulnerable** elsewhere: the token reads the live source,
//!   and a [`LuWatch`] on the source's write path cancels it when any write's whole
//!   extent overlaps one of its ranges, before the write changes a block. A copy
//!   from it checks it is still alive inside each window, under the window's locks.
//! - **Access upon reference** when a client asks for it (RTV): the live source,
//!   never cancelled.
//!
//! A token is found by its full 512 bytes: bytes 256..512 are random (256 bits of
//! them are the map key), and the whole token is compared in constant time. Use
//! goes through the requesting initiator's access: a token whose source LU the
//! initiator cannot reach is TOKEN UNKNOWN, as if it never existed. Dead tokens
//! stay as tombstones for [`TOMBSTONE_RETENTION`], so later users get the precise
//! ASCQ (expired, cancelled, deleted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use backstore::Backstore;
use rand::Rng;
use scsi::lu::{Origin, WriteObserver};
use scsi::sense::{Asc, Sense};
use scsi::tpc::rod::{self, rod_type, token_asc, token_error, BlockRange, TokenHeader, TOKEN_LEN};
use scsi::{LogicalUnit, Nexus};

use crate::manager::LuCounters;

/// How long a dead token is remembered for its precise ASCQ.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(600);
/// Tombstones kept at most; the oldest go first.
const MAX_TOMBSTONES: usize = 4096;

/// Bounds on what live tokens may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// Live tokens, server-wide (INSUFFICIENT RESOURCES TO CREATE ROD TOKEN past it).
    pub max_tokens: usize,
    /// Bytes represented by live point-in-time persistent tokens, whose images pin
    /// storage as their sources change (INSUFFICIENT RESOURCES TO CREATE ROD past it).
    pub max_image_bytes: u64,
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self {
            max_tokens: 1024,
            max_image_bytes: 64 << 30,
        }
    }
}

/// Where a token's data comes from.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    /// A point-in-time image, at the source's offsets.
    Image(Arc<dyn Backstore>),
    /// The source LU as it is (change vulnerable: while the token lives).
    Live,
}

#[derive(Debug)]
enum State {
    Alive {
        data: Data,
        lu: Arc<LogicalUnit>,
        last_used: Instant,
        users: u32,
    },
    Dead {
        asc: Asc,
        at: Instant,
    },
}

/// Who made a token: a new POPULATE TOKEN with the same list ID on the same I_T
/// nexus and LU discards it (SPC-4 5.16.4.3 c, as QNAP quotes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Creator {
    pub(crate) nexus: u64,
    pub(crate) lu: [u8; 16],
    pub(crate) list_id: u32,
}

/// A live token as operators see it ([`Tokens::list`]): never its bytes.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// NAA of the LU the token was populated from.
    pub source: [u8; 16],
    pub bytes: u64,
    pub idle: Duration,
    pub inactivity: Duration,
    pub in_use: bool,
}

#[derive(Debug)]
pub(crate) struct Token {
    pub(crate) bytes: Box<[u8; TOKEN_LEN]>,
    pub(crate) rod_type: u32,
    /// The source LU, for access checks; the token holds it (in its state) only
    /// while alive, so a tombstone keeps no LU open.
    source: Weak<LogicalUnit>,
    pub(crate) ranges: Vec<BlockRange>,
    pub(crate) bytes_represented: u64,
    pub(crate) creator: Creator,
    inactivity: Duration,
    state: Mutex<State>,
    /// The source LU's counters: how its tokens end is counted there.
    counters: Arc<LuCounters>,
}

impl Token {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn alive(&self) -> bool {
        matches!(*self.state(), State::Alive { .. })
    }

    /// Ends the token with `asc`; its image (if any) is let go. False if it was
    /// dead already.
    fn kill(&self, asc: Asc, now: Instant) -> bool {
        let mut st = self.state();
        if let State::Dead { .. } = *st {
            return false;
        }
        *st = State::Dead { asc, at: now };
        drop(st);
        let c = &self.counters;
        let n = match asc {
            token_asc::TOKEN_EXPIRED => &c.tokens_expired,
            token_asc::TOKEN_CANCELLED => &c.tokens_cancelled,
            _ => &c.tokens_deleted,
        };
        n.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// DEL_TKN: the WRITE USING TOKEN that asked is done with it.
    pub(crate) fn delete(&self) {
        self.kill(token_asc::TOKEN_DELETED, Instant::now());
    }

    /// Why a dead token died (TOKEN CANCELLED for one still alive: the only
    /// way a copy from a live token can find it gone is a write to its source).
    pub(crate) fn death(&self) -> Asc {
        match &*self.state() {
            State::Dead { asc, .. } => *asc,
            State::Alive { .. } => token_asc::TOKEN_CANCELLED,
        }
    }

    fn sourced_from_one_of(&self, lus: &[Arc<LogicalUnit>]) -> bool {
        lus.iter()
            .any(|lu| std::ptr::eq(Arc::as_ptr(lu), self.source.as_ptr()))
    }

    fn overlaps(&self, lba: u64, blocks: u64) -> bool {
        self.ranges
            .iter()
            .any(|r| r.blocks > 0 && r.lba < lba + blocks && lba < r.lba + u64::from(r.blocks))
    }

    fn key(&self) -> [u8; 32] {
        key_of(&self.bytes)
    }
}

fn key_of(t: &[u8; TOKEN_LEN]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&t[256..288]);
    k
}

/// Compares two tokens in time independent of where they differ.
fn same(a: &[u8; TOKEN_LEN], b: &[u8; TOKEN_LEN]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The change-vulnerable tokens of one LU, told of every write before it happens.
#[derive(Debug, Default)]
pub(crate) struct LuWatch {
    live: AtomicUsize,
    tokens: Mutex<Vec<Weak<Token>>>,
}

impl WriteObserver for LuWatch {
    fn before_write(&self, _lu: &LogicalUnit, lba: u64, blocks: u64) {
        if self.live.load(Ordering::Acquire) == 0 {
            return;
        }
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|w| {
            let Some(t) = w.upgrade() else {
                return false;
            };
            if !t.alive() {
                return false;
            }
            if t.overlaps(lba, blocks) && t.kill(token_asc::TOKEN_CANCELLED, now) {
                tracing::info!(
                    lba,
                    blocks,
                    token_id = TokenHeader::decode(&t.bytes).id,
                    "ROD token cancelled by a write to its source"
                );
                return false;
            }
            true
        });
        self.live.store(tokens.len(), Ordering::Release);
    }
}

/// A token being used by one WRITE USING TOKEN; dropping it marks the use.
#[derive(Debug)]
pub(crate) struct InUse {
    pub(crate) token: Arc<Token>,
    pub(crate) data: Data,
    /// The source LU.
    pub(crate) lu: Arc<LogicalUnit>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let State::Alive {
            last_used, users, ..
        } = &mut *self.token.state()
        {
            *users -= 1;
            *last_used = Instant::now();
        }
    }
}

#[derive(Debug)]
pub struct Tokens {
    limits: Mutex<TokenLimits>,
    all: Mutex<HashMap<[u8; 32], Arc<Token>>>,
    watches: Mutex<Vec<(Weak<LogicalUnit>, Arc<LuWatch>)>>,
    next_id: AtomicU64,
    /// WRITE USING TOKEN commands refused for their token (unknown, dead, or a
    /// source the initiator cannot reach), server-wide.
    pub refused: AtomicU64,
}

impl Tokens {
    pub fn new(limits: TokenLimits) -> Self {
        Self {
            limits: Mutex::new(limits),
            all: Mutex::new(HashMap::new()),
            watches: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            refused: AtomicU64::new(0),
        }
    }

    /// New bounds (a reload): tokens already made stay.
    pub fn set_limits(&self, limits: TokenLimits) {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    fn limits(&self) -> TokenLimits {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn all(&self) -> MutexGuard<'_, HashMap<[u8; 32], Arc<Token>>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live tokens, without their bytes (a token is a bearer credential):
    /// (source LU NAA, bytes represented, idle for, inactivity timeout).
    pub fn list(&self) -> Vec<TokenInfo> {
        let now = Instant::now();
        self.all()
            .values()
            .filter_map(|t| match &*t.state() {
                State::Alive {
                    last_used, users, ..
                } => Some(TokenInfo {
                    source: t.creator.lu,
                    bytes: t.bytes_represented,
                    idle: now.saturating_duration_since(*last_used),
                    inactivity: t.inactivity,
                    in_use: *users > 0,
                }),
                State::Dead { .. } => None,
            })
            .collect()
    }

    /// Live tokens now.
    pub fn live(&self) -> usize {
        self.all().values().filter(|t| t.alive()).count()
    }

    /// Expires idle tokens and forgets old tombstones, as of `now`.
    pub(crate) fn prune(&self, now: Instant) {
        let mut all = self.all();
        for t in all.values() {
            let idle = match &*t.state() {
                State::Alive {
                    last_used, users, ..
                } => *users == 0 && now.saturating_duration_since(*last_used) >= t.inactivity,
                State::Dead { .. } => false,
            };
            if idle {
                t.kill(token_asc::TOKEN_EXPIRED, now);
            }
        }
        all.retain(|_, t| match &*t.state() {
            State::Alive { .. } => true,
            State::Dead { at, .. } => now.saturating_duration_since(*at) < TOMBSTONE_RETENTION,
        });
        let dead = all.len().saturating_sub(self.live_in(&all));
        if dead > MAX_TOMBSTONES {
            let mut tombs: Vec<([u8; 32], Instant)> = all
                .iter()
                .filter_map(|(k, t)| match &*t.state() {
                    State::Dead { at, .. } => Some((*k, *at)),
                    State::Alive { .. } => None,
                })
                .collect();
            tombs.sort_by_key(|(_, at)| *at);
            for (k, _) in tombs.into_iter().take(dead - MAX_TOMBSTONES) {
                all.remove(&k);
            }
        }
    }

    fn live_in(&self, all: &HashMap<[u8; 32], Arc<Token>>) -> usize {
        all.values().filter(|t| t.alive()).count()
    }

    /// The change-vulnerable watch of `lu`, registered on its write path once.
    fn watch(&self, lu: &Arc<LogicalUnit>) -> Arc<LuWatch> {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        watches.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, w)) = watches
            .iter()
            .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(lu)))
        {
            return w.clone();
        }
        let w = Arc::new(LuWatch::default());
        lu.add_write_observer(w.clone());
        watches.push((Arc::downgrade(lu), w.clone()));
        w
    }

    /// Kills the tokens `creator` made (a new POPULATE TOKEN under the same list
    /// ID, or RECEIVE ROD TOKEN INFORMATION with allocation length 0).
    pub(crate) fn discard(&self, creator: Creator, now: Instant) {
        for t in self.all().values().filter(|t| t.creator == creator) {
            t.kill(token_asc::TOKEN_DELETED, now);
        }
    }

    /// Revokes every token whose source LU `keep` rejects (an LU removed by a
    /// reload): their images and LU handles go now, not at their timeout.
    pub fn revoke_unless(&self, keep: impl Fn(&Arc<LogicalUnit>) -> bool) {
        let now = Instant::now();
        for t in self.all().values() {
            let Some(lu) = t.source.upgrade() else {
                continue;
            };
            if keep(&lu) {
                continue;
            }
            t.kill(token_asc::TOKEN_REVOKED, now);
        }
    }

    /// Deletes a token (RECEIVE ROD TOKEN INFORMATION with allocation length 0).
    pub(crate) fn delete(&self, token: &Token, now: Instant) {
        token.kill(token_asc::TOKEN_DELETED, now);
    }

    /// Makes a token of `ranges` of `lu` for POPULATE TOKEN. `asked` is the ROD
    /// type the client asked for (RTV), if any.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        &self,
        lu: &Arc<LogicalUnit>,
        nexus: &Nexus,
        list_id: u32,
        asked: Option<u32>,
        inactivity_secs: u32,
        ranges: &[BlockRange],
        counters: Arc<LuCounters>,
        now: Instant,
    ) -> Result<Arc<Token>, Sense> {
        self.prune(now);
        let creator = Creator {
            nexus: nexus.id,
            lu: lu.identity().naa,
            list_id,
        };
        self.discard(creator, now);
        let bs = u64::from(lu.block_size());
        let blocks: u64 = ranges.iter().map(|r| u64::from(r.blocks)).sum();
        let bytes_represented = blocks * bs;
        {
            let all = self.all();
            if self.live_in(&all) >= self.limits().max_tokens {
                return Err(Sense::illegal(
                    token_asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN,
                ));
            }
        }
        let want_image = match asked {
            None | Some(rod_type::PIT_DEFAULT) | Some(rod_type::PIT_ANY) => Some(false),
            Some(rod_type::PIT_PERSISTENT) => Some(true),
            _ => None,
        };
        // Lock the ranges shared (ascending, as every multi-range locker does):
        // no write lands between the image, or the change-vulnerable watch, and
        // the token's existence.
        let mut sorted: Vec<&BlockRange> = ranges.iter().filter(|r| r.blocks > 0).collect();
        sorted.sort_by_key(|r| r.lba);
        let _locks: Vec<_> = sorted
            .iter()
            .map(|r| lu.lock_shared(r.lba, u64::from(r.blocks), Origin::Copy))
            .collect();
        let (kind, data) = match want_image {
            Some(required) => match self.image(lu, &sorted, bytes_represented)? {
                Some(img) => (rod_type::PIT_PERSISTENT, Data::Image(img)),
                // The backstore cannot snapshot cheaply: change vulnerable, unless
                // persistent was asked for by name.
                None if required => return Err(Sense::invalid_param_field(8, None)),
                None => (rod_type::PIT_CHANGE_VULNERABLE, Data::Live),
            },
            None => match asked {
                Some(rod_type::PIT_CHANGE_VULNERABLE) => {
                    (rod_type::PIT_CHANGE_VULNERABLE, Data::Live)
                }
                _ => (rod_type::ACCESS_UPON_REFERENCE, Data::Live),
            },
        };
        let header = TokenHeader {
            rod_type: kind,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            creator_naa: lu.identity().naa,
            block_size: lu.block_size(),
            bytes_represented,
            lbppbe: lu.lbppbe(),
            thin: lu.thin(),
            target_name: nexus.target_name.to_string(),
        };
        let mut random = [0u8; 256];
        rand::thread_rng().fill(&mut random[..]);
        let inactivity = match inactivity_secs {
            0 => rod::DEFAULT_INACTIVITY_TIMEOUT,
            s => s,
        };
        let token = Arc::new(Token {
            bytes: Box::new(header.encode(&random)),
            rod_type: kind,
            source: Arc::downgrade(lu),
            ranges: ranges.to_vec(),
            bytes_represented,
            creator,
            inactivity: Duration::from_secs(u64::from(inactivity)),
            state: Mutex::new(State::Alive {
                data,
                lu: lu.clone(),
                last_used: now,
                users: 0,
            }),
            counters,
        });
        if kind == rod_type::PIT_CHANGE_VULNERABLE {
            let w = self.watch(lu);
            let mut tokens = w.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.push(Arc::downgrade(&token));
            w.live.store(tokens.len(), Ordering::Release);
        }
        self.all().insert(token.key(), token.clone());
        token
            .counters
            .tokens_created
            .fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// A point-in-time image of `ranges` (locked by the caller), if the backstore
    /// can take one and the image budget allows; 55/0C when it would exceed it.
    fn image(
        &self,
        lu: &LogicalUnit,
        ranges: &[&BlockRange],
        bytes: u64,
    ) -> Result<Option<Arc<dyn Backstore>>, Sense> {
        let Some(snap) = lu.backstore().snapshot() else {
            return Ok(None);
        };
        let held: u64 = self
            .all()
            .values()
            .filter(|t| {
                matches!(
                    &*t.state(),
                    State::Alive {
                        data: Data::Image(_),
                        ..
                    }
                )
            })
            .map(|t| t.bytes_represented)
            .sum();
        if held + bytes > self.limits().max_image_bytes {
            return Err(Sense::illegal(
                token_asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD,
            ));
        }
        let bs = u64::from(lu.block_size());
        let byte_ranges: Vec<(u64, u64)> = ranges
            .iter()
            .map(|r| (r.lba * bs, u64::from(r.blocks) * bs))
            .collect();
        snap.snapshot_ranges(&byte_ranges).map_err(|e| {
            tracing::warn!(error = %e, "snapshot for a ROD token failed");
            Sense::illegal(token_asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD)
        })
    }

    /// The token `bytes` names, for a WRITE USING TOKEN from `nexus` that can reach
    /// `accessible`: the precise ASCQ for a dead one, TOKEN UNKNOWN for one that
    /// never existed or whose source the initiator cannot reach.
    pub(crate) fn acquire(
        &self,
        bytes: &[u8; TOKEN_LEN],
        nexus: &Nexus,
        accessible: &[Arc<LogicalUnit>],
        now: Instant,
    ) -> Result<InUse, Sense> {
        self.prune(now);
        let found = self
            .all()
            .get(&key_of(bytes))
            .filter(|t| same(&t.bytes, bytes))
            .cloned();
        let Some(token) = found else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(token_error(token_asc::TOKEN_UNKNOWN));
        };
        if !token.sourced_from_one_of(accessible) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                initiator = %nexus.initiator,
                "WRITE USING TOKEN with a token whose source LU this initiator cannot access"
            );
            return Err(token_error(token_asc::TOKEN_UNKNOWN));
        }
        let mut st = token.state();
        match &mut *st {
            State::Dead { asc, .. } => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(token_error(*asc))
            }
            State::Alive {
                data,
                lu,
                last_used,
                users,
            } => {
                *users += 1;
                *last_used = now;
                let (data, lu) = (data.clone(), lu.clone());
                drop(st);
                Ok(InUse { token, data, lu })
            }
        }
    }

    /// The 96-byte ROD management tokens (bytes 0-95: nothing secret) of the live
    /// tokens whose source `accessible` contains (REPORT ALL ROD TOKENS).
    pub(crate) fn management_tokens(&self, accessible: &[Arc<LogicalUnit>]) -> Vec<[u8; 96]> {
        let all = self.all();
        let mut out: Vec<(u64, [u8; 96])> = all
            .values()
            .filter(|t| t.alive() && t.sourced_from_one_of(accessible))
            .map(|t| {
                let mut m = [0u8; 96];
                m.copy_from_slice(&t.bytes[..96]);
                (TokenHeader::decode(&t.bytes).id, m)
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, m)| m).collect()
    }
}

#[cfg(test)]
mod tests;
