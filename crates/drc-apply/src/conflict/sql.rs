//! The SQL of conflict resolution: the locking reads of the target rows a change touches and
//! the statements that write the decided outcome (see the protocol in [`super`]).
//!
//! Reads (each ends in `FOR UPDATE`, so the rows found stay locked until the apply
//! transaction commits):
//!
//! | lookup | statement |
//! |---|---|
//! | primary keys of an integer-keyed table, batched | `SELECT <cols> FROM t WHERE (pk) IN ((..), (..)) FOR UPDATE`, split at the query limit |
//! | one primary key (other key types) | `SELECT <cols> FROM t WHERE pk1 = v1 AND .. FOR UPDATE` |
//! | one unique key's values | `SELECT <cols> FROM t WHERE u1 = v1 AND .. FOR UPDATE` |
//!
//! `<cols>` reads every column in canonical form ([`select_expr`]), so the rows compare
//! with binlog images exactly. Only integer primary keys are batched: their canonical values
//! equal what the server's `=` matches, so a batched result maps back to its lookup by value;
//! for other types the server's collation decides equality, so each lookup is read alone.
//!
//! Writes are plain statements without `IGNORE` or `ON DUPLICATE KEY`: an `INSERT` of a row
//! found missing fails with a duplicate-key error if a local writer created it meanwhile,
//! and the share is decided again. Values are literals of [`crate::sql::literal`].

use drc_core::change::Image;
use drc_core::schema::{SqlType, TableSchema};
use drc_core::value::Value;

use super::canon::select_expr;
use super::decide::{Lookup, Write};
use super::tombstone;
use crate::sql::{ident, literal, table_name};

fn value(img: &Image, i: usize) -> &Value {
    img.get(i).unwrap_or(&Value::Null)
}

/// `c1 = v1 AND c2 = v2` over `cols` of `img`.
fn equal_cols(out: &mut String, t: &TableSchema, cols: &[usize], img: &Image) {
    for (n, &i) in cols.iter().enumerate() {
        if n > 0 {
            out.push_str(" AND ");
        }
        ident(out, &t.columns[i].name);
        out.push_str(" = ");
        literal(out, value(img, i));
    }
}

/// True when the primary key is made of integer columns only: the canonical values then equal
/// exactly what the server's `=` matches, so a batched read can be mapped back by value.
pub(super) fn integer_key(t: &TableSchema) -> bool {
    t.primary_key.iter().all(|&i| {
        t.columns.get(i).is_some_and(|c| {
            matches!(
                c.sql_type,
                SqlType::TinyInt
                    | SqlType::SmallInt
                    | SqlType::MediumInt
                    | SqlType::Int
                    | SqlType::BigInt
            )
        })
    })
}

/// `SELECT <every column, canonically> FROM <table> WHERE `: the head of a lookup.
fn select_where(t: &TableSchema) -> String {
    let mut q = String::from("SELECT ");
    for (n, c) in t.columns.iter().enumerate() {
        if n > 0 {
            q.push_str(", ");
        }
        select_expr(&mut q, &c.name, c.sql_type);
    }
    q.push_str(" FROM ");
    table_name(&mut q, t);
    q.push_str(" WHERE ");
    q
}

/// The locking reads of the rows with the primary keys of `imgs`: `IN` lists of at most
/// `limit` bytes each (one key per read at least).
pub(super) fn in_lookup_sqls(t: &TableSchema, imgs: &[&Image], limit: usize) -> Vec<String> {
    let mut head = select_where(t);
    head.push('(');
    for (n, &k) in t.primary_key.iter().enumerate() {
        if n > 0 {
            head.push_str(", ");
        }
        ident(&mut head, &t.columns[k].name);
    }
    head.push_str(") IN (");
    const TAIL: &str = ") FOR UPDATE";
    let mut out = Vec::new();
    let mut q = String::new();
    let mut tuple = String::new();
    for img in imgs {
        tuple.clear();
        tuple.push('(');
        for (m, &k) in t.primary_key.iter().enumerate() {
            if m > 0 {
                tuple.push_str(", ");
            }
            literal(&mut tuple, value(img, k));
        }
        tuple.push(')');
        if !q.is_empty() && q.len() + 2 + tuple.len() + TAIL.len() > limit {
            q.push_str(TAIL);
            out.push(std::mem::take(&mut q));
        }
        if q.is_empty() {
            q.push_str(&head);
        } else {
            q.push_str(", ");
        }
        q.push_str(&tuple);
    }
    if !q.is_empty() {
        q.push_str(TAIL);
        out.push(q);
    }
    out
}

