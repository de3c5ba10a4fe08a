//! The core target's endurance figure: 16 sessions doing verified random writes and
//! reads against a file LUN for five minutes (OXTGT_SOAK_SECS overrides), with no
//! error and the server's resident memory under 64 MiB throughout. Its metrics page
//! is scraped every 30 s meanwhile, passes `promtool check metrics` each time, and at
//! the end counts at least the commands and bytes the load generator saw answered.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::{free_port, promtool, sample, scrape, Server, TARGET};
use testkit::load::{self, Endpoint};

const CONFIG: &str = r#"
[server]
metrics_listen = "127.0.0.1:{metrics}"
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
    let metrics = free_port();
    let server = Server::start("soak", &CONFIG.replace("{metrics}", &metrics.to_string()));
    let ep = Endpoint {
        addr: server.addr(),
        target: TARGET.into(),
        lun: 0,
        block_size: 512,
    };
    let span = (1u64 << 30) / 512;
    let done = AtomicBool::new(false);
    let (r, peak_mib, scrapes) = std::thread::scope(|scope| {
        let scraper = scope.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                for _ in 0..300 {
                    if done.load(Ordering::Relaxed) {
                        return n;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                promtool(&scrape(metrics));
                n += 1;
            }
            n
        });
        let (r, peak) =
            server.peak_rss_during(|| load::soak(&ep, 16, span, 128, secs).expect("soak ran"));
        done.store(true, Ordering::Relaxed);
        (r, peak, scraper.join().expect("scraper"))
    });
    let page = scrape(metrics);
    promtool(&page);
    let lu = |m: &str, class: &str| {
        sample(
            &page,
            &format!("{m}{{lu=\"{TARGET}/lun0\",class=\"{class}\"}}"),
        )
    };
    println!(
        "soak metrics: {scrapes} scrapes checked; {} write and {} read commands, {:.1} GB counted",
        lu("oxtgt_lu_commands_total", "write"),
        lu("oxtgt_lu_commands_total", "read"),
        (lu("oxtgt_lu_data_bytes_total", "write") + lu("oxtgt_lu_data_bytes_total", "read")) / 1e9
    );
    assert!(lu("oxtgt_lu_commands_total", "write") >= r.writes as f64);
    assert!(lu("oxtgt_lu_commands_total", "read") >= r.reads as f64);
    assert!(
        lu("oxtgt_lu_data_bytes_total", "write") + lu("oxtgt_lu_data_bytes_total", "read")
            >= r.bytes as f64
    );
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
