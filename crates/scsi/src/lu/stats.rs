//! Per-LU command counters as operators read them: commands, bytes, latency and
//! errors, by command class. The transport records a command once it is answered
//! (whichever path answered it); the I/O counters of [`super::IoStats`] count the
//! medium underneath.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cdb::Command;
use crate::Outcome;

/// Upper bounds of the latency buckets, in microseconds (the last bucket is
/// everything above). From 25 µs (a cached read) to 10 s (a copy without IMMED).
pub const LATENCY_BOUNDS_US: [u64; 18] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

const LATENCY_BOUNDS_NS: [u64; 18] = {
    let mut ns = [0u64; 18];
    let mut i = 0;
    while i < 18 {
        ns[i] = LATENCY_BOUNDS_US[i] * 1000;
        i += 1;
    }
    ns
};

/// What a command is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read = 0,
    Write = 1,
    Other = 2,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Read, Class::Write, Class::Other];

    pub fn of(command: &Command) -> Self {
        match command {
            Command::Read { .. } => Class::Read,
            Command::Write { .. } | Command::WriteVerify { .. } => Class::Write,
            _ => Class::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Other => "other",
        }
    }
}

/// Counters of one command class.
#[derive(Debug, Default)]
pub struct ClassStats {
    pub commands: AtomicU64,
    /// Data bytes moved by commands that completed GOOD.
    pub bytes: AtomicU64,
    /// Commands per latency bucket ([`LATENCY_BOUNDS_US`], then one for the rest).
    pub latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    pub latency_sum_nanos: AtomicU64,
    /// CHECK CONDITIONs by sense key (0-15).
    pub errors: [AtomicU64; 16],
    /// BUSY, RESERVATION CONFLICT, TASK SET FULL: answered, not failed.
    pub refused: AtomicU64,
}

/// Counters of one LU's commands.
#[derive(Debug, Default)]
pub struct CommandStats {
    pub classes: [ClassStats; 3],
}

impl CommandStats {
    pub fn class(&self, c: Class) -> &ClassStats {
        &self.classes[c as usize]
    }

    /// Records one answered command: `bytes` of data moved if it completed GOOD.
    pub fn record(&self, class: Class, took: Duration, bytes: u64, out: &Outcome) {
        let s = &self.classes[class as usize];
        s.commands.fetch_add(1, Ordering::Relaxed);
        // u64 arithmetic only: this runs once per command.
        let nanos = took
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(took.subsec_nanos()));
        let bucket = LATENCY_BOUNDS_NS.partition_point(|&b| b < nanos);
        s.latency[bucket].fetch_add(1, Ordering::Relaxed);
        s.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        match (&out.sense, out.status) {
            (Some(sense), _) => {
                s.errors[usize::from(sense.key.0 & 0x0f)].fetch_add(1, Ordering::Relaxed);
            }
            (None, crate::sense::status::GOOD) => {
                s.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            (None, _) => {
                s.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Asc, Sense};

    #[test]
    fn a_command_lands_in_its_latency_bucket_and_errors_by_sense_key() {
        let s = CommandStats::default();
        s.record(
            Class::Read,
            Duration::from_micros(30),
            4096,
            &Outcome::good(4096),
        );
        s.record(
            Class::Read,
            Duration::from_micros(25),
            4096,
            &Outcome::check(Sense::illegal(Asc::LBA_OUT_OF_RANGE)),
        );
        let r = s.class(Class::Read);
        assert_eq!(r.commands.load(Ordering::Relaxed), 2);
        assert_eq!(r.bytes.load(Ordering::Relaxed), 4096, "only the GOOD one");
        assert_eq!(r.latency[0].load(Ordering::Relaxed), 1, "25 µs is ≤ 25");
        assert_eq!(r.latency[1].load(Ordering::Relaxed), 1, "30 µs is ≤ 50");
        assert_eq!(r.errors[5].load(Ordering::Relaxed), 1, "ILLEGAL REQUEST");
        assert_eq!(s.class(Class::Write).commands.load(Ordering::Relaxed), 0);
    }
}
