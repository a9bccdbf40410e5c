//! Every column type decodes exactly: what the source yields is compared with what `SELECT`
//! returns for the same row, for edge values of each type.

use std::collections::HashMap;

use drc_core::change::ChangeKind;
use drc_core::value::{Charset, Value};
use mysql_async::prelude::Queryable;

use crate::common::{changes, fresh_db, position_now, read_rows, server, source};

/// How a column's source value is compared with the server's answer.
#[derive(Clone, Copy, Debug)]
enum Cmp {
    /// `SELECT c`: the text the server prints.
    Text,
    /// `SELECT HEX(c)`: the exact bytes.
    Hex,
    /// `SELECT CAST(c AS DOUBLE)`: FLOAT widened exactly.
    Float,
    /// `SELECT c` parsed as f64.
    Double,
    /// `SELECT c + 0`: BIT as an integer.
    BitInt,
}

struct Case {
    sql_type: &'static str,
    literals: &'static [&'static str],
    cmp: Cmp,
}

const fn case(sql_type: &'static str, literals: &'static [&'static str], cmp: Cmp) -> Case {
    Case {
        sql_type,
        literals,
        cmp,
    }
}

fn cases() -> Vec<Case> {
    use Cmp::*;
    vec![
        case("TINYINT", &["-128", "127", "0"], Text),
        case("TINYINT UNSIGNED", &["0", "255"], Text),
        case("SMALLINT", &["-32768", "32767"], Text),
        case("SMALLINT UNSIGNED", &["65535"], Text),
        case("MEDIUMINT", &["-8388608", "8388607", "-1"], Text),
        case("MEDIUMINT UNSIGNED", &["16777215"], Text),
        case("INT", &["-2147483648", "2147483647"], Text),
        case("INT UNSIGNED", &["4294967295"], Text),
        case(
            "BIGINT",
            &["-9223372036854775808", "9223372036854775807"],
            Text,
        ),
        case("BIGINT UNSIGNED", &["18446744073709551615", "0"], Text),
        case(
            "DECIMAL(65,30)",
            &[
                "-99999999999999999999999999999999999.999999999999999999999999999999",
                "0.000000000000000000000000000001",
                "0",
            ],
            Text,
        ),
        case("DECIMAL(10,2)", &["-12.50", "99999999.99"], Text),
        case("DECIMAL(5,0)", &["-99999"], Text),
        case("FLOAT", &["0.1", "-3.40282e38", "1.17549e-38", "0"], Float),
        case(
            "DOUBLE",
            &[
                "0.1",
                "1.7976931348623157e308",
                "-2.2250738585072014e-308",
                "5e-324",
            ],
            Double,
        ),
        case("BIT(1)", &["b'1'", "b'0'"], BitInt),
        case("BIT(10)", &["b'1010101011'"], BitInt),
        case(
            "BIT(64)",
            &["0xFFFFFFFFFFFFFFFF", "0x8000000000000001"],
            BitInt,
        ),
        case(
            "DATE",
            &[
                "'1000-01-01'",
                "'9999-12-31'",
                "'0000-00-00'",
                "'2024-02-29'",
            ],
            Text,
        ),
        case(
            "DATETIME",
            &["'1000-01-01 00:00:00'", "'0000-00-00 00:00:00'"],
            Text,
        ),
        case(
            "DATETIME(6)",
            &[
                "'9999-12-31 23:59:59.999999'",
                "'2024-02-29 12:00:00.000001'",
            ],
            Text,
        ),
        case("DATETIME(3)", &["'2024-01-01 00:00:00.123'"], Text),
        case("DATETIME(1)", &["'2024-01-01 00:00:00.5'"], Text),
        case(
            "TIMESTAMP NULL",
            &["'1970-01-01 00:00:01'", "'2038-01-19 03:14:07'"],
            Text,
        ),
        case("TIMESTAMP(6) NULL", &["'2038-01-19 03:14:07.999999'"], Text),
        case("TIMESTAMP(2) NULL", &["'2000-01-01 00:00:00.12'"], Text),
        case("TIME", &["'-838:59:59'", "'838:59:59'", "'00:00:00'"], Text),
        case(
            "TIME(6)",
            &["'-00:00:00.000001'", "'-12:34:56.789012'", "'123:00:00.5'"],
            Text,
        ),
        case("TIME(1)", &["'-00:00:01.5'"], Text),
        case("YEAR", &["1901", "2155", "0"], Text),
        case("CHAR(10)", &["'a'", "''", "'😀é'"], Text),
        case("CHAR(100)", &["REPEAT('ü', 100)"], Text),
        case("VARCHAR(300)", &["REPEAT('x', 300)", "'ẞ'"], Text),
        case("TEXT", &["'multi\\nline\\ttext'"], Text),
        case("LONGTEXT", &["REPEAT('long', 20000)"], Text),
        case(
            "CHAR(5) CHARACTER SET latin1",
            &["'é€'", "_latin1 X'808D8F9DFF'"],
            Hex,
        ),
        case(
            "VARCHAR(10) CHARACTER SET latin1",
            &["'Ÿ'", "_latin1 X'00'"],
            Hex,
        ),
        case("BINARY(4)", &["X'00'", "X'FF00FF00'", "''", "X'0102'"], Hex),
        case("VARBINARY(20)", &["X'00FF'", "X'80'"], Hex),
        case("BLOB", &["X'DEADBEEF00'"], Hex),
        case("LONGBLOB", &["REPEAT(X'00FF80', 50000)"], Hex),
        case("JSON", &["'{\"a\": [1, 2.5, \"x\"], \"b\": null}'"], Text),
        case("ENUM('a','b','c')", &["'b'", "'c'", "'zzz'"], Text),
        case("SET('x','y','z')", &["'x,z'", "''", "'y'"], Text),
        case("INT NULL", &["NULL"], Text),
        case("VARCHAR(5) NULL", &["NULL"], Text),
    ]
}

fn select_expr(cmp: Cmp) -> &'static str {
    match cmp {
        Cmp::Text | Cmp::Double => "c",
        Cmp::Hex => "HEX(c)",
        Cmp::Float => "CAST(c AS DOUBLE)",
        Cmp::BitInt => "c + 0",
    }
}

