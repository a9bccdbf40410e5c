//! Clock skew against real servers: one center's database clock runs an hour ahead (every
//! session of its drc user starts with `SET timestamp` an hour in the future, through the
//! server's `init_connect`: MariaDB cannot shift one server's clock otherwise), and `drc check`
//! warns about it, the daemon of the other center exports it as
//! `drc_center_clock_skew_seconds`, and a heartbeat stamped by the fast clock shows as a
//! negative lag instead of being clamped to zero.

use std::process::{Command, Stdio};
use std::time::Duration;

use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

const DEADLINE: Duration = Duration::from_secs(120);
/// How far the skewed center's clock is ahead.
const AHEAD_S: f64 = 3600.0;

fn free_port() -> u16 {
    drc_testkit::free_port()
}

async fn get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// The value of the series `name{labels}` in a Prometheus text exposition.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test]
async fn a_skewed_center_is_warned_about_and_measured() {
    let servers: Vec<MariaDb> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| MariaDb::start(ServerOptions::default())))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread").expect("server starts"))
            .collect()
    });
    let db = drc_testkit::unique_db_name("skew");
    for s in &servers {
        let mut c = drc_testkit::connect(&s.url()).await;
        c.query_drop(format!(
            "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"
        ))
        .await
        .expect("schema");
    }
    // Center b: drc's user (no SUPER, so init_connect runs for it) sees a clock an hour ahead.
    let mut root_b = drc_testkit::connect(&servers[1].url()).await;
    root_b
        .query_drop(format!(
            "CREATE USER 'skewed'@'%' IDENTIFIED BY 'pw'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, \
               REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'skewed'@'%'; \
             SET GLOBAL init_connect = 'SET SESSION timestamp = UNIX_TIMESTAMP(SYSDATE(6)) + {AHEAD_S}'"
        ))
        .await
        .expect("skewed user");
    let skewed_url = servers[1]
        .url()
        .replace("mysql://root@", "mysql://skewed:pw@");
    let mut skewed = drc_testkit::connect(&skewed_url).await;
    let b_ts: String = skewed
        .query_first("SELECT CAST(NOW(6) AS CHAR)")
        .await
        .expect("b's clock")
        .expect("row");
    drop(skewed);

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = 200_000_000 + (std::process::id() % 1000) * 100_000;
    let config = dir.path().join("drc.toml");
    std::fs::write(
        &config,
        format!(
            "[[center]]\nname = \"a\"\nmysql = \"{}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\n\
             [[center]]\nname = \"b\"\nmysql = \"{skewed_url}\"\n\n\
             [replication]\ndatabases = [\"{db}\"]\nmeta_database = \"{db}_meta\"\nloopback = \"marker\"\n\n\
             [source]\nreplica_server_id_base = {base}\n\n\
             [heartbeat]\ninterval_ms = 200\n\n\
             [conflict]\nmax_clock_skew_ms = 500\n",
            servers[0].url()
        ),
    )
    .expect("config");

    // drc check: one warning about the pair, naming b as ahead.
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["check", "--json", "--config"])
        .arg(&config)
        .output()
        .expect("drc check");
    let text = String::from_utf8_lossy(&out.stdout);
    let findings: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let skew: Vec<&serde_json::Value> = findings
        .as_array()
        .expect("array")
        .iter()
        .filter(|f| f["check"] == "clock_skew")
        .collect();
    assert_eq!(skew.len(), 1, "{findings:#}");
    assert_eq!(skew[0]["severity"], "warning");
    let message = skew[0]["message"].as_str().expect("message");
    assert!(
        message.starts_with("the database clocks of a and b differ by 3")
            && message.contains("b is ahead of a")
            && message.contains("max_clock_skew_ms = 500"),
        "{message}"
    );

    // The daemon of a measures b's clock.
    let log = std::fs::File::create(dir.path().join("a.log")).expect("log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--center", "a", "--log", "info", "--start", "now"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("drc run starts");
    // A heartbeat of b, stamped by b's clock, as replication would bring it to a.
    let mut root_a = drc_testkit::connect(&servers[0].url()).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut heartbeat_written = false;
    let result = loop {
        if !heartbeat_written {
            heartbeat_written = root_a
                .query_drop(format!(
                    "INSERT INTO `{db}_meta`.heartbeat (center, ts, seq) VALUES ('b', '{b_ts}', 1) \
                     ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
                ))
                .await
                .is_ok();
        }
        if let Some(m) = get(port, "/metrics").await {
            let skew = series(&m, "drc_center_clock_skew_seconds{peer=\"b\"}");
            let error = series(&m, "drc_center_clock_skew_error_seconds{peer=\"b\"}");
            let lag = series(&m, "drc_link_lag_seconds{link=\"b->a\"}");
            if let (Some(s), Some(e), Some(l)) = (skew, error, lag) {
                if heartbeat_written && l < 0.0 {
                    break Ok((s, e, l));
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            break Err(get(port, "/metrics").await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default();
    let (skew, error, lag) = result
        .unwrap_or_else(|m| panic!("no skew and negative lag within {DEADLINE:?}: {m:?}\n{log}"));
    // init_connect froze b's session clock an hour ahead when the daemon connected, so the skew
    // shrinks by the seconds since then; it is an hour within the test's duration.
    assert!(
        (AHEAD_S - DEADLINE.as_secs_f64() - 5.0..AHEAD_S + 5.0).contains(&skew),
        "skew {skew}"
    );
    assert!((0.0..1.0).contains(&error), "error bound {error}");
    assert!(lag < -AHEAD_S + DEADLINE.as_secs_f64() + 5.0, "lag {lag}");
    assert!(
        log.contains("differs from this center's by more than conflict.max_clock_skew_ms"),
        "{log}"
    );
}
