//! A center with three drc replicas, for failover tests: center `a` (the peer, one standalone
//! daemon, where a writer inserts rows) and center `b` (the target, three `drc run --replica`
//! processes). Every replica reaches every other through its own TCP proxy, one per direction
//! and pair, so a test can cut one replica off from the others and heal it. Processes are real
//! `drc` binaries, SIGKILLed on drop.
//!
//! The database checks ([`Replicas::check_single_writer`]) read only what the replicas wrote
//! in the target: `term_history`, `apply_log` and `fence` (see drc-apply's `fence` module).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::cluster::{servers, CONVERGE};

/// A TCP forwarder the test can cut (new connections dropped, open ones closed) and heal.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                if *rx.borrow() {
                    continue;
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { addr, cut, task }
    }

    /// Cuts (`true`) or heals (`false`).
    pub fn set_cut(&self, on: bool) {
        self.cut.send_replace(on);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], drc_testkit::free_port()))
}

/// The target center's name.
pub const TARGET: &str = "b";
/// The link into the target.
pub const LINK: &str = "a->b";

/// Two centers, the target with three replicas. See the module docs.
pub struct Replicas {
    /// The test's database.
    pub db: String,
    /// The meta database (same name in both centers).
    pub meta: String,
    dir: tempfile::TempDir,
    /// Where the daemons' logs go: the temporary directory, or `$DRC_TEST_LOGS/<db>` to keep
    /// them after the test.
    log_dir: PathBuf,
    configs: Vec<PathBuf>,
    /// proxies[i][j]: how replica i reaches replica j (None on the diagonal).
    proxies: Vec<Vec<Option<Proxy>>>,
    metrics: Vec<SocketAddr>,
    peer_metrics: SocketAddr,
    procs: Vec<Option<Child>>,
    peer: Option<Child>,
}

