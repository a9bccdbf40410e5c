//! The running link: each batch checked against the target's columns, planned into per-worker
//! shares, rewritten (source wins) or handed to last-writer-wins, and applied by the workers
//! concurrently, each share in one transaction with its checkpoint; then metrics and status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use drc_core::change::{ChangeKind, RowChange};
use drc_core::position::Position;
use drc_core::schema::TableSchema;
use drc_meta::Checkpoint;
use drc_mysql::bounded;
use futures_util::future::try_join_all;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{checkpoint_statement, LinkSpec};
use crate::batch::Batch;
use crate::conflict::LwwChange;
use crate::metrics::Metrics;
use crate::plan::plan;
use crate::sql;
use crate::state::LinkState;
use crate::worker::{Applier, Job};
use crate::LinkError;

/// A `max_allowed_packet` that fits a statement of `bytes` with drc's margin, rounded up to
/// the next MiB.
fn needed_packet(bytes: usize) -> u64 {
    let b = (bytes + crate::size::MARGIN) as u64;
    b.div_ceil(1 << 20) * (1 << 20)
}

/// Target tables' columns, checked once per source schema.
#[derive(Default)]
pub(crate) struct ColumnCheck {
    checked: Vec<Arc<TableSchema>>,
    columns: HashMap<(String, String), HashSet<String>>,
}

impl ColumnCheck {
    async fn load(conn: &mut Conn, db: &str, table: &str) -> Result<HashSet<String>, LinkError> {
        let cols: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
            .map_err(|e| LinkError::target("reading target columns", e))?;
        Ok(cols.into_iter().collect())
    }

    async fn check(&mut self, conn: &mut Conn, changes: &[RowChange]) -> Result<(), LinkError> {
        for c in changes {
            if self.checked.iter().any(|s| Arc::ptr_eq(s, &c.table)) {
                continue;
            }
            let key = (c.table.database.to_string(), c.table.table.to_string());
            let mut reloaded = false;
            loop {
                if !self.columns.contains_key(&key) || reloaded {
                    let cols = Self::load(conn, &key.0, &key.1).await?;
                    self.columns.insert(key.clone(), cols);
                }
                let cols = self.columns.get(&key).cloned().unwrap_or_default();
                if cols.is_empty() {
                    if reloaded {
                        return Err(LinkError::MissingTable {
                            table: c.table.qualified_name(),
                        });
                    }
                    reloaded = true;
                    continue;
                }
                let missing = c
                    .table
                    .columns
                    .iter()
                    .find(|col| !cols.contains(&*col.name));
                match missing {
                    None => break,
                    Some(_) if !reloaded => reloaded = true,
                    Some(col) => {
                        return Err(LinkError::MissingColumn {
                            table: c.table.qualified_name(),
                            column: col.name.to_string(),
                        })
                    }
                }
            }
            self.checked.push(c.table.clone());
        }
        Ok(())
    }
}

pub(crate) struct Runner {
    pub(crate) spec: LinkSpec,
    pub(crate) appliers: Vec<Applier>,
    pub(crate) metrics: Metrics,
    pub(crate) state: Arc<LinkState>,
    pub(crate) columns: ColumnCheck,
    pub(crate) meta_conn: Conn,
    /// Version column per table schema (by pointer; schemas are immutable and shared).
    pub(crate) versions: HashMap<usize, (Arc<TableSchema>, Option<usize>)>,
    /// The target's `max_allowed_packet`, read at start ([`crate::size`]).
    pub(crate) max_allowed_packet: u64,
    /// The target's local-delete reader's progress, when it runs and the target has GTIDs.
    pub(crate) progress: Option<crate::conflict::tombstone::Progress>,
}

impl Runner {
    /// Forgets every cached target schema (after a replicated DDL changed one).
    pub(crate) fn forget_schemas(&mut self) {
        self.columns.checked.clear();
        self.columns.columns.clear();
        self.versions.clear();
    }

    /// The operator's control of this link, read from the target's meta database.
    pub(crate) async fn control(&mut self) -> Result<drc_meta::control::Control, LinkError> {
        let meta = self.spec.replication.meta_database.clone();
        let name = self.spec.name.clone();
        bounded(
            self.spec.applier.query_timeout,
            "reading the link's control",
            async {
                drc_meta::control::read(&mut self.meta_conn, &meta, &name)
                    .await
                    .map_err(LinkError::from)
            },
        )
        .await
    }

