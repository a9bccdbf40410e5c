//! `drc bootstrap`: fills a center (C) with the replicated tables of a live peer (A) while every
//! center keeps taking writes, and writes the starting checkpoints of every link into and out of
//! C, so that `drc run --center C` starts exactly where the copy ends.
//!
//! Protocol (docs/operations.md has the procedures built on it):
//! 1. Input: C and A are known, distinct centers; every center is reachable, and its meta
//!    database is at this drc's schema ([`drc_meta::ensure_schema`]); C's daemon is not running
//!    (its heartbeat row is stale); the replicated tables of A ([`tables`]) all have a primary
//!    key.
//! 2. A fresh run creates the databases and tables C lacks (A's `SHOW CREATE`), refuses when
//!    replicated tables of C hold rows (or empties them with `--truncate`), and reads C's binlog
//!    position — all before any copied row is written, so links `C->P` that start there read no
//!    DDL of the bootstrap, only its copy, which they drop by its tag ([`target`]).
//! 3. One snapshot of A ([`snapshot`]) gives: A's binlog position (link `A->C` starts there), A's
//!    checkpoint of every link `P->A` (link `P->C` starts there: A's data in the snapshot holds
//!    exactly P's changes up to it, since each checkpoint commits with its changes), A's
//!    tombstones (copied into C's `tombstone`, so that last-writer-wins decisions in C match A's),
//!    and every copied row. A `P->A` checkpoint whose last batch is committed by some workers
//!    only is inexact as a start: a new snapshot is taken a moment later (up to
//!    [`UNFINISHED_RETRIES`] times). A missing one is refused.
//! 4. The links' positions and each table's progress are stored in C's `<meta>.bootstrap`
//!    ([`drc_meta::bootstrap`]) before the copy; the copy ([`copy`]) advances each table's row.
//! 5. After the copy: checkpoints (worker 0, batch 0, one worker, start = end = the position) for
//!    `A->C` and every `P->C` in C's meta database, and for `C->P` in every peer P's (A
//!    included), each replacing whatever rows that link had; then the state is deleted.
//!
//! Resuming (a run that finds a state of the same source): a snapshot cannot outlive its
//! connection, so a resumed run reads from a new snapshot S2 while the stored starting positions
//! come from the first one, S1. Tables done stay as copied (S1); the interrupted table continues
//! after its last stored key, and tables not started are copied whole, from S2. The links then
//! replay every change since S1 over rows that may already be newer (up to S2). That is exact
//! for a table whose only unique key is its primary key: every change writes a row's full image
//! or deletes it by key, so each key ends at its last change, whatever state it had before. It
//! is not exact for a table with another unique key: replaying an old image could collide with
//! another row's newer unique value. So when an unfinished table has a secondary unique key,
//! the resumed run starts over instead: every table is copied again from S2 (each chunk
//! replaces its key range, so rows of the first attempt are overwritten, not doubled) and the
//! starting positions into C are S2's. Links out of C keep C's position of the first run (an
//! earlier start only re-reads drc's own, dropped, writes).

pub mod copy;
pub mod error;
pub mod progress;
pub mod render;
pub mod snapshot;
pub mod tables;
pub mod target;

use std::time::Duration;

use drc_config::Config;
use drc_meta::bootstrap::{self as state, LinkStart, State, TableProgress};
use drc_meta::{Checkpoint, IdentityRole, Marker};
use drc_mysql::{connect, current_position, server_info};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

pub use error::BootstrapError;
use progress::{Display, Progress};
use snapshot::{PeerPosition, CONNECT_TIMEOUT};
use tables::TableDef;

/// How many times a snapshot is taken again when a peer's checkpoint in it is unfinished.
pub const UNFINISHED_RETRIES: u32 = 50;

/// What to bootstrap and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The center to fill (C).
    pub center: String,
    /// The center copied from (A).
    pub from: String,
    /// Empty C's replicated tables first when they hold rows.
    pub truncate: bool,
    /// Forget a stored, unfinished bootstrap and copy everything again.
    pub restart: bool,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// Writing connections.
    pub writers: usize,
    /// Progress display.
    pub display: Display,
    /// Seconds between plain progress lines.
    pub interval: Duration,
}

/// What a bootstrap did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Rows copied by this run.
    pub rows: u64,
    /// Bytes of row data copied by this run (approximate).
    pub bytes: u64,
    /// Rows per second of this run's copy.
    pub rows_per_sec: f64,
    /// Tables copied (in all).
    pub tables: usize,
    /// Tables this run created in C.
    pub created: Vec<String>,
    /// Tombstones copied.
    pub tombstones: u64,
    /// This run continued a stored bootstrap.
    pub resumed: bool,
    /// The starting positions written.
    pub links: Vec<LinkStart>,
}

