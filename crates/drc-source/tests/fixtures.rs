//! The MySQL path, from binlog files written by real MySQL 5.6 / 8.0 / 9.x and MariaDB 10.5
//! servers (`../shared/fixtures/binlogs/`, read by path, never copied into the repository).
//! Each test skips with a message when the folder is absent.

use std::path::PathBuf;

use drc_core::change::{ChangeKind, RowChange, SourceEvent, TxnGtid};
use drc_core::value::Value;
use drc_source::read_file;
use serde_json::json;

fn fixture(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/binlogs");
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping: fixture {} not found (shared/fixtures is absent)",
            p.display()
        );
        None
    }
}

fn events(name: &str) -> Option<Vec<SourceEvent>> {
    let p = fixture(name)?;
    let src = read_file(&p).expect("opens");
    Some(src.collect::<Result<Vec<_>, _>>().expect("file decodes"))
}

fn rows(evs: &[SourceEvent]) -> Vec<RowChange> {
    evs.iter()
        .filter_map(|e| match e {
            SourceEvent::Rows(r) => Some(r.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn after(r: &RowChange) -> serde_json::Value {
    r.after.as_ref().expect("after image").to_json(&r.table)
}

#[test]
fn mysql8_invisible_columns_and_gtids() {
    let Some(evs) = events("binlog-invisible-columns.000001") else {
        return;
    };
    let gtids: Vec<String> = evs
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Begin(b) => b.gtid.as_ref().map(|g| g.to_string()),
            _ => None,
        })
        .collect();
    assert!(gtids
        .iter()
        .all(|g| g.starts_with("97c7af02-4c50-11ec-acd8-681842034964:")));
    let r = rows(&evs);
    assert_eq!(
        after(&r[0]),
        json!({"f1": 1, "f2": 2, "f3": -3, "f4": "4", "f5": {"base64": "BQ=="}, "f6": 6000000000u64})
    );
    let upd = r
        .iter()
        .find(|c| c.kind == ChangeKind::Update)
        .expect("an update");
    assert_eq!(
        upd.before.as_ref().expect("before").to_json(&upd.table)["f3"],
        -33
    );
    assert_eq!(after(upd)["f1"], 111);
}

#[test]
fn mysql9_tagged_gtid() {
    let Some(evs) = events("binlog_transaction_with_GTID_TAG.000001") else {
        return;
    };
    let begin = evs
        .iter()
        .find_map(|e| match e {
            SourceEvent::Begin(b) => Some(b.clone()),
            _ => None,
        })
        .expect("a transaction");
    match begin.gtid {
        Some(TxnGtid::Mysql { sid, tag, gno }) => {
            assert_eq!(sid.to_string(), "55778904-0299-11f1-b1b8-4ef0c4956feb");
            assert_eq!(tag.as_deref(), Some("mytag"));
            assert_eq!(gno, 3);
        }
        other => panic!("gtid {other:?}"),
    }
    assert_eq!(
        after(&rows(&evs)[0]),
        json!({"@1": 3, "@2": 100, "@3": "250.00"})
    );
}

#[test]
fn mysql56_statement_based_dml_is_refused() {
    let Some(p) = fixture("binlog_transaction_with_GTID.000001") else {
        return;
    };
    let mut src = read_file(&p).expect("opens");
    match src.next() {
        Some(Ok(SourceEvent::Ddl(d))) => {
            assert_eq!(d.statement, "CREATE TABLE t1 (c1 INT)");
            assert_eq!(
                d.gtid.map(|g| g.to_string()).as_deref(),
                Some("006c2cf2-b1ea-11e4-9057-8c705a3d3e78:1")
            );
        }
        other => panic!("first event {other:?}"),
    }
    let err = src
        .find_map(|e| e.err())
        .expect("statement-based INSERT is an error");
    assert!(err.to_string().contains("statement-based DML"), "{err}");
}

#[test]
fn mysql8_binary_json_and_refused_partial_json_updates() {
    let Some(p) = fixture("json.binlog.000001") else {
        return;
    };
    let mut evs = Vec::new();
    let mut err = None;
    for e in read_file(&p).expect("opens") {
        match e {
            Ok(e) => evs.push(e),
            Err(e) => err = Some(e),
        }
    }
    let r = rows(&evs);
    assert!(matches!(
        r[0].after.as_ref().and_then(|a| a.get(1)),
        Some(Value::Json(_))
    ));
    assert_eq!(
        after(&r[0])["@2"],
        json!({"age": 24, "data": "xxxxxxxxxx", "name": "Joe"})
    );
    assert_eq!(after(&r[0])["@3"], "Joe");
    // This file was written with binlog_row_value_options=PARTIAL_JSON: such an update carries
    // only a diff, which drc refuses by name instead of inventing an after image.
    let err = err.expect("the partial JSON update is refused");
    assert!(
        err.to_string().contains("binlog_row_value_options"),
        "{err}"
    );
}

#[test]
fn mariadb105_gtids_and_datetime() {
    let Some(evs) = events("mariadb-bin.000001") else {
        return;
    };
    let first = evs
        .iter()
        .find_map(|e| match e {
            SourceEvent::Begin(b) => b.gtid.clone(),
            _ => None,
        })
        .expect("gtid");
    assert_eq!(first.to_string(), "0-1-1");
    let a = after(&rows(&evs)[0]);
    assert_eq!(a["id"], 62);
    assert_eq!(a["created"], "2022-04-20 22:18:04");
    assert_eq!(a["topic"], "foo");
}

#[test]
fn mysql8_enum_set_and_long_strings() {
    let Some(evs) = events("mysql-enum-string-set.000001") else {
        return;
    };
    let r = rows(&evs);
    let upd = r
        .iter()
        .find(|c| c.kind == ChangeKind::Update)
        .expect("update");
    let a = after(upd);
    assert_eq!(a["f3"], "variant2");
    assert_eq!(a["f4"], "two,four");
    assert_eq!(a["f1"], "field1");
    assert!(matches!(
        upd.after.as_ref().and_then(|i| i.get(2)),
        Some(Value::Enum { index: 2, .. })
    ));
    assert!(r.iter().any(|c| c.kind == ChangeKind::Delete));
}

#[test]
fn mysql8_bit() {
    let Some(evs) = events("mysql_type_bit.000001") else {
        return;
    };
    assert_eq!(after(&rows(&evs)[0]), json!({"a": 4, "b": "foo", "c": 32}));
}

#[test]
fn mysql8_negative_time() {
    let Some(evs) = events("time_issue.000001") else {
        return;
    };
    assert_eq!(after(&rows(&evs)[0])["@1"], "-507:48:27");
}

#[test]
fn mysql8_compressed_transaction_payload() {
    let Some(evs) = events("transaction_compression.000001") else {
        return;
    };
    let r = rows(&evs);
    assert!(!r.is_empty(), "rows inside the zstd payload are decoded");
    assert_eq!(after(&r[0]), json!({"@1": 1}));
    let commits = evs
        .iter()
        .filter(|e| matches!(e, SourceEvent::Commit(_)))
        .count();
    assert!(commits >= 1);
}

#[test]
fn mysql9_vector_columns_keep_later_charsets_aligned() {
    let Some(evs) = events("vector.binlog") else {
        return;
    };
    let r = rows(&evs);
    let bar = r
        .iter()
        .find(|c| &*c.table.table == "bar" && after(c)["id"] == 2)
        .expect("bar row 2");
    assert_eq!(after(bar)["foo"], "bar");
    // VECTOR(2) of f32 [1.01, -1.01]: raw little-endian floats.
    match bar.after.as_ref().and_then(|a| a.get(1)) {
        Some(Value::Bytes(b)) => {
            assert_eq!(b.len(), 8);
            let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            assert!((x - 1.01).abs() < 1e-6, "{x}");
        }
        other => panic!("vector {other:?}"),
    }
}