/// The locking read of one lookup.
pub(super) fn lookup_sql(t: &TableSchema, l: &Lookup<'_>) -> String {
    let mut q = select_where(t);
    match l {
        Lookup::Pk(img) => equal_cols(&mut q, t, &t.primary_key, img),
        Lookup::Unique(img, n) => equal_cols(&mut q, t, &t.unique_keys[*n].columns, img),
    }
    q.push_str(" FOR UPDATE");
    q
}

/// The statement of one decided write: `INSERT` of a missing row, `UPDATE` / `DELETE` of the
/// locked row by primary key, `DELETE` of the other rows that hold a unique value
/// (`Evict`), or the tombstone of a deleted row ([`tombstone::write_sql`], applied store).
pub(super) fn write_sql(meta: &str, t: &TableSchema, w: &Write<'_>) -> String {
    let mut q = String::with_capacity(256);
    match w {
        Write::Insert(img) => {
            q.push_str("INSERT INTO ");
            table_name(&mut q, t);
            q.push_str(" (");
            let cols: Vec<usize> = (0..t.columns.len())
                .filter(|&i| img.get(i).is_some())
                .collect();
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    q.push_str(", ");
                }
                ident(&mut q, &t.columns[i].name);
            }
            q.push_str(") VALUES (");
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    q.push_str(", ");
                }
                literal(&mut q, value(img, i));
            }
            q.push(')');
        }
        Write::Update(img) => {
            q.push_str("UPDATE ");
            table_name(&mut q, t);
            q.push_str(" SET ");
            let mut first = true;
            for (i, c) in t.columns.iter().enumerate() {
                if let Some(v) = img.get(i) {
                    if !first {
                        q.push_str(", ");
                    }
                    first = false;
                    ident(&mut q, &c.name);
                    q.push_str(" = ");
                    literal(&mut q, v);
                }
            }
            q.push_str(" WHERE ");
            equal_cols(&mut q, t, &t.primary_key, img);
        }
        Write::Delete(img) => {
            q.push_str("DELETE FROM ");
            table_name(&mut q, t);
            q.push_str(" WHERE ");
            equal_cols(&mut q, t, &t.primary_key, img);
        }
        Write::Evict(img, n) => {
            q.push_str("DELETE FROM ");
            table_name(&mut q, t);
            q.push_str(" WHERE ");
            equal_cols(&mut q, t, &t.unique_keys[*n].columns, img);
            q.push_str(" AND NOT (");
            equal_cols(&mut q, t, &t.primary_key, img);
            q.push(')');
        }
        Write::Tombstone(pk_hash, tomb) => {
            return tombstone::write_sql(
                meta,
                tombstone::Store::Applied,
                &t.qualified_name(),
                pk_hash,
                tomb,
            );
        }
    }
    q
}

#[cfg(test)]
mod tests {
    //! Rendering tests (the end-to-end conflict tests prove the statements against servers).

    use drc_core::schema::{ColumnSchema, UniqueKey};
    use drc_core::value::Text;

    use super::*;
    use crate::conflict::canon::Canon;
    use crate::conflict::decide::Tomb;

