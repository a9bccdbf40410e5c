//! Strict writes against a real server: a target whose schema drifted from the source's refuses
//! the change, and the applier names table, key, column and value instead of storing something
//! else (issue #11, item 3). Every case fails on an applier that writes `INSERT IGNORE` in a
//! non-strict session: the row is truncated, converted or dropped without a word.

use std::sync::Arc;
use std::time::Duration;

use drc_apply::conflict::LwwChange;
use drc_apply::sql;
use drc_apply::worker::{Applier, Job, Tag};
use drc_apply::LinkError;
use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::{ColumnSchema, SqlType, TableSchema, UniqueKey};
use drc_core::value::{Text, Value};
use drc_meta as meta;
use mysql_async::prelude::Queryable;

/// The source's view of `db.t`: `id INT PRIMARY KEY, v <string>`, unique key on `v` when asked.
fn schema(db: &str, v_type: SqlType, unique_v: bool) -> Arc<TableSchema> {
    let col = |n: &str, t: SqlType| ColumnSchema {
        name: n.into(),
        sql_type: t,
        unsigned: false,
        collation: None,
    };
    Arc::new(TableSchema {
        database: db.into(),
        table: "t".into(),
        columns: vec![col("id", SqlType::Int), col("v", v_type)],
        primary_key: vec![0],
        unique_keys: if unique_v {
            vec![UniqueKey {
                name: "v".into(),
                columns: vec![1],
            }]
        } else {
            vec![]
        },
        unique_keys_known: true,
    })
}

fn insert(t: &Arc<TableSchema>, id: i64, v: Value) -> RowChange {
    RowChange {
        table: t.clone(),
        kind: ChangeKind::Insert,
        before: None,
        after: Some(Image(vec![Some(Value::Int(id)), Some(v)])),
    }
}

struct Target {
    db: String,
    url: String,
    meta: String,
    applier: Applier,
}

async fn target(prefix: &str, table: &str) -> Target {
    target_with(prefix, table, false).await
}

/// [`target`], its applier on the MySQL path when `portable` (`Applier::portable`).
async fn target_with(prefix: &str, table: &str, portable: bool) -> Target {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, prefix).await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url_for(&db)).await;
    c.query_drop(table).await.expect("target table");
    meta::ensure_schema(&mut c, &meta_db).await.expect("meta");
    let tag = Tag::Marker(meta::Marker {
        meta: meta_db.clone(),
        origin: "a".into(),
        link: "a->b".into(),
        worker: 0,
    });
    let applier = Applier::new(s.url(), tag, Duration::from_secs(10));
    Target {
        url: s.url_for(&db),
        applier: if portable {
            applier.portable()
        } else {
            applier
        },
        db,
        meta: meta_db,
    }
}

impl Target {
    /// The share's checkpoint statement (link a->b, batch 1, positions 0-1-1 .. 0-1-2).
    fn checkpoint(&self) -> String {
        meta::checkpoint_statement(
            &self.meta,
            "a->b",
            &meta::Checkpoint {
                worker: 0,
                batch: 1,
                workers: 1,
                start: "0-1-1".parse().expect("position"),
                end: "0-1-2".parse().expect("position"),
            },
        )
    }

    async fn apply(&mut self, changes: &[&RowChange]) -> Result<(), LinkError> {
        let statements = sql::rendered(changes, 500, 4 << 20).expect("rewrite");
        let cp = self.checkpoint();
        let job = Job {
            statements,
            at: "after 0-1-1 up to 0-1-2".into(),
            checkpoint: cp,
            ..Job::default()
        };
        self.applier.apply_job(&job).await.map(|_| ())
    }

    /// Applies `changes` as last-writer-wins changes (version column ordinal `version`), one
    /// level.
    async fn apply_lww(&mut self, changes: &[&RowChange], version: usize) -> Result<(), LinkError> {
        let cp = self.checkpoint();
        let level: Vec<LwwChange<'_>> = changes
            .iter()
            .map(|c| LwwChange {
                change: c,
                version,
                chained: false,
            })
            .collect();
        let job = Job {
            lww: vec![level],
            at: "after 0-1-1 up to 0-1-2".into(),
            checkpoint: cp,
            conflict_log: (self.meta.clone(), "a->b".into()),
            ..Job::default()
        };
        self.applier.apply_job(&job).await.map(|_| ())
    }

    async fn rows(&self) -> Vec<(i64, Option<String>)> {
        let mut c = drc_testkit::connect(&self.url).await;
        c.query("SELECT id, CAST(v AS CHAR) FROM t ORDER BY id")
            .await
            .expect("rows")
    }

    async fn checkpoints(&self) -> u64 {
        let mut c = drc_testkit::connect(&self.url).await;
        c.query_first(format!(
            "SELECT COUNT(*) FROM `{}`.`checkpoint` WHERE link = 'a->b'",
            self.meta
        ))
        .await
        .expect("count")
        .unwrap_or(0)
    }
}

