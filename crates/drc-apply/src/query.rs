//! Multi-statement queries whose answer is read: statements without a result (writes, `SET`,
//! `START TRANSACTION`) and `SELECT`s sent in one round trip, the `SELECT`s' result sets
//! returned in order, and the error of *any* statement returned as the query's error.
//!
//! Why the last point needs care: mysql_async 0.37 keeps a server error that follows an
//! earlier result set of a multi-statement query as the connection's pending result, and
//! `QueryResult::is_empty` then reports that no set is left. Read naively (collect each set
//! until `is_empty`), the query looks successful with fewer sets, and the error surfaces on
//! the connection's *next* query. [`select_sets`] drops the rest of the result explicitly,
//! which returns that error (tested in `tests/multi.rs`). The server stops a multi-statement
//! query at its first failing statement, so nothing after the error ran.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::LinkError;

/// Sends `q` and returns the rows of every result set that has columns (the `SELECT`s), in
/// order; statements without a result set are skipped. A failing statement anywhere in `q`
/// is [`LinkError::Target`] (`what` says what was done).
pub async fn select_sets(
    conn: &mut Conn,
    q: String,
    what: &'static str,
) -> Result<Vec<Vec<Row>>, LinkError> {
    let mut result = conn
        .query_iter(q)
        .await
        .map_err(|e| LinkError::target(what, e))?;
    let mut sets = Vec::new();
    loop {
        let is_select = !result.columns_ref().is_empty();
        let rows: Vec<Row> = result
            .collect()
            .await
            .map_err(|e| LinkError::target(what, e))?;
        if is_select {
            sets.push(rows);
        }
        if result.is_empty() {
            break;
        }
    }
    // A server error after an earlier set is pending here, not reported by `is_empty`.
    result
        .drop_result()
        .await
        .map_err(|e| LinkError::target(what, e))?;
    Ok(sets)
}

/// Runs `prefix` (statements without result sets, possibly none, at most `limit` bytes) and
/// then `reads` (each a `SELECT`), in queries of at most `limit` bytes, and returns the
/// reads' result sets, one per read, in order. The prefix rides in the first query when it
/// fits there, and is sent on its own before it otherwise. A read that does not fit the
/// target's `max_allowed_packet` alone is [`LinkError::StatementTooLarge`].
pub async fn run_then_read(
    conn: &mut Conn,
    prefix: String,
    reads: &[String],
    limit: usize,
    max_allowed_packet: u64,
    what: &'static str,
) -> Result<Vec<Vec<Row>>, LinkError> {
    let mut prefix = Some(prefix).filter(|p| !p.is_empty());
    let mut sets = Vec::with_capacity(reads.len());
    for chunk in crate::size::chunks(reads, 0, limit, |r| r.len() + 2) {
        let q = chunk.join(";\n");
        if q.len() > crate::size::budget(max_allowed_packet) {
            return Err(LinkError::StatementTooLarge {
                what: "conflict resolution read",
                bytes: q.len(),
                max_allowed_packet,
            });
        }
        let q = match prefix.take() {
            Some(mut p) if p.len() + 2 + q.len() <= limit => {
                p.push_str(";\n");
                p.push_str(&q);
                p
            }
            Some(p) => {
                conn.query_drop(p)
                    .await
                    .map_err(|e| LinkError::target("applying changes", e))?;
                q
            }
            None => q,
        };
        sets.extend(select_sets(conn, q, what).await?);
    }
    if let Some(p) = prefix {
        conn.query_drop(p)
            .await
            .map_err(|e| LinkError::target("applying changes", e))?;
    }
    Ok(sets)
}
