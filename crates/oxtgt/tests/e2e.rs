//! End-to-end tests: a real oxtgt process, driven over loopback by testkit's scripted
//! initiator. Each asserts what an initiator or an administrator would notice: bytes
//! on the wire, data on disk, sense codes, login status.

mod common;

use common::{pattern, session, Server, TARGET};
use testkit::{cdb, Initiator};

const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "64MiB"
[[target.lun]]
id = 1
backstore = "file"
path = "{dir}/lun1.img"
size = "64MiB"
block_size = 4096

[[target]]
name = "iqn.2026-11.org.oxtgt:private"
[[target.lun]]
id = 0
backstore = "ram"
size = "16MiB"
[[target.lun]]
id = 7
backstore = "ram"
size = "16MiB"
[[target.acl]]
initiator = "iqn.2026-11.org.oxtgt.testkit:initiator"
map = { "3" = 7 }
"#;

#[test]
fn login_negotiates_per_rfc_rules() {
    let s = Server::start("neg", CONFIG);
    let mut i = Initiator::connect(&s.addr()).unwrap();
    let r = i
        .login(
            Some(TARGET),
            &[
                ("HeaderDigest", "CRC32C,None"),
                ("DataDigest", "CRC32C"),
                ("MaxBurstLength", "1048576"),
                ("FirstBurstLength", "4194304"),
                ("MaxOutstandingR2T", "100"),
                ("DefaultTime2Wait", "0"),
                ("ErrorRecoveryLevel", "2"),
                ("X-org.example.Unknown", "1"),
                ("MaxRecvDataSegmentLength", "8192"),
            ],
        )
        .unwrap();
    assert_eq!(r.status_class, 0);
    let a = &r.answers;
    assert_eq!(a.get("HeaderDigest"), Some("CRC32C"));
    assert_eq!(a.get("DataDigest"), Some("CRC32C"));
    assert_eq!(a.get("MaxBurstLength"), Some("1048576"));
    assert_eq!(a.get("FirstBurstLength"), Some("262144"));
    assert_eq!(a.get("MaxOutstandingR2T"), Some("16"));
    assert_eq!(a.get("DefaultTime2Wait"), Some("2"));
    assert_eq!(a.get("ErrorRecoveryLevel"), Some("0"));
    assert_eq!(a.get("X-org.example.Unknown"), Some("NotUnderstood"));
    assert_eq!(a.get("TargetPortalGroupTag"), Some("1"));
    assert!(r.tsih != 0);
    // With both digests on, a command and its data still round-trip.
    let data = pattern(64 * 1024, 3);
    let w = i.scsi(0, &cdb::write10(100, 128), 0, Some(&data)).unwrap();
    assert_eq!(w.status, 0);
    let rd = i
        .scsi(0, &cdb::read10(100, 128), data.len() as u32, None)
        .unwrap();
    assert_eq!(rd.status, 0);
    assert_eq!(rd.data, data);
    assert_eq!(
        rd.data_in_pdus, 8,
        "64 KiB in 8 KiB segments, the initiator's MaxRecvDataSegmentLength"
    );
}

#[test]
fn login_failures_carry_status() {
    let s = Server::start("lfail", CONFIG);
    let mut i = Initiator::connect(&s.addr()).unwrap();
    let r = i.login(Some("iqn.2026-11.org.oxtgt:nosuch"), &[]).unwrap();
    assert_eq!(
        (r.status_class, r.status_detail),
        (2, 3),
        "target not found"
    );
    let mut i = Initiator::connect(&s.addr()).unwrap();
    let r = i
        .login_as(
            "iqn.2026-11.org.example:stranger",
            Some("iqn.2026-11.org.oxtgt:private"),
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.status_class, r.status_detail),
        (2, 2),
        "not in the ACL: authorization failure"
    );
}

