//! Canonical column values: one form for a value decoded from a binlog image and for the same
//! value read back from the target with `SELECT`, so that every center compares and hashes a
//! row the same way whichever side it came from.
//!
//! The lookup `SELECT` asks the server for a form that converts exactly:
//!
//! | column type | selected as | canonical |
//! |---|---|---|
//! | integers, YEAR | the column | integer |
//! | BIT | `col + 0` | integer |
//! | FLOAT | `col + 0e0` (the float widened to a double) | double |
//! | DOUBLE | the column (its text round-trips) | double |
//! | DECIMAL | the column | decimal text without redundant zeros |
//! | DATE, DATETIME, TIMESTAMP, TIME | the column (session `time_zone = '+00:00'`) | text without trailing fraction zeros |
//! | JSON (MySQL binary JSON) | the column | re-serialized JSON |
//! | everything else (strings, blobs, ENUM/SET labels, geometry) | `CAST(col AS BINARY)` (bytes as stored, no charset conversion) | bytes |

use std::cmp::Ordering;
use std::fmt::Write as _;

use drc_core::schema::SqlType;
use drc_core::value::Value;
use sha2::{Digest, Sha256};

use crate::sql::ident;

/// A value in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub enum Canon {
    /// SQL NULL.
    Null,
    /// Any integer (also BIT, YEAR).
    Int(i128),
    /// FLOAT and DOUBLE, as a double.
    Float(f64),
    /// DECIMAL digits, normalized.
    Dec(String),
    /// A temporal value's text, normalized.
    Temporal(String),
    /// Bytes as stored.
    Bytes(Vec<u8>),
    /// A JSON document, re-serialized.
    Json(String),
}

/// How a column is selected and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Int,
    Float,
    Dec,
    Temporal,
    Json,
    Bytes,
}

fn read_kind(t: SqlType) -> Read {
    match t {
        SqlType::TinyInt
        | SqlType::SmallInt
        | SqlType::MediumInt
        | SqlType::Int
        | SqlType::BigInt
        | SqlType::Year
        | SqlType::Bit => Read::Int,
        SqlType::Float | SqlType::Double => Read::Float,
        SqlType::Decimal => Read::Dec,
        SqlType::Date | SqlType::DateTime | SqlType::Timestamp | SqlType::Time => Read::Temporal,
        SqlType::Json => Read::Json,
        _ => Read::Bytes,
    }
}

/// Appends the select-list expression that reads column `name` of type `t` canonically.
pub fn select_expr(out: &mut String, name: &str, t: SqlType) {
    match t {
        SqlType::Bit => {
            ident(out, name);
            out.push_str(" + 0");
        }
        SqlType::Float => {
            ident(out, name);
            out.push_str(" + 0e0");
        }
        _ if read_kind(t) == Read::Bytes => {
            out.push_str("CAST(");
            ident(out, name);
            out.push_str(" AS BINARY)");
        }
        _ => ident(out, name),
    }
}

/// Drops redundant zeros of decimal text: `-012.500` → `-12.5`, `0.000` → `0`.
fn norm_decimal(s: &str) -> String {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(s.len());
    if neg && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Drops trailing zeros of a fraction: `2024-01-02 03:04:05.120000` → `2024-01-02 03:04:05.12`.
fn norm_temporal(s: &str) -> String {
    match s.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => s.to_string(),
    }
}

