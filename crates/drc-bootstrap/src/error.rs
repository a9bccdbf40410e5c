//! The crate's error type. Every variant is permanent for the bootstrap as a whole (the
//! operator fixes something and runs the command again, which resumes); transient server errors
//! inside a chunk are retried where they happen ([`crate::copy`]) and surface here only once
//! the retries are spent.

use drc_meta::MetaError;
use drc_mysql::MysqlError;

/// Why a bootstrap stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The command line or topology names something that cannot be bootstrapped.
    #[error("{0}")]
    Input(String),
    /// A connection or query through `drc-mysql` failed.
    #[error("center {center}: {source}")]
    Server {
        /// The center.
        center: String,
        /// The error (boxed: it is large, and errors travel through every `Result`).
        #[source]
        source: Box<MysqlError>,
    },
    /// A statement failed.
    #[error("center {center}: {what}: {source}")]
    Query {
        /// The center.
        center: String,
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The meta database could not be read or written.
    #[error("center {center}: {source}")]
    Meta {
        /// The center.
        center: String,
        /// The error.
        #[source]
        source: MetaError,
    },
    /// Replicated tables without a primary key (chunked, exact copying needs one).
    #[error("these replicated tables of center {center} have no primary key, so they cannot be copied in key order (nor replicated exactly): {}; add a primary key, or exclude them with [replication] exclude_tables", .tables.join(", "))]
    NoPrimaryKey {
        /// The source center.
        center: String,
        /// `db.table` names.
        tables: Vec<String>,
    },
    /// Replicated tables of the target already hold rows.
    #[error("these replicated tables of center {center} already hold rows: {}; a bootstrap fills empty tables; run it again with --truncate to empty them first (their rows are lost)", .tables.join(", "))]
    TargetNotEmpty {
        /// The target center.
        center: String,
        /// `db.table` names.
        tables: Vec<String>,
    },
    /// A checkpoint of the source center that the target's starting positions derive from is
    /// missing or unfinished.
    #[error("{0}")]
    Checkpoint(String),
    /// A value or answer the bootstrap cannot copy exactly.
    #[error("{0}")]
    Unsupported(String),
}

impl BootstrapError {
    /// Wraps a driver error with its center and what was being done.
    pub(crate) fn query(
        center: &str,
        what: impl Into<String>,
    ) -> impl FnOnce(mysql_async::Error) -> BootstrapError {
        let center = center.to_string();
        let what = what.into();
        move |source| BootstrapError::Query {
            center,
            what,
            source,
        }
    }

    /// Wraps a `drc-mysql` error with its center.
    pub(crate) fn server(center: &str) -> impl FnOnce(MysqlError) -> BootstrapError {
        let center = center.to_string();
        move |source| BootstrapError::Server {
            center,
            source: Box::new(source),
        }
    }

    /// Wraps a meta database error with its center.
    pub(crate) fn meta(center: &str) -> impl FnOnce(MetaError) -> BootstrapError {
        let center = center.to_string();
        move |source| BootstrapError::Meta { center, source }
    }

    /// True for a driver error worth retrying the chunk for (deadlock, lock wait timeout,
    /// connection lost).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            BootstrapError::Query { source, .. } => {
                drc_mysql::codes::is_transient_driver_error(source)
            }
            BootstrapError::Server { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}
