//! The local-delete reader: reads the center's own binlog and records a tombstone for every
//! row that a local writer deleted from a last-writer-wins table (a DELETE, or the old key of an
//! UPDATE that changed the primary key). drc's own writes are skipped by the loopback filter:
//! their deletes wrote their tombstones when they were applied.
//!
//! It publishes the position up to which every tombstone is committed ([`super::tombstone::Progress`]);
//! appliers wait on it before they trust a missing row's tombstone. Its position is stored in
//! `<meta>.checkpoint` as link `<center>~local-deletes` (`~<replica>` appended when the center
//! runs replicas; every replica runs one), so a restart resumes where it stopped;
//! the first start begins at the server's current position.
//!
//! Size: the tombstones of one transaction and its checkpoint are written in one transaction of
//! several queries, each within the server's `max_allowed_packet` ([`crate::size`]). A local
//! transaction of more than [`FLUSH_TOMBSTONES`] deleted rows has its tombstones written as it is
//! read, in transactions of their own that leave the checkpoint where it was, so memory stays
//! bounded: a tombstone write only ever raises a rank, so a restart that reads the transaction
//! again writes them again harmlessly, and progress is published only at its commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_config::{Conflict, Replication, SourceSettings};
use drc_core::change::{ChangeKind, SourceEvent};
use drc_core::position::Position;
use drc_core::schema::TableSchema;
use drc_mysql::{connect, current_position, server_info};
use drc_source::{Source, SourceConfig, StartFrom};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;
use tracing::{info, warn};

use super::canon::Canon;
use super::decide::{claim_hash, Row, Tomb};
use super::tombstone;
use crate::filter::origin_rule;
use crate::filter::LinkFilter;
use crate::origin::{filter_event, gtid_hint, own_ids, OriginLookup};
use crate::size::Joiner;
use crate::LinkError;
use crate::CONNECT_TIMEOUT;
use drc_meta::IdentityRole;
use drc_meta::{self as meta, Checkpoint};

/// What the reader needs.
#[derive(Debug, Clone)]
pub struct LocalDeletesSpec {
    /// The center's name.
    pub center: String,
    /// The replica index when the center runs replicas (each keeps its own position).
    pub replica: Option<usize>,
    /// The center's server (password included; never printed).
    pub url: drc_core::secret::Secret,
    /// What is replicated (and the meta database).
    pub replication: Replication,
    /// Which tables use last-writer-wins.
    pub conflict: Conflict,
    /// Heartbeat and idle timeout of the binlog stream.
    pub source: SourceSettings,
    /// The replica server_id it registers with on its own server.
    pub replica_server_id: u32,
    /// Set to how far the reader is behind its server (`drc_local_deletes_lag_seconds`): at
    /// each transaction's commit, the seconds between now and that commit's binlog timestamp.
    pub lag: Option<prometheus::Gauge>,
    /// Counts local updates that lowered their row's version, by center and table
    /// (`drc_conflict_version_regressions_total`).
    pub regressions: Option<prometheus::IntCounterVec>,
}

impl LocalDeletesSpec {
    /// The checkpoint row's link name.
    pub fn checkpoint_name(&self) -> String {
        match self.replica {
            None => format!("{}~local-deletes", self.center),
            Some(i) => format!("{}~local-deletes~{i}", self.center),
        }
    }
}

