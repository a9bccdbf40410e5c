//! Named preflight checks for a server that drc reads a binlog from.
//!
//! Each check looks at one setting and, when it is wrong, returns a [`Problem`] that says what was
//! found and what to change. [`preflight_source`] runs them all and returns every problem at once,
//! so an operator fixes a server in one round. A source refuses to stream while any problem
//! remains: streaming from a misconfigured server would lose changes silently (a STATEMENT-format
//! event carries no rows, a MINIMAL image carries no full row, a compressed MariaDB event cannot be
//! decoded).

use std::fmt;

use mysql_async::{prelude::Queryable, Conn};

use crate::conn::MysqlError;
use crate::server::{variable, Flavor, ServerInfo};

/// One thing wrong with a server's setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The check's name, e.g. `binlog_format`.
    pub check: &'static str,
    /// What was found.
    pub found: String,
    /// What to change.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; {}", self.check, self.found, self.fix)
    }
}

/// Every problem found on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemList {
    /// The server (URL without password).
    pub server: String,
    /// The problems, in check order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ProblemList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cannot be used as a binlog source ({} problem{}):",
            self.server,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProblemList {}

async fn var(conn: &mut Conn, name: &str) -> Result<String, MysqlError> {
    Ok(variable(conn, name).await?.unwrap_or_default())
}

/// The binary log must be on.
async fn ensure_binlog_enabled(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let v = var(conn, "log_bin").await?;
    Ok(
        (!v.eq_ignore_ascii_case("ON") && v != "1").then(|| Problem {
            check: "log_bin",
            found: "the binary log is off".into(),
            fix: "start the server with --log-bin (and a unique --server-id)".into(),
        }),
    )
}

/// Row-based logging: STATEMENT and MIXED events carry SQL text, not rows.
async fn ensure_row_binlog_format(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let v = var(conn, "binlog_format").await?;
    Ok((!v.eq_ignore_ascii_case("ROW")).then(|| Problem {
        check: "binlog_format",
        found: format!("binlog_format is {v}"),
        fix: "set binlog_format=ROW in the server config and SET GLOBAL binlog_format='ROW'".into(),
    }))
}

/// Full before/after images: conflict handling and upserts need every column.
async fn ensure_full_row_image(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let v = var(conn, "binlog_row_image").await?;
    Ok((!v.eq_ignore_ascii_case("FULL")).then(|| Problem {
        check: "binlog_row_image",
        found: format!("binlog_row_image is {v}"),
        fix:
            "set binlog_row_image=FULL in the server config and SET GLOBAL binlog_row_image='FULL'"
                .into(),
    }))
}

/// Column names travel in the binlog only with `binlog_row_metadata=FULL`; without them,
/// columns could only be matched by position, which breaks after any schema difference.
async fn ensure_full_row_metadata(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let Some(v) = variable(conn, "binlog_row_metadata").await? else {
        return Ok(Some(Problem {
            check: "binlog_row_metadata",
            found:
                "the server has no binlog_row_metadata setting (MariaDB < 10.5 or MySQL < 8.0.1)"
                    .into(),
            fix: "upgrade to MariaDB 10.5+ or MySQL 8.0+".into(),
        }));
    };
    Ok((!v.eq_ignore_ascii_case("FULL")).then(|| Problem {
        check: "binlog_row_metadata",
        found: format!("binlog_row_metadata is {v}"),
        fix: "set binlog_row_metadata=FULL in the server config and SET GLOBAL binlog_row_metadata='FULL'"
            .into(),
    }))
}

/// MariaDB's `log_bin_compress` writes compressed events that drc does not decode.
async fn ensure_binlog_uncompressed(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let v = variable(conn, "log_bin_compress")
        .await?
        .unwrap_or_default();
    Ok((v.eq_ignore_ascii_case("ON") || v == "1").then(|| Problem {
        check: "log_bin_compress",
        found: "log_bin_compress is ON (compressed MariaDB binlog events)".into(),
        fix: "SET GLOBAL log_bin_compress=OFF and remove it from the server config; events written while it was on cannot be read".into(),
    }))
}

/// MySQL's partial JSON updates leave the after image incomplete.
async fn ensure_no_partial_json(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let v = variable(conn, "binlog_row_value_options")
        .await?
        .unwrap_or_default();
    Ok(v.to_ascii_uppercase()
        .contains("PARTIAL_JSON")
        .then(|| Problem {
            check: "binlog_row_value_options",
            found: format!("binlog_row_value_options is {v}"),
            fix: "SET GLOBAL binlog_row_value_options=''".into(),
        }))
}

/// The connecting user needs REPLICATION SLAVE (a.k.a. REPLICATION REPLICA) to stream a binlog.
async fn ensure_replication_grant(conn: &mut Conn) -> Result<Option<Problem>, MysqlError> {
    let grants: Vec<String> =
        conn.query("SHOW GRANTS FOR CURRENT_USER()")
            .await
            .map_err(|source| MysqlError::Query {
                what: "SHOW GRANTS",
                source,
            })?;
    let ok = grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        let global = g.contains(" ON *.* ");
        global
            && (g.contains("ALL PRIVILEGES")
                || g.contains("REPLICATION SLAVE")
                || g.contains("REPLICATION REPLICA"))
    });
    let user: Option<String> =
        conn.query_first("SELECT CURRENT_USER()")
            .await
            .map_err(|source| MysqlError::Query {
                what: "SELECT CURRENT_USER()",
                source,
            })?;
    Ok((!ok).then(|| Problem {
        check: "replication grant",
        found: format!(
            "user {} lacks REPLICATION SLAVE",
            user.unwrap_or_else(|| "?".into())
        ),
        fix: "GRANT REPLICATION SLAVE ON *.* TO that user".into(),
    }))
}

/// Runs every source check and returns all problems found (empty when the server is fit).
pub async fn preflight_source(
    conn: &mut Conn,
    info: &ServerInfo,
) -> Result<Vec<Problem>, MysqlError> {
    let mut problems = Vec::new();
    problems.extend(ensure_binlog_enabled(conn).await?);
    problems.extend(ensure_row_binlog_format(conn).await?);
    problems.extend(ensure_full_row_image(conn).await?);
    problems.extend(ensure_full_row_metadata(conn).await?);
    match info.flavor {
        Flavor::MariaDb => problems.extend(ensure_binlog_uncompressed(conn).await?),
        Flavor::MySql => problems.extend(ensure_no_partial_json(conn).await?),
    }
    problems.extend(ensure_replication_grant(conn).await?);
    Ok(problems)
}
