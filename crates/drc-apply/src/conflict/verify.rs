//! The **verify** step of conflict resolution (protocol in [`super`]): rows a level wrote are
//! checked once more against the tombstones and claims read *after* the write.
//!
//! A missing row is not locked by the lookup, so a local writer can create and remove the key
//! between the lookup and the insert; its delete's tombstone may then outrank the row
//! inserted. Likewise a local writer can hold a unique value meanwhile and leave a claim that
//! outranks the written row. So every insert at a key found missing, and every insert or
//! update that holds unique values, is checked after it is sent: with the next level's
//! tombstone read ([`super::read`]), or, for the last level, before the commit
//! ([`Unverified::finish`]). The tombstones are read once the local-delete reader has passed
//! the target's position after the write, and a tombstone or claim that now outranks the row
//! fails the share with [`LinkError::ConflictRead`] (transient), which decides it again from
//! fresh reads. From the write on, the row exists and is locked, so no local write can slip in
//! any more. When the local domain's GTID did not move between the lookups before the write
//! and the position read after it, no local transaction committed in that window, and the
//! check is skipped (MariaDB only: elsewhere it always runs).
//!
//! Only with a local-delete reader ([`Progress`]): without one there are no local tombstones
//! to wait for.

use drc_core::position::Position;
use drc_core::schema::TableSchema;
use mysql_async::Conn;

use super::canon::Canon;
use super::decide::{self, claim_hash, Row, Tomb, Write};
use super::read::{position_after, read_tombstones, wait_for_reader, Marks};
use super::tombstone::{self, Progress};
use crate::size::Joiner;
use crate::LinkError;

/// A row written at a key that was missing, or holding unique values, to be checked against
/// the key's tombstone or the values' claims once more after the write.
#[derive(Debug)]
pub(super) struct Written {
    /// A claim (the row's own rank is fine) rather than a primary-key tombstone (the row
    /// must outrank it).
    claim: bool,
    table: String,
    /// A primary-key hash (tombstone) or a claim hash.
    key: [u8; 32],
    version: Canon,
    hash: [u8; 32],
    /// The highest tombstone this level's folded chain wrote at the key itself
    /// ([`super::net`]): found there again, it is not a local writer's.
    own: Option<Tomb>,
}

impl Written {
    /// The key of a primary-key check (`None` for a claim).
    pub(super) fn tomb_key(&self) -> Option<[u8; 32]> {
        (!self.claim).then_some(self.key)
    }

    /// The check, knowing that the level itself raised the key's tombstone to `own`.
    pub(super) fn with_own(mut self, own: Option<&Tomb>) -> Written {
        if !self.claim {
            self.own = own.cloned();
        }
        self
    }
}

/// The checks one write of table `t` (version column `version`) needs: an insert at a key of
/// `missing` (the keys its change found missing) against the key's tombstone, and an insert
/// or update against the claims of each of its unique values. Other writes need none.
pub(super) fn rechecks(
    t: &TableSchema,
    version: usize,
    w: &Write<'_>,
    missing: &[Option<[u8; 32]>],
) -> Vec<Written> {
    let (img, inserted) = match w {
        Write::Insert(img) => (img, true),
        Write::Update(img) => (img, false),
        _ => return Vec::new(),
    };
    let pk_hash = super::decide::image_pk_hash(t, img);
    let at_missing = inserted && missing.contains(&Some(pk_hash));
    if !at_missing && t.unique_keys.is_empty() {
        return Vec::new();
    }
    let row = Row::from_image(t, img);
    let check = |key, claim| Written {
        claim,
        table: t.qualified_name(),
        key,
        version: row.vals.get(version).cloned().unwrap_or(Canon::Null),
        hash: row.hash,
        own: None,
    };
    let mut out = Vec::new();
    if at_missing {
        out.push(check(pk_hash, false));
    }
    for n in 0..t.unique_keys.len() {
        if let Some(h) = claim_hash(t, n, img) {
            out.push(check(h, true));
        }
    }
    out
}

/// The writes of the last level run, still to be checked.
#[derive(Debug, Default)]
pub(super) struct Unverified {
    /// The checks ([`rechecks`]).
    pub(super) written: Vec<Written>,
    /// The target's position read after that level's lookups, before its writes.
    pub(super) before: Option<Position>,
}

impl Unverified {
    /// The keys to read again: `(db.table, key hash)` per check.
    pub(super) fn keys(&self) -> Vec<(String, [u8; 32])> {
        self.written
            .iter()
            .map(|v| (v.table.clone(), v.key))
            .collect()
    }

    /// Checks the writes against `marks`, read after them ([`check_written`]).
    pub(super) fn check(&self, marks: &Marks) -> Result<(), LinkError> {
        check_written(&self.written, marks)
    }

