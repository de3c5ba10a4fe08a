//! A task-management storm: LOGICAL UNIT RESET, ABORT TASK, ABORT TASK SET, CLEAR
//! TASK SET and TARGET WARM RESET in a loop while four sessions write and verify
//! blocks and another runs EXTENDED COPY over and over. Nothing may hang, the daemon
//! must keep serving, and no write acknowledged with GOOD may be lost: each block
//! ends holding its last acknowledged data or that of a later write whose outcome
//! the storm hid (aborted without a response, or answered with a unit attention).
//! OXTGT_TMF_STORM_SECS sets the length (default 15).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, TARGET};
use testkit::cdb;
use testkit::load::{self, Endpoint, Rng};

const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/writes.img"
size = "64MiB"
block_size = 4096
[[target.lun]]
id = 1
backstore = "file"
path = "{dir}/source.img"
size = "64MiB"
[[target.lun]]
id = 2
backstore = "file"
path = "{dir}/copy.img"
size = "64MiB"
"#;

const BS: usize = 4096;
const WRITERS: u8 = 4;
/// Blocks each writer owns, from `writer * REGION`.
const REGION: u64 = 512;

fn block(lba: u64, generation: u32, writer: u8) -> Vec<u8> {
    let word = lba ^ (u64::from(generation) << 40) ^ (u64::from(writer) << 32);
    word.to_le_bytes().repeat(BS / 8)
}

/// What one writer knows of its blocks: the last generation acknowledged with GOOD,
/// and the later ones whose outcome it could not learn.
#[derive(Default, Clone)]
struct Known {
    acked: u32,
    unknown: Vec<u32>,
}

struct Counts {
    acked: AtomicU64,
    hidden: AtomicU64,
    tmfs: AtomicU64,
    copies: AtomicU64,
    copies_stopped: AtomicU64,
}

/// Sessions come from `Endpoint::session(n)`: each thread its own ISID (the same
/// ISID would reinstate, that is end, another thread's session).
fn writer(ep: &Endpoint, w: u8, stop: &AtomicBool, c: &Counts) -> HashMap<u64, Known> {
    let mut ini = ep.session(0x10 + w).expect("writer login");
    ini.set_read_timeout(Duration::from_secs(1));
    let mut rng = Rng::new(u64::from(w) + 40);
    let mut known: HashMap<u64, Known> = HashMap::new();
    let mut generation = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let lba = u64::from(w) * REGION + rng.below(REGION);
        generation += 1;
        let k = known.entry(lba).or_default();
        let data = block(lba, generation, w);
        let outcome = ini
            .start(0, &cdb::write16(lba, 1), 0, &data)
            .and_then(|itt| ini.wait(itt));
        match outcome {
            Ok(r) if r.status == 0 => {
                k.acked = generation;
                k.unknown.clear();
                c.acked.fetch_add(1, Ordering::Relaxed);
            }
            // A unit attention, TASK ABORTED, or no answer at all (an abort by
            // another nexus's TMF, TAS 0): the write may or may not have happened.
            other => {
                k.unknown.push(generation);
                if c.hidden.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!(
                        "writer {w}: {:?}",
                        other.map(|r| (r.status, r.sense_code()))
                    );
                }
            }
        }
    }
    known
}

