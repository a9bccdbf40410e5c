//! Column values as decoded from a row-based binlog, exactly.
//!
//! A [`Value`] keeps everything the binlog carries, without rounding and without guessing an
//! encoding: integers keep their signedness and full width, DECIMAL stays decimal text, temporal
//! values keep their fractional seconds together with the column's precision (`fsp`), character
//! data keeps its raw bytes together with the column's character set, and binary data stays bytes.
//!
//! # JSON rendering (the `drc tail` format)
//!
//! [`Value::to_json`] renders a value for people and tools; the mapping is part of drc's
//! documented interface (`docs/tail.md`):
//!
//! | value | JSON |
//! |---|---|
//! | NULL | `null` |
//! | integers (every width, signed or unsigned), YEAR, BIT | number |
//! | FLOAT, DOUBLE | number (shortest text that reads back to the same float) |
//! | DECIMAL | string, exact (`"-12.500"`) |
//! | DATE / DATETIME / TIMESTAMP / TIME | string with the column's full fraction (`"2024-02-29 23:59:59.000001"`); TIMESTAMP in UTC |
//! | CHAR/VARCHAR/TEXT in utf8mb4, utf8mb3, ascii, latin1 | string (latin1 is MySQL's cp1252 variant, every byte maps to one character) |
//! | text in any other character set, or bytes invalid in their character set | `{"charset": "gbk", "base64": "..."}` |
//! | BINARY/VARBINARY/BLOB/GEOMETRY/VECTOR | `{"base64": "..."}` (standard alphabet, padded) |
//! | JSON (MySQL binary JSON) | the JSON document itself (DECIMAL inside a document becomes a string) |
//! | ENUM | its label when the binlog carried the labels, else its 1-based index as a number |
//! | SET | its labels joined by `,` when known, else the bitmask as a number |

use std::fmt;

use base64::Engine as _;
use serde_json::json;

/// One decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed integer column (TINYINT .. BIGINT).
    Int(i64),
    /// An unsigned integer column (TINYINT UNSIGNED .. BIGINT UNSIGNED).
    UInt(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL / NUMERIC, as exact decimal text.
    Decimal(String),
    /// BIT(M), the bits as an unsigned integer.
    Bit(u64),
    /// YEAR (0 is the zero year).
    Year(u16),
    /// DATE.
    Date(Date),
    /// DATETIME(fsp).
    DateTime(DateTime),
    /// TIMESTAMP(fsp): a point in time, seconds since the Unix epoch (UTC).
    Timestamp(Timestamp),
    /// TIME(fsp), possibly negative, hours may exceed 24.
    Time(Time),
    /// Character data with its character set.
    Text(Text),
    /// Binary data.
    Bytes(Vec<u8>),
    /// A MySQL binary JSON document (MariaDB's JSON is a text column and arrives as [`Value::Text`]).
    Json(serde_json::Value),
    /// ENUM: 1-based index (0 is the empty "error" value) and its label when known.
    Enum {
        /// 1-based index into the column's labels.
        index: u16,
        /// The label, when the binlog carried the column's labels.
        label: Option<String>,
    },
    /// SET: bitmask and the labels of the set bits when known.
    Set {
        /// Bit i set means label i is in the set.
        bits: u64,
        /// The labels of the set bits, in column order, when known.
        labels: Option<Vec<String>>,
    },
}

/// A calendar date; zero parts are allowed (`0000-00-00`), as MySQL allows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, 0..=9999.
    pub year: u16,
    /// Month, 0..=12.
    pub month: u8,
    /// Day, 0..=31.
    pub day: u8,
}

/// A DATETIME value with its column precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The date part.
    pub date: Date,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
    /// Microseconds, 0..=999_999.
    pub micros: u32,
    /// Fractional-second digits of the column, 0..=6.
    pub fsp: u8,
}

/// A TIMESTAMP value: seconds and microseconds since 1970-01-01 00:00:00 UTC.
/// `secs == 0 && micros == 0` is MySQL's zero timestamp `0000-00-00 00:00:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub secs: u64,
    /// Microseconds, 0..=999_999.
    pub micros: u32,
    /// Fractional-second digits of the column, 0..=6.
    pub fsp: u8,
}

