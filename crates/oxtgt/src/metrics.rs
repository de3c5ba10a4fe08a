//! Prometheus metrics over HTTP (`server.metrics_listen`, off by default), in the
//! Prometheus text format (0.0.4) written by the `prometheus` crate's encoder,
//! which Prometheus scrapes and `promtool check metrics` checks.
//!
//! Nothing is counted twice: at each scrape a collector reads the counters the
//! data path keeps anyway (per-LU command and I/O counters, the copy manager's
//! per-path bytes, token and copy states, sessions, logins, the buffer pool).
//!
//! Offloaded bytes are exact (the copy manager counts what each path moved).
//! Host-copied bytes cannot be known for sure: a host copy is READs from one LU
//! and WRITEs of the same bytes to another by the same initiator, and oxtgt does
//! not compare data. What is exported is each initiator's bytes read and written
//! (`oxtgt_initiator_data_bytes_total`, never reset while the daemon runs); the
//! dashboard's "host copy, at most" is, per initiator, the smaller of its read and
//! write rates: every host copy is inside it, and it is exact when the initiator
//! does nothing else.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use scsi::lu::stats::{Class, LATENCY_BOUNDS_US};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::pool::BufPool;
use crate::registry::{LoginResult, Registry};

/// What a scrape reads.
pub struct Metrics {
    pub reg: Arc<Registry>,
    pub pool: Arc<BufPool>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const SENSE_KEYS: [&str; 16] = [
    "no_sense",
    "recovered_error",
    "not_ready",
    "medium_error",
    "hardware_error",
    "illegal_request",
    "unit_attention",
    "data_protect",
    "blank_check",
    "vendor_specific",
    "copy_aborted",
    "aborted_command",
    "reserved_c",
    "volume_overflow",
    "miscompare",
    "reserved_f",
];

type Labels = Vec<(&'static str, String)>;

/// Metric families as a scrape builds them.
#[derive(Default)]
struct Out(Vec<MetricFamily>);

fn metric(labels: &Labels) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut p = LabelPair::default();
                p.set_name(k.to_string());
                p.set_value(v.clone());
                p
            })
            .collect(),
    );
    m
}

fn family(name: &str, help: &str, t: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(t);
    f.set_metric(metrics);
    f
}

impl Out {
    /// Adds `f` unless it has no samples (the encoder refuses empty families).
    fn push(&mut self, f: MetricFamily) {
        if !f.get_metric().is_empty() {
            self.0.push(f);
        }
    }

    /// A counter family; `name` ends in `_total` (and the unit before it).
    fn counter(&mut self, name: &str, help: &str, rows: &[(Labels, u64)]) {
        let ms = rows
            .iter()
            .map(|(l, v)| {
                let mut m = metric(l);
                let mut c = proto::Counter::default();
                c.set_value(*v as f64);
                m.set_counter(c);
                m
            })
            .collect();
        self.push(family(name, help, MetricType::COUNTER, ms));
    }

    fn gauge(&mut self, name: &str, help: &str, rows: &[(Labels, i64)]) {
        let ms = rows
            .iter()
            .map(|(l, v)| {
                let mut m = metric(l);
                let mut g = proto::Gauge::default();
                g.set_value(*v as f64);
                m.set_gauge(g);
                m
            })
            .collect();
        self.push(family(name, help, MetricType::GAUGE, ms));
    }
}

