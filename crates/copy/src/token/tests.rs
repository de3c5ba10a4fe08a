//! The token store with time passed in: expiry, tombstones, change-vulnerable
//! cancellation through the LU's write path, access.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scsi::lu::Origin;
use scsi::testing::{nexus, TestLu};
use scsi::tpc::rod::{rod_type, token_asc, BlockRange};

use super::*;

fn counters() -> Arc<LuCounters> {
    Arc::new(LuCounters::default())
}

fn ranges(v: &[(u64, u32)]) -> Vec<BlockRange> {
    v.iter()
        .map(|&(lba, blocks)| BlockRange { lba, blocks })
        .collect()
}

#[test]
fn idle_tokens_expire_and_leave_a_tombstone_without_waiting() {
    let t = TestLu::new(1024, 512);
    let tokens = Tokens::new(TokenLimits::default());
    let n = nexus(1);
    let t0 = Instant::now();
    let c = counters();
    let tok = tokens
        .create(&t.lu, &n, 1, None, 30, &ranges(&[(0, 8)]), c.clone(), t0)
        .unwrap();
    let lus = [t.lu.clone()];
    // In use at 29 s: the clock restarts from the use.
    let used = tokens
        .acquire(&tok.bytes, &n, &lus, t0 + Duration::from_secs(29))
        .unwrap();
    drop(used);
    let later = Instant::now() + Duration::from_secs(29);
    assert!(tokens.acquire(&tok.bytes, &n, &lus, later).is_ok());
    let e = tokens
        .acquire(&tok.bytes, &n, &lus, later + Duration::from_secs(31))
        .unwrap_err();
    assert_eq!(e.asc, token_asc::TOKEN_EXPIRED);
    assert_eq!(c.tokens_expired.load(Ordering::Relaxed), 1);
    // The tombstone answers precisely until its retention passes, then the token
    // is unknown.
    let gone = later + Duration::from_secs(31) + TOMBSTONE_RETENTION;
    let e = tokens.acquire(&tok.bytes, &n, &lus, gone).unwrap_err();
    assert_eq!(e.asc, token_asc::TOKEN_UNKNOWN);
}

#[test]
fn a_write_overlapping_a_change_vulnerable_token_cancels_it() {
    let t = TestLu::new(1024, 512);
    let tokens = Tokens::new(TokenLimits::default());
    let n = nexus(1);
    let now = Instant::now();
    let tok = tokens
        .create(
            &t.lu,
            &n,
            1,
            Some(rod_type::PIT_CHANGE_VULNERABLE),
            0,
            &ranges(&[(100, 10), (500, 10)]),
            counters(),
            now,
        )
        .unwrap();
    assert_eq!(tok.rod_type, rod_type::PIT_CHANGE_VULNERABLE);
    // Writes beside the ranges leave it alive.
    drop(t.lu.lock_exclusive(90, 10, Origin::Command));
    drop(t.lu.lock_exclusive(110, 390, Origin::Command));
    assert!(tok.alive());
    // A write starting before a range and running into it cancels it (the whole
    // extent counts, not its first LBA).
    drop(t.lu.lock_exclusive(495, 6, Origin::Command));
    assert!(!tok.alive());
    let e = tokens
        .acquire(&tok.bytes, &n, std::slice::from_ref(&t.lu), now)
        .unwrap_err();
    assert_eq!(e.asc, token_asc::TOKEN_CANCELLED);
}

#[test]
fn a_token_is_found_by_all_its_bytes_and_through_access_only() {
    let t = TestLu::new(1024, 512);
    let other = TestLu::with_identity(2, 1024, 512, |l| l);
    let tokens = Tokens::new(TokenLimits::default());
    let n = nexus(1);
    let now = Instant::now();
    let tok = tokens
        .create(&t.lu, &n, 1, None, 0, &ranges(&[(0, 8)]), counters(), now)
        .unwrap();
    // RAM snapshots: persistent.
    assert_eq!(tok.rod_type, rod_type::PIT_PERSISTENT);
    let mut forged = tok.bytes.clone();
    forged[511] ^= 1; // the key (256..288) matches, the rest does not
    let e = tokens
        .acquire(&forged, &n, std::slice::from_ref(&t.lu), now)
        .unwrap_err();
    assert_eq!(e.asc, token_asc::TOKEN_UNKNOWN);
    let e = tokens
        .acquire(&tok.bytes, &n, std::slice::from_ref(&other.lu), now)
        .unwrap_err();
    assert_eq!(e.asc, token_asc::TOKEN_UNKNOWN, "no access to the source");
    assert_eq!(tokens.refused.load(Ordering::Relaxed), 2);
    // Two tokens never share their random part.
    let tok2 = tokens
        .create(&t.lu, &n, 2, None, 0, &ranges(&[(0, 8)]), counters(), now)
        .unwrap();
    assert_ne!(tok.bytes[256..], tok2.bytes[256..]);
    assert_eq!(
        tokens.management_tokens(std::slice::from_ref(&t.lu)).len(),
        2
    );
    assert!(tokens
        .management_tokens(std::slice::from_ref(&other.lu))
        .is_empty());
}
