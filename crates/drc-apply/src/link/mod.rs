//! A link: start-up ([`startup`]: meta schema, identities, origin tag, canary, recovery), then
//! the running link ([`runner`]) fed by the source's reader task, batch after batch, until an
//! error or shutdown.

mod runner;
mod startup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_config::Replication;
use drc_core::position::Position;
use drc_meta::{self as meta, Checkpoint};
use drc_source::{Source, SourceConfig, StartFrom};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::batch::Batcher;
use crate::filter::{origin_rule, LinkFilter};
use crate::metrics::Metrics;
pub use crate::state::{LinkReport, LinkState, LinkStatus};
use crate::LinkError;
use runner::ColumnCheck;
pub(crate) use runner::Runner;
use startup::Started;

/// How often a running link reads its control (`drc link pause`, `skip`) from the target.
pub const CONTROL_EVERY: Duration = Duration::from_secs(1);

/// Everything a link needs to run.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// `source->target`, e.g. `a->b`.
    pub name: String,
    /// Source center name.
    pub source_name: String,
    /// Source URL (password included; never printed).
    pub source_url: drc_core::secret::Secret,
    /// Target URL (password included; never printed).
    pub target_url: drc_core::secret::Secret,
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
    /// How far the target center's local-delete reader has read (tombstones of local
    /// deletes), when it runs; start-up turns it into a [`crate::conflict::tombstone::Progress`]
    /// for the target's server.
    pub local_deletes: Option<watch::Receiver<Option<Position>>>,
    /// The key locks shared by every link into the target center
    /// ([`crate::conflict::keylock`]); `None` when the link is the target's only applier.
    pub key_locks: Option<crate::conflict::keylock::KeyLocks>,
    /// The term fence every apply transaction checks ([`crate::fence`]); `None` applies
    /// unfenced (benchmarks, tools).
    pub fence: Option<crate::fence::Fence>,
    /// What to do with DDL read from the source ([`crate::ddl`]).
    pub ddl: drc_config::Ddl,
    /// Where the link starts when the target holds no checkpoint of it.
    pub first_start: FirstStart,
    /// The center-closure check of applied writes (`[routing]`; `drc_route::closure`).
    pub closure: Option<drc_route::Closure>,
}

/// Where a link without a checkpoint starts. Never silently: a missing checkpoint in a running
/// cluster means a lost meta database or a new center, and starting at the source's current
/// position would skip everything written before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FirstStart {
    /// Refuse to start ([`LinkError::NoCheckpoint`]).
    #[default]
    Refuse,
    /// At the source's current end of binlog (`drc run --start now`: a new, empty cluster).
    Now,
    /// At this source position (`drc run --start SOURCE=POSITION`).
    At(Position),
}

/// The link's source counters (`drc_source_events_total`, `_bytes_total`, `_reconnects_total`),
/// advanced by what its [`Source`] read since the last update.
struct SourceCounters {
    events: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    reconnects: prometheus::IntCounter,
    seen: (u64, u64, u64),
}

impl SourceCounters {
    fn new(metrics: &Metrics, link: &str) -> Self {
        SourceCounters {
            events: metrics.source_events.with_label_values(&[link]),
            bytes: metrics.source_bytes.with_label_values(&[link]),
            reconnects: metrics.source_reconnects.with_label_values(&[link]),
            seen: (0, 0, 0),
        }
    }

