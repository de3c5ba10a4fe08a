//! Live reconfiguration: SIGHUP re-reads the config and applies it whole or not at
//! all, while sessions keep running.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, pattern, session, Server, TARGET};
use testkit::{cdb, Initiator};

/// SIGHUP reloads the config: a running session sees its new LUN map at its next
/// command (REPORTED LUNS DATA HAS CHANGED, then REPORT LUNS), an unchanged LU keeps
/// its data and identity, a broken config or a live LU's changed definition changes
/// nothing, and a file LU grows (CAPACITY DATA HAS CHANGED) but never shrinks.
#[test]
fn sighup_reload_changes_the_lun_map_of_a_running_session() {
    const ONE: &str = r#"
[[lu]]
name = "keep"
backstore = "file"
path = "{dir}/keep.img"
size = "8MiB"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
lu = "keep"
"#;
    let two = format!("{ONE}[[target.lun]]\nid = 4\nbackstore = \"ram\"\nsize = \"4MiB\"\n");
    let s = Server::start("reload", ONE);
    let mut i = session(&s, &[]);
    let data = pattern(4096, 9);
    assert_eq!(
        i.scsi(0, &cdb::write10(8, 8), 0, Some(&data))
            .unwrap()
            .status,
        0
    );
    let naa = |i: &mut Initiator| {
        i.scsi(0, &cdb::inquiry(true, 0x83, 255), 255, None)
            .unwrap()
            .data[8..24]
            .to_vec()
    };
    let before = naa(&mut i);
    let luns = |i: &mut Initiator| {
        let r = i.scsi(0, &cdb::report_luns(4096), 4096, None).unwrap();
        let n = u32::from_be_bytes(r.data[..4].try_into().unwrap()) as usize / 8;
        (0..n).map(|k| r.data[8 + 8 * k + 1]).collect::<Vec<u8>>()
    };
    assert_eq!(luns(&mut i), vec![0]);

    // Waits for the reload to land: the session's next command reports it.
    let wait_for_ua = |i: &mut Initiator| {
        for _ in 0..200 {
            let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
            if r.sense_code() == Some((0x06, 0x3f, 0x0e)) {
                return true;
            }
            assert_eq!(r.status, 0, "{:?}", r.sense_code());
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        false
    };

    // A broken config changes nothing.
    s.reload("[[target]]\nname = \"iqn.bad\"\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(luns(&mut i), vec![0]);

    s.reload(&two);
    assert!(wait_for_ua(&mut i), "REPORTED LUNS DATA HAS CHANGED");
    assert_eq!(luns(&mut i), vec![0, 4]);
    // Unit attentions are per LU: the new LUN reports the change too, then serves.
    let r = i.scsi(4, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x06, 0x3f, 0x0e)));
    let r = i
        .scsi(4, &cdb::write10(0, 1), 0, Some(&[0x5a; 512]))
        .unwrap();
    assert_eq!(r.status, 0, "the new LUN serves: {:?}", r.sense_code());
    let r = i.scsi(0, &cdb::read10(8, 8), 4096, None).unwrap();
    assert_eq!(r.data, data, "the unchanged LU kept its data");
    assert_eq!(naa(&mut i), before, "and its identity");

    // Changing a live LU's definition is refused; nothing changes.
    s.reload(&two.replace("size = \"8MiB\"", "size = \"8MiB\"\nread_only = true"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(luns(&mut i), vec![0, 4]);
    let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
    assert_eq!(r.status, 0, "nothing changed: {:?}", r.sense_code());

    // Growing a file LU is the one change a live LU takes: CAPACITY DATA HAS
    // CHANGED, then the new capacity. Shrinking it is refused.
    let grown = two.replace("size = \"8MiB\"", "size = \"16MiB\"");
    s.reload(&grown);
    let mut saw = false;
    for _ in 0..200 {
        let r = i.scsi(0, &cdb::TEST_UNIT_READY, 0, None).unwrap();
        if r.sense_code() == Some((0x06, 0x2a, 0x09)) {
            saw = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(saw, "CAPACITY DATA HAS CHANGED");
    let cap = |i: &mut Initiator| {
        let r = i.scsi(0, &cdb::read_capacity16(32), 32, None).unwrap();
        u64::from_be_bytes(r.data[..8].try_into().unwrap()) + 1
    };
    assert_eq!(cap(&mut i), (16 << 20) / 512);
    s.reload(&two);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(cap(&mut i), (16 << 20) / 512, "a shrink was refused");
    let r = i.scsi(0, &cdb::read10(8, 8), 4096, None).unwrap();
    assert_eq!(r.data, data, "the grown LU kept its data");

    // Unmapping a LUN: it is gone for the session.
    s.reload(&ONE.replace("size = \"8MiB\"", "size = \"16MiB\""));
    assert!(wait_for_ua(&mut i));
    assert_eq!(luns(&mut i), vec![0]);
    let r = i.scsi(4, &cdb::read10(0, 1), 512, None).unwrap();
    assert_eq!(r.sense_code(), Some((0x05, 0x25, 0x00)), "LU NOT SUPPORTED");
}

/// Portals and session settings reload too: a new portal accepts logins, a removed
/// one refuses connections while the session that came through it keeps working,
/// and logins after the reload negotiate the new limits. A portal that cannot be
/// bound refuses the whole reload.
#[test]
fn sighup_reload_moves_portals_and_applies_new_login_settings() {
    let (p1, p2) = (free_port(), free_port());
    let config = |ports: &[u16], mrdsl: u32| {
        let listen: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        format!(
            "[server]\nlisten = [{}]\nmax_recv_data_segment_length = {mrdsl}\n\n\
             [[target]]\nname = \"{TARGET}\"\nopen_access = true\n\
             [[target.lun]]\nid = 0\nbackstore = \"ram\"\nsize = \"4MiB\"\n",
            listen.join(", ")
        )
    };
    let s = Server::start_on_config_portals("portals", &config(&[p1], 65536));
    assert_eq!(s.port, p1);
    let a1 = format!("127.0.0.1:{p1}");
    let a2 = format!("127.0.0.1:{p2}");
    // Each connection is its own session (a distinct ISID): the same ISID would
    // reinstate, and so end, the earlier session.
    let mut isid = 0u8;
    let mut declared = |i: &mut Initiator| {
        isid += 1;
        i.isid[5] = isid;
        i.login(Some(TARGET), &[])
            .unwrap()
            .answers
            .get("MaxRecvDataSegmentLength")
            .map(str::to_owned)
    };
    let mut old = Initiator::connect(&a1).unwrap();
    assert_eq!(declared(&mut old).as_deref(), Some("65536"));

    // Move the target to p2 with a smaller MaxRecvDataSegmentLength.
    s.reload(&config(&[p2], 16384));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut new = loop {
        if let Ok(i) = Initiator::connect(&a2) {
            break i;
        }
        assert!(Instant::now() < deadline, "new portal never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        declared(&mut new).as_deref(),
        Some("16384"),
        "new logins use the new limits"
    );
    assert!(
        std::net::TcpStream::connect(&a1).is_err(),
        "the removed portal still accepts connections"
    );
    // The session that came in through the removed portal still works, with what
    // it negotiated: a 32 KiB write in one immediate/unsolicited burst is accepted.
    let data = pattern(32768, 3);
    let r = old.scsi(0, &cdb::write10(0, 64), 0, Some(&data)).unwrap();
    assert_eq!(r.status, 0, "old session after reload: {r:?}");
    let r = new.scsi(0, &cdb::read10(0, 64), 32768, None).unwrap();
    assert_eq!(r.data, data, "both sessions see one LU");

    // A portal that is in use refuses the reload: p2 stays, nothing else changes.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = blocker.local_addr().unwrap().port();
    s.reload(&config(&[p2, busy], 4096));
    std::thread::sleep(Duration::from_millis(500));
    let mut again = Initiator::connect(&a2).unwrap();
    assert_eq!(
        declared(&mut again).as_deref(),
        Some("16384"),
        "a refused reload changed the login settings"
    );
}
