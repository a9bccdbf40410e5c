//! Last-writer-wins writes merged into multi-row statements (`drc_apply::conflict::merge`)
//! against a real server: a level's inserts, updates and deletes go out as a few statements,
//! and every rule decides as it does row by row — ties, a delete against a newer row, an insert
//! under a tombstone, unique-value evictions and losses, and levels longer than one statement.

use std::sync::Arc;
use std::time::Duration;

use drc_apply::conflict::LwwChange;
use drc_apply::plan::Placed;
use drc_apply::worker::{Applier, Job, Tag};
use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::{ColumnSchema, SqlType, TableSchema, UniqueKey};
use drc_core::value::{Text, Value};
use drc_meta as meta;
use mysql_async::prelude::Queryable;

/// Ordinal of the version column `ver` in every table here.
const VER: usize = 2;

/// `db.<table> (id INT PRIMARY KEY, v VARCHAR, ver BIGINT)`, `v` unique when asked.
fn schema(db: &str, table: &str, unique_v: bool) -> Arc<TableSchema> {
    let col = |n: &str, t: SqlType| ColumnSchema {
        name: n.into(),
        sql_type: t,
        unsigned: false,
        collation: None,
    };
    Arc::new(TableSchema {
        database: db.into(),
        table: table.into(),
        columns: vec![
            col("id", SqlType::Int),
            col("v", SqlType::String),
            col("ver", SqlType::BigInt),
        ],
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

fn row(id: i64, v: &str, ver: i64) -> Image {
    Image(vec![
        Some(Value::Int(id)),
        Some(Value::Text(Text::utf8(v))),
        Some(Value::Int(ver)),
    ])
}

fn insert(t: &Arc<TableSchema>, after: Image) -> RowChange {
    RowChange {
        table: t.clone(),
        kind: ChangeKind::Insert,
        before: None,
        after: Some(after),
    }
}

fn update(t: &Arc<TableSchema>, before: Image, after: Image) -> RowChange {
    RowChange {
        table: t.clone(),
        kind: ChangeKind::Update,
        before: Some(before),
        after: Some(after),
    }
}

fn delete(t: &Arc<TableSchema>, before: Image) -> RowChange {
    RowChange {
        table: t.clone(),
        kind: ChangeKind::Delete,
        before: Some(before),
        after: None,
    }
}

struct Target {
    db: String,
    url: String,
    meta: String,
    applier: Applier,
}

/// A fresh database on the shared server with `tables` (statements) and drc's meta schema.
async fn target(prefix: &str, tables: &str) -> Target {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, prefix).await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url_for(&db)).await;
    c.query_drop(tables).await.expect("target tables");
    meta::ensure_schema(&mut c, &meta_db).await.expect("meta");
    let tag = Tag::Marker(meta::Marker {
        meta: meta_db.clone(),
        origin: "a".into(),
        link: "a->b".into(),
        worker: 0,
    });
    Target {
        url: s.url_for(&db),
        applier: Applier::new(s.url(), tag, Duration::from_secs(10)),
        db,
        meta: meta_db,
    }
}

impl Target {
    async fn sql(&self, q: &str) {
        let mut c = drc_testkit::connect(&self.url).await;
        c.query_drop(q).await.expect("target statement");
    }

    /// Applies `levels` as one last-writer-wins share and commits it.
    async fn apply(&mut self, levels: &[Vec<&RowChange>]) {
        let placed: Vec<Vec<Placed<'_>>> = levels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|c| Placed {
                        change: c,
                        chained: false,
                    })
                    .collect()
            })
            .collect();
        self.apply_placed(&placed).await;
    }

    /// Applies `levels` as placed by the planner (folded chains marked) and commits them.
    async fn apply_placed(&mut self, levels: &[Vec<Placed<'_>>]) {
        let cp = meta::checkpoint_statement(
            &self.meta,
            "a->b",
            &meta::Checkpoint {
                worker: 0,
                batch: 1,
                workers: 1,
                start: "0-1-1".parse().expect("position"),
                end: "0-1-2".parse().expect("position"),
            },
        );
        let lww: Vec<Vec<LwwChange<'_>>> = levels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|p| LwwChange {
                        change: p.change,
                        version: VER,
                        chained: p.chained,
                    })
                    .collect()
            })
            .collect();
        let job = Job {
            lww,
            at: "after 0-1-1 up to 0-1-2".into(),
            checkpoint: cp,
            conflict_log: (self.meta.clone(), "a->b".into()),
            ..Job::default()
        };
        self.applier.apply_job(&job).await.expect("share applies");
    }

    async fn rows(&self, table: &str) -> Vec<(i64, String, i64)> {
        let mut c = drc_testkit::connect(&self.url).await;
        c.query(format!("SELECT id, v, ver FROM {table} ORDER BY id"))
            .await
            .expect("rows")
    }

    /// Resolutions recorded in the conflict table, sorted.
    async fn resolutions(&self) -> Vec<String> {
        let mut c = drc_testkit::connect(&self.url).await;
        let mut r: Vec<String> = c
            .query(format!("SELECT resolution FROM `{}`.`conflict`", self.meta))
            .await
            .expect("records");
        r.sort();
        r
    }

    async fn tombstones(&self) -> u64 {
        let mut c = drc_testkit::connect(&self.url).await;
        c.query_first(format!("SELECT COUNT(*) FROM `{}`.`tombstone`", self.meta))
            .await
            .expect("count")
            .unwrap_or(0)
    }
}

