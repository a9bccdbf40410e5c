//! Key metadata from `information_schema`: the unique keys that binlog metadata does not carry.

use mysql_async::{prelude::Queryable, Conn};

use crate::conn::MysqlError;

/// One unique index: name and column names in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexColumns {
    /// Index name (`PRIMARY` for the primary key).
    pub name: String,
    /// Column names in index order.
    pub columns: Vec<String>,
}

/// Every unique index of `database.table`, the primary key included, ordered by name.
/// An empty result means the table has none (or does not exist any more).
pub async fn load_unique_keys(
    conn: &mut Conn,
    database: &str,
    table: &str,
) -> Result<Vec<IndexColumns>, MysqlError> {
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (database, table),
        )
        .await
        .map_err(|source| MysqlError::Query {
            what: "reading unique keys from information_schema.STATISTICS",
            source,
        })?;
    let mut out: Vec<IndexColumns> = Vec::new();
    for (index, column) in rows {
        match out.last_mut() {
            Some(last) if last.name == index => last.columns.push(column),
            _ => out.push(IndexColumns {
                name: index,
                columns: vec![column],
            }),
        }
    }
    Ok(out)
}
