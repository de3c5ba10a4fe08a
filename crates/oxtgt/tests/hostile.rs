//! Hostile peers beside honest ones: while 16 honest sessions run verified random I/O,
//! other "hosts" (other loopback addresses) open half logins and hold them, send
//! garbage instead of PDUs, answer CHAP with the wrong secret, and send malformed PDUs
//! and random CDBs inside sessions of their own. The honest sessions must see no error
//! and log in on time; their latency is reported beside an idle run; the daemon's
//! memory stays bounded. OXTGT_HOSTILE_SECS sets each phase's length (default 20).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Server, TARGET};
use testkit::load::{self, Endpoint, Rng};

const ATTACKED: &str = "iqn.2026-11.org.oxtgt:attacked";
const SECURE: &str = "iqn.2026-11.org.oxtgt:secure";

const CONFIG: &str = r#"
[server]
login_timeout_secs = 2

[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/honest.img"
size = "256MiB"

# Where the attackers' own sessions send what they like.
[[target]]
name = "iqn.2026-11.org.oxtgt:attacked"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "64MiB"

[[target]]
name = "iqn.2026-11.org.oxtgt:secure"
open_access = true
chap = { user = "secure", secret = "the-right-secret-0" }
[[target.lun]]
id = 0
backstore = "ram"
size = "16MiB"
"#;

/// What the attackers managed to do, so the test knows the attack really ran.
#[derive(Default)]
struct Attacks {
    half_logins: AtomicU64,
    garbage_connections: AtomicU64,
    wrong_chap_refused: AtomicU64,
    bad_pdus: AtomicU64,
    random_cdbs: AtomicU64,
}

fn target_addr(server: &Server) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.port)
}

