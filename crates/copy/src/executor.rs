//! The copy manager's own bounded executor: a fixed set of named threads and a
//! bounded queue, so copies neither borrow nor exhaust the daemon's worker threads and
//! a job can outlive the command that started it (background copies).

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Work = Box<dyn FnOnce() + Send>;

/// Threads that run copy jobs, first come first served.
#[derive(Debug)]
pub struct Executor {
    queue: Mutex<Option<SyncSender<Work>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The queue is full: the caller answers INSUFFICIENT RESOURCES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Executor {
    /// `threads` workers, at most `queued` jobs waiting for one.
    #[cfg(test)]
    pub fn new(threads: usize, queued: usize) -> Self {
        Self::with_thread_start(threads, queued, || {})
    }

    /// Like `new`, with `start` run first on each worker thread (the daemon lowers
    /// the threads' CPU priority there; threads a job starts inherit it).
    pub fn with_thread_start(threads: usize, queued: usize, start: fn()) -> Self {
        let (tx, rx) = sync_channel::<Work>(queued);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads.max(1))
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("oxtgt-copy-{i}"))
                    .spawn(move || {
                        start();
                        loop {
                            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            match next {
                                Ok(work) => work(),
                                Err(_) => return,
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        Self {
            queue: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    /// Queues `work`; `Err(Busy)` when the queue is full or the executor stopped.
    pub fn submit(&self, work: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = q.as_ref() else {
            return Err(Busy);
        };
        match tx.try_send(Box::new(work)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

impl Drop for Executor {
    /// Lets queued jobs finish, then joins the workers.
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn runs_jobs_and_refuses_past_the_bound() {
        let ex = Executor::new(1, 1);
        let (gate_tx, gate_rx) = channel::<()>();
        let (done_tx, done_rx) = channel::<u32>();
        let d = done_tx.clone();
        ex.submit(move || {
            gate_rx.recv().unwrap();
            d.send(1).unwrap();
        })
        .unwrap();
        // The worker may not have taken the first job yet: fill until refused.
        let mut queued = 0;
        loop {
            let d = done_tx.clone();
            if ex.submit(move || d.send(2).unwrap()).is_err() {
                break;
            }
            queued += 1;
            assert!(queued <= 2, "bounded queue");
        }
        gate_tx.send(()).unwrap();
        let mut got: Vec<u32> = (0..=queued).map(|_| done_rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got[0], 1);
    }
}
