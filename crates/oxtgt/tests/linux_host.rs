//! A real Linux host against oxtgt: a Debian guest under QEMU (software emulation)
//! whose open-iscsi, sd driver, sg3_utils, fio, XFS and dm-multipath use a live oxtgt
//! the way a production host does. The guest's checks (tests/linux_host/checks.sh) are
//! reported one by one like cargo's tests; any failure fails this test.
//!
//! The guest's only way out is one QEMU `guestfwd` rule per oxtgt portal, each running
//! this binary as a relay (`--relay`) to 127.0.0.1; user-mode networking with
//! `restrict=on` routes nothing else, which the guest's `isolation` check proves.
//! The guest asks the host, through files on its 9p share, to cut and restore portal
//! paths (the multipath and reset checks).
//!
//! Runs without libtest (`harness = false`): one VM boot serves every check.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The guest's iSCSI initiator name (baked into the image).
const INITIATOR: &str = "iqn.2026-11.org.oxtgt:linux-host";
/// Guest-side portal addresses; each maps to one oxtgt portal on 127.0.0.1.
const GUEST_PORTAL_A: &str = "10.0.2.100:3260";
const GUEST_PORTAL_B: &str = "10.0.2.101:3260";
const GUEST_PORTAL_C: &str = "10.0.2.102:3260";
/// The whole guest run, boot to power-off.
const DEADLINE: Duration = Duration::from_secs(20 * 60);
const CHAP_USER: &str = "linux-host";
const CHAP_SECRET: &str = "guest-secret-0123";
const CHAP_TARGET_USER: &str = "oxtgt-secure";
const CHAP_TARGET_SECRET: &str = "target-secret-4567";

fn config(pa: u16, pb: u16, pc: u16) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:{pa}", "127.0.0.1:{pb}", "127.0.0.1:{pc}"]
state_dir = "{{dir}}/state"

# Disks for the filesystem, fio, thin provisioning, COMPARE AND WRITE and copies.
[[target]]
name = "iqn.2026-11.org.oxtgt:host"
[[target.lun]]
id = 0
backstore = "file"
path = "{{dir}}/xfs.img"
size = "1GiB"
physical_block_size = 4096
thin = true
[[target.lun]]
id = 1
backstore = "file"
path = "{{dir}}/work.img"
size = "256MiB"
thin = true
[[target.lun]]
id = 2
backstore = "file"
path = "{{dir}}/copy.img"
size = "64MiB"
thin = true
[[target.lun]]
id = 3
backstore = "ram"
size = "64MiB"
block_size = 4096
[[target.lun]]
id = 4
backstore = "ram"
size = "16MiB"
[[target.acl]]
initiator = "{INITIATOR}"
luns = [0, 1, 2, 3]

# A second target: copies between targets.
[[target]]
name = "iqn.2026-11.org.oxtgt:second"
[[target.lun]]
id = 0
backstore = "file"
path = "{{dir}}/second.img"
size = "64MiB"
thin = true
[[target.acl]]
initiator = "{INITIATOR}"
luns = [0]

# Reached through portals B and C: dm-multipath and reservations from two nexuses.
[[target]]
name = "iqn.2026-11.org.oxtgt:paths"
[[target.lun]]
id = 0
backstore = "ram"
size = "256MiB"
[[target.acl]]
initiator = "{INITIATOR}"
luns = [0]

# A tape drive: st, mt and tar.
[[target]]
name = "iqn.2026-11.org.oxtgt:tape"
[[target.lun]]
id = 0
type = "tape"
path = "{{dir}}/tapes"
size = "2GiB"
cartridge = "HOST0001"
[[target.acl]]
initiator = "{INITIATOR}"
luns = [0]

