//! [`run_levels`]: the last-writer-wins changes of a share, one dependency level after another,
//! each in the four steps of the protocol in [`super`]: [`super::read`], [`decide_level`],
//! [`write_level`] (multi-row statements, [`super::merge`]), and [`super::verify`] (of the level's writes, done with the next level's
//! read or, after the last level, before the commit).

use drc_core::schema::TableSchema;
use mysql_async::Conn;

use super::decide::{decide, Outcome, Overlay, Record, Write};
use super::merge::{free_tables, table_id, updates_merge, Kind, Merger};
use super::net::{net_writes, ChangeWrites};
use super::read::{read_level, Found, Marks};
use super::sql::write_sql;
use super::tombstone::Progress;
use super::verify::{rechecks, Deferred, Unverified, Written};
use super::LwwChange;
use crate::size::Joiner;
use crate::LinkError;

/// Runs what `pending` holds (statements already part of the open transaction, possibly
/// none) followed by each level of `levels` in four steps:
///
/// 1. **read** (`read_level`): in one query after what `pending` holds (the previous level's
///    writes), the locking lookups, the target position after them and the guessed tombstones
///    and claims; then, unless the guess covers them and the local-delete reader (`progress`)
///    had passed that position before the query, the tombstones of the keys found missing,
///    the claims of the incoming unique values, and the keys of the previous level's writes;
/// 2. **verify** the previous level's writes against what that read found
///    (`Unverified::check`), unless no local transaction committed since that level's
///    lookups (then nothing local can have slipped in between);
/// 3. **decide** (`decide_level`, pure);
/// 4. **write** (`write_level`): the decided writes into `pending`, noting which of them
///    must be verified.
///
/// The last level's writes are verified before returning (`Unverified::finish`), unless no
/// local transaction committed since its lookups.
///
/// Leaves in `pending` the statements still to run (the last level's writes, unless they were
/// sent for that check) and returns every lost write. Without `checked`, on MariaDB the
/// check of the last level's writes may be left to a guard pushed after them
/// ([`Unverified::finish`]): the returned [`Deferred`] is then settled by the caller if its
/// commit query trips the guard. Every query fits the target's
/// `max_allowed_packet` ([`crate::size`]): reads and writes are split into several queries of
/// the one transaction.
///
/// Each data write is followed by [`crate::strict::CHECK_WARNINGS`], which fails the query
/// at a write that left a warning ([`crate::strict`]). With `checked` (the share's positions,
/// for the error), each write is instead sent alone and checked, and the first the target
/// refuses or warns about ends the run with [`LinkError::Rejected`]: the diagnosis of a share
/// whose batched run failed.
///
/// `values_upserts`: the target runs `INSERT .. ON DUPLICATE KEY UPDATE c = VALUES(c)`
/// without a warning (MariaDB), so updates of a table whose only unique key is its primary key
/// merge into such upserts. MySQL 8.0.20+ warns (1287) on every `VALUES()`, which the warning
/// count would take for a warning about the data: there each update is its own `UPDATE`.
pub async fn run_levels(
    conn: &mut Conn,
    pending: &mut Joiner,
    levels: &[Vec<LwwChange<'_>>],
    meta: &str,
    mut progress: Option<&mut Progress>,
    checked: Option<&str>,
    values_upserts: bool,
) -> Result<(Vec<Record>, Option<Deferred>), LinkError> {
    let mut records = Vec::new();
    let mut unverified = Unverified::default();
    for level in levels {
        // What `pending` holds (the previous level's writes, or the transaction's start) runs
        // first, in the lookups' query.
        let read = read_level(
            conn,
            meta,
            pending,
            level,
            progress.as_deref_mut(),
            &unverified,
        )
        .await?;
        if read.rechecked {
            unverified.check(&read.marks)?;
        }
        let decided = decide_level(level, read.found, &read.marks);
        let written = write_level(
            conn,
            pending,
            meta,
            level,
            &decided,
            checked,
            progress.is_some(),
            values_upserts,
        )
        .await?;
        unverified = Unverified {
            written,
            before: read.position,
        };
        records.extend(decided.into_iter().flat_map(|d| d.outcome.records));
    }
    let deferred = unverified
        .finish(conn, pending, meta, progress, checked.is_none())
        .await?;
    Ok((records, deferred))
}

/// The decision of one change, with the keys its lookups found missing.
#[derive(Debug)]
struct Decided<'a> {
    outcome: Outcome<'a>,
    /// [`Found::missing`] of the change.
    missing: Vec<Option<[u8; 32]>>,
}

