//! drc's own state in each center's `<meta>` database (default `drc_meta`): this crate owns
//! every table of it — its definition, its upgrades ([`schema`], versioned) — and the typed
//! reads and writes that the daemon, the CLI commands and the appliers use.
//!
//! | table | what | written by | replicated |
//! |---|---|---|---|
//! | `schema_version` | the meta schema's version ([`schema::VERSION`]) | [`schema::ensure`] | no |
//! | `checkpoint` | per link and applier worker: the last batch committed and its start and end source positions ([`checkpoint`]) | appliers, in the apply transaction | no |
//! | `heartbeat` | one row per center, written every second by that center's daemon ([`heartbeat`]) | the daemon | yes, on purpose: a peer's row shows how far behind the link is |
//! | `origin` | marker strategy: one row per origin, link and applier worker, touched first in every transaction that worker applies ([`marker`]) | appliers | no (it marks drc's own writes) |
//! | `canary` | start-up proof that origin tagging works ([`canary`]) | link start-up | no |
//! | `tombstone` | rank of every row deleted by an applier, and claims on unique values, of a last-writer-wins table (docs/conflicts.md; SQL in [`tombstone`], the rank encoding in `drc_apply::conflict::tombstone`) | appliers | no |
//! | `local_tombstone` | the same, written by the local-delete reader for local writes | local-delete reader | no |
//! | `source_identity` | per link into this center (role `link`) and per local-delete reader (role `local`): every `server_id` its source server has had ([`identity`]) | link and reader start-up | no |
//! | `ddl_skip` | DDL positions an operator acknowledged (`drc ddl skip`): the link passes them, and records the statement when it does ([`ddl`]) | `drc ddl skip`, links | no |
//! | `ddl_pending` | per link: the replicated DDL statement started and not yet checkpointed ([`ddl`]) | links | no |
//! | `conflict` | every write lost to last-writer-wins, written in the apply transaction that decided it ([`conflict`]) | appliers; read by `drc conflicts` | no |
//! | `link_control` | per link: paused by `drc link pause` ([`control`]) | `drc link` | no |
//! | `link_skip` | source transactions an operator asked a link to pass, and their rows once passed ([`control`]) | `drc link skip`, links | no |
//! | `fence` | per center: the term allowed to apply (SQL in [`fence`], the protocol is `drc_apply::fence`) | the leader | no |
//! | `term_history` | every term that took a center's fence | the leader | no |
//! | `bootstrap` | `drc bootstrap`'s resumable state in the center being filled: the starting position of every link into and out of it, and per table the last primary key copied ([`bootstrap`]) | `drc bootstrap` | no |
//! | `route_unit` | the live routing map: per unit its home center, state (`writable`, `moving`) and epoch ([`route`]) | `drc cutover`; daemons raise it to the newest epoch of any center | no (every center's copy is written directly) |
//! | `route_cutover` | the journal of `drc cutover` runs: units, centers, step reached, forced window ([`route`]) | `drc cutover` | no |
//! | `route_fence` | a center `drc cutover` holds `read_only` ([`route`]) | `drc cutover` | no |
//! | `repair` | every key `drc repair` rewrote in this center: the run, table, key, action, winning center and rule, the row before and after ([`repair`]) | `drc repair`, in its tagged write | no |
//! | `apply_log` | one row per committed apply transaction, in a ring of slots per link worker | appliers | no |
//!
//! A checkpoint row is written in the same transaction as the changes it covers (design
//! invariant 2). Statements are rendered with every name and value escaped
//! ([`drc_core::sqltext`]); a meta database name is any identifier.

pub mod bootstrap;
pub mod canary;
pub mod checkpoint;
pub mod conflict;
pub mod control;
pub mod ddl;
pub mod fence;
pub mod heartbeat;
pub mod identity;
pub mod marker;
pub mod repair;
pub mod route;
pub mod schema;
pub mod tombstone;

use drc_core::sqltext::ident;

/// A failed read or write of the meta database.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A statement failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done (`reading checkpoints`).
        what: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A stored value does not parse (e.g. a checkpoint's position).
    #[error("{0}")]
    Corrupt(String),
    /// The meta database was upgraded by a newer drc than this one.
    #[error("the meta database {meta} has schema version {stored}, newer than this drc knows ({known}): run a drc at least as new as the one that upgraded it (docs/operations.md, \"Upgrades (the meta database's schema)\")")]
    TooNew {
        /// The meta database.
        meta: String,
        /// Its stored version.
        stored: u32,
        /// The newest version this drc knows.
        known: u32,
    },
}

impl MetaError {
    /// Wraps a driver error with what was being done.
    pub fn query(what: &'static str) -> impl FnOnce(mysql_async::Error) -> MetaError {
        move |source| MetaError::Query { what, source }
    }
}

/// Appends `` `meta`.`table` ``.
pub(crate) fn table(out: &mut String, meta: &str, table: &str) {
    ident(out, meta);
    out.push('.');
    ident(out, table);
}

/// True for a server error saying the meta database or table does not exist yet: nothing of
/// drc ran in that center.
pub fn is_missing(e: &mysql_async::Error) -> bool {
    use drc_mysql::codes::{server_code, ER_BAD_DB_ERROR, ER_NO_SUCH_TABLE};
    matches!(server_code(e), Some(ER_NO_SUCH_TABLE | ER_BAD_DB_ERROR))
}

pub use checkpoint::{
    checkpoint_statement, clear_checkpoints_statement, load_checkpoints, recovery,
    stamped_checkpoint_statement, Checkpoint, Recovery,
};
pub use ddl::{
    ddl_acknowledged, ddl_done_statement, ddl_passed_statement, ddl_pending, ddl_skip_statement,
    ddl_start_statement,
};
pub use identity::{record_identity, tag_ids, Identities, IdentityRole};
pub use marker::Marker;
pub use schema::ensure as ensure_schema;
