//! Point-in-time images of file ranges: shared extents on a reflink filesystem,
//! refused (not silently copied) where the filesystem cannot share.

use std::path::Path;

use backstore::{copy_native, Backstore, FileBackstore};
use testkit::xfs::ReflinkFs;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn read(b: &dyn Backstore, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    b.read_at(&mut v, offset).unwrap();
    v
}

fn used_bytes(dir: &Path) -> u64 {
    let o = std::process::Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn reflink_snapshot_keeps_its_ranges_and_shares_extents() {
    let Some(fs) = ReflinkFs::mount_or_skip("snap", 1 << 30) else {
        return;
    };
    const SIZE: u64 = 128 << 20;
    let src = FileBackstore::open(&fs.path().join("src.img"), false, Some(SIZE)).unwrap();
    let old = pattern(64 << 20, 1);
    src.write_at(&old, 0, false).unwrap();
    src.flush().unwrap();
    let before = used_bytes(fs.path());
    // Unaligned edges on both sides, a one-byte range, and a range in the hole.
    let ranges = [
        (512u64, (48 << 20) + 100),
        ((50 << 20) + 4095, 1),
        (100 << 20, 1 << 20),
    ];
    let image = src
        .snapshot()
        .expect("regular files offer snapshots")
        .snapshot_ranges(&ranges)
        .unwrap()
        .expect("XFS with reflink=1 can share extents");
    assert_eq!(image.size(), SIZE);
    let grew = used_bytes(fs.path()).saturating_sub(before);
    assert!(
        grew < 4 << 20,
        "a 48 MiB snapshot took {grew} bytes of new space"
    );

    // Overwrite everything the ranges cover; the image keeps the old data.
    src.write_at(&pattern(64 << 20, 2), 0, false).unwrap();
    src.write_at(&[7u8; 1 << 20], 100 << 20, false).unwrap();
    for &(off, len) in &ranges {
        let want = if off >= 64 << 20 {
            vec![0u8; len as usize]
        } else {
            old[off as usize..(off + len) as usize].to_vec()
        };
        assert!(
            read(image.as_ref(), off, len as usize) == want,
            "range at {off} changed"
        );
    }
    assert_eq!(read(&src, 512, 16), pattern(64 << 20, 2)[512..528].to_vec());

    // The image is a native copy source: reflink again into another file.
    let dst = FileBackstore::open(&fs.path().join("dst.img"), false, Some(SIZE)).unwrap();
    let r = copy_native(image.as_ref(), 1 << 20, &dst, 1 << 20, 32 << 20)
        .unwrap()
        .expect("file to file on one filesystem");
    assert_eq!(r.reflink, 32 << 20, "{r:?}");
    assert!(read(&dst, 1 << 20, 32 << 20) == old[1 << 20..33 << 20]);

    // The image is unnamed: nothing is left in the directory.
    let names: Vec<_> = std::fs::read_dir(fs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(src
        .snapshot()
        .unwrap()
        .snapshot_ranges(&[(SIZE, 1)])
        .is_err());
}

/// tmpfs cannot share extents: no image, rather than a silent full copy.
#[test]
fn no_snapshot_where_the_filesystem_cannot_share() {
    let dir = Path::new("/dev/shm");
    if !dir.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "no /dev/shm under CI");
        println!("SKIPPED: no /dev/shm");
        return;
    }
    let path = dir.join(format!("oxtgt-snap-{}", std::process::id()));
    let src = FileBackstore::open(&path, false, Some(8 << 20)).unwrap();
    src.write_at(&[1u8; 1 << 20], 0, false).unwrap();
    let r = src
        .snapshot()
        .unwrap()
        .snapshot_ranges(&[(0, 4 << 20)])
        .unwrap();
    assert!(r.is_none());
    let _ = std::fs::remove_file(&path);
}
