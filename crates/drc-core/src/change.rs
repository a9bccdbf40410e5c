//! What a binlog source yields: transactions as a stream of events, row changes, DDL.
//!
//! # Protocol
//!
//! A source yields [`SourceEvent`]s in binlog order. A transaction is
//! `Begin`, zero or more `Rows`, then `Commit`; nothing of another transaction interleaves. A
//! transaction is streamed, never collected whole, so that a 1,000,000-row transaction flows
//! through in bounded memory. DDL arrives as a single `Ddl` event outside any transaction.
//!
//! The position carried by `Commit` and `Ddl` is the position *after* that event: resuming a
//! source from it yields the next transaction. A consumer that stores the position of the last
//! `Commit` it fully handled, and resumes from it, sees every transaction exactly once.
//!
//! Within one source connection no event is repeated. After a reconnect the source resumes from
//! the last `Commit` it yielded and suppresses the part of an interrupted transaction that it had
//! already yielded, so the consumer sees the rest of it, continuing where it stopped.

use std::fmt;
use std::sync::Arc;

use crate::ddl::Ddl;
use crate::position::{FilePos, MariaGtid, Position};
use crate::schema::TableSchema;
use crate::value::Value;

/// The kind of a row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A new row (after image only).
    Insert,
    /// A changed row (before and after images).
    Update,
    /// A removed row (before image only).
    Delete,
}

impl ChangeKind {
    /// Lower-case name, as printed by `drc tail` and used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row image: a value per table column (binlog order); `None` for a column the image does
/// not carry (only possible with `binlog_row_image` other than FULL).
#[derive(Debug, Clone, PartialEq)]
pub struct Image(pub Vec<Option<Value>>);

impl Image {
    /// The value of column `ordinal`, if the image carries it.
    pub fn get(&self, ordinal: usize) -> Option<&Value> {
        self.0.get(ordinal).and_then(Option::as_ref)
    }

    /// The value of the column named `name` in `schema`, if the image carries it.
    pub fn by_name<'a>(&'a self, schema: &TableSchema, name: &str) -> Option<&'a Value> {
        schema.column_index(name).and_then(|i| self.get(i))
    }

    /// True when every column is present.
    pub fn is_full(&self) -> bool {
        self.0.iter().all(Option::is_some)
    }

    /// The image as a JSON object keyed by column name (absent columns are left out).
    pub fn to_json(&self, schema: &TableSchema) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(self.0.len());
        for (col, value) in schema.columns.iter().zip(&self.0) {
            if let Some(v) = value {
                map.insert(col.name.to_string(), v.to_json());
            }
        }
        serde_json::Value::Object(map)
    }
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The table's schema at the time of the change.
    pub table: Arc<TableSchema>,
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// The row before the change (update, delete).
    pub before: Option<Image>,
    /// The row after the change (insert, update).
    pub after: Option<Image>,
}

/// The GTID of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnGtid {
    /// MariaDB `domain-server-seq`.
    Maria(MariaGtid),
    /// MySQL `uuid[:tag]:gno`.
    Mysql {
        /// Source UUID.
        sid: uuid::Uuid,
        /// Tag (MySQL 8.3+), lower case.
        tag: Option<String>,
        /// Transaction number.
        gno: u64,
    },
}

impl fmt::Display for TxnGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnGtid::Maria(g) => g.fmt(f),
            TxnGtid::Mysql {
                sid,
                tag: Some(tag),
                gno,
            } => write!(f, "{sid}:{tag}:{gno}"),
            TxnGtid::Mysql {
                sid,
                tag: None,
                gno,
            } => write!(f, "{sid}:{gno}"),
        }
    }
}

/// The start of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnBegin {
    /// `server_id` in the binlog event header: the server where the transaction originated
    /// (or the one drc's loopback tagging named).
    pub server_id: u32,
    /// The transaction's GTID, when the server uses GTIDs.
    pub gtid: Option<TxnGtid>,
    /// Event timestamp (seconds since the epoch, the source server's clock).
    pub timestamp: u32,
}

/// The end of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnCommit {
    /// Resume position after this transaction (GTID state when available, else file:offset).
    pub position: Position,
    /// File and offset after this transaction (empty file name for offline input without one).
    pub file_pos: FilePos,
    /// Event timestamp (seconds since the epoch).
    pub timestamp: u32,
}

/// A DDL statement, delivered as is (raw text) with its classification.
#[derive(Debug, Clone, PartialEq)]
pub struct DdlEvent {
    /// Header `server_id`.
    pub server_id: u32,
    /// The default database of the session that ran it (may be empty).
    pub database: String,
    /// The statement text, exactly as in the binlog.
    pub statement: String,
    /// What the statement does and which tables it touches.
    pub ddl: Ddl,
    /// The statement's GTID, when the server uses GTIDs.
    pub gtid: Option<TxnGtid>,
    /// Resume position after this statement.
    pub position: Position,
    /// File and offset after this statement.
    pub file_pos: FilePos,
    /// Event timestamp (seconds since the epoch).
    pub timestamp: u32,
}

/// One item of a source's output. See the module docs for the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A transaction starts.
    Begin(TxnBegin),
    /// Row changes of the current transaction (one binlog rows event, in order).
    Rows(Vec<RowChange>),
    /// The current transaction committed.
    Commit(TxnCommit),
    /// A DDL statement.
    Ddl(DdlEvent),
}
