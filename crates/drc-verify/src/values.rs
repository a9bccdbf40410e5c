//! Row values as `drc-apply`'s conflict rule sees them: each column's canonical value
//! ([`drc_apply::conflict::canon::Canon`]), the row's rank (version column, then the SHA-256 of
//! its canonical values), and JSON for reports — so that verify shows, and repair ranks, a row
//! the way the appliers do.

use drc_apply::conflict::canon::Canon;
use drc_apply::conflict::decide::Row as LwwRow;
use drc_core::schema::SqlType;
use mysql_async::Value;

use crate::sql::Key;
use crate::tables::Table;

fn from_raw(bytes: &[u8], ty: SqlType) -> Canon {
    if ty == SqlType::Bit {
        // BIT arrives as big-endian bytes.
        if bytes.len() <= 8 {
            let n = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            return Canon::Int(i128::from(n));
        }
    }
    Canon::from_text(Some(bytes), ty)
}

/// The canonical value of column `col` of `t`.
pub fn canon(t: &Table, col: usize, v: &Value) -> Canon {
    if *v == Value::NULL {
        return Canon::Null;
    }
    let kind = &t.def.columns[col].kind;
    let ty = t.schema.columns[col].sql_type;
    from_raw(&drc_bootstrap::render::raw(v, kind), ty)
}

/// The row as the conflict rule ranks it.
pub fn lww_row(t: &Table, vals: &[Value]) -> LwwRow {
    LwwRow::new(
        vals.iter()
            .enumerate()
            .map(|(i, v)| canon(t, i, v))
            .collect(),
    )
}

/// The row as a JSON object by column name.
pub fn row_json(t: &Table, vals: &[Value]) -> serde_json::Value {
    lww_row(t, vals).to_json(&t.schema)
}

/// The primary key as a JSON object by column name.
pub fn key_json(t: &Table, key: &Key) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (part, &col) in key.iter().zip(&t.def.pk) {
        let ty = t.schema.columns[col].sql_type;
        m.insert(
            t.def.columns[col].name.clone(),
            from_raw(part, ty).to_json(),
        );
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_numbers_and_text_stays_text() {
        assert_eq!(from_raw(&[1, 0], SqlType::Bit), Canon::Int(256));
        assert_eq!(
            from_raw(b"12.50", SqlType::Decimal),
            Canon::Dec("12.5".into())
        );
        assert_eq!(
            from_raw(b"ab", SqlType::String),
            Canon::Bytes(b"ab".to_vec())
        );
    }
}
