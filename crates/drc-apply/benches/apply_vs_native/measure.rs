//! The measurements: native replication and a drc link applying the backlog on a fresh target,
//! timed from the start of apply until the target has a's end position, with the CPU time of
//! the servers and of this process.

#[allow(unused_imports)]
use super::*;

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// User + system CPU seconds used so far by process `pid` (`None`: this process).
pub(crate) fn proc_cpu_secs(pid: Option<u32>) -> f64 {
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

pub(crate) fn server_cpu(server: &MariaDb) -> f64 {
    proc_cpu_secs(Some(server.mariadbd_pid().expect("mariadbd is running")))
}

/// `url` with mysql_async's switch to the Unix socket turned off (unless `socket`).
pub(crate) fn link_url(server: &MariaDb, socket: bool) -> String {
    if socket {
        server.url()
    } else {
        format!("{}?prefer_socket=false", server.url())
    }
}

/// Whether MariaDB GTID position `pos` includes every GTID of `end`.
pub(crate) fn covers(pos: &Position, end: &Position) -> bool {
    match (pos, end) {
        (Position::MariaGtid(p), Position::MariaGtid(e)) => e
            .iter()
            .all(|g| p.get(g.domain).is_some_and(|h| h.seq >= g.seq)),
        _ => pos == end,
    }
}

/// The backlog on a, as every target must apply it.
pub(crate) struct Backlog {
    pub(crate) start: Position,
    pub(crate) end: Position,
    pub(crate) seed_fp: Fingerprint,
    pub(crate) end_fp: Fingerprint,
    pub(crate) txns: u64,
    pub(crate) rows: u64,
}

/// One target's measurement.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) mode: Mode,
    pub(crate) target: Target,
    pub(crate) secs: f64,
    /// drc: until the link was running (connect, checks, canary), included in `secs`.
    pub(crate) startup_secs: Option<f64>,
    pub(crate) target_cpu: f64,
    pub(crate) source_cpu: f64,
    pub(crate) own_cpu: Option<f64>,
    pub(crate) batches: Option<u64>,
    pub(crate) notes: Vec<String>,
}

/// CPU counters at the start of a measurement.
pub(crate) struct CpuMark {
    pub(crate) target: f64,
    pub(crate) source: f64,
    pub(crate) own: f64,
}

impl CpuMark {
    pub(crate) fn take(a: &MariaDb, t: &MariaDb) -> Self {
        CpuMark {
            target: server_cpu(t),
            source: server_cpu(a),
            own: proc_cpu_secs(None),
        }
    }
}

pub(crate) async fn slave_status(conn: &mut Conn) -> Option<Row> {
    conn.query_first("SHOW SLAVE STATUS")
        .await
        .expect("SHOW SLAVE STATUS")
}

pub(crate) fn status_field(row: &Row, name: &str) -> String {
    row.get_opt::<Option<String>, _>(name)
        .and_then(Result::ok)
        .flatten()
        .unwrap_or_default()
}

pub(crate) async fn run_native(
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
pub(crate) fn drc_config(
    a: &MariaDb,
    t: &MariaDb,
    parallelism: usize,
    lww: bool,
    o: &Opts,
) -> drc_config::Config {
    let mut text = format!(
        "[[center]]\nname = \"a\"\nmysql = \"{}\"\n\n[[center]]\nname = \"b\"\nmysql = \"{}\"\n\n\
         [replication]\ndatabases = [\"{DB}\"]\n\n[applier]\nparallelism = {parallelism}\n",
        a.url(),
        t.url()
    );
    if let Some(r) = o.batch_rows {
        text.push_str(&format!("batch_rows = {r}\n"));
    }
    if !lww {
        // Source wins (the plain rewrite), also for a table with `updated_at`.
        text.push_str("\n[conflict]\nversion_column = \"\"\n");
    }
    drc_config::Config::parse(&text, &|_| None).expect("valid drc configuration")
}

/// Writes the link's first checkpoint in the target: the link resumes at the backlog's start.
pub(crate) async fn write_initial_checkpoint(t: &MariaDb, workers: u32, start: &Position) {
    let mut conn = drc_testkit::connect(&t.url()).await;
    for s in meta::schema::create_statements(META_DB) {
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

pub(crate) async fn run_drc(
    a: &MariaDb,
    t: &MariaDb,
    parallelism: usize,
    lww: bool,
    o: &Opts,
    b: &Backlog,
    replica_id: u32,
) -> (f64, f64, CpuMark, u64) {
    let cfg = drc_config(a, t, parallelism, lww, o);
    let spec = LinkSpec {
        name: LINK.into(),
        source_name: "a".into(),
        source_url: drc_config::Secret::new(link_url(a, o.socket)),
        target_url: drc_config::Secret::new(link_url(t, o.socket)),
        replication: cfg.replication.clone(),
        applier: cfg.applier.clone(),
        source: cfg.source.clone(),
        replica_server_id: replica_id,
        conflict: cfg.conflict.clone(),
        local_deletes: None,
        key_locks: None,
        fence: None,
        ddl: drc_config::Ddl::default(),
        // The initial checkpoint is written below.
        first_start: drc_apply::FirstStart::Refuse,
        closure: None,
    };
    let mut spec = spec;
    write_initial_checkpoint(t, parallelism as u32, &b.start).await;
    let metrics = Metrics::new().expect("metrics");
    let state = Arc::new(LinkState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Last-writer-wins runs as in the daemon: with key locks and the target's local-delete
    // reader, whose progress every missing row (and every second look after an insert) waits for.
    let reader = if lww {
        let (ptx, prx) = watch::channel(None);
        spec.key_locks = Some(drc_apply::conflict::keylock::KeyLocks::new());
        spec.local_deletes = Some(prx);
        let rspec = drc_apply::conflict::local::LocalDeletesSpec {
            center: "b".into(),
            replica: None,
            url: drc_config::Secret::new(link_url(t, o.socket)),
            replication: cfg.replication.clone(),
            conflict: cfg.conflict.clone(),
            source: cfg.source.clone(),
            replica_server_id: replica_id + 1_000_000,
            lag: None,
            regressions: None,
        };
        Some(tokio::spawn(drc_apply::conflict::local::run_local_deletes(
            rspec,
            ptx,
            stop_rx.clone(),
        )))
    } else {
        None
    };
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
    if let Some(r) = reader {
        tokio::time::timeout(STOP_DEADLINE, r)
            .await
            .expect("the local-delete reader stops after shutdown")
            .expect("reader task")
            .expect("the local-delete reader ends without error");
    }
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