# CHAP, mutual.
[[target]]
name = "iqn.2026-11.org.oxtgt:secure"
[[target.lun]]
id = 0
backstore = "ram"
size = "16MiB"
[[target.acl]]
initiator = "{INITIATOR}"
luns = [0]
chap = {{ user = "{CHAP_USER}", secret = "{CHAP_SECRET}", target_user = "{CHAP_TARGET_USER}", target_secret = "{CHAP_TARGET_SECRET}" }}
"#
    )
}

/// What the guest's checks need to know, as shell assignments.
fn guest_env(pa: u16) -> String {
    let mut s = String::new();
    for (k, v) in [
        ("PORTAL_A", GUEST_PORTAL_A.to_string()),
        ("PORTAL_B", GUEST_PORTAL_B.to_string()),
        ("PORTAL_C", GUEST_PORTAL_C.to_string()),
        ("HOST_PORT_A", pa.to_string()),
        ("T_HOST", "iqn.2026-11.org.oxtgt:host".into()),
        ("T_SECOND", "iqn.2026-11.org.oxtgt:second".into()),
        ("T_PATHS", "iqn.2026-11.org.oxtgt:paths".into()),
        ("T_SECURE", "iqn.2026-11.org.oxtgt:secure".into()),
        ("T_TAPE", "iqn.2026-11.org.oxtgt:tape".into()),
        ("CHAP_USER", CHAP_USER.into()),
        ("CHAP_SECRET", CHAP_SECRET.into()),
        ("CHAP_TARGET_USER", CHAP_TARGET_USER.into()),
        ("CHAP_TARGET_SECRET", CHAP_TARGET_SECRET.into()),
    ] {
        let _ = writeln!(s, "{k}='{v}'");
    }
    if let Ok(level) = std::env::var("OXTGT_LINUX_HOST_ISCSID_DEBUG") {
        let _ = writeln!(s, "ISCSID_DEBUG='{level}'");
    }
    if let Ok(only) = std::env::var("OXTGT_LINUX_HOST_CHECKS") {
        let _ = writeln!(s, "ONLY='{only}'");
    }
    s
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Where QEMU cannot run at all the run says so loudly, and fails under CI (CI here
/// can run it).
fn cannot_run(why: &str) -> ExitCode {
    if in_ci() {
        eprintln!("linux host: FAILED: {why}");
        ExitCode::FAILURE
    } else {
        println!("linux host: SKIPPED — {why}");
        println!("linux host: SKIPPED — no real-host check ran");
        ExitCode::SUCCESS
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cached image's folder, built by scripts/linux-host/image when its recipe changed.
fn image() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/linux-host/image"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/linux-host/image: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/linux-host/image exited with {}",
            out.status
        ));
    }
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    Ok(PathBuf::from(dir))
}

fn qemu(img: &Path, share: &Path, relays: &[(&str, u16)], ctl: &Path, console: &Path) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut net = String::from("user,id=n0,restrict=on");
    for (guest, port) in relays {
        let (ip, gport) = guest.split_once(':').unwrap();
        let _ = write!(
            net,
            ",guestfwd=tcp:{ip}:{gport}-cmd:{} --relay 127.0.0.1:{port} {}",
            exe.display(),
            ctl.display()
        );
    }
    Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1536", "-smp", "2", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(img.join("vmlinuz"))
        .arg("-initrd")
        .arg(img.join("initrd.img"))
        .args([
            "-append",
            "root=/dev/vda rw console=ttyS0 init=/sbin/oxtgt-guest-init net.ifnames=0 quiet",
        ])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,snapshot=on",
            img.join("root.img").display()
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=host,security_model=none,id=host",
            share.display()
        ))
        .args(["-netdev", &net, "-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu-system-x86_64")
}