/// What the source value looks like in the server's rendering for `cmp`; `None` for NULL.
fn render(v: &Value, cmp: Cmp) -> Option<String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    Some(match (cmp, v) {
        (_, Value::Null) => return None,
        (Cmp::Hex, Value::Bytes(b)) => hex(b),
        (Cmp::Hex, Value::Text(t)) => hex(&t.bytes),
        (Cmp::Float, Value::Float(f)) => format!("{}", f64::from(*f)),
        (Cmp::Double, Value::Double(d)) => format!("{d}"),
        (Cmp::BitInt, Value::Bit(b)) => b.to_string(),
        (Cmp::Text, Value::Int(i)) => i.to_string(),
        (Cmp::Text, Value::UInt(i)) => i.to_string(),
        (Cmp::Text, Value::Year(y)) => format!("{y:04}"),
        (Cmp::Text, Value::Decimal(d)) => d.clone(),
        (Cmp::Text, Value::Date(d)) => d.to_string(),
        (Cmp::Text, Value::DateTime(d)) => d.to_string(),
        (Cmp::Text, Value::Timestamp(t)) => t.to_string(),
        (Cmp::Text, Value::Time(t)) => t.to_string(),
        (Cmp::Text, Value::Text(t)) => t.decode().expect("text decodes"),
        (Cmp::Text, Value::Enum { label, .. }) => label.clone().expect("enum label known"),
        (Cmp::Text, Value::Set { labels, .. }) => labels.clone().expect("set labels").join(","),
        (cmp, v) => panic!("unexpected value {v:?} for comparison {cmp:?}"),
    })
}

/// Normalizes the server's text for float comparisons (parse both sides).
fn same(cmp: Cmp, ours: &Option<String>, theirs: &Option<String>) -> bool {
    match (cmp, ours, theirs) {
        (Cmp::Float | Cmp::Double, Some(a), Some(b)) => {
            a.parse::<f64>().ok() == b.parse::<f64>().ok() && a.parse::<f64>().is_ok()
        }
        _ => ours == theirs,
    }
}

