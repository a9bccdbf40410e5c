//! The replicated tables of the source center: their copyable columns, the kind of literal each
//! column's values need ([`Kind`]), the primary key, and whether a secondary unique key exists;
//! and, in the target, the databases and tables it lacks (created from the source's own
//! definitions) and the tables that already hold rows.
//!
//! Generated columns are not copied (the target computes them). Tables are read from
//! `information_schema` before the snapshot opens: a schema change on a replicated table while
//! a bootstrap runs is not supported (the copy would mix two definitions).

use drc_config::Replication;
use drc_core::sqltext::{ident, qualified, quoted};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::error::BootstrapError;

/// How a column's values are written back as SQL literals ([`crate::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Integers, DECIMAL, YEAR: the server's digits as they are.
    Number,
    /// FLOAT, DOUBLE: typed by the binary protocol, written in shortest round-trip form.
    Float,
    /// DATE.
    Date,
    /// DATETIME, TIMESTAMP (both sessions run at `time_zone = '+00:00'`).
    DateTime,
    /// TIME.
    Time,
    /// Bytes with no character set (BINARY, VARBINARY, BLOBs, BIT, spatial types): a hex
    /// literal.
    Binary,
    /// Text in this character set (CHAR, VARCHAR, TEXTs, ENUM, SET, JSON, UUID, INET...): the
    /// session reads the column's own bytes (`character_set_results = NULL`) and writes them
    /// back with the charset's introducer.
    Text(String),
}

impl Kind {
    fn of(data_type: &str, charset: Option<&str>) -> Kind {
        match data_type {
            "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal" | "year" => {
                Kind::Number
            }
            "float" | "double" => Kind::Float,
            "date" => Kind::Date,
            "datetime" | "timestamp" => Kind::DateTime,
            "time" => Kind::Time,
            "bit" | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" => Kind::Binary,
            _ => match charset {
                Some("binary") => Kind::Binary,
                Some(cs) => Kind::Text(cs.to_string()),
                None => Kind::Text("utf8mb4".to_string()),
            },
        }
    }
}

/// A copied column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// How its values are written.
    pub kind: Kind,
}

/// A replicated table of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Database.
    pub db: String,
    /// Table.
    pub table: String,
    /// The copied (non-generated) columns, in table order.
    pub columns: Vec<Column>,
    /// The primary key's columns, as indexes into `columns`, in key order.
    pub pk: Vec<usize>,
    /// The table has a unique key other than the primary key.
    pub secondary_unique: bool,
    /// The server's row estimate (for progress only).
    pub estimated_rows: u64,
}

impl TableDef {
    /// `db.table`, for messages.
    pub fn name(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// `` `db`.`table` ``.
    pub fn sql_name(&self) -> String {
        let mut s = String::new();
        qualified(&mut s, &self.db, &self.table);
        s
    }

    /// `` `a`, `b` `` of the copied columns.
    pub fn column_list(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            ident(&mut s, &c.name);
        }
        s
    }
}

fn in_list(out: &mut String, items: &[String]) {
    out.push('(');
    for (i, d) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        quoted(out, d);
    }
    out.push(')');
}

/// Reads every replicated table of the source (`conn`, center `center`). Tables without a
/// primary key are refused, all named at once.
pub async fn discover(
    conn: &mut Conn,
    center: &str,
    replication: &Replication,
) -> Result<Vec<TableDef>, BootstrapError> {
    if replication.databases.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = String::from(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ",
    );
    in_list(&mut q, &replication.databases);
    q.push_str(" ORDER BY TABLE_SCHEMA, TABLE_NAME");
    let tables: Vec<(String, String, u64)> = conn.query(q).await.map_err(BootstrapError::query(
        center,
        "listing the replicated tables",
    ))?;
    let mut out = Vec::new();
    let mut no_pk = Vec::new();
    for (db, table, estimated_rows) in tables {
        if !replication.replicates(&db, &table) {
            continue;
        }
        let mut q = String::from(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE IS_GENERATED = 'NEVER' AND TABLE_SCHEMA = ",
        );
        quoted(&mut q, &db);
        q.push_str(" AND TABLE_NAME = ");
        quoted(&mut q, &table);
        q.push_str(" ORDER BY ORDINAL_POSITION");
        let cols: Vec<(String, String, Option<String>)> = conn
            .query(q)
            .await
            .map_err(BootstrapError::query(center, "reading a table's columns"))?;
        let columns: Vec<Column> = cols
            .into_iter()
            .map(|(name, ty, cs)| Column {
                name,
                kind: Kind::of(&ty.to_ascii_lowercase(), cs.as_deref()),
            })
            .collect();
        let mut q = String::from(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ",
        );
        quoted(&mut q, &db);
        q.push_str(" AND TABLE_NAME = ");
        quoted(&mut q, &table);
        q.push_str(" ORDER BY INDEX_NAME, SEQ_IN_INDEX");
        let keys: Vec<(String, i64, String)> = conn
            .query(q)
            .await
            .map_err(BootstrapError::query(center, "reading a table's keys"))?;
        let mut pk = Vec::new();
        let mut secondary_unique = false;
        for (index, non_unique, column) in &keys {
            if index == "PRIMARY" {
                match columns.iter().position(|c| &c.name == column) {
                    Some(i) => pk.push(i),
                    None => {
                        return Err(BootstrapError::Unsupported(format!(
                            "{db}.{table}: primary key column {column} is a generated column; such tables cannot be copied"
                        )))
                    }
                }
            } else if *non_unique == 0 {
                secondary_unique = true;
            }
        }
        if pk.is_empty() {
            no_pk.push(format!("{db}.{table}"));
            continue;
        }
        out.push(TableDef {
            db,
            table,
            columns,
            pk,
            secondary_unique,
            estimated_rows,
        });
    }
    if !no_pk.is_empty() {
        return Err(BootstrapError::NoPrimaryKey {
            center: center.to_string(),
            tables: no_pk,
        });
    }
    Ok(out)
}

