//! The timed pipeline: drc-apply's public parts (`Source` -> `Batcher` -> `plan` ->
//! `sql::statements` -> `Applier`) put together as link.rs does, with every step timed per batch,
//! and two measured prototypes of changes (`grouped`: shares ordered by dependency level before
//! the rewrite; `piped`: the next batch prepared while the current one is applied).

#[allow(unused_imports)]
use super::*;

/// Time spent per step, summed over batches.
#[derive(Debug, Default)]
pub(crate) struct PhaseTimes {
    pub(crate) batches: u64,
    pub(crate) changes: u64,
    pub(crate) statements: u64,
    pub(crate) sql_bytes: u64,
    /// Waiting for the batcher (source read, decode, filter, batch forming; the source reads
    /// ahead in its own task, so this is only the time the appliers starved).
    pub(crate) wait: f64,
    pub(crate) plan: f64,
    /// Ordering by dependency level (grouped prototype only).
    pub(crate) order: f64,
    pub(crate) rewrite: f64,
    /// Wall time of the parallel apply (the slowest worker).
    pub(crate) exec: f64,
    /// Sum over workers of their apply time (server execution incl. round trips).
    pub(crate) exec_worker_sum: f64,
    /// The per-change metrics update as link.rs does it.
    pub(crate) metrics: f64,
}

/// A batch made ready for the appliers: one job (statements, checkpoint) per worker.
pub(crate) struct Prepared {
    pub(crate) batch: drc_apply::batch::Batch,
    pub(crate) jobs: Vec<Option<(Vec<String>, String)>>,
    pub(crate) plan: f64,
    pub(crate) order: f64,
    pub(crate) rewrite: f64,
    pub(crate) statements: u64,
    pub(crate) sql_bytes: u64,
}

/// Plans and rewrites batch `seq` as link.rs does (`grouped`: each share ordered by level).
pub(crate) fn prepare(
    batch: drc_apply::batch::Batch,
    seq: u64,
    workers: usize,
    grouped: bool,
    statement_rows: usize,
) -> Prepared {
    let t1 = Instant::now();
    let pl = plan::plan(&batch.changes, workers);
    let t2 = Instant::now();
    let mut order = 0f64;
    let (mut statements, mut sql_bytes) = (0u64, 0u64);
    let mut jobs: Vec<Option<(Vec<String>, String)>> = Vec::with_capacity(workers);
    for (w, share) in pl.shares.iter().enumerate() {
        if share.is_empty() {
            jobs.push(None);
            continue;
        }
        let mut refs: Vec<&RowChange> = share.iter().map(|&i| &batch.changes[i]).collect();
        if grouped {
            let to = Instant::now();
            refs = drc_apply::plan::order_by_level(&refs);
            order += to.elapsed().as_secs_f64();
        }
        let stmts = sql::statements(&refs, statement_rows, usize::MAX).expect("rewrite changes");
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
        statements += stmts.len() as u64;
        sql_bytes += stmts.iter().map(|s| s.len() as u64).sum::<u64>();
        jobs.push(Some((stmts, cp)));
    }
    let t3 = Instant::now();
    Prepared {
        batch,
        jobs,
        plan: (t2 - t1).as_secs_f64(),
        order,
        rewrite: (t3 - t2).as_secs_f64() - order,
        statements,
        sql_bytes,
    }
}

pub(crate) async fn run_phases(
    a: &MariaDb,
    t: &MariaDb,
    workers: usize,
    variant: Variant,
    o: &Opts,
    b: &Backlog,
    replica_id: u32,
) -> (f64, CpuMark, PhaseTimes) {
    let cfg = drc_config(a, t, workers, false, o);
    let mut conn = drc_testkit::connect(&t.url()).await;
    for s in meta::schema::create_statements(META_DB) {
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
    let filter = LinkFilter::new(
        Origin::Both(drc_apply::filter::OriginIds::own(a.server_id())),
        cfg.replication.clone(),
    );
    let mut batcher = Batcher::new(rx, filter, cfg.applier.batch_rows, cfg.applier.batch_delay);
    let grouped = variant != Variant::Timed;
    let statement_rows = cfg.applier.statement_rows;
    // Piped: a task forms, plans and rewrites the next batch while the current one is applied.
    let (ptx, mut prx) = mpsc::channel::<Prepared>(1);
    let (producer, mut batcher) = if variant == Variant::Piped {
        let (start, end) = (b.start.clone(), b.end.clone());
        let task = tokio::spawn(async move {
            let (mut position, mut seq) = (start, 0u64);
            while !covers(&position, &end) {
                let batch = batcher
                    .next(position.clone(), None)
                    .await
                    .expect("next batch");
                seq += 1;
                position = batch.end.clone();
                let prepared = prepare(batch, seq, workers, true, statement_rows);
                if ptx.send(prepared).await.is_err() {
                    break;
                }
            }
        });
        (Some(task), None)
    } else {
        (None, Some(batcher))
    };
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
        let prepared = match batcher.as_mut() {
            Some(bt) => {
                let batch = bt.next(position.clone(), None).await.expect("next batch");
                p.wait += t0.elapsed().as_secs_f64();
                seq += 1;
                prepare(batch, seq, workers, grouped, statement_rows)
            }
            None => {
                let pr = prx.recv().await.expect("the producer sends the next batch");
                p.wait += t0.elapsed().as_secs_f64();
                pr
            }
        };
        let Prepared {
            batch,
            jobs,
            plan,
            order,
            rewrite,
            statements,
            sql_bytes,
        } = prepared;
        p.plan += plan;
        p.order += order;
        p.rewrite += rewrite;
        p.statements += statements;
        p.sql_bytes += sql_bytes;
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
        p.exec += (t4 - t3).as_secs_f64();
        p.exec_worker_sum += per_worker.iter().sum::<f64>();
        p.metrics += (t5 - t4).as_secs_f64();
        position = batch.end;
    }
    let secs = began.elapsed().as_secs_f64();
    let end_mark = CpuMark::take(a, t);
    if let Some(pr) = producer {
        pr.await.expect("the producer task ends");
    }
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
