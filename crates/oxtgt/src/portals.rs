//! The listening portals: one accept task per address, handing connections to the
//! server loop. A reload binds the new addresses first (so a port in use refuses
//! the whole reload), then stops the removed ones. Sessions that came in through a
//! removed portal keep running until they log out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub struct Portals {
    /// Accepted connections go here.
    conns: mpsc::UnboundedSender<TcpStream>,
    /// Configured address → (bound address, accept task).
    running: BTreeMap<SocketAddr, (SocketAddr, JoinHandle<()>)>,
}

/// Listeners bound for a change not yet committed; dropping it closes them.
pub struct Bound(Vec<(SocketAddr, TcpListener)>);

impl Bound {
    /// The addresses actually bound (port 0 resolved), in configured order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.0
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }
}

impl Portals {
    pub fn new(conns: mpsc::UnboundedSender<TcpStream>) -> Self {
        Self {
            conns,
            running: BTreeMap::new(),
        }
    }

    /// Binds every address of `want` not listened on yet. Any failure binds nothing.
    pub async fn bind_new(&self, want: &[SocketAddr]) -> anyhow::Result<Bound> {
        let mut out = Vec::new();
        for addr in want {
            if self.running.contains_key(addr) || out.iter().any(|(a, _)| a == addr) {
                continue;
            }
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            out.push((*addr, l));
        }
        Ok(Bound(out))
    }

    /// Starts accepting on `bound` and stops every portal not in `want`. Returns
    /// (started, stopped) bound addresses.
    pub fn commit(
        &mut self,
        bound: Bound,
        want: &[SocketAddr],
    ) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let mut started = Vec::new();
        for (addr, l) in bound.0 {
            let local = l.local_addr().unwrap_or(addr);
            let tx = self.conns.clone();
            let task = tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, _)) => {
                            if tx.send(s).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(portal = %local, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
            self.running.insert(addr, (local, task));
            started.push(local);
        }
        let gone: Vec<SocketAddr> = self
            .running
            .keys()
            .filter(|a| !want.contains(a))
            .copied()
            .collect();
        let mut stopped = Vec::new();
        for a in gone {
            if let Some((local, task)) = self.running.remove(&a) {
                task.abort();
                stopped.push(local);
            }
        }
        (started, stopped)
    }

    /// The addresses being listened on (port 0 resolved).
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.running.values().map(|(local, _)| *local).collect()
    }

    /// Stops accepting everywhere (shutdown).
    pub fn stop_all(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.running) {
            task.abort();
        }
    }
}