    /// Waits while the link is paused (status `paused`, nothing applied), then ends the run
    /// with [`LinkError::Resumed`] so that it starts again from its checkpoints (which `drc
    /// link set-position` may have changed meanwhile).
    pub(crate) async fn paused(
        &mut self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), LinkError> {
        tracing::info!("paused by the operator (drc link pause); applying nothing until resumed");
        self.state.set_status(crate::state::LinkStatus::Paused);
        self.metrics
            .up
            .with_label_values(&[self.spec.name.as_str()])
            .set(0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(super::CONTROL_EVERY) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            if !self.control().await?.paused {
                tracing::info!("resumed by the operator (drc link resume); starting again from the checkpoints");
                return Err(LinkError::Resumed);
            }
        }
    }

    /// Records the end of a batch that was applied (status and metrics).
    pub(crate) fn set_position(&self, p: &Position) {
        self.state.set_position(p);
    }

    /// Names the link, the batch and the target's limit in a row that does not fit.
    fn too_large(&self, batch: &Batch, e: LinkError) -> LinkError {
        match e {
            LinkError::Rewrite(sql::RewriteError::RowTooLarge { table, key, bytes }) => {
                LinkError::RowTooLarge {
                    link: self.spec.name.clone(),
                    table,
                    key,
                    bytes,
                    needed: needed_packet(bytes),
                    max_allowed_packet: self.max_allowed_packet,
                    position: batch.start.to_string(),
                }
            }
            e => e,
        }
    }

    /// The last-writer-wins version column of `t`, if it uses one.
    fn version_of(&mut self, t: &Arc<TableSchema>) -> Result<Option<usize>, LinkError> {
        if let Some((_, v)) = self.versions.get(&(Arc::as_ptr(t) as usize)) {
            return Ok(*v);
        }
        let v = crate::conflict::version_column(&self.spec.conflict, t)?;
        if self.versions.len() > 10_000 {
            self.versions.clear();
        }
        // The Arc kept in the map pins the pointer, so it is never reused by another schema.
        self.versions
            .insert(Arc::as_ptr(t) as usize, (t.clone(), v));
        Ok(v)
    }

