//! Operating a running daemon through `oxtgt ctl`: live changes while 8 sessions
//! do verified random I/O, reload from an edited file, a broken reload, logout,
//! `save` and a restart that reproduces the model, and the metrics page.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, promtool, sample, scrape, Server};
use serde_json::Value;
use testkit::{cdb, Initiator};

const IO: &str = "iqn.2026-11.org.oxtgt:io";
const OPS: &str = "iqn.2026-11.org.oxtgt:ops";
const NEW: &str = "iqn.2026-11.org.oxtgt:new";
const IO_HOST: &str = "iqn.2026-11.org.example:io";
const PROBE: &str = "iqn.2026-11.org.example:probe";
const PROBE2: &str = "iqn.2026-11.org.example:probe2";

fn config(metrics: u16) -> String {
    format!(
        r#"
[server]
admin_socket = "{{dir}}/run/oxtgt.sock"
metrics_listen = "127.0.0.1:{metrics}"
state_dir = "{{dir}}/state"
[[lu]]
name = "a"
backstore = "file"
path = "{{dir}}/a.img"
size = "32MiB"
[[lu]]
name = "b"
backstore = "file"
path = "{{dir}}/b.img"
size = "32MiB"
[[lu]]
name = "c"
backstore = "file"
path = "{{dir}}/c.img"
size = "8MiB"
[[target]]
name = "{IO}"
[[target.lun]]
id = 0
lu = "a"
[[target.lun]]
id = 1
lu = "b"
[[target.acl]]
initiator = "{IO_HOST}"
map = {{ 0 = 0, 1 = 1 }}
[[target]]
name = "{OPS}"
open_access = true
[[target.lun]]
id = 0
lu = "c"
"#
    )
}

/// Runs `oxtgt ctl --json ARGS`; returns its exit code and the JSON it printed.
fn ctl(s: &Server, args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_oxtgt"))
        .arg("ctl")
        .arg("--socket")
        .arg(s.dir.join("run/oxtgt.sock"))
        .arg("--json")
        .args(args)
        .output()
        .expect("run oxtgt ctl");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

fn ok(s: &Server, args: &[&str]) -> Value {
    let (code, v) = ctl(s, args);
    assert_eq!(code, 0, "oxtgt ctl {args:?} → {v}");
    v
}

/// `oxtgt ctl lu add` of a named file LU `<dir>/<name>.img` at `lun` of `target`.
fn add_file_lu(s: &Server, target: &str, lun: u16, name: &str, size: &str) {
    let path = s.dir.join(format!("{name}.img"));
    let lun = lun.to_string();
    ok(
        s,
        &[
            "lu",
            "add",
            "--target",
            target,
            "--lun",
            &lun,
            "--name",
            name,
            "--backstore",
            "file",
            "--path",
            path.to_str().unwrap(),
            "--size",
            size,
        ],
    );
}

fn login(addr: &str, initiator: &str, target: &str, isid: u8) -> Result<Initiator, (u8, u8)> {
    let mut i = Initiator::connect(addr).unwrap();
    i.isid[5] = isid;
    let r = i.login_as(initiator, Some(target), &[]).unwrap();
    if (r.status_class, r.status_detail) != (0, 0) {
        return Err((r.status_class, r.status_detail));
    }
    Ok(i)
}

fn report_luns(i: &mut Initiator) -> Vec<u16> {
    // The first command after a change may report it.
    for _ in 0..3 {
        let r = i.scsi(0, &cdb::report_luns(4096), 4096, None).unwrap();
        if r.status == 0 {
            let n = u32::from_be_bytes(r.data[..4].try_into().unwrap()) as usize / 8;
            return (0..n)
                .map(|k| u16::from_be_bytes([r.data[8 + 8 * k] & 0x3f, r.data[9 + 8 * k]]))
                .collect();
        }
    }
    panic!("REPORT LUNS keeps failing");
}

/// Sends TEST UNIT READY to `lun` until it answers GOOD; returns the unit
/// attentions it reported on the way.
fn drain_uas(i: &mut Initiator, lun: u16) -> Vec<(u8, u8, u8)> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = i.scsi(lun, &cdb::TEST_UNIT_READY, 0, None).unwrap();
        match r.sense_code() {
            None if r.status == 0 => return seen,
            Some(c) if c.0 == 6 => seen.push(c),
            other => panic!("TUR on LUN {lun}: {other:?}"),
        }
    }
    panic!("LUN {lun} keeps reporting unit attentions: {seen:?}");
}

