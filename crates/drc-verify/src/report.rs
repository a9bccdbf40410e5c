//! What a verify found: per table the rows and chunks compared, and every differing key with
//! the centers that differ and each center's row; as text for people and as JSON
//! (`--json`) for automation. The exit status follows from it ([`Report::exit_code`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mysql_async::Value;
use serde::Serialize;

use crate::sql::{Key, Range};

/// The result of a verify.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The centers compared, in topology order.
    pub centers: Vec<String>,
    /// Per table.
    pub tables: Vec<TableReport>,
    /// Tables whose definitions differ between centers (not compared row by row).
    pub schema_differences: Vec<SchemaDifference>,
    /// Every key that differs.
    pub differences: Vec<Difference>,
    /// Things that make the result less certain (lagging links).
    pub warnings: Vec<String>,
    /// Rows compared (in the first center).
    pub rows: u64,
    /// Chunks compared.
    pub chunks: u64,
    /// Chunks that differed at their first read and were compared again after replication
    /// caught up (changes in flight, or real differences narrowed to keys).
    pub rechecked_chunks: u64,
    /// Wall time.
    pub seconds: f64,
    /// Rows per second over the whole run.
    pub rows_per_sec: f64,
}

/// One table's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `db.table`.
    pub table: String,
    /// Rows compared.
    pub rows: u64,
    /// Chunks compared.
    pub chunks: u64,
    /// Keys that differ.
    pub differing_keys: u64,
    /// Wall time.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_sec: f64,
}

/// A table whose definition differs.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaDifference {
    /// `db.table`.
    pub table: String,
    /// What differs.
    pub detail: String,
}

/// One differing key.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// `db.table`.
    pub table: String,
    /// The primary key, by column name.
    pub key: serde_json::Value,
    /// The centers whose row is not the one most centers hold (every center when no row is
    /// held by more than one).
    pub centers: Vec<String>,
    /// Each center's row (`null`: the center lacks it).
    pub rows: BTreeMap<String, serde_json::Value>,
    /// The difference persisted after replication caught up past it (see `chunk`); false when
    /// the row kept changing or a link lagged.
    pub confirmed: bool,
    /// What repair needs (not in the JSON).
    #[serde(skip)]
    pub detail: Detail,
}

/// The raw material of a difference, for repair.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// Index of the table in the run's table list.
    pub table: usize,
    /// The key's raw parts.
    pub key: Key,
    /// The chunk the key was found in (re-verified after a repair).
    pub range: Range,
    /// Per center (topology order): the row's values, `None` where it is missing.
    pub values: Vec<Option<Vec<Value>>>,
}

impl Report {
    /// 0: every center agrees; 1: some rows or definitions differ.
    pub fn exit_code(&self) -> u8 {
        if self.differences.is_empty() && self.schema_differences.is_empty() {
            0
        } else {
            1
        }
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for t in &self.tables {
            let _ = writeln!(
                s,
                "{}: {} rows in {} chunks, {} differing keys ({:.0} rows/s)",
                t.table, t.rows, t.chunks, t.differing_keys, t.rows_per_sec
            );
        }
        for d in &self.schema_differences {
            let _ = writeln!(s, "{}: definitions differ: {}", d.table, d.detail);
        }
        for d in &self.differences {
            let _ = writeln!(
                s,
                "{} key {}: differs in {}{}",
                d.table,
                d.key,
                d.centers.join(", "),
                if d.confirmed { "" } else { " (unconfirmed)" }
            );
            for (c, row) in &d.rows {
                let _ = writeln!(s, "  {c}: {row}");
            }
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        let verdict = if self.exit_code() == 0 {
            "all centers agree".to_string()
        } else {
            format!(
                "{} differing keys, {} tables with differing definitions",
                self.differences.len(),
                self.schema_differences.len()
            )
        };
        let _ = writeln!(
            s,
            "verify: {} rows in {} chunks ({} compared again after catching up) across {} in {:.1} s ({:.0} rows/s): {verdict}",
            self.rows,
            self.chunks,
            self.rechecked_chunks,
            self.centers.join(", "),
            self.seconds,
            self.rows_per_sec
        );
        s
    }
}

/// The centers whose hash is not the most common one (all of them when no hash is shared).
pub fn odd_ones(names: &[String], hashes: &[Option<u64>]) -> Vec<String> {
    let mut counts: Vec<(Option<u64>, usize)> = Vec::new();
    for h in hashes {
        match counts.iter_mut().find(|(x, _)| x == h) {
            Some((_, n)) => *n += 1,
            None => counts.push((*h, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let winners: Vec<Option<u64>> = counts
        .iter()
        .filter(|(_, n)| *n == best)
        .map(|(h, _)| *h)
        .collect();
    names
        .iter()
        .zip(hashes)
        .filter(|(_, h)| best < 2 || winners.len() > 1 || !winners.contains(h))
        .map(|(n, _)| n.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odd_center_is_named() {
        let n: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(odd_ones(&n, &[Some(1), Some(1), None]), vec!["c"]);
        assert_eq!(odd_ones(&n, &[Some(1), Some(2), Some(3)]), n);
        assert_eq!(odd_ones(&n, &[Some(2), Some(1), Some(1)]), vec!["a"]);
    }
}