const TABLE: &str =
    "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, ver BIGINT NOT NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_level_decides_every_rule_as_row_by_row() {
    let mut tg = target("lww_merge_mixed", TABLE).await;
    tg.sql("INSERT INTO t VALUES (1,'old',5), (2,'old',5), (4,'old',5), (5,'old',5), (6,'old',5)")
        .await;
    let t = schema(&tg.db, "t", false);
    // Level 0: every change at its own key.
    let ins10 = insert(&t, row(10, "n10", 7));
    let ins11 = insert(&t, row(11, "n11", 7));
    let ins12 = insert(&t, row(12, "n12", 7));
    let causal = update(&t, row(1, "old", 5), row(1, "new", 6));
    let older = update(&t, row(2, "other", 3), row(2, "x", 4));
    let missing = update(&t, row(3, "gone", 2), row(3, "back", 3));
    let exact_delete = delete(&t, row(4, "old", 5));
    let stale_delete = delete(&t, row(5, "old", 3));
    let blind_delete = delete(&t, row(7, "never", 8));
    let newer6 = update(&t, row(6, "old", 5), row(6, "six", 9));
    // Level 1: the keys deleted above come back, older and newer than their tombstones.
    let under_tomb = insert(&t, row(4, "again", 4));
    let over_tomb = insert(&t, row(7, "seven", 9));
    tg.apply(&[
        vec![
            &ins10,
            &ins11,
            &causal,
            &older,
            &ins12,
            &missing,
            &exact_delete,
            &stale_delete,
            &blind_delete,
            &newer6,
        ],
        vec![&under_tomb, &over_tomb],
    ])
    .await;
    assert_eq!(
        tg.rows("t").await,
        [
            (1, "new".into(), 6),
            (2, "old".into(), 5),
            (3, "back".into(), 3),
            (5, "old".into(), 5),
            (6, "six".into(), 9),
            (7, "seven".into(), 9),
            (10, "n10".into(), 7),
            (11, "n11".into(), 7),
            (12, "n12".into(), 7),
        ]
    );
    assert_eq!(
        tg.resolutions().await,
        ["delete_skipped", "local_won", "tombstone_won"]
    );
    // Rows 4 and 7 (the deletes that applied or met a missing row).
    assert_eq!(tg.tombstones().await, 2);
    // Replaying the share changes nothing and records nothing new but the replayed losses.
    let before = tg.rows("t").await;
    tg.apply(&[
        vec![
            &ins10,
            &ins11,
            &causal,
            &older,
            &ins12,
            &missing,
            &exact_delete,
            &stale_delete,
            &blind_delete,
            &newer6,
        ],
        vec![&under_tomb, &over_tomb],
    ])
    .await;
    assert_eq!(tg.rows("t").await, before);
}

