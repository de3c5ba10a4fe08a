//! RBD LUs end to end against a live one-node Ceph cluster: libiscsi's conformance
//! suite on an RBD LU, and EXTENDED COPY and ODX between RBD LUs with the data
//! compared and the gateway's own librados traffic counters read from its admin
//! socket.
//!
//! scripts/test starts the cluster (scripts/ceph/cluster) and names its ceph.conf
//! in `OXTGT_CEPH_CONF`, and builds oxtgt with `--features rbd`. Without either,
//! every test here says why it skipped.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::cu::{parse, run_cu, Verdict};
use common::{Server, TARGET};
use testkit::cdb;
use testkit::load::Endpoint;
use testkit::xcopy::{cscd, list, naa, seg_blocks};

const GOOD: u8 = 0;
const MIB: u64 = 1 << 20;

/// Tests that pass on a thin file LU and are allowed not to on an RBD LU, each with
/// the reason. Empty: an RBD LU passes everything a file LU does.
const RBD_DIFFERENCES: &[(&str, &str)] = &[];

fn cluster() -> Option<PathBuf> {
    // scripts/test sets OXTGT_REQUIRE_CEPH: there a skip would hide a broken setup.
    let required = std::env::var_os("OXTGT_REQUIRE_CEPH").is_some();
    if !cfg!(feature = "rbd") {
        assert!(
            !required,
            "OXTGT_REQUIRE_CEPH is set but oxtgt was built without the rbd feature"
        );
        println!("rbd: skipped: oxtgt was built without the rbd feature (scripts/test builds it with --features oxtgt/rbd)");
        return None;
    }
    match std::env::var_os("OXTGT_CEPH_CONF") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                !required,
                "OXTGT_REQUIRE_CEPH is set but OXTGT_CEPH_CONF is not"
            );
            println!(
                "rbd: skipped: OXTGT_CEPH_CONF is not set (scripts/test starts a one-node cluster)"
            );
            None
        }
    }
}

fn rbd(conf: &Path, args: &[&str]) -> String {
    let out = Command::new("rbd")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("the rbd tool (ceph-common)");
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Images created for one test, removed (with their snapshots) at the end.
struct Images {
    conf: PathBuf,
    names: Vec<String>,
}

impl Images {
    fn new(conf: &Path, tag: &str, sizes: &[&str]) -> Self {
        let names: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(k, size)| {
                let name = format!("{tag}-{}-{k}", std::process::id());
                rbd(
                    conf,
                    &[
                        "create",
                        "--size",
                        size,
                        "--object-size",
                        "1M",
                        &format!("rbd/{name}"),
                    ],
                );
                name
            })
            .collect();
        Self {
            conf: conf.to_owned(),
            names,
        }
    }

    /// The `[[target.lun]]` of image `k` as LUN `k`.
    fn luns(&self, conf: &Path) -> String {
        self.names
            .iter()
            .enumerate()
            .map(|(k, n)| {
                format!(
                    "[[target.lun]]\nid = {k}\nbackstore = \"rbd\"\npool = \"rbd\"\nimage = \"{n}\"\nceph_conf = \"{}\"\n",
                    conf.display()
                )
            })
            .collect()
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for n in &self.names {
            for args in [["snap", "purge"], ["rm", "--no-progress"]] {
                let _ = Command::new("rbd")
                    .arg("-c")
                    .arg(&self.conf)
                    .args(args)
                    .arg(format!("rbd/{n}"))
                    .output();
            }
        }
    }
}

