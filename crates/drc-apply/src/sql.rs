//! The rewrite: row changes to idempotent SQL text.
//!
//! | source change | statement |
//! |---|---|
//! | INSERT | `INSERT INTO t (cols) VALUES (..),(..) ON DUPLICATE KEY UPDATE <guard>` (a row already there under the same primary key is kept: a replay is harmless) |
//! | UPDATE, key unchanged | `INSERT INTO t (cols) VALUES (..) ON DUPLICATE KEY UPDATE <guard>, c = VALUES(c), ..` (an upsert of the full after image: an update of a missing row inserts it) |
//! | UPDATE that changes the primary key | `DELETE` of the old key, then the upsert of the new row |
//! | DELETE | `DELETE FROM t WHERE (pk) IN ((..),(..))` (a missing row is fine) |
//!
//! The guard, `pk = IF(pk <=> VALUES(pk), pk, NULL)` for every primary-key column, makes a
//! duplicate on *another* unique key an error instead of a silent overwrite: MySQL's
//! `ON DUPLICATE KEY UPDATE` updates whichever row the new one collides with, so an upsert whose
//! unique value another row of the target holds would rewrite that other row (and `INSERT
//! IGNORE` would drop the change and hide every other error with it). When the colliding row has
//! another primary key, the guard sets a primary-key column to NULL, which the strict applier
//! session refuses (ER_BAD_NULL_ERROR on a primary-key column, reported by the applier as a
//! unique-key collision). So `IGNORE` is never used: only the duplicate it existed for — the
//! same primary key, a replay — passes.
//!
//! Consecutive changes of one table and kind become one multi-row statement (up to
//! `statement_rows` rows and [`MAX_STATEMENT_BYTES`], never more than the target's
//! `max_allowed_packet` allows: see [`crate::size`]).
//!
//! Values are written as literals, exactly: numbers as their shortest round-trip text, DECIMAL
//! as its digits, temporal values as quoted text with their full fraction (the session runs with
//! `time_zone = '+00:00'`, TIMESTAMP values are UTC), utf8 text as an escaped string, text in
//! other character sets as `_charset X'..'` (the bytes, unchanged), binary data as `X'..'`.
//! Columns are named explicitly, so they map by name, not position.

use std::fmt::Write as _;

use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::TableSchema;
use drc_core::value::{Charset, Value};

/// A statement is closed once its text passes this size; stays far below the default
/// `max_allowed_packet` (16 MiB on MariaDB 10.11, 64 MiB on MySQL 8).
pub const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// Problems that make a change impossible to rewrite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The table has no primary key: updates and deletes cannot address a row.
    #[error("table {0} has no primary key: drc replicates only tables with one (add a primary key, or exclude the table)")]
    NoPrimaryKey(String),
    /// An image lacks a primary-key column (binlog_row_image not FULL).
    #[error("a change of {table} lacks primary-key column {column} (is binlog_row_image FULL?)")]
    MissingKey {
        /// `db.table`.
        table: String,
        /// Column name.
        column: String,
    },
    /// One row's statement is longer than the target accepts (see [`crate::size`]).
    #[error("the statement that writes the row of {table} with primary key {key} is {bytes} bytes, more than the target accepts")]
    RowTooLarge {
        /// `db.table`.
        table: String,
        /// The primary key's values, shortened ([`key_text`]).
        key: String,
        /// The statement's length.
        bytes: usize,
    },
}

pub use drc_core::sqltext::{ident, quoted};

/// Appends `` `db`.`table` ``.
pub(crate) fn table_name(out: &mut String, t: &TableSchema) {
    ident(out, &t.database);
    out.push('.');
    ident(out, &t.table);
}

fn hex(out: &mut String, bytes: &[u8]) {
    drc_core::sqltext::hex_literal(out, bytes);
}

/// Appends `v` as an SQL literal.
pub fn literal(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) | Value::Bit(u) => {
            let _ = write!(out, "{u}");
        }
        // `{}` prints the shortest text that parses back to the same float; the server reads it
        // as a double and, for a FLOAT column, rounds it to the same f32.
        Value::Float(f) => {
            let _ = write!(out, "{f:e}");
        }
        Value::Double(d) => {
            let _ = write!(out, "{d:e}");
        }
        Value::Decimal(d) => out.push_str(d),
        Value::Year(y) => {
            let _ = write!(out, "{y}");
        }
        Value::Date(d) => {
            let _ = write!(out, "'{d}'");
        }
        Value::DateTime(d) => {
            let _ = write!(out, "'{d}'");
        }
        Value::Timestamp(t) => {
            let _ = write!(out, "'{t}'");
        }
        Value::Time(t) => {
            let _ = write!(out, "'{t}'");
        }
        Value::Text(t) => match t.charset {
            Charset::Utf8mb4 | Charset::Utf8mb3 | Charset::Ascii => {
                match std::str::from_utf8(&t.bytes) {
                    Ok(s) => {
                        out.push_str("_utf8mb4");
                        quoted(out, s);
                    }
                    Err(_) => hex(out, &t.bytes),
                }
            }
            Charset::Latin1 => {
                out.push_str("_latin1 ");
                hex(out, &t.bytes);
            }
            Charset::Binary => hex(out, &t.bytes),
            Charset::Other(_) => {
                if let Some(name) = t.charset_name {
                    out.push('_');
                    out.push_str(name);
                    out.push(' ');
                }
                hex(out, &t.bytes);
            }
        },
        Value::Bytes(b) => hex(out, b),
        Value::Json(j) => quoted(out, &j.to_string()),
        Value::Enum { index, label } => match label {
            Some(l) => quoted(out, l),
            None => {
                let _ = write!(out, "{index}");
            }
        },
        Value::Set { bits, labels } => match labels {
            Some(l) => quoted(out, &l.join(",")),
            None => {
                let _ = write!(out, "{bits}");
            }
        },
    }
}

