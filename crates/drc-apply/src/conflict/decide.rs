//! The last-writer-wins decision for one change, given the target rows it touches (read with
//! a locking `SELECT` in the apply transaction). Pure: no I/O, so every rule is unit-tested.
//!
//! Rows are compared by *rank*: the version column first, then the SHA-256 of the row's
//! canonical values (a deterministic tie-break that every center computes alike). A row equal
//! to the incoming one (same hash) is never a conflict, which makes replays harmless.
//!
//! | incoming | target row | outcome |
//! |---|---|---|
//! | INSERT a | missing | insert a |
//! | INSERT a | l ≠ a | higher rank stays; the other is recorded as lost |
//! | UPDATE b→a | missing | insert a (an update of a missing row inserts it) |
//! | UPDATE b→a | l = b | update to a (no conflict: the source saw exactly this row) |
//! | UPDATE b→a | l ∉ {a, b} | higher rank of a and l stays; the other is recorded |
//! | DELETE b | l = b | delete |
//! | DELETE b | l ≠ b | skip: a concurrent update wins over the delete (recorded) |
//! | UPDATE changing the key b→a | | the delete rule at b's key, then the insert rule at a's key |
//!
//! Unique keys other than the primary key: before a row a is written, target rows with another
//! primary key that hold one of a's unique values ("rivals") are compared with a. If a beats
//! every rival, the rivals are deleted (recorded); otherwise a is dropped (recorded), and when a
//! was a plain update of the target row (l = b), that row is removed too — it lost as a whole,
//! as it did in the centers where a arrived first and the rival evicted it.

use std::collections::HashMap;
use std::sync::Arc;

use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::TableSchema;

use super::canon::{row_hash, Canon};

/// Which rule decided a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The higher version won.
    NewerVersion,
    /// Equal versions; the higher row hash won.
    TieHash,
    /// A delete met a row that had changed since the deleting center saw it.
    UpdateWinsOverDelete,
}

impl Rule {
    /// The name stored in the conflict table.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NewerVersion => "newer_version",
            Rule::TieHash => "tie_hash",
            Rule::UpdateWinsOverDelete => "update_wins_over_delete",
        }
    }
}

/// What happened to the losing write (the `resolution` label and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The incoming row replaced a different target row.
    IncomingWon,
    /// The target row stayed; the incoming write was dropped.
    LocalWon,
    /// The incoming delete was not applied.
    DeleteSkipped,
    /// A target row holding the same unique-key value lost and was deleted.
    EvictedLocal,
    /// The incoming row lost a unique-key conflict and was dropped.
    LocalWonUnique,
    /// The target row that the incoming row updated was removed with it (see module docs).
    RemovedUnique,
}

impl Resolution {
    /// The name stored in the conflict table and used as metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::IncomingWon => "incoming_won",
            Resolution::LocalWon => "local_won",
            Resolution::DeleteSkipped => "delete_skipped",
            Resolution::EvictedLocal => "evicted_local",
            Resolution::LocalWonUnique => "local_won_unique",
            Resolution::RemovedUnique => "removed_unique",
        }
    }
}

/// A row in canonical form with its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// One value per table column.
    pub vals: Vec<Canon>,
    /// [`row_hash`] of `vals`.
    pub hash: [u8; 32],
}

impl Row {
    /// A row from canonical values.
    pub fn new(vals: Vec<Canon>) -> Row {
        let hash = row_hash(&vals);
        Row { vals, hash }
    }

    /// The canonical form of a binlog image (every column of the table).
    pub fn from_image(t: &TableSchema, img: &Image) -> Row {
        Row::new(
            (0..t.columns.len())
                .map(|i| Canon::from_value(img.get(i)))
                .collect(),
        )
    }

    fn key(&self, cols: &[usize]) -> Vec<&Canon> {
        cols.iter()
            .map(|&i| self.vals.get(i).unwrap_or(&Canon::Null))
            .collect()
    }

