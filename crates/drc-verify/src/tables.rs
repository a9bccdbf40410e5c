//! The tables to compare: every replicated table of the first center (the reference), read
//! with `drc bootstrap`'s discovery ([`drc_bootstrap::tables::discover`]: copyable columns,
//! their literal kinds, the primary key), narrowed by `--tables` globs, with what the checksum
//! needs besides (nullability, character set, type) from `information_schema`, and checked
//! against every other center's definition.
//!
//! A table whose definition differs between centers (missing, other columns, other primary key,
//! other types) is not compared row by row: it is reported as a schema difference. A column
//! whose character set alone differs is compared after conversion to utf8mb4
//! ([`Table::convert`]), so the same characters hash alike whatever their stored encoding.

use std::collections::BTreeMap;
use std::sync::Arc;

use drc_bootstrap::tables::TableDef;
use drc_config::{Config, TablePattern};
use drc_core::schema::{ColumnSchema, SqlType, TableSchema};
use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::error::VerifyError;

/// What the checksum needs to know of one column beyond [`TableDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// `information_schema.COLUMNS.DATA_TYPE`, lower case.
    pub data_type: String,
    /// `COLUMN_TYPE` (lengths, precision, unsigned, ENUM labels).
    pub column_type: String,
    /// The column accepts NULL.
    pub nullable: bool,
    /// Its character set, for text columns.
    pub charset: Option<String>,
}

/// A table compared across centers.
#[derive(Debug, Clone)]
pub struct Table {
    /// Columns, literal kinds and primary key (the reference center's).
    pub def: TableDef,
    /// Per column of `def.columns`.
    pub info: Vec<ColumnInfo>,
    /// Per column: its character set differs between centers, so it is hashed as utf8mb4.
    pub convert: Vec<bool>,
    /// The table as `drc-apply`'s conflict rule sees it (canonical values, ranks).
    pub schema: TableSchema,
    /// Ordinal of the last-writer-wins version column, when `[conflict]` gives the table one
    /// that it has.
    pub version: Option<usize>,
}

impl Table {
    /// `db.table`.
    pub fn name(&self) -> String {
        self.def.name()
    }
}

/// The outcome of discovery: tables to compare, and tables whose definitions differ.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Comparable tables.
    pub tables: Vec<Table>,
    /// `(db.table, what differs)`.
    pub schema_differences: Vec<(String, String)>,
}

/// The type family of an `information_schema` DATA_TYPE.
pub fn sql_type(data_type: &str) -> SqlType {
    match data_type {
        "tinyint" => SqlType::TinyInt,
        "smallint" => SqlType::SmallInt,
        "mediumint" => SqlType::MediumInt,
        "int" | "integer" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "float" => SqlType::Float,
        "double" | "real" => SqlType::Double,
        "decimal" | "numeric" => SqlType::Decimal,
        "bit" => SqlType::Bit,
        "year" => SqlType::Year,
        "date" => SqlType::Date,
        "datetime" => SqlType::DateTime,
        "timestamp" => SqlType::Timestamp,
        "time" => SqlType::Time,
        "char" | "varchar" | "binary" | "varbinary" => SqlType::String,
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" => SqlType::Blob,
        "json" => SqlType::Json,
        "enum" => SqlType::Enum,
        "set" => SqlType::Set,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => SqlType::Geometry,
        _ => SqlType::Unknown(0),
    }
}

type ColumnRows = BTreeMap<(String, String), Vec<(String, ColumnInfo)>>;