#[test]
fn rbd_conformance() {
    let Some(conf) = cluster() else { return };
    let images = Images::new(&conf, "cu", &["128M"]);
    let config = format!(
        "[[target]]\nname = \"{TARGET}\"\nopen_access = true\n{}",
        images.luns(&conf)
    );
    let server = Server::start("rbdcu", &config);
    let url = server.url(0);
    let out = run_cu(&["-d", "-v", "-V", "-t", "ALL", &url, &url]);
    let got = parse(&out);
    assert!(got.len() >= 200, "only {} verdicts parsed", got.len());

    // What a thin file LU must pass (tests/conformance/expected.txt, "file").
    let expected = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/expected.txt"
    ))
    .unwrap();
    let file_passes: Vec<&str> = expected
        .lines()
        .filter_map(|l| l.strip_prefix("file "))
        .filter_map(|l| l.strip_suffix(" PASS"))
        .collect();
    assert!(file_passes.len() > 150);
    let mut problems = Vec::new();
    let (mut p, mut s, mut f) = (0, 0, 0);
    for (test, v) in &got {
        match v {
            Verdict::Pass => p += 1,
            Verdict::Skip => s += 1,
            Verdict::Fail => {
                f += 1;
                problems.push(format!("{test}: FAIL"));
            }
        }
    }
    let allowed: BTreeMap<&str, &str> = RBD_DIFFERENCES.iter().copied().collect();
    for t in &file_passes {
        if got.get(*t) != Some(&Verdict::Pass) && !allowed.contains_key(t) {
            problems.push(format!(
                "{t}: passes on a file LU, {:?} on RBD",
                got.get(*t)
            ));
        }
    }
    println!(
        "conformance rbd: {p} passed, {s} skipped, {f} failed ({} tests)",
        got.len()
    );
    assert!(problems.is_empty(), "RBD LU:\n  {}", problems.join("\n  "));
}

/// The gateway's bytes on the wire to the cluster: the sum of its librados
/// messenger workers' msgr_send_bytes and msgr_recv_bytes, from its admin socket.
fn gateway_bytes(asok: &Path) -> u64 {
    let out = Command::new("ceph")
        .arg("--admin-daemon")
        .arg(asok)
        .args(["perf", "dump"])
        .output()
        .expect("ceph tool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sum = 0u64;
    let mut seen = 0;
    for key in ["\"msgr_send_bytes\":", "\"msgr_recv_bytes\":"] {
        for part in text.split(key).skip(1) {
            let n: String = part
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            sum += n.parse::<u64>().unwrap();
            seen += 1;
        }
    }
    assert!(seen >= 2, "no messenger counters in perf dump");
    sum
}

fn read_all(i: &mut testkit::Initiator, lun: u16, bytes: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes as usize);
    let chunk = 8 * MIB;
    let mut at = 0;
    while at < bytes {
        let n = ((bytes - at).min(chunk) / 512) as u32;
        let r = i
            .scsi(lun, &cdb::read16(at / 512, n), n * 512, None)
            .unwrap();
        assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
        v.extend_from_slice(&r.data);
        at += u64::from(n) * 512;
    }
    v
}

