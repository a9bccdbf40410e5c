//! Comparing one primary-key range across every center, exactly while writes are in flight.
//!
//! 1. Each center computes the range's checksum ([`crate::sql::checksum`]); its binlog
//!    position is read right after. All equal: the range agrees (the common case; no wait).
//! 2. Otherwise verify waits until every link has applied what every center had committed at
//!    its read ([`crate::catchup`]) and computes the checksums again. Equal now: the
//!    difference was a change in flight.
//! 3. Still different: the range is narrowed to keys. Each center lists its rows' keys and
//!    hashes ([`crate::sql::row_hashes`]); the keys whose hashes differ (or that some centers
//!    lack) are candidates. Then, up to `tries` times: wait for the links to catch up past the
//!    last listing, list again, and keep the candidates that still differ. A candidate whose
//!    hashes in every center are the same as in the previous listing, after a wait that
//!    caught up, is a **confirmed** difference: every center had applied every change the
//!    others had made to that row, and the rows stayed apart. Candidates that keep changing
//!    until the tries are spent are reported as unconfirmed (a row written continuously in
//!    several centers); so are differences seen while a link lagged (named in the report).
//!
//! A key that differs in one listing and agrees in the next is dropped: it was in flight.
//! Rows that appear in a later listing only (new writes) are not candidates: they are
//! compared when they differ in the first listing of some later verify.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use drc_core::position::Position;
use mysql_async::{Row, Value};

use crate::catchup;
use crate::centers::Centers;
use crate::error::VerifyError;
use crate::sql::{self, Key, Range};
use crate::tables::Table;

/// How a range is compared.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listings after the first, while candidates remain.
    pub tries: u32,
    /// How long to wait for the links to catch up past a read.
    pub catch_up_timeout: Duration,
}

/// One key that differs.
#[derive(Debug, Clone)]
pub struct KeyDiff {
    /// The primary key.
    pub key: Key,
    /// Per center (topology order): the row's hash, `None` when the center lacks the row.
    pub hashes: Vec<Option<u64>>,
    /// Confirmed (see the module docs).
    pub confirmed: bool,
}

/// What comparing a range found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows in the range in the first center at the first read.
    pub rows: u64,
    /// The slowest center's time for the first checksum.
    pub slowest: Duration,
    /// Keys that differ.
    pub diffs: Vec<KeyDiff>,
    /// Links that did not catch up when waited for.
    pub lagging: Vec<String>,
    /// A difference was seen and waited out.
    pub waited: bool,
}

