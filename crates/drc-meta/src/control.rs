//! Link control, set by `drc link` in the target center and obeyed by the running link within a
//! second (docs/operations.md, "Link control"):
//!
//! - `<meta>.link_control (link PK, paused, updated_at)`: a paused link stops applying after the
//!   batch in flight; resumed, it starts again from its checkpoints.
//! - `<meta>.link_skip (link, gtid, requested_at, skipped_at, row_count, content)`: source
//!   transactions an operator asked the link to pass without applying them. When the link
//!   passes one, it stamps `skipped_at` and stores the transaction's rows (`content`, JSON) in
//!   the same database transaction as its checkpoint, so a skip is recorded exactly when it
//!   took effect.
//! - [`set_position`] rewrites a paused link's checkpoint.

use std::collections::HashSet;
use std::fmt::Write as _;

use drc_core::position::Position;
use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::checkpoint::{checkpoint_statement, load_checkpoints, Checkpoint};
use crate::{table, MetaError};

/// What the operator asked of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// The link must not apply.
    pub paused: bool,
    /// GTIDs of source transactions to pass without applying, not passed yet.
    pub skips: HashSet<String>,
}

/// Reads `link`'s control (the defaults when the tables do not exist yet).
pub async fn read(conn: &mut Conn, meta: &str, link: &str) -> Result<Control, MetaError> {
    let mut q = String::from("SELECT `paused` FROM ");
    table(&mut q, meta, "link_control");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    let paused: Option<u8> = match conn.query_first(q).await {
        Ok(p) => p,
        Err(e) if crate::is_missing(&e) => return Ok(Control::default()),
        Err(e) => return Err(MetaError::query("reading the link's control")(e)),
    };
    let mut q = String::from("SELECT `gtid` FROM ");
    table(&mut q, meta, "link_skip");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" AND `skipped_at` IS NULL");
    let skips: Vec<String> = match conn.query(q).await {
        Ok(s) => s,
        Err(e) if crate::is_missing(&e) => Vec::new(),
        Err(e) => return Err(MetaError::query("reading the link's skip requests")(e)),
    };
    Ok(Control {
        paused: paused.unwrap_or(0) != 0,
        skips: skips.into_iter().collect(),
    })
}

/// The statement that pauses (`true`) or resumes `link`.
pub fn paused_statement(meta: &str, link: &str, paused: bool) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "link_control");
    q.push_str(" (`link`, `paused`) VALUES (");
    quoted(&mut q, link);
    let p = u8::from(paused);
    let _ = write!(
        q,
        ", {p}) ON DUPLICATE KEY UPDATE `paused` = {p}, `updated_at` = NOW(6)"
    );
    q
}

/// The statement that asks `link` to pass the source transaction `gtid` (again pending when it
/// was asked before).
pub fn skip_request_statement(meta: &str, link: &str, gtid: &str) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "link_skip");
    q.push_str(" (`link`, `gtid`) VALUES (");
    quoted(&mut q, link);
    q.push_str(", ");
    quoted(&mut q, gtid);
    q.push_str(") ON DUPLICATE KEY UPDATE `requested_at` = NOW(6)");
    q
}

/// The statement that records that `link` passed transaction `gtid` with its `rows` (JSON):
/// run in the transaction of the link's checkpoint after it.
pub fn skipped_statement(
    meta: &str,
    link: &str,
    gtid: &str,
    row_count: u64,
    content: &str,
) -> String {
    let mut q = String::from("UPDATE ");
    table(&mut q, meta, "link_skip");
    let _ = write!(
        q,
        " SET `skipped_at` = NOW(6), `row_count` = {row_count}, `content` = "
    );
    quoted(&mut q, content);
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" AND `gtid` = ");
    quoted(&mut q, gtid);
    q
}

/// One recorded skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The source transaction.
    pub gtid: String,
    /// When the operator asked.
    pub requested_at: String,
    /// When the link passed it (`None`: not met yet).
    pub skipped_at: Option<String>,
    /// Its row count, once passed.
    pub row_count: Option<u64>,
}

/// The skips of `link`, oldest request first.
pub async fn skips(conn: &mut Conn, meta: &str, link: &str) -> Result<Vec<Skip>, MetaError> {
    let mut q = String::from(
        "SELECT `gtid`, CAST(`requested_at` AS CHAR), CAST(`skipped_at` AS CHAR), `row_count` FROM ",
    );
    table(&mut q, meta, "link_skip");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" ORDER BY `requested_at`");
    type Raw = (String, String, Option<String>, Option<u64>);
    let rows: Vec<Raw> = conn
        .query(q)
        .await
        .map_err(MetaError::query("reading the link's skips"))?;
    Ok(rows
        .into_iter()
        .map(|(gtid, requested_at, skipped_at, row_count)| Skip {
            gtid,
            requested_at,
            skipped_at,
            row_count,
        })
        .collect())
}

/// Replaces `link`'s checkpoints with one at `to` (worker 0, the batch after the newest, start =
/// end = `to`), in one transaction; returns the checkpoints it replaced. The caller makes sure
/// the link is paused.
pub async fn set_position(
    conn: &mut Conn,
    meta: &str,
    link: &str,
    to: &Position,
) -> Result<Vec<Checkpoint>, MetaError> {
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(MetaError::query("starting the position change"))?;
    let result = async {
        let old = load_checkpoints(conn, meta, link).await?;
        let batch = old.iter().map(|c| c.batch).max().map_or(0, |b| b + 1);
        let mut q = String::from("DELETE FROM ");
        table(&mut q, meta, "checkpoint");
        q.push_str(" WHERE `link` = ");
        quoted(&mut q, link);
        conn.query_drop(q)
            .await
            .map_err(MetaError::query("removing the old checkpoints"))?;
        let cp = Checkpoint {
            worker: 0,
            batch,
            workers: 1,
            start: to.clone(),
            end: to.clone(),
        };
        conn.query_drop(checkpoint_statement(meta, link, &cp))
            .await
            .map_err(MetaError::query("writing the new checkpoint"))?;
        conn.query_drop("COMMIT")
            .await
            .map_err(MetaError::query("committing the position change"))?;
        Ok(old)
    }
    .await;
    if result.is_err() {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    result
}
