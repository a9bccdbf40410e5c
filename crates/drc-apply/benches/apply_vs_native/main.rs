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
//!    - `phases:N`, `grouped:N`, `piped:N`: not drc's link, but the same pipeline assembled in
//!      `pipeline.rs` from drc-apply's public parts (`Source` -> `Batcher` -> `plan` ->
//!      `sql::statements` -> `Applier`) with every step timed per batch, to show where the time
//!      goes. `grouped:N` differs in one step only: inside each share, changes are ordered by
//!      key-dependency level before the rewrite (a change moves ahead of earlier changes of its
//!      share only when they share no key value), so same-kind changes form long multi-row
//!      statements. `piped:N` is `grouped:N` plus forming, planning and rewriting the next batch
//!      in its own task while the current batch is applied (batches still commit one after
//!      another). Both are measured prototypes of possible changes, not drc's behaviour.
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
//! Files: `main.rs` (options), `data.rs` (seed, backlog, table fingerprint), `measure.rs`
//! (native and drc runs, CPU time), `pipeline.rs` (the timed pipeline and the prototypes),
//! `parent.rs` (the run and the report).
//!
//! Options (after `--` with `cargo bench`): `--txns N`, `--rows N`, `--seed N`,
//! `--txns-per-query N`, `--mode durable|relaxed|both`, `--targets native:0,native:4,drc:4,..`,
//! `--parallel-mode optimistic|conservative|aggressive|minimal`, `--native-log-slave-updates
//! on|off`, `--socket` (drc over the Unix socket), `--version-column` (the table gets an
//! `updated_at TIMESTAMP(6)` version column; target `lww:N` applies with last-writer-wins on it,
//! `drc:N` with source wins), `--phases` (adds `phases:4,grouped:4,piped:4`),
//! `--batch-rows N` (drc's `[applier] batch_rows`).

mod data;
mod measure;
mod parent;
mod pipeline;

use data::*;
use measure::*;
use parent::*;
use pipeline::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_apply::batch::Batcher;
use drc_apply::filter::{LinkFilter, Origin};
use drc_apply::worker::{Applier, Tag};
use drc_apply::{plan, run_link, sql, LinkSpec, LinkState, LinkStatus, Metrics};
use drc_core::change::{ChangeKind, RowChange};
use drc_core::position::Position;
use drc_meta::{self as meta, Checkpoint};
use drc_source::{Source, SourceConfig, StartFrom};
use drc_testkit::{MariaDb, ServerOptions};
use futures_util::future::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::{mpsc, watch};

/// The allocator the `drc` binary ships with, so that drc's CPU figures are the product's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// A drc link with parallelism N and last-writer-wins on `updated_at` (needs
    /// `--version-column`; `drc:N` then runs with `version_column = ""`, source wins).
    DrcLww(usize),
    /// The drc pipeline assembled here with per-batch timings.
    Phases { workers: usize, variant: Variant },
}

/// How the timed pipeline differs from drc's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// As link.rs does it: form a batch, plan, rewrite, apply; then the next batch.
    Timed,
    /// Prototype: each share ordered by dependency level before the rewrite.
    Grouped,
    /// Prototype: `Grouped`, and the next batch is formed, planned and rewritten in its own task
    /// while the current one is applied (batches still commit one after another).
    Piped,
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
            "lww" if n >= 1 => Target::DrcLww(n),
            "phases" if n >= 1 => Target::Phases {
                workers: n,
                variant: Variant::Timed,
            },
            "grouped" if n >= 1 => Target::Phases {
                workers: n,
                variant: Variant::Grouped,
            },
            "piped" if n >= 1 => Target::Phases {
                workers: n,
                variant: Variant::Piped,
            },
            _ => {
                panic!("target {s:?}: kind must be native:N, drc:N, lww:N, phases:N, grouped:N or piped:N")
            }
        }
    }

    fn label(self, parallel_mode: &str) -> String {
        match self {
            Target::Native(0) => "native, serial".into(),
            Target::Native(n) => format!("native, {n} threads {parallel_mode}"),
            Target::Drc(n) => format!("drc, parallelism {n}"),
            Target::DrcLww(n) => format!("drc last-writer-wins, parallelism {n}"),
            Target::Phases { workers, variant } => match variant {
                Variant::Timed => format!("drc pipeline timed, {workers}"),
                Variant::Grouped => format!("proto: grouped, {workers}"),
                Variant::Piped => format!("proto: grouped + piped, {workers}"),
            },
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
    version_column: bool,
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
        version_column: false,
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
            "--version-column" => o.version_column = true,
            "--phases" => phases = true,
            // Passed by `cargo bench`; filters are meaningless for a single benchmark.
            "--bench" => {}
            other if other.starts_with('-') => panic!("unknown option {other}"),
            _ => {}
        }
    }
    if phases {
        for variant in [Variant::Timed, Variant::Grouped, Variant::Piped] {
            o.targets.push(Target::Phases {
                workers: 4,
                variant,
            });
        }
    }
    assert!(o.rows >= 1 && o.txns >= 1, "--rows and --txns must be >= 1");
    assert!(!o.targets.is_empty(), "--targets lists nothing to measure");
    assert!(
        o.version_column || !o.targets.iter().any(|t| matches!(t, Target::DrcLww(_))),
        "target lww:N needs --version-column (without the column every table is source wins)"
    );
    o
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without arguments; `cargo bench` passes
    // `--bench`. Measure only when asked to.
    if std::env::args().len() == 1 {
        eprintln!(
            "this is a benchmark; run it with `cargo bench -p drc-apply --bench apply_vs_native`"
        );
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse_opts(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(parent(opts));
}
