//! DDL bookkeeping: `<meta>.ddl_skip` holds the DDL positions an operator acknowledged (`drc
//! ddl skip`; the link passes them and records the statement when it does), and
//! `<meta>.ddl_pending` the replicated DDL statement a link started and did not checkpoint yet
//! (the crash window of `drc_apply::ddl`).

use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// The statement that acknowledges the DDL at `position` of `link` (`drc ddl skip`).
pub fn ddl_skip_statement(meta: &str, link: &str, position: &str) -> String {
    let mut q = String::from("INSERT IGNORE INTO ");
    table(&mut q, meta, "ddl_skip");
    q.push_str(" (`link`, `position`) VALUES (");
    quoted(&mut q, link);
    q.push_str(", ");
    quoted(&mut q, position);
    q.push(')');
    q
}

/// Whether the DDL at `position` of `link` was acknowledged.
pub async fn ddl_acknowledged(
    conn: &mut Conn,
    meta: &str,
    link: &str,
    position: &str,
) -> Result<bool, MetaError> {
    let mut q = String::from("SELECT COUNT(*) FROM ");
    table(&mut q, meta, "ddl_skip");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" AND `position` = ");
    quoted(&mut q, position);
    let n: Option<u64> = conn
        .query_first(q)
        .await
        .map_err(MetaError::query("reading DDL acknowledgments"))?;
    Ok(n.unwrap_or(0) > 0)
}

/// The statement that records, in the acknowledgment, the statement the link passed.
pub fn ddl_passed_statement(meta: &str, link: &str, position: &str, statement: &str) -> String {
    let mut q = String::from("UPDATE ");
    table(&mut q, meta, "ddl_skip");
    q.push_str(" SET `statement` = ");
    quoted(&mut q, statement);
    q.push_str(", `passed_at` = NOW(6) WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" AND `position` = ");
    quoted(&mut q, position);
    q
}

/// The position of the replicated DDL `link` started and did not checkpoint, if any.
pub async fn ddl_pending(
    conn: &mut Conn,
    meta: &str,
    link: &str,
) -> Result<Option<String>, MetaError> {
    let mut q = String::from("SELECT `position` FROM ");
    table(&mut q, meta, "ddl_pending");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    conn.query_first(q)
        .await
        .map_err(MetaError::query("reading the pending DDL"))
}

/// The statement that records that `link` starts the DDL at `position` (committed before it).
pub fn ddl_start_statement(meta: &str, link: &str, position: &str, statement: &str) -> String {
    let mut q = String::from("REPLACE INTO ");
    table(&mut q, meta, "ddl_pending");
    q.push_str(" (`link`, `position`, `statement`) VALUES (");
    quoted(&mut q, link);
    q.push_str(", ");
    quoted(&mut q, position);
    q.push_str(", ");
    quoted(&mut q, statement);
    q.push(')');
    q
}

/// The statement that clears `link`'s pending DDL (in the transaction of its checkpoint).
pub fn ddl_done_statement(meta: &str, link: &str) -> String {
    let mut q = String::from("DELETE FROM ");
    table(&mut q, meta, "ddl_pending");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q
}
