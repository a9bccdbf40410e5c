//! Conflicting writes in several centers converge under last-writer-wins, and every lost write
//! is in the conflict table (issue #4).
//!
//! Named cases: the daemons are stopped, each center writes its side of the conflict (with
//! `SET TIMESTAMP` choosing the versions), the daemons start again, and every center must end
//! with the expected rows. Each case runs with conflicting writes in two centers (the third
//! receives both) and in three centers.
//!
//! Randomized: writers in all three centers run concurrently with the daemons on an overlapping
//! key set; afterwards every center must hold identical rows, and every write whose value
//! disappeared without a later write having seen it must be in some center's conflict table.

use std::collections::{BTreeSet, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::cluster::{servers, Cluster};

/// Every center's conflict records and tombstones of `table`, for a failure message.
async fn meta_dump(cl: &Cluster, table: &str) -> String {
    let mut out = String::new();
    for i in 0..3 {
        let mut c = cl.conn(i).await;
        let rows: Vec<(String, String, String, String, String, String)> = c
            .exec(
                format!(
                    "SELECT CAST(at AS CHAR), link, rule, resolution, loser, winner FROM `{}_meta`.conflict \
                     WHERE db_table = ? ORDER BY at",
                    cl.db
                ),
                (format!("{}.{table}", cl.db),),
            )
            .await
            .expect("conflict rows");
        out.push_str(&format!("center {i} conflicts:\n"));
        for r in rows {
            out.push_str(&format!("  {r:?}\n"));
        }
        let tombs: Vec<(String, String, String)> = c
            .exec(
                format!(
                    "SELECT HEX(pk_hash), version, CAST(at AS CHAR) FROM `{m}`.tombstone \
                     WHERE db_table = ? UNION ALL SELECT HEX(pk_hash), CONCAT('local ', version), \
                     CAST(at AS CHAR) FROM `{m}`.local_tombstone WHERE db_table = ? ORDER BY 3",
                    m = format!("{}_meta", cl.db)
                ),
                (format!("{}.{table}", cl.db), format!("{}.{table}", cl.db)),
            )
            .await
            .expect("tombstone rows");
        out.push_str(&format!("center {i} tombstones:\n"));
        for r in tombs {
            out.push_str(&format!("  {r:?}\n"));
        }
    }
    out
}

/// A table with the default version column.
fn table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE `{name}` (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL, email VARCHAR(64) NULL UNIQUE, \
         updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));"
    )
}

/// Version base for the named cases (2030): later than any seed row.
const T: i64 = 1_900_000_000;

const CASES: [&str; 7] = ["ii", "uu", "ud", "dd", "tie", "pk", "uk"];

/// The seed rows of a case (written in center a before the conflict).
fn seed(case: &str) -> Vec<String> {
    match case {
        "ii" => vec![],
        "uk" => vec![format!(
            "INSERT INTO {case} (id, v, email) VALUES (1, 's', 'x')"
        )],
        _ => vec![format!("INSERT INTO {case} (id, v) VALUES (1, 's')")],
    }
}

/// The conflicting write of center `i` in a case: (version timestamp, statement).
fn write(case: &str, i: usize) -> (i64, String) {
    let i64i = i as i64;
    match case {
        "ii" => (
            T + i64i,
            format!("INSERT INTO ii (id, v) VALUES (1, 'c{i}')"),
        ),
        "uu" => (T + i64i, format!("UPDATE uu SET v = 'u{i}' WHERE id = 1")),
        "ud" if i == 0 => (T, "DELETE FROM ud WHERE id = 1".into()),
        "ud" => (T + i64i, format!("UPDATE ud SET v = 'u{i}' WHERE id = 1")),
        "dd" => (T + i64i, "DELETE FROM dd WHERE id = 1".into()),
        "tie" => (T, format!("UPDATE tie SET v = 't{i}' WHERE id = 1")),
        "pk" if i == 0 => (T + 1, "UPDATE pk SET id = 10 WHERE id = 1".into()),
        "pk" => (
            T + 1 + i64i,
            format!("UPDATE pk SET v = '{}' WHERE id = 1", ["", "x", "y"][i]),
        ),
        "uk" if i == 0 => (T + 1, "UPDATE uk SET email = 'y' WHERE id = 1".into()),
        "uk" => (
            T + 1 + i64i,
            format!(
                "INSERT INTO uk (id, v, email) VALUES ({}, 'n{i}', 'y')",
                i + 1
            ),
        ),
        _ => unreachable!("unknown case {case}"),
    }
}

