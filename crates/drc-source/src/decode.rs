//! Row decoding: from a rows event's raw bytes to [`RowChange`]s, with column information
//! computed once per table map and cached.
//!
//! mysql_common's per-row `rows()` path re-reads the table map's optional metadata and allocates
//! column names for every row (4.7x slower, facts.md). Here a [`TableDecoder`] is built once per
//! distinct table map: each column's type, metadata bytes, signedness, character set and ENUM/SET
//! labels are resolved up front, and decoding a row is a loop over that array.
//!
//! Metadata is validated when the decoder is built, so decoding never indexes past a column's
//! metadata; a row that ends early or overruns its event is a [`DecodeError`], never a panic.

use std::sync::Arc;

use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::{ColumnSchema, SqlType, TableSchema};
use drc_core::value::{Charset, Date, DateTime, Text, Time, Timestamp, Value};
use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::collations::{Collation, CollationId};
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;

/// ENUM/SET labels as text only when that text is exactly the label: the column's character
/// set is UTF-8 (or ASCII) and every label is valid UTF-8. Otherwise `None`, and values carry
/// only their index or bits, which the applier writes as numbers (exact for a target whose
/// definition lists the same labels in the same order); a lossy label could name another label,
/// or none, in the target.
fn exact_labels(raw: Vec<Vec<u8>>, charset: Charset) -> Option<Arc<[String]>> {
    if !matches!(
        charset,
        Charset::Utf8mb4 | Charset::Utf8mb3 | Charset::Ascii
    ) {
        return None;
    }
    raw.into_iter()
        .map(|b| String::from_utf8(b).ok())
        .collect::<Option<Vec<String>>>()
        .map(Arc::from)
}

/// A row or table map that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The table map describes a column drc cannot decode.
    #[error("table {table}: column {column} has {problem}")]
    Column {
        /// `db.table`.
        table: String,
        /// Column ordinal (1-based) or name.
        column: String,
        /// What is wrong.
        problem: String,
    },
    /// A row's bytes do not match its table map.
    #[error("table {table}: malformed row data at column {column}: {detail}")]
    Row {
        /// `db.table`.
        table: String,
        /// Column name.
        column: String,
        /// What went wrong.
        detail: String,
    },
    /// The table map's optional metadata could not be read.
    #[error("table {table}: bad table-map metadata: {detail}")]
    Metadata {
        /// `db.table`.
        table: String,
        /// What went wrong.
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Decoded by mysql_common, converted generically.
    Generic,
    Timestamp2,
    TimestampV1,
    /// TIME(fsp) in the 5.6+ format, decoded here: mysql_common's decoder mishandles negative
    /// values with 1-4 fractional digits (an unsigned underflow).
    Time2,
    /// MEDIUMINT: mysql_common does not sign-extend negative values.
    Int24,
    Year,
    Bit,
    Enum,
    Set,
    /// Character data (charset known).
    Text,
    /// Binary data.
    Binary,
    Json,
}

/// Hand-decoded layouts of the most common column types (no detour through mysql_common).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fast {
    No,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    /// Length-prefixed bytes with a 1..=4 byte little-endian length.
    Len(u8),
}

#[derive(Debug, Clone)]
struct ColumnDecoder {
    fast: Fast,
    ctype: ColumnType,
    meta: Vec<u8>,
    unsigned: bool,
    kind: Kind,
    charset: Charset,
    charset_name: Option<&'static str>,
    fsp: u8,
    labels: Option<Arc<[String]>>,
    /// BINARY(n): the server strips trailing 0x00 bytes when logging; `SELECT` returns them.
    pad_to: Option<usize>,
}

/// Decodes the rows of one table map.
#[derive(Debug, Clone)]
pub struct TableDecoder {
    schema: Arc<TableSchema>,
    cols: Vec<ColumnDecoder>,
}

