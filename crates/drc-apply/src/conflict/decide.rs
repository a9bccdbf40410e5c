//! The last-writer-wins decision for one change, given the target rows it touches (read with
//! a locking `SELECT` in the apply transaction). Pure: no I/O, so every rule is unit-tested.
//!
//! Rows are compared by *rank*: the version column first, then the SHA-256 of the row's
//! canonical values (a deterministic tie-break that every center computes alike). A row equal
//! to the incoming one (same hash) is never a conflict, which makes replays harmless.
//!
//! | incoming | target row | outcome |
//! |---|---|---|
//! | INSERT a | missing, tombstone ranks above a | drop a (recorded) |
//! | INSERT a | missing | insert a |
//! | INSERT a | l ≠ a | higher rank stays; the other is recorded as lost |
//! | UPDATE b→a | missing | insert a (an update of a missing row inserts it) |
//! | UPDATE b→a | l = b | update to a (no conflict: the source saw exactly this row) |
//! | UPDATE b→a | l ∉ {a, b} | higher rank of a and l stays; the other is recorded |
//! | DELETE b | l = b, or l ranks below b | delete, tombstone at b's rank |
//! | DELETE b | l ranks above b | skip: a concurrent update wins over the delete (recorded) |
//! | DELETE b | missing | tombstone at b's rank (unless a higher one is there) |
//! | UPDATE changing the key b→a | | the delete rule at b's key, then the insert rule at a's key |
//!
//! Deletes leave a **tombstone** (`<meta>.tombstone`: the deleted row's version and hash, by
//! table and primary-key hash), written with the delete by drc's appliers, and for deletes made
//! by local writers by the local-delete reader ([`super::local`]). An incoming row for a
//! missing key is dropped when a tombstone there outranks it. A delete acts as a write of
//! "deleted at the rank of the row it saw": it removes an older target row (the target is
//! behind; recorded when the row differs), is skipped when the target row is newer (a
//! concurrent update wins), and on a missing row leaves a tombstone for versions that arrive
//! later.
//!
//! Unique keys other than the primary key: every version *claims* its unique values (the
//! highest rank that held each value is kept beside the tombstones, [`claim_hash`]); a row may
//! hold a value only if no higher version of another row holds or held it. Before a row a is
//! written, target rows with another primary key that hold one of a's values ("rivals") and rank
//! below a are deleted (recorded) — whatever then happens to a on its own key, since where a
//! arrived first it evicted them. If a rival or a claim outranks a, a is dropped (recorded),
//! and a's key ends as if a had been written and then evicted: a target row that a outranks or
//! updated (l = b) is removed, and the key's tombstone is raised to a's rank. Before images of
//! updates and deletes claim their values too (they are versions this center may never have
//! held).

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
    /// The row was deleted here after a newer version than the incoming one (its tombstone
    /// outranks it); the incoming write was dropped.
    TombstoneWon,
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
            Resolution::TombstoneWon => "tombstone_won",
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

    fn version(&self, v: usize) -> &Canon {
        const NULL: &Canon = &Canon::Null;
        self.vals.get(v).unwrap_or(NULL)
    }

    /// The hash of the primary-key values (the tombstone key).
    pub fn pk_hash(&self, t: &TableSchema) -> [u8; 32] {
        // Equal to `image_pk_hash` of the row's image: one canonical form for both.
        let pk: Vec<Canon> = self.key(&t.primary_key).into_iter().cloned().collect();
        row_hash(&pk)
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
    beats_rank(a.version(v), &a.hash, b.version(v), &b.hash)
}

/// `Some(rule)` when rank `(va, ha)` is above `(vb, hb)`.
pub fn beats_rank(va: &Canon, ha: &[u8; 32], vb: &Canon, hb: &[u8; 32]) -> Option<Rule> {
    match va.cmp_version(vb) {
        std::cmp::Ordering::Greater => Some(Rule::NewerVersion),
        std::cmp::Ordering::Less => None,
        std::cmp::Ordering::Equal => (ha > hb).then_some(Rule::TieHash),
    }
}

/// A tombstone: the rank of a deleted row.
#[derive(Debug, Clone, PartialEq)]
pub struct Tomb {
    /// The deleted row's version.
    pub version: Canon,
    /// The deleted row's hash.
    pub hash: [u8; 32],
}

impl Tomb {
    /// The tombstone of `r` (version column `v`).
    pub fn of(r: &Row, v: usize) -> Tomb {
        Tomb {
            version: r.version(v).clone(),
            hash: r.hash,
        }
    }