    /// Applies `batch` (sequence `seq`, planned for `workers`), skipping workers in `done`.
    pub(crate) async fn apply(
        &mut self,
        seq: u64,
        batch: &Batch,
        workers: u32,
        done: &[u32],
    ) -> Result<(), LinkError> {
        let began = std::time::Instant::now();
        bounded(
            self.spec.applier.query_timeout,
            "reading target columns",
            self.columns.check(&mut self.meta_conn, &batch.changes),
        )
        .await?;
        let p = plan(&batch.changes, workers as usize);
        let meta_db = self.spec.replication.meta_database.clone();
        let mut jobs: Vec<(usize, Job<'_>)> = Vec::new();
        for (w, share) in p.shares.iter().enumerate() {
            if done.contains(&(w as u32)) || share.is_empty() {
                continue;
            }
            let mut plain: Vec<&RowChange> = Vec::with_capacity(share.len());
            let mut lww: Vec<&RowChange> = Vec::new();
            let mut versions: HashMap<usize, usize> = HashMap::new();
            for &i in share {
                let c = &batch.changes[i];
                match self.version_of(&c.table)? {
                    Some(v) => {
                        versions.insert(Arc::as_ptr(&c.table) as usize, v);
                        lww.push(c);
                    }
                    None => plain.push(c),
                }
            }
            let plain = crate::plan::order_by_level(&plain);
            let statements = sql::rendered(
                &plain,
                self.spec.applier.statement_rows,
                crate::size::budget(self.max_allowed_packet),
            )
            .map_err(|e| self.too_large(batch, e.into()))?;
            let lww = crate::plan::lww_levels(&lww, crate::conflict::foldable)
                .into_iter()
                .map(|level| {
                    level
                        .into_iter()
                        .map(|p| LwwChange {
                            change: p.change,
                            version: versions
                                .get(&(Arc::as_ptr(&p.change.table) as usize))
                                .copied()
                                .unwrap_or(0),
                            chained: p.chained,
                        })
                        .collect()
                })
                .collect();
            let checkpoint = share_checkpoint(&self.spec, w as u32, seq, workers, batch);
            jobs.push((
                w,
                Job {
                    statements,
                    at: format!("after {} up to {}", batch.start, batch.end),
                    lww,
                    checkpoint,
                    conflict_log: (meta_db.clone(), self.spec.name.clone()),
                    progress: self.progress.clone(),
                    key_locks: self.spec.key_locks.clone(),
                },
            ));
        }
        if jobs.is_empty() && !done.contains(&0) {
            // Nothing to apply: move the position forward on worker 0 alone.
            let checkpoint = share_checkpoint(&self.spec, 0, seq, workers, batch);
            jobs.push((
                0,
                Job {
                    checkpoint,
                    ..Job::default()
                },
            ));
        }
        // Transactions passed on the operator's request are recorded with the first job's
        // checkpoint: exactly when the position passes them.
        if let Some((_, job)) = jobs.first_mut() {
            for s in &batch.skipped {
                job.checkpoint.push_str(";\n");
                job.checkpoint
                    .push_str(&drc_meta::control::skipped_statement(
                        &meta_db,
                        &self.spec.name,
                        &s.gtid,
                        s.rows,
                        &s.content,
                    ));
            }
        }
        // Each applier runs its job concurrently; appliers beyond the plan's width stay idle.
        let mut by_worker: Vec<Option<Job<'_>>> = (0..self.appliers.len()).map(|_| None).collect();
        for (w, job) in jobs {
            if let Some(slot) = by_worker.get_mut(w) {
                *slot = Some(job);
            } else {
                return Err(LinkError::Checkpoint(format!(
                    "batch {seq} was planned for {workers} workers but only {} run; set applier.parallelism back to {workers} until the link has passed it",
                    self.appliers.len()
                )));
            }
        }
        let records = try_join_all(self.appliers.iter_mut().zip(by_worker).map(
            |(a, job)| async move {
                match job {
                    Some(job) => a.apply_job(&job).await,
                    None => Ok(Vec::new()),
                }
            },
        ))
        .await
        .map_err(|e| self.too_large(batch, e))?;
        for r in records.iter().flatten() {
            self.metrics
                .conflicts
                .with_label_values(&[&self.spec.name, &r.table, r.resolution.as_str()])
                .inc();
        }
        let link = self.spec.name.as_str();
        for c in &batch.changes {
            let kind = match c.kind {
                ChangeKind::Insert => "insert",
                ChangeKind::Update => "update",
                ChangeKind::Delete => "delete",
            };
            self.metrics.rows.with_label_values(&[link, kind]).inc();
        }
        self.metrics
            .transactions
            .with_label_values(&[link])
            .inc_by(batch.transactions);
        self.metrics
            .loopback_dropped
            .with_label_values(&[link])
            .inc_by(batch.loopback_dropped);
        self.metrics.batches.with_label_values(&[link]).inc();
        if let Some(closure) = &self.spec.closure {
            closure.check(link, &self.spec.source_name, &batch.changes);
        }
        self.metrics
            .batch_duration
            .with_label_values(&[link])
            .observe(began.elapsed().as_secs_f64());
        if let Some(received) = batch.received {
            self.metrics
                .latency
                .with_label_values(&[link])
                .observe(received.elapsed().as_secs_f64());
        }
        self.state.set_position(&batch.end);
        let meta = self.spec.replication.meta_database.as_str();
        if batch
            .changes
            .iter()
            .any(|c| &*c.table.database == meta && &*c.table.table == "heartbeat")
        {
            self.measure_heartbeat().await;
        }
        Ok(())
    }

    /// The lag at the source's heartbeat this batch just committed: the target's clock now
    /// minus the source's stamp in the row (drc_meta::heartbeat), one query right after the
    /// commit, so it resolves microseconds instead of the heartbeat's period. Sets
    /// `drc_link_lag_seconds` and records the figure for the daemon's lag gauge, which raises
    /// it while no newer heartbeat arrives. A failed read only leaves the gauge as it was.
    async fn measure_heartbeat(&mut self) {
        let meta = self.spec.replication.meta_database.clone();
        let source = self.spec.source_name.clone();
        let read = bounded(
            self.spec.applier.query_timeout,
            "reading the applied heartbeat",
            async {
                drc_meta::heartbeat::applied_lag(&mut self.meta_conn, &meta, &source)
                    .await
                    .map_err(LinkError::from)
            },
        );
        match read.await {
            Ok(Some(seen)) => {
                self.state.set_heartbeat(crate::state::HeartbeatLag {
                    seq: seen.seq,
                    lag: seen.age,
                });
                self.metrics
                    .lag
                    .with_label_values(&[self.spec.name.as_str()])
                    .set(seen.age);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the applied heartbeat"),
        }
    }
}

/// The checkpoint statement of `worker`'s share of `batch` (sequence `seq`, planned for
/// `workers`).
fn share_checkpoint(spec: &LinkSpec, worker: u32, seq: u64, workers: u32, batch: &Batch) -> String {
    checkpoint_statement(
        spec,
        &Checkpoint {
            worker,
            batch: seq,
            workers,
            start: batch.start.clone(),
            end: batch.end.clone(),
        },
    )
}
