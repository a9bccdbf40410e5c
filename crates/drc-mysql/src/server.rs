//! Identifying a server (flavor, version, ids) and reading its current binlog position.

use drc_core::position::{FilePos, MariaGtidList, MysqlGtidSet, Position};
use mysql_async::{prelude::Queryable, Conn, Row};

use crate::conn::MysqlError;

/// Which server family a connection talks to. The binlog protocol differs in GTIDs and in a few
/// event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB (GTIDs are `domain-server-seq`).
    MariaDb,
    /// MySQL (GTIDs are `uuid:gno`).
    MySql,
}

/// Facts about a server that the data path needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    /// `@@version`.
    pub version: String,
    /// `@@server_id`.
    pub server_id: u32,
    /// MariaDB `@@gtid_domain_id`, 0 on MySQL.
    pub gtid_domain_id: u32,
    /// MySQL `@@server_uuid`, empty on MariaDB.
    pub server_uuid: String,
    /// MySQL `@@gtid_mode` is ON (always true on MariaDB, which always writes GTIDs).
    pub gtid_enabled: bool,
}

fn query_err(what: &'static str) -> impl FnOnce(mysql_async::Error) -> MysqlError {
    move |source| MysqlError::Query { what, source }
}

/// Reads one variable as a string (`None` when the variable does not exist on this server).
pub(crate) async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, MysqlError> {
    let rows: Vec<Row> = conn
        .query(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
        .await
        .map_err(query_err("reading server variables"))?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|mut r| r.take::<Option<String>, _>(1).flatten()))
}

/// Identifies the server behind `conn`.
pub async fn server_info(conn: &mut Conn) -> Result<ServerInfo, MysqlError> {
    let version: Option<String> = conn
        .query_first("SELECT @@version")
        .await
        .map_err(query_err("reading @@version"))?;
    let version = version.unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    let server_id = variable(conn, "server_id")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (gtid_domain_id, server_uuid, gtid_enabled) = match flavor {
        Flavor::MariaDb => {
            let d = variable(conn, "gtid_domain_id")
                .await?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (d, String::new(), true)
        }
        Flavor::MySql => {
            let uuid = variable(conn, "server_uuid").await?.unwrap_or_default();
            let mode = variable(conn, "gtid_mode").await?.unwrap_or_default();
            (0, uuid, mode.eq_ignore_ascii_case("ON"))
        }
    };
    Ok(ServerInfo {
        flavor,
        version,
        server_id,
        gtid_domain_id,
        server_uuid,
        gtid_enabled,
    })
}

/// The `SELECT` of the server's current GTID position (`@@gtid_binlog_pos` on MariaDB,
/// `@@GLOBAL.gtid_executed` on MySQL with GTIDs), or `None` when the server has no GTIDs.
pub fn gtid_position_query(info: &ServerInfo) -> Option<&'static str> {
    match info.flavor {
        Flavor::MariaDb => Some("SELECT @@gtid_binlog_pos"),
        Flavor::MySql if info.gtid_enabled => Some("SELECT @@GLOBAL.gtid_executed"),
        Flavor::MySql => None,
    }
}

/// The server's current end of binlog: the GTID state when the server uses GTIDs, else the
/// file and offset of `SHOW MASTER STATUS`.
pub async fn current_position(conn: &mut Conn, info: &ServerInfo) -> Result<Position, MysqlError> {
    match info.flavor {
        Flavor::MariaDb => {
            let pos: Option<String> = conn
                .query_first("SELECT @@gtid_binlog_pos")
                .await
                .map_err(query_err("reading @@gtid_binlog_pos"))?;
            let pos = pos.unwrap_or_default();
            pos.parse::<MariaGtidList>()
                .map(Position::MariaGtid)
                .map_err(|e| MysqlError::Unexpected {
                    what: "parsing @@gtid_binlog_pos",
                    detail: e.to_string(),
                })
        }
        Flavor::MySql if info.gtid_enabled => {
            let pos: Option<String> = conn
                .query_first("SELECT @@GLOBAL.gtid_executed")
                .await
                .map_err(query_err("reading @@gtid_executed"))?;
            pos.unwrap_or_default()
                .parse::<MysqlGtidSet>()
                .map(Position::MysqlGtid)
                .map_err(|e| MysqlError::Unexpected {
                    what: "parsing @@gtid_executed",
                    detail: e.to_string(),
                })
        }
        Flavor::MySql => current_file_pos(conn).await.map(Position::File),
    }
}

/// `SHOW MASTER STATUS` (`SHOW BINARY LOG STATUS` on MySQL 8.4+).
pub async fn current_file_pos(conn: &mut Conn) -> Result<FilePos, MysqlError> {
    let row: Option<Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(_) => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(query_err("SHOW BINARY LOG STATUS"))?,
    };
    let Some(mut row) = row else {
        return Err(MysqlError::Unexpected {
            what: "SHOW MASTER STATUS",
            detail: "empty result: the binary log is off (set log_bin)".into(),
        });
    };
    let file: Option<String> = row.take(0);
    let offset: Option<u64> = row.take(1);
    match (file, offset) {
        (Some(file), Some(offset)) => Ok(FilePos { file, offset }),
        _ => Err(MysqlError::Unexpected {
            what: "SHOW MASTER STATUS",
            detail: "missing File or Position column".into(),
        }),
    }
}