/// Ties on the version are decided by the row hash, the same way whichever row a center holds:
/// two targets holding each other's rows end equal, for many rows in one merged upsert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_in_one_merged_upsert_converge() {
    let mut x = target("lww_merge_tie_x", TABLE).await;
    let mut y = target("lww_merge_tie_y", TABLE).await;
    let n = 50;
    let mut seed_x = Vec::new();
    let mut seed_y = Vec::new();
    for id in 1..=n {
        seed_x.push(format!("({id}, 'x{id}', 7)"));
        seed_y.push(format!("({id}, 'y{id}', 7)"));
    }
    x.sql(&format!("INSERT INTO t VALUES {}", seed_x.join(", ")))
        .await;
    y.sql(&format!("INSERT INTO t VALUES {}", seed_y.join(", ")))
        .await;
    let tx = schema(&x.db, "t", false);
    let ty = schema(&y.db, "t", false);
    // x receives y's rows (as updates from a common older row), y receives x's.
    let to_x: Vec<RowChange> = (1..=n)
        .map(|id| update(&tx, row(id, "base", 1), row(id, &format!("y{id}"), 7)))
        .collect();
    let to_y: Vec<RowChange> = (1..=n)
        .map(|id| update(&ty, row(id, "base", 1), row(id, &format!("x{id}"), 7)))
        .collect();
    x.apply(&[to_x.iter().collect()]).await;
    y.apply(&[to_y.iter().collect()]).await;
    let (rx, ry) = (x.rows("t").await, y.rows("t").await);
    assert_eq!(rx, ry, "both targets keep the same row of every tie");
    let from_x = rx.iter().filter(|r| r.1.starts_with('x')).count();
    assert!(
        from_x > 0 && from_x < n as usize,
        "the hash picks either side: {rx:?}"
    );
    // Every tie lost one write, recorded on each side.
    assert_eq!(x.resolutions().await.len(), n as usize);
    assert_eq!(y.resolutions().await.len(), n as usize);
}

/// Levels longer than one statement ([`MERGE_ROWS`] is 200): inserts, updates and deletes of
/// 450 rows, each level merged into several statements, and every delete's tombstone written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_levels_split_into_several_statements() {
    let mut tg = target("lww_merge_long", TABLE).await;
    let t = schema(&tg.db, "t", false);
    let n = 450;
    let inserts: Vec<RowChange> = (1..=n)
        .map(|id| insert(&t, row(id, &format!("r{id}"), 1)))
        .collect();
    let updates: Vec<RowChange> = (1..=n)
        .map(|id| update(&t, row(id, &format!("r{id}"), 1), row(id, "u", 2)))
        .collect();
    let deletes: Vec<RowChange> = (1..=n)
        .filter(|id| id % 3 == 0)
        .map(|id| delete(&t, row(id, "u", 2)))
        .collect();
    tg.apply(&[
        inserts.iter().collect(),
        updates.iter().collect(),
        deletes.iter().collect(),
    ])
    .await;
    let rows = tg.rows("t").await;
    assert_eq!(rows.len(), (n - n / 3) as usize);
    assert!(rows
        .iter()
        .all(|(id, v, ver)| id % 3 != 0 && v == "u" && *ver == 2));
    assert_eq!(tg.tombstones().await, (n / 3) as u64);
    assert!(tg.resolutions().await.is_empty());
}

