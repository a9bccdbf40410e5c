//! `drc bootstrap` against three real centers: a third center filled from a live one while
//! writers run in the other two (last-writer-wins conflicts included), then its daemon started:
//! every center ends identical and the new center's writes reach the others; a bootstrap
//! SIGKILLed half way and resumed; and bad input refused with clear errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::cluster::{Cluster, CONVERGE};

const SCHEMA: &str = "CREATE TABLE sb (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, \
     pad CHAR(60) NOT NULL, KEY k (k)); \
     CREATE TABLE lww (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40) CHARACTER SET latin1, \
     d DOUBLE, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));";

fn bootstrap_cmd(cluster: &Cluster, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drc"));
    cmd.args(["bootstrap", "--config"])
        .arg(&cluster.config)
        .args(["--progress", "plain", "--log", "info"])
        .args(extra);
    cmd
}

fn run_bootstrap(cluster: &Cluster, extra: &[&str]) -> Output {
    bootstrap_cmd(cluster, extra)
        .output()
        .expect("drc bootstrap runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Drops center c's tables, so the bootstrap creates them (before any daemon reads c's binlog).
async fn empty_c(cluster: &Cluster) {
    let mut c = cluster.conn(2).await;
    c.query_drop("DROP TABLE sb, lww").await.expect("drop in c");
}

/// Writers in centers a and b until `stop`: inserts of new rows, updates of existing ones in
/// `sb`, and updates of the same `lww` rows in both centers (conflicts).
async fn writers(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
    base: i64,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let mut conns = Vec::new();
    for i in 0..2 {
        conns.push(cluster.conn(i).await);
    }
    conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n: u64 = 0;
                let mut next = base + i as i64 * 10_000_000;
                while !stop.load(Ordering::Relaxed) {
                    next += 1;
                    let q = format!(
                        "INSERT INTO sb VALUES ({next}, {k}, REPEAT('w', 120), 'p'); \
                         UPDATE sb SET k = k + 1 WHERE id = {u}; \
                         UPDATE lww SET v = v + 1, note = _latin1 X'E9', d = d / 3 WHERE id = {l}",
                        k = n % 100,
                        // sb is source-wins: the centers update disjoint rows (odd in a, even
                        // in b), since concurrent updates of one row converge only under
                        // last-writer-wins (lww).
                        u = 2 * (n % 1000) + 1 + i as u64,
                        l = 1 + n % 20,
                    );
                    c.query_drop(q).await.expect("writer");
                    n += 1;
                }
                n
            })
        })
        .collect()
}

async fn seed(cluster: &Cluster, rows: u64) {
    let mut a = cluster.conn(0).await;
    a.query_drop(format!(
        "INSERT INTO sb SELECT seq, seq % 1000, REPEAT(CHAR(65 + seq % 26), 120), REPEAT('p', 60) FROM seq_1_to_{rows}; \
         INSERT INTO lww (id, v, note, d) SELECT seq, 0, 'x', 0.1 + 0.2 FROM seq_1_to_20"
    ))
    .await
    .expect("seed");
}

async fn count(cluster: &Cluster, i: usize, table: &str) -> u64 {
    let mut c = cluster.conn(i).await;
    c.query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .expect("count")
        .expect("row")
}

