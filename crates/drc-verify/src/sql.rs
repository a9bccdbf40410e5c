//! The statements verify sends, rendered from a [`Table`]; pure text, unit-tested.
//!
//! **The row hash.** Every row is reduced, in the server, to the first 64 bits of the SHA-1 of a
//! canonical text of its values:
//!
//! ```text
//! CONCAT_WS('#', v1, v2, ..., CONCAT(ISNULL(n1), ISNULL(n2), ...))
//! ```
//!
//! - Numbers and temporal values are the server's own text of them (the sessions run at
//!   `time_zone = '+00:00'`, so a TIMESTAMP is the same text in every center).
//! - Strings, binary strings, BLOBs, BIT, ENUM/SET labels, JSON and geometry are their bytes
//!   (no collation: `'a'` and `'A'` differ even under a case-insensitive collation, since a
//!   replicated row is written byte for byte), each preceded by its byte length as a field of
//!   its own, so that a separator inside a value cannot make two rows' texts equal (`('a#',
//!   'b')` against `('a', '#b')`). The last such column of the table needs no length: only
//!   numbers, temporal values and the NULL flags follow it, and they never hold a `#`.
//! - Plain string and binary types (CHAR, VARCHAR, TEXTs, ENUM, SET, BINARY, VARBINARY, BLOBs)
//!   enter as they are when the table's text columns share one character set: `CONCAT_WS` then
//!   keeps their bytes. Otherwise, and for every other type, the value is `CAST(.. AS BINARY)`
//!   (no character set conversion, no illegal mix of collations). A column whose character set
//!   differs between centers is converted to utf8mb4 first, and then every column is cast.
//! - `CONCAT_WS` skips NULLs, so the trailing `ISNULL` flags of the nullable columns tell NULL
//!   from the empty string (and from a missing value) in every position.
//!
//! A cryptographic digest and not CRC32: CRC is linear, so with an XOR over rows two rows that
//! swap equal-length values hash alike in the sum; a digest's bits are not. SHA-1 and not MD5:
//! measured on MariaDB 10.11, the SHA-1 checksum of a sysbench chunk takes about half the time
//! of the MD5 one (docs/benchmarks.md). Collision resistance against an adversary is not the
//! point: the rows are the operator's own.
//!
//! **A chunk's checksum** is `COUNT(*)` and `BIT_XOR` of the row hashes over a primary-key
//! range: order-independent (each center may read the rows in its own order), and only two
//! numbers cross the network. Two different chunks agree by chance with probability about
//! 2^-64.
//!
//! **Ranges** are `(lower, upper]` in primary-key order, written as OR-ed prefixes that the
//! range optimizer reads as index ranges ([`drc_bootstrap::render::key_condition`]); a chunk's
//! `upper` is the key `n` rows after `lower` in the reference center, and the last chunk is
//! open above, so the chunks of a table cover every key any center has.

use drc_bootstrap::render::{key_condition, raw_literal};
use drc_bootstrap::tables::Kind;
use drc_core::sqltext::ident;

use crate::error::VerifyError;
use crate::tables::Table;

/// A primary-key value: each part's raw bytes ([`drc_bootstrap::render::raw`]).
pub type Key = Vec<Vec<u8>>;

/// A primary-key range `(lower, upper]`; `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Range {
    /// Exclusive lower bound.
    pub lower: Option<Key>,
    /// Inclusive upper bound.
    pub upper: Option<Key>,
}

/// The column types whose values enter the row text as they are when the table's text
/// columns share one character set: their string value is their stored bytes.
fn is_plain_type(data_type: &str) -> bool {
    matches!(
        data_type,
        "char"
            | "varchar"
            | "tinytext"
            | "text"
            | "mediumtext"
            | "longtext"
            | "enum"
            | "set"
            | "binary"
            | "varbinary"
            | "tinyblob"
            | "blob"
            | "mediumblob"
            | "longblob"
    )
}

/// Per column: it enters the row text without `CAST(.. AS BINARY)`. True for plain string and
/// binary types when no column is converted and every such text column has the same character
/// set (so `CONCAT_WS` neither converts their bytes nor meets an illegal mix of collations);
/// the cast costs about a fifth of the checksum's time on a sysbench table.
fn uncast(t: &Table) -> Vec<bool> {
    let plain = |i: usize| t.info.get(i).is_some_and(|c| is_plain_type(&c.data_type));
    let mut charsets = t
        .def
        .columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match &c.kind {
            Kind::Text(cs) if plain(i) => Some(cs.as_str()),
            _ => None,
        });
    let first = charsets.next();
    let one_charset = charsets.all(|cs| Some(cs) == first);
    let any_convert = t.convert.iter().any(|&c| c);
    (0..t.def.columns.len())
        .map(|i| plain(i) && one_charset && !any_convert)
        .collect()
}

