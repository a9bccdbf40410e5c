//! The repair log (`<meta>.repair`): one row per key `drc repair` rewrote in this center,
//! written in the same tagged transaction as the rewrite, so that every repaired key can be
//! traced afterwards (what the row was, what it became, which center's row won and by which
//! rule). Never replicated: each center logs the repairs made in it.

use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// One repaired key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairRow {
    /// The repair run (one id per `drc repair` invocation).
    pub run: String,
    /// `db.table`.
    pub table: String,
    /// The primary key as JSON.
    pub key: String,
    /// `upsert` or `delete`.
    pub action: String,
    /// The center whose row won.
    pub winner: String,
    /// `last_writer_wins` or `from`.
    pub rule: String,
    /// This center's row before, as JSON (`null` when it lacked it).
    pub before: String,
    /// The row written, as JSON (`null` for a delete).
    pub after: String,
}

/// The statement that logs `r`.
pub fn insert_statement(meta: &str, r: &RepairRow) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "repair");
    q.push_str(" (`run`, `db_table`, `row_key`, `action`, `winner`, `rule`, `before_row`, `after_row`) VALUES (");
    for (i, v) in [
        &r.run, &r.table, &r.key, &r.action, &r.winner, &r.rule, &r.before, &r.after,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            q.push_str(", ");
        }
        quoted(&mut q, v);
    }
    q.push(')');
    q
}

/// Every logged repair of run `run`, oldest first.
pub async fn load(conn: &mut Conn, meta: &str, run: &str) -> Result<Vec<RepairRow>, MetaError> {
    let mut q = String::from(
        "SELECT `run`, `db_table`, `row_key`, `action`, `winner`, `rule`, `before_row`, `after_row` FROM ",
    );
    table(&mut q, meta, "repair");
    q.push_str(" WHERE `run` = ");
    quoted(&mut q, run);
    q.push_str(" ORDER BY `id`");
    type R = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<R> = conn
        .query(q)
        .await
        .map_err(MetaError::query("reading the repair log"))?;
    Ok(rows
        .into_iter()
        .map(
            |(run, table, key, action, winner, rule, before, after)| RepairRow {
                run,
                table,
                key,
                action,
                winner,
                rule,
                before,
                after,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let q = insert_statement(
            "m",
            &RepairRow {
                run: "r1".into(),
                table: "d.t".into(),
                key: "{\"id\":\"it's\"}".into(),
                action: "upsert".into(),
                winner: "a".into(),
                rule: "from".into(),
                before: "null".into(),
                after: "{}".into(),
            },
        );
        assert!(q.starts_with("INSERT INTO `m`.`repair` (`run`"), "{q}");
        assert!(q.contains("'{\"id\":\"it\\'s\"}'"), "{q}");
    }
}
