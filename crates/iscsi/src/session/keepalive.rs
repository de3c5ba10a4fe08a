//! The connection's keep-alive (RFC 7143 §11.19: a NOP-In with a TTT asks the
//! initiator for a NOP-Out back), sans IO: the time is passed in and the caller
//! sleeps until [`Keepalive::poll_timeout`].
//!
//! After `interval` of silence from the initiator the target pings, and again every
//! `interval` while the silence lasts; after `interval + timeout` of silence the
//! connection is given up. Any PDU from the initiator counts as an answer.

use std::time::{Duration, Instant};

use crate::pdu::{NopIn, BHS_LEN, NO_TAG};

/// What the caller does when the keep-alive timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Send this NOP-In (stamped [`super::stamp::SnMode::Current`]).
    Ping([u8; BHS_LEN]),
    /// The initiator has been silent past the timeout: close the connection.
    Close { idle: Duration },
}

#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    timeout: Duration,
    last_rx: Instant,
    last_ping: Option<Instant>,
    ttt: u32,
}

impl Keepalive {
    /// `None` when `interval` is zero (keep-alive off).
    pub fn new(now: Instant, interval: Duration, timeout: Duration) -> Option<Self> {
        (!interval.is_zero()).then_some(Self {
            interval,
            timeout,
            last_rx: now,
            last_ping: None,
            ttt: 0x4000_0000,
        })
    }

    /// A PDU arrived at `at` (times earlier than one already seen are ignored, so a
    /// reader may report them late).
    pub fn on_receive(&mut self, at: Instant) {
        if at > self.last_rx {
            self.last_rx = at;
            self.last_ping = None;
        }
    }

    /// When [`Keepalive::handle_timeout`] has something to do next.
    pub fn poll_timeout(&self) -> Instant {
        let give_up = self.last_rx + self.interval + self.timeout;
        let ping = match self.last_ping {
            None => self.last_rx + self.interval,
            Some(p) => p + self.interval,
        };
        ping.min(give_up)
    }

    /// What is due at `now`, if anything.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepaliveAction> {
        let idle = now.saturating_duration_since(self.last_rx);
        if idle >= self.interval + self.timeout {
            return Some(KeepaliveAction::Close { idle });
        }
        if now < self.poll_timeout() {
            return None;
        }
        self.last_ping = Some(now);
        // TTTs of pings stay apart from the R2T allocator's range.
        self.ttt = self.ttt.wrapping_add(1) | 0x4000_0000;
        let nop = NopIn {
            lun: 0,
            itt: NO_TAG,
            ttt: self.ttt,
            data_len: 0,
        };
        Some(KeepaliveAction::Ping(nop.encode()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn off_when_interval_is_zero() {
        assert!(Keepalive::new(Instant::now(), Duration::ZERO, S).is_none());
    }

    #[test]
    fn pings_after_silence_then_gives_up() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0, 5 * S, 3 * S).unwrap();
        assert_eq!(k.poll_timeout(), t0 + 5 * S);
        assert_eq!(k.handle_timeout(t0 + 4 * S), None);
        let Some(KeepaliveAction::Ping(bhs)) = k.handle_timeout(t0 + 5 * S) else {
            panic!("expected a ping")
        };
        assert_eq!(bhs[0] & 0x3f, crate::pdu::opcode::NOP_IN);
        assert_eq!(&bhs[16..20], &NO_TAG.to_be_bytes(), "ITT is reserved");
        assert_ne!(
            &bhs[20..24],
            &NO_TAG.to_be_bytes(),
            "TTT asks for an answer"
        );
        // The next event is the give-up time (ping again would be at 10 s).
        assert_eq!(k.poll_timeout(), t0 + 8 * S);
        assert_eq!(k.handle_timeout(t0 + 7 * S), None);
        assert_eq!(
            k.handle_timeout(t0 + 8 * S),
            Some(KeepaliveAction::Close { idle: 8 * S })
        );
    }

    #[test]
    fn any_pdu_resets_the_clock() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0, 5 * S, 30 * S).unwrap();
        assert!(matches!(
            k.handle_timeout(t0 + 5 * S),
            Some(KeepaliveAction::Ping(_))
        ));
        k.on_receive(t0 + 6 * S);
        k.on_receive(t0 + 2 * S); // late report: ignored
        assert_eq!(k.poll_timeout(), t0 + 11 * S);
        assert_eq!(k.handle_timeout(t0 + 10 * S), None);
        // Repeated pings while silent, one per interval, each with a new TTT.
        let Some(KeepaliveAction::Ping(a)) = k.handle_timeout(t0 + 11 * S) else {
            panic!()
        };
        assert_eq!(k.poll_timeout(), t0 + 16 * S);
        let Some(KeepaliveAction::Ping(b)) = k.handle_timeout(t0 + 16 * S) else {
            panic!()
        };
        assert_ne!(a[20..24], b[20..24]);
    }
}