fn column_value(out: &mut String, t: &Table, i: usize, uncast: bool, last_string: bool) {
    let c = &t.def.columns[i];
    match &c.kind {
        Kind::Binary | Kind::Text(_) => {
            let mut v = String::new();
            if t.convert[i] {
                v.push_str("CONVERT(");
                ident(&mut v, &c.name);
                v.push_str(" USING utf8mb4)");
            } else {
                ident(&mut v, &c.name);
            }
            if !last_string {
                out.push_str("LENGTH(");
                out.push_str(&v);
                out.push_str("), ");
            }
            if uncast {
                out.push_str(&v);
            } else {
                out.push_str("CAST(");
                out.push_str(&v);
                out.push_str(" AS BINARY)");
            }
        }
        _ => ident(out, &c.name),
    }
}

/// The canonical text of a row (see the module docs).
pub fn row_text(t: &Table) -> String {
    let uncast = uncast(t);
    let last_string = t
        .def
        .columns
        .iter()
        .rposition(|c| matches!(c.kind, Kind::Binary | Kind::Text(_)));
    let mut s = String::from("CONCAT_WS('#'");
    for (i, &u) in uncast.iter().enumerate() {
        s.push_str(", ");
        column_value(&mut s, t, i, u, last_string == Some(i));
    }
    let nullable: Vec<usize> = (0..t.def.columns.len())
        .filter(|&i| t.info.get(i).is_none_or(|c| c.nullable))
        .collect();
    if !nullable.is_empty() {
        s.push_str(", CONCAT(");
        for (n, &i) in nullable.iter().enumerate() {
            if n > 0 {
                s.push_str(", ");
            }
            s.push_str("ISNULL(");
            ident(&mut s, &t.def.columns[i].name);
            s.push(')');
        }
        s.push(')');
    }
    s.push(')');
    s
}

/// The 64-bit row hash, an unsigned integer.
pub fn row_hash(t: &Table) -> String {
    format!(
        "CAST(CONV(LEFT(SHA1({}), 16), 16, 10) AS UNSIGNED)",
        row_text(t)
    )
}

fn pk_list(out: &mut String, t: &Table) {
    for (n, &i) in t.def.pk.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        ident(out, &t.def.columns[i].name);
    }
}

/// Appends the condition of `range` (`1` when unbounded).
pub fn range_condition(out: &mut String, t: &Table, range: &Range) -> Result<(), VerifyError> {
    let mut any = false;
    if let Some(l) = &range.lower {
        key_condition(out, &t.def, l, true)?;
        any = true;
    }
    if let Some(u) = &range.upper {
        if any {
            out.push_str(" AND ");
        }
        key_condition(out, &t.def, u, false)?;
        any = true;
    }
    if !any {
        out.push('1');
    }
    Ok(())
}

fn from(out: &mut String, t: &Table) {
    out.push_str(" FROM ");
    out.push_str(&t.def.sql_name());
    out.push_str(" FORCE INDEX (PRIMARY) WHERE ");
}

/// `COUNT(*)` and `BIT_XOR` of the row hashes in `range`.
pub fn checksum(t: &Table, range: &Range) -> Result<String, VerifyError> {
    let mut q = format!("SELECT COUNT(*), COALESCE(BIT_XOR({}), 0)", row_hash(t));
    from(&mut q, t);
    range_condition(&mut q, t, range)?;
    Ok(q)
}

/// The primary key `n` rows after `lower` (no row: fewer than `n` remain).
pub fn boundary(t: &Table, lower: Option<&Key>, n: u64) -> Result<String, VerifyError> {
    let mut q = String::from("SELECT ");
    pk_list(&mut q, t);
    from(&mut q, t);
    range_condition(
        &mut q,
        t,
        &Range {
            lower: lower.cloned(),
            upper: None,
        },
    )?;
    q.push_str(" ORDER BY ");
    pk_list(&mut q, t);
    q.push_str(&format!(" LIMIT 1 OFFSET {}", n.saturating_sub(1)));
    Ok(q)
}

/// Each row's primary key and hash in `range`, in key order.
pub fn row_hashes(t: &Table, range: &Range) -> Result<String, VerifyError> {
    let mut q = String::from("SELECT ");
    pk_list(&mut q, t);
    q.push_str(", ");
    q.push_str(&row_hash(t));
    from(&mut q, t);
    range_condition(&mut q, t, range)?;
    q.push_str(" ORDER BY ");
    pk_list(&mut q, t);
    Ok(q)
}

/// Appends `(pk1 = v1 AND pk2 = v2)`.
pub fn key_equals(out: &mut String, t: &Table, key: &Key) -> Result<(), VerifyError> {
    out.push('(');
    for (n, (&i, part)) in t.def.pk.iter().zip(key).enumerate() {
        if n > 0 {
            out.push_str(" AND ");
        }
        let c = &t.def.columns[i];
        ident(out, &c.name);
        out.push_str(" = ");
        raw_literal(out, part, &c.kind)?;
    }
    out.push(')');
    Ok(())
}