impl Canon {
    /// The canonical form of a value decoded from a binlog image.
    pub fn from_value(v: Option<&Value>) -> Canon {
        let Some(v) = v else { return Canon::Null };
        match v {
            Value::Null => Canon::Null,
            Value::Int(i) => Canon::Int(i128::from(*i)),
            Value::UInt(u) | Value::Bit(u) => Canon::Int(i128::from(*u)),
            Value::Year(y) => Canon::Int(i128::from(*y)),
            Value::Float(f) => Canon::Float(f64::from(*f)),
            Value::Double(d) => Canon::Float(*d),
            Value::Decimal(d) => Canon::Dec(norm_decimal(d)),
            Value::Date(d) => Canon::Temporal(d.to_string()),
            Value::DateTime(d) => Canon::Temporal(norm_temporal(&d.to_string())),
            Value::Timestamp(t) => Canon::Temporal(norm_temporal(&t.to_string())),
            Value::Time(t) => Canon::Temporal(norm_temporal(&t.to_string())),
            Value::Text(t) => Canon::Bytes(t.bytes.clone()),
            Value::Bytes(b) => Canon::Bytes(b.clone()),
            Value::Json(j) => Canon::Json(j.to_string()),
            Value::Enum { index, label } => match label {
                Some(l) => Canon::Bytes(l.as_bytes().to_vec()),
                None => Canon::Bytes(index.to_string().into_bytes()),
            },
            Value::Set { bits, labels } => match labels {
                Some(l) => Canon::Bytes(l.join(",").into_bytes()),
                None => Canon::Bytes(bits.to_string().into_bytes()),
            },
        }
    }

    /// The canonical form of a value read back with [`select_expr`] (text protocol). Text that
    /// does not parse as the column's type is kept as bytes (it then compares unequal, and
    /// never panics).
    pub fn from_text(v: Option<&[u8]>, t: SqlType) -> Canon {
        let Some(bytes) = v else { return Canon::Null };
        let text = std::str::from_utf8(bytes).ok();
        let parsed = match (read_kind(t), text) {
            (Read::Int, Some(s)) => s.trim().parse::<i128>().ok().map(Canon::Int),
            (Read::Float, Some(s)) => s.trim().parse::<f64>().ok().map(Canon::Float),
            (Read::Dec, Some(s)) => Some(Canon::Dec(norm_decimal(s))),
            (Read::Temporal, Some(s)) => Some(Canon::Temporal(norm_temporal(s))),
            (Read::Json, Some(s)) => serde_json::from_str::<serde_json::Value>(s)
                .ok()
                .map(|j| Canon::Json(j.to_string())),
            _ => None,
        };
        parsed.unwrap_or_else(|| Canon::Bytes(bytes.to_vec()))
    }

    fn tag(&self) -> u8 {
        match self {
            Canon::Null => 0,
            Canon::Int(_) => 1,
            Canon::Float(_) => 2,
            Canon::Dec(_) => 3,
            Canon::Temporal(_) => 4,
            Canon::Bytes(_) => 5,
            Canon::Json(_) => 6,
        }
    }

    /// Feeds the value into a row hash (tagged and length-prefixed, so values never run into
    /// each other).
    fn hash_into(&self, h: &mut Sha256) {
        h.update([self.tag()]);
        let mut put = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        match self {
            Canon::Null => put(&[]),
            Canon::Int(i) => put(&i.to_le_bytes()),
            // -0.0 and 0.0 are the same value in a column.
            Canon::Float(f) => put(&(if *f == 0.0 { 0.0f64 } else { *f })
                .to_bits()
                .to_le_bytes()),
            Canon::Dec(s) | Canon::Temporal(s) | Canon::Json(s) => put(s.as_bytes()),
            Canon::Bytes(b) => put(b),
        }
    }

    /// Orders two versions: NULL first, numbers numerically, temporal values in time order.
    pub fn cmp_version(&self, other: &Canon) -> Ordering {
        match (self, other) {
            (Canon::Int(a), Canon::Int(b)) => a.cmp(b),
            (Canon::Float(a), Canon::Float(b)) => a.total_cmp(b),
            (Canon::Dec(a), Canon::Dec(b)) => cmp_decimal(a, b),
            // Normalized temporal text of one column type orders as time does: fixed-width
            // fields, and a shorter fraction is a prefix.
            (Canon::Temporal(a), Canon::Temporal(b)) => a.cmp(b),
            (Canon::Bytes(a), Canon::Bytes(b)) => a.cmp(b),
            (Canon::Json(a), Canon::Json(b)) => a.cmp(b),
            (a, b) => a.tag().cmp(&b.tag()),
        }
    }

