//! Rendering tests of the rewrite (the end-to-end tests prove the statements against servers).

use std::sync::Arc;

use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::{ColumnSchema, SqlType, TableSchema};
use drc_core::value::{Charset, Text, Value};

use super::*;

fn table() -> Arc<TableSchema> {
    let col = |n: &str| ColumnSchema {
        name: n.into(),
        sql_type: SqlType::Int,
        unsigned: false,
        collation: None,
    };
    Arc::new(TableSchema {
        database: "shop".into(),
        table: "t`x".into(),
        columns: vec![col("id"), col("name")],
        primary_key: vec![0],
        unique_keys: vec![],
        unique_keys_known: true,
    })
}

fn img(id: i64, name: &str) -> Image {
    Image(vec![
        Some(Value::Int(id)),
        Some(Value::Text(Text::utf8(name))),
    ])
}

fn change(t: &Arc<TableSchema>, kind: ChangeKind, b: Option<Image>, a: Option<Image>) -> RowChange {
    RowChange {
        table: t.clone(),
        kind,
        before: b,
        after: a,
    }
}

#[test]
fn inserts_merge_into_multi_row_guarded_inserts() {
    let t = table();
    let c1 = change(&t, ChangeKind::Insert, None, Some(img(1, "a'b")));
    let c2 = change(&t, ChangeKind::Insert, None, Some(img(2, "c\\d")));
    let c3 = change(&t, ChangeKind::Insert, None, Some(img(3, "e")));
    let s = statements(&[&c1, &c2, &c3], 2, usize::MAX).expect("rewrite");
    assert_eq!(
        s,
        [
            "INSERT INTO `shop`.`t``x` (`id`, `name`) VALUES (1, _utf8mb4'a\\'b'), (2, _utf8mb4'c\\\\d') ON DUPLICATE KEY UPDATE `id` = IF(`id` <=> VALUES(`id`), `id`, NULL)",
            "INSERT INTO `shop`.`t``x` (`id`, `name`) VALUES (3, _utf8mb4'e') ON DUPLICATE KEY UPDATE `id` = IF(`id` <=> VALUES(`id`), `id`, NULL)",
        ]
    );
}

#[test]
fn update_is_an_upsert_and_a_key_change_deletes_first() {
    let t = table();
    let u = change(&t, ChangeKind::Update, Some(img(1, "a")), Some(img(1, "b")));
    let k = change(&t, ChangeKind::Update, Some(img(1, "b")), Some(img(9, "b")));
    let d = change(&t, ChangeKind::Delete, Some(img(9, "b")), None);
    let s = statements(&[&u, &k, &d], 100, usize::MAX).expect("rewrite");
    assert_eq!(
        s,
        [
            "INSERT INTO `shop`.`t``x` (`id`, `name`) VALUES (1, _utf8mb4'a') ON DUPLICATE KEY UPDATE `id` = IF(`id` <=> VALUES(`id`), `id`, NULL), `id` = VALUES(`id`), `name` = VALUES(`name`)"
                .replace("'a'", "'b'"),
            "DELETE FROM `shop`.`t``x` WHERE (`id`) IN ((1))".to_string(),
            "INSERT INTO `shop`.`t``x` (`id`, `name`) VALUES (9, _utf8mb4'b') ON DUPLICATE KEY UPDATE `id` = IF(`id` <=> VALUES(`id`), `id`, NULL), `id` = VALUES(`id`), `name` = VALUES(`name`)".to_string(),
            "DELETE FROM `shop`.`t``x` WHERE (`id`) IN ((9))".to_string(),
        ]
    );
}

#[test]
fn a_single_row_of_a_statement_renders_alone() {
    let t = table();
    let c1 = change(&t, ChangeKind::Insert, None, Some(img(1, "a")));
    let c2 = change(&t, ChangeKind::Insert, None, Some(img(2, "b")));
    let s = rendered(&[&c1, &c2], 10, 4 << 20).expect("rewrite");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].row_count(), 2);
    assert_eq!(
        s[0].single(1).expect("row 1"),
        "INSERT INTO `shop`.`t``x` (`id`, `name`) VALUES (2, _utf8mb4'b') ON DUPLICATE KEY UPDATE `id` = IF(`id` <=> VALUES(`id`), `id`, NULL)"
    );
    assert_eq!(s[0].single(2), None);
    assert_eq!(
        s[0].table().map(|t| t.qualified_name()).as_deref(),
        Some("shop.t`x")
    );
}

#[test]
fn literals_are_exact() {
    let mut s = String::new();
    for v in [
        Value::UInt(u64::MAX),
        Value::Float(0.1),
        Value::Double(5e-324),
        Value::Decimal("-0.50".into()),
        Value::Bytes(vec![0, 0xff]),
        Value::Text(Text {
            bytes: vec![0xe9],
            charset: Charset::Latin1,
            charset_name: None,
        }),
        Value::Null,
    ] {
        literal(&mut s, &v);
        s.push('|');
    }
    assert_eq!(
        s,
        "18446744073709551615|1e-1|5e-324|-0.50|X'00FF'|_latin1 X'E9'|NULL|"
    );
}

#[test]
fn a_table_without_primary_key_is_refused_by_name() {
    let mut t = (*table()).clone();
    t.primary_key.clear();
    let t = Arc::new(t);
    let c = change(&t, ChangeKind::Insert, None, Some(img(1, "a")));
    let e = statements(&[&c], 10, usize::MAX).expect_err("no pk");
    assert!(e.to_string().contains("shop.t`x has no primary key"), "{e}");
}

#[test]
fn statements_never_pass_the_byte_limit_and_a_too_large_row_is_an_error() {
    let t = table();
    let rows: Vec<RowChange> = (0..50)
        .map(|i| change(&t, ChangeKind::Insert, None, Some(img(i, &"x".repeat(100)))))
        .collect();
    let refs: Vec<&RowChange> = rows.iter().collect();
    let limit = 1000;
    let s = statements(&refs, 1000, limit).expect("rewrite");
    assert!(s.len() > 5, "split by bytes: {}", s.len());
    assert!(s.iter().all(|q| q.len() <= limit), "every statement fits");
    let n: usize = s.iter().map(|q| q.matches("_utf8mb4'").count()).sum();
    assert_eq!(n, 50, "no row lost in the split");
    let big = change(
        &t,
        ChangeKind::Insert,
        None,
        Some(img(7, &"y".repeat(2000))),
    );
    match statements(&[&big], 10, limit) {
        Err(RewriteError::RowTooLarge { table, key, bytes }) => {
            assert_eq!(table, "shop.t`x");
            assert_eq!(key, "(7)");
            assert!(bytes > 2000);
        }
        other => panic!("expected RowTooLarge, got {other:?}"),
    }
}
