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
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
const TXN_ROWS: u64 = 100;
/// Statements sent per round trip while generating.
const STATEMENTS_PER_QUERY: u64 = 100;
/// Size of the blob of the size scenario.
const BLOB_LEN: usize = 20 * 1024 * 1024;
/// Row changes of the single big transaction of the size scenario.
const BIG_TXN_ROWS: u64 = 1_000_000;
/// A measuring child must finish within this.
const MEASURE_DEADLINE: Duration = Duration::from_secs(900);
/// Peak RSS allowed for the 1,000,000-row transaction. Its binlog alone is ~190 MB and its
/// decoded rows several hundred MB: a source that collected the transaction would exceed this.
const BIG_TXN_MAX_HWM_KB: u64 = 64 * 1024;
/// Peak RSS allowed for the 20 MiB blob: a few copies of the event (packet, decoded value)
/// plus the process baseline.
const BLOB_MAX_HWM_KB: u64 = (6 * BLOB_LEN as u64) / 1024 + 32 * 1024;
/// The database the bench writes to.
const DB: &str = "bench";

#[derive(Debug, Clone)]
struct Opts {
    inserts: u64,
    updates: u64,
    deletes: u64,
    runs: u32,
    size: bool,
    throughput: bool,
    /// Stream over the server's Unix socket instead of TCP loopback.
    socket: bool,
}

fn parse_opts(args: &[String]) -> Opts {
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

fn main() {
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

// ---------------------------------------------------------------------------------------------
// What the parent checks in a child's output, and how a child reports.
// ---------------------------------------------------------------------------------------------

/// What a measuring child must find between the start and end positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// `inserts` rows with ids 1..=inserts, then `updates` updates (k+1) of ids 1..=updates, then
    /// `deletes` deletes of the last `deletes` ids.
    Sbtest {
        inserts: u64,
        updates: u64,
        deletes: u64,
    },
    /// One insert of (1, blob of `len` bytes from [`blob_bytes`]).
    Blob { len: usize },
}

impl Check {
    fn encode(self) -> String {
        match self {
            Check::Sbtest {
                inserts,
                updates,
                deletes,
            } => format!("sbtest:{inserts}:{updates}:{deletes}"),
            Check::Blob { len } => format!("blob:{len}"),
        }
    }

    fn decode(s: &str) -> Check {
        let parts: Vec<&str> = s.split(':').collect();
        let n = |i: usize| -> u64 {
            parts
                .get(i)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad check spec {s:?}"))
        };
        match parts.first() {
            Some(&"sbtest") => Check::Sbtest {
                inserts: n(1),
                updates: n(2),
                deletes: n(3),
            },
            Some(&"blob") => Check::Blob {
                len: usize::try_from(n(1)).expect("blob length fits usize"),
            },
            _ => panic!("bad check spec {s:?}"),
        }
    }

    fn total_rows(self) -> u64 {
        match self {
            Check::Sbtest {
                inserts,
                updates,
                deletes,
            } => inserts + updates + deletes,
            Check::Blob { .. } => 1,
        }
    }
}

/// What a child measured.
#[derive(Debug, Clone)]
struct Measured {
    secs: f64,
    cpu_secs: f64,
    rows: u64,
    rows_events: u64,
    commits: u64,
    max_batch: usize,
    base_hwm_kb: u64,
    hwm_kb: u64,
}

/// The deterministic bytes of the blob scenario (splitmix64 stream).
fn blob_bytes(len: usize) -> impl Iterator<Item = u8> {
    let mut state: u64 = 0x5EED_F00D_B10B;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).to_le_bytes()
    })
    .flatten()
    .take(len)
}

/// CPU time (user + system) the calling thread has used, in seconds. The measuring children
/// run everything on one thread (current-thread runtime), so this is the reader's CPU cost,
/// unaffected by other processes competing for the cores (unlike wall time).
fn thread_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("read /proc/thread-self/schedstat");
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("run time in /proc/thread-self/schedstat");
    ns as f64 / 1e9
}

/// `VmHWM` (peak resident set size) of this process, in KiB.
fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

// ---------------------------------------------------------------------------------------------
// The measuring child.
// ---------------------------------------------------------------------------------------------