fn sql_type(t: ColumnType) -> SqlType {
    use ColumnType::*;
    match t {
        MYSQL_TYPE_TINY => SqlType::TinyInt,
        MYSQL_TYPE_SHORT => SqlType::SmallInt,
        MYSQL_TYPE_INT24 => SqlType::MediumInt,
        MYSQL_TYPE_LONG => SqlType::Int,
        MYSQL_TYPE_LONGLONG => SqlType::BigInt,
        MYSQL_TYPE_FLOAT => SqlType::Float,
        MYSQL_TYPE_DOUBLE => SqlType::Double,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => SqlType::Decimal,
        MYSQL_TYPE_BIT => SqlType::Bit,
        MYSQL_TYPE_YEAR => SqlType::Year,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => SqlType::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => SqlType::DateTime,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => SqlType::Timestamp,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => SqlType::Time,
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_STRING => SqlType::String,
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => {
            SqlType::Blob
        }
        MYSQL_TYPE_JSON => SqlType::Json,
        MYSQL_TYPE_ENUM => SqlType::Enum,
        MYSQL_TYPE_SET => SqlType::Set,
        MYSQL_TYPE_GEOMETRY => SqlType::Geometry,
        MYSQL_TYPE_VECTOR => SqlType::Vector,
        other => SqlType::Unknown(other as u8),
    }
}

/// How many metadata bytes mysql_common's value decoder reads for a type.
fn required_meta(t: ColumnType) -> usize {
    use ColumnType::*;
    match t {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET => 2,
        MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_TYPED_ARRAY => 1,
        _ => 0,
    }
}

fn charset_of(collation: u16) -> (Charset, Option<&'static str>) {
    let collation_info = Collation::resolve(CollationId::from(collation));
    let name = collation_info.charset();
    let cs = match name {
        "utf8mb4" => Charset::Utf8mb4,
        "utf8mb3" | "utf8" => Charset::Utf8mb3,
        "latin1" => Charset::Latin1,
        "ascii" => Charset::Ascii,
        "binary" => Charset::Binary,
        _ => Charset::Other(collation),
    };
    let name = match cs {
        Charset::Other(_) => static_charset_name(name),
        _ => None,
    };
    (cs, name)
}

/// Decodes a TIME2 value from its 3-byte integer part (offset removed) and fractional bytes.
///
/// The value is a signed "packed" number: `int_part << 24 | micros`. Negative values with a
/// fraction store the integer part rounded up and a negative fraction (as two's complement in
/// the fractional bytes), so both parts are re-joined before splitting into fields.
fn time2(int_part: i64, frac: &[u8], fsp: u8) -> Time {
    let packed: i64 = match frac.len() {
        0 => int_part << 24,
        1 | 2 => {
            let raw = frac.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
            let (mut int_part, mut raw) = (int_part, raw);
            let full = 1i64 << (8 * frac.len());
            if int_part < 0 && raw > 0 {
                int_part += 1;
                raw -= full;
            }
            let scale = if frac.len() == 1 { 10_000 } else { 100 };
            (int_part << 24) + raw * scale
        }
        _ => {
            // 5-6 digits: the 6 bytes (integer + fraction) form one offset number.
            let raw = frac.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
            ((int_part + 0x80_0000) << 24 | raw) - 0x8000_0000_0000
        }
    };
    let negative = packed < 0;
    let packed = packed.unsigned_abs();
    let hms = packed >> 24;
    Time {
        negative,
        hours: ((hms >> 12) % (1 << 10)) as u32,
        minutes: ((hms >> 6) % (1 << 6)) as u8,
        seconds: (hms % (1 << 6)) as u8,
        micros: (packed % (1 << 24)) as u32,
        fsp,
    }
}

/// Names of the character sets MySQL and MariaDB ship, for display of undecoded text.
fn static_charset_name(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "armscii8", "big5", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852", "cp866",
        "cp932", "dec8", "eucjpms", "euckr", "gb18030", "gb2312", "gbk", "geostd8", "greek",
        "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "latin2", "latin5", "latin7", "macce",
        "macroman", "sjis", "swe7", "tis620", "ucs2", "ujis", "utf16", "utf16le", "utf32",
    ];
    NAMES.iter().copied().find(|n| *n == name)
}

