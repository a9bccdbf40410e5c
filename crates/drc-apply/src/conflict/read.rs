//! The **read** step of conflict resolution (protocol in [`super`]): for one dependency level,
//! the locking lookups of the target rows its changes touch, the target's binlog position
//! after them, and the tombstones and claims at the keys that need them.
//!
//! Ordering, each point needed by the one after it:
//!
//! 1. The caller has flushed every earlier statement (the previous level's writes) on its own
//!    before the lookups are sent, so each lookup query holds `SELECT`s only and returns one
//!    result set per statement ([`select_sets`]). (Reading writes' results and `SELECT`s from
//!    one multi-statement query with mysql_async 0.37's `collect()` + `is_empty()` can end
//!    early and hide a later statement's error.)
//! 2. The lookups lock the rows found (`FOR UPDATE`) until the apply transaction commits.
//! 3. The position is read *after* the lookups (the last statement of their last query):
//!    every local delete that removed a row found missing is at or before it.
//! 4. The tombstones and claims are read only once the local-delete reader has passed that
//!    position ([`Progress::wait_covers`]), so each such delete has its tombstone committed.
//!    The same read fetches the keys of the previous level's writes that
//!    [`super::verify`] checks again.
//!
//! Every query fits the target's `max_allowed_packet` ([`crate::size`]): reads are split into
//! several queries of the one transaction. Errors: a failed statement is
//! [`LinkError::Target`]; a result count that does not match the reads sent is
//! [`LinkError::ConflictRead`] (transient: the share is decided again); a position that does
//! not parse is [`LinkError::TargetPosition`].

use std::collections::HashMap;

use drc_core::change::Image;
use drc_core::position::Position;
use drc_core::schema::TableSchema;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::canon::Canon;
use super::decide::{self, claim_lookups, lookups, tomb_lookups, Lookup, Row, Tomb};
use super::merge::table_id;
use super::sql::{in_lookup_sqls, integer_key, lookup_sql};
use super::tombstone::{self, Progress};
use super::verify::Unverified;
use super::LwwChange;
use crate::LinkError;

/// Tombstones and claims by `(db.table, key hash)`: of both tombstone tables, the higher rank.
pub(super) type Marks = HashMap<(String, [u8; 32]), Tomb>;

/// What the lookups found for one change.
#[derive(Debug)]
pub(super) struct Found {
    /// The rows of each of the change's [`lookups`], in that order.
    pub(super) rows: Vec<Vec<Row>>,
    /// Per key of [`tomb_lookups`], in that order: the key's primary-key hash when its row is
    /// missing (its tombstone then takes part in the decision), `None` when the row exists.
    pub(super) missing: Vec<Option<[u8; 32]>>,
    /// Per key of [`tomb_lookups`], in that order: the primary-key hash whose tombstone is read
    /// and takes part in the decision. The key of `missing`, or for a change of a folded chain
    /// ([`LwwChange::chained`]) its key whether the row exists or not: an earlier change of the
    /// chain may delete the row, and a later one then decides against the tombstone that was
    /// there before as well as the one the delete raised.
    pub(super) tomb_at: Vec<Option<[u8; 32]>>,
    /// The change's claim keys ([`claim_lookups`]).
    pub(super) claims: Vec<[u8; 32]>,
}

/// What the read step returns for one level.
#[derive(Debug)]
pub(super) struct LevelRead {
    /// One entry per change of the level, in order.
    pub(super) found: Vec<Found>,
    /// The target's position after the lookups (`None` without a local-delete reader, or when
    /// the target never wrote anything).
    pub(super) position: Option<Position>,
    /// The tombstones and claims read: at the keys found missing, at the level's claim keys,
    /// and at the `recheck` keys. Empty when none of these was asked for.
    pub(super) marks: Marks,
    /// False when the recheck keys were not read: no local transaction committed since
    /// the previous level's lookups ([`read_level`]).
    pub(super) rechecked: bool,
}

