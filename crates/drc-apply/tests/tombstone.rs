//! Tombstone writes against a real server: the server's rank comparison only ever raises a
//! tombstone, whichever order writers arrive in, and a tombstone table from before `rank_key`
//! is upgraded in place.

use drc_apply::conflict::canon::Canon;
use drc_apply::conflict::decide::Tomb;
use drc_apply::conflict::tombstone::{self, Store};
use drc_meta as meta;
use mysql_async::prelude::Queryable;

fn tomb(version: Canon, h: u8) -> Tomb {
    Tomb {
        version,
        hash: [h; 32],
    }
}

async fn stored(c: &mut mysql_async::Conn, meta_db: &str) -> Option<String> {
    c.query_first(format!(
        "SELECT version FROM `{meta_db}`.tombstone WHERE db_table = 'd.t' AND pk_hash = X'{}'",
        "01".repeat(32)
    ))
    .await
    .expect("read tombstone")
}

#[tokio::test]
async fn a_tombstone_is_only_ever_raised() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "tomb").await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    meta::ensure_schema(&mut c, &meta_db).await.expect("meta");
    let key = [1u8; 32];
    let write = |t: &Tomb| tombstone::write_sql(&meta_db, Store::Applied, "d.t", &key, t);
    let cases = [
        // (version, hash byte, stored version afterwards)
        (Canon::Dec("-1.5".into()), 9, "d:-1.5"),
        (Canon::Dec("-1.55".into()), 9, "d:-1.5"),
        (Canon::Dec("0.05".into()), 1, "d:0.05"),
        (Canon::Dec("10".into()), 1, "d:10"),
        (Canon::Dec("9.99".into()), 200, "d:10"),
        // A tie on the version: the higher row hash stays.
        (Canon::Dec("10".into()), 0, "d:10"),
    ];
    for (v, h, want) in cases {
        c.query_drop(write(&tomb(v.clone(), h)))
            .await
            .expect("tombstone write");
        assert_eq!(
            stored(&mut c, &meta_db).await.as_deref(),
            Some(want),
            "after {v:?}"
        );
    }
    let hash: Option<String> = c
        .query_first(format!(
            "SELECT HEX(row_hash) FROM `{meta_db}`.tombstone WHERE db_table = 'd.t'"
        ))
        .await
        .expect("hash");
    assert_eq!(hash, Some("01".repeat(32)), "the tie kept the higher hash");

    // Temporal versions of another key, written out of order.
    let key2 = [2u8; 32];
    for v in [
        "2026-11-26 10:00:00.5",
        "2026-11-26 10:00:00.25",
        "2026-11-26 10:00:00",
    ] {
        c.query_drop(tombstone::write_sql(
            &meta_db,
            Store::Applied,
            "d.t",
            &key2,
            &tomb(Canon::Temporal(v.into()), 1),
        ))
        .await
        .expect("tombstone write");
    }
    let v: Option<String> = c
        .query_first(format!(
            "SELECT version FROM `{meta_db}`.tombstone WHERE pk_hash = X'{}'",
            "02".repeat(32)
        ))
        .await
        .expect("read");
    assert_eq!(v.as_deref(), Some("t:2026-11-26 10:00:00.5"));

    // The local-delete reader's table is read together with the appliers'.
    c.query_drop(tombstone::write_sql(
        &meta_db,
        Store::Local,
        "d.t",
        &key2,
        &tomb(Canon::Temporal("2026-11-26 11:00:00".into()), 1),
    ))
    .await
    .expect("local tombstone write");
    let q = tombstone::read_many_sql(&meta_db, &[("d.t".into(), key2)]).expect("a query");
    let mut rows: Vec<(String, String, String, String)> = c.query(q).await.expect("read both");
    rows.sort();
    let versions: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        versions,
        vec!["t:2026-11-26 10:00:00.5", "t:2026-11-26 11:00:00"]
    );
}

#[tokio::test]
async fn an_old_tombstone_table_gets_rank_key() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "tombup").await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    // The table as it was before rank_key, with one tombstone.
    c.query_drop(format!(
        "CREATE DATABASE `{meta_db}`; CREATE TABLE `{meta_db}`.`tombstone` (\
         `db_table` VARCHAR(130) NOT NULL, `pk_hash` BINARY(32) NOT NULL, \
         `version` VARCHAR(255) NOT NULL, `row_hash` BINARY(32) NOT NULL, \
         `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
         PRIMARY KEY (`db_table`, `pk_hash`), KEY `at` (`at`)) ENGINE=InnoDB; \
         INSERT INTO `{meta_db}`.tombstone (db_table, pk_hash, version, row_hash) \
         VALUES ('d.t', X'{}', 'i:100', X'{}')",
        "01".repeat(32),
        "00".repeat(32)
    ))
    .await
    .expect("old table");
    meta::ensure_schema(&mut c, &meta_db)
        .await
        .expect("upgrade");
    meta::ensure_schema(&mut c, &meta_db)
        .await
        .expect("a second start leaves it alone");
    // The old row has an empty rank: the next tombstone of its key replaces it.
    c.query_drop(tombstone::write_sql(
        &meta_db,
        Store::Applied,
        "d.t",
        &[1; 32],
        &tomb(Canon::Int(7), 1),
    ))
    .await
    .expect("write");
    assert_eq!(stored(&mut c, &meta_db).await.as_deref(), Some("i:7"));
    c.query_drop(tombstone::write_sql(
        &meta_db,
        Store::Applied,
        "d.t",
        &[1; 32],
        &tomb(Canon::Int(6), 1),
    ))
    .await
    .expect("write");
    assert_eq!(stored(&mut c, &meta_db).await.as_deref(), Some("i:7"));
}
