//! Conflict resolution: last-writer-wins on a version column, so that centers that wrote the
//! same row concurrently converge, and every lost write is recorded.
//!
//! A table uses last-writer-wins when it has the version column that `[conflict]` names for it
//! (default `updated_at`); other tables keep "source wins" (the plain rewrite of [`crate::sql`]).
//! For a last-writer-wins table the applier, inside the apply transaction:
//!
//! 1. reads the target rows each change touches — by primary key and by every unique key of
//!    the incoming row — with `SELECT .. FOR UPDATE` (one round trip per dependency level of
//!    the share: the changes of a level touch disjoint keys);
//! 2. decides each change in Rust ([`decide`]): which image wins, and what was lost;
//! 3. writes the outcome with plain statements (`INSERT` of a row that was missing, `UPDATE`
//!    / `DELETE` of a locked row), plus one `<meta>.conflict` row per lost write, and commits
//!    them with the checkpoint.
//!
//! Atomicity against local writers: rows that exist are locked by the read until commit. A
//! row that was missing is written with a plain `INSERT`, which fails with a duplicate-key
//! error if a local writer inserted the same key (or unique value) meanwhile; the whole share
//! is then rolled back and decided again from fresh reads. The session runs at READ COMMITTED,
//! so the reads take no gap locks that would make parallel appliers deadlock.
//!
//! Rules and examples: docs/conflicts.md.

pub mod canon;
pub mod decide;
pub mod keylock;
pub mod local;
mod sql;
pub mod tombstone;

use std::collections::HashMap;

use drc_core::change::{Image, RowChange};
use drc_core::position::Position;
use drc_core::schema::{SqlType, TableSchema};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::size::Joiner;
use crate::sql::{ident, quoted};
use crate::LinkError;
use canon::Canon;
use decide::{
    claim_hash, claim_lookups, decide, lookups, tomb_lookups, Lookup, Overlay, Record, Row, Tomb,
    Write,
};
use sql::{in_lookup_sqls, integer_key, lookup_sql, write_sql};
use tombstone::Progress;

/// A change of a last-writer-wins table, with the ordinal of its version column.
#[derive(Debug, Clone, Copy)]
pub struct LwwChange<'a> {
    /// The change.
    pub change: &'a RowChange,
    /// Ordinal of the version column in the change's table.
    pub version: usize,
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

/// The statement that records one lost write in `<meta>.conflict`.
pub fn record_sql(meta: &str, link: &str, r: &Record) -> String {
    let mut q = String::from("INSERT INTO ");
    ident(&mut q, meta);
    q.push_str(
        ".`conflict` (`link`, `db_table`, `row_key`, `rule`, `resolution`, `loser`, `winner`) VALUES (",
    );
    for (n, s) in [
        link.to_string(),
        r.table.clone(),
        r.key.to_string(),
        r.rule.as_str().to_string(),
        r.resolution.as_str().to_string(),
        r.loser.to_string(),
        r.winner.to_string(),
    ]
    .iter()
    .enumerate()
    {
        if n > 0 {
            q.push_str(", ");
        }
        quoted(&mut q, s);
    }
    q.push(')');
    q
}