struct Center {
    name: String,
    url: String,
    conn: Conn,
}

async fn open(config: &Config, name: &str, meta: &str) -> Result<Center, BootstrapError> {
    let c = config
        .center(name)
        .ok_or_else(|| BootstrapError::Input(format!("unknown center {name}")))?;
    let mut conn = connect(c.url(), CONNECT_TIMEOUT)
        .await
        .map_err(BootstrapError::server(name))?;
    drc_meta::ensure_schema(&mut conn, meta)
        .await
        .map_err(BootstrapError::meta(name))?;
    Ok(Center {
        name: name.to_string(),
        url: c.url().to_string(),
        conn,
    })
}

fn link(source: &str, target: &str) -> String {
    format!("{source}->{target}")
}

/// Runs a bootstrap (or resumes one).
pub async fn bootstrap(config: &Config, options: &Options) -> Result<Summary, BootstrapError> {
    let names = config.center_names();
    for n in [&options.center, &options.from] {
        if config.center(n).is_none() {
            return Err(BootstrapError::Input(format!(
                "unknown center {n} (the topology has {})",
                names.join(", ")
            )));
        }
    }
    if options.center == options.from {
        return Err(BootstrapError::Input(format!(
            "--center and --from both name {}: a center is filled from another one",
            options.center
        )));
    }
    let meta = config.replication.meta_database.clone();
    let (cname, aname) = (options.center.as_str(), options.from.as_str());
    // Every center is reached (and its meta schema made current) before anything is written.
    let mut c = open(config, cname, &meta).await?;
    refuse_running_daemon(&mut c, &meta, config.heartbeat.interval).await?;
    let mut a = open(config, aname, &meta).await?;
    let mut peers = Vec::new();
    for n in names.iter().filter(|n| **n != cname && **n != aname) {
        peers.push(open(config, n, &meta).await?);
    }
    let a_info = server_info(&mut a.conn)
        .await
        .map_err(BootstrapError::server(aname))?;
    let c_info = server_info(&mut c.conn)
        .await
        .map_err(BootstrapError::server(cname))?;
    if a_info.server_id == c_info.server_id {
        return Err(BootstrapError::Input(format!(
            "centers {aname} and {cname} have the same server_id {}; every center's server needs its own",
            a_info.server_id
        )));
    }
    let tables = tables::discover(&mut a.conn, aname, &config.replication).await?;
    let mut stored = state::load(&mut c.conn, &meta)
        .await
        .map_err(BootstrapError::meta(cname))?;
    if options.restart {
        if stored.is_none() {
            return Err(BootstrapError::Input(format!(
                "--restart: no bootstrap of center {cname} is under way"
            )));
        }
        c.conn
            .query_drop(state::clear_statement(&meta))
            .await
            .map_err(BootstrapError::query(cname, "clearing the bootstrap state"))?;
        stored = None;
    }
    if let Some(s) = &stored {
        if s.source != aname {
            return Err(BootstrapError::Input(format!(
                "a bootstrap of center {cname} from {} is under way: finish it with --from {}, or start over with --restart",
                s.source, s.source
            )));
        }
        let mut want: Vec<(String, String)> = tables
            .iter()
            .map(|t| (t.db.clone(), t.table.clone()))
            .collect();
        let mut have: Vec<(String, String)> = s
            .tables
            .iter()
            .map(|t| (t.db.clone(), t.table.clone()))
            .collect();
        want.sort();
        have.sort();
        if want != have {
            return Err(BootstrapError::Input(format!(
                "the replicated tables of center {aname} changed since this bootstrap started; run it again with --restart"
            )));
        }
    }
    let resumed = stored.is_some();
    let mut created = Vec::new();
    let c_position = match &stored {
        Some(s) => s
            .links
            .iter()
            .find(|l| l.link == link(cname, aname))
            .map(|l| l.position.clone())
            .ok_or_else(|| {
                BootstrapError::Input(format!(
                    "the stored bootstrap state lacks link {}; run it again with --restart",
                    link(cname, aname)
                ))
            })?,
        None => {
            created =
                tables::create_missing(&mut a.conn, aname, &mut c.conn, cname, &tables).await?;
            if !options.restart {
                let full = tables::non_empty(&mut c.conn, cname, &tables).await?;
                if !full.is_empty() && !options.truncate {
                    return Err(BootstrapError::TargetNotEmpty {
                        center: cname.to_string(),
                        tables: full,
                    });
                }
                for t in tables.iter().filter(|t| full.contains(&t.name())) {
                    c.conn
                        .query_drop(format!("TRUNCATE TABLE {}", t.sql_name()))
                        .await
                        .map_err(BootstrapError::query(
                            cname,
                            format!("truncating {}", t.name()),
                        ))?;
                }
            }
            current_position(&mut c.conn, &c_info)
                .await
                .map_err(BootstrapError::server(cname))?
        }
    };
    // Recorded before the first tagged write (see `target`).
    drc_meta::record_identity(
        &mut c.conn,
        &meta,
        &link(aname, cname),
        IdentityRole::Link,
        a_info.server_id,
        &a_info.server_uuid,
    )
    .await
    .map_err(BootstrapError::meta(cname))?;
    let marker = Marker {
        meta: meta.clone(),
        origin: aname.to_string(),
        link: link(aname, cname),
        worker: 0,
    };
    let tag = target::resolve(
        config.replication.loopback,
        &c.url,
        cname,
        &c_info,
        &a_info,
        marker,
    )
    .await?;
    tracing::info!(?tag, "the copy is tagged as drc's writes");

    // The snapshot, and where each peer's link into A stood in it.
    let mut attempt = 0;
    let (mut snap, peer_starts) = loop {
        attempt += 1;
        let mut snap = snapshot::open(&a.url, aname, &a_info).await?;
        let mut starts = Vec::new();
        let mut unfinished = None;
        for p in &peers {
            let l = link(&p.name, aname);
            match snap.peer_position(&meta, &l).await? {
                PeerPosition::Clean(pos) => starts.push(LinkStart {
                    link: link(&p.name, cname),
                    position: pos,
                }),
                PeerPosition::Unfinished => unfinished = Some(l),
                PeerPosition::Missing => {
                    return Err(BootstrapError::Checkpoint(format!(
                        "center {aname} has no checkpoint of link {l}, so where link {} should start is unknown: run center {aname}'s daemon until its link from {} runs (drc status), then bootstrap again",
                        link(&p.name, cname),
                        p.name
                    )))
                }
            }
        }
        match unfinished {
            None => break (snap, starts),
            Some(l) if attempt >= UNFINISHED_RETRIES => {
                return Err(BootstrapError::Checkpoint(format!(
                    "center {aname}'s checkpoint of link {l} showed a batch committed by some workers only in {attempt} snapshots in a row; check that center {aname}'s daemon runs (drc status) and try again"
                )))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    tracing::info!(position = %snap.position, "snapshot of center {aname} opened");

    let mut progress: Vec<TableProgress> = tables
        .iter()
        .map(|t| TableProgress {
            db: t.db.clone(),
            table: t.table.clone(),
            last_key: None,
            copied_rows: 0,
            done: false,
        })
        .collect();
    let mut into_c = vec![LinkStart {
        link: link(aname, cname),
        position: snap.position.clone(),
    }];
    into_c.extend(peer_starts);
    let mut links: Vec<LinkStart> = into_c.clone();
    let mut start_over = !resumed;
    if let Some(s) = &stored {
        let by_name = |t: &TableDef| {
            s.tables
                .iter()
                .find(|p| p.db == t.db && p.table == t.table)
                .cloned()
        };
        let unsafe_resume: Vec<String> = tables
            .iter()
            .filter(|t| t.secondary_unique && by_name(t).is_some_and(|p| !p.done))
            .map(TableDef::name)
            .collect();
        if unsafe_resume.is_empty() {
            links = s
                .links
                .iter()
                .filter(|l| l.link.ends_with(&format!("->{cname}")))
                .cloned()
                .collect();
            for (p, t) in progress.iter_mut().zip(&tables) {
                if let Some(stored) = by_name(t) {
                    *p = stored;
                }
            }
        } else {
            tracing::warn!(tables = ?unsafe_resume, "unfinished tables have a unique key besides the primary key: the resumed bootstrap copies every table again from a new snapshot (see the crate docs)");
            start_over = true;
        }
    }
    for p in names.iter().filter(|n| **n != cname) {
        links.push(LinkStart {
            link: link(cname, p),
            position: c_position.clone(),
        });
    }
    if start_over {
        let mut q = vec![state::clear_statement(&meta)];
        q.extend(links.iter().map(|l| state::link_statement(&meta, aname, l)));
        q.extend(
            progress
                .iter()
                .map(|p| state::table_statement(&meta, aname, p)),
        );
        in_transaction(&mut c.conn, cname, &q, "storing the bootstrap state").await?;
    }

    // Tombstones, tagged like the rows.
    let (stones, tombstones) = snap.tombstone_statements(&meta, &meta, 500).await?;
    let mut w = target::Writer::new(&c.url, cname, &tag, 0);
    for s in stones {
        w.transaction(&[s]).await?;
    }
    drop(w);

    let total: u64 = tables
        .iter()
        .zip(&progress)
        .filter(|(_, p)| !p.done)
        .map(|(t, p)| t.estimated_rows.saturating_sub(p.copied_rows))
        .sum();
    let mut shown = Progress::new(
        options.display,
        &format!("bootstrap {cname} <- {aname}"),
        total,
        options.interval,
    );
    if resumed && !start_over {
        shown.note("resuming the stored bootstrap");
    }
    let mut state_conn = connect(&c.url, CONNECT_TIMEOUT)
        .await
        .map_err(BootstrapError::server(cname))?;
    copy::copy(
        &mut snap,
        &tables,
        progress,
        copy::Target {
            url: &c.url,
            center: cname,
            meta: &meta,
            source: aname,
            tag: &tag,
            state: &mut state_conn,
        },
        &copy::CopyOptions {
            chunk_rows: options.chunk_rows,
            writers: options.writers,
        },
        &mut shown,
    )
    .await?;
    let (rows, bytes, rows_per_sec) = shown.finish();
    let _ = snap.conn.query_drop("COMMIT").await;
    drop(snap);

    // The checkpoints.
    for l in links
        .iter()
        .filter(|l| l.link.ends_with(&format!("->{cname}")))
    {
        write_checkpoint(&mut c.conn, cname, &meta, l).await?;
    }
    for l in links
        .iter()
        .filter(|l| l.link.starts_with(&format!("{cname}->")))
    {
        let target = l.link.rsplit("->").next().unwrap_or_default();
        let conn = if target == aname {
            &mut a.conn
        } else {
            match peers.iter_mut().find(|p| p.name == target) {
                Some(p) => &mut p.conn,
                None => continue,
            }
        };
        write_checkpoint(conn, target, &meta, l).await?;
    }
    c.conn
        .query_drop(state::clear_statement(&meta))
        .await
        .map_err(BootstrapError::query(cname, "clearing the bootstrap state"))?;
    Ok(Summary {
        rows,
        bytes,
        rows_per_sec,
        tables: tables.len(),
        created,
        tombstones,
        resumed,
        links,
    })
}

/// Refuses when C's daemon wrote its heartbeat recently: its links would apply into tables
/// being copied and move the checkpoints the bootstrap writes.
async fn refuse_running_daemon(
    c: &mut Center,
    meta: &str,
    interval: Duration,
) -> Result<(), BootstrapError> {
    let mut q = String::from("SELECT TIMESTAMPDIFF(MICROSECOND, `ts`, NOW(6)) FROM ");
    drc_core::sqltext::qualified(&mut q, meta, "heartbeat");
    q.push_str(" WHERE `center` = ");
    drc_core::sqltext::quoted(&mut q, &c.name);
    let age: Option<Option<i64>> = c.conn.query_first(q).await.map_err(BootstrapError::query(
        &c.name,
        "reading the center's heartbeat",
    ))?;
    let limit = (interval * 3).max(Duration::from_secs(3));
    if let Some(Some(us)) = age {
        let age = Duration::from_micros(us.max(0).unsigned_abs());
        if age < limit {
            return Err(BootstrapError::Input(format!(
                "the daemon of center {} is running (its heartbeat is {:.1} s old): stop it (every replica) before bootstrapping the center, and wait {} s",
                c.name,
                age.as_secs_f64(),
                limit.as_secs()
            )));
        }
    }
    Ok(())
}

async fn in_transaction(
    conn: &mut Conn,
    center: &str,
    statements: &[String],
    what: &str,
) -> Result<(), BootstrapError> {
    let r = async {
        conn.query_drop("START TRANSACTION").await?;
        for s in statements {
            conn.query_drop(s).await?;
        }
        conn.query_drop("COMMIT").await
    }
    .await;
    if r.is_err() {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    r.map_err(BootstrapError::query(center, what))
}

async fn write_checkpoint(
    conn: &mut Conn,
    center: &str,
    meta: &str,
    l: &LinkStart,
) -> Result<(), BootstrapError> {
    let cp = Checkpoint {
        worker: 0,
        batch: 0,
        workers: 1,
        start: l.position.clone(),
        end: l.position.clone(),
    };
    in_transaction(
        conn,
        center,
        &[
            drc_meta::clear_checkpoints_statement(meta, &l.link),
            drc_meta::checkpoint_statement(meta, &l.link, &cp),
        ],
        "writing a starting checkpoint",
    )
    .await
}

/// The stored state of a bootstrap of `center`, if one is under way (for `drc status`-like
/// reports).
pub async fn stored_state(
    conn: &mut Conn,
    meta: &str,
) -> Result<Option<State>, drc_meta::MetaError> {
    state::load(conn, meta).await
}