    /// The value as JSON for the conflict table: numbers as numbers, decimals and temporal
    /// values as text, bytes as text when they are UTF-8 and as `{"hex": ..}` otherwise.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Canon::Null => J::Null,
            Canon::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    J::String(i.to_string())
                }
            }
            Canon::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Canon::Dec(s) | Canon::Temporal(s) => J::String(s.clone()),
            Canon::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
            Canon::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => J::String(s.to_string()),
                Err(_) => {
                    let mut hex = String::with_capacity(b.len() * 2);
                    for x in b {
                        let _ = write!(hex, "{x:02x}");
                    }
                    serde_json::json!({ "hex": hex })
                }
            },
        }
    }
}

fn cmp_decimal(a: &str, b: &str) -> Ordering {
    let neg_a = a.starts_with('-');
    let neg_b = b.starts_with('-');
    match (neg_a, neg_b) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => cmp_abs(a, b),
        (true, true) => cmp_abs(&b[1..], &a[1..]),
    }
}

fn cmp_abs(a: &str, b: &str) -> Ordering {
    let (ai, af) = a.split_once('.').unwrap_or((a, ""));
    let (bi, bf) = b.split_once('.').unwrap_or((b, ""));
    ai.len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(bi))
        .then_with(|| af.cmp(bf))
}

/// The SHA-256 of a row's canonical values, in column order.
pub fn row_hash(values: &[Canon]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        v.hash_into(&mut h);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_normalize_and_order() {
        assert_eq!(norm_decimal("-012.500"), "-12.5");
        assert_eq!(norm_decimal("0.000"), "0");
        assert_eq!(norm_decimal("-0.00"), "0");
        assert_eq!(norm_decimal("100"), "100");
        let c = |a: &str, b: &str| cmp_decimal(&norm_decimal(a), &norm_decimal(b));
        assert_eq!(c("9.99", "10.0"), Ordering::Less);
        assert_eq!(c("-9.99", "-10"), Ordering::Greater);
        assert_eq!(c("1.25", "1.3"), Ordering::Less);
        assert_eq!(c("-1", "0"), Ordering::Less);
        assert_eq!(c("5.50", "5.5"), Ordering::Equal);
    }

    #[test]
    fn temporal_text_orders_as_time() {
        let t = |s: &str| Canon::Temporal(norm_temporal(s));
        assert_eq!(
            t("2024-01-02 03:04:05.000000"),
            t("2024-01-02 03:04:05"),
            "trailing zeros do not matter"
        );
        assert_eq!(
            t("2024-01-02 03:04:05.1").cmp_version(&t("2024-01-02 03:04:05.12")),
            Ordering::Less
        );
        assert_eq!(
            t("2024-01-02 03:04:05.2").cmp_version(&t("2024-01-02 03:04:05.12")),
            Ordering::Greater
        );
        assert_eq!(
            t("2024-01-02 03:04:05").cmp_version(&t("2024-01-02 03:04:05.000001")),
            Ordering::Less
        );
        assert_eq!(
            Canon::Null.cmp_version(&t("0000-00-00 00:00:00")),
            Ordering::Less
        );
    }

    #[test]
    fn the_same_value_from_either_side_is_equal() {
        assert_eq!(
            Canon::from_value(Some(&Value::Float(0.1))),
            Canon::from_text(Some(b"0.10000000149011612"), SqlType::Float)
        );
        assert_eq!(
            Canon::from_value(Some(&Value::Decimal("12.50".into()))),
            Canon::from_text(Some(b"12.50"), SqlType::Decimal)
        );
        assert_eq!(
            Canon::from_value(Some(&Value::Bit(5))),
            Canon::from_text(Some(b"5"), SqlType::Bit)
        );
        assert_eq!(
            Canon::from_value(None),
            Canon::from_text(None, SqlType::Int)
        );
        assert_eq!(
            Canon::from_text(Some(b"not a number"), SqlType::Int),
            Canon::Bytes(b"not a number".to_vec())
        );
        assert_ne!(
            row_hash(&[Canon::Bytes(b"ab".to_vec()), Canon::Bytes(b"c".to_vec())]),
            row_hash(&[Canon::Bytes(b"a".to_vec()), Canon::Bytes(b"bc".to_vec())])
        );
    }
}