/// The read step: sends the lookups of `level` (after the caller flushed earlier statements),
/// reads the target's position, and — when a key was found missing, a change claims unique
/// values, or `recheck` (the previous level's writes to verify) holds keys — waits for the
/// local-delete reader to pass that position and reads the tombstones and claims.
/// `limit` bounds each query ([`crate::size::Joiner::limit`]).
///
/// When no local transaction committed between the position read before the previous level's
/// writes ([`Unverified::before`]) and this read's position
/// ([`Progress::no_local_commit_between`]), no local writer can have created and removed a
/// rechecked key or held a rechecked value meanwhile, so the recheck keys are not read
/// ([`LevelRead::rechecked`] is false), as [`super::verify::Unverified::finish`] does after
/// the last level.
pub(super) async fn read_level(
    conn: &mut Conn,
    meta: &str,
    limit: usize,
    max_allowed_packet: u64,
    level: &[LwwChange<'_>],
    progress: Option<&mut Progress>,
    recheck: &Unverified,
) -> Result<LevelRead, LinkError> {
    // The position query rides at the end of the lookups' last query: the server runs it
    // after them (point 3), and it costs no round trip of its own.
    let position_query = progress.as_deref().map(|p| p.position_query);
    let (found, position_set) =
        read_rows(conn, level, limit, max_allowed_packet, position_query).await?;
    let position = match (progress.as_deref(), position_set) {
        (Some(p), Some(rows)) => {
            let text = rows
                .first()
                .and_then(|r| r.get_opt::<Option<String>, _>(0))
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_default();
            parse_position(p.position_query, &text)?
        }
        _ => None,
    };
    let quiet = match (progress.as_deref(), &recheck.before, &position) {
        (Some(p), Some(a), Some(b)) => p.no_local_commit_between(a, b),
        _ => false,
    };
    let recheck = if quiet { Vec::new() } else { recheck.keys() };
    let any_missing = found.iter().any(|f| f.tomb_at.iter().any(Option::is_some));
    let any_claims = found.iter().any(|f| !f.claims.is_empty());
    let mut marks = Marks::new();
    if any_missing || any_claims || !recheck.is_empty() {
        if let Some(p) = progress {
            wait_for_reader(p, position.as_ref()).await?;
        }
        let mut keys = recheck;
        for (lc, f) in level.iter().zip(&found) {
            for h in f.tomb_at.iter().flatten().chain(&f.claims) {
                keys.push((lc.change.table.qualified_name(), *h));
            }
        }
        marks = read_tombstones(conn, meta, &keys, limit).await?;
    }
    Ok(LevelRead {
        found,
        position,
        marks,
        rechecked: !quiet,
    })
}

/// The lookups of a level, grouped for reading: primary-key lookups of integer keys are
/// batched into `IN` reads per table; the others (unique keys, other key types, where the
/// server's collation decides equality) are read one statement each.
struct LookupPlan<'a> {
    /// Per change, its lookups ([`lookups`]).
    per_change: Vec<Vec<Lookup<'a>>>,
    /// Per batched table, the images whose primary keys are read.
    groups: Vec<(&'a TableSchema, Vec<&'a Image>)>,
    /// A table's index in `groups`, by the table's address.
    group_of: HashMap<usize, usize>,
    /// The single lookups' reads, in the order of `per_change`.
    singles: Vec<String>,
}

