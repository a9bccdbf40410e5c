//! Size limits against real servers (issue #11, item 5): a local DELETE far larger than the
//! target's `max_allowed_packet`, a row larger than a target accepts, and a source transaction
//! over `[applier] max_transaction_rows` — each ends applied exactly or with the link stopped
//! and saying so, with the daemon's memory bounded.

use std::time::Duration;

use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::cluster::{Cluster, CONVERGE};

/// MariaDB 10.11's default `max_allowed_packet`.
const DEFAULT_PACKET: u64 = 16 << 20;

/// Three servers of the test's own, with these `max_allowed_packet`s.
fn own_servers(packets: [u64; 3]) -> Vec<MariaDb> {
    std::thread::scope(|s| {
        let handles: Vec<_> = packets
            .into_iter()
            .map(|p| {
                s.spawn(move || {
                    MariaDb::start(ServerOptions::default().max_allowed_packet(p))
                        .expect("server starts")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("server thread"))
            .collect()
    })
}

async fn count(cluster: &Cluster, i: usize, q: &str) -> u64 {
    let mut c = cluster.conn(i).await;
    c.query_first(q).await.expect("count").expect("row")
}

/// Waits until `q` (a count) returns `want` in center `i`.
async fn wait_count(cluster: &Cluster, i: usize, q: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let n = count(cluster, i, q).await;
        if n == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{q} in center {i}: {n}, want {want}\n{}",
            cluster.log(i)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until center `i`'s /health shows link `link` failed with an error containing `what`;
/// returns the error.
async fn wait_failed(cluster: &Cluster, i: usize, link: &str, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if let Some(h) = cluster.health(i).await {
            let found = h["links"].as_array().and_then(|ls| {
                ls.iter()
                    .find(|l| l["link"] == link && l["state"] == "failed")
                    .and_then(|l| l["error"].as_str().map(str::to_string))
            });
            if let Some(e) = found.filter(|e| e.contains(what)) {
                assert_eq!(h["ok"], false, "/health must not be ok: {h}");
                return e;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "link {link} never failed with {what:?}:\n{}",
            cluster.log(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The peak resident memory (VmHWM, KiB) of process `pid`.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A 200k-row local DELETE in a last-writer-wins table with the default 16 MiB
/// `max_allowed_packet` everywhere: its tombstones are ~90 MB of SQL. The local-delete reader
/// keeps up (every tombstone recorded) and the links apply it (every row gone everywhere).
/// Before the size limits, the reader sent one query over the limit and retried it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_delete_of_200k_versioned_rows_fits_the_default_packet() {
    let servers = own_servers([DEFAULT_PACKET; 3]);
    let urls: Vec<String> = servers.iter().map(MariaDb::url).collect();
    let rows = 200_000u64;
    let mut cluster = Cluster::on(
        &urls,
        "bigdel",
        &format!(
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL, \
             updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)); \
             INSERT INTO t SELECT seq, CONCAT('row ', seq), '2026-01-01 00:00:00' FROM seq_1_to_{rows}"
        ),
        "auto",
        "",
    )
    .await;
    cluster.start_all();
    cluster.wait_running().await;
    let mut a = cluster.conn(0).await;
    a.query_drop("DELETE FROM t").await.expect("one big delete");
    drop(a);
    let meta = format!("{}_meta", cluster.db);
    wait_count(
        &cluster,
        0,
        &format!("SELECT COUNT(*) FROM `{meta}`.local_tombstone"),
        rows,
    )
    .await;
    for i in 1..3 {
        wait_count(&cluster, i, "SELECT COUNT(*) FROM t", 0).await;
        wait_count(
            &cluster,
            i,
            &format!("SELECT COUNT(*) FROM `{meta}`.tombstone"),
            rows,
        )
        .await;
    }
    for i in 0..3 {
        let h = cluster.health(i).await.expect("health");
        assert_eq!(h["ok"], true, "center {i}: {h}\n{}", cluster.log(i));
    }
}

/// A 30 MiB LONGBLOB row (a 60 MiB statement, hex-encoded): center b's server accepts
/// 128 MiB packets and gets the row exactly, also after an UPDATE whose binlog event (before and
/// after image, 60 MiB) is larger than the source's own 48 MiB `max_allowed_packet`; center c's
/// accepts 16 MiB, so its link from a stops with "row too large for the target", naming the
/// table, key, size and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_mib_row_replicates_or_stops_the_link_clearly() {
    let servers = own_servers([48 << 20, 128 << 20, DEFAULT_PACKET]);
    let urls: Vec<String> = servers.iter().map(MariaDb::url).collect();
    let mut cluster = Cluster::on(
        &urls,
        "bigrow",
        "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB NOT NULL)",
        "auto",
        "",
    )
    .await;
    cluster.start_all();
    cluster.wait_running().await;
    let size = 30u64 << 20;
    let mut a = cluster.conn(0).await;
    a.query_drop(format!(
        "INSERT INTO blobs VALUES (1, REPEAT(X'00FF7E27', {}))",
        size / 4
    ))
    .await
    .expect("insert the big row");
    drop(a);
    let digest = "SELECT COUNT(*), COALESCE(SUM(LENGTH(b)), 0), SHA2(GROUP_CONCAT(SHA2(b, 256)), 256) FROM blobs";
    let want: (u64, u64, Option<String>) = cluster
        .conn(0)
        .await
        .query_first(digest)
        .await
        .expect("digest")
        .expect("row");
    assert_eq!((want.0, want.1), (1, size));
    same_blobs(&cluster, digest, &want).await;
    let mut a = cluster.conn(0).await;
    a.query_drop(format!(
        "UPDATE blobs SET b = REPEAT(X'11223344', {}) WHERE id = 1",
        size / 4
    ))
    .await
    .expect("update the big row");
    drop(a);
    let updated: (u64, u64, Option<String>) = cluster
        .conn(0)
        .await
        .query_first(digest)
        .await
        .expect("digest")
        .expect("row");
    assert_ne!(updated, want);
    same_blobs(&cluster, digest, &updated).await;
    // c: the peer's setting is below what the row's statement needs.
    let packet: u64 = cluster
        .conn(2)
        .await
        .query_first("SELECT @@max_allowed_packet")
        .await
        .expect("setting")
        .expect("row");
    assert!(
        packet < 2 * size,
        "c's max_allowed_packet {packet} must be too small"
    );
    let e = wait_failed(&cluster, 2, "a->c", "row too large for the target").await;
    for part in [
        format!("{}.blobs", cluster.db),
        "primary key (1)".to_string(),
        format!("max_allowed_packet is {packet} bytes"),
        "raise max_allowed_packet on the target".to_string(),
    ] {
        assert!(e.contains(&part), "{part:?} missing in: {e}");
    }
    assert_eq!(count(&cluster, 2, "SELECT COUNT(*) FROM blobs").await, 0);
    // Not retried in a tight loop: the link stops, the daemon restarts it with backoff.
    assert!(
        cluster.log(2).contains("link stopped"),
        "{}",
        cluster.log(2)
    );
}

/// Waits until center b's `digest` of the blobs equals `want`.
async fn same_blobs(cluster: &Cluster, digest: &str, want: &(u64, u64, Option<String>)) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let got: (u64, u64, Option<String>) = cluster
            .conn(1)
            .await
            .query_first(digest)
            .await
            .expect("digest")
            .expect("row");
        if got == *want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never got the row exactly: {got:?}\n{}",
            cluster.log(1)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One source transaction of `rows` rows with `[applier] max_transaction_rows = bound`: the
/// links out of a stop before it with an error naming its GTID and position, /health says so,
/// and the daemon of b holds at most about the bound in memory. Returns b's VmHWM in KiB.
async fn large_transaction(rows: u64, bound: u64) -> u64 {
    let mut cluster = Cluster::new(
        "bigtxn",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)",
        "auto",
        &format!("[applier]\nmax_transaction_rows = {bound}\n"),
    )
    .await;
    cluster.start_all();
    cluster.wait_running().await;
    let mut a = cluster.conn(0).await;
    a.query_drop("INSERT INTO t VALUES (0, 'before')")
        .await
        .expect("insert");
    wait_count(&cluster, 1, "SELECT COUNT(*) FROM t", 1).await;
    a.query_drop(format!(
        "INSERT INTO t SELECT seq, CONCAT('row ', seq) FROM seq_1_to_{rows}"
    ))
    .await
    .expect("one large transaction");
    drop(a);
    let e = wait_failed(&cluster, 1, "a->b", "max_transaction_rows").await;
    assert!(e.contains("GTID "), "names the GTID: {e}");
    assert!(e.contains(&format!("more than {bound} row changes")), "{e}");
    assert!(e.contains("after position"), "names the position: {e}");
    assert_eq!(
        count(&cluster, 1, "SELECT COUNT(*) FROM t").await,
        1,
        "nothing of it applied"
    );
    let pid = cluster.pid(1).expect("b runs");
    let hwm = vm_hwm_kib(pid);
    eprintln!("large_transaction({rows}, bound {bound}): drc (center b) VmHWM = {hwm} KiB");
    hwm
}

/// CI variant: 200k rows, bound 50k.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_the_bound_stops_the_link() {
    let hwm = large_transaction(200_000, 50_000).await;
    assert!(hwm < 400 * 1024, "VmHWM {hwm} KiB");
}

/// 2M rows with the default bound (1M): memory stays well under what the whole transaction
/// would take. Takes minutes here: run with
/// `cargo test -p drc --test main -- --ignored sizes::two_million` (docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes minutes; run on demand (docs/benchmarks.md)"]
async fn two_million_row_transaction_memory_is_bounded() {
    let hwm = large_transaction(2_000_000, 1_000_000).await;
    assert!(hwm < 2 * 1024 * 1024, "VmHWM {hwm} KiB");
}