/// Every column of the rows at `keys` (their primary key first, then the columns in order).
pub fn rows(t: &Table, keys: &[Key]) -> Result<String, VerifyError> {
    let mut q = String::from("SELECT ");
    q.push_str(&t.def.column_list());
    q.push_str(" FROM ");
    q.push_str(&t.def.sql_name());
    q.push_str(" WHERE ");
    for (n, k) in keys.iter().enumerate() {
        if n > 0 {
            q.push_str(" OR ");
        }
        key_equals(&mut q, t, k)?;
    }
    if keys.is_empty() {
        q.push('0');
    }
    Ok(q)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tables::ColumnInfo;
    use drc_bootstrap::tables::{Column, TableDef};
    use std::sync::Arc;

    pub(crate) fn table() -> Table {
        let col = |name: &str, kind: Kind, nullable: bool| {
            (
                Column {
                    name: name.into(),
                    kind,
                },
                ColumnInfo {
                    data_type: "int".into(),
                    column_type: "int(11)".into(),
                    nullable,
                    charset: None,
                },
            )
        };
        let cols = [
            col("id", Kind::Number, false),
            col("name", Kind::Text("utf8mb4".into()), false),
            col("note", Kind::Text("latin1".into()), true),
        ];
        let def = TableDef {
            db: "d".into(),
            table: "t".into(),
            columns: cols.iter().map(|c| c.0.clone()).collect(),
            pk: vec![0, 1],
            secondary_unique: false,
            estimated_rows: 0,
        };
        Table {
            schema: drc_core::schema::TableSchema {
                database: Arc::from("d"),
                table: Arc::from("t"),
                columns: Vec::new(),
                primary_key: vec![0, 1],
                unique_keys: Vec::new(),
                unique_keys_known: false,
            },
            info: cols.iter().map(|c| c.1.clone()).collect(),
            convert: vec![false, false, true],
            def,
            version: None,
        }
    }

    #[test]
    fn row_text_marks_nulls_and_lengths() {
        let t = table();
        assert_eq!(
            row_text(&t),
            "CONCAT_WS('#', `id`, LENGTH(`name`), CAST(`name` AS BINARY), \
             CAST(CONVERT(`note` USING utf8mb4) AS BINARY), CONCAT(ISNULL(`note`)))"
        );
    }

    /// A table whose text columns share one character set: no casts; the last string column
    /// has no length; types other than plain strings are still cast.
    #[test]
    fn row_text_of_plain_strings_has_no_casts() {
        let mut t = table();
        t.convert = vec![false; 3];
        t.def.columns[2].kind = Kind::Text("utf8mb4".into());
        t.info[1].data_type = "varchar".into();
        t.info[2].data_type = "text".into();
        assert_eq!(
            row_text(&t),
            "CONCAT_WS('#', `id`, LENGTH(`name`), `name`, `note`, CONCAT(ISNULL(`note`)))"
        );
        // A second character set among the plain text columns: every one is cast.
        t.def.columns[2].kind = Kind::Text("latin1".into());
        assert_eq!(
            row_text(&t),
            "CONCAT_WS('#', `id`, LENGTH(`name`), CAST(`name` AS BINARY), CAST(`note` AS BINARY), \
             CONCAT(ISNULL(`note`)))"
        );
        // JSON is cast whatever the rest is.
        t.def.columns[2].kind = Kind::Text("utf8mb4".into());
        t.info[2].data_type = "json".into();
        assert_eq!(
            row_text(&t),
            "CONCAT_WS('#', `id`, LENGTH(`name`), `name`, CAST(`note` AS BINARY), \
             CONCAT(ISNULL(`note`)))"
        );
    }

    #[test]
    fn ranges_and_keys() {
        let t = table();
        let r = Range {
            lower: Some(vec![b"1".to_vec(), b"a".to_vec()]),
            upper: Some(vec![b"5".to_vec(), b"b'".to_vec()]),
        };
        let q = checksum(&t, &r).expect("renders");
        assert!(
            q.starts_with("SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(SHA1("),
            "{q}"
        );
        assert!(
            q.ends_with(
                "FROM `d`.`t` FORCE INDEX (PRIMARY) WHERE ((`id`>1) OR (`id`=1 AND `name`>_utf8mb4'a')) \
                 AND ((`id`<5) OR (`id`=5 AND `name`<_utf8mb4'b\\'') OR (`id`=5 AND `name`=_utf8mb4'b\\''))"
            ),
            "{q}"
        );
        let b = boundary(&t, None, 1000).expect("renders");
        assert_eq!(
            b,
            "SELECT `id`, `name` FROM `d`.`t` FORCE INDEX (PRIMARY) WHERE 1 ORDER BY `id`, `name` LIMIT 1 OFFSET 999"
        );
        let rows = rows(&t, &[vec![b"7".to_vec(), b"x".to_vec()]]).expect("renders");
        assert_eq!(
            rows,
            "SELECT `id`, `name`, `note` FROM `d`.`t` WHERE (`id` = 7 AND `name` = _utf8mb4'x')"
        );
    }
}