async fn columns(conn: &mut Conn, center: &str, dbs: &[String]) -> Result<ColumnRows, VerifyError> {
    let mut out = ColumnRows::new();
    if dbs.is_empty() {
        return Ok(out);
    }
    let mut q = String::from(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, \
         CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE IS_GENERATED = 'NEVER' \
         AND TABLE_SCHEMA IN (",
    );
    for (i, d) in dbs.iter().enumerate() {
        if i > 0 {
            q.push_str(", ");
        }
        quoted(&mut q, d);
    }
    q.push_str(") ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION");
    type R = (
        String,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
    );
    let rows: Vec<R> = conn
        .query(q)
        .await
        .map_err(VerifyError::query(center, "reading the tables' columns"))?;
    for (db, table, name, data_type, column_type, nullable, charset) in rows {
        out.entry((db, table)).or_default().push((
            name,
            ColumnInfo {
                data_type: data_type.to_ascii_lowercase(),
                column_type: column_type.to_ascii_lowercase(),
                nullable: nullable.eq_ignore_ascii_case("YES"),
                charset,
            },
        ));
    }
    Ok(out)
}

/// Discovers the tables to compare. `conns` are the centers' connections in topology order
/// (names in `names`); the first is the reference.
pub async fn discover(
    config: &Config,
    names: &[String],
    conns: &mut [Conn],
    only: &[TablePattern],
) -> Result<Discovered, VerifyError> {
    let selected =
        |d: &TableDef| only.is_empty() || only.iter().any(|p| p.matches(&d.db, &d.table));
    let mut defs = Vec::new();
    let mut infos = Vec::new();
    for (name, conn) in names.iter().zip(conns.iter_mut()) {
        let d: Vec<TableDef> =
            drc_bootstrap::tables::discover(conn, name, &config.replication).await?;
        defs.push(d.into_iter().filter(selected).collect::<Vec<_>>());
        infos.push(columns(conn, name, &config.replication.databases).await?);
    }
    let mut out = Discovered::default();
    let Some(reference) = defs.first() else {
        return Ok(out);
    };
    // Tables that some center has and the reference lacks.
    for (i, d) in defs.iter().enumerate().skip(1) {
        for t in d {
            if !reference.iter().any(|r| r.db == t.db && r.table == t.table) {
                out.schema_differences.push((
                    t.name(),
                    format!("center {} has it, center {} does not", names[i], names[0]),
                ));
            }
        }
    }
    'tables: for def in reference {
        let key = (def.db.clone(), def.table.clone());
        let Some(ref_cols) = infos[0].get(&key) else {
            continue;
        };
        let info: Vec<ColumnInfo> = def
            .columns
            .iter()
            .map(|c| {
                ref_cols
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map(|(_, i)| i.clone())
                    .unwrap_or(ColumnInfo {
                        data_type: String::new(),
                        column_type: String::new(),
                        nullable: true,
                        charset: None,
                    })
            })
            .collect();
        let mut convert = vec![false; def.columns.len()];
        for (i, other) in defs.iter().enumerate().skip(1) {
            let Some(o) = other
                .iter()
                .find(|o| o.db == def.db && o.table == def.table)
            else {
                out.schema_differences.push((
                    def.name(),
                    format!("center {} has it, center {} does not", names[0], names[i]),
                ));
                continue 'tables;
            };
            let mine: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
            let theirs: Vec<&str> = o.columns.iter().map(|c| c.name.as_str()).collect();
            if mine != theirs {
                out.schema_differences.push((
                    def.name(),
                    format!(
                        "columns differ: center {} has ({}), center {} has ({})",
                        names[0],
                        mine.join(", "),
                        names[i],
                        theirs.join(", ")
                    ),
                ));
                continue 'tables;
            }
            if o.pk != def.pk {
                out.schema_differences.push((
                    def.name(),
                    format!(
                        "the primary key differs between centers {} and {}",
                        names[0], names[i]
                    ),
                ));
                continue 'tables;
            }
            let Some(cols) = infos[i].get(&key) else {
                continue 'tables;
            };
            for (c, (ci, conv)) in def.columns.iter().zip(info.iter().zip(convert.iter_mut())) {
                let Some((_, oi)) = cols.iter().find(|(n, _)| *n == c.name) else {
                    continue;
                };
                if oi.column_type != ci.column_type {
                    out.schema_differences.push((
                        def.name(),
                        format!(
                            "column {} is {} in center {} and {} in center {}",
                            c.name, ci.column_type, names[0], oi.column_type, names[i]
                        ),
                    ));
                    continue 'tables;
                }
                if oi.charset != ci.charset {
                    *conv = true;
                }
            }
        }
        let schema = TableSchema {
            database: Arc::from(def.db.as_str()),
            table: Arc::from(def.table.as_str()),
            columns: def
                .columns
                .iter()
                .zip(&info)
                .map(|(c, i)| ColumnSchema {
                    name: Arc::from(c.name.as_str()),
                    sql_type: sql_type(&i.data_type),
                    unsigned: i.column_type.contains("unsigned"),
                    collation: None,
                })
                .collect(),
            primary_key: def.pk.clone(),
            unique_keys: Vec::new(),
            unique_keys_known: false,
        };
        let version = drc_apply::conflict::version_column(&config.conflict, &schema)
            .ok()
            .flatten();
        out.tables.push(Table {
            def: def.clone(),
            info,
            convert,
            schema,
            version,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_families() {
        assert_eq!(sql_type("bigint"), SqlType::BigInt);
        assert_eq!(sql_type("varbinary"), SqlType::String);
        assert_eq!(sql_type("longtext"), SqlType::Blob);
        assert_eq!(sql_type("timestamp"), SqlType::Timestamp);
        assert_eq!(sql_type("inet6"), SqlType::Unknown(0));
    }
}