fn u64_at(row: &Row, i: usize) -> u64 {
    match row.as_ref(i) {
        Some(Value::Int(v)) => u64::try_from(*v).unwrap_or(0),
        Some(Value::UInt(v)) => *v,
        Some(Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// The raw key of a row whose first `n` values are the primary key.
pub fn key_of(t: &Table, row: &Row) -> Key {
    t.def
        .pk
        .iter()
        .enumerate()
        .map(|(n, &col)| {
            let v = row.as_ref(n).cloned().unwrap_or(Value::NULL);
            drc_bootstrap::render::raw(&v, &t.def.columns[col].kind)
        })
        .collect()
}

type Listing = BTreeMap<Key, Vec<Option<u64>>>;

async fn listing(
    centers: &mut Centers,
    t: &Table,
    range: &Range,
) -> Result<(Listing, Vec<Position>), VerifyError> {
    let q = sql::row_hashes(t, range)?;
    let answers = centers
        .everywhere(&q, false, &format!("listing the rows of {}", t.name()))
        .await?;
    let n = answers.len();
    let mut out = Listing::new();
    let mut positions = Vec::with_capacity(n);
    for (i, (rows, pos)) in answers.into_iter().enumerate() {
        for r in &rows {
            let k = key_of(t, r);
            let h = u64_at(r, t.def.pk.len());
            out.entry(k).or_insert_with(|| vec![None; n])[i] = Some(h);
        }
        positions.push(pos);
    }
    Ok((out, positions))
}

fn differs(h: &[Option<u64>]) -> bool {
    h.windows(2).any(|w| w[0] != w[1])
}

/// Compares `range` of `t` across every center. `skip` are links known to lag (not waited
/// for again).
pub async fn compare(
    centers: &mut Centers,
    t: &Table,
    range: &Range,
    settings: &Settings,
    skip: &[String],
) -> Result<Outcome, VerifyError> {
    let q = sql::checksum(t, range)?;
    let what = format!("checksumming {}", t.name());
    let started = Instant::now();
    let first = centers.everywhere(&q, true, &what).await?;
    let mut out = Outcome {
        slowest: started.elapsed(),
        ..Outcome::default()
    };
    let sums = |a: &[(Vec<Row>, Position)]| -> Vec<(u64, u64)> {
        a.iter()
            .map(|(rows, _)| {
                rows.first()
                    .map(|r| (u64_at(r, 0), u64_at(r, 1)))
                    .unwrap_or((0, 0))
            })
            .collect()
    };
    let s = sums(&first);
    out.rows = s.first().map(|x| x.0).unwrap_or(0);
    if !s.windows(2).any(|w| w[0] != w[1]) {
        return Ok(out);
    }
    out.waited = true;
    let positions: Vec<Position> = first.into_iter().map(|(_, p)| p).collect();
    let mut lagging = catchup::wait(centers, &positions, settings.catch_up_timeout, skip).await?;
    if lagging.is_empty() {
        let again = centers.everywhere(&q, true, &what).await?;
        let s = sums(&again);
        if !s.windows(2).any(|w| w[0] != w[1]) {
            return Ok(out);
        }
    }
    // Narrowing to keys.
    let (mut prev, mut positions) = listing(centers, t, range).await?;
    let mut candidates: BTreeSet<Key> = prev
        .iter()
        .filter(|(_, h)| differs(h))
        .map(|(k, _)| k.clone())
        .collect();
    for _ in 0..settings.tries {
        if candidates.is_empty() {
            break;
        }
        let l = catchup::wait(centers, &positions, settings.catch_up_timeout, skip).await?;
        let caught_up = l.is_empty();
        for x in l {
            if !lagging.contains(&x) {
                lagging.push(x);
            }
        }
        let (cur, p) = listing(centers, t, range).await?;
        let n = centers.list.len();
        let mut next = BTreeSet::new();
        for k in candidates {
            let now = cur.get(&k).cloned().unwrap_or_else(|| vec![None; n]);
            if !differs(&now) {
                continue;
            }
            let before = prev.get(&k).cloned().unwrap_or_else(|| vec![None; n]);
            if caught_up && now == before {
                out.diffs.push(KeyDiff {
                    key: k,
                    hashes: now,
                    confirmed: true,
                });
            } else {
                next.insert(k);
            }
        }
        candidates = next;
        prev = cur;
        positions = p;
    }
    let n = centers.list.len();
    for k in candidates {
        let hashes = prev.get(&k).cloned().unwrap_or_else(|| vec![None; n]);
        out.diffs.push(KeyDiff {
            key: k,
            hashes,
            confirmed: false,
        });
    }
    out.lagging = lagging;
    Ok(out)
}

/// Every column of the rows at `keys`, per center (topology order): `None` where the center
/// lacks the row.
pub async fn values(
    centers: &mut Centers,
    t: &Table,
    keys: &[Key],
) -> Result<BTreeMap<Key, Vec<Option<Vec<Value>>>>, VerifyError> {
    let n = centers.list.len();
    let mut out: BTreeMap<Key, Vec<Option<Vec<Value>>>> =
        keys.iter().map(|k| (k.clone(), vec![None; n])).collect();
    for part in keys.chunks(200) {
        let q = sql::rows(t, part)?;
        let answers = centers
            .everywhere(&q, false, &format!("reading rows of {}", t.name()))
            .await?;
        for (i, (rows, _)) in answers.into_iter().enumerate() {
            for r in rows {
                let vals: Vec<Value> = (0..t.def.columns.len())
                    .map(|c| r.as_ref(c).cloned().unwrap_or(Value::NULL))
                    .collect();
                let key: Key = t
                    .def
                    .pk
                    .iter()
                    .map(|&c| drc_bootstrap::render::raw(&vals[c], &t.def.columns[c].kind))
                    .collect();
                if let Some(slot) = out.get_mut(&key) {
                    slot[i] = Some(vals);
                }
            }
        }
    }
    Ok(out)
}