/// A table with a unique key besides the primary key: inserts still merge, around the
/// evictions they cause; updates stay single statements; a value held by a newer row drops the
/// incoming row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_key_collisions_evict_and_drop_as_row_by_row() {
    let mut tg = target(
        "lww_merge_unique",
        "CREATE TABLE u (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, ver BIGINT NOT NULL, UNIQUE KEY v (v))",
    )
    .await;
    tg.sql("INSERT INTO u VALUES (1,'a',5), (2,'b',5), (8,'h',5)")
        .await;
    let u = schema(&tg.db, "u", true);
    // Level 0: 3 takes 'a' from the older 1 (evicted); 4 loses 'b' to the newer 2; 5 and 6 are
    // plain inserts; 8 moves to 'i' (an update, a single statement).
    let takes_a = insert(&u, row(3, "a", 6));
    let loses_b = insert(&u, row(4, "b", 4));
    let plain5 = insert(&u, row(5, "c", 5));
    let plain6 = insert(&u, row(6, "d", 5));
    let moves8 = update(&u, row(8, "h", 5), row(8, "i", 6));
    // Level 1: 2 moves to 'bb' (its old value was claimed by 4's write in level 0).
    let moves2 = update(&u, row(2, "b", 5), row(2, "bb", 6));
    tg.apply(&[
        vec![&takes_a, &loses_b, &plain5, &plain6, &moves8],
        vec![&moves2],
    ])
    .await;
    assert_eq!(
        tg.rows("u").await,
        [
            (2, "bb".into(), 6),
            (3, "a".into(), 6),
            (5, "c".into(), 5),
            (6, "d".into(), 5),
            (8, "i".into(), 6),
        ]
    );
    assert_eq!(
        tg.resolutions().await,
        ["evicted_local", "local_won_unique"]
    );
}

/// A level whose changes alternate between tables and kinds (as sysbench's transactions do):
/// the writes of the integer-keyed table without other unique keys merge by kind whatever
/// their order, the table with a unique key keeps its decision order, and the outcome is what
/// row by row gives. A table with two writes at one key in a level (never built by the
/// planner, which keeps a key's changes in separate levels) keeps its order too: its delete
/// of 1 runs before the insert that brings 1 back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_tables_and_kinds_merge_per_table_and_keep_what_order_needs() {
    let mut tg = target(
        "lww_merge_alternate",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, ver BIGINT NOT NULL); \
         CREATE TABLE u (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, ver BIGINT NOT NULL, UNIQUE KEY v (v)); \
         CREATE TABLE s (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, ver BIGINT NOT NULL)",
    )
    .await;
    tg.sql(
        "INSERT INTO t VALUES (1,'t1',5), (2,'t2',5), (3,'t3',5); \
         INSERT INTO u VALUES (1,'a',5), (2,'b',5); \
         INSERT INTO s VALUES (1,'s1',5)",
    )
    .await;
    let t = schema(&tg.db, "t", false);
    let u = schema(&tg.db, "u", true);
    let s = schema(&tg.db, "s", false);
    // Level 0, alternating. In u: 2 gives up 'b', then 5 takes it (order matters there).
    let changes = [
        update(&t, row(1, "t1", 5), row(1, "t1x", 6)),
        insert(&t, row(10, "t10", 6)),
        update(&u, row(2, "b", 5), row(2, "bb", 6)),
        delete(&t, row(2, "t2", 5)),
        insert(&u, row(5, "b", 6)),
        update(&t, row(3, "t3", 5), row(3, "t3x", 6)),
        delete(&u, row(1, "a", 5)),
        insert(&t, row(11, "t11", 6)),
        // s: 1 deleted and back in one level, with another insert around it.
        insert(&s, row(2, "s2", 6)),
        delete(&s, row(1, "s1", 5)),
        insert(&s, row(1, "s1new", 7)),
        delete(&t, row(12, "never", 6)),
    ];
    tg.apply(&[changes.iter().collect()]).await;
    assert_eq!(
        tg.rows("t").await,
        [
            (1, "t1x".into(), 6),
            (3, "t3x".into(), 6),
            (10, "t10".into(), 6),
            (11, "t11".into(), 6),
        ]
    );
    assert_eq!(
        tg.rows("u").await,
        [(2, "bb".into(), 6), (5, "b".into(), 6)]
    );
    assert_eq!(
        tg.rows("s").await,
        [(1, "s1new".into(), 7), (2, "s2".into(), 6)]
    );
    assert!(tg.resolutions().await.is_empty());
    // Tombstones of the tables without unique keys (u's also hold its claims): t 2 and 12,
    // s 1.
    let mut c = drc_testkit::connect(&tg.url).await;
    let per_table: Vec<(String, u64)> = c
        .query(format!(
            "SELECT db_table, COUNT(*) FROM `{}`.`tombstone` WHERE db_table <> '{}.u' \
             GROUP BY db_table ORDER BY db_table",
            tg.meta, tg.db
        ))
        .await
        .expect("tombstones");
    assert_eq!(
        per_table,
        [(format!("{}.s", tg.db), 1), (format!("{}.t", tg.db), 2)]
    );
}

