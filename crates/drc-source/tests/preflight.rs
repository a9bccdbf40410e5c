//! Preflight: a server that cannot be read safely is refused before any data moves, with a
//! message naming every problem and what to change; trouble that appears mid-stream stops the
//! source with an error instead of skipping events.

use drc_source::{Source, SourceConfig, SourceError};
use drc_testkit::{BinlogFormat, BinlogRowImage, BinlogRowMetadata, MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::common::{fresh_db, position_now, replica_id, server, source, DEADLINE};

async fn connect_err(url: String) -> SourceError {
    Source::connect(SourceConfig::new(url, replica_id()))
        .await
        .expect_err("the server must be refused")
}

#[tokio::test]
async fn misconfigured_server_is_refused_with_every_problem() {
    let srv = MariaDb::start(
        ServerOptions::default()
            .binlog_format(BinlogFormat::Statement)
            .binlog_row_image(BinlogRowImage::Minimal)
            .binlog_row_metadata(BinlogRowMetadata::Minimal)
            .log_bin_compress(true),
    )
    .expect("server");
    let err = connect_err(srv.url()).await;
    let SourceError::Preflight(list) = &err else {
        panic!("expected a preflight error, got {err}");
    };
    let checks: Vec<&str> = list.problems.iter().map(|p| p.check).collect();
    assert_eq!(
        checks,
        [
            "binlog_format",
            "binlog_row_image",
            "binlog_row_metadata",
            "log_bin_compress"
        ]
    );
    let msg = err.to_string();
    for needle in [
        "binlog_format is STATEMENT",
        "binlog_format=ROW",
        "binlog_row_image=FULL",
        "binlog_row_metadata=FULL",
        "log_bin_compress=OFF",
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn server_without_binary_log_is_refused() {
    let srv = MariaDb::start(ServerOptions::default().binlog(false)).expect("server");
    let msg = connect_err(srv.url()).await.to_string();
    assert!(
        msg.contains("log_bin") && msg.contains("--log-bin"),
        "{msg}"
    );
}

#[tokio::test]
async fn user_without_replication_grant_is_refused() {
    let srv = server();
    let user = drc_testkit::unique_db_name("norepl");
    let mut c = drc_testkit::connect(&srv.url()).await;
    c.query_drop(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO '{user}'@'%'"
    ))
    .await
    .expect("create user");
    let url = format!("mysql://{user}:pw@127.0.0.1:{}", srv.port());
    let err = connect_err(url).await;
    let msg = err.to_string();
    assert!(msg.contains("REPLICATION SLAVE"), "{msg}");
    assert!(!msg.contains(":pw@"), "the password is never shown: {msg}");
}

/// Reads until the source stops with an error (within the deadline).
async fn first_error(src: &mut Source) -> SourceError {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Err(e) = src.next().await {
                return e;
            }
        }
    })
    .await
    .expect("the source stops")
}

#[tokio::test]
async fn statement_dml_and_compressed_events_stop_the_source() {
    let srv = MariaDb::start(ServerOptions::default()).expect("server");
    let (_db, mut conn) = fresh_db(&srv, "midstream").await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        .await
        .expect("create");

    // A session that switches to statement-based logging.
    let start = position_now(&srv).await;
    conn.query_drop("SET SESSION binlog_format = 'STATEMENT'; INSERT INTO t VALUES (1, 'x')")
        .await
        .expect("statement insert");
    let mut src = source(&srv, start).await;
    let err = first_error(&mut src).await;
    let msg = err.to_string();
    assert!(
        msg.contains("statement-based DML") && msg.contains("binlog_format"),
        "{msg}"
    );

    // Compression switched on after the source was checked.
    conn.query_drop("SET SESSION binlog_format = 'ROW'")
        .await
        .expect("row");
    let start = position_now(&srv).await;
    conn.query_drop(
        "SET GLOBAL log_bin_compress = ON; INSERT INTO t VALUES (2, REPEAT('z', 5000)); \
         SET GLOBAL log_bin_compress = OFF",
    )
    .await
    .expect("compressed insert");
    let mut src = source(&srv, start).await;
    let err = first_error(&mut src).await;
    assert!(err.to_string().contains("log_bin_compress"), "{err}");
}
