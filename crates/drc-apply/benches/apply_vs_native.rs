//! Apply throughput of a drc link a -> b, side by side with native MariaDB replication applying
//! the same backlog, on the same machine, in the same run.
//!
//! Run with `cargo bench -p drc-apply --bench apply_vs_native` (or `bench/apply_vs_native.sh`).
//! This is a benchmark, not a test: it prints figures and fails only when a target's data differs
//! from the source's, a row count is off, or replication stops with an error.
//!
//! What it does:
//!
//! 1. Starts source **a** (drc-testkit MariaDB, relaxed durability: it only produces the backlog)
//!    and seeds `bench.sbtest1 (id INT AUTO_INCREMENT PK, k INT, c CHAR(120), pad CHAR(60),
//!    KEY k_1(k))` with `--rows` rows (default 100,000) from deterministic server-side SQL
//!    (Sequence engine, `RAND(id)`, `SHA2`). Records a's GTID position (the **start**).
//! 2. Generates the backlog on a: `--txns` transactions (default 100,000) shaped like sysbench
//!    `oltp_write_only`: `UPDATE .. SET k = k + 1 WHERE id = ?`, `UPDATE .. SET c = ? WHERE
//!    id = ?`, `DELETE .. WHERE id = ?`, `INSERT .. (id, k, c, pad) VALUES (<same id>, ..)`;
//!    ids and texts come from a splitmix64 stream with a fixed `--seed` (printed). That is
//!    exactly 4 row changes per transaction (2 updates, 1 delete, 1 insert). Transactions are sent
//!    `--txns-per-query` at a time as multi-statement text (`BEGIN; ..; COMMIT; BEGIN; ..`).
//!    Records a's GTID position (the **end**) and `CHECKSUM TABLE` of the result.
//! 3. For each `--mode` (`durable`: targets with `innodb_flush_log_at_trx_commit=1`,
//!    `sync_binlog=1`; `relaxed`: 2 and 0) and each `--targets` entry, starts a fresh target
//!    server, seeds it with the same SQL under `sql_log_bin = 0` (its checksum must equal a's at
//!    the start position), applies a's backlog from the start position, and measures the wall
//!    time from the start of apply until the target has the end position:
//!    - `native:N`: `SET GLOBAL gtid_slave_pos = '<start>'`, `slave_parallel_threads = N`,
//!      `slave_parallel_mode = --parallel-mode` (default `optimistic`), `CHANGE MASTER TO ..
//!      MASTER_USE_GTID = slave_pos`; timed from `START SLAVE` until `MASTER_GTID_WAIT('<end>')`
//!      returns (polled with a 1 s timeout per call and an overall deadline, checking
//!      `SHOW SLAVE STATUS` for errors in between). Native targets run with
//!      `log_slave_updates=ON` (they binlog what they apply, as a drc target does) unless
//!      `--native-log-slave-updates off`.
//!    - `drc:N`: an in-process link a -> b (`drc_apply::run_link`, default drc configuration
//!      with `[applier] parallelism = N`; source and target over TCP loopback unless `--socket`).
//!      The initial checkpoint row is written first, pointing at the start position. Timed from
//!      spawning `run_link` (connect, canary and all) until the link's last applied position
//!      covers the end position. The link's row counters must equal the backlog's (per kind).
//!    - `phases:N`, `grouped:N`: not drc's link, but the same pipeline assembled in this file from
//!      drc-apply's public parts (`Source` -> `Batcher` -> `plan` -> `sql::statements` ->
//!      `Applier`) with every step timed per batch, to show where the time goes. `grouped:N`
//!      differs in one step only: inside each share, changes are ordered by key-dependency level
//!      before the rewrite (a change moves ahead of earlier changes of its share only when
//!      they share no key value), so same-kind changes form long multi-row statements. It is a
//!      measured prototype of a possible change, not drc's behaviour.
//!
//!    Every target's `CHECKSUM TABLE bench.sbtest1` (and row count, `SUM(k)`) must equal a's,
//!    or the run fails.
//! 4. Prints one results table: wall seconds, row changes per second, source transactions per
//!    second, and the CPU seconds of the target's `mariadbd`, the source's `mariadbd`, and this
//!    process (drc) during the apply (from `/proc/<pid>/stat`; steadier than wall time on a
//!    shared machine).
//!
//! A debug build (`cargo test --workspace --all-targets` runs bench targets too) defaults to a
//! smoke run instead: 300 transactions on 1,000 rows, relaxed, `native:0,drc:2`, checksums
//! checked; options still apply.
//!
//! Options (after `--` with `cargo bench`): `--txns N`, `--rows N`, `--seed N`,
//! `--txns-per-query N`, `--mode durable|relaxed|both`, `--targets native:0,native:4,drc:4,..`,
//! `--parallel-mode optimistic|conservative|aggressive|minimal`, `--native-log-slave-updates
//! on|off`, `--socket` (drc over the Unix socket), `--phases` (adds `phases:4,grouped:4`),
//! `--batch-rows N` (drc's `[applier] batch_rows`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_apply::batch::Batcher;
use drc_apply::filter::{LinkFilter, Origin};
use drc_apply::meta::{self, Checkpoint};
use drc_apply::worker::{Applier, Tag};
use drc_apply::{plan, run_link, sql, LinkSpec, LinkState, LinkStatus, Metrics};
use drc_core::change::{ChangeKind, RowChange};
use drc_core::position::Position;
use drc_source::{Source, SourceConfig, StartFrom};
use drc_testkit::{MariaDb, ServerOptions};
use futures_util::future::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::{mpsc, watch};

