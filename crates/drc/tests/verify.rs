//! `drc verify` and `drc repair` against three real centers with running daemons: rows
//! changed, deleted and inserted in one center with `sql_log_bin = 0` (invisible to
//! replication) are found with their keys and centers, repaired (last-writer-wins tables by
//! rank, the others from `--from`), logged, and a second verify exits 0 — over composite,
//! string and binary primary keys and a wide range of column types; and, while writers run in
//! every center, verify reports nothing (randomized, seed printed).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::cluster::Cluster;

const SCHEMA: &str = "\
CREATE TABLE types (id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, \
  bi BIGINT UNSIGNED, de DECIMAL(20,6), fl FLOAT, db DOUBLE, d DATE, t TIME(3), dt DATETIME(6), \
  ts TIMESTAMP(6) NULL, y YEAR, ch CHAR(10), vc VARCHAR(50), lat VARCHAR(20) CHARACTER SET latin1, \
  tx TEXT, bl BLOB, bn BINARY(4), vb VARBINARY(20), js JSON, en ENUM('x','y','z'), st SET('p','q','r'), \
  bt BIT(10)); \
CREATE TABLE comp (a INT NOT NULL, b VARCHAR(20) NOT NULL, v INT NOT NULL, \
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
  PRIMARY KEY (a, b)); \
CREATE TABLE strk (k VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY, v TEXT); \
CREATE TABLE bink (k VARBINARY(16) PRIMARY KEY, v BLOB);";

fn drc(cluster: &Cluster, cmd: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drc"))
        .args([cmd, "--config"])
        .arg(&cluster.config)
        .args(["--progress", "quiet", "--catch-up-timeout", "20"])
        .args(extra)
        .output()
        .expect("drc runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{}", text(o)))
}

async fn fill(cluster: &Cluster) {
    let mut a = cluster.conn(0).await;
    let mut q = String::new();
    for i in 0..300 {
        let null = i % 7 == 0;
        let v = |s: String| if null { "NULL".to_string() } else { s };
        q.push_str(&format!(
            "INSERT INTO types VALUES ({i}, {ti}, {si}, {mi}, {bi}, {de}, {fl}, {dbl}, {d}, {t}, {dt}, {ts}, {y}, \
             {ch}, {vc}, {lat}, {tx}, {bl}, {bn}, {vb}, {js}, {en}, {st}, {bt});\n",
            ti = v(format!("{}", (i % 256) as i64 - 128)),
            si = v(format!("{}", i * 200)),
            mi = v(format!("-{}", i * 1000)),
            bi = v(format!("{}", u64::MAX - i as u64)),
            de = v(format!("'{}.{:06}'", i * 12345, i)),
            fl = v(format!("{}.25e-3", i)),
            dbl = v(format!("{}", 0.1 + i as f64 / 3.0)),
            d = v(format!("'20{:02}-0{}-1{}'", i % 100, 1 + i % 9, i % 10)),
            t = v(format!("'-{}:01:02.5'", i % 800)),
            dt = v(format!("'2024-02-29 23:59:{:02}.{:06}'", i % 60, i)),
            ts = v(format!("'2030-01-01 00:00:{:02}.5'", i % 60)),
            y = v(format!("{}", 1901 + i % 254)),
            // '' and NULL both occur: they must differ.
            ch = if i % 7 == 1 { "''".to_string() } else { v(format!("'c{i}'")) },
            vc = v(format!("'v#{i}#'")),
            lat = v("_latin1 X'E9E8'".to_string()),
            tx = v(format!("REPEAT('t{i}', 50)")),
            bl = v(format!("X'00FF{:04X}00'", i)),
            bn = v(format!("X'{:02X}00'", i % 256)),
            vb = v(format!("X'{:04X}'", i)),
            js = v(format!("'{{\"k\": {i}, \"s\": \"x\"}}'")),
            en = v("'y'".to_string()),
            st = v("'p,r'".to_string()),
            bt = v(format!("b'{:b}'", i % 1024)),
        ));
    }
    for i in 0..200 {
        q.push_str(&format!(
            "INSERT INTO comp (a, b, v) VALUES ({}, 'k{}', {i});\n\
             INSERT INTO strk VALUES ('ключ-{i}', 'v{i}');\n\
             INSERT INTO bink VALUES (X'{:08X}00FF', REPEAT('b', {i}));\n",
            i % 10,
            i,
            i * 7919
        ));
    }
    a.query_drop(q).await.expect("fill");
}

