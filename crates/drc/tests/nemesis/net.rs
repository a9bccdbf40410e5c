//! The nemesis cluster: three MariaDB servers of this test binary's own (the nemesis stops and
//! kills them), and per seed a fresh database, a topology file per center and five real `drc`
//! processes: one daemon for center `a`, one for `b`, and three Raft replicas for `c`.
//!
//! Every daemon reads its peers through a TCP proxy of its own ([`crate::proxy::Proxy`], one per
//! direction and pair of centers), so that the link between two centers can be cut (stalled or
//! refused) while both keep running and writing. A daemon reaches its own center's server
//! directly, as writers do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::proxy::{Mode, Proxy};

/// The centers' names, in server order.
pub const NAMES: [&str; 3] = ["a", "b", "c"];
/// Processes: 0 = daemon of a, 1 = daemon of b, 2..=4 = replicas 0..=2 of c.
pub const PROCS: usize = 5;

/// The center of process `p`.
pub fn center_of(p: usize) -> usize {
    p.min(2)
}

/// The name of process `p` (`a`, `b`, `c0`..`c2`).
pub fn proc_name(p: usize) -> String {
    match p {
        0 | 1 => NAMES[p].to_string(),
        _ => format!("c{}", p - 2),
    }
}

/// The `drc` binary: `DRC_BIN` when set (bench/soak.sh runs copies, so that a rebuild during a
/// soak changes nothing), else the one cargo built with this test.
fn drc_binary() -> PathBuf {
    std::env::var_os("DRC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_drc")))
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], drc_testkit::free_port()))
}

/// The three servers, shared by every seed of the test; the nemesis stops and starts them.
pub struct Servers {
    inner: Arc<Mutex<Vec<MariaDb>>>,
    /// Root URLs (the ports never change across restarts).
    pub urls: Vec<String>,
    /// Ports.
    pub ports: Vec<u16>,
}

impl Servers {
    /// Starts three servers in parallel.
    pub fn start() -> Servers {
        let servers: Vec<MariaDb> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| s.spawn(|| MariaDb::start(ServerOptions::default())))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("server thread").expect("server starts"))
                .collect()
        });
        let urls = servers.iter().map(MariaDb::url).collect();
        let ports = servers.iter().map(MariaDb::port).collect();
        Servers {
            inner: Arc::new(Mutex::new(servers)),
            urls,
            ports,
        }
    }

    /// Stops server `i` (`clean`: SIGTERM and wait; else SIGKILL), off the async runtime.
    pub async fn stop(&self, i: usize, clean: bool) {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = inner.lock().expect("servers lock");
            let r = if clean { s[i].stop() } else { s[i].kill() };
            r.expect("server stops");
        })
        .await
        .expect("stop task");
    }

    /// Starts server `i` again if it is not running (crash recovery included).
    pub async fn ensure_running(&self, i: usize) {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = inner.lock().expect("servers lock");
            if !s[i].is_running() {
                if let Err(e) = s[i].start_again() {
                    panic!(
                        "server {} does not start again: {e}\n{}",
                        NAMES[i],
                        s[i].error_log_tail(30)
                    );
                }
            }
        })
        .await
        .expect("start task");
    }
}

/// One seed's cluster: database, configuration files, proxies and daemon processes.
pub struct Run {
    /// The test database (same name in every center).
    pub db: String,
    /// The meta database.
    pub meta: String,
    /// Root URLs of the centers (direct).
    pub urls: Vec<String>,
    dir: tempfile::TempDir,
    log_dir: PathBuf,
    /// configs[t]: center t's topology file (its peers through t's proxies).
    configs: Vec<PathBuf>,
    /// proxies[t][s]: how center t's daemons reach center s's server.
    proxies: Vec<Vec<Option<Proxy>>>,
    metrics: Vec<SocketAddr>,
    procs: Vec<Option<Child>>,
}

