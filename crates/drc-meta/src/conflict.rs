//! The conflict record (`<meta>.conflict`): every write lost to last-writer-wins, written in the
//! apply transaction that decided it, and listed by `drc conflicts` (docs/conflicts.md).

use std::time::Duration;

use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// One lost write, as stored. `key`, `loser` and `winner` are JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictRow {
    /// When it was recorded, UTC `YYYY-MM-DD HH:MM:SS.ffffff` (read rows only; ignored when
    /// writing: the server stamps it).
    pub at: String,
    /// The link that decided it, `source->target`.
    pub link: String,
    /// `db.table`.
    pub table: String,
    /// The row's primary key, as JSON.
    pub key: String,
    /// The rule that decided (`newer_version`, `tie_hash`, ...).
    pub rule: String,
    /// What happened (`incoming_won`, `incoming_lost`, ...).
    pub resolution: String,
    /// The losing image, as JSON.
    pub loser: String,
    /// The winning image, as JSON.
    pub winner: String,
}

/// The statement that records `r` (run in the apply transaction that decided it).
pub fn insert_statement(meta: &str, r: &ConflictRow) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "conflict");
    q.push_str(
        " (`link`, `db_table`, `row_key`, `rule`, `resolution`, `loser`, `winner`) VALUES (",
    );
    for (n, s) in [
        &r.link,
        &r.table,
        &r.key,
        &r.rule,
        &r.resolution,
        &r.loser,
        &r.winner,
    ]
    .into_iter()
    .enumerate()
    {
        if n > 0 {
            q.push_str(", ");
        }
        quoted(&mut q, s);
    }
    q.push(')');
    q
}

/// Which records to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Recorded at or after this UTC time, `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    At(String),
    /// Recorded within this age.
    Ago(Duration),
}

/// The records of the meta database, oldest first, at most `limit`; empty when the center has
/// no meta tables yet (drc never applied anything there).
pub async fn list(
    conn: &mut Conn,
    meta: &str,
    since: Option<&Since>,
    limit: u64,
) -> Result<Vec<ConflictRow>, MetaError> {
    let mut q = String::from(
        "SELECT CAST(`at` AS CHAR), `link`, `db_table`, `row_key`, `rule`, `resolution`, \
         `loser`, `winner` FROM ",
    );
    table(&mut q, meta, "conflict");
    match since {
        Some(Since::At(t)) => {
            q.push_str(" WHERE `at` >= ");
            quoted(&mut q, t);
        }
        Some(Since::Ago(d)) => q.push_str(&format!(
            " WHERE `at` >= NOW(6) - INTERVAL {} SECOND",
            d.as_secs()
        )),
        None => {}
    }
    q.push_str(&format!(" ORDER BY `at`, `id` LIMIT {limit}"));
    conn.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(MetaError::query("setting the session time zone"))?;
    type Raw = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Raw> = match conn.query(q).await {
        Ok(rows) => rows,
        Err(e) if crate::is_missing(&e) => Vec::new(),
        Err(e) => return Err(MetaError::query("reading conflict records")(e)),
    };
    Ok(rows
        .into_iter()
        .map(
            |(at, link, table, key, rule, resolution, loser, winner)| ConflictRow {
                at,
                link,
                table,
                key,
                rule,
                resolution,
                loser,
                winner,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_quoted() {
        let r = ConflictRow {
            link: "a->b".into(),
            table: "d.t".into(),
            key: "{\"id\":1}".into(),
            rule: "newer_version".into(),
            resolution: "incoming_won".into(),
            loser: "{\"v\":\"it's\"}".into(),
            winner: "{}".into(),
            ..ConflictRow::default()
        };
        let q = insert_statement("m", &r);
        assert!(q.starts_with("INSERT INTO `m`.`conflict` ("), "{q}");
        assert!(q.contains("'{\"v\":\"it\\'s\"}'"), "{q}");
    }
}
