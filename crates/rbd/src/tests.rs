//! Against a live cluster: `OXTGT_CEPH_CONF` names its ceph.conf (scripts/test
//! starts one with scripts/ceph/cluster). Without it every test says why it skipped.

use super::*;
use std::path::Path;
use std::process::Command;

fn conf() -> Option<PathBuf> {
    match std::env::var_os("OXTGT_CEPH_CONF") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            // scripts/test sets OXTGT_REQUIRE_CEPH: there a skip would hide a broken setup.
            assert!(
                std::env::var_os("OXTGT_REQUIRE_CEPH").is_none(),
                "OXTGT_REQUIRE_CEPH is set but OXTGT_CEPH_CONF is not"
            );
            eprintln!(
                "skipped: OXTGT_CEPH_CONF is not set (scripts/test starts a one-node cluster)"
            );
            None
        }
    }
}

fn rbd(conf: &Path, args: &[&str]) {
    let out = Command::new("rbd")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("rbd tool");
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh image of `size` bytes with 1 MiB objects (removed on drop).
struct TestImage {
    conf: PathBuf,
    name: String,
}

impl TestImage {
    fn new(conf: &Path, tag: &str, size: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
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
        Self {
            conf: conf.to_owned(),
            name,
        }
    }

    fn cfg(&self) -> RbdConfig {
        RbdConfig {
            pool: "rbd".into(),
            image: self.name.clone(),
            namespace: None,
            client_id: "admin".into(),
            conf: Some(self.conf.clone()),
            keyring: None,
        }
    }

    fn open(&self) -> RbdBackstore {
        RbdBackstore::open(&self.cfg(), false).expect("open")
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("rbd")
            .arg("-c")
            .arg(&self.conf)
            .args(["snap", "purge", &format!("rbd/{}", self.name)])
            .output();
        let _ = Command::new("rbd")
            .arg("-c")
            .arg(&self.conf)
            .args(["rm", "--no-progress", &format!("rbd/{}", self.name)])
            .output();
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const MIB: u64 = 1 << 20;

#[test]
fn snap_context_decodes() {
    let mut b = Vec::new();
    b.extend_from_slice(&9u64.to_le_bytes());
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(&7u64.to_le_bytes());
    assert_eq!(parse_snap_context(&b), Some((9, vec![7, 4])));
    assert_eq!(parse_snap_context(&b[..15]), None);
    assert_eq!(parse_snap_context(&[]), None);
}

#[test]
fn mapped_runs() {
    let e = [(0, 10), (10, 5), (20, 10)];
    assert_eq!(mapped_run(&e, 0, 100), (true, 15));
    assert_eq!(mapped_run(&e, 3, 100), (true, 12));
    assert_eq!(mapped_run(&e, 15, 100), (false, 5));
    assert_eq!(mapped_run(&e, 25, 3), (true, 3));
    assert_eq!(mapped_run(&e, 30, 10), (false, 10));
    assert_eq!(mapped_run(&[], 0, 7), (false, 7));
}

#[test]
fn reads_writes_and_refuses_past_the_end() {
    let Some(conf) = conf() else { return };
    let img = TestImage::new(&conf, "rw", "16M");
    let b = img.open();
    assert_eq!(b.size(), 16 * MIB);
    assert_eq!(b.kind(), "rbd");
    let data = pattern(1, 3 * MIB as usize);
    b.write_at(&data, MIB / 2 + 512, true).unwrap();
    b.flush().unwrap();
    let mut got = vec![0u8; data.len()];
    b.read_at(&mut got, MIB / 2 + 512).unwrap();
    assert!(got == data);
    let mut z = vec![1u8; 4096];
    b.read_at(&mut z, 10 * MIB).unwrap();
    assert!(z.iter().all(|&x| x == 0), "never written reads zeros");
    let e = b.write_at(&[0; 512], 16 * MIB - 256, false).unwrap_err();
    assert!(backstore::is_out_of_range(&e));
    let e = b.read_at(&mut [0; 512], 16 * MIB).unwrap_err();
    assert!(backstore::is_out_of_range(&e));
    // A second writer (another gateway) is refused while this one holds the image.
    let e = RbdBackstore::open(&img.cfg(), false).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ResourceBusy, "{e}");
    // A reader (another gateway's read-only LU) sees the data.
    let b2 = RbdBackstore::open(&img.cfg(), true).unwrap();
    let mut got2 = vec![0u8; data.len()];
    b2.read_at(&mut got2, MIB / 2 + 512).unwrap();
    assert!(got2 == data);
    assert!(
        b2.write_at(&[0; 512], 0, false).is_err(),
        "read-only handle"
    );
    // Grows, never shrinks.
    assert_eq!(b.resize(32 * MIB).unwrap(), 32 * MIB);
    assert!(b.resize(8 * MIB).is_err());
    // Closed, the image can be taken by the next gateway.
    drop(b);
    let b3 = RbdBackstore::open(&img.cfg(), false).unwrap();
    let mut got3 = vec![0u8; data.len()];
    b3.read_at(&mut got3, MIB / 2 + 512).unwrap();
    assert!(got3 == data);
}

#[test]
fn discard_deallocates_whole_objects_and_zeroes_the_rest() {
    let Some(conf) = conf() else { return };
    let img = TestImage::new(&conf, "thin", "8M");
    let b = img.open();
    let tp = b.thin_provisioning().unwrap();
    assert_eq!(tp.discard_granularity(), MIB);
    assert_eq!(tp.mapped(0, 8 * MIB).unwrap(), (false, 8 * MIB));
    b.write_at(&pattern(2, 4 * MIB as usize), 0, false).unwrap();
    assert_eq!(tp.mapped(0, 8 * MIB).unwrap(), (true, 4 * MIB));
    assert_eq!(tp.mapped(4 * MIB, 4 * MIB).unwrap(), (false, 4 * MIB));
    // Half of object 0, all of 1 and 2, a quarter of 3.
    tp.discard(MIB / 2, 2 * MIB + MIB / 2 + MIB / 4).unwrap();
    let mut got = vec![1u8; 4 * MIB as usize];
    b.read_at(&mut got, 0).unwrap();
    let want = pattern(2, 4 * MIB as usize);
    let (a, z, c) = (
        MIB as usize / 2,
        3 * MIB as usize + MIB as usize / 4,
        4 * MIB as usize,
    );
    assert!(got[..a] == want[..a]);
    assert!(
        got[a..z].iter().all(|&x| x == 0),
        "discarded bytes read zeros"
    );
    assert!(got[z..c] == want[z..c]);
    assert_eq!(tp.mapped(0, 8 * MIB).unwrap(), (true, MIB));
    assert_eq!(tp.mapped(MIB, 8 * MIB).unwrap(), (false, 2 * MIB));
    assert_eq!(tp.mapped(3 * MIB, 8 * MIB).unwrap(), (true, MIB));
}

/// Bytes of `b` from `off`.
fn read(b: &dyn Backstore, off: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    b.read_at(&mut v, off).unwrap();
    v
}

#[test]
fn copies_whole_objects_inside_the_cluster() {
    let Some(conf) = conf() else { return };
    let (si, di) = (
        TestImage::new(&conf, "src", "32M"),
        TestImage::new(&conf, "dst", "32M"),
    );
    let (s, d) = (si.open(), di.open());
    let data = pattern(3, 20 * MIB as usize);
    s.write_at(&data, 0, false).unwrap();
    // Object 12 of the source is never written past what `data` covered: leave a
    // hole at objects 20.. and put old data there in the destination.
    d.write_at(&pattern(4, 4 * MIB as usize), 26 * MIB, false)
        .unwrap();
    let (read0, written0) = (
        s.counters.read.load(Ordering::Relaxed),
        d.counters.written.load(Ordering::Relaxed),
    );
    // 100 KiB in from an object boundary on both sides, 27 MiB long: edges of
    // 924 KiB and 100 KiB go through the gateway, 26 objects by copy-from.
    let (off, len) = (100 * 1024, 27 * MIB);
    let r = backstore::copy_native(&s, off, &d, off + MIB, len)
        .unwrap()
        .expect("native");
    assert_eq!(r.copy_from, 26 * MIB);
    assert_eq!(r.bounced, len - 26 * MIB);
    // Through the gateway: the edges, plus one 512-byte object-map marker per object.
    let through = d.counters.written.load(Ordering::Relaxed) - written0;
    assert!(
        through <= (len - 26 * MIB) + 26 * 512,
        "{through} bytes written by the gateway"
    );
    assert_eq!(
        s.counters.read.load(Ordering::Relaxed) - read0,
        len - 26 * MIB
    );
    let mut want = vec![0u8; 32 * MIB as usize];
    want[..data.len()].copy_from_slice(&data);
    assert!(
        read(&d, off + MIB, len) == want[off as usize..(off + len) as usize],
        "data equal"
    );
    // Objects 20-27 of the source do not exist: their copies read zeros (the
    // destination's old data at 26-30 MiB is gone), through this handle (object map).
    assert!(read(&d, 26 * MIB, 2 * MIB).iter().all(|&x| x == 0));
    // And through another handle (the OSDs).
    let d2 = RbdBackstore::open(&di.cfg(), true).unwrap();
    assert!(read(&d2, off + MIB, len) == want[off as usize..(off + len) as usize]);
    // Different offsets modulo the object size: no object-aligned middle.
    assert!(backstore::copy_native(&s, 0, &d, 4096, 8 * MIB)
        .unwrap()
        .is_none());
}

#[test]
fn copy_preserves_the_destinations_snapshots() {
    let Some(conf) = conf() else { return };
    let (si, di) = (
        TestImage::new(&conf, "src", "8M"),
        TestImage::new(&conf, "dst", "8M"),
    );
    let (s, d) = (si.open(), di.open());
    let old = pattern(5, 8 * MIB as usize);
    d.write_at(&old, 0, false).unwrap();
    let snap = d
        .snapshot()
        .unwrap()
        .snapshot_ranges(&[(0, 8 * MIB)])
        .unwrap()
        .unwrap();
    let new = pattern(6, 8 * MIB as usize);
    s.write_at(&new, 0, false).unwrap();
    let r = backstore::copy_native(&s, 0, &d, 0, 8 * MIB)
        .unwrap()
        .unwrap();
    assert_eq!(r.copy_from, 8 * MIB);
    assert!(read(&d, 0, 8 * MIB) == new);
    assert!(
        read(&*snap, 0, 8 * MIB) == old,
        "the snapshot kept the old data"
    );
    // Copying from a snapshot reads the snapshot, not the head.
    let (ti, t) = {
        let ti = TestImage::new(&conf, "t", "8M");
        let t = ti.open();
        (ti, t)
    };
    let r = backstore::copy_native(&*snap, 0, &t, 0, 8 * MIB)
        .unwrap()
        .unwrap();
    assert_eq!(r.copy_from, 8 * MIB);
    assert!(read(&t, 0, 8 * MIB) == old);
    // The token's snapshot is removed with its store.
    drop(snap);
    let out = Command::new("rbd")
        .arg("-c")
        .arg(&conf)
        .args(["snap", "ls", &format!("rbd/{}", di.name)])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("oxtgt.rod"),
        "snapshot removed"
    );
    // One left behind by a crash is removed when the image is next opened; an
    // administrator's snapshot stays.
    rbd(
        &conf,
        &[
            "snap",
            "create",
            &format!("rbd/{}@oxtgt.rod.1.2.3", si.name),
        ],
    );
    rbd(&conf, &["snap", "create", &format!("rbd/{}@keep", si.name)]);
    drop(s);
    let s = si.open();
    assert_eq!(s.snapshot_names().unwrap(), ["keep"]);
    drop((s, t, ti));
}

#[test]
fn a_snapshot_waits_for_copies_in_flight() {
    let Some(conf) = conf() else { return };
    let (si, di) = (
        TestImage::new(&conf, "src", "64M"),
        TestImage::new(&conf, "dst", "64M"),
    );
    let (s, d) = (si.open(), di.open());
    let new = pattern(7, 64 * MIB as usize);
    s.write_at(&new, 0, false).unwrap();
    let old = pattern(8, 64 * MIB as usize);
    d.write_at(&old, 0, false).unwrap();
    // A snapshot from the rbd tool (another client) while one copy of 64 objects
    // runs: it holds until the copy is done, so it has all old or all new.
    std::thread::scope(|sc| {
        let copy = sc.spawn(|| {
            backstore::copy_native(&s, 0, &d, 0, 64 * MIB)
                .unwrap()
                .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(30));
        rbd(&conf, &["snap", "create", &format!("rbd/{}@mid", di.name)]);
        assert_eq!(copy.join().unwrap().copy_from, 64 * MIB);
    });
    let at = RbdConfig {
        image: di.name.clone(),
        ..di.cfg()
    };
    let snap = {
        let cluster = Cluster::get(&at).unwrap();
        let io = IoCtx::open(&cluster, Ok("rbd"), None).unwrap();
        let (img, sn) = (cstr(&di.name).unwrap(), cstr("mid").unwrap());
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: valid names and ioctx.
        check(
            unsafe { ffi::rbd_open_read_only(io.raw, img.as_ptr(), &mut raw, sn.as_ptr()) },
            "open",
        )
        .unwrap();
        RbdBackstore::with_image(&at, cluster, io, Arc::new(Image { raw }), true, None).unwrap()
    };
    let got = read(&snap, 0, 64 * MIB);
    assert!(got == old || got == new, "the snapshot cut through a copy");
    println!(
        "rbd: a snapshot during a 64-object copy holds {}",
        if got == new {
            "the copy"
        } else {
            "the old data"
        }
    );
}
