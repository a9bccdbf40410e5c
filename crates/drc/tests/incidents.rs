//! Incidents that must end with every change applied exactly, or with the link stopped and
//! saying so (issue #11): a center's server replaced behind the same address, ...

use std::time::Duration;

use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::cluster::Cluster;

/// Three servers of the test's own, each started with an `--init-file` the test can rewrite
/// before a restart (a restart then comes up with, e.g., another `server_id`).
fn own_servers(dir: &std::path::Path) -> Vec<(MariaDb, std::path::PathBuf)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let init = dir.join(format!("init-{i}.sql"));
                std::fs::write(&init, "").expect("init file");
                s.spawn(move || {
                    let opts =
                        ServerOptions::default().arg(format!("--init-file={}", init.display()));
                    (MariaDb::start(opts).expect("server starts"), init)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("server thread"))
            .collect()
    })
}

/// A center's server restarts on its own data with a new `server_id` (what a failover to a
/// replica behind the same address looks like to drc): the links out of it must notice, keep
/// its older local writes (old id) and its new ones (new id), and never loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_server_id_behind_the_same_address_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers = own_servers(dir.path());
    let urls: Vec<String> = servers.iter().map(|(s, _)| s.url()).collect();
    let mut cluster = Cluster::on(
        &urls,
        "ident",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)",
        "auto",
        "",
    )
    .await;
    cluster.start_all();
    cluster.wait_running().await;
    let mut a = cluster.conn(0).await;
    for i in 1..=10 {
        a.query_drop(format!("INSERT INTO t VALUES ({i}, 'before')"))
            .await
            .expect("insert");
    }
    drop(a);
    assert_eq!(cluster.wait_converged("t").await, 10);

    // Stop b's daemon so that link a->b resumes later from a checkpoint *before* the restart:
    // it must then read a's older writes (old id) and the newer ones (new id) in one go.
    cluster.kill9(1);
    let mut a = cluster.conn(0).await;
    for i in 11..=20 {
        a.query_drop(format!("INSERT INTO t VALUES ({i}, 'old id')"))
            .await
            .expect("insert");
    }
    drop(a);
    let old_id = servers[0].0.server_id();
    let new_id = old_id + 4242;
    std::fs::write(&servers[0].1, format!("SET GLOBAL server_id = {new_id};\n")).expect("init");
    servers[0].0.restart().expect("a restarts");
    let mut a = cluster.conn(0).await;
    let id: u32 = a
        .query_first("SELECT @@server_id")
        .await
        .expect("server_id")
        .expect("row");
    assert_eq!(id, new_id, "the restart must change a's server_id");
    for i in 100..151 {
        a.query_drop(format!("INSERT INTO t VALUES ({i}, 'new id')"))
            .await
            .expect("insert");
    }
    drop(a);
    cluster.start(1);
    let mut b = cluster.conn(1).await;
    b.query_drop("INSERT INTO t VALUES (500, 'from b')")
        .await
        .expect("insert in b");
    drop(b);
    let rows = cluster.wait_converged("t").await;
    assert_eq!(
        rows,
        20 + 51 + 1,
        "every row of a (old and new id) and of b in every center"
    );
    // No loop: a's rows were written once in a; drc's copies in b and c carry a's id and never
    // come back (a loop would show as a's own rows re-applied: the binlog of a would hold
    // transactions of table t under b's or c's id beyond b's single row).
    // The link notices either on its reconnect (when the server already had its new id) or at
    // the first transaction under the new id (when it reconnected before the init file ran).
    let log_c = cluster.log(2);
    assert!(
        log_c.contains("changed identity") || log_c.contains("now writes under a new server_id"),
        "the link a->c must say that a's server changed identity:\n{log_c}"
    );
    // Later writes still flow both ways after the restart.
    let mut c = cluster.conn(2).await;
    c.query_drop("INSERT INTO t VALUES (600, 'from c')")
        .await
        .expect("insert in c");
    drop(c);
    let cl = &cluster;
    drc_testkit::wait_until(
        "c's row reaches a",
        crate::cluster::CONVERGE,
        || async move {
            let mut a = cl.conn(0).await;
            let n: Option<u32> = a
                .query_first("SELECT COUNT(*) FROM t WHERE id = 600")
                .await
                .expect("count");
            n == Some(1)
        },
    )
    .await;
    assert_eq!(cluster.wait_converged("t").await, 73);
}