/// The database the bench writes to.
const DB: &str = "bench";
/// drc's meta database (the configuration's default).
const META_DB: &str = "drc_meta";
/// The link's name, as the daemon would call it.
const LINK: &str = "a->b";
/// Seed rows are inserted this many per statement.
const SEED_CHUNK: u64 = 10_000;
/// Applying the backlog on one target must finish within this.
const APPLY_DEADLINE: Duration = Duration::from_secs(1800);
/// How often the drc link's applied position is looked at (an in-process mutex).
const DRC_POLL: Duration = Duration::from_millis(2);
/// The link must stop within this after shutdown is signalled.
const STOP_DEADLINE: Duration = Duration::from_secs(60);
/// Server settings shared by the source and every target, so that the whole table and the
/// backlog's redo fit without checkpoint stalls. Same for native and drc targets.
const SERVER_ARGS: [&str; 3] = [
    "--innodb-buffer-pool-size=512M",
    "--innodb-log-file-size=512M",
    "--innodb-log-buffer-size=64M",
];
/// Replica server ids the drc links register with on a (distinct per link, even: the canary
/// uses `+ 1` on the target).
const REPLICA_ID_BASE: u32 = 3_900_000_000;
/// Linux `USER_HZ`: the unit of `utime`/`stime` in `/proc/<pid>/stat`.
const CLOCK_TICKS: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Durable,
    Relaxed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Durable => "durable",
            Mode::Relaxed => "relaxed",
        }
    }

    fn options(self) -> ServerOptions {
        let o = ServerOptions::default().args(SERVER_ARGS);
        match self {
            Mode::Durable => o.durable(),
            Mode::Relaxed => o.innodb_flush_log_at_trx_commit(2).sync_binlog(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Native replication with `slave_parallel_threads = N` (0 = serial).
    Native(u32),
    /// A drc link with `[applier] parallelism = N`.
    Drc(usize),
    /// The drc pipeline assembled here with per-batch timings (`grouped`: ordered by
    /// dependency level inside each share before the rewrite).
    Phases { workers: usize, grouped: bool },
}

impl Target {
    fn parse(s: &str) -> Target {
        let (kind, n) = s
            .split_once(':')
            .unwrap_or_else(|| panic!("target {s:?}: expected KIND:N, e.g. native:4 or drc:4"));
        let n: usize = n
            .parse()
            .unwrap_or_else(|_| panic!("target {s:?}: {n:?} is not a number"));
        match kind {
            "native" => Target::Native(u32::try_from(n).expect("thread count fits u32")),
            "drc" if n >= 1 => Target::Drc(n),
            "phases" if n >= 1 => Target::Phases {
                workers: n,
                grouped: false,
            },
            "grouped" if n >= 1 => Target::Phases {
                workers: n,
                grouped: true,
            },
            _ => panic!("target {s:?}: kind must be native:N, drc:N, phases:N or grouped:N"),
        }
    }

    fn label(self, parallel_mode: &str) -> String {
        match self {
            Target::Native(0) => "native, serial".into(),
            Target::Native(n) => format!("native, {n} threads {parallel_mode}"),
            Target::Drc(n) => format!("drc, parallelism {n}"),
            Target::Phases {
                workers,
                grouped: false,
            } => format!("drc pipeline timed, {workers}"),
            Target::Phases {
                workers,
                grouped: true,
            } => format!("drc grouped (proto), {workers}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    txns: u64,
    rows: u64,
    seed: u64,
    txns_per_query: u64,
    modes: Vec<Mode>,
    targets: Vec<Target>,
    parallel_mode: String,
    log_slave_updates: bool,
    socket: bool,
    batch_rows: Option<usize>,
}

fn parse_opts(args: &[String]) -> Opts {
    // `cargo test --all-targets` runs this binary too, as a debug build and without `--bench`:
    // then the defaults are a small smoke run (a few seconds) that still checks the checksums.
    let smoke = cfg!(debug_assertions);
    let mut o = Opts {
        txns: if smoke { 300 } else { 100_000 },
        rows: if smoke { 1_000 } else { 100_000 },
        seed: 0x5EED_2026,
        txns_per_query: 250,
        modes: if smoke {
            vec![Mode::Relaxed]
        } else {
            vec![Mode::Durable, Mode::Relaxed]
        },
        targets: if smoke {
            &["native:0", "drc:2"][..]
        } else {
            &["native:0", "native:4", "drc:4", "drc:1"][..]
        }
        .iter()
        .map(|t| Target::parse(t))
        .collect(),
        parallel_mode: "optimistic".into(),
        log_slave_updates: true,
        socket: false,
        batch_rows: None,
    };
    let mut phases = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        let num = |name: &str, v: String| -> u64 {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name} needs a number, got {v:?}"))
        };
        match a.as_str() {
            "--txns" => o.txns = num("--txns", value("--txns")),
            "--rows" => o.rows = num("--rows", value("--rows")),
            "--seed" => o.seed = num("--seed", value("--seed")),
            "--txns-per-query" => {
                o.txns_per_query = num("--txns-per-query", value("--txns-per-query")).max(1)
            }
            "--batch-rows" => {
                o.batch_rows = Some(
                    usize::try_from(num("--batch-rows", value("--batch-rows")))
                        .expect("--batch-rows fits usize"),
                )
            }
            "--mode" => {
                o.modes = match value("--mode").as_str() {
                    "durable" => vec![Mode::Durable],
                    "relaxed" => vec![Mode::Relaxed],
                    "both" => vec![Mode::Durable, Mode::Relaxed],
                    other => panic!("--mode {other:?}: expected durable, relaxed or both"),
                }
            }
            "--targets" => {
                o.targets = value("--targets")
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(Target::parse)
                    .collect()
            }
            "--parallel-mode" => o.parallel_mode = value("--parallel-mode"),
            "--native-log-slave-updates" => {
                o.log_slave_updates = match value("--native-log-slave-updates").as_str() {
                    "on" | "ON" | "1" => true,
                    "off" | "OFF" | "0" => false,
                    other => panic!("--native-log-slave-updates {other:?}: expected on or off"),
                }
            }
            "--socket" => o.socket = true,
            "--phases" => phases = true,
            // Passed by `cargo bench`; filters are meaningless for a single benchmark.
            "--bench" => {}
            other if other.starts_with('-') => panic!("unknown option {other}"),
            _ => {}
        }
    }
    if phases {
        o.targets.push(Target::Phases {
            workers: 4,
            grouped: false,
        });
        o.targets.push(Target::Phases {
            workers: 4,
            grouped: true,
        });
    }
    assert!(o.rows >= 1 && o.txns >= 1, "--rows and --txns must be >= 1");
    assert!(!o.targets.is_empty(), "--targets lists nothing to measure");
    o
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse_opts(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(parent(opts));
}

// ---------------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------------

async fn q(conn: &mut Conn, sql: &str) {
    if let Err(e) = conn.query_drop(sql).await {
        panic!("query failed: {e}\n{}", truncate(sql, 300));
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// User + system CPU seconds used so far by process `pid` (`None`: this process).
fn proc_cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(") ").map(|(_, r)| r).expect("stat format");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> f64 {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{path}: field {} missing", i + 3)) as f64
    };
    (ticks(11) + ticks(12)) / CLOCK_TICKS
}

fn server_cpu(server: &MariaDb) -> f64 {
    proc_cpu_secs(Some(server.mariadbd_pid().expect("mariadbd is running")))
}

/// `url` with mysql_async's switch to the Unix socket turned off (unless `socket`).
fn link_url(server: &MariaDb, socket: bool) -> String {
    if socket {
        server.url()
    } else {
        format!("{}?prefer_socket=false", server.url())
    }
}

/// Whether MariaDB GTID position `pos` includes every GTID of `end`.
fn covers(pos: &Position, end: &Position) -> bool {
    match (pos, end) {
        (Position::MariaGtid(p), Position::MariaGtid(e)) => e
            .iter()
            .all(|g| p.get(g.domain).is_some_and(|h| h.seq >= g.seq)),
        _ => pos == end,
    }
}

async fn position(conn: &mut Conn) -> Position {
    let info = drc_mysql::server_info(conn).await.expect("server info");
    drc_mysql::current_position(conn, &info)
        .await
        .expect("current position")
}

/// Binlog bytes written between two `SHOW MASTER STATUS` positions.
async fn binlog_bytes(
    conn: &mut Conn,
    from: &drc_core::position::FilePos,
    to: &drc_core::position::FilePos,
) -> u64 {
    let logs: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .expect("SHOW BINARY LOGS");
    let mut bytes = 0u64;
    let mut inside = false;
    for mut r in logs {
        let name: String = r.take(0).expect("log name");
        let size: u64 = r.take(1).expect("log size");
        inside |= name == from.file;
        if !inside {
            continue;
        }
        let lo = if name == from.file { from.offset } else { 0 };
        let hi = if name == to.file { to.offset } else { size };
        bytes += hi.saturating_sub(lo);
        if name == to.file {
            break;
        }
    }
    bytes
}

/// What identifies the content of `bench.sbtest1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    checksum: u64,
    count: u64,
    sum_k: i64,
}

async fn fingerprint(conn: &mut Conn) -> Fingerprint {
    let row: Option<(String, Option<u64>)> = conn
        .query_first(format!("CHECKSUM TABLE {DB}.sbtest1"))
        .await
        .expect("CHECKSUM TABLE");
    let checksum = row.and_then(|(_, c)| c).expect("a checksum");
    let (count, sum_k): (u64, i64) = conn
        .query_first(format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(k), 0) AS SIGNED) FROM {DB}.sbtest1"
        ))
        .await
        .expect("count and sum")
        .expect("a row");
    Fingerprint {
        checksum,
        count,
        sum_k,
    }
}

// ---------------------------------------------------------------------------------------------
// Data: the seed (server-side, deterministic) and the backlog (client-side, from a fixed seed).
// ---------------------------------------------------------------------------------------------

const SBTEST_DDL: &str = "(id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, \
     c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1(k)) ENGINE=InnoDB";

/// Creates and fills `bench.sbtest1` with `rows` rows, identically on every server. With
/// `binlog = false` nothing reaches the server's binlog (the targets' copy of a's state).
async fn seed(conn: &mut Conn, rows: u64, binlog: bool) {
    q(
        conn,
        &format!("SET SESSION sql_log_bin = {}", if binlog { 1 } else { 0 }),
    )
    .await;
    q(conn, &format!("CREATE DATABASE {DB}")).await;
    // The Sequence engine's tables (seq_1_to_N) live in the current database.
    q(conn, &format!("USE {DB}")).await;
    q(conn, &format!("CREATE TABLE {DB}.sbtest1 {SBTEST_DDL}")).await;
    let mut lo = 1;
    while lo <= rows {
        let hi = (lo + SEED_CHUNK - 1).min(rows);
        q(
            conn,
            &format!(
                "INSERT INTO {DB}.sbtest1 (id, k, c, pad) SELECT seq, \
                 FLOOR(1 + RAND(seq) * {rows}), \
                 LEFT(CONCAT(SHA2(CONCAT('c', seq), 256), SHA2(CONCAT('C', seq), 256)), 119), \
                 LEFT(SHA2(CONCAT('p', seq), 256), 59) \
                 FROM seq_{lo}_to_{hi}"
            ),
        )
        .await;
        lo = hi + 1;
    }
    q(conn, "SET SESSION sql_log_bin = 1").await;
}

/// splitmix64: a small, fixed, fast pseudo-random stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `1..=n`.
    fn id(&mut self, n: u64) -> u64 {
        1 + self.next() % n
    }

    /// sysbench's text shape: `groups` groups of 11 digits joined by `-`.
    fn digits(&mut self, out: &mut String, groups: usize) {
        for g in 0..groups {
            if g > 0 {
                out.push('-');
            }
            let v = self.next() % 100_000_000_000;
            out.push_str(&format!("{v:011}"));
        }
    }
}