#[test]
fn discovery_lists_only_visible_targets_with_portal() {
    let s = Server::start("disc", CONFIG);
    let mut i = Initiator::connect(&s.addr()).unwrap();
    assert_eq!(i.login(None, &[]).unwrap().status_class, 0);
    let t = i.text(&[("SendTargets", "All")]).unwrap();
    let names: Vec<&str> =
        t.0.iter()
            .filter(|(k, _)| k == "TargetName")
            .map(|(_, v)| v.as_str())
            .collect();
    assert_eq!(names, vec![TARGET, "iqn.2026-11.org.oxtgt:private"]);
    assert_eq!(
        t.get("TargetAddress"),
        Some(format!("127.0.0.1:{},1", s.port).as_str())
    );
    assert_eq!(i.logout().unwrap(), 0);

    let mut i = Initiator::connect(&s.addr()).unwrap();
    i.login_as("iqn.2026-11.org.example:stranger", None, &[])
        .unwrap();
    let t = i.text(&[("SendTargets", "All")]).unwrap();
    let names: Vec<&str> =
        t.0.iter()
            .filter(|(k, _)| k == "TargetName")
            .map(|(_, v)| v.as_str())
            .collect();
    assert_eq!(
        names,
        vec![TARGET],
        "the ACL'd target is hidden from a stranger"
    );
}

#[test]
fn solicited_writes_follow_r2ts_and_reach_the_file() {
    let s = Server::start("r2t", CONFIG);
    // No immediate or unsolicited data, small bursts: every byte moves by R2T.
    let mut i = session(
        &s,
        &[
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "65536"),
            ("MaxRecvDataSegmentLength", "16384"),
        ],
    );
    let data = pattern(1 << 20, 9);
    let w = i.scsi(1, &cdb::write16(10, 256), 0, Some(&data)).unwrap();
    assert_eq!(w.status, 0, "sense {:?}", w.sense_code());
    assert_eq!(w.r2ts, 16, "1 MiB in 64 KiB bursts");
    let on_disk = std::fs::read(s.dir.join("lun1.img")).unwrap();
    assert_eq!(
        &on_disk[10 * 4096..10 * 4096 + data.len()],
        &data[..],
        "bytes on disk"
    );
    let r = i
        .scsi(1, &cdb::read16(10, 256), data.len() as u32, None)
        .unwrap();
    assert_eq!(r.data, data);
}

#[test]
fn unsolicited_and_immediate_data_are_used() {
    let s = Server::start("unsol", CONFIG);
    let mut i = session(
        &s,
        &[
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("FirstBurstLength", "65536"),
            ("MaxRecvDataSegmentLength", "8192"),
        ],
    );
    let data = pattern(256 * 1024, 1);
    let w = i.scsi(0, &cdb::write10(0, 512), 0, Some(&data)).unwrap();
    assert_eq!(w.status, 0);
    assert_eq!(
        w.r2ts, 1,
        "64 KiB unsolicited, the remaining 192 KiB in one R2T"
    );
    let r = i
        .scsi(0, &cdb::read10(0, 512), data.len() as u32, None)
        .unwrap();
    assert_eq!(r.data, data);
}

#[test]
fn residuals_report_what_was_not_moved() {
    let s = Server::start("resid", CONFIG);
    let mut i = session(&s, &[]);
    // READ of 2 blocks with room for 1: overflow of one block, one block sent.
    let r = i.scsi(0, &cdb::read10(0, 2), 512, None).unwrap();
    assert_eq!((r.status, r.data.len()), (0, 512));
    assert_eq!((r.residual_flags, r.residual), (0x04, 512));
    // INQUIRY with a large allocation: underflow.
    let r = i.scsi(0, &cdb::inquiry(false, 0, 255), 255, None).unwrap();
    assert_eq!(r.data.len(), 96);
    assert_eq!((r.residual_flags, r.residual), (0x02, 255 - 96));
}

#[test]
fn invalid_cdb_and_range_errors_have_precise_sense() {
    let s = Server::start("sense", CONFIG);
    let mut i = session(&s, &[]);
    let mut c = cdb::read10(0, 1);
    c[1] = 0x20; // RDPROTECT without protection information
    let r = i.scsi(0, &c, 512, None).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code(), Some((5, 0x24, 0)));
    assert_eq!(
        &r.sense[15..18],
        &[0x80 | 0x40 | 0x08 | 5, 0, 1],
        "field pointer: CDB byte 1 bit 5"
    );
    let blocks = (64u32 << 20) / 512;
    let r = i.scsi(0, &cdb::read10(blocks - 1, 2), 1024, None).unwrap();
    assert_eq!(r.sense_code(), Some((5, 0x21, 0)), "LBA out of range");
    let r = i.scsi(0, &[0xc5, 0, 0, 0, 0, 0], 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((5, 0x20, 0)), "invalid opcode");
}

