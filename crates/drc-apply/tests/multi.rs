//! Multi-statement queries against a real server ([`drc_apply::query`]): writes and `SELECT`s
//! in one round trip return the `SELECT`s' sets, and a failing statement anywhere is the
//! query's error, not the connection's next query's.

use drc_apply::query::{run_then_read, select_sets};
use drc_apply::LinkError;
use mysql_async::prelude::Queryable;

/// The server error code of `r`'s error (panics on success or another error).
fn code<T: std::fmt::Debug>(r: Result<T, LinkError>) -> u16 {
    match r {
        Err(LinkError::Target {
            source: mysql_async::Error::Server(s),
            ..
        }) => s.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn sizes(sets: &[Vec<mysql_async::Row>]) -> Vec<usize> {
    sets.iter().map(Vec::len).collect()
}

#[tokio::test]
async fn every_statements_error_is_the_querys_error() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "multi").await;
    let mut c = drc_testkit::connect(&s.url()).await;
    c.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"))
        .await
        .expect("create");
    c.query_drop(format!("INSERT INTO `{db}`.t VALUES (1)"))
        .await
        .expect("insert");
    let what = "testing";

    // Statements without result sets are skipped; empty sets are kept.
    let q = format!(
        "START TRANSACTION; SET @x = 0; INSERT INTO `{db}`.t VALUES (2); \
         SELECT id FROM `{db}`.t WHERE id IN (1, 2) FOR UPDATE; SELECT 1 FROM DUAL WHERE 0; SELECT @x"
    );
    let sets = select_sets(&mut c, q, what).await.expect("sets");
    assert_eq!(sizes(&sets), [2, 0, 1]);
    c.query_drop("ROLLBACK").await.expect("rollback");

    // A failing read after a set that was returned (mysql_async alone would report two sets
    // and raise the error on the connection's next query).
    let q = format!("SET @x = 0; SELECT 1; SELECT * FROM `{db}`.nosuch; SELECT 3");
    assert_eq!(code(select_sets(&mut c, q, what).await), 1146);
    // A failing write in front of the reads, and between them.
    let q = format!("INSERT INTO `{db}`.t VALUES (1); SELECT 1");
    assert_eq!(code(select_sets(&mut c, q, what).await), 1062);
    let q = format!(
        "SELECT 0; INSERT INTO `{db}`.t VALUES (3); SET @x = @x + @@warning_count; \
         INSERT INTO `{db}`.t VALUES (1); SELECT 1"
    );
    assert_eq!(code(select_sets(&mut c, q, what).await), 1062);
    // The connection is clean afterwards: its next query answers.
    let seven: Option<u8> = c.query_first("SELECT 7").await.expect("next query");
    assert_eq!(seven, Some(7));
    // Autocommit: the insert of 3 before the failing statement stays, nothing after it ran.
    let ids: Vec<i32> = c
        .query(format!("SELECT id FROM `{db}`.t ORDER BY id"))
        .await
        .expect("ids");
    assert_eq!(ids, [1, 3]);
}

#[tokio::test]
async fn a_prefix_runs_first_in_the_first_query_or_alone() {
    let s = &drc_testkit::shared_servers(1)[0];
    let mut c = drc_testkit::connect(&s.url()).await;
    let reads: Vec<String> = (0..40).map(|i| format!("SELECT @p + {i}")).collect();
    let values = |sets: Vec<Vec<mysql_async::Row>>| -> Vec<i64> {
        sets.into_iter()
            .map(|s| s[0].get::<i64, _>(0).expect("value"))
            .collect()
    };
    // Fits: one query.
    let sets = run_then_read(
        &mut c,
        "SET @p = 100".into(),
        &reads,
        1 << 20,
        16 << 20,
        "t",
    )
    .await
    .expect("read");
    assert_eq!(values(sets), (100..140).collect::<Vec<_>>());
    // A limit smaller than prefix plus reads: the reads in several queries, the prefix still
    // first.
    let prefix = format!("SET @p = 200{}", " ".repeat(300));
    let sets = run_then_read(&mut c, prefix, &reads, 320, 16 << 20, "t")
        .await
        .expect("read");
    assert_eq!(values(sets), (200..240).collect::<Vec<_>>());
    // No reads: the prefix alone.
    let sets = run_then_read(&mut c, "SET @p = 5".into(), &[], 1 << 20, 16 << 20, "t")
        .await
        .expect("prefix only");
    assert!(sets.is_empty());
    let p: Option<i64> = c.query_first("SELECT @p").await.expect("p");
    assert_eq!(p, Some(5));
    // A failing prefix is the error.
    let r = run_then_read(
        &mut c,
        "SET @p = (SELECT * FROM nosuchdb.nosuch)".into(),
        &reads,
        1 << 20,
        16 << 20,
        "t",
    )
    .await;
    assert!(matches!(r, Err(LinkError::Target { .. })), "{r:?}");
}
