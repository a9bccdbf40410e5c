//! Where a link starts when it has no checkpoint (issue #13, "no silent start"): only where the
//! operator said (`drc run --start now|SOURCE=POSITION`), never silently at the source's
//! current end; and a source whose binlog at the checkpoint is gone stops the link saying so.

use std::time::Duration;

use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::cluster::{Cluster, CONVERGE};

/// Waits until center `i`'s `/health` mentions every one of `parts`; returns it.
async fn health_says(cluster: &Cluster, i: usize, parts: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if let Some(h) = cluster.health(i).await {
            let text = h.to_string();
            if parts.iter().all(|p| text.contains(p)) {
                return text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health of center {i} never said {parts:?}:\n{}",
            cluster.log(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(cluster: &Cluster, i: usize) -> u64 {
    let mut c = cluster.conn(i).await;
    c.query_first("SELECT COUNT(*) FROM t")
        .await
        .expect("count")
        .unwrap_or(0)
}

async fn insert(cluster: &Cluster, i: usize, ids: std::ops::RangeInclusive<i32>) {
    let mut c = cluster.conn(i).await;
    for id in ids {
        c.query_drop(format!("INSERT INTO t VALUES ({id})"))
            .await
            .expect("insert");
    }
}

/// A first run without `--start` refuses every link (what to run is in the error); a center
/// whose meta database was lost refuses again instead of skipping what was written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_a_checkpoint_refuses_to_start() {
    let mut cl = Cluster::new("nostart", "CREATE TABLE t (id INT PRIMARY KEY)", "auto", "").await;
    cl.start_with(1, &[]);
    let h = health_says(
        &cl,
        1,
        &["a->b", "c->b", "has no checkpoint", "--start now"],
    )
    .await;
    assert!(h.contains("drc bootstrap"), "{h}");
    let (code, text) = cl.status();
    assert_ne!(code, Some(0), "drc status must fail:\n{text}");
    assert!(text.contains("failed"), "{text}");
    assert!(cl.terminate(1, Duration::from_secs(30)).await, "b stops");
    // The operator starts the new, empty cluster.
    cl.start_all();
    cl.wait_running().await;
    insert(&cl, 0, 1..=5).await;
    assert_eq!(cl.wait_converged("t").await, 5);
    // b loses its meta database while a keeps writing.
    cl.kill9(1);
    let mut b = cl.conn(1).await;
    b.query_drop(format!("DROP DATABASE `{}_meta`", cl.db))
        .await
        .expect("drop b's meta database");
    insert(&cl, 0, 6..=10).await;
    cl.start_with(1, &[]);
    health_says(&cl, 1, &["a->b", "has no checkpoint"]).await;
    assert_eq!(
        count(&cl, 1).await,
        5,
        "b applied nothing, and skipped nothing silently"
    );
    let (code, _) = cl.status();
    assert_ne!(code, Some(0));
}

/// `--start SOURCE=POSITION` starts that link exactly there; bad values are refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_a_position_begins_exactly_there() {
    let mut cl = Cluster::new("startat", "CREATE TABLE t (id INT PRIMARY KEY)", "auto", "").await;
    insert(&cl, 0, 1..=5).await;
    let pos_of = |i: usize| {
        let cl = &cl;
        async move {
            let mut c = cl.conn(i).await;
            let p: Option<String> = c
                .query_first("SELECT @@gtid_binlog_pos")
                .await
                .expect("position");
            p.unwrap_or_default()
        }
    };
    let pa = pos_of(0).await;
    let pc = pos_of(2).await;
    insert(&cl, 0, 6..=10).await;
    for (bad, says) in [
        ("a=not-a-position", "is not a binlog position"),
        ("zz=0-1-1", "is not a peer of b"),
        ("b=0-1-1", "is not a peer of b"),
        ("later", "give `now`, or SOURCE=POSITION"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(["run", "--config"])
            .arg(&cl.config)
            .args(["--center", "b", "--start", bad])
            .output()
            .expect("drc run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--start {bad}: {err}");
        assert!(err.contains(says), "--start {bad}: {err}");
    }
    let a_at = format!("a={pa}");
    let c_at = format!("c={pc}");
    cl.start_with(1, &["--start", &a_at, "--start", &c_at]);
    cl.wait_center_running(1).await;
    let cl_ref = &cl;
    drc_testkit::wait_until("b holds rows 6..10", CONVERGE, || async move {
        count(cl_ref, 1).await == 5
    })
    .await;
    let mut b = cl.conn(1).await;
    let ids: Vec<i32> = b.query("SELECT id FROM t ORDER BY id").await.expect("ids");
    assert_eq!(
        ids,
        [6, 7, 8, 9, 10],
        "exactly what a wrote after the position"
    );
}

/// A checkpoint whose binlog the source purged stops the link with an error that says the
/// binlog is gone and what to do; `drc status` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_source_position_stops_the_link_clearly() {
    let servers: Vec<MariaDb> = std::thread::scope(|s| {
        let h: Vec<_> = (0..3)
            .map(|_| s.spawn(|| MariaDb::start(ServerOptions::default()).expect("server")))
            .collect();
        h.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let urls: Vec<String> = servers.iter().map(MariaDb::url).collect();
    let mut cl = Cluster::on(
        &urls,
        "purged",
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "auto",
        "",
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    insert(&cl, 0, 1..=3).await;
    assert_eq!(cl.wait_converged("t").await, 3);
    cl.kill9(1);
    insert(&cl, 0, 4..=6).await;
    let url = urls[0].clone();
    // One rotation, then purge until the older files are gone: c's dump thread may still be
    // reading the file before the rotation for a moment, and MariaDB keeps a file a dump thread
    // is in. Rotating again on every try would keep c one file behind on a fast machine.
    drc_testkit::connect(&url)
        .await
        .query_drop("FLUSH BINARY LOGS")
        .await
        .expect("flush");
    drc_testkit::wait_until("a's older binlog files are purged", CONVERGE, || {
        let url = url.clone();
        async move {
            let mut c = drc_testkit::connect(&url).await;
            let logs: Vec<(String, u64)> = c.query("SHOW BINARY LOGS").await.expect("logs");
            let Some((last, _)) = logs.last().cloned() else {
                return false;
            };
            let _ = c.query_drop(format!("PURGE BINARY LOGS TO '{last}'")).await;
            let logs: Vec<(String, u64)> = c.query("SHOW BINARY LOGS").await.expect("logs");
            logs.len() == 1
        }
    })
    .await;
    cl.start(1);
    let h = health_says(&cl, 1, &["a->b", "is gone", "needs a bootstrap"]).await;
    assert!(h.contains("1236"), "{h}");
    let (code, text) = cl.status();
    assert_ne!(code, Some(0), "drc status must fail:\n{text}");
    for i in 0..3 {
        let _ = cl.terminate(i, Duration::from_secs(30)).await;
    }
    drop(servers);
}

/// `--log-format json`: every log line of a daemon is one JSON object, and a link's lines carry
/// the `link` span that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_link_span() {
    let mut cl = Cluster::new("jsonlog", "CREATE TABLE t (id INT PRIMARY KEY)", "auto", "").await;
    cl.start_with(0, &["--start", "now", "--log-format", "json"]);
    cl.wait_center_running(0).await;
    let log = cl.log(0);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "the daemon logged at info");
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["link"] == "b->a" && l["level"] == "INFO"),
        "a line of link b->a names it in its span:\n{log}"
    );
}