/// How often the position is stored when no tombstone was written.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Tombstones held before they are written while a transaction is still being read.
pub const FLUSH_TOMBSTONES: usize = 20_000;
/// How often old tombstones are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs the reader until `shutdown` turns true or it fails; publishes progress on `tx`.
pub async fn run_local_deletes(
    spec: LocalDeletesSpec,
    tx: watch::Sender<Option<Position>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let meta_db = spec.replication.meta_database.clone();
    let name = spec.checkpoint_name();
    let mut conn = connect(spec.url.expose(), CONNECT_TIMEOUT).await?;
    let info = server_info(&mut conn).await?;
    meta::ensure_schema(&mut conn, &meta_db).await?;
    conn.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(|e| LinkError::target("setting up the local-delete reader", e))?;
    let max_allowed_packet = crate::size::read_max_allowed_packet(&mut conn).await?;
    let stored = meta::load_checkpoints(&mut conn, &meta_db, &name).await?;
    let mut seq = stored.iter().map(|c| c.batch).max().unwrap_or(0);
    let start = match stored.into_iter().max_by_key(|c| c.batch) {
        Some(c) => c.end,
        None => {
            // First start: from now on. The position is stored at once, so that deletes made
            // while the reader is down later are read after its restart.
            let now = current_position(&mut conn, &info).await?;
            let cp = Checkpoint {
                worker: 0,
                batch: 0,
                workers: 1,
                start: now.clone(),
                end: now.clone(),
            };
            conn.query_drop(meta::checkpoint_statement(&meta_db, &name, &cp))
                .await
                .map_err(|e| LinkError::target("storing the local-delete reader's position", e))?;
            now
        }
    };
    info!(reader = %name, position = %start, "local-delete reader starting");
    let mut cfg = SourceConfig::new(spec.url.expose(), spec.replica_server_id);
    cfg.start = StartFrom::Position(start.clone());
    cfg.heartbeat = spec.source.heartbeat;
    cfg.idle_timeout = spec.source.idle_timeout;
    let mut src = Source::connect(cfg).await?;
    let mut own = own_ids(&mut conn, &meta_db, &name, IdentityRole::Local, &info).await?;
    if let Some(id) = gtid_hint(&info, &start) {
        own.add(id);
    }
    let mut lookup = OriginLookup::new(&name, spec.url.expose(), &meta_db);
    let ids = lookup.initial(own).await?;
    let mut filter = LinkFilter::new(
        origin_rule(spec.replication.loopback, ids),
        spec.replication.clone(),
    );
    let mut versions: HashMap<usize, (Arc<TableSchema>, Option<usize>)> = HashMap::new();
    let mut pending: Vec<(String, [u8; 32], Tomb)> = Vec::new();
    let mut stored_at = start.clone();
    let mut last_store = Instant::now();
    let mut last_purge: Option<Instant> = None;
    let retention = spec.conflict.tombstone_retention;
    let mut warned_at: Option<Instant> = None;
    let _ = tx.send(Some(start));
    loop {
        let ev = tokio::select! {
            ev = src.next() => ev?,
            _ = shutdown.changed() => {
                src.close().await;
                return Ok(());
            }
        };
        let at = src.position().clone();
        let committed = match &ev {
            SourceEvent::Commit(c) => Some(c.timestamp),
            _ => None,
        };
        match filter_event(&mut filter, Some(&mut lookup), ev, &at).await? {
            SourceEvent::Begin(_) => pending.clear(),
            SourceEvent::Rows(changes) => {
                for c in &changes {
                    let key = Arc::as_ptr(&c.table) as usize;
                    let v = match versions.get(&key) {
                        Some((_, v)) => *v,
                        None => {
                            let v = super::version_column(&spec.conflict, &c.table)?;
                            versions.insert(key, (c.table.clone(), v));
                            v
                        }
                    };
                    let Some(v) = v else {
                        continue;
                    };
                    // Every local version claims its unique values (decide::claim_hash).
                    if let Some(a) = c.after.as_ref().filter(|_| c.kind != ChangeKind::Delete) {
                        let row = Row::from_image(&c.table, a);
                        for n in 0..c.table.unique_keys.len() {
                            if let Some(h) = claim_hash(&c.table, n, a) {
                                pending.push((c.table.qualified_name(), h, Tomb::of(&row, v)));
                            }
                        }
                    }
                    let Some(b) = c.before.as_ref() else {
                        continue;
                    };
                    if let Some(a) = c.after.as_ref().filter(|_| c.kind == ChangeKind::Update) {
                        if lowers_version(a, b, v) {
                            regressed(&spec, &c.table, &mut warned_at);
                        }
                    }
                    let deletes_key = match c.kind {
                        ChangeKind::Delete => true,
                        ChangeKind::Update => c.after.as_ref().is_some_and(|a| {
                            c.table.primary_key.iter().any(|&i| a.get(i) != b.get(i))
                        }),
                        ChangeKind::Insert => false,
                    };
                    if deletes_key {
                        let row = Row::from_image(&c.table, b);
                        pending.push((
                            c.table.qualified_name(),
                            row.pk_hash(&c.table),
                            Tomb::of(&row, v),
                        ));
                    }
                }
            }
            SourceEvent::Commit(_) => {
                let pos = src.position().clone();
                if !pending.is_empty() || last_store.elapsed() >= CHECKPOINT_EVERY {
                    seq += 1;
                    let cp = meta::checkpoint_statement(
                        &meta_db,
                        &name,
                        &Checkpoint {
                            worker: 0,
                            batch: seq,
                            workers: 1,
                            start: stored_at.clone(),
                            end: pos.clone(),
                        },
                    );
                    store(
                        &mut conn,
                        &meta_db,
                        std::mem::take(&mut pending),
                        Some(&cp),
                        max_allowed_packet,
                    )
                    .await?;
                    stored_at = pos.clone();
                    last_store = Instant::now();
                }
                let _ = tx.send(Some(pos));
                if let (Some(gauge), Some(ts)) = (&spec.lag, committed) {
                    gauge.set(seconds_behind(ts));
                }
                if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                    last_purge = Some(Instant::now());
                    for q in tombstone::purge_sql(&meta_db, retention) {
                        conn.query_drop(q)
                            .await
                            .map_err(|e| LinkError::target("purging old tombstones", e))?;
                    }
                }
            }
            _ => {}
        }
        if pending.len() >= FLUSH_TOMBSTONES {
            // Written before the transaction's commit is read, without moving the checkpoint.
            store(
                &mut conn,
                &meta_db,
                std::mem::take(&mut pending),
                None,
                max_allowed_packet,
            )
            .await?;
        }
        // Large maps of stale schemas are dropped (schemas change on DDL).
        if versions.len() > 10_000 {
            versions.clear();
        }
    }
}