/// A TIME value: a signed duration of up to 838:59:59.999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Time {
    /// True for a negative duration.
    pub negative: bool,
    /// Hours, including whole days (0..=838).
    pub hours: u32,
    /// Minutes.
    pub minutes: u8,
    /// Seconds.
    pub seconds: u8,
    /// Microseconds.
    pub micros: u32,
    /// Fractional-second digits of the column, 0..=6.
    pub fsp: u8,
}

/// The character set of a text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// utf8mb4 (any collation).
    Utf8mb4,
    /// utf8mb3 / utf8 (any collation).
    Utf8mb3,
    /// latin1: MySQL's cp1252 variant; every byte is a character.
    Latin1,
    /// ascii.
    Ascii,
    /// `binary` collation on a text-typed column.
    Binary,
    /// Any other character set, by collation id.
    Other(u16),
}

/// Character data: the raw bytes as stored, and their character set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text {
    /// Bytes in `charset`.
    pub bytes: Vec<u8>,
    /// The column's character set.
    pub charset: Charset,
    /// The name of the character set when it is [`Charset::Other`] and the name is known.
    pub charset_name: Option<&'static str>,
}

impl Text {
    /// A utf8mb4 text value.
    pub fn utf8(s: impl Into<String>) -> Self {
        Text {
            bytes: s.into().into_bytes(),
            charset: Charset::Utf8mb4,
            charset_name: None,
        }
    }

    /// Decodes the bytes into a Rust string when the character set is known and the bytes are
    /// valid in it; `None` otherwise.
    pub fn decode(&self) -> Option<String> {
        match self.charset {
            Charset::Utf8mb4 | Charset::Utf8mb3 => String::from_utf8(self.bytes.clone()).ok(),
            Charset::Ascii => {
                if self.bytes.is_ascii() {
                    String::from_utf8(self.bytes.clone()).ok()
                } else {
                    None
                }
            }
            Charset::Latin1 => Some(self.bytes.iter().map(|&b| latin1_char(b)).collect()),
            Charset::Binary | Charset::Other(_) => None,
        }
    }

    fn charset_label(&self) -> String {
        match (self.charset, self.charset_name) {
            (_, Some(name)) => name.to_string(),
            (Charset::Utf8mb4, None) => "utf8mb4".into(),
            (Charset::Utf8mb3, None) => "utf8mb3".into(),
            (Charset::Latin1, None) => "latin1".into(),
            (Charset::Ascii, None) => "ascii".into(),
            (Charset::Binary, None) => "binary".into(),
            (Charset::Other(id), None) => format!("collation#{id}"),
        }
    }
}

/// MySQL's latin1 is Windows-1252 with the five undefined bytes mapped to the C1 controls.
fn latin1_char(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}',
        '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}',
        '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}',
        '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

fn write_fraction(f: &mut fmt::Formatter<'_>, micros: u32, fsp: u8) -> fmt::Result {
    if fsp == 0 {
        return Ok(());
    }
    let fsp = u32::from(fsp.min(6));
    let digits = micros / 10u32.pow(6 - fsp);
    write!(f, ".{:0width$}", digits, width = fsp as usize)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date, self.hour, self.minute, self.second
        )?;
        write_fraction(f, self.micros, self.fsp)
    }
}

impl Timestamp {
    /// The UTC calendar time of this timestamp, or the zero datetime for the zero timestamp.
    pub fn to_utc(&self) -> DateTime {
        if self.secs == 0 && self.micros == 0 {
            return DateTime {
                date: Date {
                    year: 0,
                    month: 0,
                    day: 0,
                },
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0,
                fsp: self.fsp,
            };
        }
        let days = self.secs / 86_400;
        let rem = self.secs % 86_400;
        let date = civil_from_days(days);
        DateTime {
            date,
            hour: (rem / 3600) as u8,
            minute: ((rem % 3600) / 60) as u8,
            second: (rem % 60) as u8,
            micros: self.micros,
            fsp: self.fsp,
        }
    }
}

