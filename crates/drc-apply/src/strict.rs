//! Strict writes: a change that the target cannot store exactly stops the link with an error
//! that names the table, the row's primary key, the column and the value — never a silent
//! truncation, conversion or drop.
//!
//! - The applier session runs with [`SQL_MODE`] (`STRICT_ALL_TABLES`): a too-long value, a
//!   character the column's charset cannot hold, a NULL in a NOT NULL column, a row no partition
//!   takes, are errors instead of warnings. The rewrite never uses `IGNORE`
//!   ([`crate::sql`]), which would turn them back into warnings.
//! - Some changes stay warnings even in strict mode (e.g. a DECIMAL rounded to a narrower scale
//!   is a Note 1265), and any warning that is not in [`IGNORED_WARNINGS`] fails the share.
//! - On MariaDB a share's statements are sent batched, many per query: the plain (source-wins)
//!   statements of [`crate::sql`] and the last-writer-wins writes decided by drc
//!   ([`crate::conflict`]). Each data write of such a query is followed by [`CHECK_WARNINGS`],
//!   which fails the query with error [`CHECK_FAILED`] when the write left a warning (a `SET`
//!   that reads no table keeps the previous statement's diagnostics, so `@@warning_count` is
//!   the write's); nothing after it runs. No extra round trip is spent on a share that stores
//!   exactly.
//! - A refused or warned share is rolled back and written again in a transaction that is
//!   rolled back, to name the row: its plain statements each in a round trip of its own
//!   ([`run`]: when the OK packet counts warnings, `SHOW WARNINGS` reads them), so the failing
//!   statement is known without doubt, and which row of a multi-row statement failed is found
//!   by [`diagnose`] (each row written alone until the server refuses one); its last-writer-wins
//!   changes decided again with each write sent alone and checked ([`checked_write`]).
//! - On MySQL the plain statements are always sent that way, one per round trip: MySQL 8 warns
//!   (1287) on every `VALUES()` upsert, which a warning count cannot tell apart from a warning
//!   about the data.
//!
//! Errors of this kind are definite ([`LinkError::Rejected`]): the link stops and the daemon's
//! restarts meet the same row again until the operator fixes the schema. Transient errors
//! (deadlocks, lost connections) keep their usual retry.

use std::fmt::Write as _;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use drc_core::change::Image;
use drc_core::schema::TableSchema;
use drc_mysql::codes;

use crate::sql::{self, Statement};
use crate::LinkError;

/// The applier session's `sql_mode`: strict, values exactly as the source stored them (an id
/// 0 stays 0, zero dates stay: `NO_ZERO_DATE` is not set), no silent engine change.
pub const SQL_MODE: &str = drc_mysql::SESSION_SQL_MODE;

/// Warnings that change nothing in the data: 1287 (deprecated syntax, e.g. MySQL 8.0.20+ on
/// `VALUES()`), 1681 (deprecated integer display width).
pub const IGNORED_WARNINGS: &[u32] = &[1287, 1681];

/// Sent right after each checked data write of a batched query: fails the query with
/// [`CHECK_FAILED`] ("BIGINT UNSIGNED value is out of range") when the write left a warning,
/// so nothing after it (the next writes, the checkpoint, `COMMIT`) runs. A `SET` that reads no
/// table keeps the previous statement's diagnostics, so `@@warning_count` is the write's.
/// Portable (MariaDB and MySQL, no stored program, no table, no `UNION`: the cheapest
/// statement that can fail on a condition, measured in docs/benchmarks.md), and no round trip
/// of its own.
pub(crate) const CHECK_WARNINGS: &str = "SET @drc_warned = ~0 + (@@warning_count > 0)";

/// The error [`CHECK_WARNINGS`] fails with (ER_DATA_OUT_OF_RANGE). drc's writes do no
/// arithmetic, so in their query it means the check.
pub(crate) const CHECK_FAILED: u16 = codes::ER_DATA_OUT_OF_RANGE;

/// A change the target refused, with what the operator needs to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the target refused a change of {table} {key}, column {column} = {value}: {message}. Source positions {at}. The link stopped and nothing was skipped: make the target's table hold what the source's does (column type, length, character set, NOT NULL, partitions, unique keys), or fix the row, then the link resumes by itself (docs/operations.md, \"Schema drift\")")]
pub struct Rejection {
    /// `db.table`.
    pub table: String,
    /// The row's primary key, e.g. `(id=5)`.
    pub key: String,
    /// The column the server named (`-` when none).
    pub column: String,
    /// Its value in the change, as an SQL literal (cut to 64 characters).
    pub value: String,
    /// The server's error or warning.
    pub message: String,
    /// The source positions of the share.
    pub at: String,
}

/// Why a checked statement failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused statement `Some(i)` (or drc's own prefix, `None`).
    Error(Option<usize>, mysql_async::Error),
    /// Statement `i` left warnings: `(level, code, message)`.
    Warnings(usize, Vec<(String, u32, String)>),
}

