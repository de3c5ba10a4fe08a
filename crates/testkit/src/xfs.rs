//! A loop-mounted XFS with `reflink=1`, for tests of shared-extent paths (reflink
//! copies, snapshots). Needs root, `mkfs.xfs` (xfsprogs) and loop devices; `scripts/test`
//! installs xfsprogs and CI runs as root, so under `CI` a missing piece fails the
//! test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The mounted filesystem; unmounted and removed on drop.
pub struct ReflinkFs {
    mnt: PathBuf,
    dir: PathBuf,
}

fn run(args: &[&str]) -> Result<(), String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl ReflinkFs {
    /// Makes and mounts a `size`-byte XFS image under the temp directory. `Err`
    /// says why this machine cannot.
    pub fn mount(tag: &str, size: u64) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "oxtgt-xfs-{tag}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        let fs = Self { mnt, dir };
        let img = fs.dir.join("xfs.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(size))
            .map_err(|e| e.to_string())?;
        let img = img.to_string_lossy().into_owned();
        run(&["mkfs.xfs", "-q", "-m", "reflink=1", &img])?;
        run(&["mount", "-o", "loop", &img, &fs.mnt.to_string_lossy()])?;
        Ok(fs)
    }

    /// [`ReflinkFs::mount`], or `None` after printing why when not under CI; under
    /// CI (the `CI` variable set) a failure panics, so a skip cannot pass there.
    pub fn mount_or_skip(tag: &str, size: u64) -> Option<Self> {
        match Self::mount(tag, size) {
            Ok(fs) => Some(fs),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("reflink filesystem unavailable under CI: {why}")
            }
            Err(why) => {
                println!("SKIPPED (no reflink filesystem here): {why}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for ReflinkFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
