//! Rows read from the source written back as SQL literals, exactly.
//!
//! The reading session uses the binary protocol (prepared statements), so numbers, floats and
//! temporal values arrive typed: a DOUBLE is not rounded to the 6 or 15 digits the text protocol
//! prints (`0.1 + 0.2` prints as `0.3` there). It reads with `character_set_results = NULL`, so
//! text arrives as the column's own bytes; it is written back with the column charset's
//! introducer (`_latin1 X'E9'`), or as an escaped `_utf8mb4'...'` string when the column is
//! UTF-8 (or ASCII) and the bytes are valid UTF-8 (smaller and cheaper to parse than hex).
//! Both sessions run at `time_zone = '+00:00'`, so TIMESTAMP values never pass through a
//! daylight-saving gap or overlap.
//!
//! Primary keys are also kept between runs ([`drc_meta::bootstrap`]) as raw bytes: the same
//! text a server prints for numbers and temporal values, the column's bytes for strings
//! ([`raw`]), turned back into literals by [`raw_literal`].

use std::fmt::Write as _;

use drc_core::sqltext::{ident, quoted};
use mysql_async::Value;

use crate::error::BootstrapError;
use crate::tables::{Kind, TableDef};

fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out.push('\'');
}

fn text(out: &mut String, bytes: &[u8], charset: &str) -> Result<(), BootstrapError> {
    if matches!(charset, "utf8mb4" | "utf8mb3" | "utf8" | "ascii") {
        if let Ok(s) = std::str::from_utf8(bytes) {
            out.push_str("_utf8mb4");
            quoted(out, s);
            return Ok(());
        }
    }
    if charset.is_empty()
        || !charset
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(BootstrapError::Unsupported(format!(
            "character set {charset:?} cannot be named in a literal"
        )));
    }
    out.push('_');
    out.push_str(charset);
    out.push(' ');
    hex(out, bytes);
    Ok(())
}

/// Digits, signs, a point and exponents only: a number the server printed.
fn number(out: &mut String, bytes: &[u8]) -> Result<(), BootstrapError> {
    if bytes.is_empty()
        || !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return Err(BootstrapError::Unsupported(format!(
            "a numeric value {:?} is not a number",
            String::from_utf8_lossy(bytes)
        )));
    }
    // Only ASCII was let through.
    out.push_str(&String::from_utf8_lossy(bytes));
    Ok(())
}

/// Digits and the separators of dates and times only, quoted.
fn temporal(out: &mut String, bytes: &[u8]) -> Result<(), BootstrapError> {
    if !bytes
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b' '))
    {
        return Err(BootstrapError::Unsupported(format!(
            "a temporal value {:?} is not a date or time",
            String::from_utf8_lossy(bytes)
        )));
    }
    out.push('\'');
    out.push_str(&String::from_utf8_lossy(bytes));
    out.push('\'');
    Ok(())
}

/// `(year, month, day, hour, minute, second, microsecond)` as the binary protocol gives them.
type DateParts = (u16, u8, u8, u8, u8, u8, u32);