/// Appends one sysbench `oltp_write_only` transaction (4 row changes).
fn write_only_txn(out: &mut String, rng: &mut Rng, rows: u64) {
    let (i1, i2, i3) = (rng.id(rows), rng.id(rows), rng.id(rows));
    out.push_str(&format!(
        "BEGIN;UPDATE sbtest1 SET k = k + 1 WHERE id = {i1};UPDATE sbtest1 SET c = '"
    ));
    rng.digits(out, 10);
    out.push_str(&format!(
        "' WHERE id = {i2};DELETE FROM sbtest1 WHERE id = {i3};\
         INSERT INTO sbtest1 (id, k, c, pad) VALUES ({i3}, {}, '",
        rng.id(rows)
    ));
    rng.digits(out, 10);
    out.push_str("', '");
    rng.digits(out, 5);
    out.push_str("');COMMIT;");
}

/// Generates the backlog on a; returns the generation time.
async fn generate_backlog(conn: &mut Conn, o: &Opts) -> f64 {
    let t = Instant::now();
    q(conn, &format!("USE {DB}")).await;
    let mut rng = Rng(o.seed);
    let mut buf = String::with_capacity(o.txns_per_query as usize * 512);
    let mut left = o.txns;
    while left > 0 {
        buf.clear();
        let n = left.min(o.txns_per_query);
        for _ in 0..n {
            write_only_txn(&mut buf, &mut rng, o.rows);
        }
        q(conn, &buf).await;
        left -= n;
    }
    t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The measurements.
// ---------------------------------------------------------------------------------------------

/// The backlog on a, as every target must apply it.
struct Backlog {
    start: Position,
    end: Position,
    seed_fp: Fingerprint,
    end_fp: Fingerprint,
    txns: u64,
    rows: u64,
}

/// One target's measurement.
#[derive(Debug, Clone)]
struct Measured {
    mode: Mode,
    target: Target,
    secs: f64,
    /// drc: until the link was running (connect, checks, canary), included in `secs`.
    startup_secs: Option<f64>,
    target_cpu: f64,
    source_cpu: f64,
    own_cpu: Option<f64>,
    batches: Option<u64>,
    notes: Vec<String>,
}

/// CPU counters at the start of a measurement.
struct CpuMark {
    target: f64,
    source: f64,
    own: f64,
}

impl CpuMark {
    fn take(a: &MariaDb, t: &MariaDb) -> Self {
        CpuMark {
            target: server_cpu(t),
            source: server_cpu(a),
            own: proc_cpu_secs(None),
        }
    }
}

async fn slave_status(conn: &mut Conn) -> Option<Row> {
    conn.query_first("SHOW SLAVE STATUS")
        .await
        .expect("SHOW SLAVE STATUS")
}

fn status_field(row: &Row, name: &str) -> String {
    row.get_opt::<Option<String>, _>(name)
        .and_then(Result::ok)
        .flatten()
        .unwrap_or_default()
}

async fn run_native(
    a: &MariaDb,
    t: &MariaDb,
    threads: u32,
    o: &Opts,
    b: &Backlog,
) -> (f64, CpuMark) {
    let mut conn = drc_testkit::connect(&t.url()).await;
    q(
        &mut conn,
        &format!("SET GLOBAL slave_parallel_threads = {threads}"),
    )
    .await;
    q(
        &mut conn,
        &format!("SET GLOBAL slave_parallel_mode = '{}'", o.parallel_mode),
    )
    .await;
    q(
        &mut conn,
        &format!("SET GLOBAL gtid_slave_pos = '{}'", b.start),
    )
    .await;
    q(
        &mut conn,
        &format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root', \
             MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos",
            a.port()
        ),
    )
    .await;
    let mark = CpuMark::take(a, t);
    let began = Instant::now();
    q(&mut conn, "START SLAVE").await;
    loop {
        // Returns 0 once gtid_slave_pos includes the end position, -1 after the 1 s timeout.
        let r: Option<i64> = conn
            .query_first(format!("SELECT MASTER_GTID_WAIT('{}', 1)", b.end))
            .await
            .expect("MASTER_GTID_WAIT");
        if r == Some(0) {
            break;
        }
        if let Some(st) = slave_status(&mut conn).await {
            let (io, sql) = (
                status_field(&st, "Last_IO_Error"),
                status_field(&st, "Last_SQL_Error"),
            );
            assert!(
                io.is_empty() && sql.is_empty(),
                "native replication failed: IO error {io:?}, SQL error {sql:?}"
            );
        }
        assert!(
            began.elapsed() < APPLY_DEADLINE,
            "native replication did not reach {} within {APPLY_DEADLINE:?}",
            b.end
        );
    }
    let secs = began.elapsed().as_secs_f64();
    let mark_end = CpuMark::take(a, t);
    q(&mut conn, "STOP SLAVE").await;
    let _ = conn.disconnect().await;
    (
        secs,
        CpuMark {
            target: mark_end.target - mark.target,
            source: mark_end.source - mark.source,
            own: mark_end.own - mark.own,
        },
    )
}