    /// The check of the last level's writes. With `defer` and a guard to defer to
    /// ([`Progress::local_commit_guard`]: MariaDB), it is pushed into `pending` after the writes
    /// and returned as a [`Deferred`]: the caller's commit query then runs it, and only when it
    /// fails does the check run ([`Deferred::settle`]). Otherwise: sends the writes (what
    /// `pending` holds) and reads the target's position after them in one query, and — unless no
    /// local transaction committed since `before` ([`Progress::no_local_commit_between`]) —
    /// waits for the local-delete reader to pass it and reads the tombstones and claims again.
    pub(super) async fn finish(
        self,
        conn: &mut Conn,
        pending: &mut Joiner,
        meta: &str,
        progress: Option<&mut Progress>,
        defer: bool,
    ) -> Result<Option<Deferred>, LinkError> {
        let Some(p) = progress else {
            return Ok(None);
        };
        if self.written.is_empty() {
            return Ok(None);
        }
        if defer {
            if let Some(guard) = self.before.as_ref().and_then(|b| p.local_commit_guard(b)) {
                pending.push(conn, &guard, "local commit check").await?;
                return Ok(Some(Deferred(self)));
            }
        }
        // The writes and the position after them in one query.
        let after = position_after(conn, pending, p).await?;
        let quiet = match (&self.before, &after) {
            (Some(a), Some(b)) => p.no_local_commit_between(a, b),
            _ => false,
        };
        if !quiet {
            self.recheck(conn, pending.limit(), meta, p, after.as_ref())
                .await?;
        }
        Ok(None)
    }

    /// Waits for the local-delete reader to pass `after` and checks the writes against the
    /// tombstones and claims read then.
    async fn recheck(
        &self,
        conn: &mut Conn,
        limit: usize,
        meta: &str,
        p: &mut Progress,
        after: Option<&Position>,
    ) -> Result<(), LinkError> {
        wait_for_reader(p, after).await?;
        let marks = read_tombstones(conn, meta, &self.keys(), limit).await?;
        self.check(&marks)
    }
}

/// The last level's check, left to the guard that the commit's query runs after the writes
/// ([`Unverified::finish`]).
#[derive(Debug)]
pub struct Deferred(Unverified);

impl Deferred {
    /// True for the error of the guard: a local transaction committed since the lookups, and
    /// the query stopped after the writes, before the commit ([`Deferred::settle`]).
    pub fn tripped(e: &LinkError) -> bool {
        e.target_code() == Some(tombstone::LOCAL_COMMIT_SEEN)
    }

    /// The check, after the guard tripped (the writes ran, the transaction is still open): the
    /// position now, the local-delete reader past it, the tombstones and claims read again. A
    /// write a local writer's tombstone or claim now outranks fails the share with
    /// [`LinkError::ConflictRead`]; otherwise the caller sends the rest of its commit query.
    pub async fn settle(
        self,
        conn: &mut Conn,
        max_allowed_packet: u64,
        meta: &str,
        p: &mut Progress,
    ) -> Result<(), LinkError> {
        let mut none = Joiner::new(max_allowed_packet, crate::size::MAX_QUERY);
        let after = position_after(conn, &mut none, p).await?;
        self.0
            .recheck(conn, none.limit(), meta, p, after.as_ref())
            .await
    }
}

