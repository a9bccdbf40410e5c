//! The **read** step of conflict resolution (protocol in [`super`]): for one dependency level,
//! the locking lookups of the target rows its changes touch, the target's binlog position
//! after them, and the tombstones and claims at the keys that need them.
//!
//! Ordering, each point needed by the one after it:
//!
//! 1. What the caller still holds (the transaction's start, the previous level's writes) runs
//!    first, in the lookups' query: the server runs the statements of a query in order and
//!    stops at the first that fails, and [`crate::query::select_sets`] returns that error
//!    whichever statement it was.
//! 2. The lookups lock the rows found (`FOR UPDATE`) until the apply transaction commits.
//! 3. The position is read *after* the lookups (in their last query): every local delete that
//!    removed a row found missing is at or before it.
//! 4. The tombstones and claims count only when read after the local-delete reader has passed
//!    that position ([`Progress::passed`]), so each such delete has its tombstone committed.
//!    They are *guessed* and read in the lookups' query too, after the position
//!    ([`guessed_keys`]: the keys of inserts, of folded chains, and the claims); that read
//!    counts when the reader had already passed the position before the query was sent.
//!    Otherwise, and for keys found missing that were not guessed, they are read after the
//!    lookups, once the reader has passed the position ([`Progress::wait_covers`]). That read
//!    also fetches the keys of the previous level's writes that [`super::verify`] checks
//!    again. On a target without local writes (or whose reader keeps up), a level is then one
//!    round trip of reads.
//!
//! Every query fits the target's `max_allowed_packet` ([`crate::size`]): reads are split into
//! several queries of the one transaction. Errors: a failed statement is
//! [`LinkError::Target`]; a result count that does not match the reads sent is
//! [`LinkError::ConflictRead`] (transient: the share is decided again); a position that does
//! not parse is [`LinkError::TargetPosition`].

use std::collections::{HashMap, HashSet};

use drc_core::change::{ChangeKind, Image};
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
use crate::query::run_then_read;
use crate::size::Joiner;
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

/// The read step: runs what `pending` holds, sends the lookups of `level`, reads the target's
/// position and the guessed tombstones and claims, and — when a key was found missing, a
/// change claims unique values, or `recheck` (the previous level's writes to verify) holds
/// keys, and the guess does not cover them — waits for the local-delete reader to pass that
/// position and reads the rest (module docs, point 4). `pending`'s limit bounds each query
/// ([`crate::size::Joiner::limit`]).
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
    pending: &mut Joiner,
    level: &[LwwChange<'_>],
    progress: Option<&mut Progress>,
    recheck: &Unverified,
) -> Result<LevelRead, LinkError> {
    let limit = pending.limit();
    // The reader's progress before anything is sent: a tombstone read in the lookups' query
    // is complete when the reader had already passed the position read there (point 4).
    let reader_before = progress.as_deref().map(Progress::reader);
    let guessed = guessed_keys(level);
    // After the lookups, in the same query: the position (point 3), then the guessed
    // tombstones and claims.
    let mut tail: Vec<String> = progress
        .as_deref()
        .map(|p| p.position_query.to_string())
        .into_iter()
        .collect();
    tail.extend(tombstone_reads(meta, &guessed, limit));
    let (found, tail_sets) = read_rows(conn, pending, level, &tail).await?;
    let mut tail_sets = tail_sets.into_iter();
    let position = match progress.as_deref() {
        Some(p) => position_of(p, tail_sets.next().unwrap_or_default())?,
        None => None,
    };
    let quiet = match (progress.as_deref(), &recheck.before, &position) {
        (Some(p), Some(a), Some(b)) => p.no_local_commit_between(a, b),
        _ => false,
    };
    let mut needed = if quiet { Vec::new() } else { recheck.keys() };
    for (lc, f) in level.iter().zip(&found) {
        for h in f.tomb_at.iter().flatten().chain(&f.claims) {
            needed.push((lc.change.table.qualified_name(), *h));
        }
    }
    let mut marks = Marks::new();
    if !needed.is_empty() {
        let complete = match (progress.as_deref(), &position) {
            (Some(p), Some(at)) => reader_before.flatten().is_some_and(|r| p.passed(&r, at)),
            // No reader: only drc's own tombstones count, all committed before the read. No
            // position: nothing was ever written on the target, so no local delete either.
            _ => true,
        };
        if complete {
            for set in tail_sets {
                raise_rows(&mut marks, &set);
            }
            let guessed: HashSet<&(String, [u8; 32])> = guessed.iter().collect();
            needed.retain(|k| !guessed.contains(k));
        } else if let Some(p) = progress {
            wait_for_reader(p, position.as_ref()).await?;
        }
        if !needed.is_empty() {
            for (key, t) in read_tombstones(conn, meta, &needed, limit).await? {
                t.raise_in(&mut marks, key);
            }
        }
    }
    Ok(LevelRead {
        found,
        position,
        marks,
        rechecked: !quiet,
    })
}