/// 256 MiB copied between two RBD LUs (1 MiB objects) by EXTENDED COPY in 4 MiB
/// segments, as ESXi sends them, and by ODX; the same copy by the host through
/// oxtgt in the same run for the time. The data must be equal and the gateway's own
/// traffic during each offloaded copy at most 1 % of the bytes copied.
#[test]
fn rbd_copies_stay_inside_the_cluster() {
    let Some(conf) = cluster() else { return };
    let images = Images::new(&conf, "xc", &["256M", "256M", "256M", "256M"]);
    let dir = common::temp_dir("rbdgw");
    // The gateway's own ceph.conf: the cluster's, plus an admin socket for it.
    let asok = dir.join("gateway.asok");
    let gw_conf = dir.join("ceph.conf");
    std::fs::write(
        &gw_conf,
        format!(
            "{}\n[client.admin]\nadmin socket = {}\n",
            std::fs::read_to_string(&conf).unwrap(),
            asok.display()
        ),
    )
    .unwrap();
    let metrics = common::free_port();
    let config = format!(
        "[server]\nmetrics_listen = \"127.0.0.1:{metrics}\"\n[[target]]\nname = \"{TARGET}\"\nopen_access = true\n{}",
        images.luns(&gw_conf)
    );
    let server = Server::start("rbdxc", &config);
    let ep = Endpoint {
        addr: server.addr(),
        target: TARGET.into(),
        lun: 0,
        block_size: 512,
    };
    let mut i = ep.session(1).unwrap();
    let len = 256 * MIB;
    let blocks = len / 512;
    // Source data, written through the target.
    let data = common::pattern(len as usize, 0x5a);
    for (k, c) in data.chunks(8 << 20).enumerate() {
        let lba = k as u64 * (8 << 20) / 512;
        let r = i
            .scsi(0, &cdb::write16(lba, (c.len() / 512) as u32), 0, Some(c))
            .unwrap();
        assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    }

    // The host's copy through oxtgt, for the time: LUN 0 -> LUN 3.
    let host = testkit::load::host_copy(&ep, 0, 3, blocks, 4).unwrap();

    // EXTENDED COPY LUN 0 -> LUN 1, 4 MiB segments.
    let offload = |path: &str, command: &str, lun: u16| {
        common::sample(
            &common::scrape(metrics),
            &format!("oxtgt_offload_bytes_total{{lu=\"{TARGET}/lun{lun}\",command=\"{command}\",path=\"{path}\"}}"),
        )
    };
    let (n0, n1) = (naa(&mut i, 0).unwrap(), naa(&mut i, 1).unwrap());
    let seg = (4 * MIB / 512) as u16 as u64;
    let segs: Vec<Vec<u8>> = (0..blocks / seg)
        .map(|k| seg_blocks(0, 1, seg as u16, k * seg, k * seg, false))
        .collect();
    let p = list(1, 2, &[cscd(&n0, 512), cscd(&n1, 512)], &segs);
    let before = gateway_bytes(&asok);
    let t = Instant::now();
    let r = i
        .scsi(1, &testkit::xcopy::command(p.len()), 0, Some(&p))
        .unwrap();
    let xcopy = t.elapsed();
    assert_eq!(r.status, GOOD, "{:?}", r.sense_code());
    let through = gateway_bytes(&asok) - before;
    let by_copy_from = offload("copy_from", "extended_copy", 1);
    let bounced = offload("bounce", "extended_copy", 1);
    println!(
        "rbd: 256 MiB EXTENDED COPY in {} ms (host copy through oxtgt {} ms, {:.1}x); \
         copy-from {by_copy_from} bytes, through oxtgt's buffers {bounced}; \
         the gateway's librados moved {through} bytes ({:.3} % of the copy)",
        xcopy.as_millis(),
        host.as_millis(),
        host.as_secs_f64() / xcopy.as_secs_f64(),
        through as f64 * 100.0 / len as f64
    );
    assert_eq!(by_copy_from, len as f64, "every object by copy-from");
    assert_eq!(bounced, 0.0);
    assert!(through * 100 <= len, "the gateway moved {through} bytes");
    assert!(
        read_all(&mut i, 1, len) == data,
        "EXTENDED COPY: data differs"
    );

    // ODX: POPULATE TOKEN on LUN 0 (a point-in-time RBD snapshot), WRITE USING
    // TOKEN into LUN 2; then overwrite the source and check the copy kept the
    // point in time.
    let before = gateway_bytes(&asok);
    let t = Instant::now();
    let (r, token) = testkit::rod::populate(&mut i, 0, 11, None, 0, &[(0, blocks as u32)]).unwrap();
    let token = token.unwrap_or_else(|| panic!("POPULATE TOKEN: {:?}", r.sense_code()));
    let pt = t.elapsed();
    let mut through = gateway_bytes(&asok) - before;
    let snaps = rbd(&conf, &["snap", "ls", &format!("rbd/{}", images.names[0])]);
    assert!(
        snaps.contains("oxtgt.rod."),
        "the token holds a snapshot: {snaps}"
    );
    // Change the source after the token: the copy must not see it.
    let r = i
        .scsi(
            0,
            &cdb::write16(0, 2048),
            0,
            Some(&vec![0xee; MIB as usize]),
        )
        .unwrap();
    assert_eq!(r.status, GOOD);
    let before = gateway_bytes(&asok);
    let t = Instant::now();
    let r = testkit::rod::write(&mut i, 2, 12, &token, 0, true, &[(0, blocks as u32)]).unwrap();
    assert_eq!(r.status, GOOD, "WRITE USING TOKEN: {:?}", r.sense_code());
    let odx = pt + t.elapsed();
    through += gateway_bytes(&asok) - before;
    let odx_copy_from = offload("copy_from", "write_using_token", 2);
    println!(
        "rbd: 256 MiB ODX (PT + WUT) in {} ms; copy-from {odx_copy_from} bytes; the gateway's librados moved {through} bytes during the PT and the WUT ({:.3} %)",
        odx.as_millis(),
        through as f64 * 100.0 / len as f64
    );
    assert_eq!(odx_copy_from, len as f64);
    assert!(through * 100 <= len, "the gateway moved {through} bytes");
    assert!(
        read_all(&mut i, 2, len) == data,
        "ODX: data differs from the point in time"
    );
    // DEL_TKN on the last WUT ended the token: its snapshot goes with it.
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !rbd(&conf, &["snap", "ls", &format!("rbd/{}", images.names[0])]).contains("oxtgt.rod.")
    });
    assert!(gone, "the token's snapshot was not removed");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