/// drc's configuration for the link, parsed like the daemon's (defaults for everything else).
fn drc_config(a: &MariaDb, t: &MariaDb, parallelism: usize, o: &Opts) -> drc_config::Config {
    let mut text = format!(
        "[[center]]\nname = \"a\"\nmysql = \"{}\"\n\n[[center]]\nname = \"b\"\nmysql = \"{}\"\n\n\
         [replication]\ndatabases = [\"{DB}\"]\n\n[applier]\nparallelism = {parallelism}\n",
        a.url(),
        t.url()
    );
    if let Some(r) = o.batch_rows {
        text.push_str(&format!("batch_rows = {r}\n"));
    }
    drc_config::Config::parse(&text, &|_| None).expect("valid drc configuration")
}

/// Writes the link's first checkpoint in the target: the link resumes at the backlog's start.
async fn write_initial_checkpoint(t: &MariaDb, workers: u32, start: &Position) {
    let mut conn = drc_testkit::connect(&t.url()).await;
    for s in meta::schema_statements(META_DB) {
        q(&mut conn, &s).await;
    }
    let cp = meta::checkpoint_statement(
        META_DB,
        LINK,
        &Checkpoint {
            worker: 0,
            batch: 0,
            workers,
            start: start.clone(),
            end: start.clone(),
        },
    );
    q(&mut conn, &cp).await;
    let _ = conn.disconnect().await;
}

