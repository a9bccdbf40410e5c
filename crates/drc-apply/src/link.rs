//! The link loop: start-up (meta schema, origin tag, canary, recovery), then batches forever.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use drc_config::{Loopback, Replication};
use drc_core::change::{ChangeKind, RowChange, SourceEvent};
use drc_core::position::Position;
use drc_core::schema::TableSchema;
use drc_mysql::bounded;
use drc_mysql::{connect, current_position, server_info, Flavor, ServerInfo};
use drc_source::{Source, SourceConfig, StartFrom};
use futures_util::future::try_join_all;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn, Instrument};

use crate::batch::{Batch, Batcher};
use crate::conflict::LwwChange;
use crate::filter::{LinkFilter, Origin, OriginIds};
use crate::metrics::Metrics;
use crate::origin::{filter_event, own_ids, OriginLookup};
use crate::plan::plan;
use crate::sql;
pub use crate::state::{LinkReport, LinkState, LinkStatus};
use crate::worker::{Applier, Job, Tag};
use crate::LinkError;
use drc_meta::IdentityRole;
use drc_meta::{self as meta, Checkpoint, Recovery};

/// Everything a link needs to run.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// `source->target`, e.g. `a->b`.
    pub name: String,
    /// Source center name.
    pub source_name: String,
    /// Source URL (password included).
    pub source_url: String,
    /// Target URL (password included).
    pub target_url: String,
    /// What to replicate.
    pub replication: Replication,
    /// Applier settings.
    pub applier: drc_config::Applier,
    /// Source settings.
    pub source: drc_config::SourceSettings,
    /// The replica server_id the source registers with on the source server.
    pub replica_server_id: u32,
    /// How conflicting writes are resolved.
    pub conflict: drc_config::Conflict,
    /// Progress of the target center's local-delete reader (tombstones of local deletes), when
    /// it runs.
    pub local_deletes: Option<crate::conflict::tombstone::Progress>,
    /// The key locks shared by every link into the target center
    /// ([`crate::conflict::keylock`]); `None` when the link is the target's only applier.
    pub key_locks: Option<crate::conflict::keylock::KeyLocks>,
    /// The term fence every apply transaction checks ([`crate::fence`]); `None` applies
    /// unfenced (benchmarks, tools).
    pub fence: Option<crate::fence::Fence>,
    /// What to do with DDL read from the source ([`crate::ddl`]).
    pub ddl: drc_config::Ddl,
}

/// Aborts a spawned task when dropped (the link's reader must not outlive the link, however
/// the link ends: an error, shutdown, or its own task being aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` unless `shutdown` turns true first ([`LinkError::Shutdown`]). Dropping an apply
/// in flight is safe: its connection closes and the server rolls the transaction back (or it
/// committed together with its checkpoint).
async fn until_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    fut: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    tokio::select! {
        r = fut => r,
        Ok(_) = shutdown.wait_for(|stop| *stop) => Err(LinkError::Shutdown),
    }
}

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `max_allowed_packet` that fits a statement of `bytes` with drc's margin, rounded up to
/// the next MiB.
fn needed_packet(bytes: usize) -> u64 {
    let b = (bytes + crate::size::MARGIN) as u64;
    b.div_ceil(1 << 20) * (1 << 20)
}

/// The checkpoint statement of `c`, followed by the fence's records when the link is fenced.
pub(crate) fn checkpoint_statement(spec: &LinkSpec, c: &Checkpoint) -> String {
    let mut q = meta::checkpoint_statement(&spec.replication.meta_database, &spec.name, c);
    if let Some(f) = &spec.fence {
        q.push_str(";\n");
        q.push_str(&f.record_statements(&spec.name, c.worker, c.batch));
    }
    q
}

pub(crate) fn origin_rule(loopback: Loopback, ids: OriginIds) -> Origin {
    match loopback {
        Loopback::ServerId => Origin::ServerId(ids),
        Loopback::Marker => Origin::Marker,
        Loopback::Auto => Origin::Both(ids),
    }
}

