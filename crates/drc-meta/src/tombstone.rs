//! The SQL of the tombstone tables (`<meta>.tombstone`, written by appliers, and
//! `<meta>.local_tombstone`, written by the local-delete reader): the rank-keeping write, the
//! read of many keys over both tables, and the purge. What a rank *is* (the order-preserving
//! encoding of a version and a row hash) belongs to conflict resolution
//! (`drc_apply::conflict::tombstone`); this module only stores and reads it.

use std::time::Duration;

use drc_core::sqltext::quoted;

use crate::table;

/// Which of the two tombstone tables a writer uses. Appliers and the local-delete reader write
/// separate tables and readers take the higher rank of both: an applier waits for the reader
/// while its transaction holds locks on the tombstones it wrote, so the reader must never need
/// those locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `<meta>.tombstone`: written by appliers.
    Applied,
    /// `<meta>.local_tombstone`: written by the local-delete reader.
    Local,
}

impl Store {
    /// The table's name.
    pub fn table(self) -> &'static str {
        match self {
            Store::Applied => "tombstone",
            Store::Local => "local_tombstone",
        }
    }
}

/// Appends `bytes` as a hex literal (`X'..'`).
pub fn hex(out: &mut String, bytes: &[u8]) {
    drc_core::sqltext::hex_literal(out, bytes);
}

/// One tombstone to write.
#[derive(Debug, Clone, Copy)]
pub struct Mark<'a> {
    /// `db.table`.
    pub db_table: &'a str,
    /// The primary key's hash (or a unique-value claim's).
    pub pk_hash: &'a [u8; 32],
    /// The version, as text (for people and for reading back).
    pub version: &'a str,
    /// The row's hash (the tie-break).
    pub row_hash: &'a [u8; 32],
    /// The rank as bytes whose `memcmp` order is the rank order.
    pub rank_key: &'a [u8],
}

/// The write of `m` into `store`: the stored row changes only when `m`'s rank is higher, so
/// no pair of concurrent writers can lower a tombstone.
pub fn write_statement(meta: &str, store: Store, m: &Mark<'_>) -> String {
    let mut q = write_head(meta, store);
    write_values(&mut q, m);
    q.push_str(WRITE_TAIL);
    q
}

/// [`write_statement`] of several marks in one statement: each row is raised (or inserted) on
/// its own, in order, exactly as the single statements would do one after another. `None`
/// when `marks` is empty.
pub fn write_many_statement(meta: &str, store: Store, marks: &[Mark<'_>]) -> Option<String> {
    if marks.is_empty() {
        return None;
    }
    let mut q = write_head(meta, store);
    for (n, m) in marks.iter().enumerate() {
        if n > 0 {
            q.push_str(", ");
        }
        write_values(&mut q, m);
    }
    q.push_str(WRITE_TAIL);
    Some(q)
}

/// The bytes [`write_many_statement`] adds for each mark of `db_table` (an upper bound).
pub fn write_many_cost(db_table: &str, version: &str, rank_key: &[u8]) -> usize {
    // Quotes may double, hashes are 32 bytes as 64 hex digits plus `X''`.
    2 * db_table.len() + 2 * version.len() + 2 * rank_key.len() + 2 * 67 + 16
}

/// The bytes of a [`write_many_statement`] besides its marks (an upper bound).
pub fn write_many_overhead(meta: &str) -> usize {
    write_head(meta, Store::Local).len() + WRITE_TAIL.len() + meta.len()
}

fn write_head(meta: &str, store: Store) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, store.table());
    q.push_str(" (`db_table`, `pk_hash`, `version`, `row_hash`, `rank_key`) VALUES ");
    q
}

fn write_values(q: &mut String, m: &Mark<'_>) {
    q.push('(');
    quoted(q, m.db_table);
    q.push_str(", ");
    hex(q, m.pk_hash);
    q.push_str(", ");
    quoted(q, m.version);
    q.push_str(", ");
    hex(q, m.row_hash);
    q.push_str(", ");
    hex(q, m.rank_key);
    q.push(')');
}

// Assignments run in order and see the new values: `rank_key` goes last.
const WRITE_TAIL: &str = " ON DUPLICATE KEY UPDATE \
     `version` = IF(VALUES(`rank_key`) > `rank_key`, VALUES(`version`), `version`), \
     `row_hash` = IF(VALUES(`rank_key`) > `rank_key`, VALUES(`row_hash`), `row_hash`), \
     `rank_key` = GREATEST(`rank_key`, VALUES(`rank_key`))";

/// One read of the tombstones at `keys` (`(db_table, pk_hash)`) in both tables, grouped by
/// table; columns: db_table, HEX(pk_hash), version, HEX(row_hash). A key can come back twice
/// (once per table): the higher rank counts. `None` when `keys` is empty.
pub fn read_many_statement(meta: &str, keys: &[(String, [u8; 32])]) -> Option<String> {
    let w = where_keys(keys)?;
    let mut q = String::new();
    for (n, store) in [Store::Applied, Store::Local].into_iter().enumerate() {
        if n > 0 {
            q.push_str(" UNION ALL ");
        }
        q.push_str("SELECT `db_table`, HEX(`pk_hash`), `version`, HEX(`row_hash`) FROM ");
        table(&mut q, meta, store.table());
        q.push_str(" WHERE ");
        q.push_str(&w);
    }
    Some(q)
}

fn where_keys(keys: &[(String, [u8; 32])]) -> Option<String> {
    let mut by_table: Vec<(&str, Vec<&[u8; 32]>)> = Vec::new();
    for (t, h) in keys {
        match by_table.iter_mut().find(|(name, _)| name == t) {
            Some((_, hs)) => hs.push(h),
            None => by_table.push((t, vec![h])),
        }
    }
    if by_table.is_empty() {
        return None;
    }
    let mut q = String::new();
    for (n, (t, hs)) in by_table.iter().enumerate() {
        if n > 0 {
            q.push_str(" OR ");
        }
        q.push_str("(`db_table` = ");
        quoted(&mut q, t);
        q.push_str(" AND `pk_hash` IN (");
        for (m, h) in hs.iter().enumerate() {
            if m > 0 {
                q.push_str(", ");
            }
            hex(&mut q, &h[..]);
        }
        q.push_str("))");
    }
    Some(q)
}

/// The purge of tombstones older than `retention`, per table, at most 10,000 rows a statement.
pub fn purge_statements(meta: &str, retention: Duration) -> Vec<String> {
    [Store::Applied, Store::Local]
        .into_iter()
        .map(|store| {
            let mut q = String::from("DELETE FROM ");
            table(&mut q, meta, store.table());
            q.push_str(&format!(
                " WHERE `at` < NOW(6) - INTERVAL {} SECOND LIMIT 10000",
                retention.as_secs()
            ));
            q
        })
        .collect()
}