/// The decide step, pure: [`decide`] for each change of `level` in order, with the rows its
/// lookups found, the tombstones at its keys found missing and the claims at its unique
/// values (from `marks`; `None` where nothing was read or found), and an [`Overlay`] of the
/// level's earlier changes.
fn decide_level<'a>(level: &[LwwChange<'a>], found: Vec<Found>, marks: &Marks) -> Vec<Decided<'a>> {
    let mut overlay = Overlay::default();
    let mut out = Vec::with_capacity(level.len());
    for (lc, f) in level.iter().zip(found) {
        let table = lc.change.table.qualified_name();
        let mark = |h: &[u8; 32]| marks.get(&(table.clone(), *h)).cloned();
        let tombs = f
            .tomb_at
            .iter()
            .map(|h| h.as_ref().and_then(mark))
            .collect();
        let claims = f.claims.iter().map(mark).collect();
        let outcome = decide(lc.change, lc.version, f.rows, tombs, claims, &mut overlay);
        out.push(Decided {
            outcome,
            missing: f.missing,
        });
    }
    out
}

/// The write step: the decided writes of `level` into `pending`, each folded chain's replaced
/// by its net effect ([`super::net`]), merged into multi-row statements where the rules allow
/// ([`super::merge`]), each followed by [`crate::strict::CHECK_WARNINGS`] for an insert or
/// update — or, with `checked`, the decided writes each sent alone and checked
/// ([`crate::strict::checked_write`]). A write longer than the target accepts is
/// [`crate::sql::RewriteError::RowTooLarge`]. With `track` (a local-delete reader runs),
/// returns the checks the decided writes need ([`rechecks`]). Updates merge only with
/// `values_upserts` ([`run_levels`]).
#[allow(clippy::too_many_arguments)]
async fn write_level(
    conn: &mut Conn,
    pending: &mut Joiner,
    meta: &str,
    level: &[LwwChange<'_>],
    decided: &[Decided<'_>],
    checked: Option<&str>,
    track: bool,
    values_upserts: bool,
) -> Result<Vec<Written>, LinkError> {
    let budget = crate::size::budget(pending.max_allowed_packet()).min(pending.limit());
    let net = net_writes(
        &level
            .iter()
            .zip(decided)
            .map(|(lc, d)| ChangeWrites {
                table: &lc.change.table,
                chained: lc.chained,
                writes: &d.outcome.writes,
            })
            .collect::<Vec<_>>(),
    );
    let mut written = Vec::new();
    if track {
        for (lc, d) in level.iter().zip(decided) {
            let t = &*lc.change.table;
            for w in &d.outcome.writes {
                written.extend(rechecks(t, lc.version, w, &d.missing).into_iter().map(|c| {
                    let own = c.tomb_key().and_then(|k| net.own.get(&(table_id(t), k)));
                    c.with_own(own)
                }));
            }
        }
    }
    if let Some(at) = checked {
        // Diagnosis of a refused share: each decided write alone, checked.
        for (lc, d) in level.iter().zip(decided) {
            let t = &*lc.change.table;
            for w in &d.outcome.writes {
                let sql = write_sql(meta, t, w);
                if sql.len() > budget {
                    return Err(too_large(lc, t, sql.len()));
                }
                let row = match w {
                    Write::Insert(img)
                    | Write::Update(img)
                    | Write::Delete(img)
                    | Write::Evict(img, _) => Some(*img),
                    Write::Tombstone(..) => None,
                };
                crate::strict::checked_write(conn, t, row, &sql, at).await?;
            }
        }
        return Ok(written);
    }
    let free = free_tables(
        net.writes
            .iter()
            .map(|(i, w)| (&*level[*i].change.table, w)),
    );
    let mut merger = Merger::new(budget, free);
    for (i, w) in &net.writes {
        let lc = &level[*i];
        let t = &*lc.change.table;
        let merged = match w {
            Write::Insert(img) => Some((Kind::Insert, *img)),
            Write::Delete(img) => Some((Kind::Delete, *img)),
            Write::Update(img) if values_upserts && updates_merge(t) => Some((Kind::Update, *img)),
            Write::Tombstone(key, tomb) => {
                merger.tombstone(t.qualified_name(), *key, tomb.clone());
                continue;
            }
            Write::Update(_) | Write::Evict(..) => None,
        };
        match merged {
            Some((kind, img)) => {
                if let Err(bytes) = merger.add(conn, pending, kind, t, img).await? {
                    return Err(too_large(lc, t, bytes));
                }
            }
            None => {
                let sql = write_sql(meta, t, w);
                if sql.len() > budget {
                    return Err(too_large(lc, t, sql.len()));
                }
                let count = matches!(w, Write::Update(_));
                merger.single(conn, pending, t, &sql, count).await?;
            }
        }
    }
    merger.finish(conn, pending, meta).await?;
    Ok(written)
}

/// The error of a write of `lc` (in `t`) whose statement is `bytes` long, more than the
/// target accepts.
fn too_large(lc: &LwwChange<'_>, t: &TableSchema, bytes: usize) -> LinkError {
    let img = lc.change.after.as_ref().or(lc.change.before.as_ref());
    LinkError::Rewrite(crate::sql::RewriteError::RowTooLarge {
        table: t.qualified_name(),
        key: img.map(|i| crate::sql::key_text(t, i)).unwrap_or_default(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drc_core::change::{ChangeKind, Image, RowChange};
    use drc_core::value::Value;

    use super::*;
    use crate::conflict::canon::Canon;
    use crate::conflict::decide::{Row, Tomb};

    fn table() -> Arc<TableSchema> {
        Arc::new(crate::conflict::fixtures::table())
    }

    fn insert(t: &Arc<TableSchema>, id: i64, version: i64) -> RowChange {
        RowChange {
            table: t.clone(),
            kind: ChangeKind::Insert,
            before: None,
            after: Some(Image(vec![Some(Value::Int(id)), Some(Value::Int(version))])),
        }
    }

    /// Nothing found at the change's key.
    fn missing(c: &RowChange) -> Found {
        let key = c
            .after
            .as_ref()
            .map(|a| Row::from_image(&c.table, a).pk_hash(&c.table));
        Found {
            rows: vec![Vec::new()],
            missing: vec![key],
            tomb_at: vec![key],
            claims: Vec::new(),
        }
    }

    #[test]
    fn each_change_is_decided_with_the_tombstone_at_its_own_key() {
        let t = table();
        let (a, b) = (insert(&t, 1, 5), insert(&t, 2, 5));
        let level = [
            LwwChange {
                change: &a,
                version: 1,
                chained: false,
            },
            LwwChange {
                change: &b,
                version: 1,
                chained: false,
            },
        ];
        let found = vec![missing(&a), missing(&b)];
        let a_key = found[0].missing[0].expect("a's key");
        // A newer tombstone at a's key only.
        let marks = Marks::from([(
            ("shop.t".to_string(), a_key),
            Tomb {
                version: Canon::Int(9),
                hash: [0; 32],
            },
        )]);
        let decided = decide_level(&level, found, &marks);
        assert_eq!(decided.len(), 2);
        assert!(decided[0].outcome.writes.is_empty());
        assert_eq!(decided[0].outcome.records.len(), 1);
        assert_eq!(decided[0].missing, [Some(a_key)]);
        assert!(matches!(
            decided[1].outcome.writes.as_slice(),
            [Write::Insert(_)]
        ));
        assert!(decided[1].outcome.records.is_empty());
    }
}