impl TableDecoder {
    /// Builds a decoder (and the table's schema, without unique keys) from a table map.
    pub fn new(tme: &TableMapEvent<'_>) -> Result<Self, DecodeError> {
        let table = format!("{}.{}", tme.database_name(), tme.table_name());
        let meta_err = |e: std::io::Error| DecodeError::Metadata {
            table: table.clone(),
            detail: e.to_string(),
        };
        let n = usize::try_from(tme.columns_count()).map_err(|_| DecodeError::Metadata {
            table: table.clone(),
            detail: "column count overflows".into(),
        })?;
        let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(meta_err)?;
        let mut signedness = extractor.iter_signedness();
        let mut charsets = extractor.iter_charset();
        let mut enum_set_charsets = extractor.iter_enum_and_set_charset();
        let mut names = extractor.iter_column_name();

        // ENUM and SET labels, in column order of each kind.
        // Kept as raw bytes until the column's character set is known ([`exact_labels`]).
        let mut enum_labels: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut set_labels: Vec<Vec<Vec<u8>>> = Vec::new();
        for field in tme.iter_optional_meta() {
            match field.map_err(meta_err)? {
                OptionalMetadataField::EnumStrValue(v) => {
                    for col in v.iter_values() {
                        let col = col.map_err(meta_err)?;
                        enum_labels.push(
                            col.values()
                                .iter()
                                .map(|s| s.value_raw().to_vec())
                                .collect(),
                        );
                    }
                }
                OptionalMetadataField::SetStrValue(v) => {
                    for col in v.iter_values() {
                        let col = col.map_err(meta_err)?;
                        set_labels.push(
                            col.values()
                                .iter()
                                .map(|s| s.value_raw().to_vec())
                                .collect(),
                        );
                    }
                }
                _ => {}
            }
        }
        let mut enum_labels = enum_labels.into_iter();
        let mut set_labels = set_labels.into_iter();

        let mut cols = Vec::with_capacity(n);
        let mut columns = Vec::with_capacity(n);
        for i in 0..n {
            let col_err = |problem: String| DecodeError::Column {
                table: table.clone(),
                column: format!("#{}", i + 1),
                problem,
            };
            let ctype = match tme.get_column_type(i) {
                Ok(Some(t)) => t,
                Ok(None) => return Err(col_err("no type in the table map".into())),
                Err(e) => return Err(col_err(format!("an unknown type ({e})"))),
            };
            let meta = tme
                .get_column_metadata(i)
                .ok_or_else(|| col_err("unreadable type metadata".into()))?
                .to_vec();
            if meta.len() < required_meta(ctype) {
                return Err(col_err(format!(
                    "{} metadata bytes, {:?} needs {}",
                    meta.len(),
                    ctype,
                    required_meta(ctype)
                )));
            }
            let unsigned = if ctype.is_numeric_type() {
                signedness.next().unwrap_or(false)
            } else {
                false
            };
            // MySQL 9 lists VECTOR columns (binary) among the character columns of the
            // charset metadata; skipping them would shift every later column's charset.
            let collation = if ctype.is_character_type() || ctype == ColumnType::MYSQL_TYPE_VECTOR {
                charsets.next().transpose().map_err(meta_err)?
            } else if ctype.is_enum_or_set_type() {
                enum_set_charsets.next().transpose().map_err(meta_err)?
            } else {
                None
            };
            let name: Arc<str> = match names.next().transpose().map_err(meta_err)? {
                Some(n) => n.name().as_ref().into(),
                None => format!("@{}", i + 1).into(),
            };
            use ColumnType::*;
            let (charset, charset_name) = match collation {
                Some(c) => charset_of(c),
                // Without metadata, assume what MariaDB and MySQL default to.
                None => (Charset::Utf8mb4, None),
            };
            let kind = match ctype {
                MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp2,
                MYSQL_TYPE_TIMESTAMP => Kind::TimestampV1,
                MYSQL_TYPE_TIME2 => Kind::Time2,
                MYSQL_TYPE_INT24 => Kind::Int24,
                MYSQL_TYPE_YEAR => Kind::Year,
                MYSQL_TYPE_BIT => Kind::Bit,
                MYSQL_TYPE_ENUM => Kind::Enum,
                MYSQL_TYPE_SET => Kind::Set,
                MYSQL_TYPE_JSON => Kind::Json,
                MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_VECTOR => Kind::Binary,
                t if t.is_character_type() => {
                    if charset == Charset::Binary || collation.is_none() && t == MYSQL_TYPE_BLOB {
                        Kind::Binary
                    } else {
                        Kind::Text
                    }
                }
                _ => Kind::Generic,
            };
            let fsp = match ctype {
                MYSQL_TYPE_TIMESTAMP2 | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIME2 => meta[0].min(6),
                _ => 0,
            };
            let labels = match kind {
                Kind::Enum => enum_labels.next(),
                Kind::Set => set_labels.next(),
                _ => None,
            }
            .and_then(|raw| exact_labels(raw, charset));
            let pad_to = (ctype == MYSQL_TYPE_STRING && kind == Kind::Binary).then(|| {
                let (b0, b1) = (usize::from(meta[0]), usize::from(meta[1]));
                if b0 & 0x30 != 0x30 {
                    b1 | (((b0 & 0x30) ^ 0x30) << 4)
                } else {
                    b1
                }
            });
            columns.push(ColumnSchema {
                name,
                sql_type: sql_type(ctype),
                unsigned,
                collation: None,
            });
            let fast = match (kind, ctype) {
                (Kind::Generic, MYSQL_TYPE_TINY) => Fast::I8,
                (Kind::Generic, MYSQL_TYPE_SHORT) => Fast::I16,
                (Kind::Generic, MYSQL_TYPE_LONG) => Fast::I32,
                (Kind::Generic, MYSQL_TYPE_LONGLONG) => Fast::I64,
                (Kind::Generic, MYSQL_TYPE_FLOAT) => Fast::F32,
                (Kind::Generic, MYSQL_TYPE_DOUBLE) => Fast::F64,
                (Kind::Text | Kind::Binary, MYSQL_TYPE_STRING) => {
                    let (b0, b1) = (usize::from(meta[0]), usize::from(meta[1]));
                    let len = if b0 >= 1 {
                        if b0 & 0x30 != 0x30 {
                            b1 | (((b0 & 0x30) ^ 0x30) << 4)
                        } else {
                            b1
                        }
                    } else {
                        b0 | b1 << 8
                    };
                    Fast::Len(if len < 256 { 1 } else { 2 })
                }
                (Kind::Text | Kind::Binary, MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING) => {
                    let len = usize::from(meta[0]) | usize::from(meta[1]) << 8;
                    Fast::Len(if len < 256 { 1 } else { 2 })
                }
                (
                    Kind::Text | Kind::Binary,
                    MYSQL_TYPE_TINY_BLOB
                    | MYSQL_TYPE_MEDIUM_BLOB
                    | MYSQL_TYPE_LONG_BLOB
                    | MYSQL_TYPE_BLOB,
                ) if (1..=4).contains(&meta[0]) => Fast::Len(meta[0]),
                _ => Fast::No,
            };
            cols.push(ColumnDecoder {
                fast,
                ctype,
                meta,
                unsigned,
                kind,
                charset,
                charset_name,
                fsp,
                labels,
                pad_to,
            });
        }
        let mut primary_key = Vec::new();
        for k in extractor.iter_primary_key() {
            let k = k.map_err(meta_err)?;
            let k = usize::try_from(k).ok().filter(|&k| k < n).ok_or_else(|| {
                DecodeError::Metadata {
                    table: table.clone(),
                    detail: format!("primary key column {k} out of range"),
                }
            })?;
            primary_key.push(k);
        }
        let schema = TableSchema {
            database: tme.database_name().as_ref().into(),
            table: tme.table_name().as_ref().into(),
            columns,
            primary_key,
            unique_keys: Vec::new(),
            unique_keys_known: false,
        };
        Ok(TableDecoder {
            schema: Arc::new(schema),
            cols,
        })
    }