async fn run_drc(
    a: &MariaDb,
    t: &MariaDb,
    parallelism: usize,
    o: &Opts,
    b: &Backlog,
    replica_id: u32,
) -> (f64, f64, CpuMark, u64) {
    let cfg = drc_config(a, t, parallelism, o);
    let spec = LinkSpec {
        name: LINK.into(),
        source_name: "a".into(),
        source_url: link_url(a, o.socket),
        target_url: link_url(t, o.socket),
        replication: cfg.replication.clone(),
        applier: cfg.applier.clone(),
        source: cfg.source.clone(),
        replica_server_id: replica_id,
    };
    write_initial_checkpoint(t, parallelism as u32, &b.start).await;
    let metrics = Metrics::new().expect("metrics");
    let state = Arc::new(LinkState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mark = CpuMark::take(a, t);
    let began = Instant::now();
    let link = tokio::spawn(run_link(spec, metrics.clone(), state.clone(), stop_rx));
    let mut startup = None;
    let mut tick = tokio::time::interval(DRC_POLL);
    loop {
        tick.tick().await;
        let (status, pos) = state.get();
        if startup.is_none() && status == LinkStatus::Running {
            startup = Some(began.elapsed().as_secs_f64());
        }
        let pos: Option<Position> = pos.map(|p| p.parse().expect("link position parses"));
        if pos.is_some_and(|p| covers(&p, &b.end)) {
            break;
        }
        if link.is_finished() {
            let r = link.await.expect("link task");
            panic!("the drc link stopped before reaching {}: {r:?}", b.end);
        }
        assert!(
            began.elapsed() < APPLY_DEADLINE,
            "the drc link did not reach {} within {APPLY_DEADLINE:?} (status {status:?})",
            b.end
        );
    }
    let secs = began.elapsed().as_secs_f64();
    let end_mark = CpuMark::take(a, t);
    stop_tx.send(true).expect("signal the link to stop");
    tokio::time::timeout(STOP_DEADLINE, link)
        .await
        .expect("the link stops after shutdown")
        .expect("link task")
        .expect("the link ends without error");
    let count = |kind: &str| metrics.rows.with_label_values(&[LINK, kind]).get();
    let (ins, upd, del) = (count("insert"), count("update"), count("delete"));
    assert_eq!(
        (ins, upd, del),
        (b.txns, 2 * b.txns, b.txns),
        "row changes the link applied (insert, update, delete)"
    );
    assert_eq!(
        metrics.transactions.with_label_values(&[LINK]).get(),
        b.txns,
        "source transactions the link covered"
    );
    let batches = metrics.batches.with_label_values(&[LINK]).get();
    (
        secs,
        startup.unwrap_or(secs),
        CpuMark {
            target: end_mark.target - mark.target,
            source: end_mark.source - mark.source,
            own: end_mark.own - mark.own,
        },
        batches,
    )
}

// ---------------------------------------------------------------------------------------------
// The timed pipeline (phases): drc-apply's parts put together as link.rs does, with timings.
// ---------------------------------------------------------------------------------------------

/// Time spent per step, summed over batches.
#[derive(Debug, Default)]
struct PhaseTimes {
    batches: u64,
    changes: u64,
    statements: u64,
    sql_bytes: u64,
    /// Waiting for the batcher (source read, decode, filter, batch forming; the source reads
    /// ahead in its own task, so this is only the time the appliers starved).
    wait: f64,
    plan: f64,
    /// Ordering by dependency level (grouped prototype only).
    order: f64,
    rewrite: f64,
    /// Wall time of the parallel apply (the slowest worker).
    exec: f64,
    /// Sum over workers of their apply time (server execution incl. round trips).
    exec_worker_sum: f64,
    /// The per-change metrics update as link.rs does it.
    metrics: f64,
}

/// Key values (primary key; plus unique keys when known) of a change, as text: two changes
/// that share one must keep their order. Same rule as drc-apply's planner.
fn key_texts(c: &RowChange, out: &mut Vec<String>) {
    let t = &*c.table;
    if !t.unique_keys_known {
        out.push(format!("{}.{}*", t.database, t.table));
        return;
    }
    for img in [&c.before, &c.after].into_iter().flatten() {
        let mut keys: Vec<(&str, &[usize])> = vec![("PRIMARY", &t.primary_key)];
        keys.extend(t.unique_keys.iter().map(|k| (&*k.name, &k.columns[..])));
        'key: for (name, cols) in keys {
            if cols.is_empty() {
                continue;
            }
            let mut s = format!("{}.{}\0{name}", t.database, t.table);
            for &col in cols {
                match img.get(col) {
                    None | Some(drc_core::value::Value::Null) => continue 'key,
                    Some(v) => {
                        s.push('\0');
                        sql::literal(&mut s, v);
                    }
                }
            }
            out.push(s);
        }
    }
}