impl Replicas {
    /// Creates the databases (`schema` in both centers) and the configuration files.
    pub async fn new(prefix: &str, schema: &str) -> Replicas {
        let db = drc_testkit::unique_db_name(prefix);
        let meta = format!("{db}_meta");
        for s in &servers()[..2] {
            let mut c = drc_testkit::connect(&s.url()).await;
            c.query_drop(format!("CREATE DATABASE `{db}`; USE `{db}`; {schema}"))
                .await
                .expect("schema");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("raft.key");
        std::fs::write(&secret, "a test secret of 32 characters..\n").expect("raft secret");
        let real: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let mut proxies = Vec::new();
        for i in 0..3 {
            let mut row = Vec::new();
            for (j, r) in real.iter().enumerate() {
                row.push(if i == j {
                    None
                } else {
                    Some(Proxy::start(*r).await)
                });
            }
            proxies.push(row);
        }
        let base = 3_500_000_000u32 + (std::process::id() % 1000) * 100_000 + next_id() * 1_000;
        let mut configs = Vec::new();
        for (i, row) in proxies.iter().enumerate() {
            let addrs: Vec<String> = (0..3)
                .map(|j| match &row[j] {
                    Some(p) => format!("\"{}\"", p.addr),
                    None => format!("\"{}\"", real[i]),
                })
                .collect();
            let toml = format!(
                "[[center]]\nname = \"a\"\nmysql = \"{}\"\n\n\
                 [[center]]\nname = \"b\"\nmysql = \"{}\"\nreplicas = [{}]\nraft_secret_file = \"{}\"\n\n\
                 [replication]\ndatabases = [\"{db}\"]\nmeta_database = \"{meta}\"\n\n\
                 [source]\nreplica_server_id_base = {base}\nheartbeat_ms = 500\nidle_timeout_ms = 5000\n\n\
                 [applier]\nparallelism = 2\nshare_rows = 1\n\n\
                 [election]\napply_log_slots = 10000000\n{}\n",
                servers()[0].url(),
                servers()[1].url(),
                addrs.join(", "),
                secret.display(),
                // Other election timings, for the failover benchmark only (TOML lines).
                std::env::var("FAILOVER_ELECTION").unwrap_or_default()
            );
            let path = dir.path().join(format!("b{i}.toml"));
            std::fs::write(&path, toml).expect("config");
            configs.push(path);
        }
        let log_dir = match std::env::var_os("DRC_TEST_LOGS") {
            Some(d) => PathBuf::from(d).join(&db),
            None => dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(&log_dir).expect("log dir");
        Replicas {
            db,
            meta,
            dir,
            log_dir,
            configs,
            proxies,
            metrics: (0..3).map(|_| free_addr()).collect(),
            peer_metrics: free_addr(),
            procs: vec![None, None, None],
            peer: None,
        }
    }

    fn spawn(&self, args: &[String], log: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(log))
            .expect("log file");
        Command::new(env!("CARGO_BIN_EXE_drc"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("drc run starts")
    }

    /// Starts the peer center's daemon.
    pub fn start_peer(&mut self) {
        let args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            self.configs[0].display().to_string(),
            "--center".into(),
            "a".into(),
            "--metrics-listen".into(),
            self.peer_metrics.to_string(),
            "--log".into(),
            "info".into(),
            "--start".into(),
            "now".into(),
        ];
        self.peer = Some(self.spawn(&args, "a.log"));
    }

    /// Starts replica `i` of the target.
    pub fn start(&mut self, i: usize) {
        let args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            self.configs[i].display().to_string(),
            "--center".into(),
            TARGET.into(),
            "--replica".into(),
            i.to_string(),
            "--data-dir".into(),
            self.dir
                .path()
                .join(format!("data-b{i}"))
                .display()
                .to_string(),
            "--metrics-listen".into(),
            self.metrics[i].to_string(),
            "--log".into(),
            std::env::var("DRC_TEST_LOG_FILTER").unwrap_or_else(|_| "info,openraft=warn".into()),
            "--start".into(),
            "now".into(),
        ];
        self.procs[i] = Some(self.spawn(&args, &format!("b{i}.log")));
    }

    /// Starts the peer's daemon and the three replicas.
    pub fn start_all(&mut self) {
        self.start_peer();
        for i in 0..3 {
            self.start(i);
        }
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.procs[i] {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .expect("kill runs")
                .success();
            assert!(ok, "kill {sig} replica {i}");
        }
    }

    /// SIGKILLs replica `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOPs replica `i`.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONTs replica `i`.
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    /// Cuts replica `i` off from the other replicas (both directions), or heals it.
    pub fn isolate(&self, i: usize, on: bool) {
        for (a, row) in self.proxies.iter().enumerate() {
            for (b, p) in row.iter().enumerate() {
                if let Some(p) = p {
                    if a == i || b == i {
                        p.set_cut(on);
                    }
                }
            }
        }
    }

    /// Every log so far (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["a", "b0", "b1", "b2"] {
            let text = std::fs::read_to_string(self.log_dir.join(format!("{name}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .filter(|l| !l.contains(" openraft::"))
                .take(40)
                .collect();
            out.push_str(&format!(
                "--- {name}.log (last 40 lines but openraft's) ---\n"
            ));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `/health` of replica `i`.
    pub async fn health(&self, i: usize) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fut = async {
            let mut s = TcpStream::connect(self.metrics[i]).await.ok()?;
            s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.ok()?;
            let text = String::from_utf8_lossy(&buf).to_string();
            serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
        };
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .ok()
            .flatten()
    }

    /// Waits until the three replicas report the same last Raft log index in `/health`.
    pub async fn wait_raft_logs_equal(&self) {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            let mut idx = Vec::new();
            for i in 0..3 {
                idx.push(
                    self.health(i)
                        .await
                        .and_then(|h| h["raft_log_index"].as_u64()),
                );
            }
            if idx[0].is_some() && idx.iter().all(|x| *x == idx[0]) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("raft logs did not catch up: {idx:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A connection to the target's server, in the meta database.
    pub async fn target_meta(&self) -> mysql_async::Conn {
        drc_testkit::connect(&servers()[1].url_for(&self.meta)).await
    }

    /// The fence row of the target: (term, replica).
    pub async fn fence(&self) -> Option<(u64, u32)> {
        let mut c = self.target_meta().await;
        c.exec_first(
            "SELECT `term`, `replica` FROM `fence` WHERE `center` = ?",
            (TARGET,),
        )
        .await
        .ok()
        .flatten()
    }

    /// The target server's clock, microseconds since the epoch.
    pub async fn db_now_us(&self) -> i64 {
        let mut c = self.target_meta().await;
        c.query_first("SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)")
            .await
            .expect("now")
            .expect("row")
    }

    /// When `term` took the fence and when it first committed an apply transaction,
    /// microseconds since the epoch (target server's clock).
    pub async fn term_times_us(&self, term: u64) -> (i64, i64) {
        let mut c = self.target_meta().await;
        c.exec_first(
            "SELECT CAST(UNIX_TIMESTAMP(h.started_at) * 1000000 AS SIGNED), \
             CAST(UNIX_TIMESTAMP(MIN(l.committed_at)) * 1000000 AS SIGNED) \
             FROM term_history h JOIN apply_log l ON l.term = h.term \
             WHERE h.center = ? AND h.term = ? GROUP BY h.started_at",
            (TARGET, term),
        )
        .await
        .expect("term times")
        .expect("term applied")
    }

    /// Apply transactions committed under `term`.
    pub async fn applied_in_term(&self, term: u64) -> u64 {
        let mut c = self.target_meta().await;
        c.exec_first("SELECT COUNT(*) FROM `apply_log` WHERE `term` = ?", (term,))
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Waits until a term above `above` holds the fence and has committed an apply
    /// transaction that carried rows; returns (term, replica).
    pub async fn wait_leader_applying(&self, above: u64, rows_before: u64) -> (u64, u32) {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            if let Some((term, replica)) = self.fence().await {
                if term > above && self.applied_in_term(term).await > 0 {
                    let mut c = drc_testkit::connect(&servers()[1].url_for(&self.db)).await;
                    let n: u64 = c
                        .query_first("SELECT COUNT(*) FROM t")
                        .await
                        .expect("count")
                        .unwrap_or(0);
                    if n > rows_before {
                        return (term, replica);
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no leader above term {above} applied within {CONVERGE:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The target server's threads and transactions, for failure messages.
    pub async fn server_state(&self) -> String {
        let mut c = self.target_meta().await;
        let procs: Vec<mysql_async::Row> = c
            .query("SELECT ID, USER, DB, COMMAND, TIME, STATE, LEFT(INFO, 120) FROM information_schema.PROCESSLIST")
            .await
            .unwrap_or_default();
        let trx: Vec<mysql_async::Row> = c
            .query("SELECT trx_id, trx_state, trx_started, trx_mysql_thread_id, LEFT(trx_query, 120) FROM information_schema.INNODB_TRX")
            .await
            .unwrap_or_default();
        let log: Vec<mysql_async::Row> = c
            .query("SELECT * FROM apply_log ORDER BY committed_at DESC LIMIT 10")
            .await
            .unwrap_or_default();
        let cps: Vec<mysql_async::Row> = c
            .query("SELECT link, worker, batch, workers, term, end_position FROM checkpoint")
            .await
            .unwrap_or_default();
        let lines = |rows: Vec<mysql_async::Row>| {
            rows.into_iter()
                .map(|r| {
                    let vals: Vec<String> = r.unwrap().iter().map(|v| v.as_sql(false)).collect();
                    format!("| {}\n", vals.join(" | "))
                })
                .collect::<String>()
        };
        format!(
            "processes:\n{}transactions:\n{}apply_log:\n{}checkpoints:\n{}",
            lines(procs),
            lines(trx),
            lines(log),
            lines(cps)
        )
    }

    /// Waits until the link into the target has stored its starting position (a new link
    /// starts at the source's current position: rows written before that are not its to copy).
    pub async fn wait_link_started(&self) {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            let mut c = self.target_meta().await;
            let n: Option<u64> = c
                .exec_first(
                    "SELECT COUNT(*) FROM `checkpoint` WHERE `link` = ?",
                    (LINK,),
                )
                .await
                .ok()
                .flatten();
            if n.unwrap_or(0) > 0 {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the link never started\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Rows of `t` in the target.
    pub async fn target_rows(&self) -> u64 {
        let mut c = drc_testkit::connect(&servers()[1].url_for(&self.db)).await;
        c.query_first("SELECT COUNT(*) FROM t")
            .await
            .expect("count")
            .unwrap_or(0)
    }

    /// Waits until the target has exactly the peer's rows of `t` (count and content).
    pub async fn wait_converged(&self, written: u64) {
        let sum = |i: usize| {
            let url = servers()[i].url_for(&self.db);
            async move {
                let mut c = drc_testkit::connect(&url).await;
                let r: Option<(u64, Option<String>)> = c
                    .query_first(
                        "SELECT COUNT(*), SHA2(GROUP_CONCAT(CONCAT(id, ':', v) ORDER BY id), 256) FROM t",
                    )
                    .await
                    .expect("checksum");
                r.expect("row")
            }
        };
        let deadline = tokio::time::Instant::now() + CONVERGE;
        loop {
            let (a, b) = (sum(0).await, sum(1).await);
            if a.0 == written && a == b {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "target did not converge: written {written}, peer {:?}, target {:?}\n{}\n{}",
                    a.0,
                    b.0,
                    self.logs(),
                    self.server_state().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Proves from the target's database that at most one replica applied at any time, and
    /// that the peer never received the target's fence tables. Returns the terms that applied.
    pub async fn check_single_writer(&self) -> Vec<(u64, u32)> {
        let mut c = self.target_meta().await;
        let q = |sql: &str| sql.replace("{c}", TARGET);
        // Every applied term is in the history, under the replica that applied it.
        let orphans: Vec<(u64, u64, u32)> = c
            .query(q(
                "SELECT l.batch, l.term, l.replica FROM apply_log l LEFT JOIN term_history h \
                      ON h.center = '{c}' AND h.term = l.term \
                      WHERE h.term IS NULL OR h.replica <> l.replica",
            ))
            .await
            .expect("orphans");
        assert!(
            orphans.is_empty(),
            "apply_log rows whose term is not that replica's: {orphans:?}"
        );
        // No transaction of an older term committed after a newer term took the fence.
        let stale: Vec<(u64, u64, String, u64, String)> = c
            .query(q("SELECT l.batch, l.term, CAST(l.committed_at AS CHAR), h.term, CAST(h.started_at AS CHAR) \
                      FROM apply_log l JOIN term_history h ON h.center = '{c}' AND h.term > l.term \
                      AND h.started_at <= l.committed_at"))
            .await
            .expect("stale");
        assert!(
            stale.is_empty(),
            "older terms committed after the fence moved: {stale:?}\n{}",
            self.logs()
        );
        // Terms never go back in batch order.
        let back: Vec<(u64, u64, u64, u64)> = c
            .query(
                "SELECT x.batch, x.term, y.batch, y.term FROM apply_log x JOIN apply_log y \
                    ON x.link = y.link AND x.batch < y.batch AND x.term > y.term LIMIT 10",
            )
            .await
            .expect("order");
        assert!(
            back.is_empty(),
            "a later batch under an older term: {back:?}"
        );
        // The checkpoint rows carry the newest applying term.
        let cp_terms: Vec<u64> = c
            .query(format!(
                "SELECT DISTINCT `term` FROM `checkpoint` WHERE `link` = '{LINK}'"
            ))
            .await
            .expect("checkpoint terms");
        assert!(
            cp_terms.iter().all(|&t| t > 0),
            "checkpoint rows without a term: {cp_terms:?}"
        );
        let terms: Vec<(u64, u32)> = c
            .query(q(
                "SELECT DISTINCT l.term, l.replica FROM apply_log l ORDER BY l.term",
            ))
            .await
            .expect("terms");
        // The peer never applied the target's fence tables (they are local state).
        let mut p = drc_testkit::connect(&servers()[0].url_for(&self.meta)).await;
        let leaked: (u64, u64, u64) = p
            .query_first(q(
                "SELECT (SELECT COUNT(*) FROM fence WHERE center = '{c}'), \
                            (SELECT COUNT(*) FROM term_history WHERE center = '{c}'), \
                            (SELECT COUNT(*) FROM apply_log WHERE link LIKE '%->{c}')",
            ))
            .await
            .expect("peer meta")
            .expect("row");
        assert_eq!(leaked, (0, 0, 0), "the peer has the target's fence rows");
        terms
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for i in 0..3 {
            self.resume(i);
            self.kill9(i);
        }
        if let Some(mut c) = self.peer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Inserts rows into the peer center, one per transaction, until stopped.
pub struct Writer {
    written: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Writer {
    /// Starts writing into `db`.`t` of the peer center, one row every `period`.
    pub fn start(db: &str, period: Duration) -> Writer {
        let url = servers()[0].url_for(db);
        let written = Arc::new(AtomicU64::new(0));
        let (stop, mut rx) = watch::channel(false);
        let w = written.clone();
        let task = tokio::spawn(async move {
            let mut c = drc_testkit::connect(&url).await;
            let mut tick = tokio::time::interval(period);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.changed() => return n,
                }
                n += 1;
                c.query_drop(format!(
                    "INSERT INTO t (id, v) VALUES ({n}, {})",
                    n * 7 % 1000
                ))
                .await
                .expect("insert at the peer");
                w.store(n, Ordering::SeqCst);
            }
        });
        Writer {
            written,
            stop,
            task,
        }
    }

    /// Rows written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops and returns the number of rows written.
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.expect("writer")
    }
}

fn next_id() -> u32 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u32
}
