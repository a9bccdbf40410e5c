//! The test kit against real MariaDB servers: identity and settings, crash and restart, cleanup
//! on drop, on panic and when the owning process is `SIGKILL`ed.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drc_testkit::{
    connect, create_db, shared_servers, wait_until, BinlogFormat, BinlogRowImage,
    BinlogRowMetadata, MariaDb, ServerOptions,
};
use mysql_async::prelude::Queryable;

/// Every test that shares servers asks for this many.
const SHARED: usize = 2;

/// Env var that turns [`child_owner_helper`] on.
const CHILD_MODE: &str = "DRC_TESTKIT_CHILD_OWNER";
/// Line the child prints once its server is up.
const CHILD_READY: &str = "DRC_TESTKIT_CHILD_READY";

type Settings = (u32, u32, String, String, String, u8, u8);

async fn settings(url: &str) -> Settings {
    let mut conn = connect(url).await;
    let row: Option<Settings> = conn
        .query_first(
            "SELECT @@server_id, @@gtid_domain_id, @@binlog_format, @@binlog_row_image, \
             @@binlog_row_metadata, @@log_bin, @@log_bin_compress",
        )
        .await
        .expect("read settings");
    conn.disconnect().await.expect("disconnect");
    row.expect("one row")
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie has exited; only its parent (here: init, after the owner died) can reap it.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z"),
    }
}

/// Polls a synchronous condition every 50 ms for up to 20 s.
fn wait_sync(what: &str, mut condition: impl FnMut() -> bool) {
    let began = Instant::now();
    while !condition() {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn shared_servers_are_distinct_and_replication_ready() {
    let began = Instant::now();
    let servers = shared_servers(SHARED);
    eprintln!("shared_servers({SHARED}) took {:?}", began.elapsed());
    assert_eq!(servers.len(), SHARED);
    assert_ne!(servers[0].port(), servers[1].port());

    let mut ids = Vec::new();
    for server in servers {
        let (server_id, domain, format, image, metadata, log_bin, compress) =
            settings(&server.url()).await;
        assert_eq!(server_id, server.server_id());
        assert_eq!(domain, server_id, "gtid_domain_id defaults to server_id");
        assert_eq!(domain, server.gtid_domain_id());
        assert_eq!(
            (format.as_str(), image.as_str(), metadata.as_str()),
            ("ROW", "FULL", "FULL")
        );
        assert_eq!(log_bin, 1);
        assert_eq!(compress, 0);
        ids.push(server_id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn shared_servers_host_fresh_databases() {
    let server = &shared_servers(SHARED)[1];
    let db = create_db(server, "t").await;
    let other = create_db(server, "t").await;
    assert_ne!(db, other);

    let mut conn = connect(&server.url_for(&db)).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, payload LONGBLOB)")
        .await
        .expect("create table");
    // max_allowed_packet is large enough for the 20 MB rows drc streams.
    conn.exec_drop(
        "INSERT INTO t VALUES (1, ?)",
        (vec![7u8; 20 * 1024 * 1024],),
    )
    .await
    .expect("insert a 20 MB row");
    let url = server.url_for(&db);
    wait_until("the row is visible", Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let mut conn = connect(&url).await;
            let n: Option<u64> = conn
                .query_first("SELECT LENGTH(payload) FROM t WHERE id = 1")
                .await
                .expect("select");
            n == Some(20 * 1024 * 1024)
        }
    })
    .await;
    conn.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn data_survives_kill_start_again_and_restart() {
    let mut server =
        MariaDb::start(ServerOptions::default().innodb_flush_log_at_trx_commit(1)).expect("start");
    let port = server.port();
    let db = create_db(&server, "crash").await;
    let mut conn = connect(&server.url_for(&db)).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("create");
    conn.query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    conn.disconnect().await.expect("disconnect");

    server.kill().expect("kill");
    assert!(!server.is_running());
    assert!(!port_open(port), "port {port} still open after kill");
    let began = Instant::now();
    server.start_again().expect("start again after kill");
    eprintln!("start_again after kill -9 took {:?}", began.elapsed());
    assert_eq!(server.port(), port);
    assert!(server.is_running());

    let mut conn = connect(&server.url_for(&db)).await;
    let ids: Vec<i32> = conn.query("SELECT id FROM t").await.expect("select");
    assert_eq!(ids, vec![1], "committed row lost by kill -9");
    conn.query_drop("INSERT INTO t VALUES (2)")
        .await
        .expect("insert");
    conn.disconnect().await.expect("disconnect");

    let began = Instant::now();
    server.restart().expect("restart");
    eprintln!("restart took {:?}", began.elapsed());
    assert_eq!(server.port(), port);
    let mut conn = connect(&server.url_for(&db)).await;
    let ids: Vec<i32> = conn
        .query("SELECT id FROM t ORDER BY id")
        .await
        .expect("select");
    assert_eq!(ids, vec![1, 2]);
    conn.disconnect().await.expect("disconnect");

    assert!(matches!(
        server.start_again(),
        Err(drc_testkit::TestkitError::AlreadyRunning { .. })
    ));
    assert!(server.error_log_tail(5).contains("ready for connections"));
}

#[test]
fn drop_removes_the_directory_and_closes_the_port() {
    let began = Instant::now();
    let server = MariaDb::start(ServerOptions::default()).expect("start");
    eprintln!("MariaDb::start took {:?}", began.elapsed());
    let (dir, port) = (server.dir().to_owned(), server.port());
    let pid = server.mariadbd_pid().expect("running");
    assert!(server.datadir().join("mysql").is_dir());
    assert!(port_open(port));

    let began = Instant::now();
    drop(server);
    eprintln!("drop took {:?}", began.elapsed());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!port_open(port), "port {port} still open");
    assert!(process_gone(pid), "mariadbd {pid} still running");
}

#[test]
fn stopped_server_is_deleted_on_drop_too() {
    let mut server = MariaDb::start(ServerOptions::default()).expect("start");
    let dir = server.dir().to_owned();
    server.stop().expect("stop");
    assert!(dir.join("data").is_dir(), "stop must keep the data");
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn panic_while_owning_a_server_cleans_up() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = MariaDb::start(ServerOptions::default()).expect("start");
        seen = Some((server.dir().to_owned(), server.port()));
        panic!("intended panic while owning a server (this message is expected)");
    }));
    assert!(result.is_err());
    let (dir, port) = seen.expect("server started");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!port_open(port));
}

