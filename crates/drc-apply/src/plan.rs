//! The dispatcher: splits a batch into independent shares that may be applied in parallel.
//!
//! Two changes that touch a common key value — the primary key or ANY unique key, in the before
//! or the after image — must be applied in source order. Ordering by the primary key alone is
//! wrong: row 1 moves its unique email `x` to `y`, then row 2 takes `x`. Applied on different
//! connections, row 2's insert may run first and collide with row 1's old `x` (an `INSERT
//! IGNORE` would drop it silently; drc's guarded insert stops the link). Here both changes share the key value `email = x`, so they land in one
//! share, in order.
//!
//! The batch's changes are joined into components (union-find) through every key value they
//! touch; each component goes whole to one worker, keeping source order inside it. Components are
//! handed out in order of their first change, each to the least-loaded worker. The result depends only on the
//! batch's content, the key columns' collations and the worker count (the hash is FNV-1a over
//! the values' SQL text, text folded by collation), which crash recovery relies on: re-planning
//! a batch after a restart gives every worker the same share it had.
//!
//! "A common key value" is decided by the key column's collation, not by the bytes: in a
//! case-insensitive unique key, row 1 deleting `'Bob@x'` and row 2 then inserting `'bob@x'`
//! touch one value, and the insert run first hits a duplicate key. Text is therefore folded by
//! each column's collation ([`drc_core::collation`]), over-approximating what the server equates
//! (case, accents, expansions, trailing spaces): a fold that merges more only orders changes
//! that could have run in parallel. A key column whose collation drc does not know (or whose
//! bytes do not decode) gives the key's signature alone: every change of that key is ordered.
//!
//! NULL never conflicts in a unique index, so key values containing NULL are ignored. A table
//! whose unique keys are unknown (or that has a key on a column prefix or an expression) is
//! serialized as a whole (one component per table).

use std::collections::HashMap;

use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::TableSchema;
use drc_core::value::Value;

use crate::sql;

/// Which changes each worker applies: indices into the batch, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One share per worker (some may be empty).
    pub shares: Vec<Vec<usize>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(FNV_PRIME);
    }
}

/// Signature of one key value: table, key name, and the key's values, text folded by each
/// column's collation ([`drc_core::collation`]); `None` when a value is NULL or missing (no
/// conflict possible). A text value whose collation drc does not know (or that does not
/// decode) gets the signature of the key alone: it then conflicts with every value of that
/// key, which orders all those changes — safe, only slower.
fn key_signature(
    t: &TableSchema,
    name: &str,
    cols: &[usize],
    img: &Image,
    buf: &mut Vec<u8>,
    lit: &mut String,
) -> Option<u64> {
    let mut h = FNV_OFFSET;
    fnv(&mut h, t.database.as_bytes());
    fnv(&mut h, b".");
    fnv(&mut h, t.table.as_bytes());
    fnv(&mut h, b"\0");
    fnv(&mut h, name.as_bytes());
    if cols
        .iter()
        .any(|&c| img.get(c).is_none_or(|v| matches!(v, Value::Null)))
    {
        return None;
    }
    for &c in cols {
        let v = img.get(c)?;
        buf.clear();
        match v {
            Value::Text(text) => {
                let folded = t
                    .columns
                    .get(c)
                    .and_then(|col| col.collation.as_ref())
                    .is_some_and(|coll| coll.fold(text, buf));
                if !folded {
                    fnv(&mut h, b"\0*any-value*");
                    return Some(h);
                }
            }
            // -0 and 0 are one value in a unique key.
            Value::Float(f) if *f == 0.0 => buf.push(b'0'),
            Value::Double(f) if *f == 0.0 => buf.push(b'0'),
            _ => {
                lit.clear();
                sql::literal(lit, v);
                buf.extend_from_slice(lit.as_bytes());
            }
        }
        fnv(&mut h, b"\0");
        fnv(&mut h, buf);
    }
    Some(h)
}

/// Buffers reused across signatures.
#[derive(Debug, Default)]
pub(crate) struct SigBufs {
    folded: Vec<u8>,
    literal: String,
}

