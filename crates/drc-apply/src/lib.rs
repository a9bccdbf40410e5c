//! The replication link S -> T: a peer's binlog, filtered, batched, planned and applied to the
//! local center, exactly once.
//!
//! ```text
//! S binlog -> Source (task) -> channel -> Batcher (LinkFilter) -> plan -> N x Applier -> T
//!                                                                         + checkpoint row
//! ```
//!
//! - [`filter`]: loopback (origin tag) and table filtering; [`origin`]: the source's own
//!   `server_id`s and drc's tags, through server identity changes.
//! - [`batch`]: many source transactions per target transaction; batches end at commits.
//! - [`ddl`]: what a link does with DDL from the source (pass, stop at it, replicate it).
//! - [`plan`]: splits a batch into shares that may run in parallel (key-dependency order).
//! - [`size`]: every query fits the target's `max_allowed_packet`; oversized rows and
//!   transactions stop the link with a clear error.
//! - [`sql`]: the idempotent rewrite (guarded insert, upsert, delete by key); [`strict`]:
//!   a change the target cannot store exactly stops the link, naming table, row, column, value.
//! - [`conflict`]: last-writer-wins for tables with a version column, and the record of lost writes.
//! - [`worker`]: an applier connection; one share + its checkpoint = one transaction.
//! - [`meta`]: drc's tables (checkpoints, heartbeat, origin markers) and crash recovery.
//! - [`fence`]: at most one replica applies at a time (term fence in the target's database).
//! - [`link`]: the loop that ties them together; [`state`]: what it shows (`/health`);
//!   [`metrics`]: its Prometheus metrics.
//!
//! Exactly once: every worker stores, in the transaction that applies its share, the batch
//! number and the batch's start and end positions. Batches run one after another. After a crash
//! only the newest batch can be partly applied; it is re-read exactly (same start and end),
//! re-planned (the plan depends only on the batch's content), and only the workers that had
//! not committed it apply their share. See [`drc_meta::recovery`].

pub mod batch;
pub mod conflict;
pub mod ddl;
pub mod fence;
pub mod filter;
pub mod link;
pub mod metrics;
pub mod origin;
pub mod plan;
pub mod query;
pub mod size;
pub mod sql;
pub mod state;
pub mod strict;
pub mod worker;

/// How long drc waits for a connection to a center's server (links, readers, appliers).
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub use link::{run_link, FirstStart, LinkSpec};
pub use metrics::Metrics;
pub use state::{LinkReport, LinkState, LinkStatus};

use drc_mysql::MysqlError;
use drc_source::SourceError;

