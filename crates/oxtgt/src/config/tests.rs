//! Config parsing, validation and the TOML round trip.

use super::*;

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded_default();
    assert_eq!(c.targets[0].luns.len(), 2);
    assert_eq!(c.targets[0].luns[1].size, Some(1 << 30));
    assert_ne!(c.targets[0].luns[0].naa, c.targets[0].luns[1].naa);
}

#[test]
fn unknown_key_reports_line_and_key() {
    let src = "[server]\nlisten = [\"127.0.0.1:3260\"]\nbogus = 1\n";
    let e = Config::parse("x.toml", src).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("x.toml:3:"), "{s}");
    assert!(s.contains("bogus"), "{s}");
}

#[test]
fn semantic_errors_all_reported_with_lines() {
    let src = r#"
[[target]]
name = "iqn.bad"
[[target.lun]]
id = 0
backstore = "ram"
size = "10XB"
[[target.lun]]
id = 0
backstore = "file"
"#;
    let e = Config::parse("y.toml", src).unwrap_err();
    let lines: Vec<String> =
        e.0.iter()
            .map(|e| format!("{}:{}", e.line.unwrap_or(0), e.key))
            .collect();
    assert!(lines.contains(&"3:target[0].name".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"7:target[0].lun[0].size".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"9:target[0].lun[1].id".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"10:target[0].lun[1].path".to_string()),
        "{lines:?}"
    );
}

#[test]
fn login_timeout_is_bounded_and_defaults_to_15_s() {
    assert_eq!(Config::embedded_default().server.login_timeout_secs, 15);
    let src = "[server]\nlisten = [\"127.0.0.1:3260\"]\nlogin_timeout_secs = 0\n";
    let e = Config::parse("z.toml", src).unwrap_err().to_string();
    assert!(e.starts_with("z.toml:3:"), "{e}");
    assert!(e.contains("server.login_timeout_secs"), "{e}");
}

const SHARED: &str = r#"
[server]
listen = ["127.0.0.1:3260"]

[[lu]]
name = "vmfs-1"
backstore = "ram"
size = "64MiB"

[[target]]
name = "iqn.2026-11.org.oxtgt:a"
open_access = true
[[target.lun]]
id = 0
lu = "vmfs-1"
[[target.lun]]
id = 1
backstore = "ram"
size = "1MiB"

[[target]]
name = "iqn.2026-11.org.oxtgt:b"
[[target.lun]]
id = 5
lu = "vmfs-1"
[[target.acl]]
initiator = "iqn.1998-01.com.vmware:esx01"
luns = [5]
"#;

#[test]
fn a_named_lu_is_one_lu_in_every_target_that_maps_it() {
    let c = Config::parse("s.toml", SHARED).unwrap();
    let a = &c.targets[0].luns[0];
    let b = &c.targets[1].luns[0];
    assert_eq!((a.id, b.id), (0, 5));
    assert_eq!((a.lu.as_str(), b.lu.as_str()), ("vmfs-1", "vmfs-1"));
    assert_eq!(
        a.naa, b.naa,
        "one identity whatever the target or LUN number"
    );
    assert_eq!(a.naa, derive_lu_naa("vmfs-1"));
    assert_eq!(c.targets[0].luns[1].lu, "iqn.2026-11.org.oxtgt:a/lun1");
}