/// The rows `(id, v)` every center must end with (not for ties, whose winner is the higher
/// row hash).
fn expected(case: &str, w: usize) -> Vec<(i32, String)> {
    let last = w - 1;
    match case {
        "ii" => vec![(1, format!("c{last}"))],
        "uu" => vec![(1, format!("u{last}"))],
        "ud" => vec![(1, format!("u{last}"))],
        "dd" => vec![],
        "pk" => vec![(1, ["", "x", "y"][last].to_string()), (10, "s".into())],
        "uk" => vec![((last + 1) as i32, format!("n{last}"))],
        _ => unreachable!("no fixed expectation for {case}"),
    }
}

async fn rows(c: &mut Conn, table: &str) -> Vec<(i32, String)> {
    c.query(format!("SELECT id, v FROM `{table}` ORDER BY id"))
        .await
        .expect("rows")
}

/// `(rule, resolution, loser.v)` of every conflict recorded for `table`, in every center.
async fn records(cl: &Cluster, table: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for i in 0..3 {
        let mut c = cl.conn(i).await;
        let rows: Vec<(String, String, String)> = c
            .exec(
                format!(
                    "SELECT rule, resolution, loser FROM `{}_meta`.conflict WHERE db_table = ?",
                    cl.db
                ),
                (format!("{}.{table}", cl.db),),
            )
            .await
            .expect("conflict rows");
        for (rule, res, loser) in rows {
            let j: serde_json::Value = serde_json::from_str(&loser).expect("loser is JSON");
            out.push((rule, res, j["v"].as_str().unwrap_or_default().to_string()));
        }
    }
    out
}

