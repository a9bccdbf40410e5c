//! Conflict resolution: last-writer-wins on a version column, so that centers that wrote the
//! same row concurrently converge, and every lost write is recorded.
//!
//! A table uses last-writer-wins when it has the version column that `[conflict]` names for it
//! (default `updated_at`); other tables keep "source wins" (the plain rewrite of [`crate::sql`]).
//! For the last-writer-wins changes of a share the applier, inside the apply transaction, runs
//! one dependency level after another (the changes of a level touch disjoint keys), each in
//! these steps ([`run_levels`], in `levels.rs`):
//!
//! 1. **read** (`read.rs`): the target rows each change touches — by primary key and by every
//!    unique key of the incoming row — with `SELECT .. FOR UPDATE` (integer primary keys in
//!    one `IN` read per table, the other lookups one statement each, joined into queries that
//!    fit `max_allowed_packet` ([`crate::size`]), the first of them carrying the previous
//!    level's writes in front); then the target's binlog position, and the tombstones of keys
//!    found missing and the claims of the incoming unique values ([`tombstone`]), which count
//!    once the local-delete reader ([`local`]) has passed that position: read with the
//!    lookups for the keys likely missing when the reader had passed it already, after them
//!    otherwise;
//! 2. **decide** ([`decide`], pure): which image wins, what to write, and what was lost;
//! 3. **write**: the outcome with plain statements (`INSERT` of a row that was missing,
//!    `UPDATE` / `DELETE` of a locked row, `DELETE` of rows that hold a unique value the
//!    winner takes, tombstones of deleted rows; rendered in `sql.rs`), writes of one kind and
//!    table merged into multi-row statements where their order allows and the level's
//!    tombstones written last (`merge.rs`), each data statement followed by its warning count
//!    ([`crate::strict`]);
//! 4. **verify** (`verify.rs`): a row written at a key that was missing, or holding unique
//!    values, is checked once more against the tombstones and claims read after the write
//!    (with the next level's read, or before the commit after the last level).
//!
//! The caller then adds one `<meta>.conflict` row per lost write ([`record_sql`]) and commits
//! them with the checkpoint.
//!
//! Atomicity against local writers: rows that exist are locked by the read until commit. A
//! row that was missing is written with a plain `INSERT`, which fails with a duplicate-key
//! error if a local writer inserted the same key (or unique value) meanwhile; the whole share
//! is then rolled back and decided again from fresh reads. A local writer that created and
//! removed the key (or held the value) between the read and the write leaves a tombstone or
//! claim that the verify step finds; that too decides the share again. The session runs at
//! READ COMMITTED, so the reads take no gap locks that would make parallel appliers deadlock.
//!
//! Rules and examples: docs/conflicts.md.

pub mod canon;
pub mod decide;
pub mod keylock;
mod levels;
pub mod local;
mod merge;
mod net;
mod read;
mod sql;
pub mod tombstone;
mod verify;

use drc_core::change::RowChange;
use drc_core::schema::{SqlType, TableSchema};

use crate::LinkError;
use decide::Record;

pub use levels::run_levels;
pub use verify::Deferred;

/// Schemas the unit tests of the conflict modules share.
#[cfg(test)]
pub(crate) mod fixtures {
    use drc_core::schema::{ColumnSchema, SqlType, TableSchema};

    /// A signed column without collation.
    pub(crate) fn col(name: &str, sql_type: SqlType) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            sql_type,
            unsigned: false,
            collation: None,
        }
    }

    /// `shop.t (id INT PRIMARY KEY, version BIGINT)`.
    pub(crate) fn table() -> TableSchema {
        TableSchema {
            database: "shop".into(),
            table: "t".into(),
            columns: vec![col("id", SqlType::Int), col("version", SqlType::BigInt)],
            primary_key: vec![0],
            unique_keys: vec![],
            unique_keys_known: true,
        }
    }
}

/// A change of a last-writer-wins table, with the ordinal of its version column.
#[derive(Debug, Clone, Copy)]
pub struct LwwChange<'a> {
    /// The change.
    pub change: &'a RowChange,
    /// Ordinal of the version column in the change's table.
    pub version: usize,
    /// Part of a folded chain: another change of the level has the same primary key
    /// ([`crate::plan::lww_levels`], [`foldable`]).
    pub chained: bool,
}

/// Whether a table's changes may fold into chains ([`crate::plan::lww_levels`]): its only
/// unique key is an integer primary key, so a key's identity is its values' (no collation), a
/// change touches one key, and the level's writes at distinct keys merge in any order
/// (`merge.rs`).
pub fn foldable(t: &TableSchema) -> bool {
    merge::updates_merge(t) && sql::integer_key(t)
}

/// The version column of `t` under `conflict`: `Ok(Some(ordinal))` for last-writer-wins,
/// `Ok(None)` for source wins (no column configured, or the table lacks it), and an error when
/// the column's type cannot order versions.
pub fn version_column(
    conflict: &drc_config::Conflict,
    t: &TableSchema,
) -> Result<Option<usize>, LinkError> {
    let Some(name) = conflict.version_column(&t.database, &t.table) else {
        return Ok(None);
    };
    let Some(i) = t
        .columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
    else {
        return Ok(None);
    };
    match t.columns[i].sql_type {
        SqlType::TinyInt
        | SqlType::SmallInt
        | SqlType::MediumInt
        | SqlType::Int
        | SqlType::BigInt
        | SqlType::Decimal
        | SqlType::Date
        | SqlType::DateTime
        | SqlType::Timestamp => Ok(Some(i)),
        other => Err(LinkError::Setup(format!(
            "table {}: version column {name} is of type {other:?}, which cannot order versions; \
             last-writer-wins needs an integer, DECIMAL, DATE, DATETIME or TIMESTAMP column \
             (set [conflict.tables] \"{}\" = \"\" for source wins, or name another column)",
            t.qualified_name(),
            t.qualified_name()
        ))),
    }
}

/// The statement that records one lost write in `<meta>.conflict`
/// ([`drc_meta::conflict`]).
pub fn record_sql(meta: &str, link: &str, r: &Record) -> String {
    drc_meta::conflict::insert_statement(
        meta,
        &drc_meta::conflict::ConflictRow {
            link: link.to_string(),
            table: r.table.clone(),
            key: r.key.to_string(),
            rule: r.rule.as_str().to_string(),
            resolution: r.resolution.as_str().to_string(),
            loser: r.loser.to_string(),
            winner: r.winner.to_string(),
            at: String::new(),
        },
    )
}
