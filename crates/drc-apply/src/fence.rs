//! The fence: at most one drc replica applies to a center at any time, enforced by the
//! center's own database (design invariant 5).
//!
//! Tables in the target's meta database (local state: the link filter never replicates them;
//! their definitions are `drc_meta::schema`'s):
//! - `fence (center PK, term, replica, taken_at)`: the term allowed to apply;
//! - `term_history (center, term PK, replica, started_at)`: every term that took the fence;
//! - `apply_log (link, worker, slot PK, batch, term, replica, committed_at)`: one row per
//!   committed apply transaction, in a ring of `slots` rows per link worker
//!   (slot = batch mod slots), written in that transaction.
//!
//! Protocol:
//! 1. A new leader of term T **takes** the fence ([`take`]): in one transaction it raises
//!    `fence.term` to T unless it is already higher, reads it back, and when it holds T
//!    appends its `term_history` row. The update waits for the row lock of every in-flight
//!    apply transaction (step 2), so it completes only after they committed or rolled back.
//!    A transaction left open by a paused old leader would block it forever, so after one
//!    second the blockers' server threads are killed (rolled back; see `kill_blockers`).
//! 2. Every apply transaction begins with `SELECT term ... LOCK IN SHARE MODE` on the fence row
//!    ([`Fence::check_statement`]) and stops with [`LinkError::Fenced`] (after `ROLLBACK`) when
//!    the term is not its own. On MariaDB the check is one statement in front of the
//!    transaction's first query ([`Fence::guard_statement`]: a `SIGNAL` when the term is not
//!    its own, so nothing after it runs), which saves the check its own round trip. The
//!    shared lock is held to `COMMIT`, so the fence cannot move while the transaction runs,
//!    and once it moved, every later transaction of the old term sees it. Hence: after the
//!    fence moved to T, no transaction of a term below T commits.
//! 3. Each apply transaction also stamps the checkpoint rows with its term (in the checkpoint
//!    statement) and writes its `apply_log` row ([`Fence::log_statement`]), which is how tests
//!    (and operators) check step 2 from the database alone.
//!
//! A center without replicas runs one daemon with term 0: it takes the fence only while the
//! stored term is 0 (or missing), so a daemon left running after the center moved to replicas
//! (terms start at 1) is fenced out, and a standalone daemon never overrides replicas.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::LinkError;

/// The error code of [`Fence::guard_statement`] (a user-defined `SIGNAL`; no server error has
/// it).
pub const FENCED: u16 = 31_998;

/// The term and identity an applier writes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The meta database of the target center.
    pub meta: String,
    /// The target center's name (the fence row's key).
    pub center: String,
    /// This replica's index (0 for a standalone daemon).
    pub replica: u32,
    /// The term this replica leads (0 for a standalone daemon).
    pub term: u64,
    /// Ring size of `apply_log` per link worker.
    pub slots: u64,
}

impl Fence {
    /// The locking read that starts every apply transaction; returns `(term, replica)`.
    pub fn check_statement(&self) -> String {
        drc_meta::fence::check_statement(&self.meta, &self.center)
    }

    /// The check as one statement that fails with [`FENCED`] unless the fence holds this
    /// term, taking the same shared lock (MariaDB only): it rides in front of the
    /// transaction's first writes or reads, in their query.
    pub fn guard_statement(&self) -> String {
        drc_meta::fence::guard_statement(&self.meta, &self.center, self.term, FENCED)
    }

    /// True for the error of [`Fence::guard_statement`].
    pub fn tripped(e: &LinkError) -> bool {
        e.target_code() == Some(FENCED)
    }

    /// The [`LinkError::Fenced`] of a transaction whose guard tripped (rolled back), with the
    /// fence row read again for the message.
    pub async fn fenced_now(&self, conn: &mut Conn) -> LinkError {
        let q = drc_meta::fence::read_statement(&self.meta, &self.center);
        match conn.query_first::<(u64, u32), _>(q).await {
            Ok(stored) => self.fenced(stored),
            Err(e) => LinkError::target("reading the fence", e),
        }
    }

    /// The error for a fence row that is not this replica's term.
    pub fn fenced(&self, stored: Option<(u64, u32)>) -> LinkError {
        LinkError::Fenced {
            center: self.center.clone(),
            term: self.term,
            stored_term: stored.map(|s| s.0),
            stored_replica: stored.map(|s| s.1),
        }
    }

    /// This transaction's `apply_log` row; the applier stamps the checkpoint row's term in the
    /// checkpoint statement itself (`drc_meta::stamped_checkpoint_statement`).
    pub fn log_statement(&self, link: &str, worker: u32, batch: u64) -> String {
        drc_meta::fence::log_statement(
            &self.meta,
            link,
            worker,
            batch,
            self.term,
            self.replica,
            self.slots,
        )
    }
}