impl Target {
    /// The applied tombstones, `(table, key hash, version, row hash)`, sorted.
    async fn tomb_dump(&self) -> Vec<(String, String, String, String)> {
        let mut c = drc_testkit::connect(&self.url).await;
        c.query(format!(
            "SELECT SUBSTRING_INDEX(db_table, '.', -1), HEX(pk_hash), version, HEX(row_hash) \
             FROM `{}`.`tombstone` ORDER BY 1, 2",
            self.meta
        ))
        .await
        .expect("tombstones")
    }
}

/// Rows of `t` and `s`, tombstones and resolutions of a target.
type Outcome = (
    Vec<(i64, String, i64)>,
    Vec<(i64, String, i64)>,
    Vec<(String, String, String, String)>,
    Vec<String>,
);

/// Two targets seeded alike, each with tables `t` (seeded) and `s` (empty) of [`TABLE`]'s
/// shape; `changes` (in source order, of `t` and `s`) applied to the first with the planner's
/// folded chains and to the second one level per change of a key, as before folding. Returns
/// both targets' outcomes.
async fn folded_and_unfolded(
    prefix: &str,
    seed_rows: &str,
    seed: &[RowChange],
    changes: impl Fn(&Arc<TableSchema>, &Arc<TableSchema>) -> Vec<RowChange>,
) -> [Outcome; 2] {
    let mut out = Vec::new();
    for fold in [true, false] {
        let mut tg = target(&format!("{prefix}_{}", if fold { "f" } else { "u" }), TABLE).await;
        tg.sql("CREATE TABLE s LIKE t").await;
        let t = schema(&tg.db, "t", false);
        let s = schema(&tg.db, "s", false);
        // The seed's tombstones: its deletes, one level each.
        let seed: Vec<RowChange> = seed
            .iter()
            .map(|c| RowChange {
                table: t.clone(),
                ..c.clone()
            })
            .collect();
        for c in &seed {
            tg.apply(&[vec![c]]).await;
        }
        // Then the rows, as a local writer would write them: a row may sit under a newer
        // tombstone.
        if !seed_rows.is_empty() {
            tg.sql(&format!("INSERT INTO t VALUES {seed_rows}")).await;
        }
        let changes = changes(&t, &s);
        let refs: Vec<&RowChange> = changes.iter().collect();
        let levels = if fold {
            drc_apply::plan::lww_levels(&refs, drc_apply::conflict::foldable)
        } else {
            drc_apply::plan::levels(&refs)
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .map(|change| Placed {
                            change,
                            chained: false,
                        })
                        .collect()
                })
                .collect()
        };
        tg.apply_placed(&levels).await;
        out.push((
            tg.rows("t").await,
            tg.rows("s").await,
            tg.tomb_dump().await,
            tg.resolutions().await,
        ));
    }
    let unfolded = out.pop().expect("two runs");
    let folded = out.pop().expect("two runs");
    [folded, unfolded]
}