#[test]
fn lu_references_are_checked_with_lines() {
    let src = SHARED.replace(
        "lu = \"vmfs-1\"\n[[target.lun]]",
        "lu = \"nope\"\n[[target.lun]]",
    );
    let e = Config::parse("r.toml", &src).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("r.toml:15: target[0].lun[0].lu: no [[lu]] is named \"nope\""),
        "{s}"
    );
    let both = SHARED.replace(
        "id = 5\nlu = \"vmfs-1\"",
        "id = 5\nlu = \"vmfs-1\"\nbackstore = \"ram\"",
    );
    let e = Config::parse("r.toml", &both).unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn the_model_round_trips_through_toml() {
    for src in [
        SHARED,
        DEFAULT_CONFIG,
        include_str!("../../../../examples/oxtgt.toml"),
    ] {
        let c = Config::parse("a.toml", src).unwrap();
        let text = c.to_toml().unwrap();
        let again = Config::parse("b.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, c, "{text}");
    }
}

#[test]
fn naa_is_stable_and_type6() {
    let a = derive_naa("iqn.2026-11.org.oxtgt:t", 0);
    assert_eq!(a, derive_naa("iqn.2026-11.org.oxtgt:t", 0));
    assert_ne!(a, derive_naa("iqn.2026-11.org.oxtgt:t", 1));
    assert_eq!(a[0] >> 4, 6);
}

#[test]
fn a_memory_limit_is_for_ram_lus_and_at_least_a_page() {
    let src = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:t"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "1GiB"
memory_limit = "256MiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "1GiB"
memory_limit = "4KiB"
[[target.lun]]
id = 2
backstore = "file"
path = "/tmp/x.img"
size = "1GiB"
memory_limit = "1GiB"
"#;
    let e = Config::parse("m.toml", src).unwrap_err().to_string();
    assert!(
        e.contains("m.toml:14:") && e.contains("at least 64KiB"),
        "{e}"
    );
    assert!(
        e.contains("m.toml:20:") && e.contains("only a ram LUN"),
        "{e}"
    );
    assert!(!e.contains("m.toml:9:"), "{e}");
    let ok = Config::parse(
        "m.toml",
        &src[..src.find("[[target.lun]]\nid = 1").unwrap()],
    )
    .unwrap();
    assert_eq!(ok.targets[0].luns[0].memory_limit, Some(256 << 20));
    let again = Config::parse("again.toml", &ok.to_toml().unwrap()).unwrap();
    assert_eq!(again.targets[0].luns[0].memory_limit, Some(256 << 20));
}

#[test]
fn admin_socket_and_metrics_listen_are_checked_and_round_trip() {
    let target = "[[target]]\nname = \"iqn.2026-11.org.oxtgt:m\"\nopen_access = true\n";
    let ok = format!("[server]\nadmin_socket = \"/run/x/oxtgt.sock\"\nmetrics_listen = \"127.0.0.1:9740\"\n{target}");
    let c = Config::parse("m.toml", &ok).unwrap();
    assert_eq!(
        c.server.admin_socket.as_deref(),
        Some(std::path::Path::new("/run/x/oxtgt.sock"))
    );
    assert_eq!(
        c.server.metrics_listen,
        Some("127.0.0.1:9740".parse().unwrap())
    );
    let again = Config::parse("again.toml", &c.to_toml().unwrap()).unwrap();
    assert_eq!(again, c);
    let bad = format!(
        "[server]\nadmin_socket = \"relative.sock\"\nmetrics_listen = \"nowhere\"\n{target}"
    );
    let e = Config::parse("b.toml", &bad).unwrap_err().to_string();
    assert!(e.contains("b.toml:2: server.admin_socket"), "{e}");
    assert!(e.contains("b.toml:3: server.metrics_listen"), "{e}");
}

#[test]
fn a_tape_lu_names_a_directory_a_capacity_and_a_cartridge_and_round_trips() {
    let src = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:t"
open_access = true
[[target.lun]]
id = 0
type = "tape"
path = "/var/lib/oxtgt/tapes"
size = "10GiB"
cartridge = "WEEKLY-01"
"#;
    let c = Config::parse("t.toml", src).unwrap();
    let l = &c.targets[0].luns[0];
    assert_eq!(l.backstore, BackstoreKind::Tape);
    assert_eq!(l.cartridge.as_deref(), Some("WEEKLY-01"));
    assert_eq!(l.size, Some(10 << 30));
    let text = c.to_toml().unwrap();
    assert!(text.contains("type = \"tape\""), "{text}");
    assert!(!text.contains("block_size"), "{text}");
    assert_eq!(
        Config::parse("again.toml", &text).unwrap().targets,
        c.targets
    );
    let bad = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:t"
open_access = true
[[target.lun]]
id = 0
type = "tape"
backstore = "file"
path = "/x"
[[target.lun]]
id = 1
type = "tape"
path = "/y"
thin = true
cartridge = "no spaces"
[[target.lun]]
id = 2
type = "cd"
"#;
    let e = Config::parse("bad.toml", bad).unwrap_err();
    let keys: Vec<String> =
        e.0.iter()
            .map(|e| format!("{}:{}", e.line.unwrap_or(0), e.key))
            .collect();
    for want in [
        "8:target[0].lun[0].backstore",
        // `thin` has no span of its own: the line of the LU's type.
        "12:target[0].lun[1].thin",
        "15:target[0].lun[1].cartridge",
        "18:target[0].lun[2].type",
    ] {
        assert!(keys.iter().any(|k| k == want), "{want} in {keys:?}");
    }
    assert!(keys.iter().any(|k| k.ends_with("lun[1].size")), "{keys:?}");
    assert_eq!(keys.len(), 5, "one error per mistake: {keys:?}");
}

#[test]
fn an_rbd_lu_names_its_image_and_nothing_else_takes_rbd_keys() {
    let src = r#"
[[lu]]
name = "vm"
backstore = "rbd"
pool = "rbd"
namespace = "esx"
image = "datastore1"
client_id = "oxtgt"
ceph_conf = "/etc/ceph/ceph.conf"
keyring = "/etc/ceph/ceph.client.oxtgt.keyring"
[[target]]
name = "iqn.2026-11.org.oxtgt:t"
open_access = true
[[target.lun]]
id = 0
lu = "vm"
[[target.lun]]
id = 1
backstore = "rbd"
image = "a/b"
path = "/tmp/x"
[[target.lun]]
id = 2
backstore = "file"
path = "/tmp/y.img"
size = "1GiB"
pool = "rbd"
[[target.lun]]
id = 3
backstore = "rbd"
pool = "rbd"
namespace = "esx"
image = "datastore1"
size = "1GiB"
"#;
    let e = Config::parse("r.toml", src).unwrap_err().to_string();
    for (line, what) in [
        ("r.toml:19:", "an rbd LU needs pool"),
        ("r.toml:20:", "without '/', '@'"),
        ("r.toml:21:", "it has no path"),
        ("r.toml:27:", "only an rbd LU has this key"),
        ("r.toml:33:", "rbd/esx/datastore1 is used by two LUNs"),
        ("r.toml:34:", "takes its size from the image"),
    ] {
        assert!(e.contains(line) && e.contains(what), "{line} {what}:\n{e}");
    }
    let ok = Config::parse(
        "r.toml",
        &src[..src.find("[[target.lun]]\nid = 1").unwrap()],
    )
    .unwrap();
    let l = &ok.targets[0].luns[0];
    assert_eq!(l.backstore, BackstoreKind::Rbd);
    assert!(l.thin, "RBD images are thin");
    let r = l.rbd.as_ref().unwrap();
    assert_eq!(r.spec(), "rbd/esx/datastore1");
    assert_eq!(r.client_id, "oxtgt");
    assert_eq!(
        r.keyring.as_deref(),
        Some(std::path::Path::new("/etc/ceph/ceph.client.oxtgt.keyring"))
    );
    let again = Config::parse("again.toml", &ok.to_toml().unwrap()).unwrap();
    assert_eq!(again, ok);
}