fn warnings_of(rows: Vec<Row>) -> Vec<(String, u32, String)> {
    rows.into_iter()
        .filter_map(|r| mysql_async::from_row_opt::<(String, u32, String)>(r).ok())
        .filter(|(_, code, _)| !IGNORED_WARNINGS.contains(code))
        .collect()
}

/// Sends each of `stmts` in a round trip of its own, the first with `prefix` (drc's own
/// statements: the transaction's start, the origin marker) in front, so that an error is the
/// statement's without doubt (or the prefix's, whose statements do not fail on data); a
/// statement whose OK packet counts warnings (the last OK packet of the query: the
/// statement's) is followed by `SHOW WARNINGS`. Without statements, `prefix` is sent alone.
/// The prefix is a few hundred bytes: the margin of [`crate::size::budget`] leaves room for it
/// beside a statement of the full budget.
pub(crate) async fn run(
    conn: &mut Conn,
    prefix: &str,
    stmts: &[Statement<'_>],
) -> Result<(), Failure> {
    if stmts.is_empty() && !prefix.is_empty() {
        conn.query_drop(prefix)
            .await
            .map_err(|e| Failure::Error(None, e))?;
    }
    for (i, s) in stmts.iter().enumerate() {
        let sent = if i == 0 && !prefix.is_empty() {
            conn.query_drop(format!("{prefix};\n{}", s.sql)).await
        } else {
            conn.query_drop(&s.sql).await
        };
        sent.map_err(|e| Failure::Error(Some(i), e))?;
        if conn.get_warnings() > 0 {
            let rows: Vec<Row> = conn
                .query("SHOW WARNINGS")
                .await
                .map_err(|e| Failure::Error(None, e))?;
            let w = warnings_of(rows);
            if !w.is_empty() {
                return Err(Failure::Warnings(i, w));
            }
        }
    }
    Ok(())
}

/// True for a server error that says the target refused the data itself (as opposed to a
/// transient condition or drc's own mistake): strict-mode conversions, NULLs, lengths,
/// partitions, charset, constraints, unique keys of other rows ([`codes::DATA_ERRORS`]).
pub fn is_data_error(e: &mysql_async::Error) -> bool {
    codes::server_code(e).is_some_and(codes::is_data_error)
}

/// The value of `column` in `img`, as an SQL literal cut to 64 characters.
fn value_of(t: &TableSchema, img: &Image, column: &str) -> Option<String> {
    let i = t.columns.iter().position(|c| &*c.name == column)?;
    let v = img.get(i)?;
    let mut out = String::new();
    sql::literal(&mut out, v);
    if out.chars().count() > 64 {
        let cut: String = out.chars().take(64).collect();
        out = format!("{cut}... ({} bytes)", out.len());
    }
    Some(out)
}

/// The primary key of `img`, e.g. `(id=5)`.
fn key_of(t: &TableSchema, img: &Image) -> String {
    let mut out = String::from("(");
    for (n, &k) in t.primary_key.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}=", t.columns[k].name);
        if let Some(v) = img.get(k) {
            sql::literal(&mut out, v);
        }
    }
    out.push(')');
    out
}

/// The column a server message names (`for column 'c'`, ``for column `db`.`t`.`c` ``,
/// `Column 'c' cannot be null`).
fn column_in(message: &str) -> Option<String> {
    let rest = message
        .split_once("for column ")
        .map(|(_, r)| r)
        .or_else(|| message.split_once("Column ").map(|(_, r)| r))?;
    let quoted = rest.split_whitespace().next()?;
    let last = quoted.rsplit('.').next()?;
    let name = last.trim_matches(|c| c == '\'' || c == '`');
    (!name.is_empty()).then(|| name.to_string())
}

/// After a failed share (rolled back), finds the row of `stmt` that the server refuses and
/// describes it. `first` is what the share's query reported.
pub(crate) async fn diagnose(
    conn: &mut Conn,
    stmt: &Statement<'_>,
    first: String,
    at: &str,
) -> LinkError {
    let mut found: Option<(usize, String)> = None;
    for row in 0..stmt.row_count() {
        let Some(single) = stmt.single(row) else {
            break;
        };
        let outcome: Result<Vec<Row>, mysql_async::Error> = async {
            conn.query_drop("START TRANSACTION").await?;
            conn.query_drop(&single).await?;
            if conn.get_warnings() > 0 {
                conn.query("SHOW WARNINGS").await
            } else {
                Ok(Vec::new())
            }
        }
        .await;
        let _ = conn.query_drop("ROLLBACK").await;
        match outcome {
            Err(mysql_async::Error::Server(e)) => {
                found = Some((row, format!("{} (error {})", e.message, e.code)));
                break;
            }
            Err(_) => break,
            Ok(rows) => {
                if let Some((level, code, msg)) = warnings_of(rows).into_iter().next() {
                    found = Some((row, format!("{msg} ({level} {code})")));
                    break;
                }
            }
        }
    }
    match found {
        Some((row, msg)) => rejection(stmt.table(), stmt.image(row), msg, at),
        None => rejection(stmt.table(), None, first, at),
    }
}