/// A hot key's changes fold into one level: each is decided in source order against what the
/// chain did before it (the row it left, the tombstone its delete raised), and the key gets
/// the chain's net write. Every outcome equals the one of a level per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folded_chain_decides_as_its_levels_would_and_writes_its_net_effect() {
    let chain = |t: &Arc<TableSchema>, s: &Arc<TableSchema>| {
        vec![
            // A chain of another table in the same level: its tombstone stays its own.
            insert(s, row(1, "s", 5)),
            delete(s, row(1, "s", 5)),
            // 1 existed: updated, deleted, and an insert older than the delete's tombstone.
            update(t, row(1, "a", 5), row(1, "a1", 6)),
            // 2 existed: deleted and inserted again (net: an update).
            delete(t, row(2, "b", 5)),
            update(t, row(1, "a1", 6), row(1, "a1x", 6)),
            insert(t, row(2, "b2", 7)),
            delete(t, row(1, "a1x", 6)),
            // 3 missing under a tombstone at 8: an insert below it loses, an update above it
            // inserts.
            insert(t, row(3, "c", 7)),
            insert(t, row(1, "a2", 4)),
            update(t, row(3, "c", 7), row(3, "c2", 9)),
            // 4 missing: inserted and deleted (net: only its tombstone).
            insert(t, row(4, "d", 5)),
            delete(t, row(4, "d", 5)),
        ]
    };
    {
        let t = schema("x", "t", false);
        let changes = chain(&t, &schema("x", "s", false));
        let refs: Vec<&RowChange> = changes.iter().collect();
        let levels = drc_apply::plan::lww_levels(&refs, drc_apply::conflict::foldable);
        assert_eq!(levels.len(), 1, "every chain folds into one level");
        assert!(levels[0].iter().all(|p| p.chained));
        assert_eq!(
            drc_apply::plan::levels(&refs).len(),
            4,
            "unfolded: 4 levels"
        );
    }
    let seed = [delete(&schema("x", "t", false), row(3, "x", 8))];
    let [folded, unfolded] =
        folded_and_unfolded("lww_fold_named", "(1,'a',5), (2,'b',5)", &seed, chain).await;
    assert_eq!(
        folded.0,
        [(2, "b2".into(), 7), (3, "c2".into(), 9)],
        "rows of the folded run"
    );
    assert!(folded.1.is_empty(), "s: inserted and deleted");
    assert_eq!(folded.3, ["tombstone_won", "tombstone_won"]);
    // Tombstones at t's 1 (6), 2 (5), 3 (8, the seed's) and 4 (5), and at s's 1.
    let tables: Vec<&str> = folded.2.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(tables, ["s", "t", "t", "t", "t"], "{:?}", folded.2);
    assert_eq!(folded, unfolded, "folded and unfolded outcomes differ");
}

