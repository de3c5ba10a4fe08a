//! Starting a real oxtgt process for end-to-end tests: a config written to a temp
//! directory, `--listen 127.0.0.1:0`, and the bound port read from its first line.
#![allow(dead_code)]

pub mod cu;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const TARGET: &str = "iqn.2026-11.org.oxtgt:test";

/// Deterministic test data: `len` bytes that differ per offset and per `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A session logged in to [`TARGET`] at `addr` with `keys`; panics on a failed login.
pub fn session_at(addr: &str, keys: &[(&str, &str)]) -> testkit::Initiator {
    let mut i = testkit::Initiator::connect(addr).unwrap();
    let r = i.login(Some(TARGET), keys).unwrap();
    assert_eq!(
        (r.status_class, r.status_detail),
        (0, 0),
        "login failed: {r:?}"
    );
    i
}

/// [`session_at`] on `server`'s first portal.
pub fn session(server: &Server, keys: &[(&str, &str)]) -> testkit::Initiator {
    session_at(&server.addr(), keys)
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// Started with `--listen 127.0.0.1:0` (the default) or on the config's portals.
    pinned: bool,
}

/// A fresh directory under the system temp dir, removed by [`Server`]'s drop.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "oxtgt-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

impl Server {
    /// Starts oxtgt with `config` (TOML; `{dir}` is replaced by a temp directory).
    pub fn start(tag: &str, config: &str) -> Server {
        Self::start_with(tag, config, |_| {})
    }

    /// As [`Self::start`], running `prepare` on the directory first (to create files).
    pub fn start_with(tag: &str, config: &str, prepare: impl FnOnce(&std::path::Path)) -> Server {
        let dir = temp_dir(tag);
        prepare(&dir);
        let cfg = dir.join("oxtgt.toml");
        std::fs::write(&cfg, config.replace("{dir}", dir.to_str().unwrap())).unwrap();
        let (child, port) = spawn(&cfg, true);
        Server {
            child,
            port,
            dir,
            pinned: true,
        }
    }

    /// Starts oxtgt on the portals `config` lists (no `--listen`), so a reload can
    /// change them. `port` is the first portal's.
    pub fn start_on_config_portals(tag: &str, config: &str) -> Server {
        let dir = temp_dir(tag);
        let cfg = dir.join("oxtgt.toml");
        std::fs::write(&cfg, config.replace("{dir}", dir.to_str().unwrap())).unwrap();
        let (child, port) = spawn(&cfg, false);
        Server {
            child,
            port,
            dir,
            pinned: false,
        }
    }

    /// Stops the server (SIGTERM) and starts it again on the same directory and
    /// config; the port may change.
    pub fn restart(&mut self) {
        let st = self.terminate();
        assert!(st.success(), "oxtgt exited with {st}");
        let (child, port) = spawn(&self.dir.join("oxtgt.toml"), self.pinned);
        self.child = child;
        self.port = port;
    }

    /// Kills the server with SIGKILL (a crash: no shutdown, no flush) and starts it
    /// again on the same directory and config; the port may change.
    pub fn crash_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, port) = spawn(&self.dir.join("oxtgt.toml"), self.pinned);
        self.child = child;
        self.port = port;
    }

    /// Rewrites the config (`{dir}` replaced as at start) and sends SIGHUP.
    #[allow(dead_code)]
    pub fn reload(&self, config: &str) {
        let cfg = self.dir.join("oxtgt.toml");
        std::fs::write(&cfg, config.replace("{dir}", self.dir.to_str().unwrap())).unwrap();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }

    pub fn url(&self, lun: u16) -> String {
        format!("iscsi://127.0.0.1:{}/{}/{}", self.port, TARGET, lun)
    }

    /// The server's resident set size in KiB (VmRSS), read from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status of oxtgt");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Runs `f` while sampling the server's resident set every 200 ms; returns what
    /// `f` returned and the peak in MiB.
    pub fn peak_rss_during<T>(&self, f: impl FnOnce() -> T) -> (T, f64) {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let peak = AtomicU64::new(self.rss_kib());
        let done = AtomicBool::new(false);
        let out = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(self.rss_kib(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
            let out = f();
            done.store(true, Ordering::Relaxed);
            out
        });
        (out, peak.load(Ordering::Relaxed) as f64 / 1024.0)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..600 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("oxtgt did not exit within 60 s of SIGTERM");
    }
}

/// A loopback port free at the time of asking, below Linux's ephemeral range
/// (32768-60999), so an outgoing connection cannot take it before oxtgt binds it.
pub fn free_port() -> u16 {
    loop {
        let p = 20000 + (rand::random::<u16>() % 12000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn spawn(cfg: &std::path::Path, pinned: bool) -> (Child, u16) {
    // OXTGT_TEST_BIN: another build of the daemon (scripts/test runs the RBD tests on
    // a copy of the RBD-enabled one while the package build replaces target/release).
    let bin = std::env::var_os("OXTGT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_oxtgt")));
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"]).arg(cfg);
    if pinned {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .env(
            "OXTGT_LOG",
            std::env::var("OXTGT_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn oxtgt");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("oxtgt printed nothing");
    let port = line
        .split("iscsi://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, port)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The body of `GET /metrics` from oxtgt's metrics port.
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        &out[..out.len().min(200)]
    );
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

/// The value of one sample (`name{labels}`) in a scrape.
pub fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

/// `promtool check metrics` on a page, when Prometheus' promtool is installed
/// (scripts/test installs it).
pub fn promtool(page: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var_os("CI").is_none(), "promtool missing in CI");
        eprintln!("promtool not installed: metrics page not linted");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