/// A target column narrower than the source's: the row is not truncated into it; the link
/// stops naming table, key, column and value, `drc status` exits non-zero, the other centers
/// get the row, and once the operator widens the column the link resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_target_column_stops_the_link_instead_of_truncating() {
    narrower_column(false).await;
}

/// The same in a last-writer-wins table, whose writes are decided by drc and batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_target_column_stops_a_last_writer_wins_link() {
    narrower_column(true).await;
}

async fn narrower_column(versioned: bool) {
    let schema = if versioned {
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(30), updated_at TIMESTAMP(6) NOT NULL \
         DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"
    } else {
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(30))"
    };
    let mut cluster = Cluster::new("drift", schema, "auto", "").await;
    let mut b = cluster.conn(1).await;
    b.query_drop("SET SESSION sql_log_bin = 0; ALTER TABLE t MODIFY v VARCHAR(10)")
        .await
        .expect("narrow b's column");
    cluster.start_all();
    cluster.wait_running().await;
    let mut a = cluster.conn(0).await;
    a.query_drop("INSERT INTO t (id, v) VALUES (1, 'short'), (2, 'abcdefghijklmnopqrstuvwxyz')")
        .await
        .expect("insert");
    let deadline = tokio::time::Instant::now() + crate::cluster::CONVERGE;
    let error = loop {
        if let Some(h) = cluster.health(1).await {
            let text = h.to_string();
            if text.contains("refused a change") {
                break text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "link a->b never reported the refused change:\n{}",
            cluster.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for part in [
        "(id=2)",
        "column v",
        "abcdefghijklmnopqrstuvwxyz",
        "Data too long",
    ] {
        assert!(error.contains(part), "{part:?} in {error}");
    }
    let (code, text) = cluster.status();
    assert_ne!(code, Some(0), "drc status must fail:\n{text}");
    assert!(text.contains("a->b") && text.contains("failed"), "{text}");
    // The refused row is not in b, truncated or otherwise (row 1 may be: another worker's
    // share); c has both rows exactly.
    let n: Option<u64> = b
        .query_first("SELECT COUNT(*) FROM t WHERE id = 2")
        .await
        .expect("count");
    assert_eq!(n, Some(0), "the refused row is not in b");
    let cl = &cluster;
    drc_testkit::wait_until(
        "c gets the long row exactly",
        crate::cluster::CONVERGE,
        || async move {
            let mut c = cl.conn(2).await;
            let long: Option<String> = c
                .query_first("SELECT v FROM t WHERE id = 2")
                .await
                .expect("row in c");
            long.as_deref() == Some("abcdefghijklmnopqrstuvwxyz")
        },
    )
    .await;
    // The operator widens b's column (not binlogged, so no DDL reaches the other links); the
    // daemon's restarts then apply the share.
    b.query_drop("SET SESSION sql_log_bin = 0; ALTER TABLE t MODIFY v VARCHAR(30)")
        .await
        .expect("widen b's column");
    assert_eq!(cluster.wait_converged("t").await, 2);
}

/// ENUM and SET labels in a latin1 column with non-ASCII labels, and in a utf8mb4 column,
/// arrive exactly (the binlog's labels are bytes in the column's character set; a lossy text
/// label would name no label, or another one, in the target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_and_set_values_arrive_exactly_in_any_character_set() {
    let mut cluster = Cluster::new(
        "enums",
        "CREATE TABLE t (id INT PRIMARY KEY, \
         e ENUM('a','\u{e9}t\u{e9}','b') CHARACTER SET latin1, \
         s SET('x','\u{fc}ber','z') CHARACTER SET latin1, \
         u ENUM('plain','\u{1F600}') CHARACTER SET utf8mb4)",
        "auto",
        "",
    )
    .await;
    cluster.start_all();
    cluster.wait_running().await;
    let mut a = cluster.conn(0).await;
    a.query_drop(
        "SET NAMES utf8mb4; INSERT INTO t VALUES \
         (1, '\u{e9}t\u{e9}', '\u{fc}ber,z', '\u{1F600}'), (2, 'b', 'x', 'plain'), (3, NULL, '', NULL)",
    )
    .await
    .expect("insert");
    assert_eq!(cluster.wait_converged("t").await, 3);
    let mut c = cluster.conn(2).await;
    let row: Option<(u32, u32, String)> = c
        .query_first("SELECT e + 0, s + 0, HEX(e) FROM t WHERE id = 1")
        .await
        .expect("row");
    assert_eq!(
        row,
        Some((2, 6, "E974E9".into())),
        "index, bits and latin1 bytes"
    );
}