/// The signatures of every key value `c` touches (primary key and unique keys, both images),
/// text folded by collation: what the planner joins changes by, and the keys the key locks
/// take ([`crate::conflict::keylock`]).
pub(crate) fn signatures(c: &RowChange, out: &mut Vec<u64>, bufs: &mut SigBufs) {
    let t = &*c.table;
    if !t.unique_keys_known {
        let mut h = FNV_OFFSET;
        fnv(&mut h, t.database.as_bytes());
        fnv(&mut h, b".");
        fnv(&mut h, t.table.as_bytes());
        fnv(&mut h, b"\0*whole-table*");
        out.push(h);
        return;
    }
    let SigBufs { folded, literal } = bufs;
    for img in [&c.before, &c.after].into_iter().flatten() {
        if !t.primary_key.is_empty() {
            out.extend(key_signature(
                t,
                "PRIMARY",
                &t.primary_key,
                img,
                folded,
                literal,
            ));
        }
        for k in &t.unique_keys {
            out.extend(key_signature(t, &k.name, &k.columns, img, folded, literal));
        }
    }
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Splits `changes` into `workers` shares. See the module docs.
pub fn plan(changes: &[RowChange], workers: usize) -> Plan {
    let workers = workers.max(1);
    let n = changes.len();
    if workers == 1 || n <= 1 {
        let mut shares = vec![Vec::new(); workers];
        shares[0] = (0..n).collect();
        return Plan { shares };
    }
    let mut parent: Vec<usize> = (0..n).collect();
    let mut owner: HashMap<u64, usize> = HashMap::with_capacity(n * 2);
    let mut sigs = Vec::with_capacity(4);
    let mut bufs = SigBufs::default();
    for (i, c) in changes.iter().enumerate() {
        sigs.clear();
        signatures(c, &mut sigs, &mut bufs);
        for s in &sigs {
            match owner.get(s) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        // The smaller index stays root: roots are then first-seen rows.
                        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                        parent[hi] = lo;
                    }
                }
                None => {
                    owner.insert(*s, i);
                }
            }
        }
    }
    // Components in order of their first change.
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut order = Vec::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        members
            .entry(r)
            .or_insert_with(|| {
                order.push(r);
                Vec::new()
            })
            .push(i);
    }
    let mut shares: Vec<Vec<usize>> = vec![Vec::new(); workers];
    for r in order {
        let comp = members.remove(&r).unwrap_or_default();
        let w = (0..workers)
            .min_by_key(|&w| (shares[w].len(), w))
            .unwrap_or(0);
        shares[w].extend(comp);
    }
    for s in &mut shares {
        s.sort_unstable();
    }
    Plan { shares }
}

/// Orders one share for the rewrite: by dependency level, then kind, table and source order.
///
/// A change's level is one more than the highest level of an earlier change of the share that
/// shares a key value with it, so the changes of one level touch disjoint key values and
/// commute, while changes that share a key keep their source order (their levels increase).
/// Grouping a level by kind and table lets the rewrite merge it into a few multi-row statements
/// instead of one statement per change of an OLTP transaction (update, update, delete,
/// insert, ...). The order depends only on the share's content, as crash recovery requires.
pub fn order_by_level<'a>(changes: &[&'a RowChange]) -> Vec<&'a RowChange> {
    let kind = |c: &RowChange| match c.kind {
        ChangeKind::Delete => 0,
        ChangeKind::Update => 1,
        ChangeKind::Insert => 2,
    };
    let mut out = Vec::with_capacity(changes.len());
    for mut level in levels(changes) {
        // Stable: source order stays within a kind and table.
        level.sort_by(|x, y| {
            (kind(x), &*x.table.database, &*x.table.table).cmp(&(
                kind(y),
                &*y.table.database,
                &*y.table.table,
            ))
        });
        out.extend(level);
    }
    out
}

/// Splits changes (in source order) into dependency levels: a change's level is one more than
/// the highest level of an earlier change that shares a key value with it. The changes of one
/// level touch disjoint key values; a change's level is after every earlier change it depends
/// on. Within a level, source order is kept.
pub fn levels<'a>(changes: &[&'a RowChange]) -> Vec<Vec<&'a RowChange>> {
    let mut level_of: HashMap<u64, usize> = HashMap::with_capacity(changes.len() * 2);
    let mut sigs = Vec::with_capacity(4);
    let mut bufs = SigBufs::default();
    let mut out: Vec<Vec<&'a RowChange>> = Vec::new();
    for c in changes {
        sigs.clear();
        signatures(c, &mut sigs, &mut bufs);
        let level = sigs
            .iter()
            .filter_map(|s| level_of.get(s))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        for s in &sigs {
            level_of.insert(*s, level);
        }
        if out.len() <= level {
            out.resize_with(level + 1, Vec::new);
        }
        out[level].push(c);
    }
    out
}

