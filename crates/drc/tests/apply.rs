//! The rewrite against real servers (upsert of a missing row, delete of a missing row, a child
//! row before its parent), the loopback default without the privilege, and what `/metrics`,
//! `/health` and `drc status` show.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::cluster::{servers, Cluster, CONVERGE, NAMES};

#[tokio::test]
async fn updates_of_missing_rows_insert_them_and_deletes_of_missing_rows_are_fine() {
    let schema = "CREATE TABLE parent (id INT PRIMARY KEY); \
        CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, \
          FOREIGN KEY (parent_id) REFERENCES parent (id)); \
        CREATE TABLE r (id INT PRIMARY KEY, v VARCHAR(10))";
    let mut cl = Cluster::new(
        "rewrite",
        schema,
        "auto",
        "[applier]\nparallelism = 4\nshare_rows = 1\nbatch_delay_ms = 300\n",
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    a.query_drop("INSERT INTO r VALUES (1, 'one'), (2, 'two')")
        .await
        .expect("seed");
    cl.wait_converged("r").await;
    // Center b loses row 1 and row 2 behind drc's back (sql_log_bin=0: not replicated).
    let mut b = cl.conn(1).await;
    b.query_drop("SET SESSION sql_log_bin = 0; DELETE FROM r; SET SESSION sql_log_bin = 1")
        .await
        .expect("local delete");
    // An update of the row b lacks inserts it there; a delete of the row b lacks is fine.
    a.query_drop("UPDATE r SET v = 'uno' WHERE id = 1; DELETE FROM r WHERE id = 2")
        .await
        .expect("writes");
    // Parent and child in one source transaction: applied in parallel shares, the child may
    // land first; foreign_key_checks=0 on the appliers lets it.
    a.query_drop(
        "START TRANSACTION; INSERT INTO parent SELECT seq FROM seq_1_to_50; \
         INSERT INTO child SELECT seq, seq FROM seq_1_to_50; COMMIT",
    )
    .await
    .expect("parent and child");
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let rows: Vec<(i32, String)> = b.query("SELECT id, v FROM r").await.expect("select");
        if rows == vec![(1, "uno".to_string())] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b has {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cl.wait_converged("child").await, 50);
    assert_eq!(cl.wait_converged("parent").await, 50);
    for (i, name) in NAMES.iter().enumerate() {
        let h = cl.health(i).await.expect("health");
        assert_eq!(h["ok"], true, "center {name}: {h}");
    }
}

#[tokio::test]
async fn auto_loopback_uses_markers_when_server_id_may_not_be_set() {
    let user = drc_testkit::unique_db_name("nosuper");
    for s in servers() {
        let mut c = drc_testkit::connect(&s.url()).await;
        c.query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, \
               REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'"
        ))
        .await
        .expect("user");
    }
    let schema = "CREATE TABLE t (id INT PRIMARY KEY, v INT)";
    let mut cl = Cluster::new("automarker", schema, "auto", "").await;
    // Rewrite the topology to connect as the restricted user.
    let text = std::fs::read_to_string(&cl.config).expect("config");
    let text = text.replace("mysql://root@", &format!("mysql://{user}:pw@"));
    std::fs::write(&cl.config, text).expect("config");
    cl.start_all();
    cl.wait_running().await;
    for (i, s) in servers().iter().enumerate() {
        let mut c = drc_testkit::connect(&s.url_for(&cl.db)).await;
        c.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .expect("insert");
    }
    assert_eq!(cl.wait_converged("t").await, 3);
    // The markers prove which strategy ran: center a holds rows of each peer origin (one per
    // link worker).
    let mut a = drc_testkit::connect(&servers()[0].url()).await;
    let origins: Vec<String> = a
        .query(format!(
            "SELECT DISTINCT origin FROM `{}_meta`.origin ORDER BY origin",
            cl.db
        ))
        .await
        .expect("markers");
    assert_eq!(origins, ["b", "c"]);
    assert!(!cl.log(0).contains(":pw@"), "no password in logs");
}