/// The grouped prototype: reorders a share (source order) by dependency level. A change's level
/// is one more than the highest level of an earlier change of the share that shares a key value
/// with it; changes of one level touch disjoint keys and commute. Within a level, changes are
/// grouped by table and kind (stable), so the rewrite merges them into multi-row statements.
fn order_by_level<'a>(changes: &[&'a RowChange]) -> Vec<&'a RowChange> {
    let mut level_of_key: HashMap<String, usize> = HashMap::new();
    let mut keyed: Vec<(usize, u8, usize, &RowChange)> = Vec::with_capacity(changes.len());
    let mut keys = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        keys.clear();
        key_texts(c, &mut keys);
        let level = keys
            .iter()
            .filter_map(|k| level_of_key.get(k))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        for k in keys.drain(..) {
            level_of_key.insert(k, level);
        }
        let kind = match c.kind {
            ChangeKind::Delete => 0,
            ChangeKind::Update => 1,
            ChangeKind::Insert => 2,
        };
        keyed.push((level, kind, i, c));
    }
    // Level first; inside a level by kind, then table (pointer) and source order.
    keyed.sort_by_key(|&(level, kind, i, c)| (level, kind, Arc::as_ptr(&c.table) as usize, i));
    keyed.into_iter().map(|(_, _, _, c)| c).collect()
}

async fn run_phases(
    a: &MariaDb,
    t: &MariaDb,
    workers: usize,
    grouped: bool,
    o: &Opts,
    b: &Backlog,
    replica_id: u32,
) -> (f64, CpuMark, PhaseTimes) {
    let cfg = drc_config(a, t, workers, o);
    let mut conn = drc_testkit::connect(&t.url()).await;
    for s in meta::schema_statements(META_DB) {
        q(&mut conn, &s).await;
    }
    let _ = conn.disconnect().await;
    let tag = Tag::ServerId {
        server_id: a.server_id(),
        domain: a.gtid_domain_id(),
    };
    let target_url = link_url(t, o.socket);
    let mut appliers: Vec<Applier> = (0..workers)
        .map(|_| Applier::new(target_url.clone(), tag.clone(), Duration::from_secs(10)))
        .collect();
    let metrics = Metrics::new().expect("metrics");
    let mark = CpuMark::take(a, t);
    let began = Instant::now();
    for ap in &mut appliers {
        ap.probe().await.expect("applier session");
    }
    let mut scfg = SourceConfig::new(link_url(a, o.socket), replica_id);
    scfg.start = StartFrom::Position(b.start.clone());
    let mut src = Source::connect(scfg).await.expect("source connects");
    let (tx, rx) = mpsc::channel(256);
    let reader = tokio::spawn(async move {
        loop {
            let ev = src.next().await;
            let failed = ev.is_err();
            if tx.send(ev).await.is_err() || failed {
                break;
            }
        }
        src.close().await;
    });
    let filter = LinkFilter::new(Origin::Both(a.server_id()), cfg.replication.clone());
    let mut batcher = Batcher::new(rx, filter, cfg.applier.batch_rows, cfg.applier.batch_delay);
    let mut p = PhaseTimes::default();
    let mut position = b.start.clone();
    let mut seq = 0u64;
    while !covers(&position, &b.end) {
        assert!(
            began.elapsed() < APPLY_DEADLINE,
            "the timed pipeline did not reach {} within {APPLY_DEADLINE:?}",
            b.end
        );
        let t0 = Instant::now();
        let batch = batcher
            .next(position.clone(), None)
            .await
            .expect("next batch");
        let t1 = Instant::now();
        let pl = plan::plan(&batch.changes, workers);
        let t2 = Instant::now();
        let mut order = 0f64;
        let mut jobs: Vec<Option<(Vec<String>, String)>> = Vec::with_capacity(workers);
        seq += 1;
        for (w, share) in pl.shares.iter().enumerate() {
            if share.is_empty() {
                jobs.push(None);
                continue;
            }
            let mut refs: Vec<&RowChange> = share.iter().map(|&i| &batch.changes[i]).collect();
            if grouped {
                let to = Instant::now();
                refs = order_by_level(&refs);
                order += to.elapsed().as_secs_f64();
            }
            let stmts =
                sql::statements(&refs, cfg.applier.statement_rows).expect("rewrite changes");
            let cp = meta::checkpoint_statement(
                META_DB,
                LINK,
                &Checkpoint {
                    worker: w as u32,
                    batch: seq,
                    workers: workers as u32,
                    start: batch.start.clone(),
                    end: batch.end.clone(),
                },
            );
            p.statements += stmts.len() as u64;
            p.sql_bytes += stmts.iter().map(|s| s.len() as u64).sum::<u64>();
            jobs.push(Some((stmts, cp)));
        }
        let t3 = Instant::now();
        let per_worker: Vec<f64> =
            join_all(appliers.iter_mut().zip(jobs).map(|(ap, job)| async move {
                let tw = Instant::now();
                if let Some((s, cp)) = job {
                    ap.apply(&s, &cp).await.expect("apply a share");
                }
                tw.elapsed().as_secs_f64()
            }))
            .await;
        let t4 = Instant::now();
        for c in &batch.changes {
            let kind = match c.kind {
                ChangeKind::Insert => "insert",
                ChangeKind::Update => "update",
                ChangeKind::Delete => "delete",
            };
            metrics.rows.with_label_values(&[LINK, kind]).inc();
        }
        let t5 = Instant::now();
        p.batches += 1;
        p.changes += batch.changes.len() as u64;
        p.wait += (t1 - t0).as_secs_f64();
        p.plan += (t2 - t1).as_secs_f64();
        p.order += order;
        p.rewrite += (t3 - t2).as_secs_f64() - order;
        p.exec += (t4 - t3).as_secs_f64();
        p.exec_worker_sum += per_worker.iter().sum::<f64>();
        p.metrics += (t5 - t4).as_secs_f64();
        position = batch.end;
    }
    let secs = began.elapsed().as_secs_f64();
    let end_mark = CpuMark::take(a, t);
    reader.abort();
    assert_eq!(p.changes, b.rows, "row changes the timed pipeline applied");
    (
        secs,
        CpuMark {
            target: end_mark.target - mark.target,
            source: end_mark.source - mark.source,
            own: end_mark.own - mark.own,
        },
        p,
    )
}

