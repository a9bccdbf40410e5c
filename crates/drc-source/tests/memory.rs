//! Bounded memory: a 1,000,000-row transaction streams through the source without being
//! collected. Its own test binary, so that the peak RSS measured is this scenario's alone.

use std::time::Duration;

use drc_core::change::SourceEvent;
use drc_core::value::Value;
use drc_source::{Source, SourceConfig, StartFrom};
use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

/// Peak resident set size of this process, in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

const ROWS: i64 = 1_000_000;

#[tokio::test]
async fn a_million_row_transaction_streams_in_bounded_memory() {
    let srv = MariaDb::start(ServerOptions::default()).expect("server");
    let mut c = drc_testkit::connect(&srv.url()).await;
    c.query_drop(
        "CREATE DATABASE big; USE big; CREATE TABLE t (id INT PRIMARY KEY, k INT, c CHAR(60))",
    )
    .await
    .expect("create");
    let info = drc_mysql::server_info(&mut c).await.expect("info");
    let start = drc_mysql::current_position(&mut c, &info)
        .await
        .expect("position");
    c.query_drop(format!(
        "INSERT INTO big.t SELECT seq, seq % 1000, LPAD(seq, 60, 'c') FROM seq_1_to_{ROWS}"
    ))
    .await
    .expect("one transaction of a million rows");
    drop(c);

    let mut cfg = SourceConfig::new(srv.url(), 4_000_001);
    cfg.start = StartFrom::Position(start);
    let mut src = Source::connect(cfg).await.expect("source");
    let before = peak_rss_kib();
    let (mut rows, mut expected_id, mut commits) = (0i64, 1i64, 0);
    let read = async {
        while commits == 0 {
            match src.next().await.expect("event") {
                SourceEvent::Rows(r) => {
                    for ch in r {
                        let id = ch.after.as_ref().and_then(|a| a.get(0).cloned());
                        assert_eq!(id, Some(Value::Int(expected_id)), "rows in order");
                        expected_id += 1;
                        rows += 1;
                    }
                }
                SourceEvent::Commit(_) => commits += 1,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), read)
        .await
        .expect("the transaction streams within 5 minutes");
    let after = peak_rss_kib();
    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "1M-row transaction: {rows} rows, peak RSS {:.1} MiB before streaming, {:.1} MiB after \
         (growth {growth_mib:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    assert_eq!(rows, ROWS);
    // Collected, the decoded rows would take well over 200 MiB.
    assert!(
        growth_mib < 64.0,
        "peak RSS grew by {growth_mib:.1} MiB while streaming: the transaction was buffered"
    );
}