#[test]
fn acl_maps_luns_and_hides_the_rest() {
    let s = Server::start("acl", CONFIG);
    let mut i = Initiator::connect(&s.addr()).unwrap();
    assert_eq!(
        i.login(Some("iqn.2026-11.org.oxtgt:private"), &[])
            .unwrap()
            .status_class,
        0
    );
    let r = i.scsi(0, &cdb::report_luns(4096), 4096, None).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(&r.data[..4], &8u32.to_be_bytes(), "one LUN");
    assert_eq!(&r.data[8..10], &[0, 3], "target LUN 7 seen as LUN 3");
    let r = i.scsi(0, &cdb::read10(0, 1), 512, None).unwrap();
    assert_eq!(
        r.sense_code(),
        Some((5, 0x25, 0)),
        "LUN 0 exists on the target but is not mapped"
    );
    let r = i.scsi(0, &cdb::inquiry(false, 0, 96), 96, None).unwrap();
    assert_eq!(r.data[0], 0x7f, "INQUIRY to an unmapped LUN: no device");
    let r = i
        .scsi(3, &cdb::write10(0, 1), 0, Some(&[0xab; 512]))
        .unwrap();
    assert_eq!(r.status, 0);
}

#[test]
fn malformed_pdus_are_rejected_and_the_session_survives() {
    let s = Server::start("bad", CONFIG);
    let mut i = session(&s, &[]);
    // Unknown opcode 0x1c: Reject (command not supported) echoing the header.
    let mut bhs = [0u8; 48];
    bhs[0] = 0x1c;
    bhs[16..20].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    i.send(&bhs, &[]).unwrap();
    let f = i.recv().unwrap();
    assert_eq!(f.bhs[0] & 0x3f, 0x3f, "Reject");
    assert_eq!(f.bhs[2], 0x05);
    assert_eq!(&f.data[..], &bhs[..]);
    assert_eq!(i.ping(b"still here").unwrap(), b"still here");
    // A Data-Out nobody asked for is dropped; the session goes on.
    let d = i.data_out_bhs(0x5555, 0x77, 0, 0, 512, true);
    i.send(&d, &[0u8; 512]).unwrap();
    assert_eq!(i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status, 0);
}

#[test]
fn data_out_ending_early_fails_the_task_and_writes_nothing() {
    let s = Server::start("early", CONFIG);
    let mut i = session(&s, &[("InitialR2T", "Yes"), ("ImmediateData", "No")]);
    let before = i.scsi(0, &cdb::read10(40, 8), 4096, None).unwrap().data;
    let itt = i.itt();
    let bhs = i.command_bhs(itt, 0, &cdb::write10(40, 8), 4096, false, true, true);
    i.send(&bhs, &[]).unwrap();
    let r2t = i.recv().unwrap();
    let ttt = u32::from_be_bytes([r2t.bhs[20], r2t.bhs[21], r2t.bhs[22], r2t.bhs[23]]);
    // Half the data, flagged final: a protocol error.
    let d = i.data_out_bhs(itt, ttt, 0, 0, 2048, true);
    i.send(&d, &[0xee; 2048]).unwrap();
    let reject = i.recv().unwrap();
    assert_eq!(
        (reject.bhs[0] & 0x3f, reject.bhs[2]),
        (0x3f, 0x04),
        "Reject: protocol error"
    );
    let resp = i.recv().unwrap();
    assert_eq!(resp.bhs[0] & 0x3f, 0x21);
    assert_eq!(resp.bhs[3], 2, "CHECK CONDITION");
    assert_eq!(
        &resp.data[2 + 12..2 + 14],
        &[0x4b, 0x00],
        "DATA PHASE ERROR"
    );
    let after = i.scsi(0, &cdb::read10(40, 8), 4096, None).unwrap().data;
    assert_eq!(after, before, "nothing was written");
}

