//! The core target's endurance figure: 16 sessions doing verified random writes and
//! reads against a file LUN for five minutes (OXTGT_SOAK_SECS overrides), with no
//! error and the server's resident memory under 64 MiB throughout.

mod common;

use common::{Server, TARGET};
use testkit::load::{self, Endpoint};

const CONFIG: &str = r#"
[[target]]
name = "iqn.2026-11.org.oxtgt:test"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "{dir}/soak.img"
size = "1GiB"
"#;

#[test]
fn sixteen_sessions_verified_random_io_within_64_mib() {
    let secs: f64 = std::env::var("OXTGT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300.0);
    let server = Server::start("soak", CONFIG);
    let ep = Endpoint {
        addr: server.addr(),
        target: TARGET.into(),
        lun: 0,
        block_size: 512,
    };
    let span = (1u64 << 30) / 512;
    let (r, peak_mib) =
        server.peak_rss_during(|| load::soak(&ep, 16, span, 128, secs).expect("soak ran"));
    println!(
        "soak {secs:.0} s: {} writes, {} reads, {:.1} GB moved, {} errors, peak RSS {peak_mib:.1} MiB",
        r.writes,
        r.reads,
        r.bytes as f64 / 1e9,
        r.errors
    );
    assert!(
        r.writes > 1000 && r.reads > 1000,
        "the soak did little: {r:?}"
    );
    assert_eq!(r.errors, 0, "verification errors");
    assert!(peak_mib < 64.0, "peak RSS {peak_mib:.1} MiB");
}
