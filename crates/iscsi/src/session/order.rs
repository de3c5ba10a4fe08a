//! CmdSN ordering (RFC 7143 §4.2.2.1, §3.2.2.1): non-immediate requests are
//! delivered in CmdSN order; one that arrives ahead of ExpCmdSN waits for the gap to
//! fill; one outside `[ExpCmdSN, MaxCmdSN]` is dropped silently; immediate requests
//! bypass the queue and the window.

use std::collections::BTreeMap;

use crate::seq::{CmdSnCheck, CmdWindow};

/// Requests that arrived ahead of ExpCmdSN, by CmdSN.
#[derive(Debug)]
pub struct CmdQueue<T> {
    waiting: BTreeMap<u32, T>,
}

impl<T> Default for CmdQueue<T> {
    fn default() -> Self {
        Self {
            waiting: BTreeMap::new(),
        }
    }
}

/// What became of an offered request.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Deliver it now; `counted` is false only for an immediate request (it takes no
    /// slot in the window). Requests that waited behind it follow from
    /// [`CmdQueue::next_ready`].
    Deliver(T, bool),
    /// Inside the window but ahead of ExpCmdSN: it waits.
    Queued,
    /// Outside the window: dropped, as RFC 7143 says, with no response.
    Dropped(T),
}

impl<T> CmdQueue<T> {
    /// Offers a request. `admit` runs for each counted request as it is admitted,
    /// before ExpCmdSN moves past it (the caller counts it in flight, so MaxCmdSN
    /// never opens beyond the queue depth).
    pub fn offer(
        &mut self,
        window: &mut CmdWindow,
        cmd_sn: u32,
        immediate: bool,
        item: T,
        mut admit: impl FnMut(),
    ) -> Offer<T> {
        if immediate {
            return Offer::Deliver(item, false);
        }
        match window.check(cmd_sn) {
            CmdSnCheck::OutOfWindow => Offer::Dropped(item),
            CmdSnCheck::Ahead => {
                self.waiting.insert(cmd_sn, item);
                Offer::Queued
            }
            CmdSnCheck::InOrder => {
                admit();
                window.advance();
                Offer::Deliver(item, true)
            }
        }
    }

    /// The request that waited for ExpCmdSN, if it is here now: admitted (counted)
    /// and ExpCmdSN advanced past it. Called after each delivery until `None`, so
    /// requests are delivered in CmdSN order without a list being built.
    pub fn next_ready(&mut self, window: &mut CmdWindow, mut admit: impl FnMut()) -> Option<T> {
        if self.waiting.is_empty() {
            return None;
        }
        let next = self.waiting.remove(&window.exp_cmd_sn())?;
        admit();
        window.advance();
        Some(next)
    }

    /// Takes out the first waiting request `pred` selects (ABORT TASK of a command
    /// not yet delivered).
    pub fn take_where(&mut self, pred: impl Fn(&T) -> bool) -> Option<T> {
        let sn = self
            .waiting
            .iter()
            .find_map(|(sn, t)| pred(t).then_some(*sn))?;
        self.waiting.remove(&sn)
    }

    /// Everything still waiting, for teardown.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        std::mem::take(&mut self.waiting).into_values()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}