    fn update(&mut self, src: &Source) {
        let now = (src.events_read(), src.bytes_read(), src.reconnects());
        self.events.inc_by(now.0.saturating_sub(self.seen.0));
        self.bytes.inc_by(now.1.saturating_sub(self.seen.1));
        self.reconnects.inc_by(now.2.saturating_sub(self.seen.2));
        self.seen = now;
    }
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

/// The checkpoint statement of `c`, followed by the fence's records when the link is fenced.
/// The workers a batch of `changes` changes is planned for: one per `share_rows` changes
/// (`[applier] share_rows`), at least one, at most `workers`. A link that keeps up applies
/// small batches, and each share costs its own transaction (round trips, commit) while the
/// batch waits for the slowest: on 2 cores, a batch of about 13 rows took 3.3 ms in four shares
/// and 1.7 ms in one, and the lag at 1,000 txn/s halved (docs/benchmarks.md, 2026-12-06). A
/// backlog's full batches still use every worker. The count is stored with the batch's
/// checkpoints, so a partly applied batch is re-planned for the same count after a crash.
fn shares(changes: usize, share_rows: usize, workers: u32) -> u32 {
    let by_size = u32::try_from(changes.div_ceil(share_rows.max(1))).unwrap_or(u32::MAX);
    by_size.clamp(1, workers.max(1))
}

pub(crate) fn checkpoint_statement(spec: &LinkSpec, c: &Checkpoint) -> String {
    let meta_db = &spec.replication.meta_database;
    let term = spec.fence.as_ref().map(|f| f.term);
    let mut q = meta::stamped_checkpoint_statement(meta_db, &spec.name, c, term);
    if let Some(f) = &spec.fence {
        q.push_str(";\n");
        q.push_str(&f.log_statement(&spec.name, c.worker, c.batch));
    }
    q
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
    let Started {
        tconn,
        max_allowed_packet,
        progress,
        appliers,
        workers,
        resume,
        mut seq,
        unfinished,
        ids,
        lookup,
    } = startup::start(&spec, &shutdown).await?;
    let mut cfg = SourceConfig::new(spec.source_url.expose(), spec.replica_server_id);
    cfg.start = StartFrom::Position(resume.clone());
    cfg.heartbeat = spec.source.heartbeat;
    cfg.idle_timeout = spec.source.idle_timeout;
    cfg.query_timeout = spec.applier.query_timeout;
    let mut src = Source::connect(cfg).await?;
    state.set_source(Some(src.liveness()));
    let (tx, rx) = mpsc::channel(256);
    let read = SourceCounters::new(&metrics, &spec.name);
    let _reader = AbortOnDrop(tokio::spawn(
        async move {
            let mut read = read;
            loop {
                let ev = src.next().await;
                read.update(&src);
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
        appliers,
        metrics: metrics.clone(),
        state: state.clone(),
        columns: ColumnCheck::default(),
        meta_conn: tconn,
        spec,
        versions: HashMap::new(),
        max_allowed_packet,
        progress,
    };
    let result = async {
        let mut position = resume;
        // The operator's control counts from the first batch on, the unfinished one included:
        // a transaction to skip may be the one that stopped the link inside that batch.
        let control = runner.control().await?;
        if control.paused {
            return runner.paused(&mut shutdown).await;
        }
        batcher.set_skips(control.skips);
        let mut checked = Some(Instant::now());
        if let Some(u) = unfinished {
            let batch = batcher.next(u.start, Some(&u.end)).await?;
            if u.workers as usize > runner.appliers.len() {
                return Err(LinkError::Checkpoint(format!(
                    "the unfinished batch {seq} was planned for {} workers; set applier.parallelism to at least {}",
                    u.workers, u.workers
                )));
            }
            runner.apply(seq, &batch, u.workers, &u.done).await?;
            position = batch.end;
        }
        state.set_status(LinkStatus::Running);
        runner.metrics.up.with_label_values(&[runner.spec.name.as_str()]).set(1);
        loop {
            if checked.is_none_or(|t| t.elapsed() >= CONTROL_EVERY) {
                let control = runner.control().await?;
                if control.paused {
                    return runner.paused(&mut shutdown).await;
                }
                batcher.set_skips(control.skips);
                checked = Some(Instant::now());
            }
            let batch = tokio::select! {
                b = batcher.next(position.clone(), None) => b?,
                _ = shutdown.changed() => return Ok(()),
            };
            if batch.is_idle() {
                continue;
            }
            seq += 1;
            match &batch.ddl {
                Some((ev, decision)) => runner.ddl(seq, &batch, ev, decision).await?,
                None => {
                    let n = shares(batch.changes.len(), runner.spec.applier.share_rows, workers);
                    runner.apply(seq, &batch, n, &[]).await?
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_take_one_share_and_full_ones_every_worker() {
        assert_eq!(shares(0, 256, 4), 1);
        assert_eq!(shares(1, 256, 4), 1);
        assert_eq!(shares(256, 256, 4), 1);
        assert_eq!(shares(257, 256, 4), 2);
        assert_eq!(shares(2000, 256, 4), 4);
        assert_eq!(shares(2000, 256, 1), 1);
        assert_eq!(shares(100_000, 256, 64), 64);
        assert_eq!(shares(5, 1, 4), 4);
        assert_eq!(shares(5, 0, 0), 1);
    }
}
