//! What a row change costs the target server in each statement form drc could send: the same
//! upserts (every row changed) as drc's multi-row text statements with hex string literals,
//! the same with quoted literals, one server-side prepared statement executed with the rows as
//! parameters (binary protocol), and plain `UPDATE`s by primary key joined into one
//! multi-statement query. Issue #16 asked whether prepared statements help; this measures it.
//!
//! Run with `cargo bench -p drc-apply --bench statement_forms -- [--rows N] [--per N]
//! [--rounds N] [--durable]`. One throwaway MariaDB (drc-testkit, binlog ROW/FULL, relaxed
//! durability unless `--durable`) holds `bench.t (id INT PK, k INT, c CHAR(120), pad CHAR(60),
//! KEY k_1(k))` with `--rows` rows (default 100,000). Each form then changes every row once,
//! `--per` rows a statement (default 500, as a drc share), each statement its own transaction;
//! forms alternate for `--rounds` rounds (default 2). Prints rows/s, the server's and this
//! client's CPU microseconds per row (from `/proc/<pid>/stat`), and checks after every form
//! that every row holds what it wrote (`SUM` and `BIT_XOR` of a row hash equal to the client's).
//! A benchmark, not a test: it fails only when the data is wrong or the server errs.

use std::fmt::Write as _;
use std::time::Instant;

use drc_core::sqltext::hex_literal;
use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CLOCK_TICKS: f64 = 100.0;

#[derive(Clone, Copy, Debug)]
enum Form {
    TextHex,
    TextQuoted,
    Prepared,
    UpdatesJoined,
}

impl Form {
    const ALL: [Form; 4] = [
        Form::TextHex,
        Form::TextQuoted,
        Form::Prepared,
        Form::UpdatesJoined,
    ];

    fn name(self) -> &'static str {
        match self {
            Form::TextHex => "upsert, text, hex literals (drc)",
            Form::TextQuoted => "upsert, text, quoted literals",
            Form::Prepared => "upsert, prepared, binary protocol",
            Form::UpdatesJoined => "UPDATE by id, joined statements",
        }
    }
}

struct Opts {
    rows: u64,
    per: u64,
    rounds: u32,
    durable: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        rows: 100_000,
        per: 500,
        rounds: 2,
        durable: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| -> u64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--rows" => o.rows = value(i),
            "--per" => o.per = value(i),
            "--rounds" => o.rounds = u32::try_from(value(i)).expect("--rounds fits u32"),
            "--durable" => {
                o.durable = true;
                i += 1;
                continue;
            }
            // `cargo bench` passes --bench.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(o.rows > 0 && o.per > 0, "--rows and --per must be positive");
    o
}

fn cpu_secs(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let rest = s.rsplit_once(") ").map(|(_, r)| r).expect("stat format");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f[i].parse::<u64>().expect("a tick count") as f64;
    (ticks(11) + ticks(12)) / CLOCK_TICKS
}

/// The values row `id` gets in round `gen`: `(k, c, pad)`.
fn row(id: u64, gen: u64) -> (i64, String, String) {
    let k = i64::try_from((id * 31 + gen * 7) % 100_000).expect("small");
    let c = format!("{id:011}-{gen:011}-").repeat(5)[..119].to_string();
    let pad = format!("{gen:011}-{id:011}-").repeat(3)[..59].to_string();
    (k, c, pad)
}

/// Every id once, in a scattered order (a share's keys are not adjacent).
fn order(rows: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = (1..=rows).collect();
    let mut rng = fastrand::Rng::with_seed(16);
    rng.shuffle(&mut ids);
    ids
}