/// Decides the applier's tag on the target.
async fn resolve_tag(
    spec: &LinkSpec,
    source: &ServerInfo,
    target: &ServerInfo,
) -> Result<Tag, LinkError> {
    let marker = Tag::Marker(meta::Marker {
        meta: spec.replication.meta_database.clone(),
        origin: spec.source_name.clone(),
        link: spec.name.clone(),
        worker: 0,
    });
    let by_id = Tag::ServerId {
        server_id: source.server_id,
        domain: source.gtid_domain_id,
    };
    match spec.replication.loopback {
        Loopback::Marker => Ok(marker),
        Loopback::ServerId if target.flavor == Flavor::MySql => Err(LinkError::Setup(format!(
            "link {}: loopback = \"server_id\" needs MariaDB targets (a MySQL session cannot write under another server_id); use \"marker\"",
            spec.name
        ))),
        Loopback::ServerId => {
            let mut a = Applier::new(spec.target_url.clone(), by_id.clone(), CONNECT_TIMEOUT);
            a.probe().await.map_err(|e| LinkError::Setup(format!(
                "link {}: loopback = \"server_id\" but the applier cannot set its server_id ({e}): GRANT BINLOG REPLAY (or SUPER) to drc's user, or use loopback = \"marker\"",
                spec.name
            )))?;
            Ok(by_id)
        }
        Loopback::Auto if target.flavor == Flavor::MySql => Ok(marker),
        Loopback::Auto => {
            let mut a = Applier::new(spec.target_url.clone(), by_id.clone(), CONNECT_TIMEOUT);
            match a.probe().await {
                Ok(()) => Ok(by_id),
                Err(e) if !e.is_transient() => {
                    info!(link = %spec.name, error = %e, "cannot set server_id; using the marker strategy");
                    Ok(marker)
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// The start-up canary: writes one tagged transaction in the target and reads it back from the
/// target's binlog, proving that a reader of that binlog (a link out of the target) drops it.
async fn canary(spec: &LinkSpec, tag: &Tag, target: &ServerInfo) -> Result<(), LinkError> {
    let meta_db = &spec.replication.meta_database;
    let mut c = connect(&spec.target_url, CONNECT_TIMEOUT).await?;
    let start = current_position(&mut c, target).await?;
    let mut cfg = SourceConfig::new(
        spec.target_url.clone(),
        spec.replica_server_id.wrapping_add(1),
    );
    cfg.start = StartFrom::Position(start);
    cfg.fetch_unique_keys = false;
    let mut src = Source::connect(cfg).await?;
    let stmt = meta::canary::statement(meta_db, &spec.name);
    let mut a = Applier::new(spec.target_url.clone(), tag.clone(), CONNECT_TIMEOUT);
    a.apply(&[], &stmt).await?;
    // The filter a reader of the target's binlog (a link out of the target) would use.
    let mut lookup = OriginLookup::new(
        &format!("canary of {}", spec.name),
        &spec.target_url,
        meta_db,
    );
    let ids = lookup.initial(target.server_id.into()).await?;
    let mut filter = LinkFilter::new(
        origin_rule(spec.replication.loopback, ids),
        spec.replication.clone(),
    );
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen_canary = false;
        loop {
            let ev = src.next().await?;
            if let SourceEvent::Rows(rows) = &ev {
                seen_canary |= rows.iter().any(|r| {
                    &*r.table.database == meta_db.as_str() && &*r.table.table == meta::canary::TABLE
                });
            }
            let is_commit = matches!(ev, SourceEvent::Commit(_));
            let at = src.position().clone();
            filter_event(&mut filter, Some(&mut lookup), ev, &at).await?;
            if is_commit && seen_canary {
                return Ok::<bool, LinkError>(filter.dropped_current());
            }
            if is_commit {
                seen_canary = false;
            }
        }
    })
    .await;
    src.close().await;
    match found {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(LinkError::Canary(format!(
            "a transaction written by the applier of link {} was not recognised as drc's own in the target's binlog (tag {tag:?}); changes would loop",
            spec.name
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(LinkError::Canary(format!(
            "the canary transaction of link {} did not appear in the target's binlog within 20 s (is log_bin on for the target?)",
            spec.name
        ))),
    }
}

/// Target tables' columns, checked once per source schema.
struct ColumnCheck {
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
    columns: ColumnCheck,
    pub(crate) meta_conn: Conn,
    /// Version column per table schema (by pointer; schemas are immutable and shared).
    versions: HashMap<usize, (Arc<TableSchema>, Option<usize>)>,
    /// The target's `max_allowed_packet`, read at start ([`crate::size`]).
    max_allowed_packet: u64,
}

impl Runner {
    /// Forgets every cached target schema (after a replicated DDL changed one).
    pub(crate) fn forget_schemas(&mut self) {
        self.columns.checked.clear();
        self.columns.columns.clear();
        self.versions.clear();
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
    async fn apply(
        &mut self,
        seq: u64,
        batch: &Batch,
        workers: u32,
        done: &[u32],
    ) -> Result<(), LinkError> {
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
            let lww = crate::plan::levels(&lww)
                .into_iter()
                .map(|level| {
                    level
                        .into_iter()
                        .map(|change| LwwChange {
                            change,
                            version: versions
                                .get(&(Arc::as_ptr(&change.table) as usize))
                                .copied()
                                .unwrap_or(0),
                        })
                        .collect()
                })
                .collect();
            let checkpoint = checkpoint_statement(
                &self.spec,
                &Checkpoint {
                    worker: w as u32,
                    batch: seq,
                    workers,
                    start: batch.start.clone(),
                    end: batch.end.clone(),
                },
            );
            jobs.push((
                w,
                Job {
                    statements,
                    at: format!("after {} up to {}", batch.start, batch.end),
                    lww,
                    checkpoint,
                    conflict_log: (meta_db.clone(), self.spec.name.clone()),
                    progress: self.spec.local_deletes.clone(),
                    key_locks: self.spec.key_locks.clone(),
                },
            ));
        }
        if jobs.is_empty() && !done.contains(&0) {
            // Nothing to apply: move the position forward on worker 0 alone.
            let checkpoint = checkpoint_statement(
                &self.spec,
                &Checkpoint {
                    worker: 0,
                    batch: seq,
                    workers,
                    start: batch.start.clone(),
                    end: batch.end.clone(),
                },
            );
            jobs.push((
                0,
                Job {
                    checkpoint,
                    ..Job::default()
                },
            ));
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
        self.state.set_position(&batch.end);
        Ok(())
    }
}

/// Runs a link until it fails or `shutdown` turns true. Shutdown ends it promptly wherever it
/// is (starting, waiting for the source, applying or retrying an apply).
pub async fn run_link(
    spec: LinkSpec,
    metrics: Metrics,
    state: Arc<LinkState>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let name = spec.name.clone();
    let mut sd = shutdown.clone();
    let result = until_shutdown(&mut sd, run(spec, metrics.clone(), state, shutdown)).await;
    metrics.up.with_label_values(&[name.as_str()]).set(0);
    match result {
        Err(LinkError::Shutdown) => Ok(()),
        r => r,
    }
}

async fn run(
    spec: LinkSpec,
    metrics: Metrics,
    state: Arc<LinkState>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    state.set_status(LinkStatus::Starting);
    state.set_source(None);
    let qt = spec.applier.query_timeout;
    let meta_db = spec.replication.meta_database.clone();
    let mut tconn = connect(&spec.target_url, CONNECT_TIMEOUT).await?;
    let (target, max_allowed_packet) = bounded(qt, "reading the target's settings", async {
        let target = server_info(&mut tconn).await?;
        let max_allowed_packet = crate::size::read_max_allowed_packet(&mut tconn).await?;
        meta::ensure_schema(&mut tconn, &meta_db).await?;
        Ok::<_, LinkError>((target, max_allowed_packet))
    })
    .await?;
    let mut sconn = connect(&spec.source_url, CONNECT_TIMEOUT).await?;
    let source = bounded(qt, "reading the source's settings", server_info(&mut sconn)).await?;
    if source.server_id == target.server_id {
        return Err(LinkError::Setup(format!(
            "link {}: source and target both have server_id {}; every center's server needs its own",
            spec.name, source.server_id
        )));
    }
    let mut spec = spec;
    if let Some(p) = spec.local_deletes.as_mut() {
        match crate::conflict::local::position_query(target.flavor, target.gtid_enabled) {
            Some(q) => {
                p.position_query = q;
                if target.flavor == drc_mysql::Flavor::MariaDb {
                    p.local_domain = Some(target.gtid_domain_id);
                }
            }
            None => {
                warn!(link = %spec.name, "the target has no GTIDs: deletes made by local writers leave no tombstones (docs/conflicts.md)");
                spec.local_deletes = None;
            }
        }
    }
    let tag = resolve_tag(&spec, &source, &target).await?;
    // Recorded before anything is written under the tag (the canary included): see
    // crate::origin.
    let mut own = bounded(
        qt,
        "recording the source's identity",
        own_ids(
            &mut tconn,
            &meta_db,
            &spec.name,
            IdentityRole::Link,
            &source,
        ),
    )
    .await?;
    if matches!(tag, Tag::Marker(_)) && spec.ddl.replicates_any() {
        return Err(LinkError::Setup(format!(
            "link {}: [ddl] replicates schema changes, but the applier tags with the marker strategy, which cannot mark a DDL statement (it would come back); give drc's user BINLOG REPLAY (or SUPER) on MariaDB so that loopback \"auto\" uses server_id, or use [ddl] mode = \"stop\"",
            spec.name
        )));
    }
    canary(&spec, &tag, &target).await?;
    info!(link = %spec.name, tag = ?tag, "origin tagging proven by the canary");

    let workers = spec.applier.parallelism as u32;
    let mut appliers: Vec<Applier> = (0..workers)
        .map(|w| {
            Applier::new(spec.target_url.clone(), tag.for_worker(w), CONNECT_TIMEOUT)
                .with_worker(w)
                .with_fence(spec.fence.clone())
                .with_limits(qt, Some(shutdown.clone()))
        })
        .collect();
    let rows = bounded(qt, "loading checkpoints", async {
        meta::load_checkpoints(&mut tconn, &meta_db, &spec.name)
            .await
            .map_err(LinkError::from)
    })
    .await?;
    let rec = meta::recovery(&rows);
    let (resume, mut seq, partial) = match rec {
        Recovery::Fresh => {
            let pos = bounded(
                qt,
                "reading the source's position",
                current_position(&mut sconn, &source),
            )
            .await?;
            let cp = checkpoint_statement(
                &spec,
                &Checkpoint {
                    worker: 0,
                    batch: 0,
                    workers,
                    start: pos.clone(),
                    end: pos.clone(),
                },
            );
            if let Some(a) = appliers.first_mut() {
                a.apply(&[], &cp).await?;
            }
            info!(link = %spec.name, position = %pos, "new link: starting at the source's current position");
            (pos, 0, None)
        }
        Recovery::Clean { batch, position } => (position, batch, None),
        Recovery::Partial {
            batch,
            start,
            end,
            workers,
            done,
        } => {
            warn!(link = %spec.name, batch, ?done, "the last batch was applied by some workers only; completing it");
            (start.clone(), batch, Some((start, end, workers, done)))
        }
    };
    drop(sconn);
    if let Some(id) = crate::origin::gtid_hint(&source, &resume) {
        own.add(id);
    }
    if own.contains(target.server_id) {
        return Err(LinkError::Setup(format!(
            "link {}: the target's server_id {} was also a server_id of the source ({:?}, <meta>.source_identity): drc could not tell the source's writes from its own; give every center's server an id no other center ever used",
            spec.name,
            target.server_id,
            own.all()
        )));
    }
    let mut lookup = OriginLookup::new(&spec.name, &spec.source_url, &meta_db);
    let ids = bounded(qt, "reading the source's origin ids", lookup.initial(own)).await?;

    let mut cfg = SourceConfig::new(spec.source_url.clone(), spec.replica_server_id);
    cfg.start = StartFrom::Position(resume.clone());
    cfg.heartbeat = spec.source.heartbeat;
    cfg.idle_timeout = spec.source.idle_timeout;
    cfg.query_timeout = qt;
    let mut src = Source::connect(cfg).await?;
    state.set_source(Some(src.liveness()));
    let (tx, rx) = mpsc::channel(256);
    let _reader = AbortOnDrop(tokio::spawn(
        async move {
            loop {
                let ev = src.next().await;
                let failed = ev.is_err();
                if tx.send(ev).await.is_err() || failed {
                    break;
                }
            }
            src.close().await;
        }
        .in_current_span(),
    ));
    let filter = LinkFilter::new(
        origin_rule(spec.replication.loopback, ids),
        spec.replication.clone(),
    );
    let mut batcher = Batcher::new(
        rx,
        filter,
        spec.applier.batch_rows,
        spec.applier.batch_delay,
    )
    .with_lookup(lookup)
    .with_ddl(spec.ddl.clone())
    .with_max_transaction_rows(&spec.name, spec.applier.max_transaction_rows);
    let mut runner = Runner {
        appliers: std::mem::take(&mut appliers),
        metrics: metrics.clone(),
        state: state.clone(),
        columns: ColumnCheck {
            checked: Vec::new(),
            columns: HashMap::new(),
        },
        meta_conn: tconn,
        spec,
        versions: HashMap::new(),
        max_allowed_packet,
    };
    let result = async {
        let mut position = resume;
        if let Some((start, end, w, done)) = partial {
            let batch = batcher.next(start, Some(&end)).await?;
            if w as usize > runner.appliers.len() {
                return Err(LinkError::Checkpoint(format!(
                    "the unfinished batch {seq} was planned for {w} workers; set applier.parallelism to at least {w}"
                )));
            }
            runner.apply(seq, &batch, w, &done).await?;
            position = batch.end;
        }
        state.set_status(LinkStatus::Running);
        runner.metrics.up.with_label_values(&[runner.spec.name.as_str()]).set(1);
        loop {
            let batch = tokio::select! {
                b = batcher.next(position.clone(), None) => b?,
                _ = shutdown.changed() => return Ok(()),
            };
            seq += 1;
            match &batch.ddl {
                Some((ev, decision)) => runner.ddl(seq, &batch, ev, decision).await?,
                None => runner.apply(seq, &batch, workers, &[]).await?,
            }
            position = batch.end;
        }
    }
    .await;
    metrics
        .up
        .with_label_values(&[runner.spec.name.as_str()])
        .set(0);
    result
}