/// Asserts a `Rejected` error naming `db.t`, the key, the column and a value fragment.
fn assert_rejected(e: LinkError, db: &str, key: &str, column: &str, value: &str) {
    let text = e.to_string();
    match e {
        LinkError::Rejected(r) => {
            assert_eq!(r.table, format!("{db}.t"), "{text}");
            assert_eq!(r.key, key, "{text}");
            assert_eq!(r.column, column, "{text}");
            assert!(r.value.contains(value), "value {value:?} in {text}");
        }
        other => panic!("expected a rejected change, got {other:?} ({text})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_column_stops_instead_of_truncating() {
    let mut t = target(
        "strict_len",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))",
    )
    .await;
    let s = schema(&t.db, SqlType::String, false);
    let ok = insert(&s, 1, Value::Text(Text::utf8("short")));
    let long = insert(&s, 2, Value::Text(Text::utf8("abcdefghijklmnopqrstuvwxyz")));
    let e = t.apply(&[&ok, &long]).await.expect_err("too long");
    assert_rejected(e, &t.db, "(id=2)", "v", "abcdefghijklmnopqrstuvwxyz");
    assert!(t.rows().await.is_empty(), "the share committed nothing");
    assert_eq!(t.checkpoints().await, 0, "the position did not move");
    // What fits arrives, and a replay of it is harmless.
    t.apply(&[&ok]).await.expect("fits");
    t.apply(&[&ok]).await.expect("replay");
    assert_eq!(t.rows().await, [(1, Some("short".into()))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_the_column_cannot_hold_stops() {
    let mut t = target(
        "strict_charset",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) CHARACTER SET latin1)",
    )
    .await;
    let s = schema(&t.db, SqlType::String, false);
    let emoji = insert(&s, 7, Value::Text(Text::utf8("smile \u{1F600}")));
    let e = t
        .apply(&[&emoji])
        .await
        .expect_err("no 4-byte chars in latin1");
    assert_rejected(e, &t.db, "(id=7)", "v", "smile");
    assert!(t.rows().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_into_not_null_stops() {
    let mut t = target(
        "strict_null",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)",
    )
    .await;
    let s = schema(&t.db, SqlType::String, false);
    let null = insert(&s, 3, Value::Null);
    let e = t.apply(&[&null]).await.expect_err("NOT NULL");
    assert_rejected(e, &t.db, "(id=3)", "v", "NULL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_no_partition_takes_stops() {
    let mut t = target(
        "strict_part",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)) \
         PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (100))",
    )
    .await;
    let s = schema(&t.db, SqlType::String, false);
    let a = insert(&s, 5, Value::Text(Text::utf8("in")));
    let b = insert(&s, 500, Value::Text(Text::utf8("out")));
    let e = t.apply(&[&a, &b]).await.expect_err("no partition");
    let text = e.to_string();
    assert!(
        matches!(&e, LinkError::Rejected(r) if r.key == "(id=500)"),
        "{text}"
    );
    assert!(text.contains("partition"), "{text}");
    assert!(t.rows().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_value_held_by_another_row_stops_instead_of_overwriting_it() {
    let mut t = target(
        "strict_unique",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), UNIQUE KEY (v))",
    )
    .await;
    let mut c = drc_testkit::connect(&t.url).await;
    c.query_drop("INSERT INTO t VALUES (1, 'x@example.com')")
        .await
        .expect("local row");
    let s = schema(&t.db, SqlType::String, true);
    // An insert (INSERT IGNORE dropped it) ...
    let ins = insert(&s, 2, Value::Text(Text::utf8("x@example.com")));
    let e = t.apply(&[&ins]).await.expect_err("unique collision");
    let text = e.to_string();
    assert!(
        matches!(&e, LinkError::Rejected(r) if r.key == "(id=2)"),
        "{text}"
    );
    assert!(text.contains("collides on a unique key"), "{text}");
    // ... and an update of a missing row (an upsert rewrote the other row, id 1, into id 2).
    let upd = RowChange {
        table: s.clone(),
        kind: ChangeKind::Update,
        before: Some(Image(vec![
            Some(Value::Int(2)),
            Some(Value::Text(Text::utf8("old"))),
        ])),
        after: Some(Image(vec![
            Some(Value::Int(2)),
            Some(Value::Text(Text::utf8("x@example.com"))),
        ])),
    };
    let e = t
        .apply(&[&upd])
        .await
        .expect_err("unique collision on upsert");
    assert!(e.to_string().contains("collides on a unique key"), "{e}");
    assert_eq!(
        t.rows().await,
        [(1, Some("x@example.com".into()))],
        "the other row is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_rounded_with_a_warning_stops() {
    // On MariaDB the statements go out joined and their warnings are counted in the server;
    // on the MySQL path (`portable`) each is sent alone and its warnings read. Both name the
    // row, and commit nothing.
    for portable in [false, true] {
        let mut t = target_with(
            &format!("strict_warn{}", u8::from(portable)),
            "CREATE TABLE t (id INT PRIMARY KEY, v DECIMAL(4,1))",
            portable,
        )
        .await;
        let s = schema(&t.db, SqlType::Decimal, false);
        let ok = insert(&s, 1, Value::Decimal("1.5".into()));
        let d = insert(&s, 4, Value::Decimal("1.25".into()));
        let e = t.apply(&[&ok, &d]).await.expect_err("rounded");
        assert_rejected(e, &t.db, "(id=4)", "v", "1.25");
        assert!(t.rows().await.is_empty(), "portable {portable}");
        t.apply(&[&ok]).await.expect("what fits applies");
        assert_eq!(t.rows().await, [(1, Some("1.5".into()))]);
    }
}

/// The source's view of a last-writer-wins table: `id INT PRIMARY KEY, v <v_type>, ver BIGINT`.
fn versioned(db: &str, v_type: SqlType) -> Arc<TableSchema> {
    let col = |n: &str, t: SqlType| ColumnSchema {
        name: n.into(),
        sql_type: t,
        unsigned: false,
        collation: None,
    };
    Arc::new(TableSchema {
        database: db.into(),
        table: "t".into(),
        columns: vec![
            col("id", SqlType::Int),
            col("v", v_type),
            col("ver", SqlType::BigInt),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        unique_keys_known: true,
    })
}

fn versioned_row(id: i64, v: Value, ver: i64) -> Image {
    Image(vec![Some(Value::Int(id)), Some(v), Some(Value::Int(ver))])
}

/// Last-writer-wins writes are batched, many per query: a refused one is still named by table,
/// key, column and value, and the share commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_writer_wins_write_the_target_refuses_is_named() {
    let mut t = target(
        "strict_lww_len",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10), ver BIGINT NOT NULL)",
    )
    .await;
    let s = versioned(&t.db, SqlType::String);
    let ins = |id, v: &str| RowChange {
        table: s.clone(),
        kind: ChangeKind::Insert,
        before: None,
        after: Some(versioned_row(id, Value::Text(Text::utf8(v)), 5)),
    };
    let ok = ins(1, "short");
    let long = ins(2, "abcdefghijklmnopqrstuvwxyz");
    let e = t.apply_lww(&[&ok, &long], 2).await.expect_err("too long");
    assert_rejected(e, &t.db, "(id=2)", "v", "abcdefghijklmnopqrstuvwxyz");
    assert!(t.rows().await.is_empty(), "the share committed nothing");
    assert_eq!(t.checkpoints().await, 0, "the position did not move");
    t.apply_lww(&[&ok], 2).await.expect("fits");
    assert_eq!(t.rows().await, [(1, Some("short".into()))]);
}