/// Consumes the unit attentions every LUN of the session reports.
fn settle(i: &mut Initiator) {
    for lun in report_luns(i) {
        drain_uas(i, lun);
    }
}

/// What the I/O sessions saw.
#[derive(Default)]
struct IoLog {
    errors: Vec<String>,
    /// Unit attentions by LUN.
    uas: BTreeMap<u16, BTreeSet<(u8, u8)>>,
}

/// One session writing stamped 4 KiB blocks at random in its own region of its
/// LUN and reading back ones it wrote, until `stop`.
fn io_session(
    addr: String,
    k: u8,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    log: Arc<Mutex<IoLog>>,
) {
    let mut i = login(&addr, IO_HOST, IO, 10 + k).expect("io login");
    let lun = u16::from(k % 2);
    let base = u32::from(k / 2) * 8192; // blocks of 512 B: 4 MiB per session
    let mut written: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seq = 0u64;
    let fail = |log: &Mutex<IoLog>, m: String| log.lock().unwrap().errors.push(m);
    let run = |i: &mut Initiator, c: &[u8], read: u32, data: Option<&[u8]>| {
        for _ in 0..10 {
            let r = match i.scsi(lun, c, read, data) {
                Ok(r) => r,
                Err(e) => return Err(format!("session {k}: {e}")),
            };
            match r.sense_code() {
                Some((6, asc, ascq)) => {
                    log.lock()
                        .unwrap()
                        .uas
                        .entry(lun)
                        .or_default()
                        .insert((asc, ascq));
                    continue;
                }
                _ if r.status == 0 => return Ok(r.data),
                other => {
                    return Err(format!(
                        "session {k} LUN {lun}: status {} {other:?}",
                        r.status
                    ))
                }
            }
        }
        Err(format!("session {k}: unit attentions without end"))
    };
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let slot = (rand::random::<u32>() % 1024) * 8;
        let mut data = vec![0u8; 4096];
        for (n, chunk) in data.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(
                &((seq << 16) | (u64::from(k) << 8) | (n as u64 % 256)).to_be_bytes(),
            );
        }
        if let Err(e) = run(&mut i, &cdb::write10(base + slot, 8), 0, Some(&data)) {
            fail(&log, e);
            return;
        }
        written.insert(slot, seq);
        let (&check, &stamp) = written
            .range(rand::random::<u32>() % 8192..)
            .next()
            .unwrap_or((&slot, &seq));
        match run(&mut i, &cdb::read10(base + check, 8), 4096, None) {
            Ok(got) => {
                let want = (stamp << 16) | (u64::from(k) << 8);
                let first = u64::from_be_bytes(got[..8].try_into().unwrap());
                if first != want {
                    fail(
                        &log,
                        format!("session {k}: block {check} holds {first:x}, wrote {want:x}"),
                    );
                    return;
                }
            }
            Err(e) => {
                fail(&log, e);
                return;
            }
        }
        ops.fetch_add(2, Ordering::Relaxed);
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sessions_of(s: &Server, initiator: &str) -> usize {
    ok(s, &["list"])["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["initiator"] == initiator)
        .count()
}

#[test]
fn live_changes_while_eight_sessions_do_verified_io() {
    let metrics = free_port();
    let mut s = Server::start("admin", &config(metrics));
    let addr = s.addr();
    let socket = s.dir.join("run/oxtgt.sock");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "admin socket mode");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let log = Arc::new(Mutex::new(IoLog::default()));
    let workers: Vec<_> = (0..8u8)
        .map(|k| {
            let (a, st, o, l) = (addr.clone(), stop.clone(), ops.clone(), log.clone());
            std::thread::spawn(move || io_session(a, k, st, o, l))
        })
        .collect();
    wait_until("I/O to start", || ops.load(Ordering::Relaxed) > 200);
    let page0 = scrape(metrics);
    promtool(&page0);

    let mut probe = login(&addr, PROBE, OPS, 1).unwrap();
    assert_eq!(report_luns(&mut probe), vec![0]);
    let status = ok(&s, &["status"]);
    assert_eq!(status["sessions"], 9, "{status}");

    // Add a named LU to the open target: the probe's map changes.
    add_file_lu(&s, OPS, 1, "d", "16MiB");
    assert_eq!(drain_uas(&mut probe, 0), vec![(6, 0x3f, 0x0e)]);
    assert_eq!(report_luns(&mut probe), vec![0, 1]);
    settle(&mut probe);
    let w = probe
        .scsi(1, &cdb::write10(0, 8), 0, Some(&[0xd1; 4096]))
        .unwrap();
    assert_eq!(w.status, 0, "{:?}", w.sense_code());
    // ... and map it a second time.
    ok(&s, &["lun", "map", OPS, "2", "d"]);
    assert_eq!(drain_uas(&mut probe, 0), vec![(6, 0x3f, 0x0e)]);
    assert_eq!(report_luns(&mut probe), vec![0, 1, 2]);
    settle(&mut probe);
    let r = probe.scsi(2, &cdb::read10(0, 8), 4096, None).unwrap();
    assert_eq!(r.data, vec![0xd1; 4096], "one LU at two LUNs");

    // A refused change says why and changes nothing.
    let (code, v) = ctl(&s, &["lun", "map", OPS, "1", "d"]);
    assert_eq!(code, 1);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("already has LUN 1"),
        "{v}"
    );

    // Remove LU c (LUN 0 of the open target): gone for the probe.
    let v = ok(&s, &["lu", "remove", "c"]);
    assert_eq!(v["removed"][0]["lu"], "c");
    assert_eq!(v["removed"][0]["commands_running"], 0);
    assert_eq!(v["removed"][0]["copies_running"], 0);
    assert_eq!(drain_uas(&mut probe, 1), vec![(6, 0x3f, 0x0e)]);
    assert_eq!(report_luns(&mut probe), vec![1, 2]);
    let r = probe.scsi(0, &cdb::read10(0, 1), 512, None).unwrap();
    assert_eq!(r.sense_code(), Some((5, 0x25, 0)), "LU NOT SUPPORTED");

    // Give a second host access to the I/O target: refused before, allowed after.
    assert_eq!(login(&addr, PROBE2, IO, 2).err(), Some((2, 2)));
    ok(&s, &["acl", "add", IO, PROBE2, "--map", "0=1"]);
    let mut probe2 = login(&addr, PROBE2, IO, 2).expect("probe2 admitted");
    assert_eq!(report_luns(&mut probe2), vec![0]);

    // Grow LU a under the I/O: its sessions get CAPACITY DATA HAS CHANGED.
    let v = ok(&s, &["lu", "resize", "a", "64MiB"]);
    assert_eq!(v["resized"][0][1], (64 << 20) / 512);

    // Reload from an edited file: save what runs, add a target to the file.
    ok(&s, &["save"]);
    let saved = std::fs::read_to_string(s.dir.join("oxtgt.toml")).unwrap();
    let edited = format!(
        "{saved}\n[[target]]\nname = \"{NEW}\"\nopen_access = true\n[[target.lun]]\nid = 0\nlu = \"d\"\n"
    );
    std::fs::write(s.dir.join("oxtgt.toml"), &edited).unwrap();
    let v = ok(&s, &["reload"]);
    assert_eq!(v["reused"], v["lus"], "no LU rebuilt: {v}");
    let mut n = login(&addr, PROBE, NEW, 3).expect("new target serves");
    let r = n.scsi(0, &cdb::read10(0, 8), 4096, None).unwrap();
    assert_eq!(r.data, vec![0xd1; 4096]);

    // A broken file: every error reported, nothing applied.
    std::fs::write(
        s.dir.join("oxtgt.toml"),
        edited
            .replacen("backstore = \"file\"", "backstore = \"floppy\"", 1)
            .replace(&format!("name = \"{NEW}\""), "name = \"bad name\""),
    )
    .unwrap();
    let (code, v) = ctl(&s, &["reload"]);
    assert_eq!(code, 1, "{v}");
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(errors.len() >= 2, "every error: {errors:?}");
    assert!(
        errors.iter().all(|e| e.contains("oxtgt.toml:")),
        "file and line: {errors:?}"
    );
    assert_eq!(report_luns(&mut probe), vec![1, 2], "nothing changed");
    std::fs::write(s.dir.join("oxtgt.toml"), &edited).unwrap();

    // Taking the ACL entry away logs probe2 out (Async Message, then the end).
    ok(&s, &["acl", "remove", IO, PROBE2]);
    wait_until("probe2 to be logged out", || {
        probe2.scsi(0, &cdb::TEST_UNIT_READY, 0, None).is_err()
    });
    assert!(
        probe2.async_events.contains(&1),
        "asked to log out: {:?}",
        probe2.async_events
    );
    wait_until("probe2's session to end", || sessions_of(&s, PROBE2) == 0);
    // And an operator can log a session out by initiator name.
    let v = ok(&s, &["session", "logout", "--initiator", PROBE]);
    assert_eq!(v["sessions"], 2);
    wait_until("probe sessions to end", || sessions_of(&s, PROBE) == 0);

    // The I/O ran all along.
    let before = ops.load(Ordering::Relaxed);
    wait_until("more I/O", || ops.load(Ordering::Relaxed) > before + 200);
    let page1 = scrape(metrics);
    promtool(&page1);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let log = log.lock().unwrap();
    assert!(log.errors.is_empty(), "I/O errors: {:?}", log.errors);
    assert_eq!(log.uas.get(&1), None, "LUN 1 (LU b) was never changed");
    assert_eq!(
        log.uas.get(&0).cloned().unwrap_or_default(),
        BTreeSet::from([(0x2a, 0x09)]),
        "LUN 0 (LU a) grew: CAPACITY DATA HAS CHANGED only"
    );
    eprintln!(
        "admin: {} verified I/O commands across the changes, 0 errors",
        ops.load(Ordering::Relaxed)
    );

    // Metrics moved by what the I/O did: writes on a and b, in bytes.
    let written = |p: &str, lu: &str| {
        sample(
            p,
            &format!("oxtgt_lu_data_bytes_total{{lu=\"{lu}\",class=\"write\"}}"),
        )
    };
    for lu in ["a", "b"] {
        assert!(
            written(&page1, lu) > written(&page0, lu),
            "LU {lu} write bytes grew"
        );
        assert_eq!(written(&page1, lu) % 4096.0, 0.0, "whole 4 KiB writes");
    }
    // With the I/O stopped the counters hold still: per initiator = per LU.
    let page2 = scrape(metrics);
    let io_written = sample(
        &page2,
        &format!("oxtgt_initiator_data_bytes_total{{initiator=\"{IO_HOST}\",direction=\"write\"}}"),
    );
    assert_eq!(
        io_written,
        written(&page2, "a") + written(&page2, "b"),
        "per initiator = per LU"
    );
    assert!(sample(&page1, "oxtgt_logins_total{result=\"not_authorized\"}") >= 1.0);

    // What an administrator reads without --json.
    let human = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_oxtgt"))
            .arg("ctl")
            .arg("--socket")
            .arg(s.dir.join("run/oxtgt.sock"))
            .args(args)
            .output()
            .expect("run oxtgt ctl");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let st = human(&["status"]);
    assert!(st.contains("3 targets, 3 LUs, 0 sessions"), "{st}");
    let lus = human(&["list", "lus"]);
    let row = lus
        .lines()
        .find(|l| l.trim_start().starts_with("a "))
        .unwrap_or_default();
    assert!(row.contains("64.0 MiB") && row.contains("a.img"), "{lus}");
    assert!(!lus.contains("SESSIONS"), "only what was asked for: {lus}");

    // save + restart reproduces the model.
    let model = |s: &Server| {
        let l = ok(s, &["list"]);
        let lus: Vec<Value> = l["lus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| serde_json::json!([x["name"], x["size_bytes"], x["path"], x["naa"]]))
            .collect();
        (l["targets"].clone(), lus)
    };
    ok(&s, &["save"]);
    let before = model(&s);
    s.restart();
    assert_eq!(model(&s), before, "the saved model after a restart");
    let mut io = login(&s.addr(), IO_HOST, IO, 30).unwrap();
    let r = io.scsi(0, &cdb::read_capacity16(32), 32, None).unwrap();
    assert_eq!(
        u64::from_be_bytes(r.data[..8].try_into().unwrap()) + 1,
        (64 << 20) / 512
    );
}