/// EXTENDED COPY of 16 MiB from LUN 1 to LUN 2, again and again (a copy aborted
/// without an answer costs its session the 20 s read timeout).
fn copier(ep: &Endpoint, stop: &AtomicBool, c: &Counts) {
    while !stop.load(Ordering::Relaxed) {
        match load::xcopy(ep, 1, 2, 16 << 11) {
            Ok(_) => c.copies.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.copies_stopped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn storm(ep: &Endpoint, stop: &AtomicBool, c: &Counts) {
    let mut ini = ep.session(0x20).expect("storm login");
    let mut rng = Rng::new(99);
    while !stop.load(Ordering::Relaxed) {
        let lun = rng.below(3) as u16;
        let response = match rng.below(10) {
            // LOGICAL UNIT RESET: aborts every nexus's tasks on the LU.
            0..=3 => ini.tmf(5, lun, 0xffff_ffff, 0),
            // ABORT TASK of a write of its own that may still be running.
            4..=5 => {
                let sn = ini.cmd_sn;
                let lba = u64::from(WRITERS) * REGION + rng.below(64);
                let data = block(lba, 1, 0xff);
                match ini.start(0, &cdb::write16(lba, 1), 0, &data) {
                    Ok(itt) => ini.tmf(1, 0, itt, sn),
                    Err(e) => Err(e),
                }
            }
            6 => ini.tmf(2, lun, 0xffff_ffff, 0),
            7..=8 => ini.tmf(4, lun, 0xffff_ffff, 0),
            _ => ini.tmf(6, 0, 0xffff_ffff, 0),
        };
        let r = response.expect("the TMF session lost its connection");
        assert!(r <= 5, "TMF response {r}");
        c.tmfs.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20 + rng.below(180)));
    }
}

#[test]
fn a_tmf_storm_loses_no_acknowledged_write_and_hangs_nothing() {
    let secs: u64 = std::env::var("OXTGT_TMF_STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let server = Server::start("tmf-storm", CONFIG);
    let ep = Endpoint {
        addr: server.addr(),
        target: TARGET.into(),
        lun: 0,
        block_size: 512,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts {
        acked: AtomicU64::new(0),
        hidden: AtomicU64::new(0),
        tmfs: AtomicU64::new(0),
        copies: AtomicU64::new(0),
        copies_stopped: AtomicU64::new(0),
    });
    let started = Instant::now();
    let known = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (ep, stop, c) = (&ep, &stop, &counts);
                scope.spawn(move || writer(ep, w, stop, c))
            })
            .collect();
        scope.spawn(|| copier(&ep, &stop, &counts));
        scope.spawn(|| storm(&ep, &stop, &counts));
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        writers
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect::<Vec<_>>()
    });
    // Everything stopped: a copy aborted without an answer waits out its 20 s read
    // timeout at most.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(secs + 45),
        "the storm's sessions took {took:?} to stop"
    );

    // A fresh session (its login clears the unit attentions): the LU serves, and
    // every block is checked.
    let mut check = ep.session(0x30).expect("login after the storm");
    let tur = check.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(
        tur.status,
        0,
        "the LU serves after the storm: {:?}",
        tur.sense_code()
    );
    let (mut checked, mut lost) = (0u64, 0u64);
    for (w, blocks) in known.iter().enumerate() {
        for (&lba, k) in blocks {
            let r = check
                .scsi(0, &cdb::read16(lba, 1), BS as u32, None)
                .unwrap();
            assert_eq!(r.status, 0, "READ of {lba}");
            let may: Vec<Vec<u8>> = std::iter::once(k.acked)
                .chain(k.unknown.iter().copied())
                .map(|g| {
                    if g == 0 {
                        vec![0u8; BS]
                    } else {
                        block(lba, g, w as u8)
                    }
                })
                .collect();
            checked += 1;
            if !may.contains(&r.data) {
                lost += 1;
                if lost <= 5 {
                    eprintln!("block {lba}: not its last acknowledged write (gen {}) nor a later one {:?}", k.acked, k.unknown);
                }
            }
        }
    }
    let c = &counts;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "tmf storm {secs} s: {} TMFs; {} writes acknowledged, {} with hidden outcome; {} copies done, {} stopped; {checked} blocks checked, {lost} lost",
        n(&c.tmfs),
        n(&c.acked),
        n(&c.hidden),
        n(&c.copies),
        n(&c.copies_stopped),
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert!(n(&c.tmfs) > 20, "the storm was too weak");
    assert!(n(&c.acked) > 100, "the writers did little");
}
