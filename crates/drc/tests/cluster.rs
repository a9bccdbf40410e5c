//! A three-center test cluster: the shared servers of this test binary, a database and a meta
//! database of the test's own (so tests share servers without sharing state), and `drc run`
//! daemons started and SIGKILLed as real processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drc_testkit::MariaDb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Deadline for convergence waits.
pub const CONVERGE: Duration = Duration::from_secs(120);

/// Names of the centers, in server order.
pub const NAMES: [&str; 3] = ["a", "b", "c"];

/// The servers shared by this test binary (three centers).
pub fn servers() -> &'static [MariaDb] {
    drc_testkit::shared_servers(3)
}

fn free_port() -> u16 {
    drc_testkit::free_port()
}

/// A cluster of three centers for one test.
pub struct Cluster {
    /// The test's database (same name in every center).
    pub db: String,
    /// The topology file.
    pub config: PathBuf,
    /// metrics_listen ports.
    pub ports: Vec<u16>,
    /// The centers' server URLs (without database).
    urls: Vec<String>,
    dir: tempfile::TempDir,
    daemons: Vec<Option<Child>>,
}

impl Cluster {
    /// Creates the database in every center with `schema` (statements run in each center) and
    /// writes a topology file; `extra` is appended to it (e.g. an `[applier]` table).
    pub async fn new(prefix: &str, schema: &str, loopback: &str, extra: &str) -> Cluster {
        let urls: Vec<String> = servers().iter().map(|s| s.url()).collect();
        Cluster::on(&urls, prefix, schema, loopback, extra).await
    }

