//! The parent: generation, children, report.

#[allow(unused_imports)]
use super::*;

pub(crate) async fn q(conn: &mut Conn, sql: &str) {
    if let Err(e) = conn.query_drop(sql).await {
        panic!("query failed: {e}\n{}", truncate(sql, 300));
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub(crate) async fn scalar_u64(conn: &mut Conn, sql: &str) -> u64 {
    let v: Option<u64> = conn
        .query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    v.unwrap_or_else(|| panic!("{sql}: no value"))
}

/// A binlog span: GTID positions for the source and file positions for the byte count.
pub(crate) struct Span {
    pub(crate) start: Position,
    pub(crate) end: Position,
    pub(crate) start_fp: FilePos,
    pub(crate) end_fp: FilePos,
    pub(crate) bytes: u64,
}

pub(crate) async fn positions(conn: &mut Conn) -> (Position, FilePos) {
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
pub(crate) async fn record_span<F>(conn: &mut Conn, generate: F) -> Span
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
pub(crate) fn sbtest_values(id: &str) -> String {
    format!(
        "{id}, FLOOR(1 + RAND({id}) * 1000000), \
         LEFT(CONCAT(SHA2(CONCAT('c', {id}), 256), SHA2(CONCAT('C', {id}), 256)), 120), \
         LEFT(SHA2(CONCAT('p', {id}), 256), 60)"
    )
}

pub(crate) const SBTEST_DDL: &str =
    "(id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, \
     c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1(k)) ENGINE=InnoDB";

/// Sends `stmts` in multi-statement round trips.
pub(crate) async fn run_batched(conn: &mut Conn, stmts: impl Iterator<Item = String>) {
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

pub(crate) async fn generate_sbtest(conn: &mut Conn, o: &Opts) {
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

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs this binary with `args` (prefixed by `SOURCE_BENCH_WRAP`) and returns the JSON of its
/// output line starting with `tag`.
pub(crate) fn run_self(args: &[String], tag: &str) -> serde_json::Value {
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
pub(crate) fn run_child(url: &str, span: &Span, check: Check) -> Measured {
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

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub(crate) fn mib_kb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub(crate) async fn parent(o: Opts) {
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

pub(crate) fn table_header() -> String {
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

pub(crate) fn row_line(name: &str, m: &Measured, bytes: u64) -> String {
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