/// Random chains on a few hot keys (inserts, causal and blind updates, deletes, versions going
/// both ways, ties), over a target that holds other rows and tombstones than the source (and
/// rows under newer tombstones, as a local writer can leave them):
/// folded and unfolded end with the same rows, tombstones and conflict records. Seeds from
/// `DRC_TEST_SEED` or the clock, printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_folded_chains_end_as_unfolded_levels() {
    let seeds: Vec<u64> = match std::env::var("DRC_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("DRC_TEST_SEED is a number")],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            (0..4).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        eprintln!("folded chains: seed {seed} (rerun with DRC_TEST_SEED={seed})");
        let mut rng = fastrand::Rng::with_seed(seed);
        let keys = 1..=6i64;
        let val = |rng: &mut fastrand::Rng| ["p", "q", "r"][rng.usize(..3)].to_string();
        // The target: some keys hold a row, some a tombstone (seeded deletes at missing keys).
        let mut seed_rows = Vec::new();
        let mut seed_deletes = Vec::new();
        let mut src: std::collections::BTreeMap<i64, (String, i64)> = Default::default();
        for id in keys.clone() {
            match rng.u8(..5) {
                0 => seed_rows.push(format!("({id}, '{}', {})", val(&mut rng), rng.i64(1..8))),
                1 => seed_deletes.push((id, val(&mut rng), rng.i64(1..8))),
                2 => {
                    seed_deletes.push((id, val(&mut rng), rng.i64(5..10)));
                    seed_rows.push(format!("({id}, '{}', {})", val(&mut rng), rng.i64(1..5)));
                }
                _ => {}
            }
            if rng.bool() {
                src.insert(id, (val(&mut rng), rng.i64(1..8)));
            }
        }
        let seed_table = schema("x", "t", false);
        let seed_changes: Vec<RowChange> = seed_deletes
            .iter()
            .map(|(id, v, ver)| delete(&seed_table, row(*id, v, *ver)))
            .collect();
        // The source's stream: mostly consistent with its own rows, sometimes not (a write
        // this link does not carry changed the row in between).
        // (table s, kind: 0 insert, 1 update, 2 delete, id, before, after)
        type Planned = (bool, u8, i64, (String, i64), (String, i64));
        let mut plan: Vec<Planned> = Vec::new();
        let mut src_s: std::collections::BTreeMap<i64, (String, i64)> = Default::default();
        for _ in 0..40 {
            // Table s (empty at first) takes a third of the changes.
            let on_s = rng.u8(..3) == 0;
            let src = if on_s { &mut src_s } else { &mut src };
            let id = rng.i64(keys.clone());
            let next = (val(&mut rng), rng.i64(1..10));
            match src.get(&id).cloned() {
                Some(cur) => {
                    let before = if rng.u8(..8) == 0 {
                        (val(&mut rng), rng.i64(1..10))
                    } else {
                        cur
                    };
                    if rng.u8(..3) == 0 {
                        plan.push((on_s, 2, id, before, next));
                        src.remove(&id);
                    } else {
                        plan.push((on_s, 1, id, before, next.clone()));
                        src.insert(id, next);
                    }
                }
                None => {
                    plan.push((on_s, 0, id, next.clone(), next.clone()));
                    src.insert(id, next);
                }
            }
        }
        let changes = |t: &Arc<TableSchema>, s: &Arc<TableSchema>| {
            plan.iter()
                .map(|(on_s, kind, id, b, a)| (if *on_s { s } else { t }, kind, id, b, a))
                .map(|(t, kind, id, b, a)| match kind {
                    0 => insert(t, row(*id, &a.0, a.1)),
                    1 => update(t, row(*id, &b.0, b.1), row(*id, &a.0, a.1)),
                    _ => delete(t, row(*id, &b.0, b.1)),
                })
                .collect()
        };
        let [folded, unfolded] = folded_and_unfolded(
            &format!("lww_fold_{}", seed % 100_000),
            &seed_rows.join(", "),
            &seed_changes,
            changes,
        )
        .await;
        assert_eq!(
            folded, unfolded,
            "seed {seed}: folded and unfolded outcomes differ (rerun with DRC_TEST_SEED={seed})"
        );
    }
}

/// MySQL 8.0.20+ warns (1287) on every `VALUES()` upsert, which the share's warning check would
/// take for a warning about the data. Without `values_upserts` (a MySQL target) a level's
/// updates are plain `UPDATE`s, each counted alone; the rows end the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_values_upserts_updates_are_plain_updates() {
    for values_upserts in [true, false] {
        let tg = target(&format!("lww_merge_vu{}", u8::from(values_upserts)), TABLE).await;
        tg.sql("INSERT INTO t VALUES (1,'old',5), (2,'old',5)")
            .await;
        let t = schema(&tg.db, "t", false);
        let a = update(&t, row(1, "old", 5), row(1, "new", 6));
        let b = update(&t, row(2, "old", 5), row(2, "two", 7));
        let level: Vec<LwwChange<'_>> = [&a, &b]
            .into_iter()
            .map(|change| LwwChange {
                change,
                version: VER,
                chained: false,
            })
            .collect();
        let mut c = drc_testkit::connect(&tg.url).await;
        c.query_drop("START TRANSACTION").await.expect("begin");
        let mut pending = drc_apply::size::Joiner::new(64 << 20, 1 << 20);
        let (records, deferred) = drc_apply::conflict::run_levels(
            &mut c,
            &mut pending,
            &[level],
            &tg.meta,
            None,
            None,
            values_upserts,
        )
        .await
        .expect("the level runs");
        assert!(records.is_empty() && deferred.is_none());
        let writes = pending.take();
        assert_eq!(writes.contains("VALUES(`v`)"), values_upserts, "{writes}");
        assert_eq!(
            writes.matches(&format!("UPDATE `{}`", tg.db)).count(),
            if values_upserts { 0 } else { 2 },
            "{writes}"
        );
        c.query_drop(format!("{writes}; COMMIT"))
            .await
            .expect("the writes commit");
        assert_eq!(
            tg.rows("t").await,
            [(1, "new".into(), 6), (2, "two".into(), 7)]
        );
    }
}