/// Answers the guest's requests (`out/request-N`, answered in `out/ack-N`): `cut P`
/// ends portal P's connections and refuses new ones, `restore P` lets them through
/// again, `kill P` ends its connections only.
fn serve_requests(out: &Path, ctl: &Path, ports: &[(&str, u16)], answered: &mut usize) {
    loop {
        let n = *answered + 1;
        let Ok(req) = fs::read_to_string(out.join(format!("request-{n}"))) else {
            return;
        };
        let mut words = req.split_whitespace();
        let (verb, which) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let port = ports.iter().find(|(name, _)| *name == which).map(|p| p.1);
        let answer = match (verb, port) {
            ("cut", Some(p)) => testkit::relay::cut(ctl, p, true).map(|n| format!("cut {n}")),
            ("kill", Some(p)) => testkit::relay::cut(ctl, p, false).map(|n| format!("killed {n}")),
            ("restore", Some(p)) => testkit::relay::unblock(ctl, p).map(|()| "restored".into()),
            _ => Ok(format!("unknown request {req:?}")),
        }
        .unwrap_or_else(|e| format!("error {e}"));
        println!("linux host: guest asked {:?}: {answer}", req.trim());
        let tmp = out.join(format!(".ack-{n}"));
        fs::write(&tmp, answer).expect("write ack");
        fs::rename(&tmp, out.join(format!("ack-{n}"))).expect("publish ack");
        *answered = n;
    }
}

struct Outcome {
    planned: Vec<String>,
    passed: Vec<String>,
    failed: Vec<(String, String)>,
    done: bool,
}

fn read_results(out: &Path) -> Outcome {
    let text = fs::read_to_string(out.join("results")).unwrap_or_default();
    let mut o = Outcome {
        planned: Vec::new(),
        passed: Vec::new(),
        failed: Vec::new(),
        done: false,
    };
    for line in text.lines() {
        let mut w = line.splitn(4, ' ');
        match w.next() {
            Some("plan") => o.planned = line.split(' ').skip(1).map(String::from).collect(),
            Some("ok") => o.passed.push(w.next().unwrap_or("").into()),
            Some("FAILED") => {
                let name = w.next().unwrap_or("").to_string();
                let _secs = w.next();
                o.failed.push((name, w.next().unwrap_or("").into()));
            }
            Some("done") => o.done = true,
            _ => {}
        }
    }
    o
}

