//! The parent: starts a, seeds it, generates the backlog, measures every target in every mode,
//! checks every target's table against a's, and prints the results.

#[allow(unused_imports)]
use super::*;

pub(crate) async fn parent(o: Opts) {
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
    seed(&mut ac, o.rows, true, o.version_column).await;
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
            seed(&mut tc, o.rows, false, o.version_column).await;
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
                Target::Drc(n) | Target::DrcLww(n) => {
                    next_replica_id += 2;
                    let lww = matches!(target, Target::DrcLww(_));
                    let (secs, startup, cpu, batches) =
                        run_drc(&a, &ts, n, lww, &o, &backlog, next_replica_id).await;
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
                Target::Phases { workers, variant } => {
                    next_replica_id += 2;
                    let (secs, cpu, p) =
                        run_phases(&a, &ts, workers, variant, &o, &backlog, next_replica_id).await;
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

pub(crate) fn phase_line(mode: Mode, label: &str, wall: f64, p: &PhaseTimes) -> String {
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
