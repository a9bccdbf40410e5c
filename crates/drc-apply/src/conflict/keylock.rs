//! Key locks shared by every link into one center: a share with last-writer-wins changes holds
//! the locks of every key value it touches (primary key and unique keys, before and after
//! images) from before its transaction starts until it commits or rolls back.
//!
//! Why: the database locks rows that exist, but nothing locks a row that is *missing*. Two
//! links into the same center can then decide the same missing key at once without ever
//! meeting in a lock: link b->c brings a delete of a row c does not have (it writes only a
//! tombstone), while link a->c brings an older insert of that key, reads no tombstone (the
//! delete's is not committed yet) and inserts. Both commit, and c keeps a row that every other
//! center deleted. Unique values suffer the same way. Within one link, the planner already puts
//! changes of one key into one share ([`crate::plan`]); these locks serialize shares of
//! *different* links that touch a common key value, which is exactly the conflicting case.
//!
//! Every applier of a center runs in the center's one active drc process: the term fence
//! ([`crate::fence`]) lets no transaction of an older leader overlap the new leader's, so an
//! in-process lock table covers all of drc's concurrent writers. Local writers are covered by
//! the database (locking reads, duplicate-key errors, the local-delete reader).
//!
//! Deadlock freedom: a share takes all its locks, in ascending order, before it opens its
//! transaction, and never waits for a key lock while holding database locks; database lock
//! waits therefore never form a cycle through this table.
//!
//! Keys are hashed (64 bits); a collision only makes two unrelated shares wait for each other.
//! The keys are the planner's key signatures ([`crate::plan`]): text is folded by each key
//! column's collation, over-approximating what the server equates ([`drc_core::collation`]:
//! case, accents, expansions like `ß` = `ss`, trailing spaces), so values the server treats as
//! one share a lock; an unknown collation locks the key as a whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use drc_core::change::RowChange;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Table = HashMap<u64, Arc<AsyncMutex<()>>>;

/// The lock table of one center (cheap to clone; clones share the table).
#[derive(Debug, Clone, Default)]
pub struct KeyLocks {
    table: Arc<Mutex<Table>>,
}

/// The locks one share holds; released on drop.
#[derive(Debug)]
pub struct KeyGuard {
    guards: Vec<OwnedMutexGuard<()>>,
    keys: Vec<u64>,
    table: Arc<Mutex<Table>>,
}

impl KeyLocks {
    /// An empty lock table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the locks of `keys` (any order, duplicates allowed), waiting for shares that hold
    /// any of them.
    pub async fn lock(&self, mut keys: Vec<u64>) -> KeyGuard {
        keys.sort_unstable();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for k in &keys {
            let m = {
                let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
                t.entry(*k).or_default().clone()
            };
            guards.push(m.lock_owned().await);
        }
        KeyGuard {
            guards,
            keys,
            table: self.table.clone(),
        }
    }

    /// How many keys have an entry (held or waited for); for tests.
    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// True when no key is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.guards.clear();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            // Only the table holds it: nobody holds or waits for this key any more.
            if t.get(k).is_some_and(|m| Arc::strong_count(m) == 1) {
                t.remove(k);
            }
        }
    }
}

/// The lock keys of change `c`: every primary-key and unique-key value of its images (a table
/// whose unique keys are unknown locks as a whole), text folded by collation ([`crate::plan`]'s
/// key signatures).
pub fn keys_of(c: &RowChange, out: &mut Vec<u64>) {
    crate::plan::signatures(c, out, &mut crate::plan::SigBufs::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_held_key_makes_the_second_share_wait_until_release() {
        let locks = KeyLocks::new();
        let g1 = locks.lock(vec![3, 1, 2, 1]).await;
        let l2 = locks.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(vec![5, 2]).await;
            let _ = tx.send(());
        });
        // The waiter cannot get key 2 while g1 holds it.
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut rx)
            .await
            .is_err());
        drop(g1);
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the waiter gets the keys after release")
            .expect("sender kept");
        waiter.await.expect("waiter task");
        assert!(locks.is_empty(), "released keys leave the table");
    }

    #[test]
    fn keys_cover_both_images_and_fold_case_and_trailing_spaces() {
        use drc_core::change::{ChangeKind, Image};
        use drc_core::schema::{ColumnSchema, SqlType, TableSchema, UniqueKey};
        use drc_core::value::{Text, Value};
        let col = |n: &str, t| ColumnSchema {
            name: n.into(),
            sql_type: t,
            unsigned: false,
            collation: None,
        };
        let mut email = col("email", SqlType::String);
        email.collation = Some(drc_core::collation::Collation::new("utf8mb4_unicode_ci"));
        let t = std::sync::Arc::new(TableSchema {
            database: "shop".into(),
            table: "users".into(),
            columns: vec![col("id", SqlType::Int), email],
            primary_key: vec![0],
            unique_keys: vec![UniqueKey {
                name: "email".into(),
                columns: vec![1],
            }],
            unique_keys_known: true,
        });
        let img = |id: i64, email: Option<&str>| {
            Image(vec![
                Some(Value::Int(id)),
                Some(email.map_or(Value::Null, |e| Value::Text(Text::utf8(e)))),
            ])
        };
        let keys = |before: Option<Image>, after: Option<Image>| {
            let c = RowChange {
                table: t.clone(),
                kind: ChangeKind::Update,
                before,
                after,
            };
            let mut out = Vec::new();
            keys_of(&c, &mut out);
            out
        };
        let k = keys(Some(img(1, Some("A@x "))), Some(img(2, None)));
        assert_eq!(
            k.len(),
            3,
            "id 1, its email, id 2 (a NULL email has no key)"
        );
        assert_eq!(keys(None, Some(img(7, Some("a@X"))))[1], k[1], "folded");
        assert_eq!(
            keys(None, Some(img(7, Some("Á@x"))))[1],
            k[1],
            "accents folded"
        );
        assert_ne!(keys(None, Some(img(7, Some("b@x"))))[1], k[1]);
        assert_ne!(keys(None, Some(img(1, None)))[0], k[2]);
        assert_eq!(keys(None, Some(img(1, None)))[0], k[0]);
    }

    #[tokio::test]
    async fn disjoint_keys_do_not_wait() {
        let locks = KeyLocks::new();
        let _g1 = locks.lock(vec![1, 2]).await;
        let g2 = tokio::time::timeout(Duration::from_secs(10), locks.lock(vec![3, 4])).await;
        assert!(g2.is_ok());
        assert_eq!(locks.len(), 4);
    }

    #[tokio::test]
    async fn crossing_orders_do_not_deadlock() {
        let locks = KeyLocks::new();
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let l = locks.clone();
            let keys = if i % 2 == 0 {
                vec![1, 2, 3]
            } else {
                vec![3, 2, 1]
            };
            tasks.push(tokio::spawn(async move {
                let _g = l.lock(keys).await;
                tokio::task::yield_now().await;
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("no deadlock")
                .expect("task");
        }
        assert!(locks.is_empty());
    }
}