/// The records of `table` once one of them matches `wanted`, or after a 60 s deadline (the
/// caller's assertion then reports what is there). Rows can converge before every link decided
/// every change: a change that loses changes nothing, but its record is written when its link
/// gets to it.
async fn records_until(
    cl: &Cluster,
    table: &str,
    wanted: impl Fn(&(String, String, String)) -> bool,
) -> Vec<(String, String, String)> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let recs = records(cl, table).await;
        if recs.iter().any(&wanted) || tokio::time::Instant::now() >= deadline {
            return recs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn named_cases(writers: usize) {
    let schema: String = CASES.iter().map(|c| table_sql(c)).collect();
    let mut cl = Cluster::new(&format!("lww{writers}"), &schema, "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    for case in CASES {
        for s in seed(case) {
            a.query_drop(s).await.expect("seed");
        }
    }
    for case in CASES {
        cl.wait_converged(case).await;
    }
    for i in 0..3 {
        cl.kill9(i);
    }
    for i in 0..writers {
        let mut c = cl.conn(i).await;
        for case in CASES {
            let (ts, sql) = write(case, i);
            c.query_drop(format!(
                "SET TIMESTAMP = {ts}; {sql}; SET TIMESTAMP = DEFAULT"
            ))
            .await
            .unwrap_or_else(|e| panic!("{case}: center {i}: {sql}: {e}"));
        }
    }
    cl.start_all();
    for case in CASES {
        cl.wait_converged(case).await;
        let got = rows(&mut a, case).await;
        // Rows can converge before every center decided every incoming change (a delete that
        // loses to a newer row changes nothing, but its record is written when its link gets to
        // it): wait for the skipped delete's record with a deadline.
        let recs = if matches!(case, "ud" | "pk") {
            records_until(&cl, case, |r| r.1 == "delete_skipped").await
        } else {
            records(&cl, case).await
        };
        let lost: BTreeSet<String> = recs.iter().map(|r| r.2.clone()).collect();
        let ctx = format!("case {case} with {writers} writers: rows {got:?}, records {recs:?}");
        match case {
            "tie" => {
                assert_eq!(got.len(), 1, "{ctx}");
                let winner = &got[0].1;
                for i in 0..writers {
                    let t = format!("t{i}");
                    if &t != winner {
                        assert!(lost.contains(&t), "{t} lost without a record; {ctx}");
                    }
                }
                assert!(recs.iter().all(|r| r.0 == "tie_hash"), "{ctx}");
            }
            _ => assert_eq!(got, expected(case, writers), "{ctx}"),
        }
        match case {
            "ii" => {
                for i in 0..writers - 1 {
                    assert!(lost.contains(&format!("c{i}")), "{ctx}");
                }
            }
            "uu" => {
                for i in 0..writers - 1 {
                    assert!(lost.contains(&format!("u{i}")), "{ctx}");
                }
            }
            "ud" => {
                assert!(
                    recs.iter()
                        .any(|r| r.1 == "delete_skipped" && r.0 == "update_wins_over_delete"),
                    "the skipped delete is on record; {ctx}"
                );
                if writers == 3 {
                    assert!(lost.contains("u1"), "{ctx}");
                }
            }
            "dd" => assert!(recs.is_empty(), "delete/delete is no conflict; {ctx}"),
            "pk" => assert!(
                recs.iter().any(|r| r.1 == "delete_skipped"),
                "the key change's delete lost to the update; {ctx}"
            ),
            "uk" => {
                for i in 1..writers - 1 {
                    assert!(lost.contains(&format!("n{i}")), "{ctx}");
                }
                assert!(
                    recs.iter()
                        .any(|r| r.2 == "s" || r.1 == "evicted_local" || r.1 == "removed_unique"),
                    "the moved row's loss is on record; {ctx}"
                );
            }
            _ => {}
        }
    }
    cli_lists_the_records(&cl).await;
}

/// `drc conflicts` lists exactly the rows of each center's conflict table.
async fn cli_lists_the_records(cl: &Cluster) {
    let mut listed = 0;
    for (i, name) in crate::cluster::NAMES.iter().enumerate() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
            .args([
                "conflicts",
                "--json",
                "--center",
                name,
                "--since",
                "1d",
                "--config",
            ])
            .arg(&cl.config)
            .output()
            .expect("drc conflicts runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let mut c = cl.conn(i).await;
        let n: u64 = c
            .query_first(format!("SELECT COUNT(*) FROM `{}_meta`.conflict", cl.db))
            .await
            .expect("count")
            .unwrap_or(0);
        assert_eq!(lines.len() as u64, n, "center {name}");
        assert!(lines
            .iter()
            .all(|l| l["center"] == *name && l["loser"].is_object()));
        listed += lines.len();
    }
    assert!(listed > 0);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["conflicts", "--since", "yesterday", "--config"])
        .arg(&cl.config)
        .output()
        .expect("drc conflicts runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("give a UTC time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_conflicts_converge_with_two_writers() {
    named_cases(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_conflicts_converge_with_three_writers() {
    named_cases(3).await;
}

/// Which operations random writers use.
#[derive(Debug, Clone, Copy)]
struct Mix {
    /// Deletes and primary-key changes.
    deletes: bool,
    /// Values for the unique `email` column (unique-key conflicts).
    unique_values: bool,
}

/// One writer's log: `(token the write replaced, token it wrote, statement)`; deletes write
/// `None`.
type Log = Vec<(Option<String>, Option<String>, String)>;

/// A write that did not happen: duplicate key, or a deadlock / lock wait with drc's applier.
fn is_dup(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if matches!(s.code, 1062 | 1205 | 1213))
}

/// Random inserts, updates, deletes and primary-key changes on ids 1..=keys, each writing a
/// unique token into `v`; returns what each write replaced.
async fn random_writer(
    url: String,
    table: String,
    center: usize,
    seed: u64,
    ops: usize,
    mix: Mix,
) -> Log {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(center as u64));
    let mut c = drc_testkit::connect(&url).await;
    let mut log = Log::new();
    let keys = 12;
    for n in 0..ops {
        let token = format!("c{center}-{n}");
        let id = rng.i32(1..=keys);
        let email = if mix.unique_values && rng.u8(0..10) < 3 {
            format!("'e{}'", rng.u8(0..4))
        } else {
            "NULL".into()
        };
        let op = rng.u8(0..if mix.deletes { 10 } else { 7 });
        if op < 3 {
            match c
                .query_drop(format!(
                    "INSERT INTO `{table}` (id, v, email) VALUES ({id}, '{token}', {email})"
                ))
                .await
            {
                Ok(()) => log.push((None, Some(token), format!("insert {id}"))),
                Err(e) if is_dup(&e) => {}
                Err(e) => panic!("insert: {e}"),
            }
            continue;
        }
        c.query_drop("START TRANSACTION").await.expect("begin");
        let prev: Option<String> = match c
            .query_first(format!(
                "SELECT v FROM `{table}` WHERE id = {id} FOR UPDATE"
            ))
            .await
        {
            Ok(p) => p,
            Err(e) if is_dup(&e) => {
                c.query_drop("ROLLBACK").await.expect("rollback");
                continue;
            }
            Err(e) => panic!("read: {e}"),
        };
        let Some(prev) = prev else {
            c.query_drop("ROLLBACK").await.expect("rollback");
            continue;
        };
        let (sql, wrote) = match op {
            3..=6 => (
                format!("UPDATE `{table}` SET v = '{token}', email = {email} WHERE id = {id}"),
                Some(token),
            ),
            7 | 8 => (format!("DELETE FROM `{table}` WHERE id = {id}"), None),
            _ => (
                format!(
                    "UPDATE `{table}` SET id = {}, v = '{token}' WHERE id = {id}",
                    rng.i32(1..=keys)
                ),
                Some(token),
            ),
        };
        match c.query_drop(&sql).await {
            Ok(()) => {
                c.query_drop("COMMIT").await.expect("commit");
                log.push((Some(prev), wrote, sql.clone()));
            }
            Err(e) if is_dup(&e) => c.query_drop("ROLLBACK").await.expect("rollback"),
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    log
}

/// Inserts, updates, deletes and primary-key changes, concurrently in all three centers, on a
/// table whose only unique key is its integer primary key (so chains fold). Runs
/// `DRC_TEST_SEEDS` seeds (default 4), or as many as fit in `DRC_TEST_BUDGET_SECS`;
/// `DRC_TEST_SEED` reruns one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_concurrent_writes_converge_and_every_loss_is_recorded() {
    randomized(
        "lwwrand",
        Mix {
            deletes: true,
            unique_values: false,
        },
    )
    .await;
}

/// Unique values too: rows of different keys that take the same email concurrently, and move
/// on (the claims on unique values, docs/conflicts.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_with_unique_values_converge() {
    randomized(
        "lwwuk",
        Mix {
            deletes: true,
            unique_values: true,
        },
    )
    .await;
}

async fn randomized(prefix: &str, mix: Mix) {
    // A time budget runs seeds until it is spent (at least one), up to `DRC_TEST_SEEDS`
    // (default 500 with a budget, 4 without).
    let budget = std::env::var("DRC_TEST_BUDGET_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("DRC_TEST_BUDGET_SECS is a number of seconds")
        })
        .map(std::time::Duration::from_secs);
    let seeds: Vec<u64> = match std::env::var("DRC_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("DRC_TEST_SEED is a number")],
        Err(_) => {
            let first = fastrand::u64(..);
            let n: u64 = std::env::var("DRC_TEST_SEEDS")
                .ok()
                .map(|s| s.parse().expect("DRC_TEST_SEEDS is a number"))
                .unwrap_or(if budget.is_some() { 500 } else { 4 });
            (0..n).map(|k| first.wrapping_add(k)).collect()
        }
    };
    let started = std::time::Instant::now();
    let tables: Vec<String> = seeds.iter().map(|s| format!("r{s}")).collect();
    // Without unique values the table has no unique key but its integer primary key: a
    // key's run of changes then folds into one dependency level (`plan::lww_levels`).
    let schema: String = tables
        .iter()
        .map(|t| match mix.unique_values {
            true => table_sql(t),
            false => table_sql(t).replace(" NULL UNIQUE,", " NULL,"),
        })
        .collect();
    let mut cl = Cluster::new(prefix, &schema, "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    for (n, (seed, table)) in seeds.iter().zip(&tables).enumerate() {
        if n > 0 && budget.is_some_and(|b| started.elapsed() > b) {
            eprintln!("randomized conflicts: time budget spent after {n} seeds");
            break;
        }
        eprintln!("randomized conflicts: seed {seed} (rerun with DRC_TEST_SEED={seed})");
        let writers = (0..3).map(|i| {
            random_writer(
                servers()[i].url_for(&cl.db),
                table.clone(),
                i,
                *seed,
                150,
                mix,
            )
        });
        let logs = futures_util::future::join_all(writers).await;
        if !cl
            .converges_within(table, std::time::Duration::from_secs(60))
            .await
        {
            let mut dump = String::new();
            for i in 0..3 {
                let mut c = cl.conn(i).await;
                let r: Vec<(i32, String, Option<String>, String)> = c
                    .query(format!(
                        "SELECT id, v, email, CAST(updated_at AS CHAR) FROM `{table}` ORDER BY id"
                    ))
                    .await
                    .expect("dump");
                dump.push_str(&format!("center {i}: {r:?}\n"));
            }
            let mut all: Vec<String> = logs
                .iter()
                .enumerate()
                .flat_map(|(i, l)| {
                    l.iter()
                        .map(move |(p, w, q)| format!("c{i}: {p:?} -> {w:?} by {q}"))
                })
                .collect();
            all.truncate(2000);
            for i in 0..3 {
                let log = cl.log(i);
                let noisy: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .take(20)
                    .collect();
                dump.push_str(&format!("log {i}:\n{}\n", noisy.join("\n")));
            }
            dump.push_str(&meta_dump(&cl, table).await);
            panic!(
                "seed {seed}: {table} did not converge (rerun with DRC_TEST_SEED={seed})\n{dump}records: {:?}\nwrites: {all:#?}",
                records(&cl, table).await
            );
        }
        // Bookkeeping: a token that no later write replaced and that is not in the final rows
        // was lost, and must be on record.
        let mut produced = HashSet::new();
        let mut replaced = HashSet::new();
        for (prev, wrote, _) in logs.iter().flatten() {
            if let Some(p) = prev {
                replaced.insert(p.clone());
            }
            if let Some(w) = wrote {
                produced.insert(w.clone());
            }
        }
        let mut a = cl.conn(0).await;
        let finals: HashSet<String> = rows(&mut a, table).await.into_iter().map(|r| r.1).collect();
        let recorded: HashSet<String> =
            records(&cl, table).await.into_iter().map(|r| r.2).collect();
        let unaccounted: Vec<&String> = produced
            .iter()
            .filter(|t| !replaced.contains(*t) && !finals.contains(*t) && !recorded.contains(*t))
            .collect();
        assert!(
            unaccounted.is_empty(),
            "seed {seed}: writes lost without a record: {unaccounted:?}"
        );
        if std::env::var_os("DRC_TEST_DUMP").is_some() {
            eprintln!("{}", meta_dump(&cl, table).await);
        }
        eprintln!(
            "seed {seed}: converged, {} writes, {} conflict records",
            produced.len(),
            recorded.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skewed_clock_changes_who_wins_but_not_convergence() {
    let mut cl = Cluster::new("lwwskew", &table_sql("s"), "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    let mut c = cl.conn(2).await;
    // Center c's writers run an hour behind.
    let skewed = "SET TIMESTAMP = UNIX_TIMESTAMP(NOW(6)) - 3600";
    a.query_drop("INSERT INTO s (id, v) VALUES (1, 'a0'), (2, 'a0')")
        .await
        .expect("seed");
    cl.wait_converged("s").await;
    // Not concurrent: c updates a row last written by a; its older version still applies
    // everywhere, because the target row is exactly the row c changed.
    c.query_drop(format!(
        "{skewed}; UPDATE s SET v = 'c1' WHERE id = 1; SET TIMESTAMP = DEFAULT"
    ))
    .await
    .expect("skewed update");
    cl.wait_converged("s").await;
    assert_eq!(rows(&mut a, "s").await[0], (1, "c1".to_string()));
    // c's own daemon saw the update lower the row's version, and says so.
    let series = format!(
        "drc_conflict_version_regressions_total{{center=\"c\",table=\"{}.s\"}} 1",
        cl.db
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = cl.metrics(2).await.unwrap_or_default();
        if m.lines().any(|l| l == series) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "c counts the version regression: {series}\n{}",
            m.lines()
                .filter(|l| l.contains("regressions"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(cl.log(2).contains("lowered its row's version"));
    // Concurrent: c writes later in real time, but its version is older, so a wins.
    for i in 0..3 {
        cl.kill9(i);
    }
    a.query_drop("UPDATE s SET v = 'a2' WHERE id = 2")
        .await
        .expect("a");
    c.query_drop(format!(
        "{skewed}; UPDATE s SET v = 'c2' WHERE id = 2; SET TIMESTAMP = DEFAULT"
    ))
    .await
    .expect("c");
    cl.start_all();
    cl.wait_converged("s").await;
    assert_eq!(
        rows(&mut a, "s").await,
        vec![(1, "c1".to_string()), (2, "a2".to_string())]
    );
    let recs = records(&cl, "s").await;
    assert!(
        recs.iter().any(|r| r.2 == "c2" && r.0 == "newer_version"),
        "the skewed center's loss is on record: {recs:?}"
    );
}

/// Every column type reads back from the target in the canonical form its binlog image has:
/// otherwise an ordinary update or delete would look like a conflict (the target row would not
/// equal the source's before image), be recorded, and a delete would be skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_column_type_compares_equal_from_binlog_and_from_select() {
    let schema = "CREATE TABLE ty (id BIGINT PRIMARY KEY, c CHAR(4), vc VARCHAR(20), l1 VARCHAR(20) CHARACTER SET latin1, \
        txt TEXT, bl BLOB, bn BINARY(4), vb VARBINARY(8), ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, \
        i INT, bi BIGINT UNSIGNED, f FLOAT, d DOUBLE, de DECIMAL(20,6), b BIT(10), y YEAR, dt DATE, \
        tm TIME(3), dtm DATETIME(6), ts TIMESTAMP(2) NULL, e ENUM('x','y'), s SET('p','q','r'), j JSON, \
        g POINT NULL, n INT NULL, \
        updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))";
    let mut cl = Cluster::new("lwwtypes", schema, "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    for k in 0..4 {
        a.query_drop(format!(
            "INSERT INTO ty (id, c, vc, l1, txt, bl, bn, vb, ti, si, mi, i, bi, f, d, de, b, y, dt, tm, dtm, ts, e, s, j, g) VALUES \
             ({k}, 'ab ', 'héllo {k} ', 'caf\\xe9', 'long ''text''', X'00ff10', X'0102', X'', -{k}, 65535, -8388608, {k}, 18446744073709551615, \
             0.1, 1.0e-300, -12345.500000, b'1010101010', 2024, '2024-02-29', '-838:59:59.999', '2024-01-02 03:04:05.000001', \
             '2038-01-19 03:14:07.99', 'y', 'p,r', '{{\"k\": [1, 2.5, null]}}', ST_GeomFromText('POINT(1 2)'))"
        ))
        .await
        .expect("insert");
    }
    cl.wait_converged("ty").await;
    // Ordinary changes in other centers: each target row is exactly the source's before image.
    let mut b = cl.conn(1).await;
    b.query_drop("UPDATE ty SET n = 1 WHERE id IN (0, 1)")
        .await
        .expect("update");
    b.query_drop("DELETE FROM ty WHERE id = 2")
        .await
        .expect("delete");
    cl.wait_converged("ty").await;
    let mut c = cl.conn(2).await;
    c.query_drop("UPDATE ty SET id = 10, n = 2 WHERE id = 3")
        .await
        .expect("key change");
    cl.wait_converged("ty").await;
    let ids: Vec<(i64, Option<i32>)> = a
        .query("SELECT id, n FROM ty ORDER BY id")
        .await
        .expect("rows");
    assert_eq!(ids, vec![(0, Some(1)), (1, Some(1)), (10, Some(2))]);
    let recs = records(&cl, "ty").await;
    assert!(
        recs.is_empty(),
        "ordinary changes were taken for conflicts: {recs:?}"
    );
}

/// A row deleted by a local writer stays deleted when an older concurrent update of it arrives
/// afterwards: the local-delete reader left a tombstone at the deleted version, and the applier
/// waits for that reader before it trusts a missing row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_delete_outranks_an_older_update_that_arrives_later() {
    let mut cl = Cluster::new("lwwtomb", &table_sql("d"), "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    let mut b = cl.conn(1).await;
    a.query_drop(format!(
        "SET TIMESTAMP = {T}; INSERT INTO d (id, v) VALUES (1, 's'), (2, 's'); SET TIMESTAMP = DEFAULT"
    ))
    .await
    .expect("seed");
    cl.wait_converged("d").await;
    for i in 0..3 {
        cl.kill9(i);
    }
    // Concurrently: b updates row 1 to version T+9 and deletes it; a updates it to T+7.
    b.query_drop(format!(
        "SET TIMESTAMP = {}; UPDATE d SET v = 'b9' WHERE id = 1; DELETE FROM d WHERE id = 1; SET TIMESTAMP = DEFAULT",
        T + 9
    ))
    .await
    .expect("b");
    a.query_drop(format!(
        "SET TIMESTAMP = {}; UPDATE d SET v = 'a7' WHERE id = 1; SET TIMESTAMP = DEFAULT",
        T + 7
    ))
    .await
    .expect("a");
    cl.start_all();
    cl.wait_converged("d").await;
    assert_eq!(rows(&mut a, "d").await, vec![(2, "s".to_string())]);
    // b's row is gone before link a->b reaches a's update, so the rows converge first: wait
    // for that link's decision (its record) with a deadline.
    let recs = records_until(&cl, "d", |r| r.1 == "tombstone_won" && r.2 == "a7").await;
    assert!(
        recs.iter().any(|r| r.1 == "tombstone_won" && r.2 == "a7"),
        "b dropped a's older update: {recs:?}"
    );
    assert_eq!(rows(&mut b, "d").await, vec![(2, "s".to_string())]);
}