#[tokio::test(flavor = "multi_thread")]
async fn finds_reports_and_repairs_rows_changed_invisibly() {
    let mut cluster = Cluster::new("verify_repair", SCHEMA, "server_id", "").await;
    cluster.start_all();
    cluster.wait_running().await;
    fill(&cluster).await;
    for t in ["types", "comp", "strk", "bink"] {
        cluster.wait_converged(t).await;
    }
    let o = drc(&cluster, "verify", &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json(&o);
    assert_eq!(r["rows"], 300 + 600, "{}", text(&o));
    // A value with the separator in it, replicated: the row text of ('ключ-6', '#x') would be
    // the same as that of ('ключ-6#', 'x') without the length of the key.
    cluster
        .conn(0)
        .await
        .query_drop("UPDATE strk SET v = '#x' WHERE k = 'ключ-6'")
        .await
        .expect("update in a");
    cluster.wait_converged("strk").await;

    // Invisible changes: b updates, deletes and inserts; c changes a string and a binary key,
    // and moves the separator from a value into a key.
    let mut b = cluster.conn(1).await;
    b.query_drop(
        "SET SESSION sql_log_bin = 0; \
         UPDATE types SET de = de + 1, ch = NULL WHERE id = 43; \
         UPDATE types SET ch = '' WHERE id = 7; \
         DELETE FROM types WHERE id = 100; \
         INSERT INTO types (id) VALUES (1000); \
         UPDATE comp SET v = -1 WHERE a = 3 AND b = 'k13'; \
         DELETE FROM comp WHERE a = 5 AND b = 'k15';",
    )
    .await
    .expect("changes in b");
    let mut c = cluster.conn(2).await;
    c.query_drop(
        "SET SESSION sql_log_bin = 0; \
         UPDATE strk SET v = 'changed' WHERE k = 'ключ-5'; \
         DELETE FROM bink WHERE k = X'0000F77800FF'; \
         DELETE FROM strk WHERE k = 'ключ-6'; \
         INSERT INTO strk VALUES ('ключ-6#', 'x');",
    )
    .await
    .expect("changes in c");

    let o = drc(&cluster, "verify", &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = json(&o);
    let diffs = r["differences"].as_array().expect("differences");
    let found: Vec<(String, String, Vec<String>, bool)> = diffs
        .iter()
        .map(|d| {
            (
                d["table"].as_str().unwrap_or_default().to_string(),
                d["key"].to_string(),
                d["centers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| c.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
                d["confirmed"] == true,
            )
        })
        .collect();
    let db = &cluster.db;
    let expect = [
        (format!("{db}.types"), r#"{"id":43}"#, "b"),
        (format!("{db}.types"), r#"{"id":7}"#, "b"),
        (format!("{db}.types"), r#"{"id":100}"#, "b"),
        (format!("{db}.types"), r#"{"id":1000}"#, "b"),
        (format!("{db}.comp"), r#"{"a":3,"b":"k13"}"#, "b"),
        (format!("{db}.comp"), r#"{"a":5,"b":"k15"}"#, "b"),
        (format!("{db}.strk"), r#"{"k":"ключ-5"}"#, "c"),
        (format!("{db}.strk"), r#"{"k":"ключ-6"}"#, "c"),
        (format!("{db}.strk"), r#"{"k":"ключ-6#"}"#, "c"),
        (format!("{db}.bink"), r#"{"k":{"hex":"0000f77800ff"}}"#, "c"),
    ];
    assert_eq!(found.len(), expect.len(), "{}", text(&o));
    for (table, key, center) in &expect {
        assert!(
            found
                .iter()
                .any(|f| &f.0 == table && f.1 == *key && f.2 == vec![center.to_string()] && f.3),
            "{table} {key} in {center} not reported\n{}",
            text(&o)
        );
    }
    // Each side's values: NULL and '' are told apart.
    let d7 = diffs
        .iter()
        .find(|d| d["key"]["id"] == 7)
        .expect("id 7 reported");
    assert_eq!(d7["rows"]["a"]["ch"], serde_json::Value::Null, "{d7}");
    assert_eq!(d7["rows"]["b"]["ch"], "", "{d7}");
    let d100 = diffs
        .iter()
        .find(|d| d["key"]["id"] == 100)
        .expect("id 100 reported");
    assert_eq!(d100["rows"]["b"], serde_json::Value::Null, "{d100}");

    // Tables without a version column need --from; it names them.
    let o = drc(&cluster, "repair", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for t in ["types", "strk", "bink"] {
        assert!(err.contains(&format!("{db}.{t}")), "{}", text(&o));
    }
    assert!(!err.contains(&format!("{db}.comp")), "{}", text(&o));

    // The dry run prints each center's statements and writes nothing.
    let o = drc(&cluster, "repair", &["--from", "a", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("-- center b") && out.contains("-- center c"),
        "{}",
        text(&o)
    );
    assert!(
        out.contains("REPLACE INTO") && out.contains("DELETE FROM"),
        "{}",
        text(&o)
    );
    let o = drc(&cluster, "verify", &["--json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the dry run wrote nothing\n{}",
        text(&o)
    );

    let o = drc(&cluster, "repair", &["--from", "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Last-writer-wins: b's update of comp (3, k13) is the newest version, so it won
    // everywhere; b's invisible delete of (5, k15) lost to the row the others hold.
    for i in 0..3 {
        let mut conn = cluster.conn(i).await;
        let v: Option<i64> = conn
            .query_first("SELECT v FROM comp WHERE a = 3 AND b = 'k13'")
            .await
            .expect("read");
        assert_eq!(v, Some(-1), "center {i}");
        let n: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM comp WHERE a = 5 AND b = 'k15'")
            .await
            .expect("read");
        assert_eq!(n, Some(1), "center {i}");
        let n: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM types WHERE id = 1000")
            .await
            .expect("read");
        assert_eq!(n, Some(0), "--from a deleted b's extra row, center {i}");
    }
    // Every repaired key is logged in the center it was written in.
    let mut b = cluster.conn(1).await;
    let logged: Vec<(String, String, String)> = b
        .query(format!(
            "SELECT db_table, action, rule FROM `{db}_meta`.`repair` ORDER BY id"
        ))
        .await
        .expect("repair log");
    // In b: types 43, 7, 100 (upserts) and 1000 (delete); comp (5, k15) re-inserted (b's
    // (3, k13) won, so it was written in a and c).
    assert_eq!(logged.len(), 5, "{logged:?}");
    assert!(logged.contains(&(format!("{db}.types"), "delete".into(), "from".into())));
    assert!(logged.contains(&(
        format!("{db}.comp"),
        "upsert".into(),
        "last_writer_wins".into()
    )));
    let o = drc(&cluster, "verify", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for t in ["types", "comp", "strk", "bink"] {
        assert!(
            cluster.converges_within(t, Duration::from_secs(10)).await,
            "{t} equal everywhere after the repair"
        );
    }
}

fn seed() -> u64 {
    std::env::var("DRC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_nothing_while_writers_run_in_every_center() {
    let seed = seed();
    println!("seed {seed} (rerun with DRC_TEST_SEED={seed})");
    let schema = "CREATE TABLE own (id BIGINT PRIMARY KEY, k INT NOT NULL, c VARCHAR(60) NOT NULL); \
        CREATE TABLE shared (id INT PRIMARY KEY, v INT NOT NULL, \
        updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));";
    let mut cluster = Cluster::new("verify_busy", schema, "server_id", "").await;
    cluster.start_all();
    cluster.wait_running().await;
    let mut a = cluster.conn(0).await;
    let mut q = String::new();
    for i in 0..100 {
        q.push_str(&format!("INSERT INTO shared (id, v) VALUES ({i}, 0);"));
    }
    for i in 0..3000 {
        q.push_str(&format!(
            "INSERT INTO own VALUES ({}, {i}, 'seed row');",
            (i % 3) * 1_000_000 + i
        ));
    }
    a.query_drop(q).await.expect("fill");
    cluster.wait_converged("own").await;
    cluster.wait_converged("shared").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let mut conn = cluster.conn(i).await;
        let stop = stop.clone();
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(i as u64));
        tasks.push(tokio::spawn(async move {
            let base = i as i64 * 1_000_000;
            let mut next = base + 500_000;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Center closure: each center writes its own rows of `own`; `shared` rows are
                // written in every center (last-writer-wins conflicts).
                let q = match rng.u8(0..4) {
                    0 => {
                        next += 1;
                        format!("INSERT INTO own VALUES ({next}, {}, 'new')", rng.i32(..))
                    }
                    1 => format!(
                        "UPDATE own SET k = k + 1, c = 'upd {}' WHERE id = {}",
                        rng.u32(..),
                        base + rng.i64(0..3000)
                    ),
                    2 => format!("DELETE FROM own WHERE id = {}", base + rng.i64(0..3000)),
                    _ => format!(
                        "UPDATE shared SET v = {} WHERE id = {}",
                        rng.i32(..),
                        rng.u32(0..100)
                    ),
                };
                conn.query_drop(q).await.expect("write");
                n += 1;
                // A paced writer (about 200 writes/s per center), not a wait on a condition.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        }));
    }
    let mut rechecked = 0;
    for round in 0..3 {
        let o = drc(&cluster, "verify", &["--json", "--tries", "8"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "seed {seed}, round {round}: verify reported differences while writers run\n{}",
            text(&o)
        );
        let r = json(&o);
        assert!(r["rows"].as_u64().unwrap_or(0) >= 3000, "{}", text(&o));
        rechecked += r["rechecked_chunks"].as_u64().unwrap_or(0);
    }
    // How many chunks differed at their first read (changes in flight) and agreed after
    // catching up; it depends on timing, so it is printed, not asserted.
    println!("seed {seed}: {rechecked} chunks were in flight and compared again");
    stop.store(true, Ordering::Relaxed);
    let mut writes = 0;
    for t in tasks {
        writes += t.await.expect("writer");
    }
    println!("seed {seed}: {writes} writes");
    assert!(writes > 0);
    cluster.wait_converged("own").await;
    cluster.wait_converged("shared").await;
    let o = drc(&cluster, "verify", &[]);
    assert_eq!(o.status.code(), Some(0), "seed {seed}\n{}", text(&o));
}