// ---------------------------------------------------------------------------------------------
// The parent.
// ---------------------------------------------------------------------------------------------

async fn parent(o: Opts) {
    eprintln!(
        "apply_vs_native: {} transactions on {} seed rows, seed {:#x}, modes {:?}, targets {:?}, \
         load {}",
        o.txns,
        o.rows,
        o.seed,
        o.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        o.targets,
        loadavg()
    );
    let load_before = loadavg();
    let a = MariaDb::start(Mode::Relaxed.options()).expect("start source a");
    let mut ac = drc_testkit::connect(&a.url()).await;
    let t = Instant::now();
    seed(&mut ac, o.rows, true).await;
    // A fresh binlog file: replicas find the start GTID without scanning the seed.
    q(&mut ac, "FLUSH BINARY LOGS").await;
    let seed_fp = fingerprint(&mut ac).await;
    eprintln!(
        "seeded a in {:.1} s: {seed_fp:?}",
        t.elapsed().as_secs_f64()
    );
    let start = position(&mut ac).await;
    let start_fp = drc_mysql::current_file_pos(&mut ac)
        .await
        .expect("file position");
    let gen_secs = generate_backlog(&mut ac, &o).await;
    let end = position(&mut ac).await;
    let end_fp = drc_mysql::current_file_pos(&mut ac)
        .await
        .expect("file position");
    let bytes = binlog_bytes(&mut ac, &start_fp, &end_fp).await;
    let end_fp_table = fingerprint(&mut ac).await;
    assert_eq!(
        end_fp_table.count, o.rows,
        "every delete is followed by an insert of the same id"
    );
    let backlog = Backlog {
        start,
        end,
        seed_fp,
        end_fp: end_fp_table,
        txns: o.txns,
        rows: 4 * o.txns,
    };
    eprintln!(
        "backlog: {} transactions, {} row changes, {:.1} MB of binlog, generated in {:.1} s \
         ({:.0} txn/s); positions {} .. {}; {:?}",
        backlog.txns,
        backlog.rows,
        bytes as f64 / 1e6,
        gen_secs,
        o.txns as f64 / gen_secs,
        backlog.start,
        backlog.end,
        backlog.end_fp
    );

    let mut results: Vec<Measured> = Vec::new();
    let mut phase_lines: Vec<String> = Vec::new();
    let mut next_replica_id = REPLICA_ID_BASE;
    for &mode in &o.modes {
        for &target in &o.targets {
            let label = target.label(&o.parallel_mode);
            eprintln!(
                "[{}] {label}: starting a target (load {})",
                mode.name(),
                loadavg()
            );
            let mut opts = mode.options();
            if matches!(target, Target::Native(_)) && o.log_slave_updates {
                opts = opts.arg("--log-slave-updates=ON");
            }
            let ts = MariaDb::start(opts).expect("start a target");
            let mut tc = drc_testkit::connect(&ts.url()).await;
            seed(&mut tc, o.rows, false).await;
            let fp = fingerprint(&mut tc).await;
            assert_eq!(
                fp, backlog.seed_fp,
                "the target's seed differs from a's state at the start position"
            );
            let mut notes = Vec::new();
            let m = match target {
                Target::Native(threads) => {
                    let (secs, cpu) = run_native(&a, &ts, threads, &o, &backlog).await;
                    Measured {
                        mode,
                        target,
                        secs,
                        startup_secs: None,
                        target_cpu: cpu.target,
                        source_cpu: cpu.source,
                        own_cpu: None,
                        batches: None,
                        notes,
                    }
                }
                Target::Drc(n) => {
                    next_replica_id += 2;
                    let (secs, startup, cpu, batches) =
                        run_drc(&a, &ts, n, &o, &backlog, next_replica_id).await;
                    Measured {
                        mode,
                        target,
                        secs,
                        startup_secs: Some(startup),
                        target_cpu: cpu.target,
                        source_cpu: cpu.source,
                        own_cpu: Some(cpu.own),
                        batches: Some(batches),
                        notes,
                    }
                }
                Target::Phases { workers, grouped } => {
                    next_replica_id += 2;
                    let (secs, cpu, p) =
                        run_phases(&a, &ts, workers, grouped, &o, &backlog, next_replica_id).await;
                    notes.push(format!(
                        "{:.1} statements/batch, {:.1} rows/statement",
                        p.statements as f64 / p.batches as f64,
                        p.changes as f64 / p.statements.max(1) as f64
                    ));
                    phase_lines.push(phase_line(mode, &label, secs, &p));
                    Measured {
                        mode,
                        target,
                        secs,
                        startup_secs: None,
                        target_cpu: cpu.target,
                        source_cpu: cpu.source,
                        own_cpu: Some(cpu.own),
                        batches: Some(p.batches),
                        notes,
                    }
                }
            };
            let got = fingerprint(&mut tc).await;
            assert_eq!(
                got,
                backlog.end_fp,
                "[{}] {label}: the target's sbtest1 differs from a's after apply",
                mode.name()
            );
            let _ = tc.disconnect().await;
            eprintln!(
                "[{}] {label}: {:.3} s, {:.0} rows/s, checksum {} matches a",
                mode.name(),
                m.secs,
                backlog.rows as f64 / m.secs,
                got.checksum
            );
            results.push(m);
            drop(ts);
        }
    }
    let _ = ac.disconnect().await;
    drop(a);

    println!();
    println!(
        "apply a -> b: {} transactions, {} row changes ({:.1} MB binlog), seed {:#x}, \
         {} seed rows; native parallel mode {}, native log_slave_updates {}; drc over {}",
        backlog.txns,
        backlog.rows,
        bytes as f64 / 1e6,
        o.seed,
        o.rows,
        o.parallel_mode,
        if o.log_slave_updates { "ON" } else { "OFF" },
        if o.socket { "the Unix socket" } else { "TCP" }
    );
    println!("load average before {load_before}, after {}", loadavg());
    println!(
        "{:<8} {:<32} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8}",
        "mode",
        "target",
        "wall s",
        "rows/s",
        "txn/s",
        "T cpu s",
        "A cpu s",
        "drc cpu",
        "x ser",
        "x par",
        "batches"
    );
    for r in &results {
        let best_native = |serial: bool| {
            results
                .iter()
                .filter(|x| {
                    x.mode == r.mode
                        && match x.target {
                            Target::Native(0) => serial,
                            Target::Native(_) => !serial,
                            _ => false,
                        }
                })
                .map(|x| x.secs)
                .fold(None, |acc: Option<f64>, s| {
                    Some(acc.map_or(s, |a| a.min(s)))
                })
        };
        let ratio = |n: Option<f64>| n.map_or("-".into(), |n| format!("{:.2}", n / r.secs));
        println!(
            "{:<8} {:<32} {:>8.3} {:>9.0} {:>8.0} {:>8.2} {:>8.2} {:>8} {:>7} {:>7} {:>8}{}",
            r.mode.name(),
            r.target.label(&o.parallel_mode),
            r.secs,
            backlog.rows as f64 / r.secs,
            backlog.txns as f64 / r.secs,
            r.target_cpu,
            r.source_cpu,
            r.own_cpu.map_or("-".into(), |c| format!("{c:.2}")),
            ratio(best_native(true)),
            ratio(best_native(false)),
            r.batches.map_or("-".into(), |b| b.to_string()),
            {
                let mut extra: Vec<String> = r.notes.clone();
                if let Some(s) = r.startup_secs {
                    extra.insert(0, format!("start-up {s:.3} s"));
                }
                if extra.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", extra.join("; "))
                }
            }
        );
    }
    println!(
        "(T/A cpu s: CPU seconds of the target's / source's mariadbd during the apply; drc cpu: \
         this process; x ser / x par: native serial / best native parallel wall time divided by \
         this row's; every target's CHECKSUM TABLE equals a's)"
    );
    if !phase_lines.is_empty() {
        println!();
        println!("where the time goes (timed pipeline; seconds summed over batches)");
        println!(
            "{:<8} {:<32} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7} {:>8} {:>9}",
            "mode",
            "pipeline",
            "wall",
            "wait",
            "plan",
            "order",
            "sql",
            "exec",
            "metric",
            "exec/wkr",
            "stmts",
            "rows/st",
            "SQL MB"
        );
        for l in &phase_lines {
            println!("{l}");
        }
        println!(
            "(wait: appliers idle until the next batch was formed (source read ahead in its own \
             task); plan: drc_apply::plan::plan; order: the grouped prototype's reordering; sql: \
             sql::statements + checkpoint text; exec: wall time of the parallel apply (slowest \
             worker); metric: per-change counter updates; exec/wkr: sum of all workers' apply \
             time; stmts: statements sent)"
        );
    }
}

fn phase_line(mode: Mode, label: &str, wall: f64, p: &PhaseTimes) -> String {
    format!(
        "{:<8} {:<32} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>9.3} {:>7} {:>8.1} \
         {:>9.1}",
        mode.name(),
        label,
        wall,
        p.wait,
        p.plan,
        p.order,
        p.rewrite,
        p.exec,
        p.metrics,
        p.exec_worker_sum,
        p.statements,
        p.changes as f64 / p.statements.max(1) as f64,
        p.sql_bytes as f64 / 1e6
    )
}