/// How long the fence update may wait for a lock before its blockers are killed.
const BLOCKER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Kills the server threads whose transactions block thread `waiter`'s lock request. They
/// can only be apply transactions of an older term (every apply transaction holds the fence
/// row's shared lock) whose replica stopped between its fence check and its commit (paused,
/// or cut off from the database mid-transaction): killing one rolls it back, which the
/// checkpoints make harmless. Needs the PROCESS privilege (to see the lock waits) and the
/// same user as the appliers (to kill their threads); without them the update just waits.
async fn kill_blockers(url: &str, waiter: u32) -> Result<Vec<u64>, LinkError> {
    let mut c = drc_mysql::connect(url, std::time::Duration::from_secs(5)).await?;
    let blockers: Vec<u64> = c
        .exec(
            "SELECT DISTINCT b.trx_mysql_thread_id FROM information_schema.INNODB_LOCK_WAITS w \
             JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id \
             JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id \
             WHERE r.trx_mysql_thread_id = ?",
            (waiter,),
        )
        .await
        .map_err(|e| LinkError::target("finding the fence's blockers", e))?;
    for id in &blockers {
        // The thread may have ended meanwhile: ignore "unknown thread".
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    Ok(blockers)
}

/// Takes the fence for `fence.term` (see the module docs). `Ok` when this replica now holds
/// it; [`LinkError::Fenced`] when a newer term (or, for a standalone daemon, any replica term)
/// holds it. `url` is the target's (a second connection kills transactions of older terms
/// that hold the fence row for more than a second, see [`kill_blockers`]).
pub async fn take(conn: &mut Conn, url: &str, fence: &Fence) -> Result<(), LinkError> {
    drc_meta::ensure_schema(conn, &fence.meta).await?;
    let t = fence.term;
    let up = drc_meta::fence::take_statement(&fence.meta, &fence.center, t, fence.replica);
    let waiter = conn.id();
    let run = async {
        conn.query_drop("START TRANSACTION").await?;
        {
            let update = conn.query_drop(&up);
            tokio::pin!(update);
            loop {
                tokio::select! {
                    r = &mut update => { r?; break; }
                    _ = tokio::time::sleep(BLOCKER_GRACE) => {
                        match kill_blockers(url, waiter).await {
                            Ok(killed) if !killed.is_empty() => tracing::warn!(
                                term = fence.term, ?killed,
                                "killed transactions of an older term that held the fence"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot look for the fence's blockers"),
                        }
                    }
                }
            }
        }
        let stored: Option<(u64, u32)> = conn.query_first(fence.check_statement()).await?;
        Ok::<_, mysql_async::Error>(stored)
    };
    let stored = match run.await {
        Ok(s) => s,
        Err(e) => {
            let _ = conn.query_drop("ROLLBACK").await;
            return Err(LinkError::target("taking the fence", e));
        }
    };
    if stored != Some((t, fence.replica)) && !(t == 0 && stored.map(|s| s.0) == Some(0)) {
        let _ = conn.query_drop("ROLLBACK").await;
        return Err(fence.fenced(stored));
    }
    let hist = drc_meta::fence::history_statement(&fence.meta, &fence.center, t, fence.replica);
    let fin = async {
        conn.query_drop(&hist).await?;
        conn.query_drop("COMMIT").await
    };
    if let Err(e) = fin.await {
        let _ = conn.query_drop("ROLLBACK").await;
        return Err(LinkError::target("taking the fence", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence() -> Fence {
        Fence {
            meta: "drc_meta".into(),
            center: "b".into(),
            replica: 2,
            term: 7,
            slots: 1024,
        }
    }

    #[test]
    fn statements_name_the_center_term_and_slot() {
        let f = fence();
        assert_eq!(
            f.check_statement(),
            "SELECT `term`, `replica` FROM `drc_meta`.`fence` WHERE `center` = 'b' LOCK IN SHARE MODE"
        );
        let r = f.log_statement("a->b", 3, 2049);
        assert!(r.starts_with("INSERT INTO `drc_meta`.`apply_log`"), "{r}");
        assert!(
            r.contains("VALUES ('a->b', 3, 1, 2049, 7, 2, NOW(6))"),
            "{r}"
        );
    }

    #[test]
    fn the_term_rides_in_the_checkpoint_upsert() {
        let f = fence();
        let cp = drc_meta::Checkpoint {
            worker: 3,
            batch: 2049,
            workers: 4,
            start: "0-1-1".parse().expect("a GTID position"),
            end: "0-1-2".parse().expect("a GTID position"),
        };
        let q = drc_meta::stamped_checkpoint_statement(&f.meta, "a->b", &cp, Some(f.term));
        assert!(
            q.contains(", `term`) VALUES ('a->b', 3, 2049, 4, '0-1-1', '0-1-2', 7)"),
            "{q}"
        );
        assert!(q.ends_with(", `term` = VALUES(`term`)"), "{q}");
        let plain = drc_meta::stamped_checkpoint_statement(&f.meta, "a->b", &cp, None);
        assert_eq!(plain, drc_meta::checkpoint_statement(&f.meta, "a->b", &cp));
        assert!(!plain.contains("`term`"), "{plain}");
    }

    #[test]
    fn fenced_error_says_who_holds_it() {
        let e = fence().fenced(Some((9, 0))).to_string();
        assert!(
            e.contains("term 7") && e.contains("term 9") && e.contains("replica 0"),
            "{e}"
        );
        assert!(!fence().fenced(None).is_transient());
    }
}
