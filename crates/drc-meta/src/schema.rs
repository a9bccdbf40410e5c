//! The meta database's schema: every table's definition, and the upgrades that bring a meta
//! database written by an older drc to [`VERSION`].
//!
//! [`ensure`] creates what is missing with today's definitions (`CREATE ... IF NOT EXISTS`),
//! then runs every [`UPGRADES`] step newer than the stored version, and stores [`VERSION`]:
//!
//! - Each step is idempotent: it probes `information_schema` first and alters only when the
//!   probe says the change is missing, and an alter that another daemon ran first
//!   (duplicate column, key or primary key) is fine. So concurrent start-ups, a database created
//!   before versions were stored (version 0), and a crash between a step and the version write
//!   all end in the same schema.
//! - The version only ever rises (`GREATEST`). A meta database whose version is newer than this
//!   drc knows is refused ([`MetaError::TooNew`]): an older drc must not write tables whose
//!   meaning it does not know, e.g. after a rolling upgrade was rolled back.
//!
//! A new table needs no version: `CREATE ... IF NOT EXISTS` adds it, and an older drc ignores
//! it. Versions count changes to existing tables. Versions: 1 — the tables as first released; 2 — `tombstone.rank_key` (the rank as
//! memcmp-ordered bytes, compared by the server); 3 — `origin` keyed by `(origin, link,
//! worker)`, so that parallel appliers never wait on one marker row.

use drc_core::sqltext::{ident, quoted};
use drc_mysql::codes::{ER_DUP_FIELDNAME, ER_DUP_KEYNAME, ER_MULTIPLE_PRI_KEY};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::MetaError;

/// The schema version this drc writes.
pub const VERSION: u32 = 3;

/// One upgrade step: the version it brings the schema to, what it does, the probe (a
/// `SELECT COUNT(*)` that returns 0 when the step is needed) and the change.
pub struct Upgrade {
    /// The version after this step.
    pub to: u32,
    /// What it does, for errors.
    pub what: &'static str,
    /// `(probe, change)` for a meta database.
    pub statements: fn(&str) -> (String, String),
}

/// Every upgrade step, oldest first.
pub const UPGRADES: &[Upgrade] = &[
    Upgrade {
        to: 2,
        what: "adding tombstone.rank_key",
        statements: tombstone_rank_key,
    },
    Upgrade {
        to: 3,
        what: "keying origin markers per link worker",
        statements: origin_per_worker,
    },
];

fn db(meta: &str) -> String {
    let mut s = String::new();
    ident(&mut s, meta);
    s
}

fn has_column(meta: &str, table: &str, column: &str) -> String {
    let mut q =
        String::from("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ");
    quoted(&mut q, meta);
    q.push_str(" AND TABLE_NAME = ");
    quoted(&mut q, table);
    q.push_str(" AND COLUMN_NAME = ");
    quoted(&mut q, column);
    q
}

/// Adds `rank_key` to a tombstone table created before it existed (its old rows keep an empty
/// rank, which any new tombstone of their key replaces).
fn tombstone_rank_key(meta: &str) -> (String, String) {
    (
        has_column(meta, "tombstone", "rank_key"),
        format!(
            "ALTER TABLE {}.`tombstone` ADD COLUMN `rank_key` VARBINARY(700) NOT NULL DEFAULT ''",
            db(meta)
        ),
    )
}

/// Re-keys an `origin` table created before markers were per worker (primary key `origin`
/// alone) to `(origin, link, worker)`; its old rows become `link = ''`, `worker = 0`, so the
/// old single-row marker statement still works on the upgraded table (an older replica that
/// takes over keeps tagging correctly).
fn origin_per_worker(meta: &str) -> (String, String) {
    (
        has_column(meta, "origin", "worker"),
        format!(
            "ALTER TABLE {}.`origin` \
             ADD COLUMN `link` VARCHAR(130) NOT NULL DEFAULT '' AFTER `origin`, \
             ADD COLUMN `worker` INT UNSIGNED NOT NULL DEFAULT 0 AFTER `link`, \
             DROP PRIMARY KEY, ADD PRIMARY KEY (`origin`, `link`, `worker`)",
            db(meta)
        ),
    )
}

