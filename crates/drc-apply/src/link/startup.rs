//! Link start-up, before any change moves: the target's settings and the meta schema, the two
//! servers' identities (a source that shares the target's `server_id` is refused), the
//! applier's origin tag ([`resolve_tag`]: `server_id` where the session may set it, else the
//! marker row), the source's identity recorded before anything is written under the tag
//! (`crate::origin`), the canary that proves a reader of the target's binlog drops drc's own
//! writes ([`canary`]), and checkpoint recovery (where to resume, and an unfinished batch to
//! complete, [`drc_meta::recovery`]).

use std::time::Duration;

use drc_config::Loopback;
use drc_core::change::SourceEvent;
use drc_core::position::Position;
use drc_meta::{self as meta, Checkpoint, IdentityRole, Recovery};
use drc_mysql::{bounded, connect, current_position, server_info, Flavor, ServerInfo};
use drc_source::{Source, SourceConfig, StartFrom};
use mysql_async::Conn;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{checkpoint_statement, FirstStart, LinkSpec};
use crate::conflict::tombstone::Progress;
use crate::filter::{origin_rule, LinkFilter, OriginIds};
use crate::origin::{filter_event, own_ids, OriginLookup};
use crate::worker::{Applier, Tag};
use crate::LinkError;
use crate::CONNECT_TIMEOUT;

/// The last batch, committed by some workers only: re-formed exactly (`start`..`end`),
/// re-planned for `workers`, and applied by the workers not in `done`.
#[derive(Debug)]
pub(crate) struct Unfinished {
    pub(crate) start: Position,
    pub(crate) end: Position,
    pub(crate) workers: u32,
    pub(crate) done: Vec<u32>,
}

/// What start-up hands to the running link.
pub(crate) struct Started {
    /// A connection to the target (the column check and DDL bookkeeping use it).
    pub(crate) tconn: Conn,
    /// The target's `max_allowed_packet`.
    pub(crate) max_allowed_packet: u64,
    /// The target's local-delete reader's progress, when it runs and the target has GTIDs.
    pub(crate) progress: Option<Progress>,
    /// One applier per worker, under the proven tag.
    pub(crate) appliers: Vec<Applier>,
    /// `[applier] parallelism`.
    pub(crate) workers: u32,
    /// Where the source resumes.
    pub(crate) resume: Position,
    /// The last batch's sequence number.
    pub(crate) seq: u64,
    /// The last batch, when some workers did not commit it.
    pub(crate) unfinished: Option<Unfinished>,
    /// The source's origin ids, for the loopback filter.
    pub(crate) ids: OriginIds,
    /// Looks up origin ids the filter meets later.
    pub(crate) lookup: OriginLookup,
}

/// Runs start-up for `spec`.
pub(crate) async fn start(
    spec: &LinkSpec,
    shutdown: &watch::Receiver<bool>,
) -> Result<Started, LinkError> {
    let qt = spec.applier.query_timeout;
    let meta_db = spec.replication.meta_database.clone();
    let mut tconn = connect(spec.target_url.expose(), CONNECT_TIMEOUT).await?;
    let (target, max_allowed_packet) = bounded(qt, "reading the target's settings", async {
        let target = server_info(&mut tconn).await?;
        let max_allowed_packet = crate::size::read_max_allowed_packet(&mut tconn).await?;
        meta::ensure_schema(&mut tconn, &meta_db).await?;
        Ok::<_, LinkError>((target, max_allowed_packet))
    })
    .await?;
    let mut sconn = connect(spec.source_url.expose(), CONNECT_TIMEOUT).await?;
    let source = bounded(qt, "reading the source's settings", server_info(&mut sconn)).await?;
    if source.server_id == target.server_id {
        return Err(LinkError::Setup(format!(
            "link {}: source and target both have server_id {}; every center's server needs its own",
            spec.name, source.server_id
        )));
    }
    let progress = match spec.local_deletes.clone() {
        Some(rx) => {
            let p = Progress::for_target(rx, &target);
            if p.is_none() {
                warn!("the target has no GTIDs: deletes made by local writers leave no tombstones (docs/conflicts.md)");
            }
            p
        }
        None => None,
    };
    let tag = resolve_tag(spec, &source, &target).await?;
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
    canary(spec, &tag, &target).await?;
    info!(tag = ?tag, "origin tagging proven by the canary");

    let workers = spec.applier.parallelism as u32;
    let mut appliers: Vec<Applier> = (0..workers)
        .map(|w| {
            Applier::new(spec.target_url.expose(), tag.for_worker(w), CONNECT_TIMEOUT)
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
    let (resume, seq, unfinished) = match rec {
        Recovery::Fresh => {
            let pos = match &spec.first_start {
                FirstStart::Refuse => {
                    return Err(LinkError::NoCheckpoint {
                        link: spec.name.clone(),
                        meta: meta_db.clone(),
                    })
                }
                FirstStart::At(p) => p.clone(),
                FirstStart::Now => {
                    bounded(
                        qt,
                        "reading the source's position",
                        current_position(&mut sconn, &source),
                    )
                    .await?
                }
            };
            let cp = checkpoint_statement(
                spec,
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
            info!(position = %pos, start = ?spec.first_start, "new link: starting where drc run --start said");
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
            warn!(
                batch,
                ?done,
                "the last batch was applied by some workers only; completing it"
            );
            (
                start.clone(),
                batch,
                Some(Unfinished {
                    start,
                    end,
                    workers,
                    done,
                }),
            )
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
    let mut lookup = OriginLookup::new(&spec.name, spec.source_url.expose(), &meta_db);
    let ids = bounded(qt, "reading the source's origin ids", lookup.initial(own)).await?;
    Ok(Started {
        tconn,
        max_allowed_packet,
        progress,
        appliers,
        workers,
        resume,
        seq,
        unfinished,
        ids,
        lookup,
    })
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
            let mut a = Applier::new(spec.target_url.expose(), by_id.clone(), CONNECT_TIMEOUT);
            a.probe().await.map_err(|e| LinkError::Setup(format!(
                "link {}: loopback = \"server_id\" but the applier cannot set its server_id ({e}): GRANT BINLOG REPLAY (or SUPER) to drc's user, or use loopback = \"marker\"",
                spec.name
            )))?;
            Ok(by_id)
        }
        Loopback::Auto if target.flavor == Flavor::MySql => Ok(marker),
        Loopback::Auto => {
            let mut a = Applier::new(spec.target_url.expose(), by_id.clone(), CONNECT_TIMEOUT);
            match a.probe().await {
                Ok(()) => Ok(by_id),
                Err(e) if !e.is_transient() => {
                    info!(error = %e, "cannot set server_id; using the marker strategy");
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
    let mut c = connect(spec.target_url.expose(), CONNECT_TIMEOUT).await?;
    let start = current_position(&mut c, target).await?;
    let mut cfg = SourceConfig::new(
        spec.target_url.expose(),
        spec.replica_server_id.wrapping_add(1),
    );
    cfg.start = StartFrom::Position(start);
    cfg.fetch_unique_keys = false;
    let mut src = Source::connect(cfg).await?;
    let stmt = meta::canary::statement(meta_db, &spec.name);
    let mut a = Applier::new(spec.target_url.expose(), tag.clone(), CONNECT_TIMEOUT);
    a.apply(&[], &stmt).await?;
    // The filter a reader of the target's binlog (a link out of the target) would use.
    let mut lookup = OriginLookup::new(
        &format!("canary of {}", spec.name),
        spec.target_url.expose(),
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