    /// The schema this decoder produces changes for.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Replaces the schema (e.g. with one that knows the unique keys). Column count must match.
    pub fn set_schema(&mut self, schema: Arc<TableSchema>) {
        if schema.columns.len() == self.cols.len() {
            self.schema = schema;
        }
    }

    /// Decodes every row of one rows event.
    pub fn decode_rows(
        &self,
        kind: ChangeKind,
        before_cols: Option<&bitvec::slice::BitSlice<u8>>,
        after_cols: Option<&bitvec::slice::BitSlice<u8>>,
        data: &[u8],
        out: &mut Vec<RowChange>,
    ) -> Result<(), DecodeError> {
        let mut buf = ParseBuf(data);
        let n = self.cols.len();
        let info = |c: &bitvec::slice::BitSlice<u8>| {
            let count = c.iter().take(n).filter(|b| **b).count();
            (count == n, count)
        };
        let before_info = before_cols.map(info);
        let after_info = after_cols.map(info);
        while !buf.is_empty() {
            let before = match (kind, before_cols, before_info) {
                (ChangeKind::Update | ChangeKind::Delete, Some(c), Some(i)) => {
                    Some(self.decode_image(c, i, &mut buf)?)
                }
                _ => None,
            };
            let after = match (kind, after_cols, after_info) {
                (ChangeKind::Update | ChangeKind::Insert, Some(c), Some(i)) => {
                    Some(self.decode_image(c, i, &mut buf)?)
                }
                _ => None,
            };
            out.push(RowChange {
                table: self.schema.clone(),
                kind,
                before,
                after,
            });
        }
        Ok(())
    }