impl Run {
    /// Creates the database with `schema` in every center and writes the topology files.
    pub async fn new(servers: &Servers, seed: u64, schema: &str) -> Run {
        let db = drc_testkit::unique_db_name("nem");
        let meta = format!("{db}_meta");
        for url in &servers.urls {
            let mut c = drc_testkit::connect(url).await;
            c.query_drop(format!("CREATE DATABASE `{db}`; USE `{db}`; {schema}"))
                .await
                .expect("schema");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("raft.key");
        std::fs::write(&secret, "a nemesis test secret, 32 chars.\n").expect("raft secret");
        let mut proxies = Vec::new();
        for t in 0..3 {
            let mut row = Vec::new();
            for s in 0..3 {
                row.push(if s == t {
                    None
                } else {
                    Some(Proxy::start(servers.ports[s]).await)
                });
            }
            proxies.push(row);
        }
        let raft: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let metrics: Vec<SocketAddr> = (0..PROCS).map(|_| free_addr()).collect();
        let base =
            200_000_000u64 + (std::process::id() as u64 % 1000) * 1_000_000 + (seed % 97) * 10_000;
        let replicas: Vec<String> = raft.iter().map(|a| format!("\"{a}\"")).collect();
        let mut configs = Vec::new();
        for (t, row) in proxies.iter().enumerate() {
            let mut toml = String::new();
            for s in 0..3 {
                let url = match &row[s] {
                    Some(p) => p.url(),
                    None => servers.urls[s].clone(),
                };
                toml.push_str(&format!(
                    "[[center]]\nname = \"{}\"\nmysql = \"{url}\"\n",
                    NAMES[s]
                ));
                if s == 2 {
                    toml.push_str(&format!(
                        "replicas = [{}]\nraft_secret_file = \"{}\"\n\n",
                        replicas.join(", "),
                        secret.display()
                    ));
                } else {
                    toml.push_str(&format!("metrics_listen = \"{}\"\n\n", metrics[s]));
                }
            }
            toml.push_str(&format!(
                "[replication]\ndatabases = [\"{db}\"]\nmeta_database = \"{meta}\"\nloopback = \"auto\"\n\n\
                 [source]\nreplica_server_id_base = {base}\nheartbeat_ms = 500\nidle_timeout_ms = 5000\n"
            ));
            if seed % 4 >= 2 {
                // Every batch split four ways (parallel shares, and crashes between their
                // commits); the default sends the small batches of this load to one share.
                toml.push_str("\n[applier]\nshare_rows = 1\n");
            }
            let path = dir.path().join(format!("{}.toml", NAMES[t]));
            std::fs::write(&path, toml).expect("config");
            configs.push(path);
        }
        let log_dir = match std::env::var_os("DRC_TEST_LOGS") {
            Some(d) => PathBuf::from(d).join(&db),
            None => dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(&log_dir).expect("log dir");
        Run {
            db,
            meta,
            urls: servers.urls.clone(),
            dir,
            log_dir,
            configs,
            proxies,
            metrics,
            procs: (0..PROCS).map(|_| None).collect(),
        }
    }

    /// Starts process `p` (a first run starts its links at the sources' end; later runs resume
    /// from their checkpoints).
    pub fn start(&mut self, p: usize) {
        let center = center_of(p);
        let mut args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            self.configs[center].display().to_string(),
            "--center".into(),
            NAMES[center].into(),
            "--metrics-listen".into(),
            self.metrics[p].to_string(),
            "--log".into(),
            std::env::var("DRC_TEST_LOG_FILTER").unwrap_or_else(|_| "info,openraft=warn".into()),
            "--start".into(),
            "now".into(),
        ];
        if p >= 2 {
            args.extend([
                "--replica".into(),
                (p - 2).to_string(),
                "--data-dir".into(),
                self.dir
                    .path()
                    .join(format!("data-c{}", p - 2))
                    .display()
                    .to_string(),
            ]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{}.log", proc_name(p))))
            .expect("log file");
        let child = Command::new(drc_binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("drc run starts");
        self.procs[p] = Some(child);
    }

    /// Whether process `p` was started and not killed by the test.
    pub fn is_up(&self, p: usize) -> bool {
        self.procs[p].is_some()
    }

    /// SIGKILLs process `p` (a stopped process dies too).
    pub fn kill9(&mut self, p: usize) {
        if let Some(mut c) = self.procs[p].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, p: usize, sig: &str) {
        if let Some(c) = &self.procs[p] {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// SIGSTOPs (`true`) or SIGCONTs (`false`) process `p`.
    pub fn pause(&mut self, p: usize, on: bool) {
        if self.procs[p].is_some() {
            self.signal(p, if on { "-STOP" } else { "-CONT" });
        }
    }

    /// Cuts the link between centers `x` and `y` in both directions (`Pause` stalls,
    /// `Refuse` closes), or heals it (`Forward`).
    pub fn link(&self, x: usize, y: usize, mode: Mode) {
        for (t, s) in [(x, y), (y, x)] {
            if let Some(p) = &self.proxies[t][s] {
                p.set(mode);
            }
        }
    }

    /// Processes that exited although the test did not kill them: (name, exit status).
    pub fn crashed(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for p in 0..PROCS {
            if let Some(c) = self.procs[p].as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    out.push((proc_name(p), status.to_string()));
                }
            }
        }
        out
    }

    /// Restarts, on a new metrics port, every process that exited because its port was taken
    /// meanwhile (ports are picked free, then bound by drc a moment later: another process on
    /// the machine can take one in between). True when one was restarted.
    pub fn restart_on_taken_ports(&mut self) -> bool {
        let mut again = false;
        for p in 0..PROCS {
            let exited = self.procs[p]
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            let log = std::fs::read_to_string(self.log_dir.join(format!("{}.log", proc_name(p))))
                .unwrap_or_default();
            if exited && log.contains("Address already in use") {
                self.procs[p] = None;
                self.metrics[p] = free_addr();
                self.start(p);
                again = true;
            }
        }
        again
    }

    /// `/health` of process `p`, if it answers within 2 s.
    pub async fn health(&self, p: usize) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.metrics[p];
        let fut = async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
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

    /// The replica of `c` that holds the fence (the active one), if c's server answers.
    pub async fn active_replica(&self) -> Option<usize> {
        let url = format!("{}/{}", self.urls[2], self.meta);
        let fut = async move {
            let mut c = mysql_async::Conn::from_url(&url).await.ok()?;
            let r: Option<u32> = c
                .query_first("SELECT `replica` FROM `fence` WHERE `center` = 'c'")
                .await
                .ok()?;
            let _ = c.disconnect().await;
            r
        };
        tokio::time::timeout(Duration::from_secs(3), fut)
            .await
            .ok()
            .flatten()
            .map(|r| r as usize)
    }

    /// The replica of `c` whose `/health` says it leads (when c's server is down, the fence
    /// cannot be read); replica 0 when none says so.
    pub async fn leader_by_health(&self) -> usize {
        for r in 0..3 {
            if let Some(h) = self.health(2 + r).await {
                if h["role"] == "leader" {
                    return r;
                }
            }
        }
        0
    }

    /// Waits until a and b report their links running and c has an active replica that does.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut ok = true;
            for p in 0..2 {
                ok &= self.health(p).await.is_some_and(|h| h["ok"] == true);
            }
            ok &= match self.active_replica().await {
                Some(r) => self.health(2 + r).await.is_some_and(|h| h["ok"] == true),
                None => false,
            };
            if ok {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `lines` lines of every process's log (openraft's lines left out).
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in 0..PROCS {
            let text = std::fs::read_to_string(self.log_dir.join(format!("{}.log", proc_name(p))))
                .unwrap_or_default();
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .filter(|l| !l.contains(" openraft::"))
                .take(lines)
                .collect();
            out.push_str(&format!(
                "--- {}.log (last {lines} lines) ---\n",
                proc_name(p)
            ));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Log lines of every process that say a thread panicked.
    pub fn panics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in 0..PROCS {
            let text = std::fs::read_to_string(self.log_dir.join(format!("{}.log", proc_name(p))))
                .unwrap_or_default();
            out.extend(
                text.lines()
                    .filter(|l| l.contains("panicked"))
                    .map(|l| format!("{}: {l}", proc_name(p))),
            );
        }
        out
    }

    /// Drops the seed's databases (after it passed), to keep a long soak's servers small.
    pub async fn drop_databases(&self) {
        for url in &self.urls {
            if let Ok(mut c) = mysql_async::Conn::from_url(url.as_str()).await {
                let _ = c
                    .query_drop(format!(
                        "DROP DATABASE IF EXISTS `{}`; DROP DATABASE IF EXISTS `{}`",
                        self.db, self.meta
                    ))
                    .await;
                let _ = c.disconnect().await;
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for p in 0..PROCS {
            self.kill9(p);
        }
    }
}
