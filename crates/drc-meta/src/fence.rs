//! The SQL of the fence tables (`<meta>.fence`, `term_history`, `apply_log`); the term stamp
//! on checkpoints is `crate::checkpoint::stamped_checkpoint_statement`'s. The fence protocol
//! itself — who takes the fence when, killing the blockers of an older term, what a mismatch
//! means — is `drc_apply::fence`'s.

use std::fmt::Write as _;

use drc_core::sqltext::quoted;

use crate::table;

/// The locking read of `center`'s fence row that starts every apply transaction; returns
/// `(term, replica)`.
pub fn check_statement(meta: &str, center: &str) -> String {
    let mut q = String::from("SELECT `term`, `replica` FROM ");
    table(&mut q, meta, "fence");
    q.push_str(" WHERE `center` = ");
    quoted(&mut q, center);
    q.push_str(" LOCK IN SHARE MODE");
    q
}

/// The fence check of [`check_statement`] as one statement that fails with error `code` (a
/// `SIGNAL`) unless `center`'s fence row holds `term`, taking the row's shared lock the same
/// way; it can then ride in one query with the transaction's writes. MariaDB only (a compound
/// `IF` outside a stored program).
pub fn guard_statement(meta: &str, center: &str, term: u64, code: u16) -> String {
    let mut q = String::from("IF NOT ((SELECT `term` FROM ");
    table(&mut q, meta, "fence");
    q.push_str(" WHERE `center` = ");
    quoted(&mut q, center);
    let _ = write!(
        q,
        " LOCK IN SHARE MODE) <=> {term}) THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = {code}, \
         MESSAGE_TEXT = 'drc: the fence is not this replica''s term'; END IF"
    );
    q
}

/// The fence row of `center` without a lock, for the error of a failed [`guard_statement`];
/// returns `(term, replica)`.
pub fn read_statement(meta: &str, center: &str) -> String {
    let mut q = String::from("SELECT `term`, `replica` FROM ");
    table(&mut q, meta, "fence");
    q.push_str(" WHERE `center` = ");
    quoted(&mut q, center);
    q
}

/// This apply transaction's `apply_log` row (slot `batch mod slots`), written after its
/// checkpoint, which carries the term (`crate::checkpoint::stamped_checkpoint_statement`).
pub fn log_statement(
    meta: &str,
    link: &str,
    worker: u32,
    batch: u64,
    term: u64,
    replica: u32,
    slots: u64,
) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "apply_log");
    q.push_str(" (`link`, `worker`, `slot`, `batch`, `term`, `replica`, `committed_at`) VALUES (");
    quoted(&mut q, link);
    let _ = write!(
        q,
        ", {worker}, {}, {batch}, {term}, {replica}, NOW(6)) ON DUPLICATE KEY UPDATE `batch` = VALUES(`batch`), \
         `term` = VALUES(`term`), `replica` = VALUES(`replica`), `committed_at` = VALUES(`committed_at`)",
        batch % slots.max(1),
    );
    q
}

/// The statement that raises `center`'s fence to `term` for `replica` unless a higher term
/// holds it; with term 0 (a standalone daemon) it only creates the row.
pub fn take_statement(meta: &str, center: &str, term: u64, replica: u32) -> String {
    let mut q = String::from(if term == 0 {
        "INSERT IGNORE INTO "
    } else {
        "INSERT INTO "
    });
    table(&mut q, meta, "fence");
    q.push_str(" (`center`, `term`, `replica`, `taken_at`) VALUES (");
    quoted(&mut q, center);
    let _ = write!(q, ", {term}, {replica}, NOW(6))");
    if term > 0 {
        let _ = write!(
            q,
            " ON DUPLICATE KEY UPDATE \
             `replica` = IF(`term` < {term}, VALUES(`replica`), `replica`), \
             `taken_at` = IF(`term` < {term}, VALUES(`taken_at`), `taken_at`), \
             `term` = GREATEST(`term`, {term})"
        );
    }
    q
}

/// The `term_history` row of a term that took `center`'s fence.
pub fn history_statement(meta: &str, center: &str, term: u64, replica: u32) -> String {
    let mut q = String::from("INSERT IGNORE INTO ");
    table(&mut q, meta, "term_history");
    q.push_str(" (`center`, `term`, `replica`, `started_at`) VALUES (");
    quoted(&mut q, center);
    let _ = write!(q, ", {term}, {replica}, NOW(6))");
    q
}
