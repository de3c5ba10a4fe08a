//! The systemd readiness protocol as a service manager sees it: oxtgt started with
//! NOTIFY_SOCKET sends READY=1 once its portal accepts connections, RELOADING=1
//! (with MONOTONIC_USEC) and READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn notify_socket_hears_ready_reloading_and_stopping() {
    let dir = common::temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let cfg = dir.join("oxtgt.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[target]]\nname = \"{}\"\nopen_access = true\n[[target.lun]]\nid = 0\nbackstore = \"ram\"\nsize = \"1MiB\"\n",
            common::TARGET
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxtgt"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("OXTGT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 256];
        let n = rx
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("a notification: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(), "READY=1");
    // Ready means the portal listens.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("iscsi://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    std::net::TcpStream::connect(&addr).expect("the portal accepts after READY=1");

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let reloading = recv();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MONOTONIC_USEC in {reloading:?}"));
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    assert!(
        usec <= now && now - usec < 20_000_000,
        "{usec} vs now {now}"
    );
    assert_eq!(recv(), "READY=1");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(recv(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