impl Metrics {
    fn collect(&self) -> Vec<MetricFamily> {
        let mut e = Out::default();
        let model = self.reg.model();
        let mut lus: Vec<_> = model.lus().collect();
        lus.sort_by(|a, b| a.0.cmp(b.0));
        let l = |name: &str| -> Labels { vec![("lu", name.to_owned())] };

        // Commands, bytes, latency, errors: per LU and class.
        let mut cmds = Vec::new();
        let mut bytes = Vec::new();
        let mut errors = Vec::new();
        let mut refused = Vec::new();
        for (name, _, lu) in &lus {
            let st = lu.command_stats();
            for c in Class::ALL {
                let s = st.class(c);
                let mut lab = l(name);
                lab.push(("class", c.name().into()));
                cmds.push((lab.clone(), s.commands.load(Ordering::Relaxed)));
                bytes.push((lab.clone(), s.bytes.load(Ordering::Relaxed)));
                refused.push((lab.clone(), s.refused.load(Ordering::Relaxed)));
                for (k, n) in s.errors.iter().enumerate() {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 || k == 0xe {
                        let mut lab = lab.clone();
                        lab.push(("sense_key", SENSE_KEYS[k].into()));
                        errors.push((lab, n));
                    }
                }
            }
        }
        e.counter(
            "oxtgt_lu_commands_total",
            "SCSI commands answered, by LU and class (read, write, other).",
            &cmds,
        );
        e.counter(
            "oxtgt_lu_data_bytes_total",
            "Data moved by commands that completed GOOD.",
            &bytes,
        );
        e.counter(
            "oxtgt_lu_command_errors_total",
            "CHECK CONDITION answers by sense key (miscompare: COMPARE AND WRITE / ATS failures).",
            &errors,
        );
        e.counter(
            "oxtgt_lu_commands_refused_total",
            "BUSY, RESERVATION CONFLICT and TASK SET FULL answers.",
            &refused,
        );
        let mut hist = Vec::new();
        for (name, _, lu) in &lus {
            let st = lu.command_stats();
            for c in Class::ALL {
                let s = st.class(c);
                let mut cumulative = 0;
                let buckets: Vec<proto::Bucket> = LATENCY_BOUNDS_US
                    .iter()
                    .zip(&s.latency)
                    .map(|(us, n)| {
                        cumulative += n.load(Ordering::Relaxed);
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*us as f64 / 1e6);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect();
                let count = cumulative + s.latency[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
                let mut h = proto::Histogram::default();
                h.set_bucket(buckets);
                h.set_sample_count(count);
                h.set_sample_sum(s.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
                let mut m = metric(&vec![("lu", name.to_string()), ("class", c.name().into())]);
                m.set_histogram(h);
                hist.push(m);
            }
        }
        e.push(family(
            "oxtgt_lu_command_duration_seconds",
            "Time from a command's arrival to its answer.",
            MetricType::HISTOGRAM,
            hist,
        ));

        // The medium underneath: the initiators' I/O and the copy engine's, apart.
        let mut medium = Vec::new();
        let mut cap = Vec::new();
        let mut alloc = Vec::new();
        let mut unmap = Vec::new();
        for (name, _, lu) in &lus {
            let io = lu.io_stats().snapshot();
            for (origin, dir, v) in [
                ("command", "read", io.read_bytes),
                ("command", "write", io.write_bytes),
                ("copy", "read", io.copy_read_bytes),
                ("copy", "write", io.copy_write_bytes),
            ] {
                let mut lab = l(name);
                lab.push(("origin", origin.into()));
                lab.push(("direction", dir.into()));
                medium.push((lab, v));
            }
            unmap.push((l(name), io.unmap_bytes));
            cap.push((
                l(name),
                (lu.num_blocks() * u64::from(lu.block_size())) as i64,
            ));
            if let Some(a) = lu.backstore().allocated() {
                alloc.push((l(name), a as i64));
            }
        }
        e.counter("oxtgt_lu_medium_bytes_total", "Bytes read from and written to each LU's backstore, by origin (initiator commands or the copy engine).", &medium);
        e.counter(
            "oxtgt_lu_deallocated_bytes_total",
            "Bytes deallocated or zeroed by UNMAP and WRITE SAME.",
            &unmap,
        );
        e.gauge("oxtgt_lu_capacity_bytes", "LU capacity.", &cap);
        e.gauge(
            "oxtgt_lu_allocated_bytes",
            "Storage the LU's data occupies (thin use).",
            &alloc,
        );

        // Copy offload: bytes by path and command, copies and tokens.
        let mut paths = Vec::new();
        let mut started = Vec::new();
        let mut failed = Vec::new();
        let mut tok_created = Vec::new();
        let mut tok_ended = Vec::new();
        let mut tok_used = Vec::new();
        for (name, _, lu) in &lus {
            let c = self.reg.copy.counters(&lu.identity().naa);
            for (command, p) in [
                ("extended_copy", &c.paths),
                ("write_using_token", &c.token_paths),
            ] {
                for (path, v) in [
                    ("reflink", &p.reflink),
                    ("copy_file_range", &p.copy_file_range),
                    ("memcpy", &p.memcpy),
                    ("shared", &p.shared),
                    ("copy_from", &p.copy_from),
                    ("bounce", &p.bounce),
                ] {
                    let mut lab = l(name);
                    lab.push(("command", command.into()));
                    lab.push(("path", path.into()));
                    paths.push((lab, v.load(Ordering::Relaxed)));
                }
            }
            started.push((l(name), c.started.load(Ordering::Relaxed)));
            failed.push((l(name), c.failed.load(Ordering::Relaxed)));
            tok_created.push((l(name), c.tokens_created.load(Ordering::Relaxed)));
            tok_used.push((l(name), c.tokens_used.load(Ordering::Relaxed)));
            for (how, v) in [
                ("expired", &c.tokens_expired),
                ("cancelled", &c.tokens_cancelled),
                ("deleted", &c.tokens_deleted),
            ] {
                let mut lab = l(name);
                lab.push(("how", how.into()));
                tok_ended.push((lab, v.load(Ordering::Relaxed)));
            }
        }
        e.counter("oxtgt_offload_bytes_total", "Bytes copied inside the target, by destination LU, command and path (copy_from: whole objects copied by the Ceph cluster; bounce: through a buffer in oxtgt).", &paths);
        e.counter("oxtgt_copies_started_total", "EXTENDED COPY, POPULATE TOKEN and WRITE USING TOKEN operations started, by the LU they were sent to.", &started);
        e.counter(
            "oxtgt_copies_failed_total",
            "Copy operations that ended with an error.",
            &failed,
        );
        let copies = self.reg.copy.copies();
        let states = ["running", "done", "failed", "aborted"];
        let by_state: Vec<(Labels, i64)> = states
            .iter()
            .map(|s| {
                (
                    vec![("state", s.to_string())],
                    copies.iter().filter(|c| c.state == *s).count() as i64,
                )
            })
            .collect();
        e.gauge(
            "oxtgt_copies",
            "Copies running, and ended ones whose results are still held.",
            &by_state,
        );
        e.counter(
            "oxtgt_rod_tokens_created_total",
            "ROD tokens made by POPULATE TOKEN, by source LU.",
            &tok_created,
        );
        e.counter(
            "oxtgt_rod_tokens_ended_total",
            "ROD tokens ended, by how.",
            &tok_ended,
        );
        e.counter(
            "oxtgt_rod_tokens_used_total",
            "WRITE USING TOKEN commands, by destination LU.",
            &tok_used,
        );
        e.gauge(
            "oxtgt_rod_tokens_live",
            "Live ROD tokens.",
            &[(vec![], self.reg.copy.tokens.live() as i64)],
        );

        // Sessions, initiators and logins.
        let sessions = self.reg.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut per_target: HashMap<&str, i64> = HashMap::new();
        for (_, _, target) in sessions.keys() {
            *per_target.entry(target.as_str()).or_default() += 1;
        }
        let mut rows: Vec<(Labels, i64)> = per_target
            .iter()
            .map(|(t, n)| (vec![("target", t.to_string())], *n))
            .collect();
        drop(sessions);
        rows.sort();
        e.gauge(
            "oxtgt_sessions",
            "Logged-in normal sessions, by target.",
            &rows,
        );
        let mut data: Vec<(Labels, u64)> = Vec::new();
        let mut cmds: Vec<(Labels, u64)> = Vec::new();
        for (i, s) in self.reg.initiators() {
            let lab = |d: &str| vec![("initiator", i.clone()), ("direction", d.to_string())];
            data.push((lab("read"), s.read_bytes.load(Ordering::Relaxed)));
            data.push((lab("write"), s.write_bytes.load(Ordering::Relaxed)));
            cmds.push((
                vec![("initiator", i.clone())],
                s.commands.load(Ordering::Relaxed),
            ));
        }
        data.sort();
        cmds.sort();
        e.counter(
            "oxtgt_initiator_data_bytes_total",
            "Data read and written by each initiator's commands that completed GOOD.",
            &data,
        );
        e.counter(
            "oxtgt_initiator_commands_total",
            "Commands answered, by initiator.",
            &cmds,
        );
        let logins: Vec<(Labels, u64)> = LoginResult::ALL
            .iter()
            .map(|r| {
                (
                    vec![("result", r.name().to_string())],
                    self.reg.logins.0[*r as usize].load(Ordering::Relaxed),
                )
            })
            .collect();
        e.counter("oxtgt_logins_total", "Logins by how they ended.", &logins);

        // The buffer pool.
        e.gauge(
            "oxtgt_buffer_pool_retained_bytes",
            "Bytes of I/O buffers kept for reuse.",
            &[(vec![], self.pool.retained_bytes() as i64)],
        );
        e.counter(
            "oxtgt_buffer_pool_gets_total",
            "Buffer requests, served from the pool (hit) or allocated (miss).",
            &[
                (
                    vec![("result", "hit".into())],
                    self.pool.hits.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "miss".into())],
                    self.pool.misses.load(Ordering::Relaxed),
                ),
            ],
        );
        e.0
    }
}

/// The page at `/metrics`.
pub fn render(m: &Metrics) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&m.collect(), &mut out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` on `listener` until dropped. Requests are read with a
/// deadline and a size bound; anything else gets 404 or 405.
pub async fn serve(listener: TcpListener, m: Arc<Metrics>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let m = m.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(head, Ok(Ok(()))) {
                return;
            }
            let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") => {
                    let m2 = m.clone();
                    let body = tokio::task::spawn_blocking(move || render(&m2))
                        .await
                        .unwrap_or_default();
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
                }
                ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
                _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
    }
}
