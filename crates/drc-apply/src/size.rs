//! Size limits: every query drc sends to a target fits the target's `max_allowed_packet`.
//!
//! A MySQL/MariaDB server refuses a query packet larger than its `max_allowed_packet` (the
//! driver refuses it even before sending, since it knows the server's value), and the same
//! query fails the same way every time: such an error is permanent
//! ([`drc_mysql::is_packet_too_large`]), never retried.
//!
//! So each connection reads its session's `max_allowed_packet` once ([`read_max_allowed_packet`])
//! and every writer of drc splits its work into queries of at most [`budget`] bytes:
//!
//! - statements of many rows are closed before a row would push them over the budget
//!   ([`crate::sql::statements`]);
//! - statements joined into one round trip (`;`-separated, one transaction) go through a
//!   [`Joiner`], which sends what it holds before a statement would not fit;
//! - `IN` lists of conflict resolution's reads and tombstone reads are cut into chunks.
//!
//! Only a statement that cannot be split — one row's `INSERT`/`UPDATE` — can exceed the budget;
//! it stops the link with [`crate::LinkError::RowTooLarge`], which names the table, the key, the
//! statement's size and the target's limit, and says to raise `max_allowed_packet` there.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::LinkError;

/// What a query may not use of `max_allowed_packet`: the packet's command byte and some slack
/// for anything a server adds to the count.
pub const MARGIN: usize = 4096;

/// The smallest budget drc works with (MySQL's minimum `max_allowed_packet` is 1 KiB, but a
/// checkpoint statement alone is longer than that).
pub const MIN_BUDGET: usize = 16 * 1024;

/// The largest query drc sends at once, whatever the limit: longer joins only cost memory.
pub const MAX_QUERY: usize = 8 << 20;

/// The bytes a query to a server with `max_allowed_packet` may have.
pub fn budget(max_allowed_packet: u64) -> usize {
    usize::try_from(max_allowed_packet)
        .unwrap_or(usize::MAX)
        .saturating_sub(MARGIN)
        .max(MIN_BUDGET)
}

/// The session's `max_allowed_packet` on `conn`.
pub async fn read_max_allowed_packet(conn: &mut Conn) -> Result<u64, LinkError> {
    conn.query_first::<u64, _>("SELECT @@SESSION.max_allowed_packet")
        .await
        .map_err(|e| LinkError::target("reading max_allowed_packet", e))?
        .ok_or_else(|| LinkError::Setup("SELECT @@max_allowed_packet returned no row".into()))
}

/// Joins statements into queries of at most `limit` bytes, sending each full query on the
/// connection given to [`Joiner::push`]. Statements are sent in the order pushed; the caller
/// keeps them in one transaction.
#[derive(Debug)]
pub struct Joiner {
    q: String,
    limit: usize,
    max_allowed_packet: u64,
}

impl Joiner {
    /// An empty joiner for a target with `max_allowed_packet`, joining at most `cap` bytes.
    pub fn new(max_allowed_packet: u64, cap: usize) -> Self {
        Joiner {
            q: String::new(),
            limit: budget(max_allowed_packet).min(cap.max(MIN_BUDGET)),
            max_allowed_packet,
        }
    }

    /// The bytes one query may have.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The target session's `max_allowed_packet`.
    pub fn max_allowed_packet(&self) -> u64 {
        self.max_allowed_packet
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Adds `stmt`, first sending what is held if `stmt` would not fit with it. A statement
    /// longer than the target's budget fails with [`LinkError::StatementTooLarge`] (`what`
    /// names it) and nothing of it is sent.
    pub async fn push(
        &mut self,
        conn: &mut Conn,
        stmt: &str,
        what: &'static str,
    ) -> Result<(), LinkError> {
        if stmt.len() > budget(self.max_allowed_packet) {
            return Err(LinkError::StatementTooLarge {
                what,
                bytes: stmt.len(),
                max_allowed_packet: self.max_allowed_packet,
            });
        }
        if !self.q.is_empty() && self.q.len() + 2 + stmt.len() > self.limit {
            self.flush(conn).await?;
        }
        if !self.q.is_empty() {
            self.q.push_str(";\n");
        }
        self.q.push_str(stmt);
        Ok(())
    }

    /// Sends what is held (nothing when empty).
    pub async fn flush(&mut self, conn: &mut Conn) -> Result<(), LinkError> {
        if self.q.is_empty() {
            return Ok(());
        }
        let q = std::mem::take(&mut self.q);
        conn.query_drop(q)
            .await
            .map_err(|e| LinkError::target("applying changes", e))
    }

    /// Takes what is held without sending it.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.q)
    }
}

/// Splits `items` into consecutive chunks whose `cost`s (plus `overhead` per chunk) stay
/// within `limit`; an item costlier than the limit gets a chunk of its own.
pub fn chunks<T>(
    items: &[T],
    overhead: usize,
    limit: usize,
    cost: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = overhead;
    for (i, it) in items.iter().enumerate() {
        let c = cost(it);
        if i > start && used + c > limit {
            out.push(&items[start..i]);
            start = i;
            used = overhead;
        }
        used += c;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_keep_a_margin_and_a_floor() {
        assert_eq!(budget(16 << 20), (16 << 20) - MARGIN);
        assert_eq!(budget(1024), MIN_BUDGET);
        assert_eq!(Joiner::new(1 << 30, MAX_QUERY).limit(), MAX_QUERY);
        assert_eq!(Joiner::new(1 << 20, MAX_QUERY).limit(), (1 << 20) - MARGIN);
    }

    #[test]
    fn chunks_stay_within_the_limit() {
        let items: Vec<usize> = vec![3, 3, 3, 10, 1, 1];
        let c = chunks(&items, 1, 7, |&x| x);
        assert_eq!(c, vec![&[3, 3][..], &[3][..], &[10][..], &[1, 1][..]]);
        assert!(chunks(&items[..0], 1, 7, |&x| x).is_empty());
    }
}