    fn col(name: &str, sql_type: SqlType) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            sql_type,
            unsigned: false,
            collation: None,
        }
    }

    /// `shop.t``x (id INT PRIMARY KEY, name VARCHAR UNIQUE, v BIGINT)`.
    fn table() -> TableSchema {
        TableSchema {
            database: "shop".into(),
            table: "t`x".into(),
            columns: vec![
                col("id", SqlType::Int),
                col("name", SqlType::String),
                col("v", SqlType::BigInt),
            ],
            primary_key: vec![0],
            unique_keys: vec![UniqueKey {
                name: "u_name".into(),
                columns: vec![1],
            }],
            unique_keys_known: true,
        }
    }

    /// A table whose primary key is `(a INT, b VARCHAR)`.
    fn composite() -> TableSchema {
        TableSchema {
            database: "d".into(),
            table: "c".into(),
            columns: vec![col("a", SqlType::Int), col("b", SqlType::String)],
            primary_key: vec![0, 1],
            unique_keys: vec![],
            unique_keys_known: true,
        }
    }

    fn img(id: i64, name: &str, v: i64) -> Image {
        Image(vec![
            Some(Value::Int(id)),
            Some(Value::Text(Text::utf8(name))),
            Some(Value::Int(v)),
        ])
    }

    const COLS: &str = "SELECT `id`, CAST(`name` AS BINARY), `v` FROM `shop`.`t``x` WHERE ";

    #[test]
    fn only_integer_primary_keys_are_batched() {
        assert!(integer_key(&table()));
        assert!(!integer_key(&composite()));
    }

    #[test]
    fn single_lookups_read_every_column_canonically_and_lock() {
        let t = table();
        let i = img(7, "a'b", 3);
        assert_eq!(
            lookup_sql(&t, &Lookup::Pk(&i)),
            format!("{COLS}`id` = 7 FOR UPDATE")
        );
        assert_eq!(
            lookup_sql(&t, &Lookup::Unique(&i, 0)),
            format!("{COLS}`name` = _utf8mb4'a\\'b' FOR UPDATE")
        );
        let c = composite();
        let k = Image(vec![
            Some(Value::Int(1)),
            Some(Value::Text(Text::utf8("x"))),
        ]);
        assert_eq!(
            lookup_sql(&c, &Lookup::Pk(&k)),
            "SELECT `a`, CAST(`b` AS BINARY) FROM `d`.`c` WHERE `a` = 1 AND `b` = _utf8mb4'x' FOR UPDATE"
        );
    }

    #[test]
    fn a_missing_key_column_is_compared_with_null() {
        let t = table();
        let i = Image(vec![None, None, None]);
        assert_eq!(
            lookup_sql(&t, &Lookup::Pk(&i)),
            format!("{COLS}`id` = NULL FOR UPDATE")
        );
    }

    #[test]
    fn batched_lookups_are_in_lists_split_at_the_limit() {
        let t = table();
        let (a, b, c) = (img(1, "a", 1), img(22, "b", 1), img(333, "c", 1));
        let all = in_lookup_sqls(&t, &[&a, &b, &c], usize::MAX);
        assert_eq!(
            all,
            [format!("{COLS}(`id`) IN ((1), (22), (333)) FOR UPDATE")]
        );
        // Room for two keys: the third starts a read of its own.
        let two = format!("{COLS}(`id`) IN ((1), (22)) FOR UPDATE").len();
        assert_eq!(
            in_lookup_sqls(&t, &[&a, &b, &c], two),
            [
                format!("{COLS}(`id`) IN ((1), (22)) FOR UPDATE"),
                format!("{COLS}(`id`) IN ((333)) FOR UPDATE"),
            ]
        );
        // Every read holds one key at least, however small the limit.
        assert_eq!(in_lookup_sqls(&t, &[&a, &b], 1).len(), 2);
        assert!(in_lookup_sqls(&t, &[], usize::MAX).is_empty());
    }

    #[test]
    fn batched_lookups_of_a_composite_key_list_tuples() {
        let c = composite();
        let k1 = Image(vec![
            Some(Value::Int(1)),
            Some(Value::Text(Text::utf8("x"))),
        ]);
        let k2 = Image(vec![
            Some(Value::Int(2)),
            Some(Value::Text(Text::utf8("y"))),
        ]);
        assert_eq!(
            in_lookup_sqls(&c, &[&k1, &k2], usize::MAX),
            ["SELECT `a`, CAST(`b` AS BINARY) FROM `d`.`c` WHERE (`a`, `b`) IN ((1, _utf8mb4'x'), (2, _utf8mb4'y')) FOR UPDATE"]
        );
    }

    #[test]
    fn writes_are_plain_statements_by_primary_key() {
        let t = table();
        let i = img(7, "n", 5);
        assert_eq!(
            write_sql("m", &t, &Write::Insert(&i)),
            "INSERT INTO `shop`.`t``x` (`id`, `name`, `v`) VALUES (7, _utf8mb4'n', 5)"
        );
        assert_eq!(
            write_sql("m", &t, &Write::Update(&i)),
            "UPDATE `shop`.`t``x` SET `id` = 7, `name` = _utf8mb4'n', `v` = 5 WHERE `id` = 7"
        );
        assert_eq!(
            write_sql("m", &t, &Write::Delete(&i)),
            "DELETE FROM `shop`.`t``x` WHERE `id` = 7"
        );
        assert_eq!(
            write_sql("m", &t, &Write::Evict(&i, 0)),
            "DELETE FROM `shop`.`t``x` WHERE `name` = _utf8mb4'n' AND NOT (`id` = 7)"
        );
    }

    #[test]
    fn inserts_and_updates_name_only_the_columns_the_image_has() {
        let t = table();
        let i = Image(vec![Some(Value::Int(7)), None, Some(Value::Null)]);
        assert_eq!(
            write_sql("m", &t, &Write::Insert(&i)),
            "INSERT INTO `shop`.`t``x` (`id`, `v`) VALUES (7, NULL)"
        );
        assert_eq!(
            write_sql("m", &t, &Write::Update(&i)),
            "UPDATE `shop`.`t``x` SET `id` = 7, `v` = NULL WHERE `id` = 7"
        );
    }

    #[test]
    fn a_tombstone_is_written_to_the_applied_store() {
        let t = table();
        let tomb = Tomb {
            version: Canon::Int(5),
            hash: [2; 32],
        };
        assert_eq!(
            write_sql("m", &t, &Write::Tombstone([1; 32], tomb.clone())),
            tombstone::write_sql("m", tombstone::Store::Applied, "shop.t`x", &[1; 32], &tomb)
        );
    }
}
