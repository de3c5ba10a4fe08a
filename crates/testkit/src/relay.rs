//! The one way out of the Linux test guest. QEMU's user-mode network runs a relay (a
//! `guestfwd` rule's command: the test binary started with `--relay HOST:PORT DIR`)
//! for each connection the guest opens to a portal's guest-side address; it joins that
//! connection, which QEMU hands over as stdin and stdout, to oxtgt on the host's
//! loopback.
//!
//! Both sockets get TCP_NODELAY: with Nagle on the hand-off, every PDU waits for a
//! delayed ACK (about 40 ms). stderr is the guest's connection too, so nothing is ever
//! printed; each connection's start and end (with the bytes moved each way) and any
//! problem go to CONTROL_DIR/relay.log. The test harness cuts a path by
//! killing the relays whose pid files CONTROL_DIR/relay-PORT-PID name, and keeps it cut
//! while CONTROL_DIR/block-PORT exists (a new connection is held open and silent).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::thread;

fn log(dir: &Path, what: &str) {
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("relay.log"))
    {
        let _ = writeln!(f, "oxrelay[{}]: {what}", std::process::id());
    }
}

/// Asks the kernel to acknowledge at once what arrives on `s` next. QEMU's end of the
/// hand-off keeps Nagle on: it holds a second small segment (a PDU's data after its
/// header) until the first is acknowledged, so a delayed ACK here would cost 40 ms a
/// PDU. TCP_QUICKACK does not stick, hence once per read.
fn quickack(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the size passed.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Copies `from` to `to` until either ends; returns the bytes moved.
fn pump(mut from: TcpStream, mut to: TcpStream, quick: bool) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut moved = 0u64;
    loop {
        if quick {
            quickack(&from);
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                moved += n as u64;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
    moved
}

fn run(addr: &str, dir: &Path) -> io::Result<()> {
    let port = addr.rsplit(':').next().unwrap_or("0");
    let block = dir.join(format!("block-{port}"));
    if block.exists() {
        // A cut path drops what is sent, like a pulled cable: the connection stays
        // open and silent until the path is restored, then closes. (Closing at once
        // instead made QEMU's user-mode network close the guest's later
        // connections to this address as soon as they opened.)
        log(dir, &format!("{addr}: path cut, holding a connection"));
        // SAFETY: as below, fd 0 is the guest connection and nothing else owns it.
        let mut guest = unsafe { TcpStream::from_raw_fd(0) };
        guest.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
        let mut sink = [0u8; 4096];
        while block.exists() {
            match guest.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        return Ok(());
    }
    let pid_file: PathBuf = dir.join(format!("relay-{port}-{}", std::process::id()));
    fs::write(&pid_file, b"")?;
    // SAFETY: QEMU starts this process with the guest connection's socket as fd 0;
    // nothing else in this process owns or closes fd 0.
    let guest = unsafe { TcpStream::from_raw_fd(0) };
    let _ = guest.set_nodelay(true);
    let target = TcpStream::connect(addr)?;
    target.set_nodelay(true)?;
    let (g2, t2) = (guest.try_clone()?, target.try_clone()?);
    let local = target.local_addr()?;
    log(dir, &format!("{local} -> {addr}: connected"));
    let up = thread::spawn(move || pump(g2, t2, true));
    let down = pump(target, guest, false);
    let up = up.join().unwrap_or(0);
    log(
        dir,
        &format!("{local} -> {addr}: closed, {up} bytes up, {down} down"),
    );
    let _ = fs::remove_file(pid_file);
    Ok(())
}

/// Relays this process's stdin/stdout connection to `addr` until either side closes;
/// false if that could not start (logged in `dir`).
pub fn relay(addr: &str, dir: &Path) -> bool {
    match run(addr, dir) {
        Ok(()) => true,
        Err(e) => {
            log(dir, &format!("{addr}: {e}"));
            false
        }
    }
}

/// Ends the path's current connections (their relays) and, with `block`, refuses new
/// ones until [`unblock`]. Returns how many relays were stopped.
pub fn cut(dir: &Path, port: u16, block: bool) -> io::Result<usize> {
    if block {
        fs::write(dir.join(format!("block-{port}")), b"")?;
    }
    let prefix = format!("relay-{port}-");
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a pid a relay of ours recorded. A relay removes its
            // file when it ends and this removes the files of those it kills, so a
            // file names a live relay.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                n += 1;
            }
            let _ = fs::remove_file(dir.join(&name));
        }
    }
    Ok(n)
}

/// Lets the path's new connections through again.
pub fn unblock(dir: &Path, port: u16) -> io::Result<()> {
    match fs::remove_file(dir.join(format!("block-{port}"))) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
