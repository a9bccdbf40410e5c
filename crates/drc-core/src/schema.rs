//! Table schemas as the data path needs them: column names in binlog order, the primary key and
//! every unique key.
//!
//! Column names and the primary key come from the binlog's table-map metadata
//! (`binlog_row_metadata=FULL`); unique keys are not in the binlog and are added from
//! `information_schema` by the source. A schema is immutable and shared (`Arc`); when DDL changes
//! a table the source builds a new one.
//!
//! Ordering relies on unique keys (design invariant 3): two changes touching a common value of the
//! primary key OR of any unique key must be applied in source order. A schema without its unique
//! keys is therefore marked with [`TableSchema::unique_keys_known`] = false so that consumers can
//! refuse or degrade knowingly instead of silently ordering by the primary key alone.

use std::sync::Arc;

use crate::collation::Collation;

/// One column of a table, in binlog (ordinal) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSchema {
    /// Column name; `@N` (1-based) when the binlog carried no names.
    pub name: Arc<str>,
    /// The column's SQL type family, for display and checks.
    pub sql_type: SqlType,
    /// True for unsigned numeric columns.
    pub unsigned: bool,
    /// The collation of a text column of the primary key or of a unique key, from
    /// `information_schema` (the source adds it with the unique keys); `None` for other columns
    /// and when not known. Ordering folds key text by it ([`crate::collation`]).
    pub collation: Option<Collation>,
}

/// The type family of a column as the binlog describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum SqlType {
    TinyInt,
    SmallInt,
    MediumInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal,
    Bit,
    Year,
    Date,
    DateTime,
    Timestamp,
    Time,
    /// CHAR, VARCHAR, TEXT and their binary counterparts (told apart by character set).
    String,
    Blob,
    Json,
    Enum,
    Set,
    Geometry,
    Vector,
    /// Any type code drc does not know.
    Unknown(u8),
}

/// A unique index: its name and the ordinals of its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// Index name (`PRIMARY` for the primary key).
    pub name: String,
    /// Column ordinals (0-based, binlog order).
    pub columns: Vec<usize>,
}

/// The schema of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Database (schema) name.
    pub database: Arc<str>,
    /// Table name.
    pub table: Arc<str>,
    /// Columns in binlog order.
    pub columns: Vec<ColumnSchema>,
    /// Ordinals of the primary-key columns; empty when the table has no primary key.
    pub primary_key: Vec<usize>,
    /// Unique keys other than the primary key.
    pub unique_keys: Vec<UniqueKey>,
    /// False when unique keys could not be read (offline file, no metadata connection).
    pub unique_keys_known: bool,
}

impl TableSchema {
    /// The ordinal of the column named `name` (exact match), if any.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| &*c.name == name)
    }

    /// `database.table`, for logs and errors.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// True when the table has a primary key.
    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_lookup_by_name() {
        let s = TableSchema {
            database: "shop".into(),
            table: "t".into(),
            columns: vec![
                ColumnSchema {
                    name: "id".into(),
                    sql_type: SqlType::BigInt,
                    unsigned: true,
                    collation: None,
                },
                ColumnSchema {
                    name: "email".into(),
                    sql_type: SqlType::String,
                    unsigned: false,
                    collation: None,
                },
            ],
            primary_key: vec![0],
            unique_keys: vec![UniqueKey {
                name: "email".into(),
                columns: vec![1],
            }],
            unique_keys_known: true,
        };
        assert_eq!(s.column_index("email"), Some(1));
        assert_eq!(s.column_index("EMAIL"), None);
        assert_eq!(s.qualified_name(), "shop.t");
        assert!(s.has_primary_key());
    }
}
