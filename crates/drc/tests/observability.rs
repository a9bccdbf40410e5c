//! What operators watch, against a running three-center cluster (issue #18 items 4, 5, 7):
//! every metric the Grafana dashboard and the Prometheus alert rules query is one the daemons
//! export; the metrics added for operations move when data moves; and a daemon started by
//! systemd (`NOTIFY_SOCKET`) reports `READY=1` once its links started and `STOPPING=1` when it
//! shuts down.

use std::collections::BTreeSet;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;
use tokio::net::UnixDatagram;

use crate::cluster::{Cluster, CONVERGE};
use crate::deploy::{root, yaml};

/// `/metrics` of center `i`'s daemon.
async fn scrape(cl: &Cluster, i: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", cl.ports[i]))
        .await
        .expect("daemon answers");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("response");
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let have: Vec<(&str, &str)> = rest
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        labels
            .iter()
            .all(|want| have.contains(want))
            .then(|| value.parse().ok())?
    })
}

/// Metric families a scrape declares (`# TYPE name kind`), with their kinds.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

/// Every `drc_...` identifier in a PromQL expression (metric names; drc's label names and
/// PromQL's functions never start with `drc_`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in expr.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() || ch == '_' || ch == ':' {
            word.push(ch);
        } else {
            if word.starts_with("drc_") {
                out.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    out
}

/// Every PromQL expression of the dashboard and of the alert rules, with where it is.
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let text = std::fs::read_to_string(root().join("deploy/grafana/drc.json")).expect("dashboard");
    let dashboard: Json = serde_json::from_str(&text).expect("JSON");
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr").to_string();
            out.push((format!("dashboard panel {}", p["title"]), expr));
        }
    }
    let rules = yaml("deploy/prometheus/alerts.yml");
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let expr = r["expr"].as_str().expect("expr").to_string();
            out.push((format!("alert {}", r["alert"]), expr));
        }
    }
    out
}

/// Whether `name` is exported: as a family, or as a histogram's `_bucket`/`_sum`/`_count`.
fn exported(name: &str, families: &[(String, String)]) -> bool {
    if families.iter().any(|(n, _)| n == name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            families
                .iter()
                .any(|(n, k)| n == base && (k == "histogram" || k == "summary"))
        })
    })
}

/// `drc link pause|resume --link a->b`, then waits until b's daemon shows the link's new state.
async fn link(cl: &Cluster, action: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["link", action, "--link", "a->b", "--config"])
        .arg(&cl.config)
        .output()
        .expect("drc link runs");
    assert!(out.status.success(), "drc link {action}: {out:?}");
    let want = if action == "pause" {
        "paused"
    } else {
        "running"
    };
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let state = cl.health(1).await.and_then(|h| {
            h["links"]
                .as_array()?
                .iter()
                .find(|l| l["link"] == "a->b")
                .and_then(|l| l["state"].as_str().map(str::to_string))
        });
        if state.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a->b never {want}\n{}",
            cl.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the next notification on `sock` that contains `what`; returns it.