fn date_text(kind: &Kind, (y, mo, d, h, mi, s, us): DateParts) -> String {
    if *kind == Kind::Date {
        format!("{y:04}-{mo:02}-{d:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
    }
}

fn time_text(neg: bool, days: u32, h: u8, mi: u8, s: u8, us: u32) -> String {
    let hours = u64::from(days) * 24 + u64::from(h);
    let sign = if neg { "-" } else { "" };
    format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
}

/// Appends `v`, a value of a column of kind `kind`, as a literal.
pub fn value(out: &mut String, v: &Value, kind: &Kind) -> Result<(), BootstrapError> {
    match v {
        Value::NULL => out.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        // `{:e}` is the shortest text that parses back to the same double; a FLOAT is widened
        // to the double it exactly is, which the server narrows back to the same float.
        Value::Float(f) => {
            let _ = write!(out, "{:e}", f64::from(*f));
        }
        Value::Double(d) => {
            let _ = write!(out, "{d:e}");
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            out.push('\'');
            out.push_str(&date_text(kind, (*y, *mo, *d, *h, *mi, *s, *us)));
            out.push('\'');
        }
        Value::Time(neg, days, h, mi, s, us) => {
            out.push('\'');
            out.push_str(&time_text(*neg, *days, *h, *mi, *s, *us));
            out.push('\'');
        }
        Value::Bytes(b) => raw_literal(out, b, kind)?,
    }
    Ok(())
}

/// The raw bytes of a key value ([`raw_literal`] turns them back into a literal).
pub fn raw(v: &Value, kind: &Kind) -> Vec<u8> {
    match v {
        Value::NULL => Vec::new(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::UInt(u) => u.to_string().into_bytes(),
        Value::Float(f) => format!("{:e}", f64::from(*f)).into_bytes(),
        Value::Double(d) => format!("{d:e}").into_bytes(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            date_text(kind, (*y, *mo, *d, *h, *mi, *s, *us)).into_bytes()
        }
        Value::Time(neg, days, h, mi, s, us) => {
            time_text(*neg, *days, *h, *mi, *s, *us).into_bytes()
        }
        Value::Bytes(b) => b.clone(),
    }
}

/// Appends the literal of raw bytes of a column of kind `kind`.
pub fn raw_literal(out: &mut String, bytes: &[u8], kind: &Kind) -> Result<(), BootstrapError> {
    match kind {
        Kind::Number | Kind::Float => number(out, bytes),
        Kind::Date | Kind::DateTime | Kind::Time => temporal(out, bytes),
        Kind::Binary => {
            hex(out, bytes);
            Ok(())
        }
        Kind::Text(cs) => text(out, bytes, cs),
    }
}

/// Appends a condition true for rows whose primary key is after `key` (`after`) or at or before
/// it (`!after`), as an OR of prefixes that the range optimizer reads as index ranges:
/// `(a > 1) OR (a = 1 AND b > 2)`.
pub fn key_condition(
    out: &mut String,
    t: &TableDef,
    key: &[Vec<u8>],
    after: bool,
) -> Result<(), BootstrapError> {
    if key.len() != t.pk.len() {
        return Err(BootstrapError::Unsupported(format!(
            "{}: a stored key has {} parts, the primary key {}; the table changed since the bootstrap started (run it again with --restart)",
            t.name(),
            key.len(),
            t.pk.len()
        )));
    }
    out.push('(');
    let n = t.pk.len();
    let mut first = true;
    for last in 0..n {
        // The last group of `<=` also includes equality on every column.
        let groups: &[&str] = if !after && last == n - 1 {
            &["<", "="]
        } else if after {
            &[">"]
        } else {
            &["<"]
        };
        for op in groups {
            if !first {
                out.push_str(" OR ");
            }
            first = false;
            out.push('(');
            for (i, (&col, part)) in t.pk.iter().zip(key).enumerate().take(last + 1) {
                if i > 0 {
                    out.push_str(" AND ");
                }
                let c = &t.columns[col];
                ident(out, &c.name);
                out.push_str(if i == last { op } else { "=" });
                raw_literal(out, part, &c.kind)?;
            }
            out.push(')');
        }
    }
    out.push(')');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Column;

    fn table() -> TableDef {
        TableDef {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                Column {
                    name: "a".into(),
                    kind: Kind::Number,
                },
                Column {
                    name: "b".into(),
                    kind: Kind::Text("latin1".into()),
                },
            ],
            pk: vec![0, 1],
            secondary_unique: false,
            estimated_rows: 0,
        }
    }

    #[test]
    fn literals_are_exact() {
        let mut s = String::new();
        value(&mut s, &Value::Double(0.1 + 0.2), &Kind::Float).ok();
        assert_eq!(s.parse::<f64>().ok(), Some(0.1 + 0.2));
        let mut s = String::new();
        value(&mut s, &Value::Float(3.402_823_5e38), &Kind::Float).ok();
        assert_eq!(
            s.parse::<f64>().ok().map(|d| d as f32),
            Some(3.402_823_5e38)
        );
        let mut s = String::new();
        value(
            &mut s,
            &Value::Bytes(vec![0xe9]),
            &Kind::Text("latin1".into()),
        )
        .ok();
        assert_eq!(s, "_latin1 X'E9'");
        let mut s = String::new();
        value(
            &mut s,
            &Value::Bytes(b"it's".to_vec()),
            &Kind::Text("utf8mb4".into()),
        )
        .ok();
        assert_eq!(s, "_utf8mb4'it\\'s'");
        let mut s = String::new();
        value(
            &mut s,
            &Value::Date(2024, 2, 29, 23, 59, 58, 7),
            &Kind::DateTime,
        )
        .ok();
        assert_eq!(s, "'2024-02-29 23:59:58.000007'");
        let mut s = String::new();
        value(&mut s, &Value::Time(true, 1, 2, 3, 4, 5), &Kind::Time).ok();
        assert_eq!(s, "'-26:03:04.000005'");
        assert!(raw_literal(&mut String::new(), b"1; DROP", &Kind::Number).is_err());
        assert!(raw_literal(&mut String::new(), b"1'", &Kind::DateTime).is_err());
    }

    #[test]
    fn key_conditions() {
        let t = table();
        let k = vec![b"1".to_vec(), vec![0x41]];
        let mut s = String::new();
        key_condition(&mut s, &t, &k, true).ok();
        assert_eq!(s, "((`a`>1) OR (`a`=1 AND `b`>_latin1 X'41'))");
        let mut s = String::new();
        key_condition(&mut s, &t, &k, false).ok();
        assert_eq!(
            s,
            "((`a`<1) OR (`a`=1 AND `b`<_latin1 X'41') OR (`a`=1 AND `b`=_latin1 X'41'))"
        );
        assert!(key_condition(&mut String::new(), &t, &k[..1], true).is_err());
    }
}