    /// Keeps in `m` at `key` the higher rank of `self` and what is there (tombstones are
    /// raise-only).
    pub(super) fn raise_in<K: std::hash::Hash + Eq>(self, m: &mut HashMap<K, Tomb>, key: K) {
        match m.get(&key) {
            Some(o) if beats_rank(&self.version, &self.hash, &o.version, &o.hash).is_none() => {}
            _ => {
                m.insert(key, self);
            }
        }
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
    /// Record a tombstone for the deleted row with this primary-key hash.
    Tombstone([u8; 32], Tomb),
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

/// The lookups (indexes into [`lookups`]`(c)`) whose keys need their tombstone when they find no
/// row, each with the image that names the key, in the order [`decide`] takes the tombstones:
/// the after image's key for inserts and updates, the before image's for deletes, both for an
/// update that changes the key (old key first).
pub fn tomb_lookups(c: &RowChange) -> Vec<(usize, &Image)> {
    match (c.kind, &c.before, &c.after) {
        (ChangeKind::Insert, _, Some(a)) => vec![(0, a)],
        (ChangeKind::Update, Some(b), Some(a)) if same_key(&c.table, b, a) => vec![(0, a)],
        (ChangeKind::Update, Some(b), Some(a)) => vec![(0, b), (1, a)],
        (ChangeKind::Delete, Some(b), _) => vec![(0, b)],
        _ => Vec::new(),
    }
}

/// The key under which the claim on unique key `n`'s values of `img` is kept (in the tombstone
/// table, beside the primary-key tombstones; the tagged first element keeps the two key spaces
/// apart). `None` when a value is NULL (NULL never conflicts).
pub fn claim_hash(t: &TableSchema, n: usize, img: &Image) -> Option<[u8; 32]> {
    let uk = t.unique_keys.get(n)?;
    let mut vals = Vec::with_capacity(uk.columns.len() + 1);
    let mut tag = b"\0unique\0".to_vec();
    tag.extend_from_slice(uk.name.as_bytes());
    vals.push(Canon::Bytes(tag));
    for &i in &uk.columns {
        let v = img.get(i).filter(|v| !v.is_null())?;
        vals.push(Canon::from_value(Some(v)));
    }
    Some(row_hash(&vals))
}

/// The claims [`decide`] reads for change `c`: one per unique key with non-NULL values in the
/// after image (in [`lookups`]' order of unique keys), by claim hash.
pub fn claim_lookups(c: &RowChange) -> Vec<[u8; 32]> {
    let t = &*c.table;
    match c.after.as_ref().filter(|_| c.kind != ChangeKind::Delete) {
        Some(a) => unique_keys_of(t, a)
            .filter_map(|n| claim_hash(t, n, a))
            .collect(),
        None => Vec::new(),
    }
}

/// [`Row::pk_hash`] of `img`'s row, without canonicalizing and hashing the whole row.
pub fn image_pk_hash(t: &TableSchema, img: &Image) -> [u8; 32] {
    let pk: Vec<Canon> = t
        .primary_key
        .iter()
        .map(|&i| Canon::from_value(img.get(i)))
        .collect();
    row_hash(&pk)
}

fn same_key(t: &TableSchema, a: &Image, b: &Image) -> bool {
    t.primary_key.iter().all(|&i| a.get(i) == b.get(i))
}

/// Key of a row in the overlay: the table and the primary key's canonical hash.
type OverlayKey = (Arc<str>, Arc<str>, [u8; 32]);

/// Rows written earlier in the same level (reads of a level happen before its writes), and the
/// tombstones raised there.
#[derive(Debug, Default)]
pub struct Overlay {
    rows: HashMap<OverlayKey, Option<Row>>,
    /// The highest tombstone written at a primary key in this level: a later change of the
    /// key (a folded chain, or a key whose row a change evicted) decides against it together
    /// with the one read.
    tombs: HashMap<OverlayKey, Tomb>,
}

impl Overlay {
    fn key(t: &TableSchema, r: &Row) -> OverlayKey {
        let pk: Vec<Canon> = r.key(&t.primary_key).into_iter().cloned().collect();
        (t.database.clone(), t.table.clone(), row_hash(&pk))
    }

    fn set(&mut self, t: &TableSchema, r: &Row, to: Option<Row>) {
        self.rows.insert(Overlay::key(t, r), to);
    }

    /// The tombstone at `probe`'s key: the higher of the one read and the one raised in this
    /// level.
    fn tomb(&self, t: &TableSchema, probe: &Image, read: Option<Tomb>) -> Option<Tomb> {
        if self.tombs.is_empty() {
            return read;
        }
        let key = (t.database.clone(), t.table.clone(), image_pk_hash(t, probe));
        match (self.tombs.get(&key), read) {
            (None, read) => read,
            (Some(o), None) => Some(o.clone()),
            (Some(o), Some(r)) => match beats_rank(&o.version, &o.hash, &r.version, &r.hash) {
                Some(_) => Some(o.clone()),
                None => Some(r),
            },
        }
    }

    fn pk(&self, t: &TableSchema, probe: &Image, read: Option<Row>) -> Option<Row> {
        let key = (t.database.clone(), t.table.clone(), image_pk_hash(t, probe));
        match self.rows.get(&key) {
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

    fn tombstone(&mut self, deleted: &Row) {
        let (key, tomb) = (deleted.pk_hash(self.t), Tomb::of(deleted, self.v));
        let at = (self.t.database.clone(), self.t.table.clone(), key);
        tomb.clone().raise_in(&mut self.overlay.tombs, at);
        self.out.writes.push(Write::Tombstone(key, tomb));
    }

    /// The delete rule at `b`'s key; `l` is the target row there, `tomb` the tombstone there
    /// when the row is missing. A delete is a write of "deleted at b's rank": it removes an
    /// older row (the target is behind), and it is skipped when the row is newer (a concurrent
    /// update wins).
    fn delete(&mut self, b_img: &'a Image, l: Option<Row>, tomb: Option<Tomb>) {
        let b = Row::from_image(self.t, b_img);
        match l {
            None => {
                // The row has not arrived yet, or was deleted already: remember the delete so
                // that older versions arriving later stay deleted.
                let older = tomb.is_none_or(|t| {
                    beats_rank(b.version(self.v), &b.hash, &t.version, &t.hash).is_some()
                });
                if older {
                    self.tombstone(&b);
                }
            }
            Some(l) if l.hash == b.hash => {
                self.out.writes.push(Write::Delete(b_img));
                self.tombstone(&l);
                self.overlay.set(self.t, &b, None);
            }
            Some(l) => match beats(&b, &l, self.v) {
                Some(rule) => {
                    self.out.writes.push(Write::Delete(b_img));
                    self.tombstone(&b);
                    self.overlay.set(self.t, &b, None);
                    self.record(rule, Resolution::IncomingWon, &l, None);
                }
                None => self.record(
                    Rule::UpdateWinsOverDelete,
                    Resolution::DeleteSkipped,
                    &b,
                    Some(&l),
                ),
            },
        }
    }

    /// Raises the claims on `img`'s unique values to its rank: every version that held a
    /// value claims it, and a row may only hold a value that no higher version claimed.
    fn claim(&mut self, img: &Image) {
        if self.t.unique_keys.is_empty() {
            return;
        }
        let r = Row::from_image(self.t, img);
        for n in unique_keys_of(self.t, img).collect::<Vec<_>>() {
            if let Some(h) = claim_hash(self.t, n, img) {
                self.out
                    .writes
                    .push(Write::Tombstone(h, Tomb::of(&r, self.v)));
            }
        }
    }

    /// Writes `a` at its key where the target holds `l`; `causal` when `l` is exactly the
    /// row the source changed into `a`. `rivals` are the unique-key lookups' rows, `claims`
    /// the claims on a's unique values; `tomb` the tombstone at a missing key.
    ///
    /// Every center must end as if it had applied every version in rank order, whatever order
    /// they arrive in. So a's unique values are settled first and whatever happens to a on its
    /// primary key: rivals that rank below a are evicted and a's claims are raised (in another
    /// order a would have evicted them before losing its key). If a higher version holds or
    /// held one of a's values, a is dropped, and its key ends as if a had been written and then
    /// evicted: a row that a outranks (or that a updated) is removed, and the key's tombstone
    /// is raised to a's rank.
    fn place(
        &mut self,
        a_img: &'a Image,
        l: Option<Row>,
        causal: bool,
        rivals: Vec<Vec<Row>>,
        tomb: Option<Tomb>,
        claims: Vec<Option<Tomb>>,
    ) {
        let t = self.t;
        let a = Row::from_image(t, a_img);
        if l.as_ref().is_some_and(|l| l.hash == a.hash) {
            return;
        }
        // a on its primary key.
        enum Pk {
            Wins(Option<Rule>),
            LostToTomb(Rule),
            LostToRow(Rule),
        }
        let pk = match (&l, &tomb) {
            (None, Some(tb))
                if beats_rank(a.version(self.v), &a.hash, &tb.version, &tb.hash).is_none() =>
            {
                Pk::LostToTomb(
                    beats_rank(&tb.version, &tb.hash, a.version(self.v), &a.hash)
                        .unwrap_or(Rule::TieHash),
                )
            }
            (None, _) => Pk::Wins(None),
            (Some(_), _) if causal => Pk::Wins(None),
            (Some(l), _) => match beats(&a, l, self.v) {
                Some(rule) => Pk::Wins(Some(rule)),
                None => Pk::LostToRow(beats(l, &a, self.v).unwrap_or(Rule::TieHash)),
            },
        };
        // a's unique values.
        let mut evict: Vec<(usize, Row, Rule)> = Vec::new();
        let mut lost_unique: Option<(Rule, Option<Row>)> = None;
        let mut claims = claims.into_iter();
        for (n, read) in unique_keys_of(t, a_img).zip(rivals) {
            if let Some(c) = claims.next().flatten() {
                if let Some(rule) = beats_rank(&c.version, &c.hash, a.version(self.v), &a.hash) {
                    lost_unique.get_or_insert((rule, None));
                }
            }
            let cols = &t.unique_keys[n].columns;
            for r in self.overlay.rivals(t, &a, cols, read) {
                match beats(&a, &r, self.v) {
                    Some(rule) => evict.push((n, r, rule)),
                    None => {
                        let rule = beats(&r, &a, self.v).unwrap_or(Rule::TieHash);
                        lost_unique = Some((rule, Some(r)));
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
            self.tombstone(&r);
            self.overlay.set(t, &r, None);
            self.record(rule, Resolution::EvictedLocal, &r, Some(&a));
        }
        self.claim(a_img);
        match (lost_unique, pk) {
            (Some((rule, winner)), pk) => {
                self.record(rule, Resolution::LocalWonUnique, &a, winner.as_ref());
                if let Pk::Wins(_) = pk {
                    if let Some(l) = &l {
                        self.out.writes.push(Write::Delete(a_img));
                        self.overlay.set(t, l, None);
                        self.record(rule, Resolution::RemovedUnique, l, winner.as_ref());
                    }
                    self.tombstone(&a);
                }
            }
            (None, Pk::Wins(rule)) => {
                match &l {
                    Some(l) => {
                        if let Some(rule) = rule {
                            self.record(rule, Resolution::IncomingWon, l, Some(&a));
                        }
                        self.out.writes.push(Write::Update(a_img));
                    }
                    None => self.out.writes.push(Write::Insert(a_img)),
                }
                self.overlay.set(t, &a, Some(a.clone()));
            }
            (None, Pk::LostToTomb(rule)) => {
                self.record(rule, Resolution::TombstoneWon, &a, None);
            }
            (None, Pk::LostToRow(rule)) => {
                if let Some(l) = &l {
                    self.record(rule, Resolution::LocalWon, &a, Some(l));
                }
            }
        }
    }
}

/// Decides change `c` of a table whose version column is ordinal `v`. `found` holds the rows of
/// each of [`lookups`]`(c)`, in that order; `tombs` the tombstones at the keys of
/// [`tomb_lookups`]`(c)`, in that order (`None` where the row exists or no tombstone is there);
/// `overlay` carries the writes of earlier changes of the same level.
pub fn decide<'a>(
    c: &'a RowChange,
    v: usize,
    found: Vec<Vec<Row>>,
    tombs: Vec<Option<Tomb>>,
    claims: Vec<Option<Tomb>>,
    overlay: &mut Overlay,
) -> Outcome<'a> {
    let mut tombs = tombs.into_iter();
    let t = &*c.table;
    // The tombstone at the next key of `tomb_lookups`, named by `probe`.
    let mut tomb =
        |ctx: &Ctx<'a, '_>, probe: &Image| ctx.overlay.tomb(t, probe, tombs.next().flatten());
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
        ctx.overlay.pk(t, probe, read)
    };
    match (c.kind, &c.before, &c.after) {
        (ChangeKind::Delete, Some(b), _) => {
            let l = pk(&mut ctx, b, found.next());
            let tb = tomb(&ctx, b);
            ctx.delete(b, l, tb);
            ctx.claim(b);
        }
        (ChangeKind::Insert, _, Some(a)) => {
            let l = pk(&mut ctx, a, found.next());
            let ta = tomb(&ctx, a);
            ctx.place(a, l, false, found.collect(), ta, claims);
        }
        (ChangeKind::Update, Some(b), Some(a)) => {
            if same_key(t, b, a) {
                let l = pk(&mut ctx, a, found.next());
                let b_hash = Row::from_image(t, b).hash;
                let causal = l.as_ref().is_some_and(|l| l.hash == b_hash);
                let ta = tomb(&ctx, a);
                ctx.place(a, l, causal, found.collect(), ta, claims);
            } else {
                let lb = pk(&mut ctx, b, found.next());
                let tb = tomb(&ctx, b);
                ctx.delete(b, lb, tb);
                let la = pk(&mut ctx, a, found.next());
                let ta = tomb(&ctx, a);
                ctx.place(a, la, false, found.collect(), ta, claims);
            }
            ctx.claim(b);
        }
        _ => {}
    }
    ctx.out
}

#[cfg(test)]
mod tests;