/// Waits until center b holds `n` rows of `table` (replicated from a).
async fn wait_count(cluster: &Cluster, i: usize, table: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while count(cluster, i, table).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{table} reaches {n} rows in center {i}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until center `i` holds at most `n` rows of `table`.
async fn wait_count_at_most(cluster: &Cluster, i: usize, table: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while count(cluster, i, table).await > n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{table} falls to {n} rows in center {i}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Then c's own writes reach a and b.
async fn c_writes_reach_the_others(cluster: &Cluster) {
    let mut c = cluster.conn(2).await;
    c.query_drop(
        "INSERT INTO sb VALUES (999999999, 1, 'from c', 'p'); UPDATE lww SET v = 1000 WHERE id = 1",
    )
    .await
    .expect("write in c");
    let deadline = tokio::time::Instant::now() + CONVERGE;
    for i in 0..2 {
        loop {
            let mut x = cluster.conn(i).await;
            let got: Option<String> = x
                .query_first("SELECT c FROM sb WHERE id = 999999999")
                .await
                .expect("read");
            if got.as_deref() == Some("from c") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "c's write reaches center {i}\n--- center {i}'s daemon:\n{}\n--- c's daemon:\n{}",
                cluster.log(i),
                cluster.log(2)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.wait_converged("sb").await;
    cluster.wait_converged("lww").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_a_third_center_while_the_others_take_writes() {
    third_center_under_load("auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_tagged_with_marker_rows() {
    third_center_under_load("marker").await;
}

async fn third_center_under_load(loopback: &str) {
    let mut cluster = Cluster::new("boot", SCHEMA, loopback, "").await;
    empty_c(&cluster).await;
    cluster.start(0);
    cluster.start(1);
    cluster.wait_center_running(0).await;
    cluster.wait_center_running(1).await;
    seed(&cluster, 20_000).await;
    wait_count(&cluster, 1, "sb", 20_000).await;
    // Deleted rows of a last-writer-wins table leave tombstones in a, which c must get.
    let mut a = cluster.conn(0).await;
    a.query_drop("INSERT INTO lww (id, v) SELECT seq, 0 FROM seq_21_to_30")
        .await
        .expect("lww rows to delete");
    wait_count(&cluster, 1, "lww", 30).await;
    a.query_drop("DELETE FROM lww WHERE id > 20")
        .await
        .expect("delete");
    wait_count_at_most(&cluster, 1, "lww", 20).await;
    // As docs/operations.md's "Adding a center" has it, the peers' links from c must not run
    // through the bootstrap: started with `--start now` while c was empty, link c->a would hold
    // its old position in memory and write it back over the bootstrap's checkpoint (seen on a
    // slow machine: it then stopped at the bootstrap's CREATE TABLE forever). So a's and b's
    // daemons stop for the bootstrap and start again after it, reading the new checkpoints.
    // They stop while the links are idle, so no batch is left committed by some workers only
    // (the bootstrap would wait for it); the writers then write into a and b throughout.
    cluster.kill9(0);
    cluster.kill9(1);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&cluster, stop.clone(), 100_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = tokio::task::spawn_blocking({
        let cmd = bootstrap_cmd(
            &cluster,
            &["--center", "c", "--from", "a", "--chunk-rows", "1000"],
        );
        move || {
            let mut cmd = cmd;
            cmd.output().expect("drc bootstrap runs")
        }
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created tables:"), "{}", text(&out));
    assert!(stdout.contains("link a->c starts at"), "{}", text(&out));
    assert!(stdout.contains("link b->c starts at"), "{}", text(&out));
    assert!(stdout.contains("link c->a starts at"), "{}", text(&out));
    assert!(stdout.contains("link c->b starts at"), "{}", text(&out));
    let mut c = cluster.conn(2).await;
    let stones: Option<u64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM `{}_meta`.tombstone WHERE db_table = '{}.lww'",
            cluster.db, cluster.db
        ))
        .await
        .expect("tombstones");
    assert!(
        stones >= Some(10),
        "{stones:?} tombstones copied\n{}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tag = if loopback == "marker" {
        "Marker"
    } else {
        "ServerId"
    };
    assert!(stderr.contains(&format!("tag={tag}")), "{}", text(&out));
    cluster.start(0);
    cluster.start(1);
    cluster.wait_center_running(0).await;
    cluster.wait_center_running(1).await;
    // Writers go on while c's daemon starts.
    cluster.start(2);
    cluster.wait_center_running(2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for t in tasks {
        written += t.await.expect("writer");
    }
    assert!(written > 0);
    let rows = cluster.wait_converged("sb").await;
    assert!(rows >= 20_000, "{rows}");
    cluster.wait_converged("lww").await;
    c_writes_reach_the_others(&cluster).await;
    // Nothing of the state is left.
    let mut c = cluster.conn(2).await;
    let left: Option<u64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM `{}_meta`.bootstrap",
            cluster.db
        ))
        .await
        .expect("state");
    assert_eq!(left, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_bootstrap_resumes() {
    killed_and_resumed(false).await;
}

/// With a table that has a secondary unique key not yet copied, the resumed run copies every
/// table again from its new snapshot (replaying from the first snapshot could collide).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_bootstrap_with_a_unique_key_table_starts_over() {
    killed_and_resumed(true).await;
}

async fn killed_and_resumed(unique: bool) {
    let schema = if unique {
        format!("{SCHEMA} CREATE TABLE zuq (id INT PRIMARY KEY, email VARCHAR(40) NOT NULL, UNIQUE KEY email (email));")
    } else {
        SCHEMA.to_string()
    };
    let mut cluster = Cluster::new("bootkill", &schema, "auto", "").await;
    empty_c(&cluster).await;
    if unique {
        let mut c = cluster.conn(2).await;
        c.query_drop("DROP TABLE zuq").await.expect("drop in c");
    }
    cluster.start(0);
    cluster.start(1);
    cluster.wait_center_running(0).await;
    cluster.wait_center_running(1).await;
    seed(&cluster, 200_000).await;
    if unique {
        // Written once the links run, so that b gets them too.
        let mut a = cluster.conn(0).await;
        a.query_drop("INSERT INTO zuq SELECT seq, CONCAT('u', seq, '@x') FROM seq_1_to_100")
            .await
            .expect("zuq");
        wait_count(&cluster, 1, "zuq", 100).await;
    }
    wait_count(&cluster, 1, "sb", 200_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&cluster, stop.clone(), 1_000_000).await;
    // SIGKILL after the first progress line past the small table (`lww` is copied first).
    let mut child = bootstrap_cmd(
        &cluster,
        &[
            "--center",
            "c",
            "--from",
            "a",
            "--chunk-rows",
            "500",
            "--writers",
            "2",
            "--progress-interval",
            "0.3",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let first = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.expect("line");
            let progress = line
                .split(": ")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 20_000);
            lines.push(line);
            if progress {
                break;
            }
        }
        lines
    })
    .await
    .expect("join");
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "killed before the end: {first:?}");
    let copied = count(&cluster, 2, "sb").await;
    assert!(
        copied > 0 && copied < 200_000,
        "half way: {copied} rows\n{first:?}"
    );
    let mut c = cluster.conn(2).await;
    let stored: Option<u64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM `{}_meta`.bootstrap WHERE kind = 'table' AND last_key IS NOT NULL",
            cluster.db
        ))
        .await
        .expect("state");
    assert_eq!(stored, Some(1), "{first:?}");
    // A new run without the flags a fresh one needs continues.
    let out = tokio::task::spawn_blocking({
        let cmd = bootstrap_cmd(&cluster, &["--center", "c", "--from", "a"]);
        move || {
            let mut cmd = cmd;
            cmd.output().expect("drc bootstrap runs")
        }
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(resumed)"),
        "{}",
        text(&out)
    );
    cluster.start(2);
    cluster.wait_center_running(2).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    cluster.wait_converged("sb").await;
    cluster.wait_converged("lww").await;
    if unique {
        assert_eq!(cluster.wait_converged("zuq").await, 100);
    }
    c_writes_reach_the_others(&cluster).await;
}

fn expect_err(cluster: &Cluster, args: &[&str], needle: &str) {
    let out = run_bootstrap(cluster, args);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "wanted {needle:?}\n{}", text(&out));
    assert!(!err.contains("panicked"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly() {
    let mut cluster = Cluster::new(
        "bootbad",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); CREATE TABLE nopk (v INT);",
        "auto",
        "",
    )
    .await;
    expect_err(
        &cluster,
        &["--center", "zz", "--from", "a"],
        "unknown center zz",
    );
    expect_err(&cluster, &["--center", "c", "--from", "c"], "both name c");
    expect_err(
        &cluster,
        &["--center", "c", "--from", "a"],
        "have no primary key",
    );
    // An unreachable center (nothing listens on port 1).
    let toml = std::fs::read_to_string(&cluster.config).expect("config");
    let mut n = 0;
    let broken: String = toml
        .lines()
        .map(|l| {
            if l.starts_with("mysql = ") {
                n += 1;
                if n == 3 {
                    return "mysql = \"mysql://root@127.0.0.1:1\"".to_string();
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = cluster.config.with_file_name("unreachable.toml");
    std::fs::write(&path, broken).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["bootstrap", "--config"])
        .arg(&path)
        .args(["--center", "c", "--from", "a"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("center c: cannot connect"),
        "{}",
        text(&out)
    );
    let mut a = cluster.conn(0).await;
    a.query_drop("DROP TABLE nopk").await.expect("drop");
    let mut c = cluster.conn(2).await;
    c.query_drop("INSERT INTO t VALUES (1, 1)")
        .await
        .expect("row in c");
    // A has no checkpoint of b->a yet (its daemon never ran): but the non-empty table is found
    // first.
    expect_err(
        &cluster,
        &["--center", "c", "--from", "a"],
        "already hold rows",
    );
    expect_err(
        &cluster,
        &["--center", "c", "--from", "a", "--truncate"],
        "no checkpoint of link b->a",
    );
    expect_err(
        &cluster,
        &["--center", "c", "--from", "a", "--restart"],
        "no bootstrap of center c is under way",
    );
    cluster.start(0);
    cluster.wait_center_running(0).await;
    let out = run_bootstrap(&cluster, &["--center", "c", "--from", "a", "--truncate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&cluster, 2, "t").await, 0);
    // A center whose daemon runs is refused.
    cluster.start(2);
    cluster.wait_center_running(2).await;
    expect_err(
        &cluster,
        &["--center", "c", "--from", "a"],
        "the daemon of center c is running",
    );
}
