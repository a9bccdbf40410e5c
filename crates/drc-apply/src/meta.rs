//! drc's own state in each center's `<meta>` database (default `drc_meta`).
//!
//! | table | what | replicated |
//! |---|---|---|
//! | `checkpoint` | per link and applier worker: the last batch committed and its start and end source positions | no (local) |
//! | `heartbeat` | one row per center, written every second by that center's daemon | yes, on purpose: a peer's row shows how far behind the link is |
//! | `origin` | marker strategy: one row per origin, link and applier worker, touched first in every transaction that worker applies | no (it marks drc's own writes) |
//! | `canary` | start-up proof that origin tagging works | no |
//! | `tombstone` | rank of every row deleted by an applier, and claims on unique values, of a last-writer-wins table (docs/conflicts.md) | no |
//! | `local_tombstone` | the same, written by the local-delete reader for local writes | no |
//! | `source_identity` | per link into this center (role `link`) and per local-delete reader (role `local`): every `server_id` its source server has had. A link's rows are also the ids drc's appliers write under in this center, which readers of this center's binlog drop (`crate::origin`) | no |
//! | `ddl_skip` | DDL positions an operator acknowledged (`drc ddl skip`): the link passes them, and records the statement when it does | no |
//! | `ddl_pending` | per link: the replicated DDL statement started and not yet checkpointed (crash window, [`crate::ddl`]) | no |
//! | `conflict` | every write lost to last-writer-wins, written in the apply transaction that decided it (docs/conflicts.md) | no |
//!
//! A checkpoint row is written in the same transaction as the changes it covers (invariant 2).
//!
//! Marker rows are keyed by `(origin, link, worker)` so that the parallel appliers of a link
//! never wait on each other's row lock: each writes only its own row. A marker row keyed by the
//! origin alone (drc before this key) serialised every applier of every link from that origin
//! behind one row lock, held until each transaction committed. [`ensure_schema`] upgrades such a
//! table in place; the old single-row statement still works on the upgraded table (its row is
//! `link = ''`, `worker = 0`), so an older replica that takes over keeps tagging correctly.

use std::fmt::Write as _;

use drc_core::position::Position;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::sql::{ident, quoted};
use crate::LinkError;