/// The ordinals of the columns an image carries, in table order.
fn present(img: &Image) -> Vec<usize> {
    img.0
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().map(|_| i))
        .collect()
}

fn key_values<'a>(t: &TableSchema, img: &'a Image) -> Result<Vec<&'a Value>, RewriteError> {
    if t.primary_key.is_empty() {
        return Err(RewriteError::NoPrimaryKey(t.qualified_name()));
    }
    t.primary_key
        .iter()
        .map(|&k| {
            img.get(k).ok_or_else(|| RewriteError::MissingKey {
                table: t.qualified_name(),
                column: t
                    .columns
                    .get(k)
                    .map(|c| c.name.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Whether an update changes its primary key.
pub fn changes_key(c: &RowChange) -> Result<bool, RewriteError> {
    match (c.kind, &c.before, &c.after) {
        (ChangeKind::Update, Some(b), Some(a)) => {
            Ok(key_values(&c.table, b)? != key_values(&c.table, a)?)
        }
        _ => Ok(false),
    }
}

/// The shape of one statement: rows of a table with the same kind and the same columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert,
    Upsert,
    Delete,
}

/// One rendered statement and the rows it writes (for error reports: which row a server error
/// or warning is about, [`crate::worker`]).
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    /// The SQL text.
    pub sql: String,
    rows: Option<Rows<'a>>,
}

#[derive(Debug, Clone)]
struct Rows<'a> {
    op: Op,
    table: &'a TableSchema,
    cols: Vec<usize>,
    images: Vec<&'a Image>,
}

impl<'a> Statement<'a> {
    /// A statement without row information (drc's own statements, benchmarks).
    pub fn raw(sql: String) -> Self {
        Statement { sql, rows: None }
    }

    /// The table it writes, when known.
    pub fn table(&self) -> Option<&'a TableSchema> {
        self.rows.as_ref().map(|r| r.table)
    }

    /// How many rows it writes (0 when unknown).
    pub fn row_count(&self) -> usize {
        self.rows.as_ref().map_or(0, |r| r.images.len())
    }

    /// Row `i`'s image (the after image, or the before image of a delete).
    pub fn image(&self, i: usize) -> Option<&'a Image> {
        self.rows.as_ref().and_then(|r| r.images.get(i).copied())
    }

    /// The same statement for row `i` alone.
    pub fn single(&self, i: usize) -> Option<String> {
        let r = self.rows.as_ref()?;
        let image = r.images.get(i)?;
        let step = Step {
            op: r.op,
            table: r.table,
            image,
        };
        let mut sql = String::new();
        render_head(&mut sql, &step, &r.cols);
        render_row(&mut sql, &step, &r.cols);
        render_tail(&mut sql, &step, &r.cols);
        Some(sql)
    }
}

/// One step of the rewrite before rendering.
struct Step<'a> {
    op: Op,
    table: &'a TableSchema,
    image: &'a Image,
}

fn steps<'a>(changes: &[&'a RowChange]) -> Result<Vec<Step<'a>>, RewriteError> {
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let t = &*c.table;
        match (c.kind, &c.before, &c.after) {
            (ChangeKind::Insert, _, Some(a)) => {
                key_values(t, a)?;
                out.push(Step {
                    op: Op::Insert,
                    table: t,
                    image: a,
                });
            }
            (ChangeKind::Update, Some(b), Some(a)) => {
                if key_values(t, b)? != key_values(t, a)? {
                    out.push(Step {
                        op: Op::Delete,
                        table: t,
                        image: b,
                    });
                }
                out.push(Step {
                    op: Op::Upsert,
                    table: t,
                    image: a,
                });
            }
            (ChangeKind::Delete, Some(b), _) => {
                key_values(t, b)?;
                out.push(Step {
                    op: Op::Delete,
                    table: t,
                    image: b,
                });
            }
            // A change without the image its kind needs cannot come from the source.
            _ => {}
        }
    }
    Ok(out)
}

fn same_statement(a: &Step<'_>, b: &Step<'_>) -> bool {
    a.op == b.op
        && std::ptr::eq(a.table, b.table)
        && (a.op == Op::Delete || present(a.image) == present(b.image))
}