/// Creates in the target (`target`, center `center`) every database and table of `tables` it
/// lacks, from the source's (`source`, center `from`) `SHOW CREATE` output. Returns the tables
/// created.
pub async fn create_missing(
    source: &mut Conn,
    from: &str,
    target: &mut Conn,
    center: &str,
    tables: &[TableDef],
) -> Result<Vec<String>, BootstrapError> {
    let mut created = Vec::new();
    let mut dbs: Vec<&str> = tables.iter().map(|t| t.db.as_str()).collect();
    dbs.dedup();
    for db in dbs {
        let mut q =
            String::from("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ");
        quoted(&mut q, db);
        let n: Option<u64> = target
            .query_first(q)
            .await
            .map_err(BootstrapError::query(center, "looking for a database"))?;
        if n.unwrap_or(0) > 0 {
            continue;
        }
        let mut q = String::from("SHOW CREATE DATABASE ");
        ident(&mut q, db);
        let row: Option<(String, String)> = source.query_first(q).await.map_err(
            BootstrapError::query(from, "reading a database's definition"),
        )?;
        let Some((_, ddl)) = row else {
            return Err(BootstrapError::Unsupported(format!(
                "center {from}: SHOW CREATE DATABASE {db} returned nothing"
            )));
        };
        let ddl = match ddl.strip_prefix("CREATE DATABASE ") {
            Some(rest) => format!("CREATE DATABASE IF NOT EXISTS {rest}"),
            None => ddl,
        };
        target.query_drop(ddl).await.map_err(BootstrapError::query(
            center,
            format!("creating database {db}"),
        ))?;
    }
    for t in tables {
        let mut q =
            String::from("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ");
        quoted(&mut q, &t.db);
        q.push_str(" AND TABLE_NAME = ");
        quoted(&mut q, &t.table);
        let n: Option<u64> = target
            .query_first(q)
            .await
            .map_err(BootstrapError::query(center, "looking for a table"))?;
        if n.unwrap_or(0) > 0 {
            continue;
        }
        let row: Option<(String, String)> = source
            .query_first(format!("SHOW CREATE TABLE {}", t.sql_name()))
            .await
            .map_err(BootstrapError::query(from, "reading a table's definition"))?;
        let Some((_, ddl)) = row else {
            return Err(BootstrapError::Unsupported(format!(
                "center {from}: SHOW CREATE TABLE {} returned nothing",
                t.name()
            )));
        };
        let mut use_db = String::from("USE ");
        ident(&mut use_db, &t.db);
        target
            .query_drop(use_db)
            .await
            .map_err(BootstrapError::query(center, "selecting a database"))?;
        target.query_drop(ddl).await.map_err(BootstrapError::query(
            center,
            format!("creating table {}", t.name()),
        ))?;
        created.push(t.name());
    }
    Ok(created)
}

/// The tables of `tables` that hold at least one row in the target.
pub async fn non_empty(
    target: &mut Conn,
    center: &str,
    tables: &[TableDef],
) -> Result<Vec<String>, BootstrapError> {
    let mut out = Vec::new();
    for t in tables {
        let any: Option<u8> = target
            .query_first(format!("SELECT 1 FROM {} LIMIT 1", t.sql_name()))
            .await
            .map_err(BootstrapError::query(
                center,
                format!("reading {}", t.name()),
            ))?;
        if any.is_some() {
            out.push(t.name());
        }
    }
    Ok(out)
}