/// Up to 80 connections from 127.0.0.2 at once, each sending 20 bytes of a Login
/// Request and then nothing: the login timeout (2 s here) and the per-address bound
/// (64) close them, and they are opened again.
fn half_logins(to: SocketAddrV4, stop: &AtomicBool, n: &AtomicU64) {
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Keep the ones the target has not closed yet.
        held.retain(|s| {
            let mut b = [0u8; 64];
            s.set_nonblocking(true).ok();
            match (&*s).read(&mut b) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        while held.len() < 80 {
            let Ok(mut s) = testkit::connect_from(Ipv4Addr::new(127, 0, 0, 2), to) else {
                break;
            };
            let mut bhs = [0u8; 48];
            bhs[0] = 0x43;
            bhs[1] = 0x87;
            let _ = s.write_all(&bhs[..20]);
            held.push(s);
            n.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// From 127.0.0.3: random bytes instead of PDUs, until the target closes.
fn garbage(to: SocketAddrV4, stop: &AtomicBool, n: &AtomicU64) {
    let mut rng = Rng::new(7);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = testkit::connect_from(Ipv4Addr::new(127, 0, 0, 3), to) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let len = 48 + rng.below(4000) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let _ = s.write_all(&junk);
        let mut sink = [0u8; 4096];
        while let Ok(k) = s.read(&mut sink) {
            if k == 0 {
                break;
            }
        }
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// From 127.0.0.4: CHAP logins with the wrong secret, each refused 02/01 (after the
/// growing delay the daemon puts on that name and address).
fn wrong_chap(to: SocketAddrV4, stop: &AtomicBool, n: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = testkit::connect_from(Ipv4Addr::new(127, 0, 0, 4), to) else {
            continue;
        };
        let Ok(mut i) = testkit::Initiator::from_stream(s) else {
            continue;
        };
        if let Ok(r) = i.login_chap(
            "iqn.2026-11.org.example:intruder",
            Some(SECURE),
            "secure",
            b"not-the-secret-00",
            "5",
            None,
        ) {
            assert_eq!(
                (r.status_class, r.status_detail),
                (2, 1),
                "a wrong CHAP answer must be refused"
            );
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// From 127.0.0.5: a proper login to the attacked target, then unknown opcodes,
/// unsolicited Data-Out, random CDBs to random LUNs, and finally a PDU claiming an
/// 8 MiB data segment (the target closes); again.
fn bad_sessions(to: SocketAddrV4, stop: &AtomicBool, pdus: &AtomicU64, cdbs: &AtomicU64) {
    let mut rng = Rng::new(11);
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = testkit::connect_from(Ipv4Addr::new(127, 0, 0, 5), to) else {
            continue;
        };
        let Ok(mut i) = testkit::Initiator::from_stream(s) else {
            continue;
        };
        i.isid[5] = 0xee;
        match i.login(Some(ATTACKED), &[]) {
            Ok(r) if r.status_class == 0 => {}
            _ => continue,
        }
        i.set_read_timeout(Duration::from_secs(5));
        for _ in 0..50 {
            let mut bhs = [0u8; 48];
            bhs[0] = 0x1c + (rng.below(3) as u8);
            bhs[16..20].copy_from_slice(&i.itt().to_be_bytes());
            if i.send(&bhs, &[]).is_err() || i.recv().is_err() {
                break;
            }
            pdus.fetch_add(1, Ordering::Relaxed);
            let d = i.data_out_bhs(0x5555, 0x77, 0, 0, 512, true);
            let _ = i.send(&d, &[0u8; 512]);
            let mut cdb = [0u8; 16];
            for b in cdb.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            // Nothing that formats or sanitizes, whatever the target supports.
            if matches!(cdb[0], 0x04 | 0x48) {
                cdb[0] = 0x00;
            }
            let lun = rng.below(4) as u16;
            let want = (rng.below(8) * 512) as u32;
            let data = vec![0xa5u8; (rng.below(4) * 512) as usize];
            match i.scsi(lun, &cdb, want, (!data.is_empty()).then_some(&data[..])) {
                Ok(_) => {
                    cdbs.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        let mut bhs = [0u8; 48];
        bhs[0] = 0x40;
        bhs[1] = 0x80;
        bhs[5] = 0x7f;
        bhs[20..24].copy_from_slice(&[0xff; 4]);
        let _ = i.send_raw(&bhs);
        pdus.fetch_add(1, Ordering::Relaxed);
    }
}

fn phase(server: &Server, secs: f64) -> (load::Soak, f64) {
    let ep = Endpoint {
        addr: server.addr(),
        target: TARGET.into(),
        lun: 0,
        block_size: 512,
    };
    server.peak_rss_during(|| {
        load::soak(&ep, 16, (256 << 20) / 512, 64, secs).expect("honest sessions ran")
    })
}

#[test]
fn honest_sessions_are_unharmed_by_hostile_peers() {
    let secs: f64 = std::env::var("OXTGT_HOSTILE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0);
    let server = Server::start("hostile", CONFIG);
    let (idle, idle_rss) = phase(&server, secs);
    assert_eq!(idle.errors, 0, "errors without attackers");

    let to = target_addr(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(Attacks::default());
    let mut threads = Vec::new();
    {
        let (s, a) = (stop.clone(), attacks.clone());
        threads.push(std::thread::spawn(move || {
            half_logins(to, &s, &a.half_logins)
        }));
        let (s, a) = (stop.clone(), attacks.clone());
        threads.push(std::thread::spawn(move || {
            garbage(to, &s, &a.garbage_connections)
        }));
        let (s, a) = (stop.clone(), attacks.clone());
        threads.push(std::thread::spawn(move || {
            wrong_chap(to, &s, &a.wrong_chap_refused)
        }));
        let (s, a) = (stop.clone(), attacks.clone());
        threads.push(std::thread::spawn(move || {
            bad_sessions(to, &s, &a.bad_pdus, &a.random_cdbs)
        }));
    }
    // Let the attack reach full strength before the honest sessions log in.
    std::thread::sleep(Duration::from_secs(2));
    let (hostile, hostile_rss) = phase(&server, secs);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("attacker thread");
    }
    let a = &attacks;
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "hostile peers: idle {} ops, p50 {:.2} ms, p99 {:.2} ms; under attack {} ops, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; honest errors {} and {}; attackers: {} half logins, {} garbage connections, {} wrong CHAP answers refused, {} bad PDUs, {} random CDBs; peak RSS {:.1} MiB idle, {:.1} MiB under attack",
        idle.writes + idle.reads,
        idle.p50_us / 1e3,
        idle.p99_us / 1e3,
        hostile.writes + hostile.reads,
        hostile.p50_us / 1e3,
        hostile.p99_us / 1e3,
        hostile.max_us / 1e3,
        idle.errors,
        hostile.errors,
        count(&a.half_logins),
        count(&a.garbage_connections),
        count(&a.wrong_chap_refused),
        count(&a.bad_pdus),
        count(&a.random_cdbs),
        idle_rss,
        hostile_rss,
    );
    assert_eq!(hostile.errors, 0, "honest sessions saw errors under attack");
    for (what, c) in [
        ("half logins", &a.half_logins),
        ("garbage connections", &a.garbage_connections),
        ("wrong CHAP answers", &a.wrong_chap_refused),
        ("bad PDUs", &a.bad_pdus),
        ("random CDBs", &a.random_cdbs),
    ] {
        assert!(count(c) > 0, "the attack did not run: no {what}");
    }
    assert!(hostile_rss < 64.0, "RSS {hostile_rss:.1} MiB under attack");
    // Starvation guard, not a benchmark: a hostile peer holding up others would
    // show as seconds.
    assert!(
        hostile.p99_us < 500_000.0,
        "p99 {:.1} ms under attack",
        hostile.p99_us / 1e3
    );
}
