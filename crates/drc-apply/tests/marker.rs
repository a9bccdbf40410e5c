//! The `marker` loopback tag against a real server: each applier of a link writes its own
//! marker row, so a transaction held open by one applier never blocks another; and an `origin`
//! table keyed by the origin alone (drc before per-worker markers) is upgraded in place.

use std::time::Duration;

use drc_apply::worker::{Applier, Tag};
use drc_meta::{self as meta, Marker};
use mysql_async::prelude::Queryable;

/// How long the second applier may take to commit while the first holds its transaction open
/// (far below innodb_lock_wait_timeout, so a lock wait would miss it).
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn appliers_of_one_link_never_wait_on_each_others_marker() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "marker").await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url_for(&db)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("table");
    meta::ensure_schema(&mut c, &meta_db).await.expect("meta");
    let tag = Tag::Marker(Marker {
        meta: meta_db.clone(),
        origin: "a".into(),
        link: "a->b".into(),
        worker: 0,
    });
    let statement = |w: u32| match tag.for_worker(w) {
        Tag::Marker(m) => m.statement(),
        other => panic!("a marker tag stays one: {other:?}"),
    };
    assert_ne!(statement(0), statement(1), "each worker has its own row");

    // Worker 0 is in the middle of a transaction: its marker row is written and locked.
    let mut held = drc_testkit::connect(&s.url()).await;
    held.query_drop("START TRANSACTION").await.expect("begin");
    held.query_drop(statement(0))
        .await
        .expect("worker 0's marker");
    held.query_drop(format!("INSERT INTO `{db}`.t VALUES (1)"))
        .await
        .expect("worker 0's write");

    // Worker 1 of the same link commits meanwhile.
    let url = s.url();
    let mut w1 = Applier::new(url.clone(), tag.for_worker(1), Duration::from_secs(10));
    let checkpoint = |worker: u32| {
        format!(
            "INSERT INTO `{meta_db}`.checkpoint (link, worker, batch, workers, start_position, end_position) \
             VALUES ('a->b', {worker}, 1, 2, '0-1-1', '0-1-2') ON DUPLICATE KEY UPDATE batch = 1"
        )
    };
    let insert = vec![format!("INSERT INTO `{db}`.t VALUES (2)")];
    tokio::time::timeout(DEADLINE, w1.apply(&insert, &checkpoint(1)))
        .await
        .expect("worker 1 commits while worker 0's transaction is open")
        .expect("worker 1 applies");
    let mut other = drc_testkit::connect(&s.url_for(&db)).await;
    let ids: Vec<u32> = other
        .query("SELECT id FROM t ORDER BY id")
        .await
        .expect("rows");
    assert_eq!(
        ids,
        [2],
        "worker 1 committed; worker 0's row is not yet visible"
    );

    // The condition is real: a writer of worker 0's row does wait for the open transaction.
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .expect("short lock wait");
    match other.query_drop(statement(0)).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1205, "lock wait timeout: {e}"),
        other => panic!("the held marker row must block its own worker: {other:?}"),
    }

    held.query_drop("COMMIT").await.expect("commit");
    let rows: Vec<(String, String, u32, u64)> = other
        .query(format!(
            "SELECT origin, link, worker, seq FROM `{meta_db}`.origin ORDER BY worker"
        ))
        .await
        .expect("markers");
    assert_eq!(
        rows,
        [
            ("a".to_string(), "a->b".to_string(), 0, 1),
            ("a".to_string(), "a->b".to_string(), 1, 1)
        ]
    );
}

#[tokio::test]
async fn an_origin_table_keyed_by_origin_alone_is_rekeyed() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "markerup").await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    c.query_drop(format!(
        "CREATE DATABASE `{meta_db}`; \
         CREATE TABLE `{meta_db}`.`origin` (`origin` VARCHAR(64) NOT NULL PRIMARY KEY, \
           `seq` BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB; \
         INSERT INTO `{meta_db}`.`origin` VALUES ('a', 7)"
    ))
    .await
    .expect("old origin table");
    meta::ensure_schema(&mut c, &meta_db)
        .await
        .expect("upgrade");
    meta::ensure_schema(&mut c, &meta_db)
        .await
        .expect("a second start finds it upgraded");
    let key: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = 'origin' AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (&meta_db,),
        )
        .await
        .expect("key");
    assert_eq!(key, ["origin", "link", "worker"]);
    // The old statement of an older replica still works on the upgraded table, beside the
    // per-worker rows.
    c.query_drop(format!(
        "INSERT INTO `{meta_db}`.`origin` (`origin`, `seq`) VALUES ('a', 1) \
         ON DUPLICATE KEY UPDATE `seq` = `seq` + 1"
    ))
    .await
    .expect("old marker statement");
    let m = Marker {
        meta: meta_db.clone(),
        origin: "a".into(),
        link: "a->b".into(),
        worker: 3,
    };
    c.query_drop(m.statement()).await.expect("new marker");
    let rows: Vec<(String, String, u32, u64)> = c
        .query(format!(
            "SELECT origin, link, worker, seq FROM `{meta_db}`.origin ORDER BY link, worker"
        ))
        .await
        .expect("markers");
    assert_eq!(
        rows,
        [
            ("a".to_string(), String::new(), 0, 8),
            ("a".to_string(), "a->b".to_string(), 3, 1)
        ]
    );
}