/// Fails (transiently: the share is decided again) when a tombstone read after the inserts
/// outranks a row this share inserted, or a claim outranks a row that holds its value: a local
/// writer created and removed the key, or held the value, between the row lookup and the
/// write, and its tombstone or claim was not there at the first read.
fn check_written(verify: &[Written], found: &Marks) -> Result<(), LinkError> {
    for v in verify {
        if let Some(t) = found.get(&(v.table.clone(), v.key)) {
            let own = v.own.as_ref().is_some_and(|o| same_rank(o, t));
            let lost = if own {
                // The chain's own tombstone, the highest there: no local writer's is above it,
                // and the chain decided against everything below it that was there.
                false
            } else if v.claim {
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

/// Equal ranks: the same version and row hash.
fn same_rank(a: &Tomb, b: &Tomb) -> bool {
    a.hash == b.hash && a.version.cmp_version(&b.version) == std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use drc_core::change::Image;
    use drc_core::schema::{SqlType, UniqueKey};
    use drc_core::value::{Text, Value};

    use super::*;
    use crate::conflict::fixtures::col;

    /// `shop.users (id INT PRIMARY KEY, email VARCHAR UNIQUE, version BIGINT)`.
    fn users() -> TableSchema {
        TableSchema {
            database: "shop".into(),
            table: "users".into(),
            columns: vec![
                col("id", SqlType::Int),
                col("email", SqlType::String),
                col("version", SqlType::BigInt),
            ],
            primary_key: vec![0],
            unique_keys: vec![UniqueKey {
                name: "email".into(),
                columns: vec![1],
            }],
            unique_keys_known: true,
        }
    }

    fn img(id: i64, email: Option<&str>, version: i64) -> Image {
        Image(vec![
            Some(Value::Int(id)),
            Some(email.map_or(Value::Null, |e| Value::Text(Text::utf8(e)))),
            Some(Value::Int(version)),
        ])
    }

    fn pk(t: &TableSchema, i: &Image) -> [u8; 32] {
        Row::from_image(t, i).pk_hash(t)
    }

    fn kinds(checks: &[Written]) -> Vec<bool> {
        checks.iter().map(|c| c.claim).collect()
    }

    #[test]
    fn an_insert_at_a_missing_key_checks_its_tombstone_and_its_claims() {
        let t = users();
        let i = img(1, Some("a@x"), 5);
        let checks = rechecks(&t, 2, &Write::Insert(&i), &[Some(pk(&t, &i))]);
        assert_eq!(kinds(&checks), [false, true]);
        assert_eq!(checks[0].key, pk(&t, &i));
        assert_eq!(checks[0].version, Canon::Int(5));
        assert_eq!(checks[0].table, "shop.users");
        assert_eq!(Some(checks[1].key), claim_hash(&t, 0, &i));
    }

    #[test]
    fn only_inserts_at_missing_keys_check_tombstones() {
        let t = users();
        let i = img(1, Some("a@x"), 5);
        // The key existed (its lookup found a row): only the claim.
        assert_eq!(kinds(&rechecks(&t, 2, &Write::Insert(&i), &[None])), [true]);
        // An update writes a locked row: only the claim.
        let missing = [Some(pk(&t, &i))];
        assert_eq!(
            kinds(&rechecks(&t, 2, &Write::Update(&i), &missing)),
            [true]
        );
        // A NULL unique value claims nothing; deletes and evictions need no check.
        let n = img(2, None, 5);
        assert!(rechecks(&t, 2, &Write::Update(&n), &[]).is_empty());
        assert!(rechecks(&t, 2, &Write::Delete(&i), &missing).is_empty());
        assert!(rechecks(&t, 2, &Write::Evict(&i, 0), &missing).is_empty());
    }

    #[test]
    fn a_chains_own_tombstone_does_not_count_against_its_insert() {
        let mut t = users();
        t.unique_keys.clear();
        let i = img(1, Some("a@x"), 5);
        let own = Tomb {
            version: Canon::Int(6),
            hash: [7; 32],
        };
        let checks: Vec<Written> = rechecks(&t, 2, &Write::Insert(&i), &[Some(pk(&t, &i))])
            .into_iter()
            .map(|c| c.with_own(Some(&own)))
            .collect();
        let at = |tomb: Tomb| Marks::from([(("shop.users".to_string(), pk(&t, &i)), tomb)]);
        // The chain deleted the row it inserted at a newer rank: that tombstone is its own.
        assert!(check_written(&checks, &at(own.clone())).is_ok());
        // Above the chain's own: a local writer's, which the chain did not decide against.
        let newer = Tomb {
            version: Canon::Int(7),
            hash: [0; 32],
        };
        assert!(matches!(
            check_written(&checks, &at(newer)),
            Err(LinkError::ConflictRead(_))
        ));
    }

    #[test]
    fn a_write_is_lost_when_a_later_tombstone_or_claim_outranks_it() {
        let t = users();
        let i = img(1, Some("a@x"), 5);
        let checks = rechecks(&t, 2, &Write::Insert(&i), &[Some(pk(&t, &i))]);
        let (tomb_key, claim_key) = (checks[0].key, checks[1].key);
        let row = Row::from_image(&t, &i);
        let at = |key, version: i128, hash| {
            Marks::from([(
                ("shop.users".to_string(), key),
                Tomb {
                    version: Canon::Int(version),
                    hash,
                },
            )])
        };
        assert!(check_written(&checks, &Marks::new()).is_ok());
        // Lower ranks than the row written: it stays.
        assert!(check_written(&checks, &at(tomb_key, 4, [0xff; 32])).is_ok());
        assert!(check_written(&checks, &at(claim_key, 4, [0xff; 32])).is_ok());
        // Its own claim (same rank) is fine; a tombstone at its own rank is not outranked.
        assert!(check_written(&checks, &at(claim_key, 5, row.hash)).is_ok());
        assert!(matches!(
            check_written(&checks, &at(tomb_key, 5, row.hash)),
            Err(LinkError::ConflictRead(_))
        ));
        // Higher ranks: the share is decided again.
        for key in [tomb_key, claim_key] {
            assert!(matches!(
                check_written(&checks, &at(key, 6, [0; 32])),
                Err(LinkError::ConflictRead(_))
            ));
        }
    }
}