    fn row_err(&self, col: usize, detail: impl Into<String>) -> DecodeError {
        DecodeError::Row {
            table: self.schema.qualified_name(),
            column: self
                .schema
                .columns
                .get(col)
                .map(|c| c.name.to_string())
                .unwrap_or_else(|| format!("#{}", col + 1)),
            detail: detail.into(),
        }
    }

    fn decode_image<'a>(
        &'a self,
        present: &bitvec::slice::BitSlice<u8>,
        (all, present_count): (bool, usize),
        buf: &mut ParseBuf<'a>,
    ) -> Result<Image, DecodeError> {
        let n = self.cols.len();
        let null_bytes = present_count.div_ceil(8);
        let nulls = buf
            .checked_eat(null_bytes)
            .ok_or_else(|| self.row_err(0, "null bitmap past the end of the event"))?;
        let mut values = Vec::with_capacity(n);
        if all {
            for (i, col) in self.cols.iter().enumerate() {
                if nulls[i / 8] & (1 << (i % 8)) != 0 {
                    values.push(Some(Value::Null));
                } else {
                    values.push(Some(self.decode_value(i, col, buf)?));
                }
            }
            return Ok(Image(values));
        }
        let mut idx = 0usize;
        for (i, col) in self.cols.iter().enumerate() {
            if !present.get(i).map(|b| *b).unwrap_or(false) {
                values.push(None);
                continue;
            }
            let is_null = nulls[idx / 8] & (1 << (idx % 8)) != 0;
            idx += 1;
            if is_null {
                values.push(Some(Value::Null));
                continue;
            }
            values.push(Some(self.decode_value(i, col, buf)?));
        }
        Ok(Image(values))
    }

    fn decode_value<'a>(
        &'a self,
        i: usize,
        col: &'a ColumnDecoder,
        buf: &mut ParseBuf<'a>,
    ) -> Result<Value, DecodeError> {
        let short = || self.row_err(i, "value past the end of the event");
        match col.fast {
            Fast::No => {}
            Fast::I8 => {
                let b = buf.checked_eat_u8().ok_or_else(short)?;
                return Ok(if col.unsigned {
                    Value::UInt(u64::from(b))
                } else {
                    Value::Int(i64::from(b as i8))
                });
            }
            Fast::I16 => {
                let b = buf.checked_eat_u16_le().ok_or_else(short)?;
                return Ok(if col.unsigned {
                    Value::UInt(u64::from(b))
                } else {
                    Value::Int(i64::from(b as i16))
                });
            }
            Fast::I32 => {
                let b = buf.checked_eat_u32_le().ok_or_else(short)?;
                return Ok(if col.unsigned {
                    Value::UInt(u64::from(b))
                } else {
                    Value::Int(i64::from(b as i32))
                });
            }
            Fast::I64 => {
                let b = buf.checked_eat_u64_le().ok_or_else(short)?;
                return Ok(if col.unsigned {
                    Value::UInt(b)
                } else {
                    Value::Int(b as i64)
                });
            }
            Fast::F32 => {
                let b = buf.checked_eat_u32_le().ok_or_else(short)?;
                return Ok(Value::Float(f32::from_bits(b)));
            }
            Fast::F64 => {
                let b = buf.checked_eat_u64_le().ok_or_else(short)?;
                return Ok(Value::Double(f64::from_bits(b)));
            }
            Fast::Len(w) => {
                let len = buf.checked_eat(usize::from(w)).ok_or_else(short)?;
                let len = len
                    .iter()
                    .rev()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                let bytes = buf.checked_eat(len).ok_or_else(short)?.to_vec();
                return Ok(match col.kind {
                    Kind::Text => Value::Text(Text {
                        bytes,
                        charset: col.charset,
                        charset_name: col.charset_name,
                    }),
                    _ => {
                        let mut b = bytes;
                        if let Some(n) = col.pad_to {
                            if b.len() < n {
                                b.resize(n, 0);
                            }
                        }
                        Value::Bytes(b)
                    }
                });
            }
        }
        match col.kind {
            Kind::Year => {
                let b = buf.checked_eat_u8().ok_or_else(short)?;
                return Ok(Value::Year(if b == 0 { 0 } else { 1900 + u16::from(b) }));
            }
            Kind::TimestampV1 => {
                let secs = buf.checked_eat_u32_le().ok_or_else(short)?;
                return Ok(Value::Timestamp(Timestamp {
                    secs: u64::from(secs),
                    micros: 0,
                    fsp: 0,
                }));
            }
            Kind::Timestamp2 => {
                let secs = buf.checked_eat(4).ok_or_else(short)?;
                let secs = u32::from_be_bytes([secs[0], secs[1], secs[2], secs[3]]);
                let frac_len = usize::from(col.fsp).div_ceil(2);
                let frac = buf.checked_eat(frac_len).ok_or_else(short)?;
                let raw = frac.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                let micros = match frac_len {
                    1 => raw * 10_000,
                    2 => raw * 100,
                    _ => raw,
                };
                return Ok(Value::Timestamp(Timestamp {
                    secs: u64::from(secs),
                    micros,
                    fsp: col.fsp,
                }));
            }
            Kind::Int24 => {
                let b = buf.checked_eat(3).ok_or_else(short)?;
                let raw = u32::from_le_bytes([b[0], b[1], b[2], 0]);
                return Ok(if col.unsigned {
                    Value::UInt(u64::from(raw))
                } else {
                    // Sign-extend from 24 bits.
                    Value::Int(i64::from(((raw << 8) as i32) >> 8))
                });
            }
            Kind::Time2 => {
                let b = buf.checked_eat(3).ok_or_else(short)?;
                let int_part = i64::from(u32::from_be_bytes([0, b[0], b[1], b[2]])) - 0x80_0000;
                let frac_len = usize::from(col.fsp).div_ceil(2);
                let f = buf.checked_eat(frac_len).ok_or_else(short)?;
                return Ok(Value::Time(time2(int_part, f, col.fsp)));
            }
            _ => {}
        }
        let v: BinlogValue<'_> = buf
            .parse((col.ctype, col.meta.as_slice(), col.unsigned, false))
            .map_err(|e| self.row_err(i, e.to_string()))?;
        let mv = match v {
            BinlogValue::Value(v) => v,
            BinlogValue::Jsonb(j) => {
                let dom = j
                    .parse()
                    .map_err(|e| self.row_err(i, format!("binary JSON: {e}")))?;
                return Ok(Value::Json(dom.into()));
            }
            BinlogValue::JsonDiff(_) => {
                return Err(self.row_err(
                    i,
                    "partial JSON update; set binlog_row_value_options='' on the source",
                ))
            }
        };
        use mysql_common::Value as M;
        Ok(match (col.kind, mv) {
            (Kind::Bit, M::Bytes(b)) => {
                Value::Bit(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
            }
            (Kind::Set, M::Bytes(b)) => {
                let bits = b
                    .iter()
                    .rev()
                    .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                let labels = col.labels.as_ref().map(|l| {
                    l.iter()
                        .enumerate()
                        .filter(|(k, _)| *k < 64 && bits & (1 << k) != 0)
                        .map(|(_, s)| s.clone())
                        .collect()
                });
                Value::Set { bits, labels }
            }
            (Kind::Enum, M::Int(idx)) => {
                let index = u16::try_from(idx).map_err(|_| self.row_err(i, "ENUM index"))?;
                let label = col.labels.as_ref().and_then(|l| {
                    usize::from(index)
                        .checked_sub(1)
                        .and_then(|k| l.get(k).cloned())
                });
                let label = if index == 0 {
                    Some(String::new())
                } else {
                    label
                };
                Value::Enum { index, label }
            }
            (Kind::Text, M::Bytes(bytes)) => Value::Text(Text {
                bytes,
                charset: col.charset,
                charset_name: col.charset_name,
            }),
            (Kind::Binary, M::Bytes(mut b)) => {
                if let Some(n) = col.pad_to {
                    if b.len() < n {
                        b.resize(n, 0);
                    }
                }
                Value::Bytes(b)
            }
            (_, M::NULL) => Value::Null,
            (_, M::Int(x)) if col.unsigned => Value::UInt(x as u64),
            (_, M::Int(x)) => Value::Int(x),
            (_, M::UInt(x)) if col.unsigned => Value::UInt(x),
            (_, M::UInt(x)) => Value::Int(x as i64),
            (_, M::Float(x)) => Value::Float(x),
            (_, M::Double(x)) => Value::Double(x),
            (_, M::Bytes(b)) if matches!(col.ctype, ColumnType::MYSQL_TYPE_NEWDECIMAL) => {
                Value::Decimal(String::from_utf8(b).map_err(|_| self.row_err(i, "DECIMAL text"))?)
            }
            (_, M::Bytes(b)) => Value::Bytes(b),
            (_, M::Date(y, m, d, 0, 0, 0, 0))
                if matches!(
                    col.ctype,
                    ColumnType::MYSQL_TYPE_NEWDATE | ColumnType::MYSQL_TYPE_DATE
                ) =>
            {
                Value::Date(Date {
                    year: y,
                    month: m,
                    day: d,
                })
            }
            (_, M::Date(y, mo, d, h, mi, s, us)) => Value::DateTime(DateTime {
                date: Date {
                    year: y,
                    month: mo,
                    day: d,
                },
                hour: h,
                minute: mi,
                second: s,
                micros: us,
                fsp: col.fsp,
            }),
            (_, M::Time(neg, days, h, m, s, us)) => Value::Time(Time {
                negative: neg,
                hours: days * 24 + u32::from(h),
                minutes: m,
                seconds: s,
                micros: us,
                fsp: col.fsp,
            }),
        })
    }
}