    /// [`Cluster::new`] on three servers of the test's own (e.g. servers it restarts).
    pub async fn on(
        urls: &[String],
        prefix: &str,
        schema: &str,
        loopback: &str,
        extra: &str,
    ) -> Cluster {
        let db = drc_testkit::unique_db_name(prefix);
        let meta = format!("{db}_meta");
        for url in urls {
            let mut c = drc_testkit::connect(url).await;
            c.query_drop(format!("CREATE DATABASE `{db}`; USE `{db}`; {schema}"))
                .await
                .expect("schema");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut toml = String::new();
        for (i, url) in urls.iter().enumerate() {
            toml.push_str(&format!(
                "[[center]]\nname = \"{}\"\nmysql = \"{}\"\nmetrics_listen = \"127.0.0.1:{}\"\n\n",
                NAMES[i], url, ports[i]
            ));
        }
        // A replica id range of this test's own, so that tests sharing servers never clash.
        let base = 100_000_000 + (std::process::id() % 1000) * 1_000_000 + next_id() * 10_000;
        toml.push_str(&format!(
            "[replication]\ndatabases = [\"{db}\"]\nmeta_database = \"{meta}\"\nloopback = \"{loopback}\"\n\n\
             [source]\nreplica_server_id_base = {base}\nheartbeat_ms = 500\nidle_timeout_ms = 5000\n\n{extra}\n"
        ));
        let config = dir.path().join("drc.toml");
        std::fs::write(&config, toml).expect("config");
        Cluster {
            db,
            config,
            ports,
            urls: urls.to_vec(),
            dir,
            daemons: vec![None, None, None],
        }
    }

    /// Starts the daemon of center `i`. The test clusters start empty: a link's first run
    /// starts at its source's end (`--start now`).
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &["--start", "now"]);
    }

    /// Starts the daemon of center `i` with `extra` arguments of `drc run`.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) {
        self.start_env(i, extra, &[]);
    }

    /// Starts the daemon of center `i` with `extra` arguments and `env` variables.
    pub fn start_env(&mut self, i: usize, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", NAMES[i])))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--center", NAMES[i], "--log", "info"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("drc run starts");
        self.daemons[i] = Some(child);
    }

    /// Starts every daemon.
    pub fn start_all(&mut self) {
        for i in 0..3 {
            self.start(i);
        }
    }

    /// SIGKILLs the daemon of center `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.daemons[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to the daemon of center `i`; true once it exited within `limit` (false:
    /// it still runs, and is SIGKILLed when the cluster is dropped).
    pub async fn terminate(&mut self, i: usize, limit: Duration) -> bool {
        let Some(child) = self.daemons[i].as_mut() else {
            return true;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if child.try_wait().expect("wait").is_some() {
                self.daemons[i] = None;
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the daemon of center `i` reports all its links running.
    pub async fn wait_center_running(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            if let Some(h) = self.health(i).await {
                if h["ok"] == true {
                    return;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the links of center {} run\n{}", NAMES[i], self.log(i));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id of center `i`'s daemon, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.daemons[i].as_ref().map(Child::id)
    }

    /// `drc status` of the cluster: its exit code and what it printed.
    pub fn status(&self) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(["status", "--config"])
            .arg(&self.config)
            .output()
            .expect("drc status");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }

    /// The log of center `i`'s daemon so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", NAMES[i])))
            .unwrap_or_default()
    }

    /// A connection to center `i`, using the test's database.
    pub async fn conn(&self, i: usize) -> Conn {
        let url = &self.urls[i];
        let url = match url.split_once('?') {
            Some((base, query)) => format!("{base}/{}?{query}", self.db),
            None => format!("{url}/{}", self.db),
        };
        drc_testkit::connect(&url).await
    }

    /// Runs `drc ARGS --config <this cluster's file>`; its exit code and stdout + stderr.
    pub fn drc(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("drc runs");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The `/health` JSON of center `i`'s daemon, if it answers.
    pub async fn health(&self, i: usize) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.ports[i]))
            .await
            .ok()?;
        s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
    }

    /// The `/metrics` text of center `i`'s daemon, if it answers.
    pub async fn metrics(&self, i: usize) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.ports[i]))
            .await
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).to_string())
    }

    /// Waits until every daemon reports all its links running.
    pub async fn wait_running(&self) {
        for (i, name) in NAMES.iter().enumerate() {
            let what = format!("the links of center {name} run (log: see below)");
            let deadline = tokio::time::Instant::now() + CONVERGE;
            loop {
                if let Some(h) = self.health(i).await {
                    if h["ok"] == true {
                        break;
                    }
                }
                if tokio::time::Instant::now() > deadline {
                    panic!("{what}\n{}", self.log(i));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// A checksum of `table`'s rows in center `i` (order-independent content hash).
    pub async fn checksum(&self, i: usize, table: &str) -> (u64, Option<String>) {
        let mut c = self.conn(i).await;
        let cols: Vec<String> = c
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&self.db, table),
            )
            .await
            .expect("columns");
        let concat = cols
            .iter()
            .map(|c| format!("COALESCE(HEX(`{}`), 'NULL')", c.replace('`', "``")))
            .collect::<Vec<_>>()
            .join(", '|', ");
        c.query_first(format!(
            "SELECT COUNT(*), SHA2(GROUP_CONCAT(SHA2(CONCAT({concat}), 256) ORDER BY 1 SEPARATOR ''), 256) FROM `{}`",
            table.replace('`', "``")
        ))
        .await
        .expect("checksum")
        .expect("row")
    }

    /// True once `table` has identical content in all three centers; false after `limit`.
    pub async fn converges_within(&self, table: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let a = self.checksum(0, table).await;
            if a == self.checksum(1, table).await && a == self.checksum(2, table).await {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `table` has identical content in all three centers, and returns its row count.
    pub async fn wait_converged(&self, table: &str) -> u64 {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            let a = self.checksum(0, table).await;
            let b = self.checksum(1, table).await;
            let c = self.checksum(2, table).await;
            if a == b && b == c {
                return a.0;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{table} did not converge within {CONVERGE:?}: a={a:?} b={b:?} c={c:?}\n--- a ---\n{}\n--- b ---\n{}\n--- c ---\n{}",
                    self.log(0),
                    self.log(1),
                    self.log(2)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill9(i);
        }
    }
}

fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