/// Converts a count of days since 1970-01-01 into a proleptic Gregorian date
/// (the era-based algorithm: 400-year eras of 146,097 days).
fn civil_from_days(days: u64) -> Date {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    Date {
        year: year.min(u64::from(u16::MAX)) as u16,
        month: month as u8,
        day: day as u8,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_utc().fmt(f)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        write!(
            f,
            "{:02}:{:02}:{:02}",
            self.hours, self.minutes, self.seconds
        )?;
        write_fraction(f, self.micros, self.fsp)
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Renders the value as JSON, following the table in this module's documentation.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(v) => json!(v),
            Value::UInt(v) => json!(v),
            // The shortest text that reads back to the same f32, not the widened f64's digits.
            Value::Float(v) => v
                .to_string()
                .parse::<serde_json::Number>()
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Double(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Decimal(s) => json!(s),
            Value::Bit(v) => json!(v),
            Value::Year(v) => json!(v),
            Value::Date(d) => json!(d.to_string()),
            Value::DateTime(d) => json!(d.to_string()),
            Value::Timestamp(t) => json!(t.to_string()),
            Value::Time(t) => json!(t.to_string()),
            Value::Text(t) => match t.decode() {
                Some(s) => json!(s),
                None => json!({"charset": t.charset_label(), "base64": base64(&t.bytes)}),
            },
            Value::Bytes(b) => json!({ "base64": base64(b) }),
            Value::Json(v) => v.clone(),
            Value::Enum { index, label } => match label {
                Some(l) => json!(l),
                None => json!(index),
            },
            Value::Set { bits, labels } => match labels {
                Some(l) => json!(l.join(",")),
                None => json!(bits),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_follow_the_column_precision() {
        let dt = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            hour: 23,
            minute: 59,
            second: 59,
            micros: 120_000,
            fsp: 3,
        };
        assert_eq!(dt.to_string(), "2024-02-29 23:59:59.120");
        let dt6 = DateTime { fsp: 6, ..dt };
        assert_eq!(dt6.to_string(), "2024-02-29 23:59:59.120000");
        let dt0 = DateTime {
            fsp: 0,
            micros: 0,
            ..dt
        };
        assert_eq!(dt0.to_string(), "2024-02-29 23:59:59");
    }

    #[test]
    fn negative_time_with_fraction() {
        let t = Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 1,
            fsp: 6,
        };
        assert_eq!(t.to_string(), "-838:59:59.000001");
    }

    #[test]
    fn timestamps_render_in_utc() {
        let t = Timestamp {
            secs: 2_147_483_647,
            micros: 999_999,
            fsp: 6,
        };
        assert_eq!(t.to_string(), "2038-01-19 03:14:07.999999");
        let one = Timestamp {
            secs: 1,
            micros: 0,
            fsp: 0,
        };
        assert_eq!(one.to_string(), "1970-01-01 00:00:01");
        let leap = Timestamp {
            secs: 951_782_400,
            micros: 0,
            fsp: 0,
        };
        assert_eq!(leap.to_string(), "2000-02-29 00:00:00");
        let zero = Timestamp {
            secs: 0,
            micros: 0,
            fsp: 2,
        };
        assert_eq!(zero.to_string(), "0000-00-00 00:00:00.00");
    }

    #[test]
    fn latin1_round_trips_every_byte_to_a_distinct_char() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let t = Text {
            bytes,
            charset: Charset::Latin1,
            charset_name: None,
        };
        let s = t.decode().expect("latin1 always decodes");
        let chars: std::collections::HashSet<char> = s.chars().collect();
        assert_eq!(chars.len(), 256);
        assert!(s.contains('\u{20AC}'));
    }

    #[test]
    fn json_rendering() {
        assert_eq!(
            Value::UInt(u64::MAX).to_json(),
            json!(18446744073709551615u64)
        );
        assert_eq!(Value::Int(i64::MIN).to_json(), json!(i64::MIN));
        assert_eq!(Value::Float(0.1).to_json().to_string(), "0.1");
        assert_eq!(Value::Decimal("-0.50".into()).to_json(), json!("-0.50"));
        assert_eq!(
            Value::Bytes(vec![0, 255]).to_json(),
            json!({"base64": "AP8="})
        );
        let invalid = Text {
            bytes: vec![0xff],
            charset: Charset::Utf8mb4,
            charset_name: None,
        };
        assert_eq!(
            Value::Text(invalid).to_json(),
            json!({"charset": "utf8mb4", "base64": "/w=="})
        );
        assert_eq!(
            Value::Enum {
                index: 2,
                label: None
            }
            .to_json(),
            json!(2)
        );
        assert_eq!(
            Value::Set {
                bits: 5,
                labels: Some(vec!["a".into(), "c".into()])
            }
            .to_json(),
            json!("a,c")
        );
    }
}