    /// The row as a JSON object by column name.
    pub fn to_json(&self, t: &TableSchema) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (c, v) in t.columns.iter().zip(&self.vals) {
            m.insert(c.name.to_string(), v.to_json());
        }
        serde_json::Value::Object(m)
    }
}

/// `Some(rule)` when `a` outranks `b` on version column `v`.
pub fn beats(a: &Row, b: &Row, v: usize) -> Option<Rule> {
    let null = Canon::Null;
    match a
        .vals
        .get(v)
        .unwrap_or(&null)
        .cmp_version(b.vals.get(v).unwrap_or(&null))
    {
        std::cmp::Ordering::Greater => Some(Rule::NewerVersion),
        std::cmp::Ordering::Less => None,
        std::cmp::Ordering::Equal => (a.hash > b.hash).then_some(Rule::TieHash),
    }
}

/// A write the decision asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Write<'a> {
    /// `INSERT` of a row that was missing (fails, and the share is retried, if a local writer
    /// inserted it meanwhile).
    Insert(&'a Image),
    /// `UPDATE` of the (locked) row with the same primary key to this image.
    Update(&'a Image),
    /// `DELETE` of the (locked) row with this image's primary key.
    Delete(&'a Image),
    /// `DELETE` of the rows other than this image's primary key that hold its values of unique
    /// key `n` (index into `unique_keys`).
    Evict(&'a Image, usize),
}

/// One lost write, for the conflict table.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `db.table`.
    pub table: String,
    /// Primary key of the incoming change, as JSON.
    pub key: serde_json::Value,
    /// Deciding rule.
    pub rule: Rule,
    /// What happened.
    pub resolution: Resolution,
    /// The losing image.
    pub loser: serde_json::Value,
    /// The winning image (null when nothing replaced the loser).
    pub winner: serde_json::Value,
}

/// What one lookup of a change asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup<'a> {
    /// The row with this image's primary key.
    Pk(&'a Image),
    /// Rows holding this image's values of unique key `n`.
    Unique(&'a Image, usize),
}

/// The lookups a change needs, in the order [`decide`] consumes their results.
pub fn lookups(c: &RowChange) -> Vec<Lookup<'_>> {
    let t = &*c.table;
    let mut out = Vec::with_capacity(2 + t.unique_keys.len());
    match (c.kind, &c.before, &c.after) {
        (ChangeKind::Delete, Some(b), _) => out.push(Lookup::Pk(b)),
        (ChangeKind::Insert, _, Some(a)) => out.push(Lookup::Pk(a)),
        (ChangeKind::Update, Some(b), Some(a)) => {
            if !same_key(t, b, a) {
                out.push(Lookup::Pk(b));
            }
            out.push(Lookup::Pk(a));
        }
        _ => {}
    }
    if let Some(a) = c.after.as_ref().filter(|_| c.kind != ChangeKind::Delete) {
        out.extend(unique_keys_of(t, a).map(|n| Lookup::Unique(a, n)));
    }
    out
}

/// The unique keys (indexes into `unique_keys`) whose values in `a` are all non-NULL: only
/// those can conflict.
fn unique_keys_of<'t>(t: &'t TableSchema, a: &'t Image) -> impl Iterator<Item = usize> + 't {
    t.unique_keys
        .iter()
        .enumerate()
        .filter(move |(_, uk)| {
            uk.columns
                .iter()
                .all(|&i| a.get(i).is_some_and(|v| !v.is_null()))
        })
        .map(|(n, _)| n)
}

fn same_key(t: &TableSchema, a: &Image, b: &Image) -> bool {
    t.primary_key.iter().all(|&i| a.get(i) == b.get(i))
}

/// Key of a row in the overlay: the table and the primary key's canonical hash.
type OverlayKey = (Arc<str>, Arc<str>, [u8; 32]);

/// Rows written earlier in the same level (reads of a level happen before its writes).
#[derive(Debug, Default)]
pub struct Overlay {
    rows: HashMap<OverlayKey, Option<Row>>,
}

impl Overlay {
    fn key(t: &TableSchema, r: &Row) -> OverlayKey {
        let pk: Vec<Canon> = r.key(&t.primary_key).into_iter().cloned().collect();
        (t.database.clone(), t.table.clone(), row_hash(&pk))
    }

    fn set(&mut self, t: &TableSchema, r: &Row, to: Option<Row>) {
        self.rows.insert(Overlay::key(t, r), to);
    }

    fn pk(&self, t: &TableSchema, probe: &Row, read: Option<Row>) -> Option<Row> {
        match self.rows.get(&Overlay::key(t, probe)) {
            Some(o) => o.clone(),
            None => read,
        }
    }

    /// Rivals of `a` on unique key `cols`: read rows corrected by the overlay, plus rows
    /// written in this level that hold the same values.
    fn rivals(&self, t: &TableSchema, a: &Row, cols: &[usize], read: Vec<Row>) -> Vec<Row> {
        let a_pk = a.key(&t.primary_key);
        let mut out: Vec<Row> = Vec::new();
        for r in read {
            match self.rows.get(&Overlay::key(t, &r)) {
                Some(Some(o)) if o.key(cols) == a.key(cols) => out.push(o.clone()),
                Some(_) => {}
                None => out.push(r),
            }
        }
        for ((db, tb, _), r) in &self.rows {
            if let Some(r) = r {
                if **db == *t.database
                    && **tb == *t.table
                    && r.key(cols) == a.key(cols)
                    && !out
                        .iter()
                        .any(|o| o.key(&t.primary_key) == r.key(&t.primary_key))
                {
                    out.push(r.clone());
                }
            }
        }
        out.retain(|r| r.key(&t.primary_key) != a_pk);
        out
    }
}

/// The writes and records of one change.
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    /// Statements to run, in order.
    pub writes: Vec<Write<'a>>,
    /// Lost writes.
    pub records: Vec<Record>,
}

struct Ctx<'a, 'o> {
    t: &'a TableSchema,
    v: usize,
    key: serde_json::Value,
    overlay: &'o mut Overlay,
    out: Outcome<'a>,
}

impl<'a> Ctx<'a, '_> {
    fn record(&mut self, rule: Rule, res: Resolution, loser: &Row, winner: Option<&Row>) {
        self.out.records.push(Record {
            table: self.t.qualified_name(),
            key: self.key.clone(),
            rule,
            resolution: res,
            loser: loser.to_json(self.t),
            winner: winner
                .map(|w| w.to_json(self.t))
                .unwrap_or(serde_json::Value::Null),
        });
    }

    /// The delete rule at `b`'s key; `l` is the target row there.
    fn delete(&mut self, b_img: &'a Image, l: Option<Row>) {
        let b = Row::from_image(self.t, b_img);
        match l {
            None => {}
            Some(l) if l.hash == b.hash => {
                self.out.writes.push(Write::Delete(b_img));
                self.overlay.set(self.t, &b, None);
            }
            Some(l) => self.record(
                Rule::UpdateWinsOverDelete,
                Resolution::DeleteSkipped,
                &b,
                Some(&l),
            ),
        }
    }

    /// Writes `a` at its key where the target holds `l`; `causal` when `l` is exactly the
    /// row the source changed into `a`. `rivals` are the unique-key lookups' rows.
    fn place(&mut self, a_img: &'a Image, l: Option<Row>, causal: bool, rivals: Vec<Vec<Row>>) {
        let t = self.t;
        let a = Row::from_image(t, a_img);
        let mut lost_to_l = None;
        if let Some(l) = &l {
            if l.hash == a.hash {
                return;
            }
            if !causal {
                match beats(&a, l, self.v) {
                    Some(rule) => lost_to_l = Some(rule),
                    None => {
                        let rule = beats(l, &a, self.v).unwrap_or(Rule::TieHash);
                        self.record(rule, Resolution::LocalWon, &a, Some(l));
                        return;
                    }
                }
            }
        }
        // Unique keys: every rival must lose to `a`.
        let mut evict: Vec<(usize, Row, Rule)> = Vec::new();
        for (n, read) in unique_keys_of(t, a_img).zip(rivals) {
            let cols = &t.unique_keys[n].columns;
            for r in self.overlay.rivals(t, &a, cols, read) {
                match beats(&a, &r, self.v) {
                    Some(rule) => evict.push((n, r, rule)),
                    None => {
                        let rule = beats(&r, &a, self.v).unwrap_or(Rule::TieHash);
                        self.record(rule, Resolution::LocalWonUnique, &a, Some(&r));
                        if let (true, Some(l)) = (causal, &l) {
                            self.out.writes.push(Write::Delete(a_img));
                            self.overlay.set(t, l, None);
                            self.record(rule, Resolution::RemovedUnique, l, Some(&r));
                        }
                        return;
                    }
                }
            }
        }
        let mut evicted_keys: Vec<usize> = Vec::new();
        for (n, r, rule) in evict {
            if !evicted_keys.contains(&n) {
                evicted_keys.push(n);
                self.out.writes.push(Write::Evict(a_img, n));
            }
            self.overlay.set(t, &r, None);
            self.record(rule, Resolution::EvictedLocal, &r, Some(&a));
        }
        match &l {
            Some(l) => {
                if let Some(rule) = lost_to_l {
                    self.record(rule, Resolution::IncomingWon, l, Some(&a));
                }
                self.out.writes.push(Write::Update(a_img));
            }
            None => self.out.writes.push(Write::Insert(a_img)),
        }
        self.overlay.set(t, &a, Some(a.clone()));
    }
}

