//! Key metadata from `information_schema`: the unique keys that binlog metadata does not carry,
//! with the collation of each key column (ordering folds key text by it, `drc_core::collation`)
//! and whether a key part indexes less than its whole column (a prefix or an expression: values
//! that differ may still collide there).

use mysql_async::{prelude::Queryable, Conn};

use crate::conn::MysqlError;

/// One unique index: name and column names in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexColumns {
    /// Index name (`PRIMARY` for the primary key).
    pub name: String,
    /// Column names in index order.
    pub columns: Vec<String>,
    /// Per column: its collation (`COLUMNS.COLLATION_NAME`), `None` for non-text columns.
    pub collations: Vec<Option<String>>,
    /// True when a key part indexes a prefix of its column (`SUB_PART`) or an expression (no
    /// column name, MySQL functional key parts): such a key is not covered by `columns`.
    pub partial: bool,
}

/// Every unique index of `database.table`, the primary key included, ordered by name.
/// An empty result means the table has none (or does not exist any more).
pub async fn load_unique_keys(
    conn: &mut Conn,
    database: &str,
    table: &str,
) -> Result<Vec<IndexColumns>, MysqlError> {
    type Row = (String, Option<String>, Option<u64>, Option<String>);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, s.SUB_PART, c.COLLATION_NAME \
             FROM information_schema.STATISTICS s \
             LEFT JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA \
             AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0 \
             ORDER BY s.INDEX_NAME, s.SEQ_IN_INDEX",
            (database, table),
        )
        .await
        .map_err(|source| MysqlError::Query {
            what: "reading unique keys and their collations from information_schema",
            source,
        })?;
    let mut out: Vec<IndexColumns> = Vec::new();
    for (index, column, sub_part, collation) in rows {
        let key = match out.last_mut() {
            Some(last) if last.name == index => last,
            _ => {
                out.push(IndexColumns {
                    name: index,
                    columns: Vec::new(),
                    collations: Vec::new(),
                    partial: false,
                });
                let n = out.len() - 1;
                &mut out[n]
            }
        };
        match column {
            Some(column) => {
                key.columns.push(column);
                key.collations.push(collation);
                key.partial |= sub_part.is_some();
            }
            None => key.partial = true,
        }
    }
    Ok(out)
}
