//! `drc check` against real servers: a healthy cluster passes with nothing to say; a broken one
//! gets every problem in one run; missing privileges are named with the GRANT that fixes them;
//! an unreachable center is an error that never shows its password.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use drc_testkit::{BinlogFormat, MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

const DEADLINE: Duration = Duration::from_secs(90);

/// Runs `drc ARGS`, failing the test if it does not end within [`DEADLINE`].
fn drc(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drc starts");
    let began = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if began.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "drc {args:?} did not finish within {DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `drc check --config FILE` (text) and its stdout.
fn check_text(config: &Path) -> (Output, String) {
    let out = drc(&["check", "--config", &config.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// `drc check --config FILE --json`, parsed.
fn check_json(config: &Path) -> (Output, Vec<Json>) {
    let out = drc(&["check", "--json", "--config", &config.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    match json {
        Json::Array(items) => (out, items),
        other => panic!("not an array: {other}"),
    }
}

/// A topology file for `(name, url)` centers replicating `db`.
fn topology(dir: &Path, centers: &[(&str, String)], db: &str, loopback: &str) -> PathBuf {
    let mut toml = String::new();
    for (name, url) in centers {
        toml.push_str(&format!(
            "[[center]]\nname = \"{name}\"\nmysql = \"{url}\"\n\n"
        ));
    }
    toml.push_str(&format!(
        "[replication]\ndatabases = [\"{db}\"]\nmeta_database = \"{db}_meta\"\nloopback = \"{loopback}\"\n"
    ));
    let path = dir.join(format!("{loopback}.toml"));
    std::fs::write(&path, toml).expect("config");
    path
}

/// Creates `db` on `server` and runs `schema` in it.
async fn create(server: &MariaDb, db: &str, schema: &str) {
    let mut c = drc_testkit::connect(&server.url()).await;
    c.query_drop(format!("CREATE DATABASE `{db}`; USE `{db}`; {schema}"))
        .await
        .expect("schema");
}

/// Starts servers in parallel.
fn start(options: Vec<ServerOptions>) -> Vec<MariaDb> {
    std::thread::scope(|s| {
        let handles: Vec<_> = options
            .into_iter()
            .map(|o| s.spawn(move || MariaDb::start(o)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("server starts"))
            .collect()
    })
}

fn assert_has(text: &str, line_start: &str) {
    assert!(
        text.lines().any(|l| l.starts_with(line_start)),
        "no line starting with {line_start:?} in:\n{text}"
    );
}

#[tokio::test]
async fn a_healthy_cluster_passes() {
    let servers = start(
        (1..=3)
            .map(|offset| {
                ServerOptions::default()
                    .arg("--auto-increment-increment=3")
                    .arg(format!("--auto-increment-offset={offset}"))
            })
            .collect(),
    );
    let db = drc_testkit::unique_db_name("chk_ok");
    for s in &servers {
        create(
            s,
            &db,
            "CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)); \
             CREATE TABLE items (order_id BIGINT NOT NULL, n INT NOT NULL, sku VARCHAR(10), updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
               PRIMARY KEY (order_id, n))",
        )
        .await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let centers: Vec<(&str, String)> = ["a", "b", "c"]
        .into_iter()
        .zip(servers.iter().map(|s| s.url()))
        .collect();
    let config = topology(dir.path(), &centers, &db, "server_id");
    let (out, text) = check_text(&config);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "0 errors, 0 warnings\n");
    let (out, json) = check_json(&config);
    assert!(out.status.success());
    assert!(json.is_empty(), "{json:?}");
    // With loopback = "auto", each center says which strategy its daemon will use.
    let config = topology(dir.path(), &centers, &db, "auto");
    let (out, text) = check_text(&config);
    assert!(out.status.success(), "{text}");
    for c in ["a", "b", "c"] {
        assert_has(
            &text,
            &format!("info    {c}  loopback: loopback = \"auto\" will tag by server_id here"),
        );
    }
    assert!(
        text.ends_with("0 errors, 0 warnings (3 notes for information)\n"),
        "{text}"
    );
}

#[tokio::test]
async fn every_problem_of_a_broken_cluster_is_reported_in_one_run() {
    let shared = drc_testkit::shared_servers(3);
    let (a, b) = (&shared[0], &shared[1]);
    // Center c: statement-based binlog, and the same server_id and GTID domain as center a.
    let c = &start(vec![ServerOptions::default()
        .binlog_format(BinlogFormat::Statement)
        .server_id(a.server_id())
        .gtid_domain_id(a.gtid_domain_id())])[0];
    let db = drc_testkit::unique_db_name("chk_bad");
    let common = "CREATE TABLE nopk (x INT); ";
    let orders = |note: &str| {
        format!("CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR({note})); ")
    };
    create(
        a,
        &db,
        &format!(
            "{common}{}CREATE TABLE only_ab (id INT PRIMARY KEY)",
            orders("20")
        ),
    )
    .await;
    create(
        b,
        &db,
        &format!(
            "{common}{}CREATE TABLE only_ab (id INT PRIMARY KEY); \
             CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW SET @n = 1",
            orders("20")
        ),
    )
    .await;
    create(c, &db, &format!("{common}{}", orders("40"))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let centers = [("a", a.url()), ("b", b.url()), ("c", c.url())];
    let config = topology(dir.path(), &centers, &db, "marker");
    let (out, text) = check_text(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let id = a.server_id();
    let domain = a.gtid_domain_id();
    let want = [
        format!("error   a  primary_key: table {db}.nopk has no primary key"),
        format!("error   b  primary_key: table {db}.nopk has no primary key"),
        format!("warning b  trigger: trigger {db}.orders_audit (AFTER INSERT on orders) fires again when drc applies a change"),
        "error   c  binlog_format: binlog_format is STATEMENT; set binlog_format=ROW".to_string(),
        format!("error   c  primary_key: table {db}.nopk has no primary key"),
        format!("error   c  missing_table: table {db}.only_ab exists in a and b but not in c; create it in c"),
        format!("error   *  server_id: centers a and c have the same server_id {id}"),
        format!("error   *  gtid_domain_id: centers a and c share gtid_domain_id {domain}"),
        "error   *  auto_increment: the AUTO_INCREMENT sequences of a/b, a/c and b/c overlap".to_string(),
        format!("warning *  columns: column {db}.orders.note differs between centers: varchar(20) in a and b; varchar(40) in c"),
        format!("warning *  version_column: table {db}.nopk has no version column `updated_at` in a, b and c"),
        format!("warning *  version_column: table {db}.only_ab has no version column `updated_at` in a and b"),
        format!("warning *  version_column: table {db}.orders has no version column `updated_at` in a, b and c"),
    ];
    for w in &want {
        assert_has(&text, w);
    }
    assert!(
        text.contains(
            "set auto_increment_increment=3 on every center and auto_increment_offset=1,2,3"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("the same AUTO_INCREMENT value in {db}.orders;")),
        "{text}"
    );
    // Nothing else, grouped by center in file order, then the summary.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), want.len() + 1, "{text}");
    let centers_in_order: Vec<&str> = lines[..want.len()].iter().map(|l| l[8..9].trim()).collect();
    let mut sorted = centers_in_order.clone();
    sorted.sort_by_key(|c| if *c == "*" { "~" } else { c });
    assert_eq!(centers_in_order, sorted, "{text}");
    assert_eq!(lines[want.len()], "8 errors, 5 warnings");
    // The same findings for tools.
    let (out, json) = check_json(&config);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json.len(), want.len());
    let binlog = json
        .iter()
        .find(|f| f["check"] == "binlog_format")
        .expect("binlog_format finding");
    assert_eq!(binlog["severity"], "error");
    assert_eq!(binlog["center"], "c");
    assert!(binlog["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("binlog_format is STATEMENT")));
    let clash = json
        .iter()
        .find(|f| f["check"] == "server_id")
        .expect("clash");
    assert_eq!(clash["center"], Json::Null);
}

#[tokio::test]
async fn missing_privileges_are_named_with_the_grant_that_fixes_them() {
    let shared = drc_testkit::shared_servers(3);
    let (a, b) = (&shared[0], &shared[1]);
    let db = drc_testkit::unique_db_name("chk_priv");
    let user = drc_testkit::unique_db_name("chk_user");
    for s in [a, b] {
        create(
            s,
            &db,
            &format!(
                "CREATE TABLE t (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)); \
                 CREATE TRIGGER t_audit BEFORE UPDATE ON t FOR EACH ROW SET @n = 1; \
                 CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; \
                 GRANT SELECT ON `{db}`.* TO '{user}'@'%'"
            ),
        )
        .await;
    }
    let url = |s: &MariaDb| format!("mysql://{user}:pw@127.0.0.1:{}", s.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = topology(
        dir.path(),
        &[("a", url(a)), ("b", url(b))],
        &db,
        "server_id",
    );
    let (out, text) = check_text(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let account = format!("'{user}'@'%'");
    for c in ["a", "b"] {
        assert_has(
            &text,
            &format!("error   {c}  replication grant: user {user}@% lacks REPLICATION SLAVE"),
        );
        assert_has(
            &text,
            &format!(
                "error   {c}  privileges: user {account} lacks INSERT, UPDATE, DELETE on `{db}`.*; \
                 drc reads and writes every replicated table: \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON `{db}`.* TO {account}"
            ),
        );
        assert_has(
            &text,
            &format!(
                "error   {c}  privileges: user {account} lacks SELECT, INSERT, UPDATE, DELETE, CREATE on `{db}_meta`.*"
            ),
        );
        assert_has(
            &text,
            &format!(
                "error   {c}  loopback: loopback = \"server_id\" but user {account} may not set its session server_id (Access denied"
            ),
        );
        // The trigger is invisible to this user; the check says it could not look.
        assert_has(
            &text,
            &format!("info    {c}  trigger: triggers in `{db}` were not checked"),
        );
    }
    assert!(!text.contains("warning b  trigger:"), "{text}");
    // A table without AUTO_INCREMENT: overlapping sequences are only a warning.
    assert_has(
        &text,
        "warning *  auto_increment: the AUTO_INCREMENT sequences of a/b overlap",
    );
    assert!(
        text.ends_with("8 errors, 1 warning (2 notes for information)\n"),
        "{text}"
    );

    // Grant what the messages asked for: the errors go, and the trigger becomes visible.
    for s in [a, b] {
        let mut c = drc_testkit::connect(&s.url()).await;
        c.query_drop(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON `{db}`.* TO {account}; \
             GRANT ALL PRIVILEGES ON `{db}_meta`.* TO {account}; \
             GRANT REPLICATION SLAVE, BINLOG REPLAY ON *.* TO {account}"
        ))
        .await
        .expect("grants");
    }
    let (out, text) = check_text(&config);
    assert!(out.status.success(), "{text}");
    for c in ["a", "b"] {
        assert_has(
            &text,
            &format!("warning {c}  trigger: trigger {db}.t_audit (BEFORE UPDATE on t)"),
        );
    }
    assert!(text.ends_with("0 errors, 3 warnings\n"), "{text}");
}

#[tokio::test]
async fn an_unreachable_center_is_an_error_without_its_password() {
    let shared = drc_testkit::shared_servers(3);
    let db = drc_testkit::unique_db_name("chk_down");
    for s in &shared[..2] {
        create(s, &db, "CREATE TABLE t (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))").await;
    }
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let secret = "Sup3r-Secret-pw";
    let down = format!("mysql://drc:{secret}@127.0.0.1:{closed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let centers = [("a", shared[0].url()), ("b", shared[1].url()), ("c", down)];
    let config = topology(dir.path(), &centers, &db, "marker");
    let (out, text) = check_text(&config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_has(
        &text,
        &format!("error   c  connect: cannot connect to mysql://drc:***@127.0.0.1:{closed}: "),
    );
    // The reachable centers are still compared with each other.
    assert_has(
        &text,
        "warning *  auto_increment: the AUTO_INCREMENT sequences of a/b overlap (1 unreachable center(s) not compared)",
    );
    assert!(text.ends_with("1 error, 1 warning\n"), "{text}");
    let (out, json) = check_json(&config);
    assert_eq!(out.status.code(), Some(1));
    let connect = json
        .iter()
        .find(|f| f["check"] == "connect")
        .expect("connect");
    assert_eq!(connect["center"], "c");
    for stream in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(secret));
    }
    assert!(!text.contains(secret), "{text}");
}