impl<'a> LookupPlan<'a> {
    fn new(level: &[LwwChange<'a>]) -> Self {
        let per_change: Vec<Vec<Lookup<'a>>> = level.iter().map(|lc| lookups(lc.change)).collect();
        let mut groups: Vec<(&'a TableSchema, Vec<&'a Image>)> = Vec::new();
        let mut group_of: HashMap<usize, usize> = HashMap::new();
        let mut singles: Vec<String> = Vec::new();
        for (lc, ls) in level.iter().zip(&per_change) {
            let t: &'a TableSchema = &lc.change.table;
            for l in ls {
                match l {
                    Lookup::Pk(img) if integer_key(t) => {
                        let g = *group_of.entry(table_id(t)).or_insert_with(|| {
                            groups.push((t, Vec::new()));
                            groups.len() - 1
                        });
                        groups[g].1.push(img);
                    }
                    _ => singles.push(lookup_sql(t, l)),
                }
            }
        }
        LookupPlan {
            per_change,
            groups,
            group_of,
            singles,
        }
    }
}

/// Reads the rows of every lookup of `level` and maps them back to their changes; with
/// `last`, also runs that `SELECT` after every lookup and returns its rows.
async fn read_rows(
    conn: &mut Conn,
    level: &[LwwChange<'_>],
    limit: usize,
    max_allowed_packet: u64,
    last: Option<&str>,
) -> Result<(Vec<Found>, Option<Vec<mysql_async::Row>>), LinkError> {
    let plan = LookupPlan::new(level);
    // One read per `IN` chunk of a group (`Some(group)`), then one per single lookup.
    let mut reads: Vec<String> = Vec::new();
    let mut read_group: Vec<Option<usize>> = Vec::new();
    for (g, (t, imgs)) in plan.groups.iter().enumerate() {
        for r in in_lookup_sqls(t, imgs, limit) {
            reads.push(r);
            read_group.push(Some(g));
        }
    }
    read_group.extend(std::iter::repeat_n(None, plan.singles.len()));
    reads.extend(plan.singles);
    if let Some(q) = last {
        reads.push(q.to_string());
    }
    let mut sets = read_all(conn, &reads, limit, max_allowed_packet).await?;
    drop(reads);
    let last_set = match last {
        Some(_) if sets.len() == read_group.len() + 1 => sets.pop(),
        Some(_) => {
            return Err(LinkError::ConflictRead(format!(
                "expected {} lookup results and the position from the target and got {} results",
                read_group.len(),
                sets.len()
            )))
        }
        None => None,
    };
    if sets.len() != read_group.len() {
        return Err(LinkError::ConflictRead(format!(
            "expected {} lookup results from the target and got {}",
            read_group.len(),
            sets.len()
        )));
    }
    let mut by_key: Vec<HashMap<[u8; 32], Row>> = vec![HashMap::new(); plan.groups.len()];
    let mut single_sets = Vec::new();
    for (g, rows) in read_group.iter().zip(sets) {
        match g {
            Some(g) => {
                let t = plan.groups[*g].0;
                by_key[*g].extend(rows_of(t, rows).into_iter().map(|r| (r.pk_hash(t), r)));
            }
            None => single_sets.push(rows),
        }
    }
    let mut sets = single_sets.into_iter();
    let mut out = Vec::with_capacity(level.len());
    for (lc, ls) in level.iter().zip(&plan.per_change) {
        let t = &*lc.change.table;
        let mut rows: Vec<Vec<Row>> = Vec::with_capacity(ls.len());
        for l in ls {
            match l {
                Lookup::Pk(img) if integer_key(t) => {
                    let g = plan.group_of.get(&table_id(t)).copied().unwrap_or(0);
                    let key = decide::image_pk_hash(t, img);
                    rows.push(
                        by_key
                            .get(g)
                            .and_then(|m| m.get(&key))
                            .cloned()
                            .into_iter()
                            .collect(),
                    );
                }
                _ => rows.push(sets.next().map(|s| rows_of(t, s)).unwrap_or_default()),
            }
        }
        let mut missing = Vec::new();
        let mut tomb_at = Vec::new();
        for (i, img) in tomb_lookups(lc.change) {
            let gone = rows.get(i).is_some_and(|r| r.is_empty());
            let key = (gone || lc.chained).then(|| decide::image_pk_hash(t, img));
            missing.push(key.filter(|_| gone));
            tomb_at.push(key);
        }
        out.push(Found {
            rows,
            missing,
            tomb_at,
            claims: claim_lookups(lc.change),
        });
    }
    Ok((out, last_set))
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

/// Waits until the local-delete reader has passed `position` (the target's, as read). No
/// position means nothing was ever written there, so no local write either.
pub(super) async fn wait_for_reader(
    p: &mut Progress,
    position: Option<&Position>,
) -> Result<(), LinkError> {
    match position {
        Some(target) => p.wait_covers(target).await,
        None => Ok(()),
    }
}

/// The target's position (the local-delete reader's position query), parsed once here:
/// `None` when the server has none (NULL or empty: nothing was ever written there), and
/// [`LinkError::TargetPosition`] when its text does not parse.
pub(super) async fn read_position(
    conn: &mut Conn,
    p: &Progress,
) -> Result<Option<Position>, LinkError> {
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
pub(super) async fn read_tombstones(
    conn: &mut Conn,
    meta: &str,
    keys: &[(String, [u8; 32])],
    limit: usize,
) -> Result<Marks, LinkError> {
    let mut out = Marks::new();
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
            t.raise_in(&mut out, key);
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