async fn apply(conn: &mut Conn, form: Form, ids: &[u64], per: usize, gen: u64) {
    const COLS: &str = "INSERT INTO bench.t (id, k, c, pad) VALUES ";
    const ODKU: &str = " ON DUPLICATE KEY UPDATE k = VALUES(k), c = VALUES(c), pad = VALUES(pad)";
    let mut prepared = None;
    for chunk in ids.chunks(per) {
        match form {
            Form::TextHex | Form::TextQuoted => {
                let mut q = String::from(COLS);
                for (n, &id) in chunk.iter().enumerate() {
                    let (k, c, pad) = row(id, gen);
                    q.push_str(if n == 0 { "(" } else { ", (" });
                    let _ = write!(q, "{id}, {k}, ");
                    if matches!(form, Form::TextHex) {
                        hex_literal(&mut q, c.as_bytes());
                        q.push_str(", ");
                        hex_literal(&mut q, pad.as_bytes());
                    } else {
                        let _ = write!(q, "'{c}', '{pad}'");
                    }
                    q.push(')');
                }
                q.push_str(ODKU);
                conn.query_drop(q).await.expect("text upsert");
            }
            Form::Prepared => {
                if prepared.as_ref().map(|(n, _)| *n) != Some(chunk.len()) {
                    let mut q = String::from(COLS);
                    for n in 0..chunk.len() {
                        q.push_str(if n == 0 {
                            "(?, ?, ?, ?)"
                        } else {
                            ", (?, ?, ?, ?)"
                        });
                    }
                    q.push_str(ODKU);
                    let stmt = conn.prep(q).await.expect("prepare");
                    prepared = Some((chunk.len(), stmt));
                }
                let mut params = Vec::with_capacity(chunk.len() * 4);
                for &id in chunk {
                    let (k, c, pad) = row(id, gen);
                    params.push(Value::from(id));
                    params.push(Value::from(k));
                    params.push(Value::from(c));
                    params.push(Value::from(pad));
                }
                let (_, stmt) = prepared.as_ref().expect("prepared above");
                conn.exec_drop(stmt, Params::Positional(params))
                    .await
                    .expect("prepared upsert");
            }
            Form::UpdatesJoined => {
                let mut q = String::from("START TRANSACTION");
                for &id in chunk {
                    let (k, c, pad) = row(id, gen);
                    let _ = write!(q, ";\nUPDATE bench.t SET k = {k}, c = ");
                    hex_literal(&mut q, c.as_bytes());
                    q.push_str(", pad = ");
                    hex_literal(&mut q, pad.as_bytes());
                    let _ = write!(q, " WHERE id = {id}");
                }
                q.push_str(";\nCOMMIT");
                conn.query_drop(q).await.expect("joined updates");
            }
        }
    }
    if let Some((_, stmt)) = prepared {
        conn.close(stmt).await.expect("close statement");
    }
}

/// `(SUM(k), BIT_XOR(CRC32(CONCAT(id, c, pad))))` as the client computes it for round `gen`.
fn expected(rows: u64, gen: u64) -> (i64, u64) {
    let mut sum = 0i64;
    let mut x = 0u64;
    for id in 1..=rows {
        let (k, c, pad) = row(id, gen);
        sum += k;
        x ^= u64::from(crc32fast::hash(format!("{id}{c}{pad}").as_bytes()));
    }
    (sum, x)
}

async fn run(o: Opts) {
    let mut options = ServerOptions::default().args([
        "--innodb-buffer-pool-size=512M",
        "--innodb-log-file-size=512M",
    ]);
    options = if o.durable {
        options.durable()
    } else {
        options.innodb_flush_log_at_trx_commit(2).sync_binlog(0)
    };
    let server = MariaDb::start(options).expect("start MariaDB");
    let url = format!("{}?prefer_socket=false", server.url());
    let mut conn = Conn::from_url(url).await.expect("connect");
    conn.query_drop(format!(
        "CREATE DATABASE bench; USE bench; CREATE TABLE bench.t (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, \
         c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY k_1 (k)); \
         INSERT INTO bench.t SELECT seq, 0, '', '' FROM seq_1_to_{}",
        o.rows
    ))
    .await
    .expect("seed");
    let server_stat = format!(
        "/proc/{}/stat",
        server.mariadbd_pid().expect("mariadbd runs")
    );
    let ids = order(o.rows);
    let per = usize::try_from(o.per).expect("--per fits usize");
    println!(
        "== statement forms: {} rows, {} a statement, {}, load average {}",
        o.rows,
        o.per,
        if o.durable { "durable" } else { "relaxed" },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("round  form                               rows/s   server us/row  client us/row");
    let mut gen = 0;
    for round in 1..=o.rounds {
        for form in Form::ALL {
            gen += 1;
            let (s0, c0, t0) = (
                cpu_secs(&server_stat),
                cpu_secs("/proc/self/stat"),
                Instant::now(),
            );
            apply(&mut conn, form, &ids, per, gen).await;
            let wall = t0.elapsed().as_secs_f64();
            let (s1, c1) = (cpu_secs(&server_stat), cpu_secs("/proc/self/stat"));
            let got: (i64, u64) = conn
                .query_first(
                    "SELECT CAST(SUM(k) AS SIGNED), BIT_XOR(CRC32(CONCAT(id, c, pad))) FROM bench.t",
                )
                .await
                .expect("fingerprint")
                .expect("one row");
            assert_eq!(
                got,
                expected(o.rows, gen),
                "{} wrote wrong data",
                form.name()
            );
            let n = o.rows as f64;
            println!(
                "{round:<6} {:<34} {:>7.0}  {:>13.1}  {:>13.1}",
                form.name(),
                n / wall,
                (s1 - s0) * 1e6 / n,
                (c1 - c0) * 1e6 / n
            );
        }
    }
    conn.disconnect().await.expect("disconnect");
}

fn main() {
    // `cargo test --all-targets` would run a bench binary without arguments: measure only when
    // `cargo bench` asks (it passes --bench).
    if std::env::args().len() == 1 {
        eprintln!(
            "this is a benchmark; run it with `cargo bench -p drc-apply --bench statement_forms`"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(parse_opts()));
}