fn print_progress(out: &Path, shown: &mut usize) {
    let text = fs::read_to_string(out.join("results")).unwrap_or_default();
    for line in text.lines().skip(*shown) {
        let mut w = line.splitn(4, ' ');
        match (w.next(), w.next(), w.next(), w.next()) {
            (Some("ok"), Some(name), Some(secs), _) => {
                println!("test linux_host::{name} ... ok ({secs} s)")
            }
            (Some("FAILED"), Some(name), Some(secs), why) => println!(
                "test linux_host::{name} ... FAILED ({secs} s): {}",
                why.unwrap_or("")
            ),
            _ => {}
        }
        *shown += 1;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let _ = fs::create_dir_all(to);
    if let Ok(rd) = fs::read_dir(from) {
        for e in rd.flatten() {
            let _ = fs::copy(e.path(), to.join(e.file_name()));
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--relay") {
        let (Some(addr), Some(dir)) = (args.get(1), args.get(2)) else {
            return ExitCode::from(2);
        };
        return if testkit::relay::relay(addr, Path::new(dir)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if selected(&args) {
        run()
    } else {
        ExitCode::SUCCESS
    }
}

/// The libtest conventions cargo and nextest pass on: `--list` (with `--ignored`,
/// the ignored tests: none), name filters, `--skip NAME`, `--exact`, `--ignored`.
/// Whether this one test is to run; `--list` prints it and runs nothing.
fn selected(args: &[String]) -> bool {
    const NAME: &str = "linux_host";
    let flag = |f: &str| args.iter().any(|a| a == f);
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--skip" => skips.extend(it.next()),
            // Options with a value: the value is not a filter.
            "--format" | "--test-threads" | "--color" | "-Z" | "--logfile" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            _ => filters.push(a.as_str()),
        }
    }
    let matches = |f: &str| {
        if flag("--exact") {
            f == NAME
        } else {
            NAME.contains(f)
        }
    };
    let chosen = (filters.is_empty() || filters.iter().any(|f| matches(f)))
        && !skips.iter().any(|s| matches(s))
        && !flag("--ignored");
    if flag("--list") {
        if chosen {
            println!("{NAME}: test");
        }
        return false;
    }
    chosen
}

fn run() -> ExitCode {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return cannot_run("qemu-system-x86_64 is not installed (scripts/test installs it)");
    }
    let img = match image() {
        Ok(d) => d,
        Err(e) => return cannot_run(&format!("no guest image: {e}")),
    };
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < 3 {
        let p = common::free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let (pa, pb, pc) = (ports[0], ports[1], ports[2]);
    let server = common::Server::start_on_config_portals("linux-host", &config(pa, pb, pc));
    let share = server.dir.join("share");
    let (guest, out, ctl) = (
        share.join("guest"),
        share.join("out"),
        server.dir.join("ctl"),
    );
    for d in [&guest, &out, &ctl] {
        fs::create_dir_all(d).unwrap();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linux_host");
    for f in ["run", "checks.sh"] {
        fs::copy(src.join(f), guest.join(f)).unwrap();
    }
    fs::write(guest.join("env"), guest_env(pa)).unwrap();
    let console = server.dir.join("console.log");
    let ports = [("A", pa), ("B", pb), ("C", pc)];
    let started = Instant::now();
    println!(
        "linux host: booting {} (kernel {}) against oxtgt on 127.0.0.1:{pa}, :{pb} and :{pc}",
        img.display(),
        fs::read_to_string(img.join("kernel-version"))
            .unwrap_or_default()
            .trim()
    );
    let mut vm = qemu(
        &img,
        &share,
        &[
            (GUEST_PORTAL_A, pa),
            (GUEST_PORTAL_B, pb),
            (GUEST_PORTAL_C, pc),
        ],
        &ctl,
        &console,
    );
    let (mut answered, mut shown) = (0, 0);
    let status = loop {
        serve_requests(&out, &ctl, &ports, &mut answered);
        print_progress(&out, &mut shown);
        if let Some(st) = vm.try_wait().expect("wait for qemu") {
            break Some(st);
        }
        if started.elapsed() > DEADLINE {
            let _ = vm.kill();
            let _ = vm.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    print_progress(&out, &mut shown);
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("linux-host");
    copy_dir(&out, &keep);
    let _ = fs::copy(&console, keep.join("console.log"));
    let _ = fs::copy(ctl.join("relay.log"), keep.join("relay.log"));

    let o = read_results(&out);
    let versions = fs::read_to_string(out.join("versions")).unwrap_or_default();
    let missing: Vec<&String> = o
        .planned
        .iter()
        .filter(|c| !o.passed.contains(c) && !o.failed.iter().any(|(f, _)| f == *c))
        .collect();
    for (name, why) in &o.failed {
        println!("---- linux_host::{name} ({why}); its log's end:");
        println!("{}", tail(&out.join(format!("{name}.log")), 40));
    }
    let complete = status.is_some() && o.done && !o.planned.is_empty() && missing.is_empty();
    if !complete {
        println!(
            "---- the guest did not finish ({}); not run: {missing:?}; console's end:",
            match status {
                None => format!("killed after {} s", DEADLINE.as_secs()),
                Some(st) => format!("qemu exited with {st}"),
            }
        );
        println!("{}", tail(&console, 40));
    }
    println!(
        "linux host: {} passed, {} failed, {} not run of {} checks in {} s; {}; logs in {}",
        o.passed.len(),
        o.failed.len(),
        missing.len(),
        o.planned.len(),
        started.elapsed().as_secs(),
        versions.trim().trim_start_matches("versions "),
        keep.display()
    );
    if complete && o.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