/// A change of a last-writer-wins share, placed in its dependency level by [`lww_levels`].
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    /// The change.
    pub change: &'a RowChange,
    /// True when another change of the same level has the same primary key (a folded chain).
    pub chained: bool,
}

/// [`levels`] for last-writer-wins shares, with chains folded: a change of a table that
/// `foldable` accepts, which keeps its primary key (an insert, a delete, an update that does not
/// change the key) joins the level of the previous change of its key when that change is of
/// this kind too, instead of the level after it. A hot key's run of changes then costs one
/// level (one round of lookups and writes) instead of one level per change; the conflict
/// resolution decides such a chain in source order against the level's overlay and writes its
/// net effect ([`crate::conflict`]). Both changes of a chain are marked [`Placed::chained`].
/// Every other change is placed as [`levels`] places it.
pub fn lww_levels<'a>(
    changes: &[&'a RowChange],
    foldable: impl Fn(&TableSchema) -> bool,
) -> Vec<Vec<Placed<'a>>> {
    // Per signature: its level, and for a chain that may grow, the index of its first change
    // in that level.
    let mut level_of: HashMap<u64, (usize, Option<usize>)> =
        HashMap::with_capacity(changes.len() * 2);
    let mut sigs = Vec::with_capacity(4);
    let mut bufs = SigBufs::default();
    let mut out: Vec<Vec<Placed<'a>>> = Vec::new();
    for c in changes {
        sigs.clear();
        signatures(c, &mut sigs, &mut bufs);
        // Integer primary key and no other unique key: the images' signatures are their
        // primary keys, equal when the change keeps its key.
        let one_key = !sigs.is_empty() && sigs.iter().all(|s| *s == sigs[0]) && foldable(&c.table);
        if one_key {
            if let Some(&(level, Some(first))) = level_of.get(&sigs[0]) {
                out[level][first].chained = true;
                out[level].push(Placed {
                    change: c,
                    chained: true,
                });
                continue;
            }
        }
        let level = sigs
            .iter()
            .filter_map(|s| level_of.get(s))
            .map(|(l, _)| l + 1)
            .max()
            .unwrap_or(0);
        if out.len() <= level {
            out.resize_with(level + 1, Vec::new);
        }
        let first = one_key.then_some(out[level].len());
        for s in &sigs {
            level_of.insert(*s, (level, first));
        }
        out[level].push(Placed {
            change: c,
            chained: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drc_core::collation::Collation;
    use drc_core::schema::{ColumnSchema, SqlType, UniqueKey};
    use drc_core::value::Text;

    use super::*;

    fn users() -> Arc<TableSchema> {
        users_with("utf8mb4_general_ci")
    }

    /// `users (id INT PRIMARY KEY, email ... UNIQUE)`, email in `collation`.
    fn users_with(collation: &str) -> Arc<TableSchema> {
        let col = |n: &str| ColumnSchema {
            name: n.into(),
            sql_type: SqlType::Int,
            unsigned: false,
            collation: None,
        };
        let mut email = col("email");
        email.sql_type = SqlType::String;
        email.collation = Some(Collation::new(collation));
        Arc::new(TableSchema {
            database: "shop".into(),
            table: "users".into(),
            columns: vec![col("id"), email],
            primary_key: vec![0],
            unique_keys: vec![UniqueKey {
                name: "email".into(),
                columns: vec![1],
            }],
            unique_keys_known: true,
        })
    }

    fn row(id: i64, email: Option<&str>) -> Image {
        Image(vec![
            Some(Value::Int(id)),
            Some(email.map_or(Value::Null, |e| Value::Text(Text::utf8(e)))),
        ])
    }

    fn ch(kind: ChangeKind, b: Option<Image>, a: Option<Image>) -> RowChange {
        RowChange {
            table: users(),
            kind,
            before: b,
            after: a,
        }
    }

    #[test]
    fn lww_levels_fold_a_keys_chain_and_nothing_else() {
        let mut plain = (*users()).clone();
        plain.table = "plain".into();
        plain.unique_keys.clear();
        let plain = Arc::new(plain);
        let on_plain = |kind, b: Option<i64>, a: Option<i64>| RowChange {
            table: plain.clone(),
            kind,
            before: b.map(|i| row(i, None)),
            after: a.map(|i| row(i, None)),
        };
        let changes = [
            on_plain(ChangeKind::Insert, None, Some(1)),
            ch(ChangeKind::Insert, None, Some(row(5, Some("x")))),
            on_plain(ChangeKind::Update, Some(1), Some(1)),
            on_plain(ChangeKind::Delete, Some(1), None),
            // A table with a unique key besides the primary key: no folding.
            ch(
                ChangeKind::Update,
                Some(row(5, Some("x"))),
                Some(row(5, Some("y"))),
            ),
            // A change of key: the next level, and it starts no chain.
            on_plain(ChangeKind::Update, Some(1), Some(2)),
            on_plain(ChangeKind::Insert, None, Some(3)),
            on_plain(ChangeKind::Update, Some(2), Some(2)),
            on_plain(ChangeKind::Delete, Some(2), None),
        ];
        let refs: Vec<&RowChange> = changes.iter().collect();
        let at = |c: &RowChange| changes.iter().position(|x| std::ptr::eq(x, c));
        let placed: Vec<Vec<(Option<usize>, bool)>> = lww_levels(&refs, crate::conflict::foldable)
            .iter()
            .map(|l| l.iter().map(|p| (at(p.change), p.chained)).collect())
            .collect();
        assert_eq!(
            placed,
            [
                vec![
                    (Some(0), true),
                    (Some(1), false),
                    (Some(2), true),
                    (Some(3), true),
                    (Some(6), false),
                ],
                vec![(Some(4), false), (Some(5), false)],
                vec![(Some(7), true), (Some(8), true)],
            ]
        );
        // Unfolded, the key's changes take a level each.
        assert_eq!(levels(&refs).len(), 6);
    }

    #[test]
    fn unique_key_moves_keep_their_order_across_different_primary_keys() {
        // Row 1 moves email x -> y, then row 2 takes x: must share a worker, in order.
        let changes = vec![
            ch(
                ChangeKind::Update,
                Some(row(1, Some("x"))),
                Some(row(1, Some("y"))),
            ),
            ch(ChangeKind::Insert, None, Some(row(3, Some("z")))),
            ch(ChangeKind::Insert, None, Some(row(2, Some("x")))),
        ];
        let p = plan(&changes, 4);
        let with_0 = p
            .shares
            .iter()
            .find(|s| s.contains(&0))
            .expect("row 0 placed");
        assert_eq!(with_0, &vec![0, 2], "same share, source order");
        assert_eq!(p.shares.iter().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn independent_rows_spread_and_nulls_do_not_conflict() {
        let changes: Vec<RowChange> = (0..8)
            .map(|i| ch(ChangeKind::Insert, None, Some(row(i, None))))
            .collect();
        let p = plan(&changes, 4);
        assert!(p.shares.iter().all(|s| s.len() == 2), "{p:?}");
    }

    #[test]
    fn levels_keep_dependent_changes_in_order_and_group_the_rest() {
        // OLTP-like: per row, update then delete then insert of the same key.
        let mut changes = Vec::new();
        for id in 0..3 {
            changes.push(ch(
                ChangeKind::Update,
                Some(row(id, None)),
                Some(row(id, None)),
            ));
            changes.push(ch(ChangeKind::Delete, Some(row(id, None)), None));
            changes.push(ch(ChangeKind::Insert, None, Some(row(id, None))));
        }
        let refs: Vec<&RowChange> = changes.iter().collect();
        let ordered = order_by_level(&refs);
        let kinds: Vec<ChangeKind> = ordered.iter().map(|c| c.kind).collect();
        use ChangeKind::*;
        assert_eq!(
            kinds,
            [Update, Update, Update, Delete, Delete, Delete, Insert, Insert, Insert],
            "one run per level and kind"
        );
        // Each key still sees update, delete, insert in that order.
        for id in 0..3 {
            let mine: Vec<ChangeKind> = ordered
                .iter()
                .filter(|c| {
                    c.before
                        .as_ref()
                        .or(c.after.as_ref())
                        .and_then(|i| i.get(0))
                        == Some(&Value::Int(id))
                })
                .map(|c| c.kind)
                .collect();
            assert_eq!(mine, [Update, Delete, Insert]);
        }
    }

    #[test]
    fn same_primary_key_stays_together_and_plans_are_deterministic() {
        let changes = vec![
            ch(ChangeKind::Insert, None, Some(row(1, Some("a")))),
            ch(ChangeKind::Insert, None, Some(row(2, Some("b")))),
            ch(ChangeKind::Delete, Some(row(1, Some("a"))), None),
            ch(
                ChangeKind::Update,
                Some(row(2, Some("b"))),
                Some(row(2, Some("c"))),
            ),
        ];
        let p = plan(&changes, 2);
        assert_eq!(p, plan(&changes, 2));
        for s in &p.shares {
            assert!(s == &vec![0, 2] || s == &vec![1, 3], "{p:?}");
        }
    }

    fn on(t: &Arc<TableSchema>, kind: ChangeKind, b: Option<Image>, a: Option<Image>) -> RowChange {
        RowChange {
            table: t.clone(),
            kind,
            before: b,
            after: a,
        }
    }

    /// Row 1 deletes `old`, then row 2 inserts `new`; `true` when the planner keeps them in one
    /// share, in source order, and in two dependency levels.
    fn ordered(collation: &str, old: &str, new: &str) -> bool {
        let t = users_with(collation);
        let changes = vec![
            on(&t, ChangeKind::Delete, Some(row(1, Some(old))), None),
            on(&t, ChangeKind::Insert, None, Some(row(2, Some(new)))),
        ];
        let p = plan(&changes, 4);
        let together = p.shares.iter().any(|s| s == &vec![0, 1]);
        let refs: Vec<&RowChange> = changes.iter().collect();
        let lv = levels(&refs);
        assert_eq!(together, lv.len() == 2, "{collation}: {old:?}/{new:?}");
        together
    }

    #[test]
    fn values_a_collation_equates_are_ordered_and_binary_ones_run_in_parallel() {
        let pairs = [
            ("Bob@x", "bob@x"),
            ("résumé", "resume"),
            ("straße", "strasse"),
        ];
        for coll in [
            "utf8mb4_unicode_ci",
            "utf8mb4_unicode_520_ci",
            "utf8mb4_0900_ai_ci",
            "utf8mb4_uca1400_ai_ci",
        ] {
            for (old, new) in pairs {
                assert!(ordered(coll, old, new), "{coll}: {old:?} then {new:?}");
            }
        }
        // general_ci equates ß with s (not ss): those are ordered.
        assert!(ordered("utf8mb4_general_ci", "Bob@x", "bob@x"));
        assert!(ordered("utf8mb4_general_ci", "résumé", "RESUME "));
        assert!(ordered("utf8mb4_general_ci", "straße", "strase"));
        for (old, new) in pairs {
            assert!(!ordered("utf8mb4_bin", old, new), "bin: {old:?}/{new:?}");
            assert!(!ordered("utf8mb4_nopad_bin", old, new));
        }
        assert!(ordered("utf8mb4_bin", "Bob@x", "Bob@x  "), "PAD SPACE");
        assert!(!ordered("utf8mb4_nopad_bin", "Bob@x", "Bob@x  "));
        assert!(!ordered("utf8mb4_unicode_ci", "bob@x", "bib@x"));
    }

    #[test]
    fn an_unknown_collation_orders_every_change_of_the_key() {
        assert!(ordered("utf8mb4_german2_ci", "Müller", "Mueller"));
        assert!(ordered("utf8mb4_german2_ci", "a", "b"));
        // NULL still never conflicts.
        let t = users_with("utf8mb4_german2_ci");
        let changes = vec![
            on(&t, ChangeKind::Insert, None, Some(row(1, None))),
            on(&t, ChangeKind::Insert, None, Some(row(2, None))),
        ];
        assert!(plan(&changes, 2).shares.iter().all(|s| s.len() == 1));
    }
}