#[tokio::test]
async fn overridden_settings_reach_the_server() {
    let (statement, minimal, no_binlog) = std::thread::scope(|s| {
        let statement = s.spawn(|| {
            MariaDb::start(
                ServerOptions::default()
                    .binlog_format(BinlogFormat::Statement)
                    .server_id(7)
                    .gtid_domain_id(70),
            )
        });
        let minimal = s.spawn(|| {
            MariaDb::start(
                ServerOptions::default()
                    .binlog_row_image(BinlogRowImage::Minimal)
                    .binlog_row_metadata(BinlogRowMetadata::Minimal)
                    .log_bin_compress(true),
            )
        });
        let no_binlog = s.spawn(|| MariaDb::start(ServerOptions::default().binlog(false)));
        (
            statement.join().expect("thread").expect("start statement"),
            minimal.join().expect("thread").expect("start minimal"),
            no_binlog.join().expect("thread").expect("start no binlog"),
        )
    });

    let (id, domain, format, _, _, log_bin, _) = settings(&statement.url()).await;
    assert_eq!(
        (id, domain, format.as_str(), log_bin),
        (7, 70, "STATEMENT", 1)
    );

    let (_, _, format, image, metadata, log_bin, compress) = settings(&minimal.url()).await;
    assert_eq!(
        (
            format.as_str(),
            image.as_str(),
            metadata.as_str(),
            log_bin,
            compress
        ),
        ("ROW", "MINIMAL", "MINIMAL", 1, 1)
    );

    let (_, _, _, _, _, log_bin, _) = settings(&no_binlog.url()).await;
    assert_eq!(log_bin, 0);
}

/// Not a test on its own: [`sigkilled_owner_leaves_nothing_behind`] runs this test binary with
/// only this test and [`CHILD_MODE`] set; it starts a server, reports it, and waits to be killed.
#[test]
#[ignore = "helper process of sigkilled_owner_leaves_nothing_behind"]
fn child_owner_helper() {
    if std::env::var_os(CHILD_MODE).is_none() {
        return;
    }
    let server = MariaDb::start(ServerOptions::default()).expect("start in child");
    // Written to the real stdout: the test harness captures `println!`.
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{CHILD_READY} {} {} {} {}",
        server.port(),
        server.mariadbd_pid().expect("running"),
        server.supervisor_pid(),
        server.dir().display()
    )
    .and_then(|()| stdout.flush())
    .expect("report to the parent");
    drop(stdout);
    loop {
        std::thread::park();
    }
}

#[test]
fn sigkilled_owner_leaves_nothing_behind() {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "child_owner_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process");
    let stdout = child.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map(|line| line.expect("read child stdout"))
        // libtest prints "test child_owner_helper ... " without a newline before the test runs.
        .find_map(|line| line.find(CHILD_READY).map(|at| line[at..].to_owned()));
    let Some(ready) = ready else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child exited without starting a server");
    };
    let fields: Vec<&str> = ready.split_whitespace().collect();
    let port: u16 = fields[1].parse().expect("port");
    let mariadbd: u32 = fields[2].parse().expect("pid");
    let supervisor: u32 = fields[3].parse().expect("pid");
    let dir = PathBuf::from(fields[4]);
    assert!(port_open(port));
    assert!(!process_gone(mariadbd));
    assert!(dir.exists());

    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");

    wait_sync("mariadbd is gone", || process_gone(mariadbd));
    wait_sync("the supervisor is gone", || process_gone(supervisor));
    wait_sync("the directory is gone", || !dir.exists());
    assert!(!port_open(port), "port {port} still open");
}
