//! The meta schema against a real server: created at the current version, upgraded in place
//! from a layout written before versions were stored, safe when several daemons start at
//! once, and refused when a newer drc upgraded it.

use drc_meta::schema::{self, VERSION};
use drc_meta::MetaError;
use mysql_async::prelude::Queryable;

async fn columns(c: &mut mysql_async::Conn, meta: &str, table: &str) -> Vec<String> {
    c.exec(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
         AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (meta, table),
    )
    .await
    .expect("columns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_meta_database_gets_every_table_at_the_current_version() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "metafresh").await;
    let meta = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    schema::ensure(&mut c, &meta).await.expect("ensure");
    assert_eq!(
        schema::stored_version(&mut c, &meta).await.expect("v"),
        VERSION
    );
    let tables: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (&meta,),
        )
        .await
        .expect("tables");
    assert_eq!(
        tables,
        [
            "apply_log",
            "bootstrap",
            "canary",
            "checkpoint",
            "conflict",
            "ddl_pending",
            "ddl_skip",
            "fence",
            "heartbeat",
            "link_control",
            "link_skip",
            "local_tombstone",
            "origin",
            "repair",
            "route_cutover",
            "route_fence",
            "route_unit",
            "schema_version",
            "source_identity",
            "term_history",
            "tombstone",
        ]
    );
    // Several daemons starting at once all succeed.
    let db2 = drc_testkit::create_db(s, "metarace").await;
    let meta2 = format!("{db2}_meta");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = s.url();
        let m = meta2.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = drc_testkit::connect(&url).await;
            schema::ensure(&mut c, &m).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("concurrent ensure");
    }
    assert_eq!(
        schema::stored_version(&mut c, &meta2).await.expect("v"),
        VERSION
    );
    // Every table is known to the fast path.
    let mut names = schema::table_names(&meta);
    names.sort();
    assert_eq!(names, tables);
}

async fn binlog_position(c: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = c
        .query_first("SHOW MASTER STATUS")
        .await
        .expect("status")
        .expect("binlog on");
    (
        row.get::<String, _>(0).expect("file"),
        row.get::<u64, _>(1).expect("pos"),
    )
}

/// A current meta database is checked without a write: nothing lands in the binlog (every
/// reconnect of a daemon runs this, and each `CREATE ... IF NOT EXISTS` would travel to every
/// peer as a DDL event). A missing table is still created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_meta_database_is_checked_without_writing_the_binlog() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "metaquiet").await;
    let meta = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    schema::ensure(&mut c, &meta).await.expect("ensure");
    let (file, pos) = binlog_position(&mut c).await;
    schema::ensure(&mut c, &meta).await.expect("ensure again");
    // Other tests share the server: only events that name this meta database count.
    let events: Vec<mysql_async::Row> = c
        .query(format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos}"))
        .await
        .expect("binlog events");
    let ours: Vec<String> = events
        .iter()
        .filter_map(|r| r.get::<String, _>("Info"))
        .filter(|info| info.contains(&meta))
        .collect();
    assert!(
        ours.is_empty(),
        "a current schema wrote the binlog: {ours:?}"
    );
    c.query_drop(format!("DROP TABLE `{meta}`.`route_fence`"))
        .await
        .expect("drop");
    schema::ensure(&mut c, &meta)
        .await
        .expect("ensure after a drop");
    let n: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'route_fence'",
            (&meta,),
        )
        .await
        .expect("count");
    assert_eq!(n, Some(1), "the missing table is created again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_database_from_before_versions_is_upgraded_in_place() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "metaold").await;
    let meta = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    // The version-1 layout: tombstone without rank_key, origin keyed by origin alone.
    c.query_drop(format!(
        "CREATE DATABASE `{meta}`; \
         CREATE TABLE `{meta}`.`origin` (`origin` VARCHAR(64) NOT NULL PRIMARY KEY, \
           `seq` BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB; \
         INSERT INTO `{meta}`.`origin` VALUES ('a', 7); \
         CREATE TABLE `{meta}`.`tombstone` (`db_table` VARCHAR(130) NOT NULL, \
           `pk_hash` BINARY(32) NOT NULL, `version` VARCHAR(255) NOT NULL, \
           `row_hash` BINARY(32) NOT NULL, `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`db_table`, `pk_hash`)) ENGINE=InnoDB"
    ))
    .await
    .expect("old layout");
    assert!(
        schema::stored_version(&mut c, &meta).await.is_err(),
        "no version table yet"
    );
    schema::ensure(&mut c, &meta).await.expect("upgrade");
    assert_eq!(
        schema::stored_version(&mut c, &meta).await.expect("v"),
        VERSION
    );
    assert!(columns(&mut c, &meta, "tombstone")
        .await
        .contains(&"rank_key".to_string()));
    assert_eq!(
        columns(&mut c, &meta, "origin").await,
        ["origin", "link", "worker", "seq"]
    );
    let kept: Option<u64> = c
        .query_first(format!(
            "SELECT seq FROM `{meta}`.origin WHERE origin = 'a'"
        ))
        .await
        .expect("row");
    assert_eq!(kept, Some(7), "the old marker row is kept");
    schema::ensure(&mut c, &meta)
        .await
        .expect("a second start finds it upgraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_database_upgraded_by_a_newer_drc_is_refused() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "metanew").await;
    let meta = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    schema::ensure(&mut c, &meta).await.expect("ensure");
    c.query_drop(format!(
        "UPDATE `{meta}`.schema_version SET version = {} WHERE id = 1",
        VERSION + 1
    ))
    .await
    .expect("newer version");
    let e = schema::ensure(&mut c, &meta).await.expect_err("refused");
    assert!(
        matches!(e, MetaError::TooNew { stored, known, .. } if stored == VERSION + 1 && known == VERSION),
        "{e}"
    );
    assert!(e.to_string().contains("newer than this drc knows"), "{e}");
}
