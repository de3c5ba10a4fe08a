//! oxload: load generator for oxtgt's benchmarks (writes, ATS latency, soak), driving
//! any iSCSI target through testkit sessions.
//!
//!   oxload io    ADDR TARGET LUN BLOCK_SIZE SESSIONS QD IO_BYTES seq|rand READ_PCT SECS [verify|-] [THREADS] [OPS]
//!                (pipelined: QD commands in flight per session, latency percentiles;
//!                 OPS stops each session after that many commands)
//!   oxload write ADDR TARGET LUN BLOCK_SIZE SESSIONS IO_BYTES seq|rand SECS
//!   oxload ats   ADDR TARGET LUN BLOCK_SIZE WRITERS IO_BYTES SECS [COPY_SRC COPY_DST]
//!   oxload soak  ADDR TARGET LUN BLOCK_SIZE SESSIONS SECS
//!   oxload xcopy ADDR TARGET SRC_LUN BLOCK_SIZE DST_LUN      (whole LU, EXTENDED COPY)
//!   oxload hostcopy ADDR TARGET SRC_LUN BLOCK_SIZE DST_LUN SESSIONS (READ + WRITE)
//!   oxload tape ADDR TARGET SRC_LUN BLOCK_SIZE TAPE_LUN xcopy|host (1 GiB of the disk
//!                                       backed up to the tape, by EXTENDED COPY or by
//!                                       the host: READ + WRITE(6) of 256 KiB blocks)
//!   oxload odx ADDR TARGET SRC_LUN BLOCK_SIZE DST_LUN [whole] (whole LU, PT + WUT of
//!                                       OPTIMAL TRANSFER COUNT, or one WUT per token)
//!   oxload overwrite NEW_FILE [MIB] [WRITES] (no target: what a 4 KiB buffered
//!                                       overwrite costs the kernel there, in large
//!                                       and small page-cache folios; see
//!                                       testkit::pagecache)
//!
//! Sessions log in as one initiator with ISIDs 80 12 34 56 4c NN; several oxload
//! runs against one target at once need OXLOAD_ISID_TAG=4d, 4e, ... (hex, the fifth
//! byte) so they do not reinstate each other's sessions.

use std::process::ExitCode;

const USAGE: &str = "usage:
  oxload io    ADDR TARGET LUN BLOCK_SIZE SESSIONS QD IO_BYTES seq|rand READ_PCT SECS [verify|-] [THREADS] [OPS]
  oxload write ADDR TARGET LUN BLOCK_SIZE SESSIONS IO_BYTES seq|rand SECS
  oxload ats   ADDR TARGET LUN BLOCK_SIZE WRITERS IO_BYTES SECS [COPY_SRC COPY_DST]
  oxload soak  ADDR TARGET LUN BLOCK_SIZE SESSIONS SECS
  oxload xcopy ADDR TARGET SRC_LUN BLOCK_SIZE DST_LUN
  oxload hostcopy ADDR TARGET SRC_LUN BLOCK_SIZE DST_LUN SESSIONS
  oxload tape  ADDR TARGET SRC_LUN BLOCK_SIZE TAPE_LUN xcopy|host
  oxload odx   ADDR TARGET SRC_LUN BLOCK_SIZE DST_LUN [whole]
  oxload overwrite NEW_FILE [MIB] [WRITES]";

use testkit::load::{self, Endpoint, Pattern};

fn arg<T: std::str::FromStr>(a: &[String], i: usize, what: &str) -> Result<T, String> {
    a.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}: {:?}", a[i]))
}