/// Decides change `c` of a table whose version column is ordinal `v`. `found` holds the rows of
/// each of [`lookups`]`(c)`, in that order; `overlay` carries the writes of earlier changes of
/// the same level.
pub fn decide<'a>(
    c: &'a RowChange,
    v: usize,
    found: Vec<Vec<Row>>,
    overlay: &mut Overlay,
) -> Outcome<'a> {
    let t = &*c.table;
    let key_img = c.after.as_ref().or(c.before.as_ref());
    let key = match key_img {
        Some(img) => {
            let mut m = serde_json::Map::new();
            for &i in &t.primary_key {
                let name = t
                    .columns
                    .get(i)
                    .map(|c| c.name.to_string())
                    .unwrap_or_default();
                m.insert(name, Canon::from_value(img.get(i)).to_json());
            }
            serde_json::Value::Object(m)
        }
        None => serde_json::Value::Null,
    };
    let mut ctx = Ctx {
        t,
        v,
        key,
        overlay,
        out: Outcome::default(),
    };
    let mut found = found.into_iter();
    let pk = |ctx: &mut Ctx<'a, '_>, probe: &Image, read: Option<Vec<Row>>| {
        let read = read.and_then(|rows| rows.into_iter().next());
        ctx.overlay.pk(t, &Row::from_image(t, probe), read)
    };
    match (c.kind, &c.before, &c.after) {
        (ChangeKind::Delete, Some(b), _) => {
            let l = pk(&mut ctx, b, found.next());
            ctx.delete(b, l);
        }
        (ChangeKind::Insert, _, Some(a)) => {
            let l = pk(&mut ctx, a, found.next());
            ctx.place(a, l, false, found.collect());
        }
        (ChangeKind::Update, Some(b), Some(a)) => {
            if same_key(t, b, a) {
                let l = pk(&mut ctx, a, found.next());
                let causal = l
                    .as_ref()
                    .is_some_and(|l| l.hash == Row::from_image(t, b).hash);
                ctx.place(a, l, causal, found.collect());
            } else {
                let lb = pk(&mut ctx, b, found.next());
                ctx.delete(b, lb);
                let la = pk(&mut ctx, a, found.next());
                ctx.place(a, la, false, found.collect());
            }
        }
        _ => {}
    }
    ctx.out
}

#[cfg(test)]
mod tests;