#[test]
fn oversized_segment_closes_the_connection() {
    let s = Server::start("big", CONFIG);
    let mut i = session(&s, &[]);
    let mut bhs = [0u8; 48];
    bhs[0] = 0x40; // NOP-Out, immediate
    bhs[1] = 0x80;
    bhs[5] = 0x7f; // ~8 MiB data segment, beyond MaxRecvDataSegmentLength
    bhs[16..20].copy_from_slice(&[0, 0, 0, 9]);
    bhs[20..24].copy_from_slice(&[0xff; 4]);
    i.send_raw(&bhs).unwrap();
    let e = i.recv().unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
    // The server is unharmed.
    let mut j = session(&s, &[]);
    assert_eq!(j.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status, 0);
}

#[test]
fn abort_task_and_lun_reset() {
    let s = Server::start("tmf", CONFIG);
    let mut i = session(&s, &[("InitialR2T", "Yes"), ("ImmediateData", "No")]);
    // A write whose data never comes: the target sends an R2T and waits.
    let itt = i.itt();
    let sn = i.cmd_sn;
    let bhs = i.command_bhs(itt, 0, &cdb::write10(0, 8), 4096, false, true, true);
    i.send(&bhs, &[]).unwrap();
    let r2t = i.recv().unwrap();
    assert_eq!(r2t.bhs[0] & 0x3f, 0x31);
    assert_eq!(
        i.tmf(1, 0, itt, sn).unwrap(),
        0,
        "ABORT TASK: function complete"
    );
    assert_eq!(
        i.tmf(1, 0, 0x9999, sn).unwrap(),
        1,
        "ABORT TASK of nothing: task does not exist"
    );
    assert_eq!(
        i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status,
        0,
        "window still open"
    );
    // LOGICAL UNIT RESET: the next command sees the unit attention, then all is well.
    assert_eq!(i.tmf(5, 0, 0xffff_ffff, 0).unwrap(), 0);
    let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((6, 0x29, 0x03)));
    assert_eq!(i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status, 0);
    assert_eq!(
        i.tmf(5, 9, 0xffff_ffff, 0).unwrap(),
        2,
        "reset of an unmapped LUN"
    );
}

#[test]
fn sigterm_asks_initiators_to_logout_and_syncs() {
    let mut s = Server::start("term", CONFIG);
    let mut i = session(&s, &[]);
    let data = pattern(8192, 5);
    assert_eq!(
        i.scsi(1, &cdb::write10(2, 2), 0, Some(&data))
            .unwrap()
            .status,
        0
    );
    let pid_status = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let f = i.recv().unwrap();
            (f.bhs[0] & 0x3f, f.bhs[36])
        });
        let st = s.terminate();
        (h.join().unwrap(), st)
    });
    assert_eq!(
        pid_status.0,
        (0x32, 1),
        "Async Message: target requests logout"
    );
    assert!(pid_status.1.success(), "clean exit");
    let on_disk = std::fs::read(s.dir.join("lun1.img")).unwrap();
    assert_eq!(&on_disk[2 * 4096..2 * 4096 + 8192], &data[..]);
}