/// `--measure URL START END CHECK`: streams START..END through a `Source`, verifies, prints
/// one `RESULT {json}` line.
fn measure_main(args: &[String]) {
    let [url, start, end, check] = args else {
        panic!("usage: --measure URL START END CHECK");
    };
    let start: Position = start.parse().expect("start position");
    let end: Position = end.parse().expect("end position");
    let check = Check::decode(check);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let m = rt.block_on(async {
        tokio::time::timeout(MEASURE_DEADLINE, measure(url, start, end, check))
            .await
            .unwrap_or_else(|_| panic!("measurement did not finish within {MEASURE_DEADLINE:?}"))
    });
    println!(
        "RESULT {}",
        serde_json::json!({
            "secs": m.secs,
            "cpu_secs": m.cpu_secs,
            "rows": m.rows,
            "rows_events": m.rows_events,
            "commits": m.commits,
            "max_batch": m.max_batch,
            "base_hwm_kb": m.base_hwm_kb,
            "hwm_kb": m.hwm_kb,
        })
    );
}

/// Running checks over the row changes of an [`Check::Sbtest`] stream.
#[derive(Debug, Default)]
struct SbtestTally {
    inserts: u64,
    updates: u64,
    deletes: u64,
    insert_id_sum: u64,
    update_id_sum: u64,
    delete_id_sum: u64,
}

fn int_at(rc: &RowChange, after: bool, col: usize) -> i64 {
    let img = if after { &rc.after } else { &rc.before };
    match img.as_ref().and_then(|i| i.get(col)) {
        Some(Value::Int(v)) => *v,
        other => panic!(
            "{} row: column {col} is {other:?}, expected an INT",
            rc.kind
        ),
    }
}

fn text_len_at(rc: &RowChange, after: bool, col: usize) -> usize {
    let img = if after { &rc.after } else { &rc.before };
    match img.as_ref().and_then(|i| i.get(col)) {
        Some(Value::Text(t)) => t.bytes.len(),
        other => panic!("{} row: column {col} is {other:?}, expected text", rc.kind),
    }
}

impl SbtestTally {
    fn add(&mut self, rc: &RowChange) {
        let id = |after| u64::try_from(int_at(rc, after, 0)).expect("positive id");
        match rc.kind {
            ChangeKind::Insert => {
                assert!(rc.before.is_none(), "insert with a before image");
                assert_eq!(text_len_at(rc, true, 2), 120, "c is CHAR(120) of hex");
                assert_eq!(text_len_at(rc, true, 3), 60, "pad is CHAR(60) of hex");
                self.inserts += 1;
                self.insert_id_sum += id(true);
            }
            ChangeKind::Update => {
                let (b, a) = (id(false), id(true));
                assert_eq!(b, a, "update changed the id");
                assert_eq!(
                    int_at(rc, true, 1),
                    int_at(rc, false, 1) + 1,
                    "update sets k = k + 1"
                );
                self.updates += 1;
                self.update_id_sum += a;
            }
            ChangeKind::Delete => {
                assert!(rc.after.is_none(), "delete with an after image");
                self.deletes += 1;
                self.delete_id_sum += id(false);
            }
        }
    }

    fn verify(&self, inserts: u64, updates: u64, deletes: u64) {
        let sum = |from: u64, to: u64| (from..=to).sum::<u64>();
        assert_eq!(
            (self.inserts, self.updates, self.deletes),
            (inserts, updates, deletes),
            "row change counts (insert, update, delete)"
        );
        assert_eq!(self.insert_id_sum, sum(1, inserts), "sum of inserted ids");
        assert_eq!(self.update_id_sum, sum(1, updates), "sum of updated ids");
        assert_eq!(
            self.delete_id_sum,
            sum(inserts - deletes + 1, inserts),
            "sum of deleted ids"
        );
    }
}

fn check_blob(rc: &RowChange, len: usize) {
    assert_eq!(rc.kind, ChangeKind::Insert, "blob row kind");
    assert_eq!(int_at(rc, true, 0), 1, "blob row id");
    match rc.after.as_ref().and_then(|i| i.get(1)) {
        Some(Value::Bytes(b)) => {
            assert_eq!(b.len(), len, "blob length");
            if let Some(at) = b.iter().zip(blob_bytes(len)).position(|(x, y)| *x != y) {
                panic!("blob differs at byte {at}");
            }
        }
        Some(other) => panic!("blob column decoded as {:?}", std::mem::discriminant(other)),
        None => panic!("blob column missing"),
    }
}