/// The DDL that creates the meta database and tables (idempotent).
pub fn schema_statements(meta: &str) -> Vec<String> {
    let mut db = String::new();
    ident(&mut db, meta);
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`checkpoint` (\
             `link` VARCHAR(130) NOT NULL, `worker` INT UNSIGNED NOT NULL, \
             `batch` BIGINT UNSIGNED NOT NULL, `workers` INT UNSIGNED NOT NULL, \
             `start_position` MEDIUMTEXT NOT NULL, `end_position` MEDIUMTEXT NOT NULL, \
             `term` BIGINT UNSIGNED NOT NULL DEFAULT 0, \
             `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (`link`, `worker`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`heartbeat` (\
             `center` VARCHAR(64) NOT NULL PRIMARY KEY, `ts` TIMESTAMP(6) NOT NULL, \
             `seq` BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`origin` (\
             `origin` VARCHAR(64) NOT NULL, `link` VARCHAR(130) NOT NULL DEFAULT '', \
             `worker` INT UNSIGNED NOT NULL DEFAULT 0, `seq` BIGINT UNSIGNED NOT NULL, \
             PRIMARY KEY (`origin`, `link`, `worker`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`canary` (\
             `link` VARCHAR(130) NOT NULL PRIMARY KEY, `seq` BIGINT UNSIGNED NOT NULL) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`source_identity` (\
             `link` VARCHAR(130) NOT NULL, `server_id` INT UNSIGNED NOT NULL, \
             `server_uuid` VARCHAR(64) NOT NULL DEFAULT '', \
             `role` VARCHAR(16) NOT NULL DEFAULT 'link', \
             `first_seen` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (`link`, `server_id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`conflict` (\
             `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             `link` VARCHAR(130) NOT NULL, `db_table` VARCHAR(130) NOT NULL, \
             `row_key` MEDIUMTEXT NOT NULL, `rule` VARCHAR(32) NOT NULL, \
             `resolution` VARCHAR(32) NOT NULL, `loser` MEDIUMTEXT NOT NULL, \
             `winner` MEDIUMTEXT NOT NULL, KEY `at` (`at`)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
    ]
    .into_iter()
    .chain(ddl_schema_statements(meta))
    .chain(crate::conflict::tombstone::schema_statements(meta))
    .collect()
}

/// The DDL acknowledgment tables (part of [`schema_statements`]; `drc ddl skip` creates them
/// when no daemon of this version ran yet).
pub fn ddl_schema_statements(meta: &str) -> Vec<String> {
    let mut db = String::new();
    ident(&mut db, meta);
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`ddl_skip` (\
             `link` VARCHAR(130) NOT NULL, `position` VARCHAR(255) NOT NULL, \
             `acknowledged_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             `statement` MEDIUMTEXT NULL, `passed_at` TIMESTAMP(6) NULL, \
             PRIMARY KEY (`link`, `position`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.`ddl_pending` (\
             `link` VARCHAR(130) NOT NULL PRIMARY KEY, `position` VARCHAR(255) NOT NULL, \
             `statement` MEDIUMTEXT NOT NULL, \
             `started_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
    ]
}

/// The statement that acknowledges the DDL at `position` of `link` (`drc ddl skip`).
pub fn ddl_skip_statement(meta: &str, link: &str, position: &str) -> String {
    let mut q = String::from("INSERT IGNORE INTO ");
    ident(&mut q, meta);
    q.push_str(".`ddl_skip` (`link`, `position`) VALUES (");
    quoted(&mut q, link);
    q.push_str(", ");
    quoted(&mut q, position);
    q.push(')');
    q
}

/// Whether the DDL at `position` of `link` was acknowledged.
pub async fn ddl_acknowledged(
    conn: &mut Conn,
    meta: &str,
    link: &str,
    position: &str,
) -> Result<bool, LinkError> {
    let mut q = String::from("SELECT COUNT(*) FROM ");
    ident(&mut q, meta);
    q.push_str(".`ddl_skip` WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" AND `position` = ");
    quoted(&mut q, position);
    let n: Option<u64> = conn
        .query_first(q)
        .await
        .map_err(|e| LinkError::target("reading DDL acknowledgments", e))?;
    Ok(n.unwrap_or(0) > 0)
}

/// The statement that records, in the acknowledgment, the statement the link passed.
pub fn ddl_passed_statement(meta: &str, link: &str, position: &str, statement: &str) -> String {
    let mut q = String::from("UPDATE ");
    ident(&mut q, meta);
    q.push_str(".`ddl_skip` SET `statement` = ");
    quoted(&mut q, statement);
    q.push_str(", `passed_at` = NOW(6) WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" AND `position` = ");
    quoted(&mut q, position);
    q
}

/// The position of the replicated DDL `link` started and did not checkpoint, if any.
pub async fn ddl_pending(
    conn: &mut Conn,
    meta: &str,
    link: &str,
) -> Result<Option<String>, LinkError> {
    let mut q = String::from("SELECT `position` FROM ");
    ident(&mut q, meta);
    q.push_str(".`ddl_pending` WHERE `link` = ");
    quoted(&mut q, link);
    conn.query_first(q)
        .await
        .map_err(|e| LinkError::target("reading the pending DDL", e))
}

/// The statement that records that `link` starts the DDL at `position` (committed before it).
pub fn ddl_start_statement(meta: &str, link: &str, position: &str, statement: &str) -> String {
    let mut q = String::from("REPLACE INTO ");
    ident(&mut q, meta);
    q.push_str(".`ddl_pending` (`link`, `position`, `statement`) VALUES (");
    quoted(&mut q, link);
    q.push_str(", ");
    quoted(&mut q, position);
    q.push_str(", ");
    quoted(&mut q, statement);
    q.push(')');
    q
}

/// The statement that clears `link`'s pending DDL (in the transaction of its checkpoint).
pub fn ddl_done_statement(meta: &str, link: &str) -> String {
    let mut q = String::from("DELETE FROM ");
    ident(&mut q, meta);
    q.push_str(".`ddl_pending` WHERE `link` = ");
    quoted(&mut q, link);
    q
}

/// Creates the meta database and tables when missing.
pub async fn ensure_schema(conn: &mut Conn, meta: &str) -> Result<(), LinkError> {
    for s in schema_statements(meta) {
        conn.query_drop(&s)
            .await
            .map_err(|e| LinkError::target("creating drc's meta tables", e))?;
    }
    let (has_rank, add_rank) = crate::conflict::tombstone::upgrade_statements(meta);
    let n: Option<u64> = conn
        .query_first(has_rank)
        .await
        .map_err(|e| LinkError::target("checking drc's meta tables", e))?;
    if n == Some(0) {
        conn.query_drop(add_rank)
            .await
            .map_err(|e| LinkError::target("upgrading drc's tombstone table", e))?;
    }
    let (has_link, rekey) = origin_upgrade_statements(meta);
    let n: Option<u64> = conn
        .query_first(has_link)
        .await
        .map_err(|e| LinkError::target("checking drc's meta tables", e))?;
    if n == Some(0) {
        match conn.query_drop(rekey).await {
            Ok(()) => {}
            // Another link of this daemon upgraded it first (ER_DUP_FIELDNAME).
            Err(mysql_async::Error::Server(e)) if e.code == 1060 => {}
            Err(e) => return Err(LinkError::target("upgrading drc's origin table", e)),
        }
    }
    Ok(())
}

/// Re-keys an `origin` table created before markers were per worker (primary key `origin`
/// alone) to `(origin, link, worker)`; its old rows become `link = ''`, `worker = 0`. Returns
/// the query that tells whether the upgrade is needed (0: needed) and the upgrade.
pub fn origin_upgrade_statements(meta: &str) -> (String, String) {
    let mut db = String::new();
    ident(&mut db, meta);
    let mut name = String::new();
    quoted(&mut name, meta);
    (
        format!(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {name} \
             AND TABLE_NAME = 'origin' AND COLUMN_NAME = 'worker'"
        ),
        format!(
            "ALTER TABLE {db}.`origin` \
             ADD COLUMN `link` VARCHAR(130) NOT NULL DEFAULT '' AFTER `origin`, \
             ADD COLUMN `worker` INT UNSIGNED NOT NULL DEFAULT 0 AFTER `link`, \
             DROP PRIMARY KEY, ADD PRIMARY KEY (`origin`, `link`, `worker`)"
        ),
    )
}

/// One worker's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Applier worker index.
    pub worker: u32,
    /// Sequence number of the last batch this worker committed.
    pub batch: u64,
    /// Worker count when that batch was planned.
    pub workers: u32,
    /// The batch's start position.
    pub start: Position,
    /// The batch's end position.
    pub end: Position,
}

/// Reads every worker checkpoint of `link`.
pub async fn load_checkpoints(
    conn: &mut Conn,
    meta: &str,
    link: &str,
) -> Result<Vec<Checkpoint>, LinkError> {
    let mut q =
        String::from("SELECT `worker`, `batch`, `workers`, `start_position`, `end_position` FROM ");
    ident(&mut q, meta);
    q.push_str(".`checkpoint` WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" ORDER BY `worker`");
    let rows: Vec<(u32, u64, u32, String, String)> = conn
        .query(q)
        .await
        .map_err(|e| LinkError::target("reading checkpoints", e))?;
    rows.into_iter()
        .map(|(worker, batch, workers, start, end)| {
            let parse = |s: &str| {
                s.parse::<Position>().map_err(|e| {
                    LinkError::Checkpoint(format!(
                        "link {link} worker {worker}: stored position {s:?} does not parse: {e}"
                    ))
                })
            };
            Ok(Checkpoint {
                worker,
                batch,
                workers,
                start: parse(&start)?,
                end: parse(&end)?,
            })
        })
        .collect()
}

/// The statement that records a worker's checkpoint (run inside the apply transaction).
pub fn checkpoint_statement(meta: &str, link: &str, c: &Checkpoint) -> String {
    let mut q = String::from("INSERT INTO ");
    ident(&mut q, meta);
    q.push_str(".`checkpoint` (`link`, `worker`, `batch`, `workers`, `start_position`, `end_position`) VALUES (");
    quoted(&mut q, link);
    let _ = write!(q, ", {}, {}, {}, ", c.worker, c.batch, c.workers);
    quoted(&mut q, &c.start.to_string());
    q.push_str(", ");
    quoted(&mut q, &c.end.to_string());
    q.push_str(") ON DUPLICATE KEY UPDATE `batch` = VALUES(`batch`), `workers` = VALUES(`workers`), \
                `start_position` = VALUES(`start_position`), `end_position` = VALUES(`end_position`)");
    q
}

/// Who recorded a `source_identity` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRole {
    /// A link into this center: its source's id, which is also the tag its appliers write
    /// under here.
    Link,
    /// The center's local-delete reader: this center's own id.
    Local,
}

/// Records that the source of reader `name` (a link, or the local-delete reader) now has
/// `server_id` (and `server_uuid`), and returns every `server_id` recorded for it, the current
/// one included. Run before the reader reads, and before a link's appliers write anything
/// under this id.
pub async fn record_identity(
    conn: &mut Conn,
    meta: &str,
    name: &str,
    role: IdentityRole,
    server_id: u32,
    server_uuid: &str,
) -> Result<Vec<u32>, LinkError> {
    let mut q = String::from("INSERT INTO ");
    ident(&mut q, meta);
    q.push_str(".`source_identity` (`link`, `server_id`, `server_uuid`, `role`) VALUES (");
    quoted(&mut q, name);
    let _ = write!(q, ", {server_id}, ");
    quoted(&mut q, server_uuid);
    q.push_str(match role {
        IdentityRole::Link => ", 'link'",
        IdentityRole::Local => ", 'local'",
    });
    q.push_str(") ON DUPLICATE KEY UPDATE `server_id` = `server_id`");
    conn.query_drop(q)
        .await
        .map_err(|e| LinkError::target("recording the source's identity", e))?;
    let mut q = String::from("SELECT `server_id` FROM ");
    ident(&mut q, meta);
    q.push_str(".`source_identity` WHERE `link` = ");
    quoted(&mut q, name);
    q.push_str(" ORDER BY `first_seen`");
    conn.query(q)
        .await
        .map_err(|e| LinkError::target("reading the source's identities", e))
}

/// The `server_id`s drc's appliers write under in the center of `conn` (every id recorded by a
/// link into it); empty when the center has no meta tables yet (nothing was applied there).
pub async fn tag_ids(conn: &mut Conn, meta: &str) -> Result<Vec<u32>, mysql_async::Error> {
    let mut q = String::from("SELECT DISTINCT `server_id` FROM ");
    ident(&mut q, meta);
    q.push_str(".`source_identity` WHERE `role` = 'link'");
    match conn.query(q).await {
        Ok(ids) => Ok(ids),
        // ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR: no drc state in that center yet.
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1146 | 1049) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The origin marker of one applier (`marker` strategy): which row of `<meta>.origin` it
/// touches first in every transaction. See the module docs for why the row is per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The meta database.
    pub meta: String,
    /// The origin center (the link's source).
    pub origin: String,
    /// The link, `source->target`.
    pub link: String,
    /// The applier worker index.
    pub worker: u32,
}

impl Marker {
    /// The same marker for applier `worker`.
    pub fn for_worker(&self, worker: u32) -> Marker {
        Marker {
            worker,
            ..self.clone()
        }
    }

    /// The marker statement: the first statement of every transaction this applier writes.
    pub fn statement(&self) -> String {
        let mut q = String::from("INSERT INTO ");
        ident(&mut q, &self.meta);
        q.push_str(".`origin` (`origin`, `link`, `worker`, `seq`) VALUES (");
        quoted(&mut q, &self.origin);
        q.push_str(", ");
        quoted(&mut q, &self.link);
        let _ = write!(
            q,
            ", {}, 1) ON DUPLICATE KEY UPDATE `seq` = `seq` + 1",
            self.worker
        );
        q
    }
}

/// Where a link resumes after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No checkpoint yet: the link starts fresh.
    Fresh,
    /// Every worker finished the last batch: resume after it.
    Clean {
        /// Last batch sequence number.
        batch: u64,
        /// Resume here.
        position: Position,
    },
    /// The last batch was committed by some workers only (a crash between their commits): it
    /// is re-formed exactly (`start`..`end`), re-planned for `workers`, and applied by the
    /// workers not in `done`.
    Partial {
        /// Batch sequence number.
        batch: u64,
        /// Its start.
        start: Position,
        /// Its end.
        end: Position,
        /// Worker count it was planned for.
        workers: u32,
        /// Workers that committed it.
        done: Vec<u32>,
    },
}

/// Decides how to resume from the stored checkpoints.
///
/// Batches are applied strictly one after another, so every batch before the newest one was
/// finished by all workers; only the newest can be partial. A worker whose row is older than the
/// newest batch either had nothing to do in it or crashed before committing; re-planning the
/// batch tells which, and applying its (possibly empty) share again is exact.
pub fn recovery(rows: &[Checkpoint]) -> Recovery {
    let Some(newest) = rows.iter().max_by_key(|c| c.batch) else {
        return Recovery::Fresh;
    };
    let done: Vec<u32> = rows
        .iter()
        .filter(|c| c.batch == newest.batch)
        .map(|c| c.worker)
        .collect();
    if newest.workers <= 1 || done.len() as u32 >= newest.workers || newest.start == newest.end {
        return Recovery::Clean {
            batch: newest.batch,
            position: newest.end.clone(),
        };
    }
    Recovery::Partial {
        batch: newest.batch,
        start: newest.start.clone(),
        end: newest.end.clone(),
        workers: newest.workers,
        done,
    }
}
