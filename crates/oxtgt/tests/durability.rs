//! Crash durability: writes acknowledged as durable (FUA, or followed by a
//! SYNCHRONIZE CACHE that returned GOOD) survive kill -9 of the daemon at random
//! moments under load, and an APTPL reservation survives with them.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, TARGET};
use testkit::{cdb, Initiator};

const BS: usize = 4096;
const BLOCKS: u64 = 16384; // 64 MiB
const ROUNDS: usize = 20;
const KEY: u64 = 0x00c0_ffee;

const CONFIG: &str = r#"
[server]
state_dir = "{dir}/state"

[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/lun.img"
size = "64MiB"
block_size = 4096
"#;

/// The contents a write of `lba` in `round` carries: unique per (lba, round).
fn content(lba: u64, round: usize) -> Vec<u8> {
    let seed = (lba as u32).wrapping_mul(2_654_435_761) ^ (round as u32) << 24;
    (0..BS as u32)
        .map(|i| (seed.wrapping_add(i.wrapping_mul(40_503)) >> 7) as u8)
        .collect()
}

fn session(s: &Server, isid: u8) -> Initiator {
    let mut i = Initiator::connect(&s.addr()).unwrap();
    i.isid[5] = isid;
    let r = i.login(Some(TARGET), &[]).unwrap();
    assert_eq!((r.status_class, r.status_detail), (0, 0));
    i
}

fn reservation_holder(i: &mut Initiator) -> Option<u64> {
    let r = i.scsi(0, &cdb::pr_in(1, 64), 64, None).unwrap();
    assert_eq!(r.status, 0);
    let len = u32::from_be_bytes(r.data[4..8].try_into().unwrap());
    (len >= 16).then(|| u64::from_be_bytes(r.data[8..16].try_into().unwrap()))
}

#[test]
fn acknowledged_writes_and_aptpl_reservations_survive_kill_9() {
    let mut s = Server::start("durable", CONFIG);
    let mut i = session(&s, 1);
    // REGISTER with APTPL, then WRITE EXCLUSIVE - REGISTRANTS ONLY: the writers
    // register too, and an unregistered nexus could not write.
    let mut p = cdb::pr_params(0, KEY);
    p[20] = 0x01; // APTPL
    let r = i.scsi(0, &cdb::pr_out(0, 0), 0, Some(&p)).unwrap();
    assert_eq!(r.status, 0, "REGISTER: {:?}", r.sense_code());
    let p = cdb::pr_params(KEY, 0);
    let r = i.scsi(0, &cdb::pr_out(1, 0x05), 0, Some(&p)).unwrap();
    assert_eq!(r.status, 0, "RESERVE: {:?}", r.sense_code());
    drop(i);

    // Every block is written at most once, so what an acknowledged write left is
    // exactly what must be read back.
    let mut order: Vec<u64> = (0..BLOCKS).collect();
    let mut x = 0x9e37_79b9u32;
    for k in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        order.swap(k, x as usize % (k + 1));
    }
    let next = Arc::new(Mutex::new(order.into_iter()));
    let durable: Arc<Mutex<HashMap<u64, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut checked = 0usize;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let (stop, next, durable) = (stop.clone(), next.clone(), durable.clone());
                let mut i = session(&s, 10 + w);
                // REGISTER AND IGNORE EXISTING KEY, with APTPL.
                let mut p = cdb::pr_params(0, KEY + 1 + u64::from(w));
                p[20] = 0x01;
                let r = i.scsi(0, &cdb::pr_out(6, 0), 0, Some(&p)).unwrap();
                assert_eq!(r.status, 0, "writer REGISTER: {:?}", r.sense_code());
                std::thread::spawn(move || {
                    let mut since_sync = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let Some(lba) = next.lock().unwrap().next() else {
                            return;
                        };
                        let fua = lba % 2 == 0;
                        let mut c = cdb::write16(lba, 1);
                        if fua {
                            c[1] |= 0x08;
                        }
                        match i.scsi(0, &c, 0, Some(&content(lba, round))) {
                            Ok(r) if r.status == 0 => {
                                if fua {
                                    durable.lock().unwrap().insert(lba, round);
                                } else {
                                    since_sync.push(lba);
                                }
                            }
                            _ => return, // the daemon died under us
                        }
                        if since_sync.len() >= 8 {
                            let sync = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                            match i.scsi(0, &sync, 0, None) {
                                Ok(r) if r.status == 0 => {
                                    let mut d = durable.lock().unwrap();
                                    for l in since_sync.drain(..) {
                                        d.insert(l, round);
                                    }
                                }
                                _ => return,
                            }
                        }
                    }
                })
            })
            .collect();
        let ms = 50 + (round as u64 * 37) % 250;
        std::thread::sleep(Duration::from_millis(ms));
        s.crash_restart();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            let _ = w.join();
        }
        // After the crash: every durable write is there, and the reservation too.
        let mut i = session(&s, 1);
        assert_eq!(
            reservation_holder(&mut i),
            Some(KEY),
            "round {round}: APTPL reservation lost"
        );
        let d = durable.lock().unwrap().clone();
        for (&lba, &r) in &d {
            let got = i.scsi(0, &cdb::read16(lba, 1), BS as u32, None).unwrap();
            assert_eq!(got.status, 0);
            assert!(
                got.data == content(lba, r),
                "round {round}: acknowledged write at LBA {lba} lost"
            );
        }
        checked = d.len();
    }
    println!("durability: {ROUNDS} kill -9 rounds, {checked} acknowledged writes checked, 0 lost, APTPL reservation kept");
    assert!(checked > 100, "too few writes to mean anything: {checked}");
}
