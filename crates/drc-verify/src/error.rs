//! The crate's error type. Every variant ends the run with exit status 2 ("could not run"):
//! differences between centers are not errors, they are the report
//! ([`crate::report::Report`]). Transient server errors inside a chunk are retried where they
//! happen ([`crate::centers`]) and surface here only once the retries are spent.

use drc_bootstrap::BootstrapError;
use drc_meta::MetaError;
use drc_mysql::MysqlError;

/// Why a verify or repair could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The command line or topology asks for something that cannot be done.
    #[error("{0}")]
    Input(String),
    /// A connection or query through `drc-mysql` failed.
    #[error("center {center}: {source}")]
    Server {
        /// The center.
        center: String,
        /// The error.
        #[source]
        source: MysqlError,
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
    /// Table discovery, key rendering or tagged writing (shared with `drc bootstrap`) failed.
    #[error(transparent)]
    Shared(#[from] BootstrapError),
    /// `drc repair` without `--from` while differing tables have no version column.
    #[error("these tables differ and have no last-writer-wins version column, so no winner can be chosen by rank: {}; run drc repair again with --from CENTER to copy that center's rows over the others (or configure a version column under [conflict])", .0.join(", "))]
    NeedFrom(Vec<String>),
}

impl VerifyError {
    /// Wraps a driver error with its center and what was being done.
    pub(crate) fn query(
        center: &str,
        what: impl Into<String>,
    ) -> impl FnOnce(mysql_async::Error) -> VerifyError {
        let center = center.to_string();
        let what = what.into();
        move |source| VerifyError::Query {
            center,
            what,
            source,
        }
    }

    /// Wraps a `drc-mysql` error with its center.
    pub(crate) fn server(center: &str) -> impl FnOnce(MysqlError) -> VerifyError {
        let center = center.to_string();
        move |source| VerifyError::Server { center, source }
    }

    /// Wraps a meta database error with its center.
    pub(crate) fn meta(center: &str) -> impl FnOnce(MetaError) -> VerifyError {
        let center = center.to_string();
        move |source| VerifyError::Meta { center, source }
    }

    /// True for a failure worth running the statement again for (deadlock, lock wait timeout,
    /// lost connection).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            VerifyError::Query { source, .. } => {
                drc_mysql::codes::is_transient_driver_error(source)
            }
            VerifyError::Server { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}
