//! `drc bootstrap`'s resumable state (`<meta>.bootstrap`), kept in the meta database of the
//! center being filled, so that an interrupted bootstrap continues where it stopped.
//!
//! Rows, keyed by `(kind, db, name)`:
//! - `kind = 'link'`, `db = ''`, `name` = a link (`a->c`): the position that link starts at once
//!   the copy ends, fixed by the bootstrap's first snapshot (`position`).
//! - `kind = 'table'`, `db`.`name` = a replicated table: the last primary key whose chunk is
//!   copied (`last_key`, NULL before the first chunk), the rows copied, and `done`.
//!
//! Every row names the center copied from (`source`). A table row only moves forward: it is
//! written after the chunks up to its key committed in the target, so a crash at any point
//! leaves a key at or before what is really copied. The rows are deleted when the bootstrap
//! ends. Primary keys are stored as the raw bytes of each key column (the text form a server
//! prints, or the column's bytes), hex-encoded and separated by commas ([`encode_key`]).

use std::fmt::Write as _;

use drc_core::position::Position;
use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// Where a link starts once the bootstrap ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStart {
    /// The link, `source->target`.
    pub link: String,
    /// Its starting position.
    pub position: Position,
}

/// How far one table is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProgress {
    /// The table's database.
    pub db: String,
    /// The table.
    pub table: String,
    /// The last primary key copied (one raw value per key column); `None` before the first
    /// chunk.
    pub last_key: Option<Vec<Vec<u8>>>,
    /// Rows copied so far.
    pub copied_rows: u64,
    /// Every row of the table is copied.
    pub done: bool,
}

/// A bootstrap's stored state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The center copied from (every row names the same one; see [`load`]).
    pub source: String,
    /// The links' starting positions.
    pub links: Vec<LinkStart>,
    /// Per table progress.
    pub tables: Vec<TableProgress>,
}

/// Hex-encodes a primary key's raw values, comma-separated.
pub fn encode_key(key: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for (i, part) in key.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        for b in part {
            let _ = write!(s, "{b:02x}");
        }
    }
    s
}

/// The inverse of [`encode_key`].
pub fn decode_key(s: &str) -> Result<Vec<Vec<u8>>, MetaError> {
    s.split(',')
        .map(|part| {
            if part.len() % 2 != 0 {
                return Err(MetaError::Corrupt(format!(
                    "bootstrap key {s:?}: odd hex length"
                )));
            }
            (0..part.len())
                .step_by(2)
                .map(|i| {
                    part.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| MetaError::Corrupt(format!("bootstrap key {s:?}: not hex")))
                })
                .collect()
        })
        .collect()
}

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    u64,
    u8,
);

/// Reads the stored state; `None` when no bootstrap is under way. Rows that name different
/// source centers are refused ([`MetaError::Corrupt`]).
pub async fn load(conn: &mut Conn, meta: &str) -> Result<Option<State>, MetaError> {
    let mut q = String::from(
        "SELECT `kind`, `db`, `name`, `source`, `position`, `last_key`, `copied_rows`, `done` FROM ",
    );
    table(&mut q, meta, "bootstrap");
    q.push_str(" ORDER BY `kind`, `db`, `name`");
    let rows: Vec<Row> = conn
        .query(q)
        .await
        .map_err(MetaError::query("reading the bootstrap state"))?;
    let mut state = State::default();
    for (kind, db, name, source, position, last_key, copied_rows, done) in rows {
        if state.source.is_empty() {
            state.source = source.clone();
        } else if state.source != source {
            return Err(MetaError::Corrupt(format!(
                "the bootstrap state names two source centers ({} and {source})",
                state.source
            )));
        }
        match kind.as_str() {
            "link" => {
                let text = position.unwrap_or_default();
                let position = text.parse::<Position>().map_err(|e| {
                    MetaError::Corrupt(format!(
                        "bootstrap link {name}: stored position {text:?} does not parse: {e}"
                    ))
                })?;
                state.links.push(LinkStart {
                    link: name,
                    position,
                });
            }
            "table" => state.tables.push(TableProgress {
                db,
                table: name,
                last_key: last_key.as_deref().map(decode_key).transpose()?,
                copied_rows,
                done: done != 0,
            }),
            other => {
                return Err(MetaError::Corrupt(format!(
                    "bootstrap state row of unknown kind {other:?}"
                )))
            }
        }
    }
    Ok((!state.source.is_empty()).then_some(state))
}

/// The statement that stores a link's starting position.
pub fn link_statement(meta: &str, source: &str, l: &LinkStart) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "bootstrap");
    q.push_str(" (`kind`, `db`, `name`, `source`, `position`) VALUES ('link', '', ");
    quoted(&mut q, &l.link);
    q.push_str(", ");
    quoted(&mut q, source);
    q.push_str(", ");
    quoted(&mut q, &l.position.to_string());
    q.push_str(
        ") ON DUPLICATE KEY UPDATE `source` = VALUES(`source`), `position` = VALUES(`position`)",
    );
    q
}

/// The statement that stores a table's progress.
pub fn table_statement(meta: &str, source: &str, t: &TableProgress) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "bootstrap");
    q.push_str(
        " (`kind`, `db`, `name`, `source`, `last_key`, `copied_rows`, `done`) VALUES ('table', ",
    );
    quoted(&mut q, &t.db);
    q.push_str(", ");
    quoted(&mut q, &t.table);
    q.push_str(", ");
    quoted(&mut q, source);
    q.push_str(", ");
    match &t.last_key {
        Some(k) => quoted(&mut q, &encode_key(k)),
        None => q.push_str("NULL"),
    }
    let _ = write!(q, ", {}, {})", t.copied_rows, u8::from(t.done));
    q.push_str(
        " ON DUPLICATE KEY UPDATE `source` = VALUES(`source`), `last_key` = VALUES(`last_key`), \
         `copied_rows` = VALUES(`copied_rows`), `done` = VALUES(`done`)",
    );
    q
}

/// The statement that forgets the state (a finished or restarted bootstrap).
pub fn clear_statement(meta: &str) -> String {
    let mut q = String::from("DELETE FROM ");
    table(&mut q, meta, "bootstrap");
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = vec![b"12".to_vec(), vec![0, 0xff, b','], vec![]];
        let s = encode_key(&k);
        assert_eq!(s, "3132,00ff2c,");
        assert_eq!(decode_key(&s).ok(), Some(k));
        assert!(decode_key("zz").is_err());
        assert!(decode_key("abc").is_err());
    }

    #[test]
    fn statements_escape() {
        let q = table_statement(
            "m`x",
            "a'",
            &TableProgress {
                db: "d".into(),
                table: "t'".into(),
                last_key: None,
                copied_rows: 3,
                done: true,
            },
        );
        assert!(q.contains("`m``x`.`bootstrap`"), "{q}");
        assert!(q.contains("'t\\''"), "{q}");
        assert!(q.contains("NULL, 3, 1)"), "{q}");
    }
}