async fn measure(url: &str, start: Position, end: Position, check: Check) -> Measured {
    let mut cfg = SourceConfig::new(url, 4_000_000 + std::process::id());
    cfg.start = StartFrom::Position(start);
    // A stall is a failure here, not something to wait out.
    cfg.max_reconnects = Some(1);
    let mut src = Source::connect(cfg).await.expect("source connects");
    let base_hwm_kb = vm_hwm_kb();
    let expected = check.total_rows();
    let mut tally = SbtestTally::default();
    let (mut rows, mut rows_events, mut commits, mut max_batch) = (0u64, 0u64, 0u64, 0usize);
    let cpu0 = thread_cpu_secs();
    let began = Instant::now();
    loop {
        match src.next().await.expect("source event") {
            SourceEvent::Begin(_) | SourceEvent::Ddl(_) => {}
            SourceEvent::Rows(batch) => {
                rows_events += 1;
                rows += batch.len() as u64;
                max_batch = max_batch.max(batch.len());
                assert!(
                    rows <= expected,
                    "more than the {expected} expected row changes before the end position"
                );
                match check {
                    Check::Sbtest { .. } => batch.iter().for_each(|rc| tally.add(rc)),
                    Check::Blob { len } => batch.iter().for_each(|rc| check_blob(rc, len)),
                }
            }
            SourceEvent::Commit(c) => {
                commits += 1;
                if c.position == end {
                    break;
                }
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs() - cpu0;
    assert_eq!(rows, expected, "row changes up to the end position");
    if let Check::Sbtest {
        inserts,
        updates,
        deletes,
    } = check
    {
        tally.verify(inserts, updates, deletes);
    }
    let hwm_kb = vm_hwm_kb();
    src.close().await;
    Measured {
        secs,
        cpu_secs,
        rows,
        rows_events,
        commits,
        max_batch,
        base_hwm_kb,
        hwm_kb,
    }
}

// ---------------------------------------------------------------------------------------------
// The phases child: where the time goes (framing vs decoding).
// ---------------------------------------------------------------------------------------------

/// `--phases URL FILE:START FILE:END`: streams the span twice with a bare mysql_async binlog
/// stream (no `Source`): (1) framing only (socket, packet codec, event header; events dropped),
/// (2) framing plus decoding every rows event with [`TableDecoder`], the decode timed inline
/// (data still hot in cache, as in the `Source`). Prints one `PHASES {json}` line.
fn phases_main(args: &[String]) {
    let [url, start, end] = args else {
        panic!("usage: --phases URL FILE:START FILE:END");
    };
    let start: FilePos = start.parse().expect("start file position");
    let end: FilePos = end.parse().expect("end file position");
    assert_eq!(
        start.file, end.file,
        "the phases split needs a span within one binlog file"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (framing, full) = rt.block_on(async {
        tokio::time::timeout(MEASURE_DEADLINE, async {
            let framing = stream_span(url, &start, &end, false).await;
            let full = stream_span(url, &start, &end, true).await;
            (framing, full)
        })
        .await
        .unwrap_or_else(|_| panic!("phases did not finish within {MEASURE_DEADLINE:?}"))
    });
    println!(
        "PHASES {}",
        serde_json::json!({
            "events": full.events,
            "bytes": full.bytes,
            "rows": full.rows,
            "framing_secs": framing.secs,
            "framing_cpu_secs": framing.cpu_secs,
            "stream_decode_secs": full.secs,
            "stream_decode_cpu_secs": full.cpu_secs,
            "decode_secs": full.decode_secs,
        })
    );
}

struct Streamed {
    events: u64,
    bytes: u64,
    rows: u64,
    secs: f64,
    cpu_secs: f64,
    decode_secs: f64,
}

async fn stream_span(url: &str, start: &FilePos, end: &FilePos, decode: bool) -> Streamed {
    use futures_util::StreamExt;
    use mysql_common::binlog::events::{EventData, TableMapEvent};
    use std::collections::HashMap;

    let mut conn = drc_testkit::connect(url).await;
    q(&mut conn, "SET @mariadb_slave_capability = 4").await;
    let file = start.file.clone().into_bytes();
    let request = mysql_async::BinlogStreamRequest::new(4_500_000 + std::process::id())
        .with_filename(&file)
        .with_pos(start.offset);
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .expect("binlog stream");
    let mut decoders: HashMap<u64, (TableMapEvent<'static>, TableDecoder)> = HashMap::new();
    let (mut events, mut bytes, mut rows, mut decode_secs) = (0u64, 0u64, 0u64, 0f64);
    let cpu0 = thread_cpu_secs();
    let began = Instant::now();
    while let Some(ev) = stream.next().await {
        let ev = ev.expect("binlog event");
        let pos = u64::from(ev.header().log_pos());
        events += 1;
        bytes += u64::from(ev.header().event_size());
        if decode {
            let t = Instant::now();
            match ev.header().event_type_raw() {
                0x13 => {
                    let tme: TableMapEvent<'_> = ev.read_event().expect("table map");
                    if decoders.get(&tme.table_id()).is_none_or(|(t, _)| *t != tme) {
                        let d = TableDecoder::new(&tme).expect("table decoder");
                        decoders.insert(tme.table_id(), (tme.into_owned(), d));
                    }
                }
                ty @ (0x17..=0x19 | 0x1e..=0x20) => {
                    let Some(EventData::RowsEvent(r)) = ev.read_data().expect("rows event") else {
                        panic!("unreadable rows event");
                    };
                    let kind = match ty {
                        0x17 | 0x1e => ChangeKind::Insert,
                        0x18 | 0x1f => ChangeKind::Update,
                        _ => ChangeKind::Delete,
                    };
                    let (_, d) = decoders.get(&r.table_id()).expect("table map before rows");
                    let mut out = Vec::new();
                    d.decode_rows(
                        kind,
                        r.columns_before_image(),
                        r.columns_after_image(),
                        r.rows_data(),
                        &mut out,
                    )
                    .expect("decode rows");
                    rows += out.len() as u64;
                }
                _ => {}
            }
            decode_secs += t.elapsed().as_secs_f64();
        }
        // The fake ROTATE and the FORMAT_DESCRIPTION replayed at the start carry no position
        // past `end`; every later event of this file does.
        if pos >= end.offset {
            break;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs() - cpu0;
    let _ = stream.close().await;
    Streamed {
        events,
        bytes,
        rows,
        secs,
        cpu_secs,
        decode_secs,
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: generation, children, report.
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

async fn scalar_u64(conn: &mut Conn, sql: &str) -> u64 {
    let v: Option<u64> = conn
        .query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    v.unwrap_or_else(|| panic!("{sql}: no value"))
}

/// A binlog span: GTID positions for the source and file positions for the byte count.
struct Span {
    start: Position,
    end: Position,
    start_fp: FilePos,
    end_fp: FilePos,
    bytes: u64,
}

async fn positions(conn: &mut Conn) -> (Position, FilePos) {
    let info = drc_mysql::server_info(conn).await.expect("server info");
    let pos = drc_mysql::current_position(conn, &info)
        .await
        .expect("current position");
    let fp = drc_mysql::current_file_pos(conn)
        .await
        .expect("current file position");
    (pos, fp)
}

/// Runs `generate` between a fresh binlog file and the end position; returns the span.
async fn record_span<F>(conn: &mut Conn, generate: F) -> Span
where
    F: AsyncFnOnce(&mut Conn),
{
    // A fresh file: the server then finds the start GTID without scanning earlier data.
    q(conn, "FLUSH BINARY LOGS").await;
    let (start, start_fp) = positions(conn).await;
    generate(conn).await;
    let (end, end_fp) = positions(conn).await;
    let logs: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .expect("SHOW BINARY LOGS");
    let mut bytes = 0u64;
    let mut inside = false;
    for mut r in logs {
        let name: String = r.take(0).expect("log name");
        let size: u64 = r.take(1).expect("log size");
        if name == start_fp.file {
            inside = true;
        }
        if !inside {
            continue;
        }
        let from = if name == start_fp.file {
            start_fp.offset
        } else {
            0
        };
        let to = if name == end_fp.file {
            end_fp.offset
        } else {
            size
        };
        bytes += to.saturating_sub(from);
        if name == end_fp.file {
            break;
        }
    }
    Span {
        start,
        end,
        start_fp,
        end_fp,
        bytes,
    }
}

/// The SELECT list of a sysbench-like row numbered `{id}` (an SQL expression).
fn sbtest_values(id: &str) -> String {
    format!(
        "{id}, FLOOR(1 + RAND({id}) * 1000000), \
         LEFT(CONCAT(SHA2(CONCAT('c', {id}), 256), SHA2(CONCAT('C', {id}), 256)), 120), \
         LEFT(SHA2(CONCAT('p', {id}), 256), 60)"
    )
}

const SBTEST_DDL: &str = "(id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, \
     c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1(k)) ENGINE=InnoDB";

/// Sends `stmts` in multi-statement round trips.
async fn run_batched(conn: &mut Conn, stmts: impl Iterator<Item = String>) {
    let mut buf = String::new();
    let mut n = 0;
    for s in stmts {
        buf.push_str(&s);
        buf.push(';');
        n += 1;
        if n == STATEMENTS_PER_QUERY {
            q(conn, &buf).await;
            buf.clear();
            n = 0;
        }
    }
    if !buf.is_empty() {
        q(conn, &buf).await;
    }
}

async fn generate_sbtest(conn: &mut Conn, o: &Opts) {
    let t = Instant::now();
    let batches = o.inserts / TXN_ROWS;
    run_batched(
        conn,
        (0..batches).map(|b| {
            format!(
                "INSERT INTO sbtest1 (id, k, c, pad) SELECT {} FROM seq_1_to_{TXN_ROWS}",
                sbtest_values(&format!("({} + seq)", b * TXN_ROWS))
            )
        }),
    )
    .await;
    run_batched(
        conn,
        (0..o.updates / TXN_ROWS).map(|b| {
            let lo = b * TXN_ROWS + 1;
            format!(
                "UPDATE sbtest1 SET k = k + 1 WHERE id BETWEEN {lo} AND {}",
                lo + TXN_ROWS - 1
            )
        }),
    )
    .await;
    let first_deleted = o.inserts - o.deletes + 1;
    run_batched(
        conn,
        (0..o.deletes / TXN_ROWS).map(|b| {
            let lo = first_deleted + b * TXN_ROWS;
            format!(
                "DELETE FROM sbtest1 WHERE id BETWEEN {lo} AND {}",
                lo + TXN_ROWS - 1
            )
        }),
    )
    .await;
    let left = scalar_u64(conn, "SELECT COUNT(*) FROM sbtest1").await;
    assert_eq!(left, o.inserts - o.deletes, "rows left after generation");
    eprintln!(
        "generated {} inserts, {} updates, {} deletes in {:.1} s",
        o.inserts,
        o.updates,
        o.deletes,
        t.elapsed().as_secs_f64()
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs this binary with `args` (prefixed by `SOURCE_BENCH_WRAP`) and returns the JSON of its
/// output line starting with `tag`.
fn run_self(args: &[String], tag: &str) -> serde_json::Value {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let wrap = std::env::var("SOURCE_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<String> = wrap.split_whitespace().map(String::from).collect();
    argv.push(exe.display().to_string());
    argv.extend(args.iter().cloned());
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "measuring child failed ({}): {stdout}",
        out.status
    );
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix(tag))
        .unwrap_or_else(|| panic!("no {tag} line from the child: {stdout}"));
    serde_json::from_str(json).expect("child output is JSON")
}

/// Runs one measuring child and parses its `RESULT` line.
fn run_child(url: &str, span: &Span, check: Check) -> Measured {
    let v = run_self(
        &[
            "--measure".into(),
            url.into(),
            span.start.to_string(),
            span.end.to_string(),
            check.encode(),
        ],
        "RESULT ",
    );
    let u = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("child RESULT lacks {k}"))
    };
    Measured {
        secs: v["secs"].as_f64().expect("child RESULT lacks secs"),
        cpu_secs: v["cpu_secs"].as_f64().expect("child RESULT lacks cpu_secs"),
        rows: u("rows"),
        rows_events: u("rows_events"),
        commits: u("commits"),
        max_batch: usize::try_from(u("max_batch")).expect("max_batch fits usize"),
        base_hwm_kb: u("base_hwm_kb"),
        hwm_kb: u("hwm_kb"),
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn mib_kb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

async fn parent(o: Opts) {
    eprintln!("starting a throwaway MariaDB...");
    let server = MariaDb::start(
        ServerOptions::default()
            // The generated table must fit in memory for the load to be quick.
            .arg("--innodb-buffer-pool-size=1G")
            .arg("--innodb-log-buffer-size=64M"),
    )
    .expect("start MariaDB");
    // mysql_async switches a 127.0.0.1 connection to the server's Unix socket unless told not
    // to; a source reads a remote server over TCP, so measure TCP loopback by default.
    let url = if o.socket {
        server.url()
    } else {
        format!("{}?prefer_socket=false", server.url())
    };
    eprintln!(
        "measuring over {}",
        if o.socket {
            "the Unix socket"
        } else {
            "TCP loopback"
        }
    );
    let mut conn = drc_testkit::connect(&url).await;
    q(&mut conn, &format!("CREATE DATABASE {DB}")).await;
    q(&mut conn, &format!("USE {DB}")).await;
    q(&mut conn, &format!("CREATE TABLE sbtest1 {SBTEST_DDL}")).await;
    q(&mut conn, &format!("CREATE TABLE sbtest2 {SBTEST_DDL}")).await;
    q(
        &mut conn,
        "CREATE TABLE blobt (id INT PRIMARY KEY, b LONGBLOB NOT NULL) ENGINE=InnoDB",
    )
    .await;
    let mut lines: Vec<String> = vec![table_header()];
    let mut phase_lines: Vec<String> = Vec::new();

    if o.throughput {
        eprintln!("generating the sysbench-like binlog...");
        let span = record_span(&mut conn, async |c: &mut Conn| generate_sbtest(c, &o).await).await;
        let check = Check::Sbtest {
            inserts: o.inserts,
            updates: o.updates,
            deletes: o.deletes,
        };
        eprintln!(
            "binlog span {} .. {}: {:.1} MB, {} row changes",
            span.start,
            span.end,
            mb(span.bytes),
            check.total_rows()
        );
        let mut runs: Vec<Measured> = Vec::new();
        for run in 1..=o.runs {
            eprintln!("throughput run {run}/{} (load {})", o.runs, loadavg());
            let m = run_child(&url, &span, check);
            lines.push(row_line(&format!("throughput run {run}"), &m, span.bytes));
            eprintln!(
                "  {:.3} s ({:.3} s CPU), {} rows events, {} commits, largest batch {} rows, \
                 peak RSS {:.1} MiB (after connect {:.1} MiB)",
                m.secs,
                m.cpu_secs,
                m.rows_events,
                m.commits,
                m.max_batch,
                mib_kb(m.hwm_kb),
                mib_kb(m.base_hwm_kb)
            );
            runs.push(m);
        }
        runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let best = runs.first().cloned();
        if let Some(b) = &best {
            lines.push(row_line("throughput best", b, span.bytes));
            lines.push(row_line(
                "throughput median",
                &runs[runs.len() / 2],
                span.bytes,
            ));
        }
        if span.start_fp.file == span.end_fp.file {
            let mut framing = (f64::MAX, f64::MAX);
            let mut bare = (f64::MAX, f64::MAX);
            let mut decode = f64::MAX;
            for run in 1..=o.runs {
                eprintln!("phases run {run}/{} (load {})", o.runs, loadavg());
                let v = run_self(
                    &[
                        "--phases".into(),
                        url.clone(),
                        span.start_fp.to_string(),
                        span.end_fp.to_string(),
                    ],
                    "PHASES ",
                );
                let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("PHASES lacks {k}"));
                let rows = v["rows"].as_u64().expect("rows");
                assert_eq!(rows, check.total_rows(), "rows decoded in the phases run");
                eprintln!(
                    "  framing only {:.3} s ({:.3} s CPU; {} events, {:.1} MB); framing + decode \
                     {:.3} s ({:.3} s CPU), of which decode {:.3} s",
                    f("framing_secs"),
                    f("framing_cpu_secs"),
                    v["events"],
                    mb(v["bytes"].as_u64().expect("bytes")),
                    f("stream_decode_secs"),
                    f("stream_decode_cpu_secs"),
                    f("decode_secs"),
                );
                framing.0 = framing.0.min(f("framing_secs"));
                framing.1 = framing.1.min(f("framing_cpu_secs"));
                bare.0 = bare.0.min(f("stream_decode_secs"));
                bare.1 = bare.1.min(f("stream_decode_cpu_secs"));
                decode = decode.min(f("decode_secs"));
            }
            let rows = check.total_rows();
            let phase = |name: &str, wall: f64, cpu: f64| {
                format!(
                    "{:<44} {:>9.3} {:>9.3} {:>11.0} {:>11.0} {:>9.1}",
                    name,
                    wall,
                    cpu,
                    rows as f64 / wall,
                    rows as f64 / cpu,
                    mb(span.bytes) / wall
                )
            };
            phase_lines.push(phase(
                "framing only (mysql_async stream, no decode)",
                framing.0,
                framing.1,
            ));
            phase_lines.push(phase("framing + TableDecoder (no Source)", bare.0, bare.1));
            phase_lines.push(phase(
                "  of which decode_rows (wall, timed inline)",
                decode,
                decode,
            ));
            if let Some(b) = &best {
                let min_cpu = runs.iter().map(|m| m.cpu_secs).fold(f64::MAX, f64::min);
                phase_lines.push(phase("Source (best wall; least CPU)", b.secs, min_cpu));
            }
        } else {
            eprintln!("the span crosses binlog files: phases split skipped");
        }
    }

    if o.size {
        eprintln!("size scenario: one 20 MiB LONGBLOB row...");
        let span = record_span(&mut conn, async |c: &mut Conn| {
            let blob: Vec<u8> = blob_bytes(BLOB_LEN).collect();
            c.exec_drop("INSERT INTO blobt (id, b) VALUES (1, ?)", (blob,))
                .await
                .expect("insert the blob");
        })
        .await;
        let m = run_child(&url, &span, Check::Blob { len: BLOB_LEN });
        lines.push(row_line("size: 20 MiB blob row", &m, span.bytes));
        assert!(
            m.hwm_kb <= BLOB_MAX_HWM_KB,
            "peak RSS {:.1} MiB for a 20 MiB blob exceeds {:.1} MiB",
            mib_kb(m.hwm_kb),
            mib_kb(BLOB_MAX_HWM_KB)
        );

        eprintln!("size scenario: one transaction of {BIG_TXN_ROWS} row changes...");
        let span = record_span(&mut conn, async |c: &mut Conn| {
            q(
                c,
                &format!(
                    "INSERT INTO sbtest2 (id, k, c, pad) SELECT {} FROM seq_1_to_{BIG_TXN_ROWS}",
                    sbtest_values("seq")
                ),
            )
            .await;
        })
        .await;
        let check = Check::Sbtest {
            inserts: BIG_TXN_ROWS,
            updates: 0,
            deletes: 0,
        };
        let m = run_child(&url, &span, check);
        assert_eq!(m.commits, 1, "the big transaction is one commit");
        lines.push(row_line("size: 1M-row transaction", &m, span.bytes));
        assert!(
            m.hwm_kb <= BIG_TXN_MAX_HWM_KB,
            "peak RSS {:.1} MiB for a {BIG_TXN_ROWS}-row transaction exceeds {:.1} MiB: \
             is the transaction being collected?",
            mib_kb(m.hwm_kb),
            mib_kb(BIG_TXN_MAX_HWM_KB)
        );
    }

    let _ = conn.disconnect().await;
    println!();
    println!(
        "binlog source (drc-source), load average at end {}",
        loadavg()
    );
    for l in &lines {
        println!("{l}");
    }
    if !phase_lines.is_empty() {
        println!();
        println!("where the time goes (best of {} runs each)", o.runs);
        println!(
            "{:<44} {:>9} {:>9} {:>11} {:>11} {:>9}",
            "phase", "wall s", "CPU s", "rows/s", "rows/CPU-s", "MB/s"
        );
        for l in &phase_lines {
            println!("{l}");
        }
    }
}

fn table_header() -> String {
    format!(
        "{:<28} {:>10} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9} {:>11}",
        "scenario",
        "rows",
        "wall s",
        "CPU s",
        "rows/s",
        "rows/CPU-s",
        "MB/s",
        "binlog MB",
        "peak RSS"
    )
}

fn row_line(name: &str, m: &Measured, bytes: u64) -> String {
    format!(
        "{:<28} {:>10} {:>9.3} {:>9.3} {:>11.0} {:>11.0} {:>9.1} {:>9.1} {:>7.1} MiB",
        name,
        m.rows,
        m.secs,
        m.cpu_secs,
        m.rows as f64 / m.secs,
        m.rows as f64 / m.cpu_secs,
        mb(bytes) / m.secs,
        mb(bytes),
        mib_kb(m.hwm_kb)
    )
}