/// Removing an LU while a copy into it runs: it leaves every LUN map at once, the
/// answer says how many commands were still running when the wait ended (exit 3
/// for `--timeout 0`), the copy still finishes GOOD; with a long enough timeout
/// the removal waits for it and reports it drained.
#[test]
fn removing_an_lu_waits_for_its_running_copy_or_says_it_did_not() {
    let cfg = format!(
        r#"
[server]
admin_socket = "{{dir}}/run/oxtgt.sock"
[[lu]]
name = "src"
backstore = "ram"
size = "64MiB"
[[lu]]
name = "dst"
backstore = "file"
path = "{{dir}}/dst.img"
size = "64MiB"
[[target]]
name = "{OPS}"
open_access = true
[[target.lun]]
id = 0
lu = "src"
[[target.lun]]
id = 1
lu = "dst"
"#
    );
    let s = Server::start("drain", &cfg);
    let addr = s.addr();
    let mut i = login(&addr, PROBE, OPS, 1).unwrap();
    settle(&mut i);
    let chunk = vec![0x5au8; 1 << 20];
    for mb in 0..32u32 {
        let r = i
            .scsi(0, &cdb::write10(mb * 2048, 2048), 0, Some(&chunk))
            .unwrap();
        assert_eq!(r.status, 0);
    }
    let (src, dst) = (
        testkit::xcopy::naa(&mut i, 0).unwrap(),
        testkit::xcopy::naa(&mut i, 1).unwrap(),
    );
    // 64 segments of 32 MiB, all onto the same destination range: 2 GiB of writes.
    let segs: Vec<Vec<u8>> = (0..64)
        .map(|_| testkit::xcopy::seg_blocks(0, 1, 0xffff, 0, 0, false))
        .collect();
    let list = testkit::xcopy::list(
        1,
        0,
        &[
            testkit::xcopy::cscd(&src, 512),
            testkit::xcopy::cscd(&dst, 512),
        ],
        &segs,
    );
    for (round, timeout) in [(0, "0"), (1, "120")] {
        if round == 1 {
            add_file_lu(&s, OPS, 1, "dst", "64MiB");
            settle(&mut i);
        }
        let started = Instant::now();
        let copy = std::thread::spawn({
            let addr = addr.clone();
            let list = list.clone();
            move || {
                let mut c = login(&addr, PROBE, OPS, 2 + round).unwrap();
                settle(&mut c);
                let r = c
                    .scsi(1, &testkit::xcopy::command(list.len()), 0, Some(&list))
                    .unwrap();
                (r.status, r.sense_code())
            }
        });
        wait_until("the copy to run", || {
            ok(&s, &["list", "copies"])["copies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["state"] == "running")
        });
        let (code, v) = ctl(&s, &["lu", "remove", "dst", "--timeout", timeout]);
        let removed = &v["removed"][0];
        assert_eq!(removed["lu"], "dst", "{v}");
        if round == 0 {
            assert_eq!(code, 3, "an undrained removal exits 3: {v}");
            // The copy (no IMMED) is a command on the LU and a copy through it.
            assert_eq!(removed["commands_running"], 1, "{v}");
            assert_eq!(removed["copies_running"], 1, "{v}");
        } else {
            assert_eq!(code, 0, "{v}");
            assert_eq!(removed["commands_running"], 0, "{v}");
            assert_eq!(removed["copies_running"], 0, "{v}");
            assert!(removed["waited_ms"].as_u64() > Some(0), "{v}");
        }
        assert_eq!(report_luns(&mut i), vec![0], "gone from the map at once");
        let (status, sense) = copy.join().unwrap();
        assert_eq!(status, 0, "the running copy finished: {sense:?}");
        eprintln!(
            "admin: removal with --timeout {timeout}: {v}, copy took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn an_operator_changes_the_cartridge_of_a_tape_drive() {
    let config = r#"
[server]
admin_socket = "{dir}/run/oxtgt.sock"
[[lu]]
name = "drive"
type = "tape"
path = "{dir}/tapes"
size = "64MiB"
cartridge = "MON"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
lu = "drive"
"#;
    let s = Server::start("admin-tape", config);
    let mut i = common::session(&s, &[]);
    let block = vec![0x4du8; 1000];
    let w = [0x0a, 0, 0, 0x03, 0xe8, 0]; // WRITE(6), one 1000-byte block
    assert_eq!(i.scsi(0, &w, 0, Some(&block)).unwrap().status, 0);
    // Load another cartridge: created empty, the session hears of it.
    let v = ok(&s, &["tape", "load", "drive", "TUE"]);
    assert_eq!(v["cartridge"], "TUE");
    let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x28, 0x00)));
    let read = [0x08, 0, 0, 0x03, 0xe8, 0];
    let r = i.scsi(0, &read, 1000, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x08, 0x00, 0x05)), "TUE is blank");
    // PREVENT MEDIUM REMOVAL holds the cartridge in against the operator too.
    assert_eq!(
        i.scsi(0, &cdb::prevent_allow(true), 0, None)
            .unwrap()
            .status,
        0
    );
    let (code, _) = ctl(&s, &["tape", "unload", "drive"]);
    assert_eq!(code, 1, "unload refused while prevented");
    assert_eq!(
        i.scsi(0, &cdb::prevent_allow(false), 0, None)
            .unwrap()
            .status,
        0
    );
    let v = ok(&s, &["tape", "unload", "drive"]);
    assert_eq!(v["cartridge"], Value::Null);
    let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x02, 0x3a, 0x00)));
    let lus = ok(&s, &["list", "lus"]);
    assert_eq!(lus["lus"][0]["cartridge"], Value::Null);
    // Monday's cartridge back: its block is there.
    ok(&s, &["tape", "load", "drive", "MON"]);
    let _ = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap(); // the unit attention
    let r = i.scsi(0, &read, 1000, None).unwrap();
    assert_eq!((r.status, r.data), (0, block));
    assert_eq!(ok(&s, &["list", "lus"])["lus"][0]["cartridge"], "MON");
    assert!(s.dir.join("tapes/TUE.tape").exists());
    let (code, _) = ctl(&s, &["tape", "load", "drive", "no such/name"]);
    assert_eq!(code, 1);
}