#[test]
fn bad_config_reports_file_line_and_key() {
    let dir = common::temp_dir("cfg");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[[target]]\nname = \"iqn.2026-11.org.x:t\"\n[[target.lun]]\nid = 0\nbackstore = \"tape\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxtgt"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:5: target[0].lun[0].backstore", path.display())),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxtgt"))
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/oxtgt.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "examples/oxtgt.toml must stay valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_backing_file_is_a_startup_error_naming_the_path() {
    let dir = common::temp_dir("missing");
    let path = dir.join("c.toml");
    std::fs::write(&path, format!("[[target]]\nname = \"iqn.2026-11.org.x:t\"\nopen_access = true\n[[target.lun]]\nid = 0\nbackstore = \"file\"\npath = \"{}/nope.img\"\n", dir.display())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxtgt"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.img"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn immediate_data_without_negotiation_fails_and_writes_nothing() {
    let s = Server::start("imm", CONFIG);
    let mut i = session(&s, &[("ImmediateData", "No"), ("InitialR2T", "Yes")]);
    let before = i.scsi(0, &cdb::read10(60, 1), 512, None).unwrap().data;
    // Send the data as immediate data anyway.
    i.immediate_data = true;
    let r = i
        .scsi(0, &cdb::write10(60, 1), 0, Some(&[0x5a; 512]))
        .unwrap();
    assert_eq!(
        r.sense_code(),
        Some((5, 0x0e, 0x03)),
        "INVALID FIELD IN INFORMATION UNIT"
    );
    i.immediate_data = false;
    assert_eq!(
        i.scsi(0, &cdb::read10(60, 1), 512, None).unwrap().data,
        before
    );
}

#[test]
fn command_beyond_max_transfer_is_refused_without_soliciting_data() {
    let s = Server::start("maxxfer", CONFIG);
    let mut i = session(&s, &[("ImmediateData", "No"), ("InitialR2T", "Yes")]);
    // VPD B0 advertises the limit; one block more is refused before any R2T.
    let vpd = i
        .scsi(0, &cdb::inquiry(true, 0xb0, 64), 64, None)
        .unwrap()
        .data;
    let max_blocks = u32::from_be_bytes([vpd[8], vpd[9], vpd[10], vpd[11]]);
    assert_eq!(max_blocks, (8 << 20) / 512);
    let data = vec![0u8; (max_blocks as usize + 1) * 512];
    let r = i
        .scsi(0, &cdb::write16(0, max_blocks + 1), 0, Some(&data))
        .unwrap();
    assert_eq!(r.sense_code(), Some((5, 0x24, 0)));
    assert_eq!(r.r2ts, 0, "no data solicited for a command that is refused");
    let ok = i
        .scsi(
            0,
            &cdb::write16(0, max_blocks),
            0,
            Some(&data[..max_blocks as usize * 512]),
        )
        .unwrap();
    assert_eq!(ok.status, 0, "exactly the advertised maximum is accepted");
}

#[test]
fn session_reinstatement_ends_the_old_session() {
    let s = Server::start("reinst", CONFIG);
    let mut old = session(&s, &[]);
    assert_eq!(
        old.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status,
        0
    );
    // Same initiator name, ISID and target, TSIH 0: RFC 7143 §6.3.5 reinstatement.
    let mut new = session(&s, &[]);
    let e = old.recv().unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
    assert_eq!(
        new.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap().status,
        0
    );
}

#[test]
fn keepalive_pings_an_idle_initiator_and_drops_a_silent_one() {
    let config = CONFIG.replacen(
        "[[target]]",
        "[server]\nnop_interval_secs = 1\nnop_timeout_secs = 1\n\n[[target]]",
        1,
    );
    let s = Server::start("nop", &config);
    let mut i = session(&s, &[]);
    let started = std::time::Instant::now();
    let f = i.recv().unwrap();
    assert_eq!(f.bhs[0] & 0x3f, 0x20, "NOP-In");
    assert_eq!(
        &f.bhs[16..20],
        &[0xff; 4],
        "target-initiated: ITT is the reserved tag"
    );
    assert_ne!(&f.bhs[20..24], &[0xff; 4], "and a TTT to answer");
    // Say nothing: the connection is dropped once the timeout passes.
    let e = loop {
        match i.recv() {
            Ok(f) => assert_eq!(f.bhs[0] & 0x3f, 0x20, "only pings while idle"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A peer that connects and stalls in the middle of its first Login PDU is
/// dropped once `login_timeout_secs` passes; a peer that logs in meanwhile is not.
#[test]
fn a_login_that_stalls_is_dropped_at_the_login_timeout() {
    let config = CONFIG.replacen(
        "[[target]]",
        "[server]\nlogin_timeout_secs = 1\n\n[[target]]",
        1,
    );
    let s = Server::start("logintimeout", &config);
    let mut stalled = Initiator::connect(&s.addr()).unwrap();
    stalled.set_read_timeout(std::time::Duration::from_secs(10));
    stalled.send_raw(&[0x43, 0x87, 0, 0, 0, 0]).unwrap(); // 6 of 48 header bytes
    let started = std::time::Instant::now();
    let mut ok = session(&s, &[]);
    let e = stalled
        .recv()
        .expect_err("a stalled login must not be answered");
    let waited = started.elapsed();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "closed, not timed out on our side: {e}"
    );
    assert!(
        waited >= std::time::Duration::from_millis(800)
            && waited < std::time::Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // The session that completed its login is past the login deadline and still served.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = ok.scsi(0, &cdb::inquiry(false, 0, 96), 96, None).unwrap();
    assert_eq!(r.status, 0);
}
