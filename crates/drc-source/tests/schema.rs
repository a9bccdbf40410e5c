//! Schema: column names from the binlog metadata, primary and unique keys from
//! information_schema, DDL delivered as events and refreshing the schema cache.

use drc_core::change::SourceEvent;
use drc_core::ddl::DdlKind;
use mysql_async::prelude::Queryable;

use crate::common::{changes, fresh_db, position_now, read_rows, server, source};

#[tokio::test]
async fn primary_and_all_unique_keys_are_known() {
    let srv = server();
    let (db, mut conn) = fresh_db(srv, "keys").await;
    conn.query_drop(
        "CREATE TABLE u (a INT, id BIGINT UNSIGNED NOT NULL, email VARCHAR(50), b INT, \
         PRIMARY KEY (id), UNIQUE KEY email_uk (email), UNIQUE KEY ab (b, a), KEY plain (a))",
    )
    .await
    .expect("create");
    let start = position_now(srv).await;
    conn.query_drop("INSERT INTO u VALUES (1, 10, 'x@y', 2)")
        .await
        .expect("insert");
    let mut src = source(srv, start).await;
    let ch = changes(&read_rows(&mut src, &db, 1).await);
    let s = &ch[0].table;
    let names: Vec<&str> = s.columns.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["a", "id", "email", "b"]);
    assert_eq!(s.primary_key, vec![1]);
    assert!(s.unique_keys_known);
    let mut uks: Vec<(String, Vec<usize>)> = s
        .unique_keys
        .iter()
        .map(|k| (k.name.clone(), k.columns.clone()))
        .collect();
    uks.sort();
    assert_eq!(
        uks,
        vec![
            ("ab".to_string(), vec![3, 0]),
            ("email_uk".to_string(), vec![2])
        ],
        "unique keys in index column order; the non-unique key is left out"
    );
    assert!(s.columns[1].unsigned);
}

#[tokio::test]
async fn ddl_is_delivered_and_refreshes_the_schema() {
    let srv = server();
    let (db, mut conn) = fresh_db(srv, "ddl").await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, a INT)")
        .await
        .expect("create");
    let start = position_now(srv).await;
    conn.query_drop("INSERT INTO t VALUES (1, 1)")
        .await
        .expect("insert");
    conn.query_drop("ALTER TABLE t ADD COLUMN b VARCHAR(10) AFTER id, ADD UNIQUE KEY ub (b)")
        .await
        .expect("alter");
    // sqlparser cannot parse these; they must still arrive, classified from tokens.
    conn.query_drop("ALTER TABLE t ENGINE=InnoDB")
        .await
        .expect("alter engine");
    conn.query_drop("ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT")
        .await
        .expect("alter if not exists");
    conn.query_drop("INSERT INTO t (id, b, a, c) VALUES (2, 'bee', 2, 3)")
        .await
        .expect("insert");
    let mut src = source(srv, start).await;
    let events = read_rows(&mut src, &db, 2).await;
    let ddls: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Ddl(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(ddls.len(), 3, "every DDL statement arrives: {ddls:?}");
    assert_eq!(ddls[0].ddl.kind, DdlKind::AlterTable);
    assert!(ddls[0].ddl.parsed);
    assert_eq!(ddls[0].ddl.tables[0].table, "t");
    assert_eq!(ddls[0].database, db);
    assert!(ddls[0].statement.contains("ADD UNIQUE KEY ub"));
    for d in &ddls[1..] {
        assert_eq!(d.ddl.kind, DdlKind::AlterTable, "{}", d.statement);
        assert_eq!(d.ddl.tables[0].table, "t");
    }
    let ch = changes(&events);
    assert_eq!(ch[0].table.columns.len(), 2);
    let after = &ch[1].table;
    let names: Vec<&str> = after.columns.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["id", "b", "a", "c"]);
    assert_eq!(after.unique_keys.len(), 1);
    assert_eq!(after.unique_keys[0].name, "ub");
    assert_eq!(after.unique_keys[0].columns, vec![1]);
    let img = ch[1].after.as_ref().expect("after").to_json(after);
    assert_eq!(img["b"], "bee");
    assert_eq!(img["c"], 3);
}
