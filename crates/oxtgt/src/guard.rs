//! Login-phase protection: how many connections may be logging in at once, in all
//! and from one address, and growing delays before the answer to repeated
//! authentication failures from one initiator name or address. The time is passed
//! in, so the policy is tested without waiting.
//!
//! A connection that cannot get a login slot is closed at once (logged); one that
//! fails CHAP again and again waits longer each time before it hears so, on its own
//! task: other initiators' logins and I/O never wait for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The bounds, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Connections in the login phase at once, server-wide.
    pub max_logins: usize,
    /// Connections in the login phase at once from one address.
    pub max_logins_per_address: usize,
    /// Delay before answering the second consecutive authentication failure of a
    /// name or address; it doubles with each further failure, up to `failure_delay_max`.
    pub failure_delay: Duration,
    pub failure_delay_max: Duration,
}

impl Default for GuardLimits {
    fn default() -> Self {
        Self {
            max_logins: 512,
            max_logins_per_address: 64,
            failure_delay: Duration::from_millis(500),
            failure_delay_max: Duration::from_secs(8),
        }
    }
}

/// Failures are forgotten after this long without another.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Names and addresses remembered at most (the oldest go first).
const MAX_REMEMBERED: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Name(String),
    Addr(IpAddr),
}

#[derive(Debug, Default)]
struct State {
    in_login: usize,
    per_addr: HashMap<IpAddr, usize>,
    failures: HashMap<Who, (u32, Instant)>,
}

#[derive(Debug, Default)]
pub struct LoginGuard {
    state: Mutex<State>,
}

/// Why a connection was not let into the login phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyLogins,
    TooManyFromAddress,
}

/// A login slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct LoginSlot {
    guard: Arc<LoginGuard>,
    addr: Option<IpAddr>,
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        let mut st = self.guard.state();
        st.in_login = st.in_login.saturating_sub(1);
        if let Some(a) = self.addr {
            if let Some(n) = st.per_addr.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    st.per_addr.remove(&a);
                }
            }
        }
    }
}

impl LoginGuard {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `addr` to log in, within `limits`.
    pub fn enter(
        self: &Arc<Self>,
        addr: Option<IpAddr>,
        limits: &GuardLimits,
    ) -> Result<LoginSlot, Refused> {
        let mut st = self.state();
        if st.in_login >= limits.max_logins {
            return Err(Refused::TooManyLogins);
        }
        if let Some(a) = addr {
            let n = st.per_addr.entry(a).or_default();
            if *n >= limits.max_logins_per_address {
                return Err(Refused::TooManyFromAddress);
            }
            *n += 1;
        }
        st.in_login += 1;
        Ok(LoginSlot {
            guard: self.clone(),
            addr,
        })
    }

    /// Records an authentication failure of `name` from `addr` at `now`; returns
    /// how long to wait before answering it: nothing for the first, then
    /// `failure_delay` doubling per consecutive failure of the name or the address,
    /// whichever has more.
    pub fn failed(
        &self,
        name: &str,
        addr: Option<IpAddr>,
        now: Instant,
        limits: &GuardLimits,
    ) -> Duration {
        let mut st = self.state();
        st.failures
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < FAILURE_MEMORY);
        if st.failures.len() >= MAX_REMEMBERED {
            if let Some(oldest) = st
                .failures
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                st.failures.remove(&oldest);
            }
        }
        let mut count = 0;
        let name = (!name.is_empty()).then(|| Who::Name(name.to_owned()));
        let keys = [name, addr.map(Who::Addr)];
        for k in keys.into_iter().flatten() {
            let e = st.failures.entry(k).or_insert((0, now));
            e.0 += 1;
            e.1 = now;
            count = count.max(e.0);
        }
        if count < 2 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (count - 2).min(16);
        limits
            .failure_delay
            .saturating_mul(factor)
            .min(limits.failure_delay_max)
    }

    /// A successful login clears the name's and the address's failures.
    pub fn succeeded(&self, name: &str, addr: Option<IpAddr>) {
        let mut st = self.state();
        st.failures.remove(&Who::Name(name.to_owned()));
        if let Some(a) = addr {
            st.failures.remove(&Who::Addr(a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn login_slots_are_bounded_in_all_and_per_address() {
        let g = Arc::new(LoginGuard::default());
        let limits = GuardLimits {
            max_logins: 3,
            max_logins_per_address: 2,
            ..GuardLimits::default()
        };
        let a1 = g.enter(ip(1), &limits).unwrap();
        let _a2 = g.enter(ip(1), &limits).unwrap();
        assert_eq!(
            g.enter(ip(1), &limits).unwrap_err(),
            Refused::TooManyFromAddress
        );
        let _b = g.enter(ip(2), &limits).unwrap();
        assert_eq!(g.enter(ip(3), &limits).unwrap_err(), Refused::TooManyLogins);
        drop(a1);
        assert!(
            g.enter(ip(1), &limits).is_ok(),
            "a slot given back is reusable"
        );
    }

    #[test]
    fn repeated_failures_wait_longer_each_time_and_success_forgives() {
        let g = LoginGuard::default();
        let l = GuardLimits {
            failure_delay: Duration::from_millis(500),
            failure_delay_max: Duration::from_secs(4),
            ..GuardLimits::default()
        };
        let t0 = Instant::now();
        let d: Vec<u64> = (0..6)
            .map(|k| {
                g.failed("iqn.x", ip(1), t0 + Duration::from_secs(k), &l)
                    .as_millis() as u64
            })
            .collect();
        assert_eq!(d, vec![0, 500, 1000, 2000, 4000, 4000]);
        // Another name from the same address: the address's count applies.
        assert_eq!(g.failed("iqn.y", ip(1), t0, &l), Duration::from_secs(4));
        // Another name from another address starts afresh.
        assert_eq!(g.failed("iqn.z", ip(9), t0, &l), Duration::ZERO);
        g.succeeded("iqn.x", ip(1));
        assert_eq!(g.failed("iqn.x", ip(1), t0, &l), Duration::ZERO, "forgiven");
        // Forgotten after FAILURE_MEMORY.
        let later = t0 + FAILURE_MEMORY + Duration::from_secs(10);
        assert_eq!(g.failed("iqn.x", ip(1), later, &l), Duration::ZERO);
    }
}
