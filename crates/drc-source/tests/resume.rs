//! Positions and resuming: from a GTID list, from file:offset, after a killed connection (also
//! in the middle of a large transaction) and across server restarts — nothing lost, nothing
//! repeated.

use drc_core::change::{SourceEvent, TxnCommit};
use drc_core::position::Position;
use drc_core::value::Value;
use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::common::{changes, fresh_db, position_now, read_rows, server, source, DEADLINE};

fn ids(events: &[SourceEvent]) -> Vec<i64> {
    changes(events)
        .iter()
        .map(|c| {
            let img = c.after.as_ref().or(c.before.as_ref()).expect("an image");
            match img.get(0) {
                Some(Value::Int(i)) => *i,
                other => panic!("id is {other:?}"),
            }
        })
        .collect()
}

fn commits(events: &[SourceEvent]) -> Vec<TxnCommit> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Commit(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

async fn ten_transactions(srv: &MariaDb, prefix: &str) -> (String, Position) {
    let (db, mut conn) = fresh_db(srv, prefix).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        .await
        .expect("create");
    let start = position_now(srv).await;
    for i in 1..=10 {
        conn.query_drop(format!("INSERT INTO t VALUES ({i}, 'x')"))
            .await
            .expect("insert");
    }
    (db, start)
}

#[tokio::test]
async fn gtid_position_resumes_after_the_transaction() {
    let srv = server();
    let (db, start) = ten_transactions(srv, "gtid_resume").await;
    assert!(
        matches!(start, Position::MariaGtid(_)),
        "MariaDB reports GTID positions"
    );
    let mut src = source(srv, start).await;
    let events = read_rows(&mut src, &db, 10).await;
    assert_eq!(ids(&events), (1..=10).collect::<Vec<_>>());
    let fifth = commits(&events)[4].position.clone();
    // The printed position parses back to the same value and resumes after transaction 5.
    let reparsed: Position = fifth.to_string().parse().expect("position round-trips");
    assert_eq!(reparsed, fifth);
    let mut again = source(srv, reparsed).await;
    let rest = read_rows(&mut again, &db, 5).await;
    assert_eq!(ids(&rest), (6..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn file_position_resumes_after_the_transaction() {
    let srv = server();
    let (db, start) = ten_transactions(srv, "file_resume").await;
    let mut src = source(srv, start).await;
    let events = read_rows(&mut src, &db, 10).await;
    let third = commits(&events)[2].file_pos.clone();
    assert!(
        third.file.contains('.') && third.offset > 4,
        "file pos {third}"
    );
    let mut again = source(srv, Position::File(third)).await;
    let rest = read_rows(&mut again, &db, 7).await;
    assert_eq!(ids(&rest), (4..=10).collect::<Vec<_>>());
    // A resumed file-position source reports file positions that keep resuming correctly.
    let last = commits(&rest).last().expect("a commit").position.clone();
    assert!(matches!(last, Position::File(_)));
}

/// Kills the replication connection(s) of `srv` (dump threads), returns how many.
async fn kill_dump_threads(srv: &MariaDb) -> usize {
    let mut c = drc_testkit::connect(&srv.url()).await;
    let dump: Vec<u64> = c
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        .await
        .expect("processlist");
    for id in &dump {
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    dump.len()
}

/// Rows of the big transaction of [`killed_connection_mid_transaction_loses_and_repeats_nothing`].
const BIG: u32 = 200_000;

#[tokio::test]
async fn killed_connection_mid_transaction_loses_and_repeats_nothing() {
    let mut srv = MariaDb::start(ServerOptions::default()).expect("server");
    let (db, mut conn) = fresh_db(&srv, "kill").await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(200))")
        .await
        .expect("create");
    let start = position_now(&srv).await;
    // One transaction of BIG rows (~45 MB of binlog: more than loopback socket buffers hold,
    // so the server is still sending it when its dump thread is killed): thousands of rows
    // events.
    conn.query_drop(format!(
        "INSERT INTO t SELECT seq, REPEAT('p', 200) FROM seq_1_to_{BIG}"
    ))
    .await
    .expect("big insert");
    for i in BIG + 1..=BIG + 50 {
        conn.query_drop(format!("INSERT INTO t VALUES ({i}, 'small')"))
            .await
            .expect("insert");
    }
    let mut src = source(&srv, start).await;
    // Read the start of the big transaction, then cut the connection under the reader.
    let mut events = Vec::new();
    let mut rows_events = 0;
    while rows_events < 3 {
        let ev = src.next().await.expect("event");
        if matches!(ev, SourceEvent::Rows(_)) {
            rows_events += 1;
        }
        events.push(ev);
    }
    assert_eq!(kill_dump_threads(&srv).await, 1, "one dump thread to kill");
    let more = read_rows(&mut src, &db, BIG as usize + 50 - changes(&events).len()).await;
    events.extend(more);
    assert!(src.reconnects() >= 1, "the source reconnected");
    let got = ids(&events);
    assert_eq!(got.len(), BIG as usize + 50, "every row exactly once");
    assert_eq!(
        got,
        (1..=BIG as i64 + 50).collect::<Vec<_>>(),
        "in source order"
    );
    // Exactly one Begin for the interrupted transaction.
    let begins = events
        .iter()
        .filter(|e| matches!(e, SourceEvent::Begin(_)))
        .count();
    assert_eq!(begins, 51);
    srv.stop().expect("stop");
}

/// The source's metadata connection (unique keys of each new table) killed under it: the source
/// reconnects like after a broken stream, and the rows arrive exactly once; the link never
/// sees the failure.
#[tokio::test]
async fn killed_metadata_connection_loses_and_repeats_nothing() {
    let mut srv = MariaDb::start(ServerOptions::default()).expect("server");
    let (db, mut conn) = fresh_db(&srv, "killmeta").await;
    conn.query_drop("CREATE TABLE t1 (id INT PRIMARY KEY); CREATE TABLE t2 (id INT PRIMARY KEY)")
        .await
        .expect("create");
    let start = position_now(&srv).await;
    conn.query_drop("INSERT INTO t1 VALUES (1)")
        .await
        .expect("insert t1");
    let mut src = source(&srv, start).await;
    let first = read_rows(&mut src, &db, 1).await;
    assert_eq!(ids(&first), [1]);
    // Every client connection but this test's and the dump thread: the source's metadata
    // connection among them.
    let others: Vec<u64> = conn
        .query(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
             AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID')",
        )
        .await
        .expect("processlist");
    let mut killed = 0;
    for id in others {
        if conn.query_drop(format!("KILL {id}")).await.is_ok() {
            killed += 1;
        }
    }
    assert!(killed >= 1, "the metadata connection was killed");
    conn.query_drop("INSERT INTO t2 VALUES (2), (3); INSERT INTO t2 VALUES (4)")
        .await
        .expect("insert t2");
    let rest = read_rows(&mut src, &db, 3).await;
    assert_eq!(ids(&rest), [2, 3, 4], "every row of t2 exactly once");
    assert!(src.reconnects() >= 1, "the source reconnected");
    srv.stop().expect("stop");
}

#[tokio::test]
async fn server_restart_and_crash_lose_and_repeat_nothing() {
    let mut srv = MariaDb::start(ServerOptions::default()).expect("server");
    let (db, mut conn) = fresh_db(&srv, "restart").await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    let start = position_now(&srv).await;
    for i in 1..=20 {
        conn.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .expect("insert");
    }
    drop(conn);
    let mut src = source(&srv, start).await;
    let mut events = read_rows(&mut src, &db, 20).await;

    // Graceful restart, then writes.
    srv.restart().expect("restart");
    let mut conn = drc_testkit::connect(&srv.url_for(&db)).await;
    for i in 21..=40 {
        conn.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .expect("insert after restart");
    }
    drop(conn);
    events.extend(read_rows(&mut src, &db, 20).await);

    // Crash (SIGKILL) and start again, then writes.
    srv.kill().expect("kill");
    srv.start_again().expect("start again");
    let mut conn = drc_testkit::connect(&srv.url_for(&db)).await;
    for i in 41..=60 {
        conn.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .expect("insert after crash");
    }
    drop(conn);
    events.extend(read_rows(&mut src, &db, 20).await);

    assert!(src.reconnects() >= 2, "reconnected after each outage");
    assert_eq!(ids(&events), (1..=60).collect::<Vec<_>>());
    srv.stop().expect("stop");
}

#[tokio::test]
async fn purged_position_is_a_clear_permanent_error() {
    let srv = MariaDb::start(ServerOptions::default()).expect("server");
    let (_db, mut conn) = fresh_db(&srv, "purged").await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("create");
    let old = position_now(&srv).await;
    conn.query_drop("INSERT INTO t VALUES (1); FLUSH BINARY LOGS; INSERT INTO t VALUES (2)")
        .await
        .expect("writes");
    let current: Option<(String, u64)> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .expect("status")
        .map(|row: mysql_async::Row| {
            mysql_async::from_row_opt::<(String, u64, String, String)>(row)
                .map(|r| (r.0, r.1))
                .expect("row")
        });
    let (file, _) = current.expect("binlog on");
    // PURGE skips a file the server still needs for crash recovery until its binlog
    // checkpoint moves on; retry until the old file is really gone.
    let url = srv.url();
    drc_testkit::wait_until("the old binlog file is purged", DEADLINE, || {
        let (url, file) = (url.clone(), file.clone());
        async move {
            let mut c = drc_testkit::connect(&url).await;
            let _ = c.query_drop(format!("PURGE BINARY LOGS TO '{file}'")).await;
            let logs: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.expect("logs");
            logs.len() == 1
        }
    })
    .await;
    let mut cfg = drc_source::SourceConfig::new(srv.url(), crate::common::replica_id());
    cfg.start = drc_source::StartFrom::Position(old);
    let result = tokio::time::timeout(DEADLINE, async {
        let mut src = drc_source::Source::connect(cfg).await?;
        src.next().await
    })
    .await
    .expect("the error arrives without retrying forever");
    let err = result.expect_err("a purged position cannot be streamed from");
    assert!(!err.is_transient(), "not retried: {err}");
    assert!(err.to_string().contains("1236"), "{err}");
}