/// Why a link stopped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Reading the source failed permanently.
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// The source task ended.
    #[error("the source stream ended unexpectedly")]
    SourceStopped,
    /// Connecting or a metadata query failed.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// The operator resumed a paused link: the run ends so that the link starts again from
    /// its checkpoints at once (not a failure).
    #[error("resumed by the operator; starting again from the checkpoints")]
    Resumed,
    /// The link has no checkpoint and was not told where to start.
    #[error("link {link} has no checkpoint in the target's meta database {meta}: starting at the source's current position would skip everything the source wrote before. For the first run of a new, empty cluster run `drc run --start now`; to bring a center in with its data, or to rebuild a center whose meta database was lost, run `drc bootstrap` (docs/operations.md, \"Adding a center\")")]
    NoCheckpoint {
        /// The link.
        link: String,
        /// The target's meta database.
        meta: String,
    },
    /// The meta database cannot be used as it is (e.g. a newer drc upgraded its schema).
    #[error(transparent)]
    Meta(drc_meta::MetaError),
    /// A statement on the target failed.
    #[error("target: {what}: {source}")]
    Target {
        /// What was being done.
        what: &'static str,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// A change cannot be rewritten.
    #[error(transparent)]
    Rewrite(#[from] sql::RewriteError),
    /// The target lacks a table or column that a change carries.
    #[error("the target has no column {column} in {table}: add it on the target (see docs/operations.md, \"Schema changes\"), or exclude the table; the link stopped and nothing was skipped")]
    MissingColumn {
        /// `db.table`.
        table: String,
        /// Column name.
        column: String,
    },
    /// The target lacks a table.
    #[error("the target has no table {table}: create it on the target (see docs/operations.md, \"Schema changes\"), or exclude it; the link stopped and nothing was skipped")]
    MissingTable {
        /// `db.table`.
        table: String,
    },
    /// The link met a DDL statement it must not pass (config `[ddl]`, [`ddl`]). Not retried
    /// by itself: every restart stops at the same statement until it is acknowledged.
    #[error("link {link} stopped at a DDL statement at source position {position} (everything before it is applied; it and everything after it are not): `{statement}` (tables: {tables}): {reason}. Apply the schema change in every center yourself (docs/operations.md, \"Schema changes\"), then let the link pass it: drc ddl skip --config <topology file> --link {link} --position {position}")]
    Ddl {
        /// `source->target`.
        link: String,
        /// [`ddl::position_id`] of the statement.
        position: String,
        /// The statement, shortened ([`ddl::short_statement`]).
        statement: String,
        /// The replicated tables it touches.
        tables: String,
        /// Why it is not passed or replicated.
        reason: String,
    },
    /// The target refused a DDL statement the link replicates.
    #[error("link {link}: the target refused the DDL statement at source position {position}: `{statement}`: {source}. Fix the target's schema so the statement applies, or apply the change yourself and let the link pass it: drc ddl skip --config <topology file> --link {link} --position {position}")]
    DdlFailed {
        /// `source->target`.
        link: String,
        /// [`ddl::position_id`] of the statement.
        position: String,
        /// The statement, shortened.
        statement: String,
        /// The target's error.
        #[source]
        source: Box<LinkError>,
    },
    /// One statement that cannot be split is longer than the target accepts.
    #[error("a {what} statement of {bytes} bytes does not fit the target's max_allowed_packet ({max_allowed_packet} bytes): raise max_allowed_packet on the target (SET GLOBAL max_allowed_packet = <bytes>, and in its configuration file), then restart drc; the link stopped and nothing was skipped")]
    StatementTooLarge {
        /// What the statement does.
        what: &'static str,
        /// Its length.
        bytes: usize,
        /// The target session's `max_allowed_packet`.
        max_allowed_packet: u64,
    },
    /// One row's statement is longer than the target accepts.
    #[error("link {link}: row too large for the target: the statement that writes the row of {table} with primary key {key} (in the batch after source position {position}) is {bytes} bytes, but the target's max_allowed_packet is {max_allowed_packet} bytes; raise max_allowed_packet on the target above {needed} bytes (SET GLOBAL max_allowed_packet = {needed}, and in its configuration file), then restart drc (docs/operations.md, \"Oversized rows and transactions\"); the link stopped and nothing was skipped")]
    RowTooLarge {
        /// `source->target`.
        link: String,
        /// `db.table`.
        table: String,
        /// The primary key's values, shortened.
        key: String,
        /// The statement's length.
        bytes: usize,
        /// What `max_allowed_packet` must at least be.
        needed: u64,
        /// The target's `max_allowed_packet`.
        max_allowed_packet: u64,
        /// Position before the batch holding the row.
        position: String,
    },
    /// A source transaction holds more row changes than `[applier] max_transaction_rows`.
    #[error("link {link}: the source transaction {gtid}after position {position} holds more than {limit} row changes ([applier] max_transaction_rows); drc holds a transaction in memory whole before it applies it, so it stopped before it (everything before it is applied, nothing of it): raise [applier] max_transaction_rows above the transaction's size and give the daemon the memory it needs, then restart drc (docs/operations.md, \"Oversized rows and transactions\")")]
    TransactionTooLarge {
        /// `source->target`.
        link: String,
        /// `GTID <gtid> ` or empty.
        gtid: String,
        /// Position before the transaction.
        position: String,
        /// The bound.
        limit: usize,
    },
    /// Stored checkpoints are unusable.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The start-up canary showed that origin tagging does not work.
    #[error("loopback canary: {0}")]
    Canary(String),
    /// The configuration does not fit the servers.
    #[error("{0}")]
    Setup(String),
    /// A transaction in the source's binlog carries a `server_id` that is neither one of the
    /// source's own ids nor a tag drc writes under there, even after looking both up again.
    #[error("{reader}: the transaction after position {position} carries server_id {server_id}, which is neither one of the source's own server_ids ({own}) nor an id drc writes under in the source center ({tags}); the link stopped before it, since keeping it could loop drc's own writes and dropping it could lose the source's. If {server_id} was the source server's earlier server_id (changed while drc was not running), record it: INSERT INTO <meta>.source_identity (link, server_id, role) VALUES ('{reader}', {server_id}, 'link') in the target center's meta database, then restart; if drc wrote it, the source's <meta>.source_identity lost its rows (docs/operations.md, \"Server identity changes\")")]
    UnknownOrigin {
        /// The link (or local-delete reader).
        reader: String,
        /// The unknown id.
        server_id: u32,
        /// Position before the transaction.
        position: String,
        /// The source's known ids.
        own: String,
        /// drc's known tags there.
        tags: String,
    },
    /// The target refused a change (strict mode) or stored it only with a warning: its schema
    /// differs from the source's. Not retried.
    #[error(transparent)]
    Rejected(Box<strict::Rejection>),
    /// The link's shutdown signal ended a wait (a retry sleep, a transaction in flight).
    #[error("stopped: the daemon is shutting down")]
    Shutdown,
    /// The local-delete reader is behind or stopped (conflict resolution waits for it).
    #[error("local deletes: {0}")]
    LocalDeletes(String),
    /// The target answered conflict resolution's reads unexpectedly (retried).
    #[error("conflict resolution: {0}")]
    ConflictRead(String),
    /// The target's binlog position, read for conflict resolution, does not parse. Not
    /// retried: the server answers the same text again.
    #[error("conflict resolution: the target's position {text:?} (from `{query}`) does not parse: {source}")]
    TargetPosition {
        /// The position query.
        query: &'static str,
        /// What the server answered.
        text: String,
        /// Why it does not parse.
        #[source]
        source: drc_core::position::PositionError,
    },
    /// The center's fence holds another term: another replica took over (or this one is a
    /// standalone daemon of a center that now runs replicas). Not retried.
    #[error("fenced: this replica applies to center {center} under term {term}, but the center's fence is at {} (replica {}); another drc replica took over, so this one stops applying", stored_term.map_or("no term (fence row missing)".to_string(), |t| format!("term {t}")), stored_replica.map_or("-".to_string(), |r| r.to_string()))]
    Fenced {
        /// The center.
        center: String,
        /// This applier's term.
        term: u64,
        /// The term in the fence row.
        stored_term: Option<u64>,
        /// The replica in the fence row.
        stored_replica: Option<u32>,
    },
}

/// A meta-database failure keeps the class it had when drc-apply owned those tables: a failed
/// statement is a target error (transient when the driver's error is), a stored value that
/// does not parse is a checkpoint error, and a newer schema stops the link.
impl From<drc_meta::MetaError> for LinkError {
    fn from(e: drc_meta::MetaError) -> Self {
        match e {
            drc_meta::MetaError::Query { what, source } => LinkError::Target { what, source },
            drc_meta::MetaError::Corrupt(m) => LinkError::Checkpoint(m),
            other => LinkError::Meta(other),
        }
    }
}

impl LinkError {
    pub(crate) fn target(what: &'static str, source: mysql_async::Error) -> Self {
        LinkError::Target { what, source }
    }

    /// The server's error code of a target error (`None` for any other error).
    pub fn target_code(&self) -> Option<u16> {
        match self {
            LinkError::Target { source, .. } => drc_mysql::codes::server_code(source),
            _ => None,
        }
    }

    /// True when retrying can succeed without an operator's change.
    pub fn is_transient(&self) -> bool {
        match self {
            LinkError::Source(e) => e.is_transient(),
            LinkError::Mysql(e) => e.is_transient(),
            LinkError::Target { source, .. } => drc_mysql::is_transient_driver_error(source),
            LinkError::DdlFailed { source, .. } => source.is_transient(),
            LinkError::SourceStopped | LinkError::LocalDeletes(_) | LinkError::ConflictRead(_) => {
                true
            }
            _ => false,
        }
    }
}
