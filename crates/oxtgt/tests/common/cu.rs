//! libiscsi's iscsi-test-cu: running it and reading its verdicts.

use std::collections::BTreeMap;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Skip,
    Fail,
}

/// Parses `iscsi-test-cu -v -V` output into per-test verdicts, keyed `Suite.Test`.
pub fn parse(out: &str) -> BTreeMap<String, Verdict> {
    let mut res = BTreeMap::new();
    let mut suite = String::new();
    let mut cur: Option<(String, bool)> = None;
    let finish =
        |cur: &mut Option<(String, bool)>, failed: bool, res: &mut BTreeMap<String, Verdict>| {
            if let Some((name, skipped)) = cur.take() {
                let v = if failed {
                    Verdict::Fail
                } else if skipped {
                    Verdict::Skip
                } else {
                    Verdict::Pass
                };
                res.insert(name, v);
            }
        };
    for line in out.lines() {
        if let Some(s) = line.strip_prefix("Suite: ") {
            suite = s.trim().to_owned();
            continue;
        }
        if let Some(rest) = line.strip_prefix("  Test: ") {
            let (name, tail) = rest.split_once(" ...").unwrap_or((rest, ""));
            cur = Some((
                format!("{suite}.{}", name.trim()),
                tail.contains("[SKIPPED]"),
            ));
            let t = tail.trim_start();
            if t.starts_with("passed") || t.starts_with("FAILED") {
                finish(&mut cur, t.starts_with("FAILED"), &mut res);
            }
            continue;
        }
        if cur.is_some() {
            if line.starts_with("passed") || line.starts_with("FAILED") {
                finish(&mut cur, line.starts_with("FAILED"), &mut res);
            } else if line.contains("[SKIPPED]") {
                if let Some(c) = cur.as_mut() {
                    c.1 = true;
                }
            }
        }
    }
    res
}

pub fn run_cu(args: &[&str]) -> String {
    let out = Command::new("iscsi-test-cu")
        .args(args)
        .output()
        .expect("iscsi-test-cu is not installed: run scripts/test, which installs libiscsi-bin");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

#[test]
fn cu_parser_reads_verdicts_and_skips() {
    let out = "Suite: Read10\n  Test: Simple ...passed\n  Test: Odd ...\n    [SKIPPED] not here\npassed    [SKIPPED] belongs to teardown\n  Test: Bad ...FAILED\n    1. x.c:1  - ok\n";
    let v = parse(out);
    assert_eq!(v["Read10.Simple"], Verdict::Pass);
    assert_eq!(v["Read10.Odd"], Verdict::Skip);
    assert_eq!(v["Read10.Bad"], Verdict::Fail);
}
