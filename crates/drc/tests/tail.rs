//! `drc tail` against a real server and on binlog files, including bad input.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `drc ARGS`, failing the test if it does not end within [`DEADLINE`]. The output is
/// read while the child runs (a child writing more than a pipe holds never blocks).
pub fn drc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drc starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("drc {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

fn lines(out: &Output) -> Vec<Json> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn tail_prints_row_changes_of_a_live_server() {
    // A server of its own: other tests write to the shared ones, and their changes would
    // interleave with the three this test reads back.
    let own = tokio::task::spawn_blocking(|| {
        drc_testkit::MariaDb::start(drc_testkit::ServerOptions::default())
    })
    .await
    .expect("thread")
    .expect("server starts");
    let srv = &own;
    let db = drc_testkit::create_db(srv, "tail").await;
    let mut c = drc_testkit::connect(&srv.url_for(&db)).await;
    c.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2), at DATETIME(3))",
    )
    .await
    .expect("create");
    let pos: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("pos")
        .expect("a position");
    c.query_drop(
        "INSERT INTO t VALUES (1, 'ann', 9.90, '2024-05-01 10:00:00.250'); \
         UPDATE t SET name = 'bob' WHERE id = 1; DELETE FROM t WHERE id = 1",
    )
    .await
    .expect("writes");
    let out = drc(
        &[
            "tail",
            "--mysql",
            &srv.url(),
            "--from",
            &pos,
            "--limit",
            "3",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = lines(&out);
    assert_eq!(l.len(), 3);
    let kinds: Vec<&str> = l
        .iter()
        .map(|j| j["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["insert", "update", "delete"]);
    assert_eq!(l[0]["database"], db.as_str());
    assert_eq!(l[0]["table"], "t");
    assert_eq!(l[0]["server_id"], srv.server_id());
    assert_eq!(l[0]["before"], Json::Null);
    assert_eq!(
        l[0]["after"],
        serde_json::json!({"id": 1, "name": "ann", "price": "9.90", "at": "2024-05-01 10:00:00.250"})
    );
    assert_eq!(l[1]["before"]["name"], "ann");
    assert_eq!(l[1]["after"]["name"], "bob");
    assert_eq!(l[2]["after"], Json::Null);
    // The first change's position is where the tail started; the gtid names its transaction.
    assert_eq!(l[0]["position"], pos.as_str());
    assert!(l[0]["gtid"]
        .as_str()
        .is_some_and(|g| g.split('-').count() == 3));
    // Starting from a later row's position shows that row's transaction again.
    let second = l[1]["position"].as_str().expect("position").to_string();
    let again = drc(
        &[
            "tail",
            "--mysql",
            &srv.url(),
            "--from",
            &second,
            "--limit",
            "1",
        ],
        &[],
    );
    assert_eq!(lines(&again)[0]["kind"], "update");
}

#[test]
fn tail_reads_binlog_files_offline() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/binlogs/mysql_type_bit.000001");
    if !p.exists() {
        eprintln!("skipping: {} not found", p.display());
        return;
    }
    let out = drc(&["tail", "--file", &p.to_string_lossy()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = lines(&out);
    assert_eq!(l.len(), 1);
    assert_eq!(
        l[0]["after"],
        serde_json::json!({"a": 4, "b": "foo", "c": 32})
    );
    assert_eq!(l[0]["table"], "foo");
    let with_ddl = lines(&drc(
        &["tail", "--file", &p.to_string_lossy(), "--ddl"],
        &[],
    ));
    assert!(with_ddl
        .iter()
        .any(|j| j["kind"] == "ddl"
            && j["statement"] == "CREATE TABLE foo(a BIT(3), b TEXT, c BIT(8))"));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "tail",
                "--mysql",
                "mysql://root@127.0.0.1:1",
                "--from",
                "nonsense",
            ],
            "--from \"nonsense\"",
        ),
        (&["tail", "--mysql", "not a url"], "invalid MySQL URL"),
        (
            &["tail", "--file", "/nonexistent/bin.000001"],
            "/nonexistent/bin.000001",
        ),
        (&["tail"], "--mysql"),
    ];
    for (args, needle) in cases {
        let out = drc(args, &[]);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[tokio::test]
async fn password_comes_from_the_environment_and_is_never_printed() {
    let srv = &drc_testkit::shared_servers(3)[0];
    let user = drc_testkit::unique_db_name("repl");
    let mut c = drc_testkit::connect(&srv.url()).await;
    c.query_drop(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 's3cret!'; \
         GRANT REPLICATION SLAVE, SELECT ON *.* TO '{user}'@'%'"
    ))
    .await
    .expect("user");
    let url = format!("mysql://{user}@127.0.0.1:{}", srv.port());
    // A wrong password: refused, and the password does not appear in the message.
    let out = drc(
        &["tail", "--mysql", &url, "--limit", "1"],
        &[("DRC_MYSQL_PASSWORD", "wrong-pw")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Access denied"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");
    // The right one: the tail starts and prints a change made after it started.
    let mut child = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["tail", "--mysql", &url, "--limit", "1"])
        .env("DRC_MYSQL_PASSWORD", "s3cret!")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drc starts");
    let db = drc_testkit::create_db(srv, "envpw").await;
    let mut w = drc_testkit::connect(&srv.url_for(&db)).await;
    w.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("create");
    // Keep writing until the tail (which starts at the then-current end) has printed one.
    let began = Instant::now();
    let mut i = 0;
    loop {
        i += 1;
        w.query_drop(format!("INSERT INTO t VALUES ({i})"))
            .await
            .expect("insert");
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(began.elapsed() < DEADLINE, "tail printed nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&out).len(), 1);
}
