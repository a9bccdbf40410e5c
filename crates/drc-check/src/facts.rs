//! Gathering: everything the checks need from one center, read in one visit.
//!
//! Reading is separated from judging so that every check is a pure function of these facts
//! (and can be unit-tested without a server), and so that a center is visited once whatever
//! the number of checks. Gathering only reads, with one exception that changes nothing: the
//! `server_id` probe sets the session's `server_id` (and `gtid_domain_id`) to the values they
//! already have, on a connection that is closed right after.
//!
//! What `information_schema` shows depends on the user's privileges: a table the user may not
//! touch is invisible, and triggers are listed only where the user has `TRIGGER`. The checks
//! that depend on it say so in their messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use drc_config::{Center, Loopback, Replication};
use drc_mysql::clock::{read_clock, ClockReading};
use drc_mysql::{preflight_source, server_info, Flavor, MysqlError, Problem, ServerInfo};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::grants::Grants;

/// Why a center's facts could not be gathered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatherError {
    /// Connecting or a query failed.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// The server stopped answering.
    #[error("the server did not answer all queries within {secs} s")]
    Timeout {
        /// The deadline.
        secs: u64,
    },
}

impl GatherError {
    /// The check name a finding about this error carries.
    pub(crate) fn check(&self) -> &'static str {
        match self {
            GatherError::Mysql(MysqlError::BadUrl { .. })
            | GatherError::Mysql(MysqlError::Connect { .. })
            | GatherError::Mysql(MysqlError::ConnectTimeout { .. }) => "connect",
            _ => "server",
        }
    }
}

/// `db.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TableName {
    pub(crate) db: String,
    pub(crate) table: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// One replicated table as a center has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    /// Column name -> `COLUMN_TYPE` plus ` NOT NULL` when not nullable (e.g. `int(11) NOT NULL`).
    pub(crate) columns: BTreeMap<String, String>,
    /// Primary-key columns in key order; empty when the table has none.
    pub(crate) primary_key: Vec<String>,
    /// Some column is `AUTO_INCREMENT`.
    pub(crate) auto_increment: bool,
}

/// A trigger on a replicated table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trigger {
    /// The table it fires on.
    pub(crate) table: TableName,
    /// Trigger name.
    pub(crate) name: String,
    /// `BEFORE` / `AFTER`.
    pub(crate) timing: String,
    /// `INSERT` / `UPDATE` / `DELETE`.
    pub(crate) event: String,
}

/// What one center has of the replicated databases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Schema {
    /// The replicated databases that exist (and the user can see).
    pub(crate) databases: BTreeSet<String>,
    /// Replicated base tables (include/exclude patterns applied).
    pub(crate) tables: BTreeMap<TableName, Table>,
    /// Triggers on replicated tables.
    pub(crate) triggers: Vec<Trigger>,
}

/// Everything the checks know about one center.
#[derive(Debug, Clone)]
pub(crate) struct CenterFacts {
    /// Flavor, version, ids.
    pub(crate) info: ServerInfo,
    /// `CURRENT_USER()`, e.g. `drc@%`.
    pub(crate) user: String,
    /// The binlog source preflight (drc-mysql), replication grant included.
    pub(crate) preflight: Vec<Problem>,
    /// Global `auto_increment_increment`.
    pub(crate) auto_increment_increment: u64,
    /// Global `auto_increment_offset`.
    pub(crate) auto_increment_offset: u64,
    /// The session's grants.
    pub(crate) grants: Grants,
    /// Outcome of `SET SESSION server_id = @@server_id` (the server's refusal as text); `None`
    /// when not tried (MySQL, or `loopback = "marker"`).
    pub(crate) server_id_probe: Option<Result<(), String>>,
    /// The replicated schema.
    pub(crate) schema: Schema,
    /// The server's clock against this process's (the first query of the visit, so that the
    /// round trip is not inflated by the others).
    pub(crate) clock: ClockReading,
    /// The session's TLS cipher (`Ssl_cipher`); empty when the connection is plain.
    pub(crate) tls_cipher: String,
}

/// How long one connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long gathering one center may take in all.
pub(crate) const GATHER_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads every fact of `center`.
pub(crate) async fn gather(
    center: &Center,
    replication: &Replication,
) -> Result<CenterFacts, GatherError> {
    match tokio::time::timeout(GATHER_TIMEOUT, gather_inner(center, replication)).await {
        Ok(r) => r,
        Err(_) => Err(GatherError::Timeout {
            secs: GATHER_TIMEOUT.as_secs(),
        }),
    }
}

fn query_err(what: &'static str) -> impl FnOnce(mysql_async::Error) -> MysqlError {
    move |source| MysqlError::Query { what, source }
}