fn render_head(out: &mut String, s: &Step<'_>, cols: &[usize]) {
    match s.op {
        Op::Insert | Op::Upsert => {
            out.push_str("INSERT INTO ");
            table_name(out, s.table);
            out.push_str(" (");
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                ident(out, &s.table.columns[i].name);
            }
            out.push_str(") VALUES ");
        }
        Op::Delete => {
            out.push_str("DELETE FROM ");
            table_name(out, s.table);
            out.push_str(" WHERE (");
            for (n, &k) in s.table.primary_key.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                ident(out, &s.table.columns[k].name);
            }
            out.push_str(") IN (");
        }
    }
}

fn render_row(out: &mut String, s: &Step<'_>, cols: &[usize]) {
    out.push('(');
    let ordinals: &[usize] = if s.op == Op::Delete {
        &s.table.primary_key
    } else {
        cols
    };
    for (n, &i) in ordinals.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        literal(out, s.image.get(i).unwrap_or(&Value::Null));
    }
    out.push(')');
}

/// `pk = IF(pk <=> VALUES(pk), pk, NULL)` for every primary-key column (see the module docs).
fn render_guard(out: &mut String, t: &TableSchema) {
    for (n, &k) in t.primary_key.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let name = &t.columns[k].name;
        ident(out, name);
        out.push_str(" = IF(");
        ident(out, name);
        out.push_str(" <=> VALUES(");
        ident(out, name);
        out.push_str("), ");
        ident(out, name);
        out.push_str(", NULL)");
    }
}

fn render_tail(out: &mut String, s: &Step<'_>, cols: &[usize]) {
    match s.op {
        Op::Insert => {
            out.push_str(" ON DUPLICATE KEY UPDATE ");
            render_guard(out, s.table);
        }
        Op::Upsert => {
            out.push_str(" ON DUPLICATE KEY UPDATE ");
            render_guard(out, s.table);
            for &i in cols {
                out.push_str(", ");
                let name = &s.table.columns[i].name;
                ident(out, name);
                out.push_str(" = VALUES(");
                ident(out, name);
                out.push(')');
            }
        }
        Op::Delete => out.push(')'),
    }
}

/// The primary-key values of `img` as literals, shortened for a message.
pub fn key_text(t: &TableSchema, img: &Image) -> String {
    let mut k = String::from("(");
    for (n, &i) in t.primary_key.iter().enumerate() {
        if n > 0 {
            k.push_str(", ");
        }
        literal(&mut k, img.get(i).unwrap_or(&Value::Null));
    }
    k.push(')');
    if k.len() > 200 {
        let mut end = 200;
        while !k.is_char_boundary(end) {
            end -= 1;
        }
        k.truncate(end);
        k.push_str("...");
    }
    k
}

/// Rewrites changes (in the order given) into statements, merging consecutive changes of one
/// table and kind into multi-row statements of at most `statement_rows` rows and
/// [`MAX_STATEMENT_BYTES`] (or `max_bytes`, when smaller). A row is never split: a statement
/// of one row may use up to `max_bytes` (the target's budget, [`crate::size::budget`]), and a
/// row whose statement is longer fails with [`RewriteError::RowTooLarge`].
pub fn statements(
    changes: &[&RowChange],
    statement_rows: usize,
    max_bytes: usize,
) -> Result<Vec<String>, RewriteError> {
    Ok(rendered(changes, statement_rows, max_bytes)?
        .into_iter()
        .map(|s| s.sql)
        .collect())
}

/// [`statements`], each with the rows it writes.
pub fn rendered<'a>(
    changes: &[&'a RowChange],
    statement_rows: usize,
    max_bytes: usize,
) -> Result<Vec<Statement<'a>>, RewriteError> {
    let steps = steps(changes)?;
    let soft = MAX_STATEMENT_BYTES.min(max_bytes);
    let mut out = Vec::new();
    let mut row = String::new();
    let mut i = 0;
    while i < steps.len() {
        let first = &steps[i];
        let cols = present(first.image);
        let mut sql = String::with_capacity(256);
        render_head(&mut sql, first, &cols);
        let mut tail = String::new();
        render_tail(&mut tail, first, &cols);
        let mut images = Vec::new();
        while i < steps.len()
            && images.len() < statement_rows
            && (images.is_empty() || same_statement(first, &steps[i]))
        {
            row.clear();
            render_row(&mut row, &steps[i], &cols);
            let len = sql.len() + 2 + row.len() + tail.len();
            if !images.is_empty() && len > soft {
                break;
            }
            if images.is_empty() && len > max_bytes {
                return Err(RewriteError::RowTooLarge {
                    table: first.table.qualified_name(),
                    key: key_text(first.table, first.image),
                    bytes: len - 2,
                });
            }
            if !images.is_empty() {
                sql.push_str(", ");
            }
            sql.push_str(&row);
            images.push(steps[i].image);
            i += 1;
        }
        sql.push_str(&tail);
        out.push(Statement {
            sql,
            rows: Some(Rows {
                op: first.op,
                table: first.table,
                cols,
                images,
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