fn run(a: &[String]) -> Result<(), String> {
    let mode = a.first().ok_or(USAGE)?;
    if mode == "overwrite" {
        let path: std::path::PathBuf = arg(a, 1, "NEW_FILE")?;
        let mib: u64 = a.get(2).map_or(Ok(1024), |_| arg(a, 2, "MIB"))?;
        let writes: usize = a.get(3).map_or(Ok(50_000), |_| arg(a, 3, "WRITES"))?;
        let o = testkit::pagecache::overwrite_probe(&path, mib << 20, writes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", o.line());
        return Ok(());
    }
    let ep = Endpoint {
        addr: arg(a, 1, "ADDR")?,
        target: arg(a, 2, "TARGET")?,
        lun: arg(a, 3, "LUN")?,
        block_size: arg(a, 4, "BLOCK_SIZE")?,
    };
    let cap = ep.capacity_blocks().map_err(|e| e.to_string())?;
    let span = ((1u64 << 30) / u64::from(ep.block_size)).min(cap);
    match mode.as_str() {
        "io" => {
            let pattern = match a.get(8).map(String::as_str) {
                Some("seq") => Pattern::Sequential,
                Some("rand") => Pattern::Random,
                _ => return Err("pattern must be seq or rand".into()),
            };
            let spec = testkit::perf::Spec {
                sessions: arg(a, 5, "SESSIONS")?,
                queue_depth: arg(a, 6, "QD")?,
                io_bytes: arg(a, 7, "IO_BYTES")?,
                pattern,
                read_pct: arg(a, 9, "READ_PCT")?,
                span_blocks: span,
                secs: arg(a, 10, "SECS")?,
                verify: a.get(11).is_some_and(|v| v == "verify"),
                threads: match a.get(12) {
                    Some(_) => arg(a, 12, "THREADS")?,
                    None => 1,
                },
                max_ops: match a.get(13) {
                    Some(_) => arg(a, 13, "OPS")?,
                    None => 0,
                },
            };
            let r = testkit::perf::run(&ep, &spec).map_err(|e| e.to_string())?;
            println!("{}", r.line());
            if r.errors > 0 || r.mismatches > 0 {
                return Err(format!("{} errors, {} mismatches", r.errors, r.mismatches));
            }
        }
        "write" => {
            let pattern = match a.get(7).map(String::as_str) {
                Some("seq") => Pattern::Sequential,
                Some("rand") => Pattern::Random,
                _ => return Err("pattern must be seq or rand".into()),
            };
            let t = load::write_throughput(
                &ep,
                arg(a, 5, "SESSIONS")?,
                arg(a, 6, "IO_BYTES")?,
                span,
                pattern,
                arg(a, 8, "SECS")?,
            )
            .map_err(|e| e.to_string())?;
            println!("write iops {:.0} MB/s {:.1}", t.iops(), t.mb_per_sec());
        }
        "ats" => {
            let l = load::ats_latency(
                &ep,
                0,
                arg(a, 5, "WRITERS")?,
                arg(a, 6, "IO_BYTES")?,
                span - 2048,
                arg(a, 7, "SECS")?,
                match (a.get(8), a.get(9)) {
                    (Some(_), Some(_)) => {
                        let src: u16 = arg(a, 8, "COPY_SRC")?;
                        let mut e = ep.clone();
                        e.lun = src;
                        Some((
                            src,
                            arg(a, 9, "COPY_DST")?,
                            e.capacity_blocks().map_err(|e| e.to_string())?,
                        ))
                    }
                    _ => None,
                },
            )
            .map_err(|e| e.to_string())?;
            println!(
                "ats samples {} p50_us {:.0} p99_us {:.0} max_us {:.0}",
                l.samples, l.p50_us, l.p99_us, l.max_us
            );
        }
        "soak" => {
            let s = load::soak(&ep, arg(a, 5, "SESSIONS")?, span, 64, arg(a, 6, "SECS")?)
                .map_err(|e| e.to_string())?;
            println!(
                "soak writes {} reads {} bytes {} errors {}",
                s.writes, s.reads, s.bytes, s.errors
            );
            if s.errors > 0 {
                return Err(format!("{} verification errors", s.errors));
            }
        }
        "xcopy" => {
            let t =
                load::xcopy(&ep, ep.lun, arg(a, 5, "DST_LUN")?, cap).map_err(|e| e.to_string())?;
            let bytes = cap * u64::from(ep.block_size);
            println!(
                "xcopy bytes {bytes} ms {:.3} GB/s {:.2}",
                t.as_secs_f64() * 1e3,
                bytes as f64 / t.as_secs_f64() / 1e9
            );
        }
        "odx" => {
            let whole = a.get(6).is_some_and(|w| w == "whole");
            let t = load::odx(&ep, ep.lun, arg(a, 5, "DST_LUN")?, cap, whole)
                .map_err(|e| e.to_string())?;
            let bytes = cap * u64::from(ep.block_size);
            println!(
                "odx bytes {bytes} ms {:.3} GB/s {:.2} pt_ms {:.3} max_pt_ms {:.3} max_wut_ms {:.3}",
                t.total.as_secs_f64() * 1e3,
                bytes as f64 / t.total.as_secs_f64() / 1e9,
                t.populate.as_secs_f64() * 1e3,
                t.slowest_pt.as_secs_f64() * 1e3,
                t.slowest_wut.as_secs_f64() * 1e3,
            );
        }
        "tape" => {
            let tape: u16 = arg(a, 5, "TAPE_LUN")?;
            let blocks = span;
            let (took, wire) = match a.get(6).map(String::as_str) {
                Some("xcopy") => load::tape_backup(&ep, ep.lun, tape, blocks),
                Some("host") => load::tape_host_backup(&ep, ep.lun, tape, blocks),
                _ => return Err("tape: xcopy or host".into()),
            }
            .map_err(|e| e.to_string())?;
            let bytes = blocks * u64::from(ep.block_size);
            println!(
                "tape {} bytes {bytes} ms {:.3} GB/s {:.2} wire_bytes {wire}",
                a[6],
                took.as_secs_f64() * 1e3,
                bytes as f64 / took.as_secs_f64() / 1e9
            );
        }
        "hostcopy" => {
            let t = load::host_copy(
                &ep,
                ep.lun,
                arg(a, 5, "DST_LUN")?,
                cap,
                arg(a, 6, "SESSIONS")?,
            )
            .map_err(|e| e.to_string())?;
            let bytes = cap * u64::from(ep.block_size);
            println!(
                "hostcopy bytes {bytes} ms {:.3} GB/s {:.2}",
                t.as_secs_f64() * 1e3,
                bytes as f64 / t.as_secs_f64() / 1e9
            );
        }
        other => return Err(format!("unknown mode {other:?}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxload: {e}");
            ExitCode::FAILURE
        }
    }
}