/// The rejection of `img` (a row of `t`; `None` when the row is not known) with the server's
/// `message`.
fn rejection(t: Option<&TableSchema>, img: Option<&Image>, message: String, at: &str) -> LinkError {
    let column = column_in(&message);
    let (key, value) = match (t, img) {
        (Some(t), Some(img)) => (
            key_of(t, img),
            column
                .as_deref()
                .and_then(|c| value_of(t, img, c))
                .unwrap_or_else(|| "-".into()),
        ),
        _ => ("?".into(), "-".into()),
    };
    let pk_null = column.as_deref().is_some_and(|c| {
        t.is_some_and(|t| {
            t.primary_key
                .iter()
                .any(|&k| t.columns.get(k).is_some_and(|col| &*col.name == c))
        })
    }) && message.contains("cannot be null");
    LinkError::Rejected(Box::new(Rejection {
        table: t.map(|t| t.qualified_name()).unwrap_or_else(|| "?".into()),
        key,
        column: column.unwrap_or_else(|| "-".into()),
        value,
        message: if pk_null {
            format!("the row collides on a unique key with another row of the target (another primary key holds its unique value): the centers diverged ({message})")
        } else {
            message
        },
        at: at.to_string(),
    }))
}

/// The error of a share whose query failed (`first`) although writing it again, each
/// statement or write alone, stored exactly: a failed warning check ([`CHECK_FAILED`]) is a
/// [`LinkError::Rejected`] that names the share's `tables` and says that `what` (the writes)
/// left a warning the second writing did not show again (the target changed a value); any
/// other error stays as it was.
pub(crate) fn unnamed(
    tables: impl IntoIterator<Item = String>,
    what: &str,
    at: &str,
    first: LinkError,
) -> LinkError {
    if first.target_code() != Some(CHECK_FAILED) {
        return first;
    }
    let tables: std::collections::BTreeSet<String> = tables.into_iter().collect();
    LinkError::Rejected(Box::new(Rejection {
        table: tables.into_iter().collect::<Vec<_>>().join(", "),
        key: "?".into(),
        column: "-".into(),
        value: "-".into(),
        message: format!(
            "{what} left a warning (the target changed a value), and writing the share again \
             one by one did not show which"
        ),
        at: at.to_string(),
    }))
}

/// True when a last-writer-wins share's batched query failed in a way [`checked_write`] can
/// name: a data error other than a duplicate key (a local writer racing the decision, retried
/// as such), or [`CHECK_WARNINGS`].
pub(crate) fn names_a_row(e: &LinkError) -> bool {
    match e {
        LinkError::Target {
            source: mysql_async::Error::Server(s),
            ..
        } => {
            s.code == CHECK_FAILED
                || (s.code != codes::ER_DUP_ENTRY && codes::is_data_error(s.code))
        }
        _ => false,
    }
}

/// Sends one last-writer-wins write (`sql`, a write of `img` in `t`) alone and checks it: a
/// data error or a warning is a [`LinkError::Rejected`] naming the row. Used to diagnose a
/// share whose batched query failed [`CHECK_WARNINGS`] or a data error.
pub(crate) async fn checked_write(
    conn: &mut Conn,
    t: &TableSchema,
    img: Option<&Image>,
    sql: &str,
    at: &str,
) -> Result<(), LinkError> {
    let refused = match conn.query_drop(sql).await {
        Err(mysql_async::Error::Server(e))
            if e.code != codes::ER_DUP_ENTRY && codes::is_data_error(e.code) =>
        {
            Some(format!("{} (error {})", e.message, e.code))
        }
        Err(e) => return Err(LinkError::target("applying changes", e)),
        Ok(()) if conn.get_warnings() > 0 => {
            let rows: Vec<Row> = conn
                .query("SHOW WARNINGS")
                .await
                .map_err(|e| LinkError::target("reading warnings", e))?;
            warnings_of(rows)
                .into_iter()
                .next()
                .map(|(level, code, msg)| format!("{msg} ({level} {code})"))
        }
        Ok(()) => None,
    };
    match refused {
        Some(message) => Err(rejection(Some(t), img, message, at)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_in_server_messages() {
        assert_eq!(
            column_in("Data too long for column 'v' at row 1").as_deref(),
            Some("v")
        );
        assert_eq!(
            column_in("Incorrect string value: '\\xF0\\x9F\\x98\\x80' for column `db`.`t`.`name` at row 1").as_deref(),
            Some("name")
        );
        assert_eq!(
            column_in("Column 'id' cannot be null").as_deref(),
            Some("id")
        );
        assert_eq!(column_in("Table has no partition for value 42"), None);
    }
}