/// Reads one lookup's result rows in canonical form.
fn rows_of(t: &TableSchema, rows: Vec<mysql_async::Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| {
            Row::new(
                t.columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let bytes = match r.as_ref(i) {
                            Some(mysql_async::Value::Bytes(b)) => Some(b.as_slice()),
                            _ => None,
                        };
                        Canon::from_text(bytes, c.sql_type)
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Sends `q` and returns the rows of every result set that has columns (the `SELECT`s), in
/// order; statements without a result set (the writes) are skipped.
async fn select_sets(conn: &mut Conn, q: String) -> Result<Vec<Vec<mysql_async::Row>>, LinkError> {
    let what = "reading target rows for conflict resolution";
    let mut result = conn
        .query_iter(q)
        .await
        .map_err(|e| LinkError::target(what, e))?;
    let mut sets = Vec::new();
    loop {
        let is_select = !result.columns_ref().is_empty();
        let rows: Vec<mysql_async::Row> = result
            .collect()
            .await
            .map_err(|e| LinkError::target(what, e))?;
        if is_select {
            sets.push(rows);
        }
        if result.is_empty() {
            break;
        }
    }
    Ok(sets)
}

/// Sends `reads` (each a `SELECT`) in queries of at most `limit` bytes and returns their
/// result sets, one per read, in order.
async fn read_all(
    conn: &mut Conn,
    reads: &[String],
    limit: usize,
    max_allowed_packet: u64,
) -> Result<Vec<Vec<mysql_async::Row>>, LinkError> {
    let mut sets = Vec::with_capacity(reads.len());
    for chunk in crate::size::chunks(reads, 0, limit, |r| r.len() + 2) {
        let q = chunk.join(";\n");
        if q.len() > crate::size::budget(max_allowed_packet) {
            return Err(LinkError::StatementTooLarge {
                what: "conflict resolution read",
                bytes: q.len(),
                max_allowed_packet,
            });
        }
        sets.extend(select_sets(conn, q).await?);
    }
    Ok(sets)
}

fn text(r: &mysql_async::Row, i: usize) -> Option<String> {
    match r.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// Runs what `pending` holds (statements already part of the open transaction, possibly
/// none) followed by the locking reads of each level, deciding each level from its reads.
/// A key found missing is decided with its tombstone, read after the local-delete reader
/// (`progress`) has passed the target position read after the row lookups.
///
/// A missing row is not locked, so a local writer can create and remove the key between the
/// lookup and the insert; its delete's tombstone may then outrank the row inserted. So every
/// insert at a missing key is checked once more after it is sent (with the next level's
/// tombstone read, or before the commit for the last level): its tombstone is read again once
/// the reader has passed the position after the insert, and a tombstone that now outranks the
/// row fails the share with a transient error, which decides it again from fresh reads. From
/// the insert on, the row exists and is locked, so no local write can slip in any more.
///
/// Leaves in `pending` the statements still to run (the last level's writes, unless they were
/// sent for that check) and returns every lost write. Every query fits the target's
/// `max_allowed_packet` ([`crate::size`]): reads and writes are split into several queries of
/// the one transaction.
///
/// Each data write is followed by [`crate::strict::COUNT_WARNINGS`]; the caller resets the
/// count before and checks it after ([`crate::strict`]). With `checked` (the share's positions,
/// for the error), each write is instead sent alone and checked, and the first the target
/// refuses or warns about ends the run with [`LinkError::Rejected`]: the diagnosis of a share
/// whose batched run failed.
pub async fn run_levels(
    conn: &mut Conn,
    pending: &mut Joiner,
    levels: &[Vec<LwwChange<'_>>],
    meta: &str,
    mut progress: Option<&mut Progress>,
    checked: Option<&str>,
) -> Result<Vec<Record>, LinkError> {
    let mut records = Vec::new();
    let mut verify: Vec<Written> = Vec::new();
    let mut level_position: Option<Position> = None;
    for level in levels {
        // Primary-key lookups of integer keys are batched into one `IN` read per table; the
        // others (unique keys, other key types, where the server's collation decides) are
        // read one statement each.
        let per_lookups: Vec<Vec<Lookup<'_>>> = level.iter().map(|lc| lookups(lc.change)).collect();
        let mut groups: Vec<(&TableSchema, Vec<&Image>)> = Vec::new();
        let mut group_of: HashMap<usize, usize> = HashMap::new();
        let mut singles: Vec<String> = Vec::new();
        for (lc, ls) in level.iter().zip(&per_lookups) {
            let t = &*lc.change.table;
            for l in ls {
                match l {
                    Lookup::Pk(img) if integer_key(t) => {
                        let g = *group_of
                            .entry(t as *const TableSchema as usize)
                            .or_insert_with(|| {
                                groups.push((t, Vec::new()));
                                groups.len() - 1
                            });
                        groups[g].1.push(img);
                    }
                    _ => {
                        singles.push(lookup_sql(t, l));
                    }
                }
            }
        }
        // The previous level's writes first, on their own: the reads below then return only
        // `SELECT` result sets, one per statement.
        pending.flush(conn).await?;
        let limit = pending.limit();
        let map = pending.max_allowed_packet();
        // One read per `IN` chunk of a group (`Some(group)`), then one per single lookup.
        let mut reads: Vec<String> = Vec::new();
        let mut read_group: Vec<Option<usize>> = Vec::new();
        for (g, (t, imgs)) in groups.iter().enumerate() {
            for r in in_lookup_sqls(t, imgs, limit) {
                reads.push(r);
                read_group.push(Some(g));
            }
        }
        let n_singles = singles.len();
        read_group.extend(std::iter::repeat_n(None, n_singles));
        reads.extend(singles);
        let sets = read_all(conn, &reads, limit, map).await?;
        drop(reads);
        // Read after the row lookups: every local delete that removed a row found missing is
        // at or before this position.
        let position = match progress.as_deref() {
            Some(p) => read_position(conn, p).await?,
            None => None,
        };
        level_position.clone_from(&position);
        if sets.len() != read_group.len() {
            return Err(LinkError::ConflictRead(format!(
                "expected {} lookup results from the target and got {}",
                read_group.len(),
                sets.len()
            )));
        }
        let mut by_key: Vec<HashMap<[u8; 32], Row>> = vec![HashMap::new(); groups.len()];
        let mut single_sets = Vec::with_capacity(n_singles);
        for (g, rows) in read_group.iter().zip(sets) {
            match g {
                Some(g) => {
                    let t = groups[*g].0;
                    by_key[*g].extend(rows_of(t, rows).into_iter().map(|r| (r.pk_hash(t), r)));
                }
                None => single_sets.push(rows),
            }
        }
        let mut sets = single_sets.into_iter();
        // Per change: its lookups' rows, and per tombstone key the key's hash when its row is
        // missing.
        type Missing = Vec<Option<[u8; 32]>>;
        let mut per_change: Vec<(Vec<Vec<Row>>, Missing)> = Vec::with_capacity(level.len());
        for (lc, ls) in level.iter().zip(&per_lookups) {
            let t = &*lc.change.table;
            let mut found: Vec<Vec<Row>> = Vec::with_capacity(ls.len());
            for l in ls {
                match l {
                    Lookup::Pk(img) if integer_key(t) => {
                        let g = group_of
                            .get(&(t as *const TableSchema as usize))
                            .copied()
                            .unwrap_or(0);
                        let key = Row::from_image(t, img).pk_hash(t);
                        found.push(
                            by_key
                                .get(g)
                                .and_then(|m| m.get(&key))
                                .cloned()
                                .into_iter()
                                .collect(),
                        );
                    }
                    _ => found.push(sets.next().map(|s| rows_of(t, s)).unwrap_or_default()),
                }
            }
            let missing = tomb_lookups(lc.change)
                .into_iter()
                .map(|(i, img)| {
                    found
                        .get(i)
                        .is_some_and(|rows| rows.is_empty())
                        .then(|| Row::from_image(t, img).pk_hash(t))
                })
                .collect();
            per_change.push((found, missing));
        }
        let mut tombs: Vec<Vec<Option<Tomb>>> = per_change
            .iter()
            .map(|(_, m)| vec![None; m.len()])
            .collect();
        let any_missing = per_change
            .iter()
            .any(|(_, m)| m.iter().any(Option::is_some));
        let claim_keys: Vec<Vec<[u8; 32]>> =
            level.iter().map(|lc| claim_lookups(lc.change)).collect();
        let mut claims: Vec<Vec<Option<Tomb>>> =
            claim_keys.iter().map(|k| vec![None; k.len()]).collect();
        let any_claims = claim_keys.iter().any(|k| !k.is_empty());
        if any_missing || any_claims || !verify.is_empty() {
            if let Some(p) = progress.as_deref_mut() {
                wait_for_reader(p, position.as_ref()).await?;
            }
            let mut keys: Vec<(String, [u8; 32])> =
                verify.iter().map(|v| (v.table.clone(), v.key)).collect();
            for ((lc, (_, missing)), ck) in level.iter().zip(&per_change).zip(&claim_keys) {
                for h in missing.iter().flatten().chain(ck) {
                    keys.push((lc.change.table.qualified_name(), *h));
                }
            }
            let found = read_tombstones(conn, meta, &keys, limit).await?;
            check_written(&verify, &found)?;
            for ((lc, (_, missing)), t) in level.iter().zip(&per_change).zip(&mut tombs) {
                for (h, slot) in missing.iter().zip(t.iter_mut()) {
                    if let Some(h) = h {
                        *slot = found.get(&(lc.change.table.qualified_name(), *h)).cloned();
                    }
                }
            }
            for ((lc, ck), slots) in level.iter().zip(&claim_keys).zip(&mut claims) {
                for (h, slot) in ck.iter().zip(slots.iter_mut()) {
                    *slot = found.get(&(lc.change.table.qualified_name(), *h)).cloned();
                }
            }
        }
        verify.clear();
        let mut overlay = Overlay::default();
        for (((lc, (found, missing)), tomb), claim) in
            level.iter().zip(per_change).zip(tombs).zip(claims)
        {
            let t = &*lc.change.table;
            let out = decide(lc.change, lc.version, found, tomb, claim, &mut overlay);
            for w in &out.writes {
                let sql = write_sql(meta, t, w);
                if sql.len() > crate::size::budget(map) {
                    let img = lc.change.after.as_ref().or(lc.change.before.as_ref());
                    return Err(LinkError::Rewrite(crate::sql::RewriteError::RowTooLarge {
                        table: t.qualified_name(),
                        key: img.map(|i| crate::sql::key_text(t, i)).unwrap_or_default(),
                        bytes: sql.len(),
                    }));
                }
                let row = match w {
                    Write::Insert(img)
                    | Write::Update(img)
                    | Write::Delete(img)
                    | Write::Evict(img, _) => Some(*img),
                    Write::Tombstone(..) => None,
                };
                match checked {
                    // Diagnosis of a refused share: each write alone, checked.
                    Some(at) => crate::strict::checked_write(conn, t, row, &sql, at).await?,
                    None => {
                        pending
                            .push(conn, &sql, "conflict resolution write")
                            .await?;
                        if matches!(w, Write::Insert(_) | Write::Update(_)) {
                            pending
                                .push(conn, crate::strict::COUNT_WARNINGS, "warning count")
                                .await?;
                        }
                    }
                }
                let (img, inserted) = match w {
                    Write::Insert(img) => (img, true),
                    Write::Update(img) => (img, false),
                    _ => continue,
                };
                if progress.is_none() {
                    continue;
                }
                let row = Row::from_image(t, img);
                let check = |key, claim| Written {
                    claim,
                    table: t.qualified_name(),
                    key,
                    version: row.vals.get(lc.version).cloned().unwrap_or(Canon::Null),
                    hash: row.hash,
                };
                let pk_hash = row.pk_hash(t);
                if inserted && missing.contains(&Some(pk_hash)) {
                    verify.push(check(pk_hash, false));
                }
                for n in 0..t.unique_keys.len() {
                    if let Some(h) = claim_hash(t, n, img) {
                        verify.push(check(h, true));
                    }
                }
            }
            records.extend(out.records);
        }
    }
    if let (false, Some(p)) = (verify.is_empty(), progress) {
        // The last level's writes are checked like the others: sent, then the tombstones and
        // claims read again once the local-delete reader has passed the position after them
        // — unless no local transaction committed since the level's lookups.
        pending.flush(conn).await?;
        let after = read_position(conn, p).await?;
        let quiet = match (&level_position, &after) {
            (Some(a), Some(b)) => p.no_local_commit_between(a, b),
            _ => false,
        };
        if !quiet {
            wait_for_reader(p, after.as_ref()).await?;
            let keys: Vec<(String, [u8; 32])> =
                verify.iter().map(|v| (v.table.clone(), v.key)).collect();
            let found = read_tombstones(conn, meta, &keys, pending.limit()).await?;
            check_written(&verify, &found)?;
        }
    }
    Ok(records)
}

/// A row written at a key that was missing, or holding unique values, to be checked against
/// the key's tombstone or the values' claims once more after the write (see [`run_levels`]).
#[derive(Debug)]
struct Written {
    /// A claim (the row's own rank is fine) rather than a primary-key tombstone (the row
    /// must outrank it).
    claim: bool,
    table: String,
    /// A primary-key hash (tombstone) or a claim hash.
    key: [u8; 32],
    version: Canon,
    hash: [u8; 32],
}

/// Fails (transiently: the share is decided again) when a tombstone read after the inserts
/// outranks a row this share inserted: a local writer created and removed the key between
/// the row lookup and the insert, and its delete's tombstone was not there at the first read.
fn check_written(
    verify: &[Written],
    found: &HashMap<(String, [u8; 32]), Tomb>,
) -> Result<(), LinkError> {
    for v in verify {
        if let Some(t) = found.get(&(v.table.clone(), v.key)) {
            let lost = if v.claim {
                decide::beats_rank(&t.version, &t.hash, &v.version, &v.hash).is_some()
            } else {
                decide::beats_rank(&v.version, &v.hash, &t.version, &t.hash).is_none()
            };
            if lost {
                return Err(LinkError::ConflictRead(format!(
                    "a local write in {} deleted the key or held the unique value while a \
                     write of it was being decided (written version {}, now outranked by {}); \
                     deciding the share again",
                    v.table,
                    tombstone::version_text(&v.version),
                    tombstone::version_text(&t.version)
                )));
            }
        }
    }
    Ok(())
}

/// Waits until the local-delete reader has passed `position` (the target's, as read). No
/// position means nothing was ever written there, so no local write either.
async fn wait_for_reader(p: &mut Progress, position: Option<&Position>) -> Result<(), LinkError> {
    match position {
        Some(target) => p.wait_covers(target).await,
        None => Ok(()),
    }
}

/// The target's position (the local-delete reader's position query), parsed once here:
/// `None` when the server has none (NULL or empty: nothing was ever written there), and
/// [`LinkError::TargetPosition`] when its text does not parse.
async fn read_position(conn: &mut Conn, p: &Progress) -> Result<Option<Position>, LinkError> {
    let text = conn
        .query_first::<Option<String>, _>(p.position_query)
        .await
        .map_err(|e| LinkError::target("reading the target's position", e))?
        .flatten()
        .unwrap_or_default();
    parse_position(p.position_query, &text)
}

/// The position in a position query's answer `text` (see [`read_position`]).
fn parse_position(query: &'static str, text: &str) -> Result<Option<Position>, LinkError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|source| LinkError::TargetPosition {
            query,
            text: text.to_string(),
            source,
        })
}

/// The tombstones at `keys`, in reads of at most `limit` bytes.
async fn read_tombstones(
    conn: &mut Conn,
    meta: &str,
    keys: &[(String, [u8; 32])],
    limit: usize,
) -> Result<HashMap<(String, [u8; 32]), Tomb>, LinkError> {
    let mut out: HashMap<(String, [u8; 32]), Tomb> = HashMap::new();
    // A key costs its hash in both tables' `IN` lists, at most its table's clause twice.
    let cost = |(t, _): &(String, [u8; 32])| 2 * (t.len() + 120);
    for chunk in crate::size::chunks(keys, 512 + meta.len() * 2, limit, cost) {
        let Some(q) = tombstone::read_many_sql(meta, chunk) else {
            continue;
        };
        let rows: Vec<mysql_async::Row> = conn
            .query(q)
            .await
            .map_err(|e| LinkError::target("reading tombstones", e))?;
        for (key, t) in rows.iter().filter_map(|r| {
            tombstone::from_many_row(
                &text(r, 0).unwrap_or_default(),
                &text(r, 1).unwrap_or_default(),
                &text(r, 2).unwrap_or_default(),
                &text(r, 3).unwrap_or_default(),
            )
        }) {
            // The applied and the local table: the higher rank counts.
            match out.get(&key) {
                Some(o)
                    if decide::beats_rank(&t.version, &t.hash, &o.version, &o.hash).is_none() => {}
                _ => {
                    out.insert(key, t);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_positions_parse_once_and_empty_means_none() {
        let q = "SELECT @@gtid_binlog_pos";
        assert_eq!(parse_position(q, "").expect("empty"), None);
        assert_eq!(parse_position(q, " \n").expect("blank"), None);
        assert_eq!(
            parse_position(q, "0-1-5,1-2-7").expect("maria"),
            Some("0-1-5,1-2-7".parse().expect("position"))
        );
        let mysql = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n\
                     4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3";
        assert!(matches!(
            parse_position(q, mysql),
            Ok(Some(Position::MysqlGtid(_)))
        ));
        match parse_position(q, "not a position") {
            Err(LinkError::TargetPosition { query, text, .. }) => {
                assert_eq!((query, text.as_str()), (q, "not a position"));
            }
            other => panic!("expected a TargetPosition error, got {other:?}"),
        }
    }
}