#[tokio::test]
async fn every_column_type_decodes_exactly() {
    let srv = server();
    let (db, mut conn) = fresh_db(srv, "values").await;
    let cases = cases();
    for (i, c) in cases.iter().enumerate() {
        conn.query_drop(format!(
            "CREATE TABLE t{i} (id INT AUTO_INCREMENT PRIMARY KEY, c {})",
            c.sql_type
        ))
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", c.sql_type));
    }
    let start = position_now(srv).await;
    let mut total = 0;
    for (i, c) in cases.iter().enumerate() {
        for lit in c.literals {
            conn.query_drop(format!("INSERT INTO t{i} (c) VALUES ({lit})"))
                .await
                .unwrap_or_else(|e| panic!("insert {lit} into {}: {e}", c.sql_type));
            total += 1;
        }
    }
    let mut src = source(srv, start).await;
    let events = read_rows(&mut src, &db, total).await;
    let mut got: HashMap<(String, i64), Value> = HashMap::new();
    for ch in changes(&events) {
        assert_eq!(ch.kind, ChangeKind::Insert);
        let after = ch.after.as_ref().expect("insert has an after image");
        assert!(after.is_full(), "FULL image carries every column");
        let id = match after.by_name(&ch.table, "id") {
            Some(Value::Int(id)) => *id,
            other => panic!("id is {other:?}"),
        };
        let c = after.by_name(&ch.table, "c").expect("column c").clone();
        got.insert((ch.table.table.to_string(), id), c);
    }
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let rows: Vec<(i64, Option<String>)> = conn
            .query(format!(
                "SELECT id, {} FROM t{i} ORDER BY id",
                select_expr(c.cmp)
            ))
            .await
            .expect("select");
        assert_eq!(rows.len(), c.literals.len());
        for (id, theirs) in rows {
            let v = got
                .get(&(format!("t{i}"), id))
                .unwrap_or_else(|| panic!("row {id} of {} not streamed", c.sql_type));
            let ours = render(v, c.cmp);
            if !same(c.cmp, &ours, &theirs) {
                failures.push(format!(
                    "{} row {id}: source {ours:?} ({v:?}) != SELECT {theirs:?}",
                    c.sql_type
                ));
            }
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));

    // Text in latin1 keeps its character set; binary columns are bytes, not text.
    let latin = cases
        .iter()
        .position(|c| c.sql_type.starts_with("CHAR(5) CHARACTER SET latin1"))
        .expect("latin1 case");
    match got.get(&(format!("t{latin}"), 1)) {
        Some(Value::Text(t)) => {
            assert_eq!(t.charset, Charset::Latin1);
            assert_eq!(t.decode().as_deref(), Some("é€"));
        }
        other => panic!("latin1 column decoded as {other:?}"),
    }
    let blob = cases
        .iter()
        .position(|c| c.sql_type == "BLOB")
        .expect("blob case");
    assert!(matches!(
        got.get(&(format!("t{blob}"), 1)),
        Some(Value::Bytes(_))
    ));
}

#[tokio::test]
async fn update_and_delete_carry_full_before_images() {
    let srv = server();
    let (db, mut conn) = fresh_db(srv, "images").await;
    conn.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), score DECIMAL(6,2), at DATETIME(6))",
    )
    .await
    .expect("create");
    let start = position_now(srv).await;
    conn.query_drop(
        "INSERT INTO t VALUES (1, 'ann', 1.50, '2024-01-01 00:00:00.000001'); \
         UPDATE t SET name = 'anna', score = score * 2 WHERE id = 1; \
         UPDATE t SET id = 2 WHERE id = 1; \
         DELETE FROM t WHERE id = 2",
    )
    .await
    .expect("writes");
    let mut src = source(srv, start).await;
    let ch = changes(&read_rows(&mut src, &db, 4).await);
    let kinds: Vec<ChangeKind> = ch.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Insert,
            ChangeKind::Update,
            ChangeKind::Update,
            ChangeKind::Delete
        ]
    );
    let get = |i: usize, before: bool, col: &str| -> serde_json::Value {
        let img = if before { &ch[i].before } else { &ch[i].after };
        img.as_ref().expect("image").to_json(&ch[i].table)[col].clone()
    };
    assert_eq!(get(1, true, "name"), "ann");
    assert_eq!(get(1, false, "name"), "anna");
    assert_eq!(get(1, false, "score"), "3.00");
    assert_eq!(get(2, true, "id"), 1);
    assert_eq!(get(2, false, "id"), 2);
    assert_eq!(get(3, true, "at"), "2024-01-01 00:00:00.000001");
    assert!(ch[3].after.is_none() && ch[0].before.is_none());
}

#[tokio::test]
async fn a_20_mb_row_streams_through_intact() {
    let srv = server();
    let (db, mut conn) = fresh_db(srv, "big_row").await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB, s LONGTEXT)")
        .await
        .expect("create");
    let start = position_now(srv).await;
    // 20 MiB of bytes that are not one repeated byte (every 32-byte block differs).
    conn.query_drop("SET SESSION group_concat_max_len = 67108864")
        .await
        .expect("group_concat_max_len");
    conn.query_drop(
        "INSERT INTO t SELECT 1, \
           (SELECT GROUP_CONCAT(UNHEX(SHA2(seq, 256)) SEPARATOR '') FROM seq_1_to_655360), \
           REPEAT('ü', 100000)",
    )
    .await
    .expect("insert 20 MB row");
    let (len, sha): (u64, String) = conn
        .query_first("SELECT LENGTH(b), SHA2(b, 256) FROM t")
        .await
        .expect("select")
        .expect("row");
    assert_eq!(len, 20 * 1024 * 1024, "the row is really 20 MiB");
    let mut src = source(srv, start).await;
    let ch = changes(&read_rows(&mut src, &db, 1).await);
    let after = ch[0].after.as_ref().expect("after");
    let Some(Value::Bytes(b)) = after.by_name(&ch[0].table, "b") else {
        panic!("blob column");
    };
    assert_eq!(b.len() as u64, len);
    let ours: String = conn
        .exec_first("SELECT SHA2(?, 256)", (b.clone(),))
        .await
        .expect("hash")
        .expect("row");
    assert_eq!(ours, sha, "the streamed bytes equal the stored bytes");
}
