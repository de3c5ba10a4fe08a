//! Starting a real oxtgt process for end-to-end tests: a config written to a temp
//! directory, `--listen 127.0.0.1:0`, and the bound port read from its first line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const TARGET: &str = "iqn.2026-11.org.oxtgt:test";

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
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
        let (child, port) = spawn(&cfg);
        Server { child, port, dir }
    }

    /// Stops the server (SIGTERM) and starts it again on the same directory and
    /// config; the port may change.
    pub fn restart(&mut self) {
        let st = self.terminate();
        assert!(st.success(), "oxtgt exited with {st}");
        let (child, port) = spawn(&self.dir.join("oxtgt.toml"));
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

fn spawn(cfg: &std::path::Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxtgt"))
        .args(["serve", "--config"])
        .arg(cfg)
        .args(["--listen", "127.0.0.1:0"])
        .env("OXTGT_LOG", "warn")
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
