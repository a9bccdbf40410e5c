//! DDL from a peer (config `[ddl]`): with the default mode a TRUNCATE stops the link at the
//! statement, visibly, and after a restart again; `drc ddl skip` lets it pass; an `ignore`
//! override passes its tables' DDL; `replicate` mode applies ALTER and CREATE TABLE in every
//! center without loops.

use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::cluster::{Cluster, CONVERGE};

/// Waits until center `i`'s daemon reports `link` failed, and returns the error.
async fn link_error(cl: &Cluster, i: usize, link: &str) -> String {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let h = cl.health(i).await.unwrap_or_default();
        let err = h["links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["link"] == link))
            .and_then(|l| l["error"].as_str().map(str::to_string));
        if let Some(e) = err {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "link {link} did not stop: {h}\n{}",
            cl.log(i)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `--position` in a link's error.
fn position_of(error: &str) -> String {
    let at = error
        .find("--position ")
        .expect("the error names the position")
        + 11;
    error[at..]
        .split_whitespace()
        .next()
        .expect("position")
        .to_string()
}

async fn ids(cl: &Cluster, i: usize, table: &str) -> Vec<i64> {
    cl.conn(i)
        .await
        .query(format!("SELECT id FROM {table} ORDER BY id"))
        .await
        .expect("ids")
}

/// Waits until center `i`'s `table` holds `want` (ids).
async fn wait_ids(cl: &Cluster, i: usize, table: &str, want: &[i64]) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let got = ids(cl, i, table).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "center {i} {table}: {got:?}, want {want:?}\n{}",
            cl.log(i)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn drc(args: &[&str], config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("drc runs")
}

#[tokio::test]
async fn truncate_stops_the_link_until_skipped_and_ignore_overrides_pass() {
    let schema = "CREATE TABLE t (id INT PRIMARY KEY, v INT); \
                  CREATE TABLE audit_1 (id INT PRIMARY KEY, v INT)";
    let mut cl = Cluster::new(
        "ddl_stop",
        schema,
        "auto",
        "[ddl.tables]\n\"*.audit_*\" = \"ignore\"\n",
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    a.query_drop("INSERT INTO t VALUES (1, 1), (2, 2)")
        .await
        .expect("seed");
    // An ignored table's DDL passes: the links keep running and later rows arrive.
    a.query_drop("ALTER TABLE audit_1 ADD INDEX v (v); INSERT INTO t VALUES (3, 3)")
        .await
        .expect("ignored ddl");
    for i in 1..3 {
        wait_ids(&cl, i, "t", &[1, 2, 3]).await;
        let idx: Option<u64> = cl
            .conn(i)
            .await
            .query_first("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'audit_1' AND INDEX_NAME = 'v'")
            .await
            .expect("index");
        assert_eq!(idx, Some(0), "the ignored ALTER was not replicated");
    }
    // A row right before the TRUNCATE arrives; the TRUNCATE does not.
    a.query_drop("INSERT INTO t VALUES (4, 4); TRUNCATE TABLE t")
        .await
        .expect("truncate");
    let err = link_error(&cl, 1, "a->b").await;
    assert!(
        err.contains("a->b")
            && err.contains("TRUNCATE TABLE t")
            && err.contains(&format!("{}.t", cl.db)),
        "{err}"
    );
    assert!(err.contains("drc ddl skip"), "{err}");
    let position = position_of(&err);
    wait_ids(&cl, 1, "t", &[1, 2, 3, 4]).await;
    // `drc status` shows the failure and exits non-zero.
    let status = drc(&["status"], &cl.config);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(!status.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("a->b") && l.contains("failed") && l.contains("TRUNCATE")),
        "{out}"
    );
    // After a restart the link stops at the same statement again.
    cl.kill9(1);
    cl.start(1);
    let again = link_error(&cl, 1, "a->b").await;
    assert_eq!(position_of(&again), position, "{again}");
    // Later rows wait behind the DDL.
    a.query_drop("INSERT INTO t VALUES (5, 5)")
        .await
        .expect("later row");
    assert_eq!(ids(&cl, 1, "t").await, [1, 2, 3, 4]);
    // The operator acknowledges the DDL on both links; they pass it and the later row arrives.
    for link in ["a->b", "a->c"] {
        let out = drc(
            &["ddl", "skip", "--link", link, "--position", &position],
            &cl.config,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 1..3 {
        wait_ids(&cl, i, "t", &[1, 2, 3, 4, 5]).await;
    }
    assert_eq!(ids(&cl, 0, "t").await, [5]);
    cl.wait_running().await;
    let recorded: Option<String> = cl
        .conn(1)
        .await
        .exec_first(
            format!(
                "SELECT `statement` FROM `{}_meta`.`ddl_skip` WHERE `link` = 'a->b'",
                cl.db
            ),
            (),
        )
        .await
        .expect("ddl_skip");
    assert_eq!(recorded.as_deref(), Some("TRUNCATE TABLE t"));
}

#[tokio::test]
async fn replicate_mode_applies_alter_and_create_everywhere_without_loops() {
    let schema = "CREATE TABLE t (id INT PRIMARY KEY, v INT)";
    let mut cl = Cluster::new(
        "ddl_repl",
        schema,
        "server_id",
        "[ddl]\nmode = \"replicate\"\n",
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    a.query_drop("INSERT INTO t VALUES (1, 1)")
        .await
        .expect("seed");
    a.query_drop("ALTER TABLE t ADD COLUMN extra INT")
        .await
        .expect("alter");
    a.query_drop("CREATE TABLE n (id INT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    a.query_drop("INSERT INTO t VALUES (2, 2, 7); INSERT INTO n VALUES (1, 9)")
        .await
        .expect("rows with the new column");
    // b and c converge with a, on the new column and the new table.
    assert_eq!(cl.wait_converged("t").await, 2);
    assert_eq!(cl.wait_converged("n").await, 1);
    for i in 0..3 {
        let extra: Vec<(i64, Option<i64>)> = cl
            .conn(i)
            .await
            .query("SELECT id, extra FROM t ORDER BY id")
            .await
            .expect("extra");
        assert_eq!(extra, [(1, None), (2, Some(7))], "center {i}");
    }
    // Writes in b and c use the column too, and every link still runs: a DDL that came back
    // would have failed ("Duplicate column") in some center.
    cl.conn(1)
        .await
        .query_drop("INSERT INTO t VALUES (3, 3, 8)")
        .await
        .expect("b writes");
    cl.conn(2)
        .await
        .query_drop("INSERT INTO n VALUES (2, 10)")
        .await
        .expect("c writes");
    assert_eq!(cl.wait_converged("t").await, 3);
    assert_eq!(cl.wait_converged("n").await, 2);
    cl.wait_running().await;
    for i in 0..3 {
        let log = cl.log(i);
        assert!(!log.contains("refused the DDL"), "center {i}:\n{log}");
        assert!(!log.contains("Duplicate column"), "center {i}:\n{log}");
    }
}
