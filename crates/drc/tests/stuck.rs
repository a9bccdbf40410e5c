//! Links that would hang or stay invisible (issue #11 item 6): a half-open connection to a
//! peer shows as `reconnecting` in `/health` and `drc status` and loses nothing once the
//! network heals; SIGTERM ends a daemon whose applier retries against an unreachable target.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::cluster::{servers, Cluster, CONVERGE};
use crate::proxy::{Mode, Proxy};

const SCHEMA: &str = "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)";

/// Inserts rows `ids` into `t` of center `i`'s own server (never through a proxy).
async fn insert(i: usize, db: &str, ids: std::ops::RangeInclusive<u32>, v: &str) {
    let mut c = drc_testkit::connect(&servers()[i].url_for(db)).await;
    for id in ids {
        c.query_drop(format!("INSERT INTO t VALUES ({id}, '{v}')"))
            .await
            .expect("insert");
    }
}

/// The rows of `t` in center `i`'s own server.
async fn rows(i: usize, db: &str) -> Vec<(u32, String)> {
    let mut c = drc_testkit::connect(&servers()[i].url_for(db)).await;
    c.query("SELECT id, v FROM t ORDER BY id")
        .await
        .expect("rows")
}

/// Waits until `t` in center `i` holds exactly `want`.
async fn wait_rows(cl: &Cluster, i: usize, want: &[(u32, String)]) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let got = rows(i, &cl.db).await;
        if got == want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("center {i} has {got:?}, want {want:?}\n{}", cl.log(i));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `drc status` output and exit code.
async fn drc_status(cl: &Cluster) -> (String, Option<i32>) {
    let config = cl.config.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(["status", "--config"])
            .arg(&config)
            .output()
            .expect("drc status runs");
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            out.status.code(),
        )
    })
    .await
    .expect("drc status")
}

/// The `/health` entry of `link` in center `i`'s daemon.
async fn link_health(cl: &Cluster, i: usize, link: &str) -> serde_json::Value {
    let h = cl.health(i).await.expect("the daemon answers");
    h["links"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["link"] == link))
        .cloned()
        .unwrap_or_else(|| panic!("{link} in /health: {h}"))
}

/// Waits until `link` shows `state` in center `i`'s `/health`.
async fn wait_state(cl: &Cluster, i: usize, link: &str, state: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let l = link_health(cl, i, link).await;
        if l["state"] == state {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{link} never showed {state}: {l}\n{}",
            cl.log(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Center a's server sits behind a proxy that stops forwarding without closing anything: the
/// link a->b must show `reconnecting` (in b's `/health` and in `drc status`) instead of
/// `running`, and every row written in a meanwhile must arrive exactly once forwarding resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_peer_shows_reconnecting_and_loses_nothing() {
    let proxy = Proxy::start(servers()[0].port()).await;
    let urls = vec![proxy.url(), servers()[1].url(), servers()[2].url()];
    let mut cl = Cluster::on(&urls, "halfopen", SCHEMA, "auto", "").await;
    cl.start_all();
    cl.wait_running().await;
    insert(0, &cl.db, 1..=10, "before").await;
    let mut want: Vec<(u32, String)> = (1..=10).map(|i| (i, "before".to_string())).collect();
    wait_rows(&cl, 1, &want).await;

    proxy.set(Mode::Pause);
    insert(0, &cl.db, 11..=40, "meanwhile").await;
    want.extend((11..=40).map(|i| (i, "meanwhile".to_string())));

    // b's /health: the link a->b reconnects (the stream is idle beyond idle_timeout_ms = 5 s).
    let link = wait_state(&cl, 1, "a->b", "reconnecting").await;
    assert!(
        link["source_seconds_since_last_event"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1.0,
        "{link}"
    );
    assert!(link["source_error"].is_string(), "{link}");
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", cl.ports[1]))
            .await
            .expect("metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("response");
        buf
    };
    assert!(
        metrics.contains("drc_link_reconnecting{link=\"a->b\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drc_link_source_seconds_since_last_event{link=\"a->b\"}"),
        "{metrics}"
    );
    // drc status says so too, and exits non-zero.
    let (out, code) = drc_status(&cl).await;
    let line = out
        .lines()
        .find(|l| l.starts_with("a->b "))
        .unwrap_or_else(|| panic!("no a->b line:\n{out}"));
    assert!(line.contains("reconnecting"), "{out}");
    assert_eq!(code, Some(2), "{out}");

    proxy.set(Mode::Forward);
    wait_rows(&cl, 1, &want).await;
    wait_rows(&cl, 2, &want).await;
    wait_state(&cl, 1, "a->b", "running").await;
    let (out, _) = drc_status(&cl).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("a->b ") && l.contains("running")),
        "{out}"
    );
}

/// Center b's server sits behind a proxy that closes and refuses every connection while a
/// writes: b's applier retries, and SIGTERM must still end b's daemon (the retry sleeps wake on
/// shutdown). After the server is reachable again, the rows arrive exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_daemon_retrying_against_an_unreachable_target() {
    let proxy = Proxy::start(servers()[1].port()).await;
    let urls = vec![servers()[0].url(), proxy.url(), servers()[2].url()];
    let mut cl = Cluster::on(&urls, "sigterm", SCHEMA, "auto", "").await;
    cl.start(1);
    cl.wait_center_running(1).await;
    // The first row makes the link check t's columns, so that later batches go straight to the
    // appliers.
    insert(0, &cl.db, 1..=1, "first").await;
    let mut want = vec![(1, "first".to_string())];
    wait_rows(&cl, 1, &want).await;

    proxy.set(Mode::Refuse);
    insert(0, &cl.db, 2..=6, "unreachable").await;
    want.extend((2..=6).map(|i| (i, "unreachable".to_string())));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cl.log(1).contains("apply failed; retrying") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's applier never retried:\n{}",
            cl.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cl.terminate(1, Duration::from_secs(30)).await,
        "b's daemon did not exit within 30 s of SIGTERM:\n{}",
        cl.log(1)
    );

    proxy.set(Mode::Forward);
    cl.start(1);
    wait_rows(&cl, 1, &want).await;
}

/// The proxy itself: a paused connection holds a query without closing (drc's connections go
/// through TCP, never around the proxy over the server's Unix socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_holds_a_paused_connection() {
    let proxy = Proxy::start(servers()[0].port()).await;
    let mut c = drc_mysql::connect(&proxy.url(), Duration::from_secs(5))
        .await
        .expect("c");
    let _: Option<u32> = c.query_first("SELECT 1").await.expect("q");
    proxy.set(Mode::Pause);
    let r = tokio::time::timeout(Duration::from_secs(3), c.query_first::<u32, _>("SELECT 1")).await;
    assert!(r.is_err(), "paused: {r:?}");
}