#[tokio::test]
async fn metrics_health_and_status_show_every_link() {
    let schema = "CREATE TABLE t (id INT PRIMARY KEY)";
    let mut cl = Cluster::new(
        "observe",
        schema,
        "auto",
        "[heartbeat]\ninterval_ms = 200\n",
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    a.query_drop("INSERT INTO t SELECT seq FROM seq_1_to_25")
        .await
        .expect("insert");
    cl.wait_converged("t").await;
    // /metrics on b counts the 25 inserts of link a->b and shows a lag for each link.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let metrics = loop {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", cl.ports[1]))
            .await
            .expect("metrics port");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let mut body = String::new();
        s.read_to_string(&mut body).await.expect("response");
        if body.contains("drc_link_lag_seconds{link=\"c->b\"}") {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The 25 rows of t, and a's heartbeat row when a's daemon first wrote it after the
    // position b's link started from (it is replicated like any row; later beats are updates).
    let inserts = metrics
        .lines()
        .find_map(|l| l.strip_prefix("drc_apply_rows_total{kind=\"insert\",link=\"a->b\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(matches!(inserts, Some(25 | 26)), "{metrics}");
    assert!(
        metrics.contains("drc_link_up{link=\"a->b\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drc_link_lag_seconds{link=\"a->b\"}"),
        "{metrics}"
    );
    // drc status: six links, all running, each with a position and a lag (a lag appears with
    // the first heartbeat measured after start: wait for it with a deadline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (out, text) = loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(["status", "--config"])
            .arg(&cl.config)
            .output()
            .expect("drc status");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lagged = text
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .all(|l| !l.contains("  -  "));
        if lagged || tokio::time::Instant::now() > deadline {
            break (out, text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 6, "{text}");
    // Then each center's clock against a's (the shared servers run on one host).
    assert!(text.contains("CLOCK SKEW vs a"), "{text}");
    for c in ["a", "b", "c"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{c}   ")) && l.contains(" ±")),
            "{text}"
        );
    }
    for l in lines {
        assert!(l.contains("running") && l.contains('s'), "{l}");
        assert!(!l.ends_with(" -"), "a position: {l}");
    }
    // A stopped daemon shows up as such, and status exits non-zero.
    cl.kill9(2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["status", "--config"])
        .arg(&cl.config)
        .output()
        .expect("drc status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no daemon answers"), "{text}");
}

#[tokio::test]
async fn replaying_a_link_from_an_earlier_position_is_harmless() {
    let schema = "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), n INT)";
    let mut cl = Cluster::new("replay", schema, "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    let p0 = {
        let mut c = drc_testkit::connect(&servers()[0].url()).await;
        c.query_first::<String, _>("SELECT @@gtid_binlog_pos")
            .await
            .expect("pos")
            .expect("a position")
    };
    let mut a = cl.conn(0).await;
    a.query_drop(
        "INSERT INTO t SELECT seq, CONCAT('v', seq), 0 FROM seq_1_to_40; \
         UPDATE t SET n = n + 1 WHERE id <= 20; DELETE FROM t WHERE id > 35; \
         UPDATE t SET id = id + 100 WHERE id = 1; INSERT INTO t VALUES (1, 'again', 9); \
         DELETE FROM t WHERE id = 2; UPDATE t SET n = 7 WHERE id = 3",
    )
    .await
    .expect("writes");
    cl.wait_converged("t").await;
    let before = cl.checksum(1, "t").await;
    // Rewind b's checkpoint of link a->b to before the writes, and restart b's daemon: every
    // change is applied a second time.
    cl.kill9(1);
    let mut b = drc_testkit::connect(&servers()[1].url()).await;
    b.exec_drop(
        format!(
            "UPDATE `{}_meta`.checkpoint SET start_position = ?, end_position = ? WHERE link = 'a->b'",
            cl.db
        ),
        (p0.as_str(), p0.as_str()),
    )
    .await
    .expect("rewind");
    cl.start(1);
    cl.wait_running().await;
    let a_end = {
        let mut c = drc_testkit::connect(&servers()[0].url()).await;
        c.query_first::<String, _>("SELECT @@gtid_binlog_pos")
            .await
            .expect("pos")
            .expect("a position")
    };
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let end: Option<String> = b
            .exec_first(
                format!(
                    "SELECT end_position FROM `{}_meta`.checkpoint WHERE link = 'a->b' ORDER BY batch DESC LIMIT 1",
                    cl.db
                ),
                (),
            )
            .await
            .expect("checkpoint");
        // Positions are GTID lists; a's own domain must have reached the end read above (a
        // keeps writing heartbeats, so compare sequence numbers, not whole positions).
        let domain = format!("{}-", servers()[0].gtid_domain_id());
        let seq = |p: &str| {
            p.split(',')
                .find(|g| g.starts_with(&domain))
                .and_then(|g| g.rsplit('-').next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let (Some(done), Some(target)) = (end.as_deref().and_then(seq), seq(&a_end)) {
            if done >= target {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay did not finish: {end:?} vs {a_end}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cl.checksum(1, "t").await,
        before,
        "the replay changed nothing"
    );
    cl.wait_converged("t").await;
}

/// A batch goes to one worker per `[applier] share_rows` changes (256 by default), at most
/// `parallelism`: one source transaction of 600 rows (one batch: a transaction is never split)
/// is applied by three of the four workers, each storing the batch with its share; a single
/// row afterwards is applied by one.
#[tokio::test]
async fn a_batch_takes_one_worker_per_share_rows_changes() {
    let schema = "CREATE TABLE t (id INT PRIMARY KEY, v INT)";
    let mut cl = Cluster::new("shares", schema, "auto", "[applier]\nparallelism = 4\n").await;
    cl.start_all();
    cl.wait_running().await;
    let mut a = cl.conn(0).await;
    a.query_drop("INSERT INTO t SELECT seq, seq FROM seq_1_to_600")
        .await
        .expect("bulk");
    assert_eq!(cl.wait_converged("t").await, 600);
    let mut b = drc_testkit::connect(&servers()[1].url()).await;
    let q = format!(
        "SELECT worker, batch, workers FROM `{}_meta`.checkpoint WHERE link = 'a->b' ORDER BY worker",
        cl.db
    );
    let cps: Vec<(u32, u64, u32)> = b.query(&q).await.expect("checkpoints");
    // Workers 1 and 2 stored the 600-row batch, planned for three; worker 0 too, unless a
    // later batch (a heartbeat) moved it on; worker 3 never had a share.
    let of = |w: u32| cps.iter().find(|c| c.0 == w).copied();
    let (w1, w2) = (of(1), of(2));
    assert!(
        matches!((w1, w2), (Some((_, b1, 3)), Some((_, b2, 3))) if b1 == b2),
        "{cps:?}"
    );
    let bulk = w1.map(|c| c.1).unwrap_or_default();
    assert!(of(0).is_some_and(|c| c.1 >= bulk), "{cps:?}");
    assert_eq!(of(3), None, "{cps:?}");
    a.query_drop("INSERT INTO t VALUES (601, 601)")
        .await
        .expect("one row");
    assert_eq!(cl.wait_converged("t").await, 601);
    let cps: Vec<(u32, u64, u32)> = b.query(&q).await.expect("checkpoints");
    let newest = cps.iter().max_by_key(|c| c.1).expect("a checkpoint");
    assert_eq!((newest.0, newest.2), (0, 1), "{cps:?}");
}