async fn gather_inner(
    center: &Center,
    replication: &Replication,
) -> Result<CenterFacts, GatherError> {
    let mut conn = drc_mysql::connect(center.url(), CONNECT_TIMEOUT).await?;
    let clock = read_clock(&mut conn).await?;
    let info = server_info(&mut conn).await?;
    let preflight = preflight_source(&mut conn, &info).await?;
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(query_err("SELECT CURRENT_USER()"))?;
    let auto: Option<(u64, u64)> = conn
        .query_first("SELECT @@GLOBAL.auto_increment_increment, @@GLOBAL.auto_increment_offset")
        .await
        .map_err(query_err("reading auto_increment_increment/offset"))?;
    let (auto_increment_increment, auto_increment_offset) = auto.unwrap_or((1, 1));
    let grant_lines: Vec<String> = conn
        .query("SHOW GRANTS")
        .await
        .map_err(query_err("SHOW GRANTS"))?;
    let schema = read_schema(&mut conn, replication).await?;
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .map_err(query_err("SHOW SESSION STATUS LIKE 'Ssl_cipher'"))?;
    let _ = conn.disconnect().await;
    let server_id_probe = match (info.flavor, replication.loopback) {
        (Flavor::MySql, _) | (_, Loopback::Marker) => None,
        (Flavor::MariaDb, _) => Some(probe_server_id(center).await?),
    };
    Ok(CenterFacts {
        info,
        user: user.unwrap_or_default(),
        preflight,
        auto_increment_increment,
        auto_increment_offset,
        grants: Grants::parse(&grant_lines),
        server_id_probe,
        schema,
        clock,
        tls_cipher: cipher.map(|(_, v)| v).unwrap_or_default(),
    })
}

/// Whether this user may write under another `server_id`, as drc's applier does with the
/// `server_id` loopback strategy: sets both variables to their current values on a fresh
/// connection (session scope only; nothing is written).
async fn probe_server_id(center: &Center) -> Result<Result<(), String>, GatherError> {
    let mut conn = drc_mysql::connect(center.url(), CONNECT_TIMEOUT).await?;
    let outcome = match conn
        .query_drop(
            "SET SESSION server_id = @@GLOBAL.server_id, \
             gtid_domain_id = @@GLOBAL.gtid_domain_id",
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(mysql_async::Error::Server(e)) => Err(e.message),
        Err(source) => {
            return Err(MysqlError::Query {
                what: "SET SESSION server_id",
                source,
            }
            .into())
        }
    };
    let _ = conn.disconnect().await;
    Ok(outcome)
}

fn text(row: &mut Row, i: usize) -> String {
    row.take::<Option<String>, _>(i)
        .flatten()
        .unwrap_or_default()
}

async fn read_schema(conn: &mut Conn, replication: &Replication) -> Result<Schema, MysqlError> {
    let mut schema = Schema::default();
    for db in &replication.databases {
        let exists: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (db,),
            )
            .await
            .map_err(query_err("reading information_schema.SCHEMATA"))?;
        if exists.is_none() {
            continue;
        }
        schema.databases.insert(db.clone());
        let rows: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
                (db,),
            )
            .await
            .map_err(query_err("reading information_schema.TABLES"))?;
        for mut r in rows {
            let table = text(&mut r, 0);
            if replication.replicates(db, &table) {
                schema.tables.insert(
                    TableName {
                        db: db.clone(),
                        table,
                    },
                    Table::default(),
                );
            }
        }
        let rows: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
                 ORDER BY TABLE_NAME, ORDINAL_POSITION",
                (db,),
            )
            .await
            .map_err(query_err("reading information_schema.COLUMNS"))?;
        for mut r in rows {
            let name = TableName {
                db: db.clone(),
                table: text(&mut r, 0),
            };
            let Some(t) = schema.tables.get_mut(&name) else {
                continue;
            };
            let column = text(&mut r, 1);
            let mut ty = text(&mut r, 2);
            if text(&mut r, 3).eq_ignore_ascii_case("NO") {
                ty.push_str(" NOT NULL");
            }
            t.auto_increment |= text(&mut r, 4)
                .to_ascii_lowercase()
                .contains("auto_increment");
            t.columns.insert(column, ty);
        }
        let rows: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND INDEX_NAME = 'PRIMARY' \
                 ORDER BY TABLE_NAME, SEQ_IN_INDEX",
                (db,),
            )
            .await
            .map_err(query_err(
                "reading primary keys from information_schema.STATISTICS",
            ))?;
        for mut r in rows {
            let name = TableName {
                db: db.clone(),
                table: text(&mut r, 0),
            };
            if let Some(t) = schema.tables.get_mut(&name) {
                t.primary_key.push(text(&mut r, 1));
            }
        }
        let rows: Vec<Row> = conn
            .exec(
                "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION \
                 FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? \
                 ORDER BY EVENT_OBJECT_TABLE, TRIGGER_NAME",
                (db,),
            )
            .await
            .map_err(query_err("reading information_schema.TRIGGERS"))?;
        for mut r in rows {
            let table = TableName {
                db: db.clone(),
                table: text(&mut r, 0),
            };
            if schema.tables.contains_key(&table) {
                schema.triggers.push(Trigger {
                    table,
                    name: text(&mut r, 1),
                    timing: text(&mut r, 2),
                    event: text(&mut r, 3),
                });
            }
        }
    }
    Ok(schema)
}