/// The DDL that creates the meta database and every table at today's definitions
/// (idempotent).
pub fn create_statements(meta: &str) -> Vec<String> {
    let db = db(meta);
    let t = |def: &str| {
        format!("CREATE TABLE IF NOT EXISTS {db}.{def} ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    };
    let tombstone = |name: &str| {
        t(&format!(
            "`{name}` (\
             `db_table` VARCHAR(130) NOT NULL, `pk_hash` BINARY(32) NOT NULL, \
             `version` VARCHAR(255) NOT NULL, `row_hash` BINARY(32) NOT NULL, \
             `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
             `rank_key` VARBINARY(700) NOT NULL DEFAULT '', \
             PRIMARY KEY (`db_table`, `pk_hash`), KEY `at` (`at`))"
        ))
    };
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        t("`schema_version` (\
           `id` TINYINT UNSIGNED NOT NULL PRIMARY KEY, `version` INT UNSIGNED NOT NULL, \
           `upgraded_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"),
        t("`checkpoint` (\
           `link` VARCHAR(130) NOT NULL, `worker` INT UNSIGNED NOT NULL, \
           `batch` BIGINT UNSIGNED NOT NULL, `workers` INT UNSIGNED NOT NULL, \
           `start_position` MEDIUMTEXT NOT NULL, `end_position` MEDIUMTEXT NOT NULL, \
           `term` BIGINT UNSIGNED NOT NULL DEFAULT 0, \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`link`, `worker`))"),
        t("`heartbeat` (\
           `center` VARCHAR(64) NOT NULL PRIMARY KEY, `ts` TIMESTAMP(6) NOT NULL, \
           `seq` BIGINT UNSIGNED NOT NULL)"),
        t("`origin` (\
           `origin` VARCHAR(64) NOT NULL, `link` VARCHAR(130) NOT NULL DEFAULT '', \
           `worker` INT UNSIGNED NOT NULL DEFAULT 0, `seq` BIGINT UNSIGNED NOT NULL, \
           PRIMARY KEY (`origin`, `link`, `worker`))"),
        t("`canary` (`link` VARCHAR(130) NOT NULL PRIMARY KEY, `seq` BIGINT UNSIGNED NOT NULL)"),
        t("`source_identity` (\
           `link` VARCHAR(130) NOT NULL, `server_id` INT UNSIGNED NOT NULL, \
           `server_uuid` VARCHAR(64) NOT NULL DEFAULT '', \
           `role` VARCHAR(16) NOT NULL DEFAULT 'link', \
           `first_seen` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`link`, `server_id`))"),
        t("`conflict` (\
           `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
           `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `link` VARCHAR(130) NOT NULL, `db_table` VARCHAR(130) NOT NULL, \
           `row_key` MEDIUMTEXT NOT NULL, `rule` VARCHAR(32) NOT NULL, \
           `resolution` VARCHAR(32) NOT NULL, `loser` MEDIUMTEXT NOT NULL, \
           `winner` MEDIUMTEXT NOT NULL, KEY `at` (`at`))"),
        t("`ddl_skip` (\
           `link` VARCHAR(130) NOT NULL, `position` VARCHAR(255) NOT NULL, \
           `acknowledged_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `statement` MEDIUMTEXT NULL, `passed_at` TIMESTAMP(6) NULL, \
           PRIMARY KEY (`link`, `position`))"),
        t("`ddl_pending` (\
           `link` VARCHAR(130) NOT NULL PRIMARY KEY, `position` VARCHAR(255) NOT NULL, \
           `statement` MEDIUMTEXT NOT NULL, \
           `started_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"),
        tombstone("tombstone"),
        tombstone("local_tombstone"),
        t("`link_control` (\
           `link` VARCHAR(130) NOT NULL PRIMARY KEY, `paused` TINYINT UNSIGNED NOT NULL DEFAULT 0, \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"),
        t("`link_skip` (\
           `link` VARCHAR(130) NOT NULL, `gtid` VARCHAR(255) NOT NULL, \
           `requested_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `skipped_at` TIMESTAMP(6) NULL, `row_count` BIGINT UNSIGNED NULL, \
           `content` MEDIUMTEXT NULL, PRIMARY KEY (`link`, `gtid`))"),
        t("`fence` (\
           `center` VARCHAR(64) NOT NULL PRIMARY KEY, `term` BIGINT UNSIGNED NOT NULL, \
           `replica` INT UNSIGNED NOT NULL, `taken_at` TIMESTAMP(6) NOT NULL)"),
        t("`term_history` (\
           `center` VARCHAR(64) NOT NULL, `term` BIGINT UNSIGNED NOT NULL, \
           `replica` INT UNSIGNED NOT NULL, `started_at` TIMESTAMP(6) NOT NULL, \
           PRIMARY KEY (`center`, `term`))"),
        t("`apply_log` (\
           `link` VARCHAR(130) NOT NULL, `worker` INT UNSIGNED NOT NULL, \
           `slot` BIGINT UNSIGNED NOT NULL, `batch` BIGINT UNSIGNED NOT NULL, \
           `term` BIGINT UNSIGNED NOT NULL, `replica` INT UNSIGNED NOT NULL, \
           `committed_at` TIMESTAMP(6) NOT NULL, PRIMARY KEY (`link`, `worker`, `slot`))"),
        t("`bootstrap` (\
           `kind` VARCHAR(8) NOT NULL, `db` VARCHAR(64) NOT NULL, `name` VARCHAR(130) NOT NULL, \
           `source` VARCHAR(64) NOT NULL, `position` MEDIUMTEXT NULL, `last_key` MEDIUMTEXT NULL, \
           `copied_rows` BIGINT UNSIGNED NOT NULL DEFAULT 0, `done` TINYINT NOT NULL DEFAULT 0, \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
           PRIMARY KEY (`kind`, `db`, `name`))"),
        t("`route_unit` (\
           `unit` VARCHAR(64) NOT NULL PRIMARY KEY, `home` VARCHAR(64) NOT NULL, \
           `state` VARCHAR(16) NOT NULL, `target` VARCHAR(64) NULL, \
           `epoch` BIGINT UNSIGNED NOT NULL, `cutover` VARCHAR(200) NOT NULL DEFAULT '', \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"),
        t("`route_cutover` (\
           `id` VARCHAR(200) NOT NULL PRIMARY KEY, `units` MEDIUMTEXT NOT NULL, \
           `from_center` VARCHAR(64) NOT NULL, `to_center` VARCHAR(64) NOT NULL, \
           `forced` TINYINT UNSIGNED NOT NULL DEFAULT 0, `step` VARCHAR(16) NOT NULL, \
           `window_position` MEDIUMTEXT NULL, `unwritable_ms` BIGINT UNSIGNED NULL, \
           `started_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"),
        t("`route_fence` (\
           `center` VARCHAR(64) NOT NULL PRIMARY KEY, `cutover` VARCHAR(200) NOT NULL, \
           `fenced_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"),
        t("`repair` (\
           `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
           `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           `run` VARCHAR(64) NOT NULL, `db_table` VARCHAR(130) NOT NULL, \
           `row_key` MEDIUMTEXT NOT NULL, `action` VARCHAR(16) NOT NULL, \
           `winner` VARCHAR(64) NOT NULL, `rule` VARCHAR(32) NOT NULL, \
           `before_row` MEDIUMTEXT NOT NULL, `after_row` MEDIUMTEXT NOT NULL, \
           KEY `run` (`run`), KEY `at` (`at`))"),
    ]
}

/// The stored schema version (0 when none is stored: a meta database from before versions,
/// or one being created).
pub async fn stored_version(conn: &mut Conn, meta: &str) -> Result<u32, MetaError> {
    let v: Option<u32> = conn
        .query_first(format!(
            "SELECT `version` FROM {}.`schema_version` WHERE `id` = 1",
            db(meta)
        ))
        .await
        .map_err(MetaError::query("reading the meta schema version"))?;
    Ok(v.unwrap_or(0))
}

/// The names of the tables [`create_statements`] creates.
pub fn table_names(meta: &str) -> Vec<String> {
    let prefix = format!("{}.`", db(meta));
    create_statements(meta)
        .iter()
        .filter_map(|s| {
            let rest = s.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
            let rest = rest.strip_prefix(&prefix)?;
            Some(rest.split('`').next()?.to_string())
        })
        .collect()
}

/// Whether the stored schema version is [`VERSION`] and every table of today's definitions
/// exists.
async fn is_current(conn: &mut Conn, meta: &str) -> Result<bool, MetaError> {
    let names = table_names(meta);
    let placeholders = vec!["?"; names.len()].join(", ");
    let mut params: Vec<mysql_async::Value> = vec![meta.into()];
    params.extend(names.iter().map(|n| mysql_async::Value::from(n.as_str())));
    let present: Option<u64> = conn
        .exec_first(
            format!(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME IN ({placeholders})"
            ),
            params,
        )
        .await
        .map_err(MetaError::query("checking drc's meta tables"))?;
    if present != Some(names.len() as u64) {
        return Ok(false);
    }
    Ok(stored_version(conn, meta).await? == VERSION)
}

/// Creates the meta database and every table when missing, runs the upgrades newer than the
/// stored version, and stores [`VERSION`]. Refuses a meta database newer than this drc.
pub async fn ensure(conn: &mut Conn, meta: &str) -> Result<(), MetaError> {
    // Fast path, taken by every reconnect of a running cluster: the schema is current and every
    // table is there. It reads only, so nothing lands in the binlog (every `CREATE ... IF NOT
    // EXISTS` would, and every peer's link would then pass it as a DDL event).
    if is_current(conn, meta).await? {
        return Ok(());
    }
    for s in create_statements(meta) {
        conn.query_drop(&s)
            .await
            .map_err(MetaError::query("creating drc's meta tables"))?;
    }
    let stored = stored_version(conn, meta).await?;
    if stored > VERSION {
        return Err(MetaError::TooNew {
            meta: meta.to_string(),
            stored,
            known: VERSION,
        });
    }
    for step in UPGRADES.iter().filter(|u| u.to > stored) {
        let (probe, change) = (step.statements)(meta);
        let present: Option<u64> = conn
            .query_first(probe)
            .await
            .map_err(MetaError::query("checking drc's meta tables"))?;
        if present == Some(0) {
            match conn.query_drop(change).await {
                Ok(()) => {}
                // Another daemon ran the step first.
                Err(mysql_async::Error::Server(e))
                    if matches!(
                        e.code,
                        ER_DUP_FIELDNAME | ER_DUP_KEYNAME | ER_MULTIPLE_PRI_KEY
                    ) => {}
                Err(source) => {
                    return Err(MetaError::Query {
                        what: step.what,
                        source,
                    })
                }
            }
        }
    }
    conn.query_drop(format!(
        "INSERT INTO {0}.`schema_version` (`id`, `version`) VALUES (1, {VERSION}) \
         ON DUPLICATE KEY UPDATE `version` = GREATEST(`version`, VALUES(`version`))",
        db(meta)
    ))
    .await
    .map_err(MetaError::query("storing the meta schema version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_are_in_order_and_end_at_the_version() {
        let mut last = 1;
        for u in UPGRADES {
            assert!(u.to > last, "{}", u.what);
            last = u.to;
        }
        assert_eq!(last, VERSION);
    }

    #[test]
    fn names_are_escaped() {
        let s = create_statements("m`x");
        assert!(s[0].contains("`m``x`"), "{}", s[0]);
        let (probe, _) = origin_per_worker("o'x");
        assert!(probe.contains("'o\\'x'"), "{probe}");
    }
}