/// The tombstone and claim keys the decisions of `level` will most likely need, read with
/// the lookups before it is known which keys are missing: the key of each insert, the new key
/// of each update that changes it, every key of a folded chain's change
/// ([`Found::tomb_at`]), and every claim. Deletes and updates in place expect their row to
/// exist; when it is missing after all, its tombstone is read after the lookups.
fn guessed_keys(level: &[LwwChange<'_>]) -> Vec<(String, [u8; 32])> {
    let mut out = Vec::new();
    for lc in level {
        let c = lc.change;
        let t = &*c.table;
        let name = t.qualified_name();
        for (i, img) in tomb_lookups(c) {
            let likely_missing = lc.chained
                || match c.kind {
                    ChangeKind::Insert => true,
                    ChangeKind::Update => i == 1,
                    ChangeKind::Delete => false,
                };
            if likely_missing {
                out.push((name.clone(), decide::image_pk_hash(t, img)));
            }
        }
        for h in claim_lookups(c) {
            out.push((name.clone(), h));
        }
    }
    out
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

/// Runs what `pending` holds, then reads the rows of every lookup of `level` and maps them
/// back to their changes; also runs the `tail` reads after every lookup and returns their
/// result sets, in order.
async fn read_rows(
    conn: &mut Conn,
    pending: &mut Joiner,
    level: &[LwwChange<'_>],
    tail: &[String],
) -> Result<(Vec<Found>, Vec<Vec<mysql_async::Row>>), LinkError> {
    let limit = pending.limit();
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
    reads.extend(tail.iter().cloned());
    let what = if pending.is_empty() {
        "reading target rows for conflict resolution"
    } else {
        "applying changes and reading target rows for conflict resolution"
    };
    let prefix = pending.take();
    let mut sets = run_then_read(
        conn,
        prefix,
        &reads,
        limit,
        pending.max_allowed_packet(),
        what,
    )
    .await?;
    drop(reads);
    if sets.len() != read_group.len() + tail.len() {
        return Err(LinkError::ConflictRead(format!(
            "expected {} lookup results and {} more from the target and got {} results",
            read_group.len(),
            tail.len(),
            sets.len()
        )));
    }
    let tail_sets = sets.split_off(read_group.len());
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
    Ok((out, tail_sets))
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

/// Runs what `pending` holds and then reads the target's position (the local-delete reader's
/// position query), in one query when it fits ([`position_of`]).
pub(super) async fn position_after(
    conn: &mut Conn,
    pending: &mut Joiner,
    p: &Progress,
) -> Result<Option<Position>, LinkError> {
    let what = if pending.is_empty() {
        "reading the target's position"
    } else {
        "applying changes and reading the target's position"
    };
    let prefix = pending.take();
    let sets = run_then_read(
        conn,
        prefix,
        &[p.position_query.to_string()],
        pending.limit(),
        pending.max_allowed_packet(),
        what,
    )
    .await?;
    position_of(p, sets.into_iter().next().unwrap_or_default())
}

/// The position in the rows of a position query, parsed once here: `None` when the server
/// has none (NULL or empty: nothing was ever written there), and
/// [`LinkError::TargetPosition`] when its text does not parse.
fn position_of(p: &Progress, rows: Vec<mysql_async::Row>) -> Result<Option<Position>, LinkError> {
    let text = rows
        .first()
        .and_then(|r| r.get_opt::<Option<String>, _>(0))
        .and_then(Result::ok)
        .flatten()
        .unwrap_or_default();
    parse_position(p.position_query, &text)
}

/// The position in a position query's answer `text` (see [`position_of`]).
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

/// The reads of the tombstones at `keys` (both tables, [`tombstone::read_many_sql`]), each
/// at most `limit` bytes.
fn tombstone_reads(meta: &str, keys: &[(String, [u8; 32])], limit: usize) -> Vec<String> {
    // A key costs its hash in both tables' `IN` lists, at most its table's clause twice.
    let cost = |(t, _): &(String, [u8; 32])| 2 * (t.len() + 120);
    crate::size::chunks(keys, 512 + meta.len() * 2, limit, cost)
        .into_iter()
        .filter_map(|chunk| tombstone::read_many_sql(meta, chunk))
        .collect()
}

/// Adds the tombstones of a [`tombstone_reads`] result to `marks`: of the applied and the
/// local table, the higher rank counts.
fn raise_rows(marks: &mut Marks, rows: &[mysql_async::Row]) {
    for (key, t) in rows.iter().filter_map(|r| {
        tombstone::from_many_row(
            &text(r, 0).unwrap_or_default(),
            &text(r, 1).unwrap_or_default(),
            &text(r, 2).unwrap_or_default(),
            &text(r, 3).unwrap_or_default(),
        )
    }) {
        t.raise_in(marks, key);
    }
}

/// The tombstones at `keys`, in reads of at most `limit` bytes.
pub(super) async fn read_tombstones(
    conn: &mut Conn,
    meta: &str,
    keys: &[(String, [u8; 32])],
    limit: usize,
) -> Result<Marks, LinkError> {
    let mut out = Marks::new();
    for q in tombstone_reads(meta, keys, limit) {
        let rows: Vec<mysql_async::Row> = conn
            .query(q)
            .await
            .map_err(|e| LinkError::target("reading tombstones", e))?;
        raise_rows(&mut out, &rows);
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