async fn notification(sock: &UnixDatagram, what: &str, cl: &Cluster) -> String {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                if msg.lines().any(|l| l == what) {
                    return msg;
                }
            }
            Ok(Err(e)) => panic!("notify socket: {e}"),
            Err(_) => panic!("no {what} within {CONVERGE:?}\n{}", cl.log(0)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_query_exported_metrics_which_move_and_systemd_is_notified() {
    let mut cl = Cluster::new(
        "obs",
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL,
         updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6));",
        "auto",
        "",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    cl.start_env(
        0,
        &["--start", "now"],
        &[("NOTIFY_SOCKET", path.as_os_str())],
    );
    cl.start(1);
    cl.start(2);

    // systemd readiness: READY=1 once the links left `starting`, with a status line.
    let ready = notification(&sock, "READY=1", &cl).await;
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=ready: 2 links:")),
        "{ready}"
    );
    cl.wait_running().await;

    // Data moves: rows written in a reach every center.
    {
        let mut a = cl.conn(0).await;
        for id in 1..=20 {
            a.query_drop(format!("INSERT INTO t (id, v) VALUES ({id}, 'a')"))
                .await
                .expect("insert");
        }
    }
    assert_eq!(cl.wait_converged("t").await, 20);
    // A lost write, so that the conflict counter has a series: with a->b paused, a and b
    // update row 1 to different versions; when a->b resumes, b keeps its later version and
    // records a's update as lost (and a records its own row as lost to b's).
    link(&cl, "pause").await;
    {
        let mut a = cl.conn(0).await;
        a.query_drop("UPDATE t SET v = 'early', updated_at = '2020-01-01' WHERE id = 1")
            .await
            .expect("update in a");
        let mut b = cl.conn(1).await;
        b.query_drop("UPDATE t SET v = 'late', updated_at = '2030-01-01' WHERE id = 1")
            .await
            .expect("update in b");
    }
    link(&cl, "resume").await;
    assert_eq!(cl.wait_converged("t").await, 20);
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let b = loop {
        let text = scrape(&cl, 1).await;
        if sample(&text, "drc_apply_conflicts_total", &[("link", "a->b")]).unwrap_or(0.0) >= 1.0 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no conflict counted in b\n{text}\n{}",
            cl.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Every metric the dashboard and the rules query is exported (by some daemon).
    let mut fams = families(&b);
    fams.extend(families(&scrape(&cl, 0).await));
    fams.extend(families(&scrape(&cl, 2).await));
    let mut used = BTreeSet::new();
    for (place, expr) in queries() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{place} queries a drc metric: {expr}");
        for n in names {
            assert!(
                exported(&n, &fams),
                "{place} queries {n}, which no daemon exports"
            );
            used.insert(n);
        }
    }
    assert!(used.len() >= 12, "the queries cover the metrics: {used:?}");

    // The operations metrics move.
    let link = [("link", "a->b")];
    let events = sample(&b, "drc_source_events_total", &link).expect("events");
    let bytes = sample(&b, "drc_source_bytes_total", &link).expect("bytes");
    assert!(
        events >= 40.0,
        "20 transactions of >= 2 events each: {events}"
    );
    assert!(
        bytes > events * 19.0,
        "binlog events have a 19-byte header: {bytes}"
    );
    assert_eq!(sample(&b, "drc_source_reconnects_total", &link), Some(0.0));
    for h in [
        "drc_apply_latency_seconds",
        "drc_apply_batch_duration_seconds",
    ] {
        let count = sample(&b, &format!("{h}_count"), &link).expect("histogram count");
        let sum = sample(&b, &format!("{h}_sum"), &link).expect("histogram sum");
        assert!(count >= 1.0 && sum > 0.0, "{h}: count {count}, sum {sum}");
        let inf = sample(&b, &format!("{h}_bucket"), &[link[0], ("le", "+Inf")]);
        assert_eq!(inf, Some(count), "{h}: +Inf bucket = count");
    }
    let age = sample(&b, "drc_link_checkpoint_age_seconds", &link).expect("age");
    assert!((0.0..30.0).contains(&age), "checkpointed recently: {age}");
    let local = sample(&b, "drc_local_deletes_lag_seconds", &[("center", "b")])
        .expect("local-delete reader lag");
    assert!(
        local.abs() < 30.0,
        "the local-delete reader keeps up: {local}"
    );
    // Series of a link exist before anything happened on them: no deletes were applied.
    assert_eq!(
        sample(&b, "drc_apply_rows_total", &[link[0], ("kind", "delete")]),
        Some(0.0)
    );

    // Shutdown: STOPPING=1.
    let stopped = tokio::spawn(async move {
        let ok = cl.terminate(0, Duration::from_secs(30)).await;
        (ok, cl)
    });
    let stopping = tokio::time::timeout(CONVERGE, async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.expect("notify socket");
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.lines().any(|l| l == "STOPPING=1") {
                return msg;
            }
        }
    })
    .await
    .expect("STOPPING=1 at shutdown");
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    let (ok, _cl) = stopped.await.expect("terminate");
    assert!(ok, "the daemon exits after SIGTERM");
}