/// A value the target stores changed with only a note (DECIMAL rounded to a narrower scale)
/// stops a last-writer-wins share too, although the batched query itself succeeds but for the
/// warning check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_writer_wins_write_rounded_with_a_note_stops() {
    let mut t = target(
        "strict_lww_warn",
        "CREATE TABLE t (id INT PRIMARY KEY, v DECIMAL(4,1), ver BIGINT NOT NULL)",
    )
    .await;
    let mut c = drc_testkit::connect(&t.url).await;
    c.query_drop("INSERT INTO t VALUES (4, 1.5, 1), (5, 2.5, 1)")
        .await
        .expect("target rows");
    let s = versioned(&t.db, SqlType::Decimal);
    let upd = |id, before: &str, after: &str, ver| RowChange {
        table: s.clone(),
        kind: ChangeKind::Update,
        before: Some(versioned_row(id, Value::Decimal(before.into()), 1)),
        after: Some(versioned_row(id, Value::Decimal(after.into()), ver)),
    };
    // Row 4 stores exactly; row 5's new value would be rounded to 3.3.
    let exact = upd(4, "1.5", "9.5", 2);
    let rounded = upd(5, "2.5", "3.25", 2);
    let e = t
        .apply_lww(&[&exact, &rounded], 2)
        .await
        .expect_err("rounded");
    assert_rejected(e, &t.db, "(id=5)", "v", "3.25");
    let vals: Vec<(i64, String)> = c
        .query("SELECT id, CAST(v AS CHAR) FROM t ORDER BY id")
        .await
        .expect("rows");
    assert_eq!(
        vals,
        [(4, "1.5".to_string()), (5, "2.5".to_string())],
        "nothing of the share was committed"
    );
    assert_eq!(t.checkpoints().await, 0, "the position did not move");
    // The same share without the rounded row commits, with its checkpoint.
    t.apply_lww(&[&exact], 2).await.expect("exact");
    let vals: Vec<(i64, String)> = c
        .query("SELECT id, CAST(v AS CHAR) FROM t ORDER BY id")
        .await
        .expect("rows");
    assert_eq!(vals, [(4, "9.5".to_string()), (5, "2.5".to_string())]);
    assert_eq!(t.checkpoints().await, 1);
}
