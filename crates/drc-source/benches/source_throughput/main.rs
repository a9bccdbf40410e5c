//! Decode throughput and memory of the binlog [`Source`](drc_source::Source).
//!
//! Run with `cargo bench -p drc-source --bench source_throughput` (or `bench/source_throughput.sh`).
//! This is a benchmark, not a test: it prints figures and fails only when the data read back is
//! wrong or memory is unbounded.
//!
//! What it does:
//!
//! 1. Starts a throwaway MariaDB (drc-testkit; binlog ROW / FULL image / FULL metadata, relaxed
//!    durability) and generates, server-side with the Sequence engine, a sysbench-like binlog:
//!    `--inserts` rows (default 1,000,000) in 100-row transactions, then `--updates` (200,000)
//!    and `--deletes` (100,000) row changes, also in 100-row transactions.
//! 2. **Throughput**: `--runs` times (default 3), a child process (this binary with `--measure`)
//!    starts a `Source` at the position before the generated data and reads until the commit at
//!    the position after it, checking every row change (kinds, ids, values). It reports wall time
//!    (from the first `next()` after connecting), the reading thread's CPU time, rows/s, binlog
//!    MB/s, and its peak RSS (VmHWM).
//! 3. **Phases**: a child (`--phases`) reads the same span with a bare mysql_async binlog stream,
//!    once without decoding (framing only) and once decoding every rows event with
//!    [`TableDecoder`](drc_source::TableDecoder), the decoding timed inline.
//! 4. **Size**: a single row with a 20 MiB LONGBLOB, and a single transaction of 1,000,000 row
//!    changes, each streamed by a child process; the blob's bytes and the row count are checked,
//!    and the child's peak RSS must stay bounded (the source never collects a transaction).
//!
//! Each measurement runs in its own process so that its VmHWM is the reader's own peak, not
//! the generator's. Streams go over TCP loopback unless `--socket` is given.
//!
//! Options (after `--` with `cargo bench`): `--inserts N`, `--updates N`, `--deletes N`,
//! `--runs N`, `--no-size`, `--no-throughput`, `--socket` (stream over the Unix socket instead of
//! TCP loopback). `SOURCE_BENCH_WRAP="perf record -g -o p.data"` prefixes every measuring child's
//! command line (for profiling).

/// The allocator the `drc` binary ships with, so that the figures are the product's.
#[global_allocator]
pub(crate) static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod check;
mod child;
mod parent;
mod phases;

use check::*;
use child::*;
use parent::*;
use phases::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drc_core::change::{ChangeKind, RowChange, SourceEvent};
use drc_core::position::{FilePos, Position};
use drc_core::value::Value;
use drc_source::{Source, SourceConfig, StartFrom, TableDecoder};
use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

/// Rows per generated transaction (sysbench-like OLTP transactions).
pub(crate) const TXN_ROWS: u64 = 100;
/// Statements sent per round trip while generating.
pub(crate) const STATEMENTS_PER_QUERY: u64 = 100;
/// Size of the blob of the size scenario.
pub(crate) const BLOB_LEN: usize = 20 * 1024 * 1024;
/// Row changes of the single big transaction of the size scenario.
pub(crate) const BIG_TXN_ROWS: u64 = 1_000_000;
/// A measuring child must finish within this.
pub(crate) const MEASURE_DEADLINE: Duration = Duration::from_secs(900);
/// Peak RSS allowed for the 1,000,000-row transaction. Its binlog alone is ~190 MB and its
/// decoded rows several hundred MB: a source that collected the transaction would exceed this.
pub(crate) const BIG_TXN_MAX_HWM_KB: u64 = 64 * 1024;
/// Peak RSS allowed for the 20 MiB blob: a few copies of the event (packet, decoded value)
/// plus the process baseline.
pub(crate) const BLOB_MAX_HWM_KB: u64 = (6 * BLOB_LEN as u64) / 1024 + 32 * 1024;
/// The database the bench writes to.
pub(crate) const DB: &str = "bench";

#[derive(Debug, Clone)]
pub(crate) struct Opts {
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) deletes: u64,
    pub(crate) runs: u32,
    pub(crate) size: bool,
    pub(crate) throughput: bool,
    /// Stream over the server's Unix socket instead of TCP loopback.
    pub(crate) socket: bool,
}

pub(crate) fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        inserts: 1_000_000,
        updates: 200_000,
        deletes: 100_000,
        runs: 3,
        size: true,
        throughput: true,
        socket: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--inserts" => o.inserts = num("--inserts"),
            "--updates" => o.updates = num("--updates"),
            "--deletes" => o.deletes = num("--deletes"),
            "--runs" => o.runs = u32::try_from(num("--runs")).expect("--runs fits u32"),
            "--no-size" => o.size = false,
            "--no-throughput" => o.throughput = false,
            "--socket" => o.socket = true,
            // Passed by `cargo bench`; filters are meaningless for a single benchmark.
            "--bench" => {}
            other if other.starts_with('-') => panic!("unknown option {other}"),
            _ => {}
        }
    }
    assert!(
        o.updates + o.deletes <= o.inserts,
        "updates + deletes must not exceed inserts (they touch distinct inserted rows)"
    );
    assert!(
        o.inserts % TXN_ROWS == 0 && o.updates % TXN_ROWS == 0 && o.deletes % TXN_ROWS == 0,
        "row counts must be multiples of {TXN_ROWS}"
    );
    o
}

pub(crate) fn main() {
    // `cargo test --all-targets` runs bench binaries without arguments; `cargo bench` passes
    // `--bench`. Measure only when asked to.
    if std::env::args().len() == 1 {
        eprintln!("this is a benchmark; run it with `cargo bench -p drc-source --bench source_throughput`");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--measure") => return measure_main(&args[1..]),
        Some("--phases") => return phases_main(&args[1..]),
        _ => {}
    }
    let opts = parse_opts(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(parent(opts));
}
