//! `drc link` against running daemons (issue #13, "link control"): pause and resume, skip one
//! transaction (recorded with its rows), set a paused link's position; each changes exactly
//! what it says, and `--dry-run` changes nothing.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::cluster::{Cluster, CONVERGE};

fn drc(cl: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    cl.drc(args)
}

/// The state `/health` of center `i` reports for `link`.
async fn state_of(cl: &Cluster, i: usize, link: &str) -> Option<String> {
    let h = cl.health(i).await?;
    h["links"]
        .as_array()?
        .iter()
        .find(|l| l["link"] == link)
        .and_then(|l| l["state"].as_str().map(str::to_string))
}

async fn wait_state(cl: &Cluster, i: usize, link: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if state_of(cl, i, link).await.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{link} never became {want}:\n{}",
            cl.log(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ids(cl: &Cluster, i: usize) -> Vec<i32> {
    let mut c = cl.conn(i).await;
    c.query("SELECT id FROM t ORDER BY id").await.expect("ids")
}

async fn wait_ids(cl: &Cluster, i: usize, want: &[i32]) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let got = ids(cl, i).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "center {i} holds {got:?}, not {want:?}:\n{}",
            cl.log(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn insert(cl: &Cluster, i: usize, ids: &[i32]) {
    let mut c = cl.conn(i).await;
    for id in ids {
        c.query_drop(format!("INSERT INTO t (id, v) VALUES ({id}, 'ok')"))
            .await
            .expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_set_position_do_exactly_what_they_say() {
    let mut cl = Cluster::new(
        "ctl",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(30))",
        "auto",
        "",
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    // A dry run changes nothing.
    let (code, out) = drc(&cl, &["link", "pause", "--link", "a->b", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("dry run"), "{out}");
    let (code, out) = drc(&cl, &["status", "--json"]);
    assert_eq!(code, Some(0), "still all running after a dry run: {out}");
    // Pause: b stops applying from a; c does not.
    let (code, out) = drc(&cl, &["link", "pause", "--link", "a->b"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("not paused -> paused"), "{out}");
    wait_state(&cl, 1, "a->b", "paused").await;
    let (code, out) = drc(&cl, &["status", "--json"]);
    assert_eq!(code, Some(2), "a paused link is not healthy: {out}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).expect("status JSON");
    assert!(
        status["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["link"] == "a->b" && l["state"] == "paused"),
        "{status}"
    );
    insert(&cl, 0, &[1, 2]).await;
    wait_ids(&cl, 2, &[1, 2]).await;
    assert_eq!(
        ids(&cl, 1).await,
        Vec::<i32>::new(),
        "paused: b applied nothing"
    );
    // set-position needs a paused link.
    let (code, out) = drc(
        &cl,
        &["link", "set-position", "--link", "a->c", "--to", "0-1-1"],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("is not paused"), "{out}");
    // Move a->b past rows 1..3: it resumes after them and gets 4 and 5 only.
    insert(&cl, 0, &[3]).await;
    let mut a = cl.conn(0).await;
    let pos: String = a
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("position")
        .expect("row");
    drop(a);
    insert(&cl, 0, &[4, 5]).await;
    let (code, out) = drc(
        &cl,
        &["link", "set-position", "--link", "a->b", "--to", &pos],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("-> {pos}")), "{out}");
    let (code, out) = drc(&cl, &["link", "resume", "--link", "a->b"]);
    assert_eq!(code, Some(0), "{out}");
    wait_state(&cl, 1, "a->b", "running").await;
    wait_ids(&cl, 1, &[4, 5]).await;
    wait_ids(&cl, 2, &[1, 2, 3, 4, 5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_transaction_is_passed_and_recorded_with_its_rows() {
    let mut cl = Cluster::new(
        "ctlskip",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(30))",
        "auto",
        "",
    )
    .await;
    // b cannot hold a's long value: link a->b stops at that transaction.
    let mut b = cl.conn(1).await;
    b.query_drop("SET SESSION sql_log_bin = 0; ALTER TABLE t MODIFY v VARCHAR(10)")
        .await
        .expect("narrow b");
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    a.query_drop("INSERT INTO t VALUES (1, 'abcdefghijklmnopqrstuvwxyz')")
        .await
        .expect("long row");
    let gtid: String = a
        .query_first("SELECT @@last_gtid")
        .await
        .expect("gtid")
        .expect("row");
    drop(a);
    insert(&cl, 0, &[2]).await;
    wait_state(&cl, 1, "a->b", "failed").await;
    let (code, out) = drc(
        &cl,
        &["link", "skip", "--link", "a->b", "--transaction", "no-gtid"],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("is not a GTID"), "{out}");
    let (code, out) = drc(
        &cl,
        &["link", "skip", "--link", "a->b", "--transaction", &gtid],
    );
    assert_eq!(code, Some(0), "{out}");
    // The link restarts (its backoff), passes the transaction (recorded with its checkpoint),
    // applies the next one.
    let meta = format!("{}_meta", cl.db);
    let query = format!(
        "SELECT CAST(skipped_at AS CHAR), row_count, content FROM `{meta}`.link_skip \
         WHERE link = 'a->b' AND gtid = ? AND skipped_at IS NOT NULL"
    );
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let (at, rows, content) = loop {
        let rec: Option<(Option<String>, Option<u64>, Option<String>)> = b
            .exec_first(query.as_str(), (&gtid,))
            .await
            .expect("record");
        if let Some(r) = rec {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the skip of {gtid} was never recorded:\n{}",
            cl.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_ids(&cl, 1, &[2]).await;
    wait_ids(&cl, 2, &[1, 2]).await;
    assert!(at.is_some());
    assert_eq!(rows, Some(1));
    assert!(
        content
            .unwrap_or_default()
            .contains("abcdefghijklmnopqrstuvwxyz"),
        "the skipped row is kept"
    );
}