/// Whether the update `b -> a` gave the row a lower version than it had (ordinal `v`).
fn lowers_version(a: &drc_core::change::Image, b: &drc_core::change::Image, v: usize) -> bool {
    let (va, vb) = (Canon::from_value(a.get(v)), Canon::from_value(b.get(v)));
    !matches!(va, Canon::Null)
        && !matches!(vb, Canon::Null)
        && va.cmp_version(&vb) == std::cmp::Ordering::Less
}

/// Counts a local update that lowered its row's version, with a warning at most once a minute.
fn regressed(spec: &LocalDeletesSpec, table: &TableSchema, warned_at: &mut Option<Instant>) {
    let name = table.qualified_name();
    if let Some(m) = &spec.regressions {
        m.with_label_values(&[spec.center.as_str(), name.as_str()])
            .inc();
    }
    if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *warned_at = Some(Instant::now());
        warn!(
            center = %spec.center,
            table = %name,
            "a local update lowered its row's version: this center's clock (or its writer's) is \
             behind the row's last writer; concurrent writes in other centers can then end \
             different (docs/conflicts.md, \"Clock skew\"); check the clocks, and run drc verify"
        );
    }
}

/// Seconds between now (this process's clock) and a binlog timestamp (whole seconds, the
/// server's clock): the reader runs beside its own server, so the two clocks are the same
/// machine's or close; not clamped, like `drc_link_lag_seconds`.
fn seconds_behind(binlog_timestamp: u32) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    now - f64::from(binlog_timestamp)
}

/// Writes tombstones and the checkpoint (when given) in one transaction of queries that fit
/// `max_allowed_packet`. A tombstone only replaces a lower one ([`tombstone::write_sql`]
/// compares ranks in the server): a replay after a restart, or a local delete read late, never
/// lowers what a newer delete recorded.
async fn store(
    conn: &mut mysql_async::Conn,
    meta: &str,
    tombs: Vec<(String, [u8; 32], Tomb)>,
    checkpoint: Option<&str>,
    max_allowed_packet: u64,
) -> Result<(), LinkError> {
    let mut q = Joiner::new(max_allowed_packet, crate::size::MAX_QUERY);
    let r: Result<(), LinkError> = async {
        q.push(conn, "START TRANSACTION", "transaction").await?;
        for (table, pk_hash, t) in &tombs {
            let w = tombstone::write_sql(meta, tombstone::Store::Local, table, pk_hash, t);
            q.push(conn, &w, "tombstone").await?;
        }
        if let Some(cp) = checkpoint {
            q.push(conn, cp, "checkpoint").await?;
        }
        q.push(conn, "COMMIT", "commit").await?;
        q.flush(conn).await
    }
    .await;
    if r.is_err() {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    r.map_err(|e| match e {
        LinkError::Target { source, .. } => {
            LinkError::target("recording tombstones of local deletes", source)
        }
        e => e,
    })
}
